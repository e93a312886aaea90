"""Destinations and sources that go wrong: a backup directory that fills up, a truncated layer, a
corrupt volume blob, a broken chain built on.  Each is one line on stderr, the source untouched,
nothing half-written or half-restored.  (A flipped byte in a layer, a deleted top layer, a corrupt
index.json and a name conflict are in test_restore.py.)"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.backup.conftest import blobs, export_tree, manifest


def _one_line_error(p) -> str:
    assert p.returncode != 0, p.out
    lines = p.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.err, p.err
    return lines[0]


def _plain_words(line: str) -> str:
    """The line says what went wrong the way Docker does: no Python exception name, no errno."""
    assert "Errno" not in line and not re.search(r"\b[A-Z]\w+Error\b", line), line
    return line


@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def _leftovers(layout: Path) -> list[str]:
    """What a writer left besides the layout itself: temp files and dirs."""
    return sorted(p.name for p in layout.rglob("*") if p.name.startswith("."))


def _status(k, name: str) -> str:
    return k("inspect", "-f", "{{.State.Status}}", name).out.strip()


def _big(kran) -> None:
    """A running container that wrote 4 MB of random (incompressible) data."""
    kran("run", "-d", "--network", "none", "--name", "big", "busybox", "sh", "-c",
         "dd if=/dev/urandom of=/big bs=1M count=4 2>/dev/null && touch /written && exec sleep 3600")
    for _ in range(100):
        if kran("exec", "big", "test", "-e", "/written", check=False).returncode == 0:
            return
    pytest.fail("big never wrote its 4 MB")


# 2 MB: the container's raw copy does not fit; 6 MB: it does, the layer made from it does not
SIZES = ("2m", "6m")


def test_destination_fills_up(kran, kran2, busybox, tmp_path: Path):
    kran("run", "-d", "--network", "none", "--name", "small", "busybox", "sh", "-c",
         "echo tiny > /tiny && exec sleep 3600")
    _big(kran)
    want = export_tree(kran, "small")
    for size in SIZES:
        with _tmpfs(tmp_path / f"fs-{size}", size) as fs:
            dest = fs / "b"
            ref = kran("backup", "small", f"oci:{dest}").out.strip()
            index = (dest / "index.json").read_bytes()
            before = blobs(dest)
            for opts in ((), ("--no-pause",), ("--incremental",)):
                _one_line_error(kran("backup", *opts, "big", f"oci:{dest}", check=False))
                # thawed and running on; the directory as it was: the earlier backup, no temp files
                assert _status(kran, "big") == "running"
                assert (dest / "index.json").read_bytes() == index, (size, opts)
                assert blobs(dest) == before, (size, opts)
                assert _leftovers(dest) == [], (size, opts)
            # the earlier backup is still listed, and restorable
            assert kran("backup", "ls", "-q", f"oci:{dest}").out.split() == [ref]
            kran2("restore", f"oci:{dest}:small")
            assert export_tree(kran2, "small") == want
            kran2("rm", "-f", "small")


def test_destination_full_in_dockers_words(kran, busybox, tmp_path: Path):
    _big(kran)
    for size in SIZES:
        with _tmpfs(tmp_path / f"fs-{size}", size) as fs:
            line = _plain_words(_one_line_error(kran("backup", "big", f"oci:{fs}/b", check=False)))
            assert "no space left on device" in line and "big" in line, (size, line)


def _chain(kran, dest: Path, name: str, steps: list[str], *opts: str) -> list[str]:
    """A full backup after the first step, an incremental one after each other; their NAME:TAGs."""
    refs = []
    for i, s in enumerate(steps):
        kran("exec", name, "sh", "-c", s)
        refs.append(kran("backup", *opts, *(("--incremental",) if i else ()), name, f"oci:{dest}").out.strip())
    return refs


def _blob(dest: Path, digest: str) -> Path:
    return dest / "blobs" / "sha256" / digest.split(":")[1]


def _app_with_volume(kran, dest: Path) -> tuple[str, str]:
    """Container "app" with volume appdata backed up twice (--volumes): (top layer, volume) digests."""
    kran("run", "-d", "--network", "none", "--name", "app", "-v", "appdata:/data", "busybox", "sleep", "3600")
    _chain(kran, dest, "app", ["head -c 300000 /dev/urandom > /blob1 && echo v1 > /data/v",
                               "head -c 300000 /dev/urandom > /blob2 && echo v2 > /data/v"], "--volumes")
    info = json.loads(kran("backup", "inspect", f"oci:{dest}:app").out)[0]
    return info["Layers"][-1]["digest"], info["Volumes"][0]["digest"]


# where a blob is cut: mid-file, one byte short, inside the first tar header
CUTS = (lambda n: n // 2, lambda n: n - 1, lambda n: 1000)


def test_truncated_layer_and_corrupt_volume(kran, kran2, busybox, tmp_path: Path):
    dest = tmp_path / "b"
    top, vol = (_blob(dest, d) for d in _app_with_volume(kran, dest))
    ps_before = kran2("ps", "-aq").out

    def fails_leaving_nothing() -> None:
        _one_line_error(kran2("restore", f"oci:{dest}:app", check=False))
        assert kran2("ps", "-aq").out == ps_before
        assert kran2("volume", "ls", "-q").out.split() == []  # the volume restored first is gone again

    for blob in (top, vol):
        good = blob.read_bytes()
        for cut in CUTS:
            blob.write_bytes(good[: cut(len(good))])
            fails_leaving_nothing()
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0xFF
        blob.write_bytes(bytes(bad))
        fails_leaving_nothing()
        blob.write_bytes(good)
    # whole again: restored, and the source container was never touched
    kran2("restore", f"oci:{dest}:app")
    assert export_tree(kran2, "app", skip=("data",)) == export_tree(kran, "app", skip=("data",))
    assert _status(kran, "app") == "running"


def test_truncated_blob_named_by_its_digest(kran, kran2, busybox, tmp_path: Path):
    dest = tmp_path / "b"
    digests = _app_with_volume(kran, dest)
    for what, digest in zip(("layer 2", "volume appdata"), digests, strict=True):
        blob = _blob(dest, digest)
        good = blob.read_bytes()
        for cut in CUTS:
            blob.write_bytes(good[: cut(len(good))])
            line = _plain_words(_one_line_error(kran2("restore", f"oci:{dest}:app", check=False)))
            assert f"{what} blob {digest} does not match its digest" in line, line
        blob.write_bytes(good)


def test_broken_chain_is_not_built_on(kran, kran2, busybox, tmp_path: Path):
    """A middle link deleted: the chain's restore fails in one line (an earlier backup that does not
    need the link still restores), and the next incremental backup does not stack a new layer on
    the broken chain: it starts a new full one, with a warning."""
    dest = tmp_path / "b"
    kran("run", "-d", "--network", "none", "--name", "db", "busybox", "sleep", "3600")
    refs = _chain(kran, dest, "db", ["echo 1 > /a", "echo 2 > /b", "echo 3 > /c"])
    layers = manifest(dest, refs[2])["layers"]
    assert len(layers) == 3
    _blob(dest, layers[1]["digest"]).unlink()
    line = _one_line_error(kran2("restore", f"oci:{dest}:db", check=False))
    assert "chain is broken" in line and "layer 2 of 3" in line, line
    assert kran2("ps", "-aq").out.strip() == ""
    kran2("restore", "--name", "first", f"oci:{dest}:{refs[0]}")
    first = export_tree(kran2, "first")
    assert "a" in first and "b" not in first
    kran("exec", "db", "sh", "-c", "echo 4 > /d")
    p = kran("backup", "-v", "--incremental", "db", f"oci:{dest}")
    assert p.err.startswith("WARNING: db: ") and "broken" in p.err and len(p.err.splitlines()) == 1, p.err
    new = manifest(dest, "db:latest")["layers"]
    assert len(new) == 1 and new[0]["digest"] not in {d["digest"] for d in layers}, new
    kran2("restore", "--name", "again", f"oci:{dest}:db")
    assert export_tree(kran2, "again") == export_tree(kran, "db")
