"""Filesystem syscalls Python's os module lacks."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_libc = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        try:  # find_library("c") would run `ldconfig -p`: a process per CLI call
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:
            _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return _libc


def syncfs(path: str) -> None:
    """Flush the filesystem holding ``path`` (syncfs(2)); falls back to sync(2)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _lib().syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    """mount(2); raises OSError with the errno."""
    r = _lib().mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                     data.encode() if data else None)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {fstype} on {target}: {os.strerror(e)}")


def umount(target: str, flags: int = 0) -> None:
    if _lib().umount2(target.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"umount {target}: {os.strerror(e)}")


def is_mountpoint(path: str) -> bool:
    """Whether ``path`` is a mount point (its own entry in /proc/self/mountinfo)."""
    p = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split(" ", 5)[4]
                if mp == p or mp.encode().decode("unicode_escape") == p:
                    return True
    except OSError:
        return False
    return False


def mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    p = os.path.realpath(path).rstrip("/")
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split(" ", 5)[4].replace("\\040", " ")
                if mp == p or mp.startswith(p + "/"):
                    out.append(mp)
    except OSError:
        return []
    return sorted(out, key=len, reverse=True)


def unmount_under(path: str) -> None:
    """Lazily unmount everything at or below ``path`` (before deleting a tree that may hold mounts)."""
    for mp in mounts_under(path):
        try:
            umount(mp, MNT_DETACH)
        except OSError:
            pass


def tree_size(path: str) -> int:
    """Bytes in the files below ``path`` (``du``'s apparent size; files vanishing meanwhile count 0):
    a container's read-write layer, a volume."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total
