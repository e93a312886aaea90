"""Filesystem syscalls Python's os module lacks."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_libc = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def syncfs(path: str) -> None:
    """Flush the filesystem holding ``path`` (syncfs(2)); falls back to sync(2)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _lib().syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)
