"""kran's archives against independent tools: skopeo reads and writes them, umoci unpacks them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import tree


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is required for the interop tests (apt-get install {tool})")


def _upper(kran, name: str) -> Path:
    info = json.loads(kran("image", "inspect", name).out)[0]
    return Path(info["GraphDriver"]["Data"]["UpperDir"])


def test_skopeo_reads_kran_save(kran, busybox, tmp_path):
    _need("skopeo")
    archive = tmp_path / "bb.tar"
    kran("save", "-o", str(archive), "busybox:latest")
    layers = json.loads(kran("image", "inspect", "busybox").out)[0]["RootFS"]["Layers"]
    d = json.loads(_run("skopeo", "inspect", f"docker-archive:{archive}"))
    assert d["Layers"] == layers
    assert d["Os"] == "linux"
    cfg = json.loads(_run("skopeo", "inspect", "--config", f"docker-archive:{archive}"))
    assert cfg["config"]["Cmd"] == ["sh"]
    o = json.loads(_run("skopeo", "inspect", f"oci-archive:{archive}"))
    assert o["Layers"] == layers
    ocfg = json.loads(_run("skopeo", "inspect", "--config", f"oci-archive:{archive}"))
    assert ocfg["rootfs"]["diff_ids"] == layers


def test_umoci_unpacks_kran_save(kran, busybox, tmp_path):
    _need("umoci")
    archive = tmp_path / "bb.tar"
    kran("save", "-o", str(archive), "busybox:latest")
    layout = tmp_path / "layout"
    layout.mkdir()
    _run("tar", "-xf", str(archive), "-C", str(layout))
    bundle = tmp_path / "bundle"
    _run("umoci", "unpack", "--image", f"{layout}:latest", str(bundle))
    assert tree(bundle / "rootfs") == tree(_upper(kran, "busybox"))


@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_kran_loads_what_skopeo_writes(kran, busybox, tmp_path, transport):
    _need("skopeo")
    src = tmp_path / "src.tar"
    kran("save", "-o", str(src), "busybox:latest")
    out = tmp_path / "skopeo.tar"
    dest = f"{transport}:{out}:" + ("copied:v1" if transport == "docker-archive" else "docker.io/library/copied:v1")
    _run("skopeo", "copy", "--quiet", f"docker-archive:{src}", dest)
    original = tree(_upper(kran, "busybox"))
    kran("rmi", "busybox")
    r = kran("load", "-i", str(out))
    assert r.out == "Loaded image: copied:v1\n"
    assert tree(_upper(kran, "copied:v1")) == original


def test_oci_layout_with_whiteouts_from_umoci(kran, busybox_tar, tmp_path):
    """umoci builds a two-layer image that deletes a file and a dir; kran's overlay of it matches."""
    _need("umoci")
    layout = tmp_path / "layout"
    _run("umoci", "init", "--layout", str(layout))
    _run("umoci", "new", "--image", f"{layout}:base")
    b1 = tmp_path / "b1"
    _run("umoci", "unpack", "--image", f"{layout}:base", str(b1))
    _run("tar", "--numeric-owner", "-xpf", str(busybox_tar), "-C", str(b1 / "rootfs"))
    (b1 / "rootfs" / "etc" / "gone").write_text("bye")
    (b1 / "rootfs" / "opq").mkdir()
    (b1 / "rootfs" / "opq" / "old").write_text("old")
    for p in (b1 / "rootfs" / "etc" / "gone", b1 / "rootfs" / "opq" / "old"):
        os.utime(p, (1700000000, 1700000000))
    _run("umoci", "repack", "--image", f"{layout}:base", str(b1))
    b2 = tmp_path / "b2"
    _run("umoci", "unpack", "--image", f"{layout}:base", str(b2))
    (b2 / "rootfs" / "etc" / "gone").unlink()
    shutil.rmtree(b2 / "rootfs" / "var" / "www")
    (b2 / "rootfs" / "new").write_text("new")
    os.utime(b2 / "rootfs" / "new", (1700000000, 1700000000))  # whole seconds: tar writers round sub-seconds
    _run("umoci", "repack", "--image", f"{layout}:top", str(b2))
    expected = tree(b2 / "rootfs")
    archive = tmp_path / "layout.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(layout, arcname=".")
    r = kran("load", "-i", str(archive), check=False)
    # the layout holds two tags (base, top); bare tags name no repository, so both load untagged
    assert r.returncode == 0, r.err
    ids = [line.split()[-1] for line in r.out.splitlines()]
    assert len(ids) == 2 and all(i.startswith("sha256:") for i in ids)
    infos = [json.loads(kran("image", "inspect", i).out)[0] for i in ids]
    top = max(infos, key=lambda i: len(i["RootFS"]["Layers"]))
    upper = Path(top["GraphDriver"]["Data"]["UpperDir"])
    lowers = top["GraphDriver"]["Data"]["LowerDir"]
    # the top layer holds kernel-form whiteouts for what it deleted
    wh = os.lstat(upper / "etc" / "gone")
    assert os.major(wh.st_rdev) == 0 and os.minor(wh.st_rdev) == 0
    merged = tmp_path / "merged"
    merged.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={upper}:{lowers}", str(merged)], check=True)
    try:
        got = tree(merged)
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert got == expected
