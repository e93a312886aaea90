"""The one ctypes handle on libc, and the errno check every wrapper uses."""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
_syscall = libc.syscall
_syscall.restype = ctypes.c_long


def check(ret: int, what: str, path: str | None = None) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return ret


def syscall(nr: int, *args: object, what: str = "syscall") -> int:
    return check(_syscall(ctypes.c_long(nr), *args), what)
