"""Restore's configuration, volumes, prune, and bad input: each a one-line error, nothing half-made."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.backup.conftest import blobs, export_tree, manifest


def _one_line_error(p) -> str:
    assert p.returncode != 0
    lines = p.err.strip().splitlines()
    assert len(lines) == 1, p.err
    assert "Traceback" not in p.err and "Error:" not in lines[0][:6], p.err
    return lines[0]


def test_saved_configuration_is_restored(kran, busybox, tmp_path: Path):
    dest = tmp_path / "b"
    kran("network", "create", "backnet")
    kran("create", "--name", "app", "--network", "backnet", "--network-alias", "db1", "-p", "127.0.0.1:18080:80",
         "--restart", "on-failure:3", "--memory", "64m", "-l", "tier=db", "-e", "MODE=prod", "-w", "/tmp",
         "--hostname", "apphost", "busybox", "sleep", "60")
    kran("backup", "app", f"oci:{dest}")
    kran("restore", "--name", "copy", f"oci:{dest}:app")
    a, b = (json.loads(kran("inspect", n).out)[0] for n in ("app", "copy"))
    assert b["Name"] == "/copy" and b["Id"] != a["Id"]
    for k in ("PortBindings", "RestartPolicy", "Memory", "NetworkMode"):
        assert b["HostConfig"][k] == a["HostConfig"][k], k
    for k in ("Env", "Cmd", "WorkingDir", "Labels", "Hostname", "Image"):
        assert b["Config"][k] == a["Config"][k], k
    assert "db1" in b["NetworkSettings"]["Networks"]["backnet"]["Aliases"]
    assert b["Config"]["Labels"]["tier"] == "db"


def test_volumes_backed_up_deduplicated_and_restored(kran, kran2, busybox, tmp_path: Path):
    dest = tmp_path / "b"
    kran("run", "--network", "none", "--name", "vol", "-v", "vdata:/data", "busybox", "sh", "-c",
         "echo precious > /data/f && mkdir /data/d && chown 7:8 /data/d")
    kran("backup", "--volumes", "vol", f"oci:{dest}")
    info = json.loads(kran("backup", "inspect", f"oci:{dest}:vol").out)[0]
    assert [(v["Name"], v["Destination"]) for v in info["Volumes"]] == [("vdata", "/data")]
    n = len(blobs(dest))
    kran("backup", "--volumes", "--incremental", "vol", f"oci:{dest}")
    assert len(blobs(dest)) == n + 2  # a config and a manifest: the volume's tar is the same blob
    kran2("restore", "--start", f"oci:{dest}:vol")
    kran2("wait", "vol")
    vol = json.loads(kran2("volume", "inspect", "vdata").out)[0]["Mountpoint"]
    assert Path(vol, "f").read_text() == "precious\n"
    st = os.stat(Path(vol, "d"))
    assert (st.st_uid, st.st_gid) == (7, 8)
    # a second restore (another name): the volume exists now -- refused, nothing made
    p = kran2("restore", "--name", "vol2", f"oci:{dest}:vol", check=False)
    assert "volume vdata already exists" in _one_line_error(p)
    assert kran2("ps", "-aq").out.split() == [kran2("inspect", "-f", "{{.Id}}", "vol").out.strip()[:12]]


def test_prune_keeps_the_newest_and_their_chains(kran, kran2, busybox, tmp_path: Path):
    dest = tmp_path / "b"
    kran("create", "--network", "none", "--name", "aa", "busybox", "sh")
    kran("create", "--network", "none", "--name", "zz", "busybox", "sh")
    src = tmp_path / "f"
    for i in range(3):
        src.write_text(f"version {i}\n" * 50)
        kran("cp", str(src), f"aa:/v{i}")
        kran("backup", "--incremental", "aa", "zz", f"oci:{dest}")
    assert len(kran("backup", "ls", "-q", f"oci:{dest}").out.split()) == 6
    want = export_tree(kran, "aa")
    before = blobs(dest)
    p = kran("backup", "prune", "--keep", "1", f"oci:{dest}")
    assert p.out.startswith("Deleted backups:\n") and "Total reclaimed space:" in p.out
    assert len([ln for ln in p.out.splitlines() if ln.startswith(("aa:", "zz:"))]) == 4
    left = kran("backup", "ls", "-q", f"oci:{dest}").out.split()
    assert len(left) == 2 and {x.split(":")[0] for x in left} == {"aa", "zz"}
    after = blobs(dest)
    assert after < before
    # the kept incremental backup still has its whole chain of three layers
    chain = manifest(dest, "aa:latest")["layers"]
    assert len(chain) == 3 and {d["digest"] for d in chain} <= after
    kran2("restore", f"oci:{dest}:aa")
    assert export_tree(kran2, "aa") == want
    assert _one_line_error(kran("backup", "prune", "--keep", "0", f"oci:{dest}", check=False))


def test_bad_input(kran, kran2, busybox, tmp_path: Path, busybox_tar):
    dest = tmp_path / "b"
    kran("create", "--network", "none", "--name", "web", "busybox", "sh")
    src = tmp_path / "f"
    src.write_text("one\n")
    kran("cp", str(src), "web:/one")
    kran("backup", "web", f"oci:{dest}")
    src.write_text("two\n")
    kran("cp", str(src), "web:/two")
    kran("backup", "-i", "web", f"oci:{dest}")

    def fails(*args: str) -> str:
        return _one_line_error(kran2(*args, check=False))

    assert "not found" in fails("restore", f"oci:{tmp_path}/nowhere:web")
    assert "not found" in fails("backup", "ls", f"oci:{tmp_path}/nowhere")
    assert "expected oci:DIR:NAME" in fails("restore", f"oci:{dest}")
    assert "backup nope:latest not found" in fails("restore", f"oci:{dest}:nope")
    assert "is not an OCI image layout" in fails("backup", "ls", f"oci:{tmp_path}")
    # over an existing name: docker's conflict
    kran2("create", "--network", "none", "--name", "web", "busybox", "sh")
    assert 'The container name "/web" is already in use' in fails("restore", f"oci:{dest}:web")
    kran2("rm", "web")
    # a root that has never seen the base image: names the image to pull
    empty = tmp_path / "empty-root"
    from tests.conftest import Kran

    k3 = Kran(empty)
    try:
        p = k3("restore", f"oci:{dest}:web", check=False)
        assert "base image busybox" in _one_line_error(p) and "kran pull busybox" in p.err
    finally:
        import shutil

        shutil.rmtree(empty, ignore_errors=True)

    top = manifest(dest, "web:latest")["layers"][-1]["digest"].split(":")[1]
    blob = dest / "blobs" / "sha256" / top
    good = blob.read_bytes()
    # a layer whose bytes do not match its digest: refused, no container left behind
    bad = bytearray(good)
    bad[600] ^= 0xFF
    blob.write_bytes(bytes(bad))
    assert "does not match its digest" in fails("restore", f"oci:{dest}:web")
    assert kran2("ps", "-aq").out.strip() == ""
    # a chain with a missing link
    blob.unlink()
    assert "chain is broken" in fails("restore", f"oci:{dest}:web")
    assert kran2("ps", "-aq").out.strip() == ""
    blob.write_bytes(good)
    # a corrupt index.json
    idx = dest / "index.json"
    saved = idx.read_bytes()
    idx.write_bytes(saved[: len(saved) // 2])
    assert "invalid index.json" in fails("restore", f"oci:{dest}:web")
    assert "invalid index.json" in _one_line_error(kran("backup", "web", f"oci:{dest}", check=False))
    idx.write_bytes(saved)
    # the layout is whole again: the restore works
    kran2("restore", f"oci:{dest}:web")
    assert export_tree(kran2, "web") == export_tree(kran, "web")


def test_restore_start_on_a_busy_port_gets_dockers_error_and_makes_nothing(tmp_path: Path, busybox_tar: Path, netns):
    """Two roots in one network namespace ("one host"): the original still holds its published
    port, so the restored copy cannot start -- Docker's bind error, and no container is left."""
    from tests.conftest import BUSYBOX_CHANGES, _kran_fixture

    gens = [_kran_fixture(tmp_path / n, netns.path) for n in ("r1", "r2")]
    k1, k2 = (next(g) for g in gens)
    try:
        for k in (k1, k2):
            k("import", *BUSYBOX_CHANGES, str(busybox_tar), "busybox:latest")
        k1("run", "-d", "--name", "web", "-p", "127.0.0.1:18091:80", "busybox", "sleep", "300")
        k1("backup", "web", f"oci:{tmp_path / 'b'}")
        err = _one_line_error(k2("restore", "--start", f"oci:{tmp_path / 'b'}:web", check=False))
        assert "Bind for 127.0.0.1:18091 failed: port is already allocated" in err or \
            "listen tcp4 127.0.0.1:18091: bind: address already in use" in err, err
        assert k2("ps", "-aq").out.split() == []
        k1("rm", "-f", "web")
        k2("restore", "--start", f"oci:{tmp_path / 'b'}:web")  # the port is free now
        assert k2("inspect", "-f", "{{.State.Running}}", "web").out.strip() == "true"
    finally:
        for g in gens:
            next(g, None)
