"""kran pull / push against a real registry (docker-registry on 127.0.0.1), with skopeo as the peer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", *args], check=True, capture_output=True, text=True, timeout=120).stdout


def _store_blobs(kran) -> set[str]:
    d = Path(kran.root) / "blobs" / "sha256"
    return {p.name for p in d.iterdir()} if d.exists() else set()


def test_push_is_read_by_skopeo(kran, busybox, registry):
    name = f"{registry.host}/x:1"
    kran("tag", "busybox", name)
    p = kran("push", name)
    lines = p.out.splitlines()
    assert lines[0] == f"The push refers to repository [{registry.host}/x]"
    assert any(line.endswith(": Pushed") for line in lines)
    assert lines[-1].startswith("1: digest: sha256:") and " size: " in lines[-1]
    digest = lines[-1].split()[2]
    raw = json.loads(_skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{name}"))
    info = json.loads(kran("image", "inspect", "busybox").out)[0]
    assert raw["config"]["digest"] == info["Id"]
    assert len(raw["layers"]) == len(info["RootFS"]["Layers"]) == 1
    insp = json.loads(_skopeo("inspect", "--tls-verify=false", f"docker://{name}"))
    assert insp["Digest"] == digest
    assert insp["Layers"] == [layer["digest"] for layer in raw["layers"]]

    # like Docker, the pushed digest is now one of the image's RepoDigests
    assert f"{registry.host}/x@{digest}" in json.loads(kran("image", "inspect", "busybox").out)[0]["RepoDigests"]
    # pushing again: every layer is already there, same digest
    p2 = kran("push", name)
    assert "Layer already exists" in p2.out
    assert "Pushed" not in p2.out
    assert p2.out.splitlines()[-1].split()[2] == digest

    # another repository of the same registry: a cross-repository mount, no upload
    other = f"{registry.host}/y:2"
    kran("tag", "busybox", other)
    kran("rmi", name)  # the repo digest still says the blob is in x
    p3 = kran("push", other)
    assert "Mounted from x" in p3.out, p3.out
    assert "Pushed" not in p3.out


def test_push_errors(kran, busybox, registry):
    p = kran("push", f"{registry.host}/nothere:1", check=False)
    assert p.returncode != 0
    assert f"An image does not exist locally with the tag: {registry.host}/nothere" in p.err


def test_skopeo_copy_then_pull_and_run(kran, busybox, registry, tmp_path):
    archive = tmp_path / "bb.tar"
    kran("save", "-o", str(archive), "busybox")
    _skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}", f"docker://{registry.host}/sk/bb:1")
    # pull into a store that does not have it
    kran("rmi", "busybox")
    p = kran("pull", f"{registry.host}/sk/bb:1")
    lines = p.out.splitlines()
    assert lines[0] == "1: Pulling from sk/bb"
    assert any(line.endswith(": Pulling fs layer") for line in lines)
    assert any(line.endswith(": Download complete") for line in lines)
    assert any(line.endswith(": Pull complete") for line in lines)
    digest = json.loads(_skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/sk/bb:1"))["Digest"]
    assert f"Digest: {digest}" in lines
    assert lines[-2] == f"Status: Downloaded newer image for {registry.host}/sk/bb:1"
    assert lines[-1] == f"{registry.host}/sk/bb:1"
    info = json.loads(kran("image", "inspect", f"{registry.host}/sk/bb:1").out)[0]
    assert info["RepoDigests"] == [f"{registry.host}/sk/bb@{digest}"]
    assert info["RepoTags"] == [f"{registry.host}/sk/bb:1"]
    out = kran("run", "--rm", f"{registry.host}/sk/bb:1", "echo", "hi from a pulled image").out
    assert out == "hi from a pulled image\n"
    # again: up to date; -q prints only the name
    p2 = kran("pull", f"{registry.host}/sk/bb:1")
    assert "Already exists" in p2.out
    assert f"Status: Image is up to date for {registry.host}/sk/bb:1" in p2.out
    assert kran("pull", "-q", f"{registry.host}/sk/bb:1").out == f"{registry.host}/sk/bb:1\n"
    # by digest
    kran("rmi", "-f", busybox)
    p3 = kran("pull", f"{registry.host}/sk/bb@{digest}")
    assert p3.out.splitlines()[-1] == f"{registry.host}/sk/bb@{digest}"
    assert f"{registry.host}/sk/bb" in kran("images", "--digests").out


def test_pull_default_tag_and_all_tags(kran, busybox, registry):
    for t in ("latest", "1", "2"):
        kran("tag", "busybox", f"{registry.host}/multi:{t}")
    p = kran("push", "-a", f"{registry.host}/multi")
    assert p.out.count(": digest: sha256:") == 3
    kran("rmi", "-f", "busybox", f"{registry.host}/multi:latest", f"{registry.host}/multi:1", f"{registry.host}/multi:2")
    p = kran("pull", f"{registry.host}/multi")
    assert p.out.splitlines()[0] == "Using default tag: latest"
    assert p.out.splitlines()[-1] == f"{registry.host}/multi:latest"
    kran("pull", "-a", f"{registry.host}/multi")
    tags = kran("images", "--format", "{{.Tag}}", f"{registry.host}/multi").out.split()
    assert sorted(tags) == ["1", "2", "latest"]


def test_pull_errors(kran, registry):
    p = kran("pull", f"{registry.host}/nope:1", check=False)
    assert p.returncode == 1
    assert f"manifest for {registry.host}/nope:1 not found: manifest unknown" in p.err
    # nothing listens there
    from tests.registry.conftest import free_port

    p = kran("pull", f"127.0.0.1:{free_port()}/x", check=False)
    assert p.returncode == 1
    assert "connection refused" in p.err


def test_tampered_blob_is_refused(kran, busybox, registry):
    name = f"{registry.host}/t:1"
    kran("tag", "busybox", name)
    kran("push", name)
    raw = json.loads(_skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{name}"))
    layer = raw["layers"][0]["digest"]
    data = registry.blob_data(layer)
    b = bytearray(data.read_bytes())
    b[len(b) // 2] ^= 0xFF  # same size, different content
    data.write_bytes(bytes(b))
    kran("rmi", "-f", busybox)  # by ID: the tags and the repo digest of the push go with it
    before_images = kran("images", "-q").out
    before_blobs = _store_blobs(kran)
    p = kran("pull", name, check=False)
    assert p.returncode == 1
    assert "digest mismatch" in p.err and layer in p.err, p.err
    assert len(p.err.strip().splitlines()) == 1
    assert kran("images", "-q").out == before_images
    assert layer.split(":")[1] not in _store_blobs(kran)
    assert _store_blobs(kran) <= before_blobs
    assert not list((Path(kran.root) / "tmp").glob("blob-*"))


def test_pull_from_an_index_picks_the_host_platform(kran, busybox, registry):
    import hashlib
    import urllib.request

    from kran.image.archive import host_platform

    arch = host_platform()[1]
    other_arch = "s390x" if arch != "s390x" else "amd64"
    name = f"{registry.host}/idx:single"
    kran("tag", "busybox", name)
    kran("push", name)
    raw = _skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{name}").encode()
    mdigest = "sha256:" + hashlib.sha256(raw).hexdigest()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            # another platform first: it must not be chosen (same manifest: the registry checks references)
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": len(raw),
             "platform": {"os": "linux", "architecture": other_arch}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": len(raw),
             "platform": {"os": "linux", "architecture": arch}},
        ],
    }
    body = json.dumps(index).encode()
    req = urllib.request.Request(f"http://{registry.host}/v2/idx/manifests/multi", data=body, method="PUT",
                                 headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    urllib.request.urlopen(req).close()
    idigest = "sha256:" + hashlib.sha256(body).hexdigest()
    kran("rmi", "-f", busybox)
    p = kran("pull", f"{registry.host}/idx:multi")
    assert f"Digest: {idigest}" in p.out  # Docker records the index's digest
    info = json.loads(kran("image", "inspect", f"{registry.host}/idx:multi").out)[0]
    assert info["Id"] == busybox
    assert info["RepoDigests"] == [f"{registry.host}/idx@{idigest}"]
    p = kran("pull", "--platform", "linux/riscv64", f"{registry.host}/idx:multi", check=False)
    assert p.returncode == 1
    assert "no matching manifest for linux/riscv64" in p.err
