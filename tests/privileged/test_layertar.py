"""kran.storage.layertar: unpacking layer tars safely, and writing them back (runs as root).

Every tar is built in memory here; every tree lives under tmp_path.  The "escape" tests keep a
sentinel directory next to the root (tmp_path/outside) and check it is left exactly as it was.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import struct
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kran.errors import InvalidContent, UnsafePath
from kran.storage.layertar import (
    LayerStats,
    apply_layer,
    compression_of,
    open_decompressed,
    write_layer,
)

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:  # pragma: no cover
    pytest.skip("needs root (chown, mknod, trusted.* xattrs)", allow_module_level=True)

T0 = 1_600_000_000
# vfs_cap_data revision 2, effective, permitted = CAP_NET_RAW (all bytes ASCII: a str for tarfile)
CAP_NET_RAW = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)


# -- helpers ----------------------------------------------------------------------------------


def entry(
    name: str,
    typ: bytes = tarfile.REGTYPE,
    *,
    data: bytes = b"",
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int | float = T0,
    linkname: str = "",
    major: int = 0,
    minor: int = 0,
    xattrs: dict[str, str] | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = typ
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.mtime = mtime
    ti.linkname = linkname
    ti.devmajor, ti.devminor = major, minor
    ti.size = len(data) if typ == tarfile.REGTYPE else 0
    if xattrs:
        ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    return ti, data


def d(name: str, **kw) -> tuple[tarfile.TarInfo, bytes]:
    kw.setdefault("mode", 0o755)
    return entry(name, tarfile.DIRTYPE, **kw)


def f(name: str, data: bytes = b"", **kw) -> tuple[tarfile.TarInfo, bytes]:
    return entry(name, tarfile.REGTYPE, data=data, **kw)


def sym(name: str, target: str, **kw) -> tuple[tarfile.TarInfo, bytes]:
    kw.setdefault("mode", 0o777)
    return entry(name, tarfile.SYMTYPE, linkname=target, **kw)


def hard(name: str, target: str, **kw) -> tuple[tarfile.TarInfo, bytes]:
    return entry(name, tarfile.LNKTYPE, linkname=target, **kw)


def make_tar(*entries: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()


class Stream:
    """A non-seekable reader that counts what was read (like the caller's hashing reader)."""

    def __init__(self, data: bytes, piece: int | None = None) -> None:
        self._b = io.BytesIO(data)
        self._piece = piece  # return at most this much per read, like a pipe
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        if self._piece and (n < 0 or n > self._piece):
            n = self._piece
        b = self._b.read(n)
        self.count += len(b)
        return b


def apply(data: bytes, root: Path, **kw) -> LayerStats:
    return apply_layer(Stream(data), root, **kw)


def tree(root: Path, seconds: bool = False) -> dict[str, dict]:
    """Everything lstat tells about each path under root (root itself excluded)."""
    out: dict[str, dict] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            rec: dict = {
                "mode": oct(st.st_mode),
                "uid": st.st_uid,
                "gid": st.st_gid,
                "mtime": st.st_mtime_ns // 10**9 if seconds else st.st_mtime_ns,
                "xattrs": {
                    k: os.getxattr(p, k, follow_symlinks=False)
                    for k in os.listxattr(p, follow_symlinks=False)
                },
            }
            if stat.S_ISREG(st.st_mode):
                rec["size"] = st.st_size
                rec["sha"] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                rec["target"] = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                rec["dev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                inodes.setdefault(st.st_ino, []).append(rel)
                rec["ino"] = st.st_ino
            out[rel] = rec
    for rec in out.values():
        if "ino" in rec:
            rec["links"] = sorted(inodes[rec.pop("ino")])
    return out


def host_state(path: Path) -> list:
    """A fingerprint of a directory outside the root, to prove it was not touched."""
    state = []
    for p in sorted([path, *path.rglob("*")]):
        st = os.lstat(p)
        state.append((str(p), st.st_mode, st.st_nlink, st.st_size, st.st_mtime_ns, st.st_uid))
        if p.is_file() and not p.is_symlink():
            state.append(p.read_bytes())
    return state


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    o = tmp_path / "outside"
    o.mkdir()
    (o / "file").write_bytes(b"secret")
    (o / "tmp").mkdir()
    return o


# -- regular trees ----------------------------------------------------------------------------


def test_files_dirs_modes_owners_times(root: Path) -> None:
    data = make_tar(
        d("./", mode=0o755),
        d("./bin/", mode=0o755, uid=0, gid=0, mtime=T0 + 1),
        f("./bin/su", b"#!su\n", mode=0o4755, mtime=T0 + 2),
        f("./bin/wall", b"w", mode=0o2755, gid=5),
        d("tmp/", mode=0o1777, mtime=T0 + 3),
        d("home/user/", mode=0o700, uid=1000, gid=1000, mtime=T0 + 4),
        f("home/user/notes", b"hello" * 1000, mode=0o600, uid=1000, gid=1000, mtime=T0 + 5),
        f("empty", b"", mode=0o640, uid=12, gid=34),
        f("frac", b"x", mtime=T0 + 0.25),
    )
    stats = apply(data, root)
    assert stats == LayerStats(entries=9, bytes=5 + 1 + 5000 + 0 + 1)

    def st(p: str) -> os.stat_result:
        return os.lstat(root / p)

    assert stat.S_IMODE(st("bin").st_mode) == 0o755 and st("bin").st_mtime_ns == (T0 + 1) * 10**9
    assert stat.S_IMODE(st("bin/su").st_mode) == 0o4755  # chmod after chown kept setuid
    assert stat.S_IMODE(st("bin/wall").st_mode) == 0o2755 and st("bin/wall").st_gid == 5
    assert (root / "bin/su").read_bytes() == b"#!su\n" and st("bin/su").st_mtime_ns == (T0 + 2) * 10**9
    assert stat.S_IMODE(st("tmp").st_mode) == 0o1777 and stat.S_ISDIR(st("tmp").st_mode)
    assert (st("home/user").st_uid, st("home/user").st_gid) == (1000, 1000)
    assert st("home/user").st_mtime_ns == (T0 + 4) * 10**9  # set after its child was written
    assert (root / "home/user/notes").read_bytes() == b"hello" * 1000
    assert stat.S_IMODE(st("home/user/notes").st_mode) == 0o600
    assert (st("empty").st_uid, st("empty").st_gid, st("empty").st_size) == (12, 34, 0)
    assert st("frac").st_mtime_ns == T0 * 10**9 + 250_000_000  # PAX mtime keeps the fraction
    # "home" had no entry: created 0755 root:root
    assert stat.S_IMODE(st("home").st_mode) == 0o755 and (st("home").st_uid, st("home").st_gid) == (0, 0)


def test_symlinks_hardlinks_devices_fifos_xattrs(root: Path) -> None:
    data = make_tar(
        d("etc/"),
        f("etc/os-release", b"ID=debian\n", uid=3, gid=4),
        sym("etc/abs", "/etc/os-release", uid=7, gid=8, mtime=T0 + 9),
        sym("etc/rel", "../etc/os-release"),
        sym("etc/dangling", "/nonexistent/x"),
        hard("etc/hard", "etc/os-release"),
        hard("./etc/hard2", "./etc/os-release"),
        entry("dev/null", tarfile.CHRTYPE, mode=0o666, major=1, minor=3),
        entry("dev/loop0", tarfile.BLKTYPE, mode=0o660, gid=6, major=7, minor=0),
        entry("run/fifo", tarfile.FIFOTYPE, mode=0o620, uid=5, mtime=T0 + 7),
        f(
            "caps",
            b"x",
            mode=0o755,
            xattrs={"user.comment": "hi", "security.capability": CAP_NET_RAW.decode()},
        ),
        d("withattr/", xattrs={"user.dir": "yes"}),
    )
    apply(data, root)
    lst = os.lstat(root / "etc/abs")
    assert os.readlink(root / "etc/abs") == "/etc/os-release"  # verbatim, not resolved
    assert (lst.st_uid, lst.st_gid, lst.st_mtime_ns) == (7, 8, (T0 + 9) * 10**9)
    assert os.readlink(root / "etc/rel") == "../etc/os-release"
    assert os.readlink(root / "etc/dangling") == "/nonexistent/x"
    a, b, c = (os.lstat(root / p) for p in ("etc/os-release", "etc/hard", "etc/hard2"))
    assert a.st_ino == b.st_ino == c.st_ino and a.st_nlink == 3
    null = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and stat.S_IMODE(null.st_mode) == 0o666
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    loop = os.lstat(root / "dev/loop0")
    assert stat.S_ISBLK(loop.st_mode) and loop.st_gid == 6 and os.major(loop.st_rdev) == 7
    fifo = os.lstat(root / "run/fifo")
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o620
    assert fifo.st_uid == 5 and fifo.st_mtime_ns == (T0 + 7) * 10**9
    assert os.getxattr(root / "caps", "user.comment") == b"hi"
    assert os.getxattr(root / "caps", "security.capability") == CAP_NET_RAW
    assert os.getxattr(root / "withattr", "user.dir") == b"yes"


def test_overlay_private_xattrs_are_not_taken_from_the_tar(root: Path) -> None:
    apply(make_tar(d("d/", xattrs={"trusted.overlay.redirect": "/x", "trusted.overlay.opaque": "y"})), root)
    assert os.listxattr(root / "d") == []


def test_non_utf8_and_long_names(root: Path) -> None:
    long_dir = "/".join(["directory-with-a-long-name"] * 8)
    odd = os.fsdecode(b"caf\xe9-latin1")
    data = make_tar(
        f(f"{long_dir}/file", b"deep"), f(odd, b"odd"), sym("l" * 150, "t" * 300), f("big-uid", uid=3_000_000)
    )
    apply(data, root)
    assert (root / long_dir / "file").read_bytes() == b"deep"
    assert (root / odd).read_bytes() == b"odd"
    assert os.readlink(root / ("l" * 150)) == "t" * 300
    assert os.lstat(root / "big-uid").st_uid == 3_000_000


def test_gnu_and_ustar_formats(root: Path) -> None:
    long = "x/" * 60 + "file"
    for fmt, sub in ((tarfile.GNU_FORMAT, "gnu"), (tarfile.USTAR_FORMAT, "ustar")):
        name = f"{sub}/{long}" if fmt == tarfile.GNU_FORMAT else f"{sub}/x/y"
        apply(make_tar(f(name, b"data", mtime=T0), sym(f"{sub}/s", "t" * 90), fmt=fmt), root)
        assert (root / name).read_bytes() == b"data"


def test_many_directories_cycle_the_fd_cache(root: Path) -> None:
    names = [f"d{i:03}" for i in range(200)]
    first = make_tar(*(f(f"{n}/a", n.encode()) for n in names))
    again = make_tar(*(f(f"{n}/sub/b", n.encode()) for n in reversed(names)))
    before = open_fds()
    apply(first, root)
    apply(again, root)
    assert open_fds() == before
    for n in names:
        assert (root / n / "a").read_bytes() == (root / n / "sub/b").read_bytes() == n.encode()


def test_modes_and_owners_ignore_umask_and_setgid_parents(root: Path) -> None:
    old = os.umask(0o077)
    try:
        apply(
            make_tar(
                d("shared/", mode=0o2775, gid=50),
                f("shared/file", b"x", mode=0o644),  # root:root, not the dir's group
                f("shared/exe", b"x", mode=0o755, uid=1, gid=1),
                d("shared/sub/", mode=0o755),  # not setgid, though its parent is
                f("shared/sub/file", b"x", mode=0o664),
                f("shared/implicit/file", b"x", mode=0o640),  # the implicit dir: 0755 root:root
                f("implicit/file", b"x", mode=0o666),
            ),
            root,
        )
    finally:
        os.umask(old)
    for p, mode, gid in (
        ("shared/file", 0o644, 0),
        ("shared/exe", 0o755, 1),
        ("shared/sub", 0o755, 0),
        ("shared/sub/file", 0o664, 0),
        ("implicit", 0o755, 0),
        ("shared/implicit", 0o755, 0),
        ("shared/implicit/file", 0o640, 0),
        ("implicit/file", 0o666, 0),
    ):
        st = os.lstat(root / p)
        assert (oct(stat.S_IMODE(st.st_mode)), st.st_gid) == (oct(mode), gid), p


def test_applying_onto_a_tree_keeps_owners(root: Path) -> None:
    # a second layer applied onto the first (flattening): the setgid dir is not this run's
    apply(make_tar(d("shared/", mode=0o2775, gid=50)), root, whiteout_format="none")
    apply(make_tar(f("shared/file", b"x", mode=0o644)), root, whiteout_format="none")
    assert os.lstat(root / "shared/file").st_gid == 0


def _acl(*entries: tuple[int, int]) -> bytes:
    """A POSIX ACL xattr value (linux/posix_acl_xattr.h): version 2, then tag/perm/id entries."""
    return struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", tag, perm, 0xFFFFFFFF) for tag, perm in entries
    )


def test_default_acl_does_not_change_modes(root: Path, tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    no_other = _acl((0x01, 7), (0x04, 7), (0x20, 0))  # user::rwx group::rwx other::---
    try:
        os.setxattr(probe, "system.posix_acl_default", no_other)
    except OSError:
        pytest.skip("no POSIX ACLs on this filesystem")
    acl = {"system.posix_acl_default": os.fsdecode(no_other)}
    apply(make_tar(d("acl/", xattrs=acl), f("acl/file", b"x", mode=0o644)), root)
    assert os.getxattr(root / "acl", "system.posix_acl_default") == no_other
    assert stat.S_IMODE(os.lstat(root / "acl/file").st_mode) == 0o644


def test_libarchive_xattrs_and_gnu_base256(root: Path) -> None:
    import base64

    ti, data = f("la", b"x")
    ti.pax_headers = {"LIBARCHIVE.xattr.user.with%20space": base64.b64encode(b"v\x00v").decode().rstrip("=")}
    apply(make_tar((ti, data)), root)
    assert os.getxattr(root / "la", "user.with space") == b"v\x00v"
    apply(make_tar(f("big", b"y", uid=40_000_000, gid=3_000_000), fmt=tarfile.GNU_FORMAT), root)
    assert (os.lstat(root / "big").st_uid, os.lstat(root / "big").st_gid) == (40_000_000, 3_000_000)


def test_root_entry_sets_root_metadata(root: Path) -> None:
    apply(make_tar(d("./", mode=0o750, uid=9, gid=9, mtime=T0), f("x")), root)
    st = os.lstat(root)
    assert stat.S_IMODE(st.st_mode) == 0o750 and st.st_uid == 9 and st.st_mtime_ns == T0 * 10**9


# -- replacing --------------------------------------------------------------------------------


def test_replacing_existing_entries(root: Path) -> None:
    apply(
        make_tar(
            f("file-then-dir", b"f"),
            d("dir-then-file/"),
            f("dir-then-file/child", b"c"),
            d("link-then-dir/"),
            sym("dir-then-link", "/somewhere"),
            d("dir-stays/", mode=0o700),
            f("dir-stays/keep", b"k"),
            f("hardlinked", b"shared"),
            hard("other-name", "hardlinked"),
        ),
        root,
    )
    apply(
        make_tar(
            d("file-then-dir/", mode=0o711),
            f("file-then-dir/new", b"n"),
            f("dir-then-file", b"now a file"),
            sym("link-then-dir", "elsewhere"),
            d("dir-then-link/"),
            d("dir-stays/", mode=0o755, uid=4),
            f("hardlinked", b"replaced"),
        ),
        root,
    )
    assert stat.S_IMODE(os.lstat(root / "file-then-dir").st_mode) == 0o711
    assert (root / "file-then-dir/new").read_bytes() == b"n"
    assert (root / "dir-then-file").read_bytes() == b"now a file"
    assert os.readlink(root / "link-then-dir") == "elsewhere"
    assert stat.S_ISDIR(os.lstat(root / "dir-then-link").st_mode)
    assert (root / "dir-stays/keep").read_bytes() == b"k"  # dir over dir: kept, metadata updated
    assert (
        os.lstat(root / "dir-stays").st_uid == 4
        and stat.S_IMODE(os.lstat(root / "dir-stays").st_mode) == 0o755
    )
    # a new file replaces the old name; the other hard link keeps the old content
    assert (root / "hardlinked").read_bytes() == b"replaced"
    assert (root / "other-name").read_bytes() == b"shared"


# -- whiteouts --------------------------------------------------------------------------------


def test_overlay_whiteouts(root: Path) -> None:
    data = make_tar(
        d("opaque/", mode=0o750),
        f("opaque/.wh..wh..opq"),
        f("opaque/fresh", b"f"),
        f(".wh.gone"),
        d("sub/"),
        f("sub/.wh.x"),
        f("marker-only/.wh..wh..opq"),  # its dir had no entry: created
        f(".wh..wh.plnk"),  # AUFS hard link metadata: ignored
    )
    apply(data, root)
    assert os.getxattr(root / "opaque", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(root / "marker-only", "trusted.overlay.opaque") == b"y"
    assert (root / "opaque/fresh").read_bytes() == b"f"
    for p in ("gone", "sub/x"):
        st = os.lstat(root / p)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
        assert stat.S_IMODE(st.st_mode) == 0 and (st.st_uid, st.st_gid) == (0, 0)
    names = {str(p.relative_to(root)) for p in root.rglob("*")}
    assert not [n for n in names if ".wh." in n]
    assert "opaque/.wh..wh..opq" not in names


def test_whiteout_does_not_hide_its_own_layer(root: Path) -> None:
    # image-spec: a whiteout hides only lower layers' files, whichever comes first in the tar
    apply(make_tar(f("a", b"kept"), f(".wh.a"), f(".wh.b"), f("b", b"also kept")), root)
    assert (root / "a").read_bytes() == b"kept"
    assert (root / "b").read_bytes() == b"also kept"


def test_whiteouts_replace_lower_content_when_applied_on_top(root: Path) -> None:
    apply(make_tar(d("dir/"), f("dir/x"), sym("link", "/"), f("file")), root)
    apply(make_tar(f(".wh.dir"), f(".wh.link"), f(".wh.file")), root)
    for p in ("dir", "link", "file"):
        assert os.lstat(root / p).st_rdev == 0 and stat.S_ISCHR(os.lstat(root / p).st_mode)


def test_whiteout_format_none_flattens(root: Path) -> None:
    lower = make_tar(d("etc/"), f("etc/old"), d("var/"), f("var/a"), f("var/b"), f("keep"))
    upper = make_tar(f("etc/.wh.old"), d("var/"), f("var/.wh..wh..opq"), f("var/new", b"n"), f(".wh.nothing"))
    apply(lower, root, whiteout_format="none")
    apply(upper, root, whiteout_format="none")
    assert sorted(os.listdir(root)) == ["etc", "keep", "var"]
    assert os.listdir(root / "etc") == []
    assert os.listdir(root / "var") == ["new"]
    assert os.listxattr(root / "var") == []


# -- compression and streaming ----------------------------------------------------------------


SAMPLE = make_tar(d("a/"), f("a/b", os.urandom(3000) + b"z" * 200_000), sym("a/c", "b"))


def _zstd(data: bytes, frames: int = 1) -> bytes:
    import zstandard

    step = -(-len(data) // frames)
    c = zstandard.ZstdCompressor(level=3, write_checksum=True)
    return b"".join(c.compress(data[i : i + step]) for i in range(0, len(data), step))


@pytest.mark.parametrize(
    ("kind", "blob"),
    [
        ("none", SAMPLE),
        ("gzip", gzip.compress(SAMPLE)),
        ("gzip", gzip.compress(SAMPLE[:5000]) + gzip.compress(SAMPLE[5000:]) + b"\0" * 100),
        ("zstd", _zstd(SAMPLE)),
        ("zstd", _zstd(SAMPLE, frames=3)),
    ],
    ids=["plain", "gzip", "gzip-multimember", "zstd", "zstd-frames"],
)
def test_open_decompressed(root: Path, kind: str, blob: bytes) -> None:
    assert compression_of(blob[:4]) == kind
    src = Stream(blob, piece=1000)  # short reads, no seek
    stream = open_decompressed(src)  # type: ignore[arg-type]
    out = b""
    while chunk := stream.read(70_000):
        out += chunk
    assert out == SAMPLE and src.count == len(blob)
    apply_layer(open_decompressed(Stream(blob)), root)  # type: ignore[arg-type]
    assert os.readlink(root / "a/c") == "b"


def test_compression_of() -> None:
    assert compression_of(b"") == "none"
    assert compression_of(b"\x1f") == "none"
    assert compression_of(b"\x1f\x8b") == "gzip"
    assert compression_of(b"\x28\xb5\x2f\xfd\x00") == "zstd"
    assert compression_of(b"ustar") == "none"


@pytest.mark.parametrize(
    "blob",
    [gzip.compress(SAMPLE)[:-20], gzip.compress(SAMPLE)[:50], _zstd(SAMPLE)[:-10], _zstd(SAMPLE, 3)[:-300]],
    ids=["gzip-trailer", "gzip-early", "zstd-end", "zstd-frame"],
)
def test_truncated_compressed_streams(blob: bytes) -> None:
    stream = open_decompressed(Stream(blob))  # type: ignore[arg-type]
    with pytest.raises(InvalidContent):
        while stream.read(1 << 16):
            pass


def test_corrupt_compressed_streams() -> None:
    z = bytearray(gzip.compress(SAMPLE))
    z[len(z) // 2] ^= 0xFF
    with pytest.raises(InvalidContent):
        open_decompressed(Stream(bytes(z))).read()  # type: ignore[arg-type]
    with pytest.raises(InvalidContent):  # garbage after the last member
        open_decompressed(Stream(gzip.compress(SAMPLE) + b"garbage")).read()  # type: ignore[arg-type]


def test_stream_consumed_to_the_end(root: Path) -> None:
    data = SAMPLE + bytes(7 * 512 + 100)  # padding after the end-of-archive marker
    src = Stream(data, piece=4096)
    apply_layer(src, root)  # type: ignore[arg-type]
    assert src.count == len(data)


def test_tar_without_end_marker_is_accepted(root: Path) -> None:
    raw = make_tar(f("a", b"x" * 600), f("b"))
    body = raw[: 512 * 4]  # two headers and a file's data + padding, no zero blocks
    apply(body, root)
    assert (root / "a").read_bytes() == b"x" * 600 and (root / "b").exists()


# -- bad input: refused, host untouched -------------------------------------------------------


# Entries aimed at the real /tmp use this name, unique to kran's tests: if the code ever broke,
# the test sees the file on the host (and removes it) instead of clobbering something real.
PROBE = "kran-layertar-escape-probe"


@pytest.fixture
def host_probe() -> Iterator[Path]:
    probe = Path("/tmp", PROBE)
    assert not probe.exists(), f"{probe} exists before the test"
    yield probe
    if probe.exists():
        probe.unlink()
        pytest.fail(f"a layer wrote {probe} on the host")


ESCAPES = {
    "dotdot": [f("../x", b"pwned")],
    "absolute": [f("/abs", b"pwned")],
    "dotdot-inner": [f("a/../../x", b"pwned")],
    "dotdot-to-outside": [f("../outside/file", b"pwned")],
    "symlink-relative-out": [sym("a", "../outside"), f("a/pwned", b"pwned")],
    "symlink-deep-out": [sym("a", "../../../../../../.."), f(f"a/tmp/{PROBE}", b"pwned")],
    "symlink-chain-out": [d("in/"), sym("in/up", ".."), sym("b", "in/up/in/up/.."), f("b/file", b"pwned")],
    "hardlink-out": [hard("h", "../outside/file")],
    "hardlink-abs": [hard("h", "/outside/file")],
    "hardlink-through-symlink-dir": [sym("s", "../outside"), hard("h", "s/file")],
    "symlink-loop": [sym("loop", "loop"), f("loop/x")],
    "symlink-pingpong": [sym("p", "q"), sym("q", "p"), f("p/x")],
    "whiteout-dotdot": [f("a/.wh..."), f("x")],
}


@pytest.mark.parametrize("entries", ESCAPES.values(), ids=ESCAPES.keys())
def test_escapes_are_refused(
    tmp_path: Path, root: Path, outside: Path, host_probe: Path, entries: list
) -> None:
    before, listing, fds = host_state(outside), sorted(os.listdir(tmp_path)), open_fds()
    with pytest.raises(UnsafePath):
        apply(make_tar(*entries), root)
    assert host_state(outside) == before
    assert sorted(os.listdir(tmp_path)) == listing
    assert open_fds() == fds


def test_absolute_symlink_stays_inside(tmp_path: Path, root: Path, outside: Path, host_probe: Path) -> None:
    before = host_state(outside)
    # "a -> /" and "b -> /.../outside": the writes through them land under root, as in a chroot
    apply(
        make_tar(sym("a", "/"), f(f"a/tmp/{PROBE}", b"in"), sym("b", str(outside)), f("b/file", b"in")), root
    )
    assert (root / "tmp" / PROBE).read_bytes() == b"in"
    assert not host_probe.exists()
    assert (root / str(outside).lstrip("/") / "file").read_bytes() == b"in"
    assert host_state(outside) == before
    assert sorted(os.listdir(tmp_path)) == ["outside", "root"]


def test_symlink_climbing_inside_the_root_is_followed(root: Path) -> None:
    apply(make_tar(d("a/b/"), sym("a/b/up", "../.."), f("a/b/up/top", b"t")), root)
    assert (root / "top").read_bytes() == b"t"


def test_hardlink_to_symlink_links_the_symlink(root: Path, outside: Path) -> None:
    before = host_state(outside)
    apply(
        make_tar(
            sym("s", "../outside/file"), hard("h", "s"), sym("abs", str(outside / "file")), hard("h2", "abs")
        ),
        root,
    )
    for link, target in (("h", "s"), ("h2", "abs")):
        assert os.path.islink(root / link)
        assert os.lstat(root / link).st_ino == os.lstat(root / target).st_ino
    assert os.lstat(outside / "file").st_nlink == 1
    assert host_state(outside) == before


def test_hardlink_target_must_exist(root: Path, outside: Path) -> None:
    with pytest.raises(InvalidContent, match="hardlink target not found"):
        apply(make_tar(hard("h", "missing")), root)
    with pytest.raises(InvalidContent, match="hardlink target not found"):
        apply(make_tar(hard("h2", "no/such/dir/file")), root)
    assert not (root / "no").exists()  # resolving a link target creates nothing
    with pytest.raises(InvalidContent, match="directory"):
        apply(make_tar(d("adir/"), hard("h3", "adir")), root)


def _corrupt(data: bytes, offset: int) -> bytes:
    b = bytearray(data)
    b[offset] ^= 0x55
    return bytes(b)


def _with_pax(name: str, headers: dict[str, str]) -> bytes:
    ti, data = f(name)
    ti.pax_headers = headers
    return make_tar((ti, data))


TWO = make_tar(f("first", b"1" * 1000), f("second", b"2" * 10))
BAD = {
    "duplicate": (make_tar(f("a"), f("./a")), "duplicate entry in layer: a"),
    "duplicate-dir": (make_tar(d("d/"), d("d")), "duplicate entry in layer: d"),
    "truncated-data": (TWO[: 1536 + 512 + 5], "unexpected end of data"),
    "truncated-header": (TWO[: 1536 + 1024 + 100], "unexpected end of data"),
    "truncated-first-data": (TWO[: 1024 + 700], "unexpected end of data"),
    "bad-first-header": (_corrupt(TWO, 10), "checksum"),
    "bad-later-header": (_corrupt(TWO, 1536 + 3), "checksum"),
    "zero-block-then-data": (bytes(512) + TWO, "zero block"),
    "sparse": (
        make_tar(entry("s", tarfile.GNUTYPE_SPARSE), fmt=tarfile.GNU_FORMAT),
        "unsupported entry type",
    ),
    "symlink-root": (make_tar(sym("./", "x")), "root"),
    "through-file": (make_tar(f("file"), f("file/x")), "not a directory"),
    "bad-pax-record": (re.sub(rb"\d+ comment=", b"99 comment=", _with_pax("c", {"comment": "hello"})), "PAX"),
    "pax-then-eof": (make_tar(f("p" * 200))[:1024], "extended header"),
}


@pytest.mark.parametrize(("data", "message"), BAD.values(), ids=BAD.keys())
def test_bad_tars(tmp_path: Path, root: Path, outside: Path, data: bytes, message: str) -> None:
    before, fds = host_state(outside), open_fds()
    with pytest.raises(InvalidContent, match=message) as exc:
        apply(data, root)
    assert "\n" not in str(exc.value)
    assert host_state(outside) == before
    assert sorted(os.listdir(tmp_path)) == ["outside", "root"]
    assert open_fds() == fds


def test_bad_tar_offsets() -> None:
    # the offsets used in BAD: the second member's header is at 1536, its data at 2048
    with tarfile.open(fileobj=io.BytesIO(TWO)) as tf:
        assert [(m.offset, m.offset_data) for m in tf.getmembers()] == [(0, 512), (1536, 2048)]


def test_unknown_whiteout_format(root: Path) -> None:
    from kran.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        apply(SAMPLE, root, whiteout_format="aufs")


# -- writing, and round trips -----------------------------------------------------------------


FULL = make_tar(  # grouped by directory, as real layers are (GNU tar sets a dir's mtime on leaving it)
    d("a" * 120 + "/"),
    f("a" * 120 + "/" + "b" * 90, b"long"),
    d("dev/"),
    entry("dev/null", tarfile.CHRTYPE, mode=0o666, major=1, minor=3),
    entry("dev/sda", tarfile.BLKTYPE, mode=0o660, major=8, minor=0, gid=6),
    d("etc/", mode=0o755, mtime=T0 + 1),
    f("etc/passwd", b"root:x:0:0\n", mtime=T0 + 2),
    hard("etc/passwd-", "etc/passwd"),
    sym("etc/localtime", "/usr/share/zoneinfo/UTC", uid=1, gid=2, mtime=T0 + 3),
    f("etc/shadow", b"secret", mode=0o640, gid=42),
    d("home/", mode=0o711),
    d("home/u/", mode=0o700, uid=1000, gid=1000, mtime=T0 + 4),
    f("home/u/big", os.urandom(300_000), uid=1000, gid=1000),
    d("run/"),
    entry("run/initctl", tarfile.FIFOTYPE, mode=0o600),
    d("tmp/", mode=0o1777),
    d("usr/", mode=0o755),
    d("usr/bin/", mode=0o755),
    f("usr/bin/sudo", b"\x7fELF", mode=0o4755, xattrs={"user.note": "suid"}),
    f("usr/bin/ping", b"\x7fELF", mode=0o755, xattrs={"security.capability": CAP_NET_RAW.decode()}),
    d("var/", mode=0o755, xattrs={"user.dir": "1"}),
)
WHITEOUTS = make_tar(
    d("opaque/", mode=0o705, uid=3),
    f("opaque/.wh..wh..opq"),
    f("opaque/in", b"i"),
    f(".wh.gone"),
    d("sub/"),
    f("sub/.wh.x"),
)


def test_round_trip(tmp_path: Path, root: Path) -> None:
    apply(FULL, root)
    apply(WHITEOUTS, root)
    out = io.BytesIO()
    write_layer(root, out)
    again = tmp_path / "again"
    again.mkdir()
    apply(out.getvalue(), again)
    assert tree(again, seconds=True) == tree(root, seconds=True)  # write_layer keeps whole seconds
    # deterministic
    out2 = io.BytesIO()
    write_layer(root, out2)
    assert out2.getvalue() == out.getvalue()


def test_written_tar_format(root: Path) -> None:
    apply(FULL, root)
    apply(WHITEOUTS, root)
    out = io.BytesIO()
    write_layer(root, out)
    out.seek(0)
    with tarfile.open(fileobj=out, mode="r:") as tf:
        members = tf.getmembers()
    names = [m.name + ("/" if m.isdir() else "") for m in members]
    by = {m.name: m for m in members}
    assert not [n for n in names if n.startswith(("./", "/"))]
    assert by["etc"].isdir() and by["etc"].pax_headers == {}
    assert by["etc/passwd-"].islnk() and by["etc/passwd-"].linkname == "etc/passwd"
    assert by["etc/localtime"].issym() and by["etc/localtime"].linkname == "/usr/share/zoneinfo/UTC"
    assert by["usr/bin/sudo"].mode == 0o4755
    assert by["usr/bin/sudo"].pax_headers["SCHILY.xattr.user.note"] == "suid"
    assert by["dev/sda"].isblk() and (by["dev/sda"].devmajor, by["dev/sda"].devminor) == (8, 0)
    assert by["run/initctl"].isfifo()
    assert by[".wh.gone"].isreg() and by[".wh.gone"].size == 0 and by[".wh.gone"].mode == 0o600
    assert by["sub/.wh.x"].isreg()
    assert by["opaque/.wh..wh..opq"].isreg()
    assert names.index("opaque/.wh..wh..opq") == names.index("opaque/") + 1
    assert "gone" not in by and "sub/x" not in by
    assert all(not k.startswith("SCHILY.xattr.trusted.overlay") for m in members for k in m.pax_headers)
    assert by["a" * 120 + "/" + "b" * 90].size == 4
    # depth-first, each directory in byte order
    assert names == sorted(names, key=lambda n: n.rstrip("/").encode().split(b"/"))
    raw = out.getvalue()
    assert raw[257:263] == b"ustar\0"  # POSIX ustar/pax headers


def test_write_none_format_keeps_kernel_form(tmp_path: Path, root: Path) -> None:
    apply(WHITEOUTS, root)
    out = io.BytesIO()
    write_layer(root, out, whiteout_format="none")
    out.seek(0)
    with tarfile.open(fileobj=out, mode="r:") as tf:
        by = {m.name: m for m in tf.getmembers()}
    assert by["gone"].ischr() and ".wh.gone" not in by and "opaque/.wh..wh..opq" not in by


def test_write_layer_does_not_follow_symlinks(tmp_path: Path, root: Path, outside: Path) -> None:
    os.symlink(outside, root / "link")
    os.symlink(outside / "file", root / "flink")
    (root / "d").mkdir()
    out = io.BytesIO()
    write_layer(root, out)
    out.seek(0)
    with tarfile.open(fileobj=out, mode="r:") as tf:
        assert sorted(tf.getnames()) == ["d", "flink", "link"]
    assert b"secret" not in out.getvalue()


def test_write_layer_hardlinks_nonregular_and_skips_sockets(tmp_path: Path, root: Path) -> None:
    import socket

    os.mkfifo(root / "fifo")
    os.link(root / "fifo", root / "fifo2")
    os.symlink("t", root / "s")
    os.link(root / "s", root / "s2", follow_symlinks=False)
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "sock"))
        out = io.BytesIO()
        write_layer(root, out)
    finally:
        sock.close()
    os.unlink(root / "sock")
    again = tmp_path / "again"
    again.mkdir()
    apply(out.getvalue(), again)
    assert tree(again, seconds=True) == tree(root, seconds=True)  # write_layer keeps whole seconds


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar not installed")
def test_same_tree_as_gnu_tar(tmp_path: Path, root: Path) -> None:
    archive = tmp_path / "layer.tar"
    archive.write_bytes(FULL)
    gnu = tmp_path / "gnu"
    gnu.mkdir()
    subprocess.run(
        ["tar", "-xpf", archive, "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", gnu],
        check=True,
        capture_output=True,
    )
    apply(FULL, root)
    ours, theirs = tree(root), tree(gnu)
    assert ours == theirs


def test_round_trip_odd_names_owners_times(tmp_path: Path, root: Path) -> None:
    odd = os.fsdecode(b"\xff\xfe-not-utf8")
    deep = "/".join(["d" * 60] * 5)  # 304 bytes: needs a PAX path
    (root / deep).mkdir(parents=True)
    (root / deep / "f").write_bytes(b"deep")
    (root / odd).write_bytes(b"odd")
    os.symlink("x" * 200, root / "long-target")
    os.symlink(odd, root / "odd-target")
    (root / "owners").write_bytes(b"")
    os.chown(root / "owners", 5_000_000, 7_000_000)
    os.utime(root / "owners", ns=(0, -86_400 * 10**9))  # before 1970: PAX mtime
    os.link(root / deep / "f", root / "link-to-deep")
    out = io.BytesIO()
    write_layer(root, out)
    again = tmp_path / "again"
    again.mkdir()
    apply(out.getvalue(), again)
    assert tree(again, seconds=True) == tree(root, seconds=True)
    assert os.lstat(again / "owners").st_mtime_ns == -86_400 * 10**9


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar not installed")
def test_gnu_tar_reads_what_write_layer_writes(tmp_path: Path, root: Path) -> None:
    apply(FULL, root)
    archive = tmp_path / "ours.tar"
    with open(archive, "wb") as out:
        write_layer(root, out)
    gnu = tmp_path / "gnu"
    gnu.mkdir()
    subprocess.run(
        ["tar", "-xpf", archive, "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", gnu],
        check=True,
        capture_output=True,
    )
    assert tree(gnu) == tree(root, seconds=False)


def test_write_layer_live_tree_changing_while_read(tmp_path: Path, root: Path) -> None:
    """live=True (a running container read without freezing it): files removed, replaced and
    truncated while the tree is written are left out or taken as they are, never an error; the
    files that stay put are all there, whole."""
    import threading

    for i in range(300):
        (root / f"keep{i:03d}").write_bytes(b"k" * 100)
    (root / "spool").mkdir()
    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            p = root / "spool" / f"j{n % 50}"
            p.write_bytes(b"y" * 8192)
            if n % 3 == 0:
                os.truncate(p, 10)  # shrinks while perhaps being read
            if n % 2:
                p.unlink()
            d = root / "spool" / f"d{n % 7}"
            d.mkdir(exist_ok=True)
            d.rmdir()

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(100):
            buf = io.BytesIO()
            write_layer(root, buf, live=True)
            buf.seek(0)
            with tarfile.open(fileobj=buf) as tf:
                members = {m.name: m for m in tf}
                assert all(tf.extractfile(members[f"keep{i:03d}"]).read() == b"k" * 100 for i in range(300))
                assert all(m.size == len(tf.extractfile(m).read()) for m in members.values() if m.isfile())
    finally:
        stop.set()
        t.join()
