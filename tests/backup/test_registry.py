"""Backups in a private registry (Debian's docker-registry on 127.0.0.1): each container pushed as
REGISTRY/REPO/NAME with its top layer only, restored on a root that has never seen the base image
(pulled by digest from where it came from), incremental chains, ls / inspect / prune, bad input."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.backup.conftest import export_tree
from tests.conftest import _kran_fixture
from tests.registry.conftest import Registry


@pytest.fixture
def registry(tmp_path: Path):
    r = Registry(tmp_path / "registry")
    yield r
    r.stop()


@pytest.fixture
def bare(tmp_path: Path):
    """Another host with no image at all."""
    gen = _kran_fixture(tmp_path / "bare")
    k = next(gen)
    try:
        yield k
    finally:
        next(gen, None)


def _get(reg: Registry, path: str, accept: str = "application/vnd.oci.image.manifest.v1+json") -> dict:
    req = urllib.request.Request(f"http://{reg.host}{path}", headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _layer_digests(kran, image: str) -> list[str]:
    return [d for d in json.loads(kran("image", "inspect", image).out)[0]["RootFS"]["Layers"]]


def _one_line_error(p) -> str:
    assert p.returncode != 0
    lines = p.err.strip().splitlines()
    assert len(lines) == 1, p.err
    assert "Traceback" not in p.err, p.err
    return lines[0]


def test_many_containers_to_a_registry_and_restored_on_a_bare_host(kran, busybox, registry, bare):
    base = f"{registry.host}/base/busybox:1"
    kran("tag", "busybox", base)
    kran("push", base)
    names = [f"app{i}" for i in range(20)]
    for i, n in enumerate(names):
        kran("run", "-d", "--network", "none", "--name", n, "-e", f"N={i}", base, "sleep", "3600")
        # written by exec, not by the command: a restored container that starts runs the command again
        kran("exec", n, "sh", "-c", f"echo {i} > /srv-{i}; rm /bin/vi; mkdir -p /var/lib/x; echo data > /var/lib/x/f")
    p = kran("backup", "-v", *names, f"{registry.host}/backups")
    lines = p.out.splitlines()
    assert len(lines) == 20 and all("frozen" in ln for ln in lines), p.out
    catalog = _get(registry, "/v2/_catalog")["repositories"]
    assert {f"backups/{n}" for n in names} <= set(catalog)
    tags = _get(registry, "/v2/backups/app3/tags/list")["tags"]
    assert "latest" in tags and len(tags) == 2
    # only the top layer went up: the image's layers are in no backup repository
    man = _get(registry, "/v2/backups/app3/manifests/latest")
    assert len(man["layers"]) == 1
    base_layers = {d["digest"] for d in _get(registry, "/v2/base/busybox/manifests/1")["layers"]}
    assert not base_layers & {d["digest"] for d in man["layers"]}
    assert man["layers"][0]["size"] < 64 << 10

    # a host that has never seen busybox: the base is pulled by digest from where it came from
    before = export_tree(kran, "app7")
    bare("restore", "--start", f"{registry.host}/backups/app7")
    assert bare("exec", "app7", "cat", "/srv-7").out == "7\n"
    assert "N=7" in json.loads(bare("inspect", "app7").out)[0]["Config"]["Env"]
    bare("stop", "-t", "0", "app7")
    assert export_tree(bare, "app7") == before
    image = json.loads(bare("image", "inspect", bare("inspect", "-f", "{{.Image}}", "app7").out.strip()).out)[0]
    assert image["Id"] == kran("inspect", "-f", "{{.Image}}", "app7").out.strip()  # the same image, by digest
    assert [d.split("@")[0] for d in image["RepoDigests"]] == [f"{registry.host}/base/busybox"], image

    # ls lists every container's backup; inspect one
    rows = kran("backup", "ls", f"{registry.host}/backups").out.splitlines()
    assert rows[0].split()[:2] == ["NAME", "TAG"] and len(rows) == 21
    info = json.loads(kran("backup", "inspect", f"{registry.host}/backups/app7").out)[0]
    assert info["Name"] == "app7" and info["Repository"] == f"{registry.host}/backups/app7"
    assert info["Image"]["ID"] == kran("inspect", "-f", "{{.Image}}", "app7").out.strip()
    for n in names:
        kran("rm", "-f", n)


def test_incremental_chain_in_a_registry_and_prune(kran, kran2, busybox, registry):
    dest = f"{registry.host}/bk"
    kran("run", "-d", "--network", "none", "--name", "db", "busybox", "sleep", "3600")
    kran("exec", "db", "sh", "-c", "mkdir /data && head -c 300000 /dev/urandom > /data/big && echo 1 > /data/v")
    kran("backup", "db", dest)
    kran("exec", "db", "sh", "-c", "echo 2 > /data/v && rm /bin/ls")
    p = kran("backup", "-v", "--incremental", "db", dest)
    assert "incremental layer" in p.out
    kran("exec", "db", "sh", "-c", "echo 3 > /data/v && mkdir /data/new && ln /data/v /data/new/hard")
    kran("backup", "--incremental", "db", dest)
    man = _get(registry, "/v2/bk/db/manifests/latest")
    sizes = [d["size"] for d in man["layers"]]
    assert len(sizes) == 3 and sizes[1] < 20000 and sizes[2] < 20000, sizes  # the big file went once
    kran("stop", "-t", "0", "db")
    want = export_tree(kran, "db")
    kran2("restore", "--name", "copy", f"{dest}/db")
    assert export_tree(kran2, "copy") == want

    tags = sorted(t for t in _get(registry, "/v2/bk/db/tags/list")["tags"] if t != "latest")
    assert len(tags) == 3
    p = kran("backup", "prune", "--keep", "1", dest)
    assert p.out.startswith("Deleted backups:") and f"db:{tags[0]}" in p.out and f"db:{tags[1]}" in p.out
    left = sorted(_get(registry, "/v2/bk/db/tags/list")["tags"])
    assert left == sorted([tags[2], "latest"])
    # the kept backup is whole: its chain's layers are still listed by its manifest
    kran2("restore", "--name", "again", f"{dest}/db:{tags[2]}")
    assert export_tree(kran2, "again") == want


def test_registry_bad_input(kran, kran2, busybox, registry, tmp_path: Path):
    kran("create", "--name", "web", "busybox", "true")
    for dest, want in [
        ("backups", "expected oci:DIR or REGISTRY/REPO"),
        (f"{registry.host}/Backups", "must be lowercase"),
        (f"{registry.host}/b@sha256:" + "0" * 64, "a digest cannot be written to"),
    ]:
        assert want in _one_line_error(kran("backup", "web", dest, check=False)), dest
    kran("create", "--name", "two", "busybox", "true")
    assert "a tag names one backup" in _one_line_error(
        kran("backup", "web", "two", f"{registry.host}/b/x:t1", check=False))
    # an explicit tag with one container
    kran("backup", "web", f"{registry.host}/b/web:nightly")
    assert sorted(_get(registry, "/v2/b/web/tags/list")["tags"]) == ["latest", "nightly"]
    # a missing backup, and a registry image that is no backup
    assert "not found" in _one_line_error(kran2("restore", f"{registry.host}/b/nothing", check=False)).lower()
    kran("tag", "busybox", f"{registry.host}/plain/img")
    kran("push", f"{registry.host}/plain/img")
    assert "not a kran backup" in _one_line_error(kran2("restore", f"{registry.host}/plain/img", check=False))
    # restore over an existing name: Docker's conflict, nothing made
    kran2("create", "--name", "web", "busybox", "true")
    n = len(kran2("ps", "-aq").out.split())
    err = _one_line_error(kran2("restore", f"{registry.host}/b/web", check=False))
    assert 'The container name "/web" is already in use' in err
    assert len(kran2("ps", "-aq").out.split()) == n
    # a corrupt layer in the registry: refused, nothing made
    man = _get(registry, "/v2/b/web/manifests/nightly")
    blob = registry.blob_data(man["layers"][0]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    err = _one_line_error(kran2("restore", "--name", "w2", f"{registry.host}/b/web:nightly", check=False))
    assert "does not match its digest" in err or "digest" in err
    assert len(kran2("ps", "-aq").out.split()) == n


def test_volumes_in_a_registry_survive_its_garbage_collection(kran, kran2, busybox, registry):
    """The file index and the volume tars are no image layers: the untagged data manifest keeps them
    when the registry collects garbage (distribution's `garbage-collect`, run on its storage)."""
    import subprocess

    dest = f"{registry.host}/vb"
    kran("run", "-d", "--network", "none", "--name", "keeper", "-v", "kdata:/data", "busybox", "sleep", "3600")
    kran("exec", "keeper", "sh", "-c", "echo precious > /data/f && echo top > /top")
    kran("backup", "--volumes", "keeper", dest)
    kran("exec", "keeper", "sh", "-c", "echo more > /top2")
    kran("backup", "--volumes", "-i", "keeper", dest)
    info = json.loads(kran("backup", "inspect", f"{dest}/keeper").out)[0]
    vol_blob = registry.blob_data(info["Volumes"][0]["digest"])
    index_blob = registry.blob_data(info["Index"]["digest"])
    # the registry must be stopped for garbage-collect (distribution's own rule): a second one
    # serves the same storage afterwards
    registry.proc.terminate()
    registry.proc.wait(10)
    gc = subprocess.run(["/usr/bin/docker-registry", "garbage-collect", str(registry.base / "config.yml")],
                        capture_output=True, text=True, timeout=60)
    assert gc.returncode == 0, gc.stderr + gc.stdout
    assert vol_blob.exists() and index_blob.exists()
    registry.proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(registry.base / "config.yml")],
                                     stdout=registry.log, stderr=subprocess.STDOUT)
    import socket
    import time

    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", registry.port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    kran2("restore", "--start", f"{dest}/keeper")
    assert kran2("exec", "keeper", "cat", "/data/f", "/top", "/top2").out == "precious\ntop\nmore\n"
    # and the next incremental backup still finds its base (the file index) there
    kran("exec", "keeper", "sh", "-c", "echo again > /top3")
    p = kran("backup", "-v", "-i", "keeper", dest)
    assert "incremental layer" in p.out and "no earlier backup" not in p.err, p.err


