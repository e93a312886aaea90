"""Fixtures for the backup tests: a second kran root (another host) with busybox imported, and the
merged filesystem of a container as a comparable tree (read through `kran export`, as a user would)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_CHANGES, Kran, _kran_fixture
from tests.network.conftest import netns  # noqa: F401 - a fixture of the busy-port test

# what kran writes into every container itself (mount points, hostname): not the container's data
INIT = {"etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv", "etc/mtab"}


@pytest.fixture
def kran2(tmp_path: Path, busybox_tar: Path) -> Kran:
    """A second, independent kran root -- "another host" -- that has busybox (imported there, so its
    image ID differs from the first root's; the filesystem is the same)."""
    gen = _kran_fixture(tmp_path / "root2")
    k = next(gen)
    try:
        k("import", *BUSYBOX_CHANGES, str(busybox_tar), "busybox:latest")
        yield k
    finally:
        next(gen, None)


def export_tree(k: Kran, name: str, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """The container's whole filesystem as ``kran export`` gives it: per path its type, mode, owner,
    link target, and for files size, mtime and content hash (directory mtimes are left out: starting a
    container writes its init files into /etc)."""
    p = k("export", name)
    out: dict[str, tuple] = {}
    with tarfile.open(fileobj=io.BytesIO(p.stdout), mode="r:") as t:
        for m in t:
            n = m.name.lstrip("./").rstrip("/")
            if not n or n in INIT or any(n == s or n.startswith(s + "/") for s in skip):
                continue
            data = t.extractfile(m).read() if m.isfile() else b""
            xattrs = tuple(sorted((k2, v) for k2, v in m.pax_headers.items() if k2.startswith("SCHILY.xattr.")))
            out[n] = (m.type, m.mode, m.uid, m.gid, m.linkname if m.issym() or m.islnk() else "",
                      (m.size, int(m.mtime), hashlib.sha256(data).hexdigest()) if m.isfile() else None, xattrs)
    return out


def manifest(layout: Path, ref: str) -> dict:
    idx = json.loads((layout / "index.json").read_text())
    dg = next(m["digest"] for m in idx["manifests"]
              if m["annotations"]["org.opencontainers.image.ref.name"] == ref)
    return json.loads((layout / "blobs" / "sha256" / dg.split(":")[1]).read_text())


def blobs(layout: Path) -> set[str]:
    return {"sha256:" + p.name for p in (layout / "blobs" / "sha256").iterdir()}


def dir_bytes(layout: Path) -> int:
    return sum(p.stat().st_size for p in layout.rglob("*") if p.is_file())
