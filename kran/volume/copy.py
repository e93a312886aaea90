"""Tar streams of trees and files, made and applied without following symlinks out of a root.

Used by ``cp``, volume copy-up and volume export/import.  Reading: the object is opened through
an fd of its parent directory (resolved inside its root by ``kran.storage.rootpath``) and the tree
below it is read by ``layertar.write_layer`` (fd-relative, no-follow).  Writing: the tar goes to
``layertar.apply_layer(whiteout_format="none")`` with names relative to the destination's root, so
the same root-anchored walk that protects layer unpacking resolves every name (CVE-2018-15664,
CVE-2019-14271: nothing from the container is ever run, nothing is followed outside its root).
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
from typing import BinaryIO

from kran.errors import InvalidContent
from kran.storage import layertar

_SPOOL = 64 << 20  # tars up to this size stay in memory between producer and consumer


def spool() -> tempfile.SpooledTemporaryFile[bytes]:
    return tempfile.SpooledTemporaryFile(max_size=_SPOOL)


def _join(prefix: str, name: str) -> str:
    name = name.rstrip("/")
    if not prefix:
        return name
    return prefix.rstrip("/") + "/" + name if name else prefix.rstrip("/")


def _info(name: str, st: os.stat_result, keep_ids: bool) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.mtime = int(st.st_mtime)
    ti.uid, ti.gid = (st.st_uid, st.st_gid) if keep_ids else (0, 0)
    ti.uname = ti.gname = ""
    return ti


def write_tar(parent_fd: int, leaf: str, arcname: str, out: BinaryIO, *, keep_ids: bool = True,
              contents_only: bool = False) -> None:
    """Write ``leaf`` of the directory ``parent_fd`` (``""``: ``parent_fd`` itself, a directory or a
    regular file) as a tar whose
    top entry is ``arcname`` (with ``contents_only``, only a directory's children, under
    ``arcname/``).  A symlink ``leaf`` is written as a symlink; nothing is followed."""
    tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
    try:
        st = os.fstat(parent_fd) if not leaf else os.stat(leaf, dir_fd=parent_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            fd = os.dup(parent_fd) if not leaf else os.open(
                leaf, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
            try:
                if not contents_only and arcname:
                    ti = _info(arcname, os.fstat(fd), keep_ids)
                    ti.type = tarfile.DIRTYPE
                    tf.addfile(ti)
                with spool() as tmp:
                    layertar.write_layer(f"/proc/self/fd/{fd}", tmp, whiteout_format="none")
                    tmp.seek(0)
                    _copy_members(tmp, tf, arcname, keep_ids)
            finally:
                os.close(fd)
        else:
            ti = _info(arcname, st, keep_ids)
            if stat.S_ISREG(st.st_mode):
                fd = os.dup(parent_fd) if not leaf else os.open(
                    leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent_fd)
                try:
                    ti.size = os.fstat(fd).st_size
                    with os.fdopen(os.dup(fd), "rb") as f:
                        tf.addfile(ti, f)
                finally:
                    os.close(fd)
            elif stat.S_ISLNK(st.st_mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(leaf, dir_fd=parent_fd)
                tf.addfile(ti)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
                tf.addfile(ti)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                tf.addfile(ti)
            else:
                raise InvalidContent(f"cannot copy {leaf}: unsupported file type")
    finally:
        tf.close()


def _copy_members(src: BinaryIO, tf: tarfile.TarFile, prefix: str, keep_ids: bool) -> None:
    """Copy the members of the tar ``src`` into ``tf`` with ``prefix/`` before their names."""
    try:
        with tarfile.open(fileobj=src, mode="r|") as tin:
            for m in tin:
                if m.name.startswith("/"):
                    m.name = m.name.lstrip("/")
                m.name = _join(prefix, m.name)
                if m.islnk():
                    m.linkname = _join(prefix, m.linkname.lstrip("/"))
                if not keep_ids:
                    m.uid = m.gid = 0
                    m.uname = m.gname = ""
                for k in ("path", "linkpath", "uid", "gid", "uname", "gname"):
                    m.pax_headers.pop(k, None)
                tf.addfile(m, tin.extractfile(m) if m.isreg() else None)
    except tarfile.TarError as e:
        raise InvalidContent(f"invalid tar archive: {e}") from e


def prefix_tar(src: BinaryIO, prefix: str, out: BinaryIO, *, keep_ids: bool = True) -> None:
    """A tar from outside (``cp -`` on stdin) with ``prefix/`` before every name."""
    tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
    try:
        _copy_members(src, tf, prefix, keep_ids)
    finally:
        tf.close()


def apply_tar(stream: BinaryIO, root: str) -> None:
    """Unpack an uncompressed tar into the existing directory ``root`` (names relative to it;
    ``..``, absolute names and links out of ``root`` are refused)."""
    layertar.apply_layer(stream, root, whiteout_format="none")


def copy_tree(src_dir_fd: int, dst_root: str) -> None:
    """Copy the contents of a directory into ``dst_root`` keeping owners, modes, xattrs, links."""
    with spool() as tmp:
        layertar.write_layer(f"/proc/self/fd/{src_dir_fd}", tmp, whiteout_format="none")
        tmp.seek(0)
        apply_tar(tmp, dst_root)