def test_restore_pulls_the_base_from_a_mirror_when_its_registry_is_gone(kran, busybox, registry, bare,
                                                                        tmp_path: Path):
    """The base's own registry is down; the restoring host has a mirror of it ([mirrors] in its
    config): the base comes from there, by digest, still named after its own registry."""
    mirror = Registry(tmp_path / "mirror")
    try:
        base = f"{registry.host}/base/busybox:1"
        kran("tag", "busybox", base)
        kran("push", base)
        # the mirror gets its copy by skopeo (so kran knows nothing of it): the same manifest bytes
        import subprocess

        subprocess.run(["skopeo", "copy", "--quiet", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
                        f"docker://{base}", f"docker://{mirror.host}/base/busybox:1"], check=True, timeout=60)
        kran("run", "-d", "--network", "none", "--name", "m1", base, "sleep", "3600")
        kran("exec", "m1", "sh", "-c", "echo mirrored > /m")
        kran("backup", "m1", f"oci:{tmp_path / 'b'}")
        registry.proc.terminate()
        registry.proc.wait(10)
        err = _one_line_error(bare("restore", f"oci:{tmp_path / 'b'}:m1", check=False))
        assert "is not present and could not be pulled" in err, err
        assert bare("ps", "-aq").out.split() == []
        cfg = tmp_path / "bare-config.toml"
        cfg.write_text(f'[mirrors]\n"{registry.host}" = ["http://127.0.0.1:1", "http://{mirror.host}"]\n')
        bare.env["KRAN_CONFIG"] = str(cfg)  # a mirror that is down is skipped, the next one serves
        bare("restore", "--start", f"oci:{tmp_path / 'b'}:m1")
        assert bare("exec", "m1", "cat", "/m").out == "mirrored\n"
        image = json.loads(bare("image", "inspect", bare("inspect", "-f", "{{.Image}}", "m1").out.strip()).out)[0]
        assert [d.split("@")[0] for d in image["RepoDigests"]] == [f"{registry.host}/base/busybox"]
    finally:
        mirror.stop()
