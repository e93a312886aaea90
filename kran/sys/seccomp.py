"""Load a classic-BPF seccomp filter (seccomp(2) SECCOMP_SET_MODE_FILTER)."""

from __future__ import annotations

import ctypes
import os
import struct

from kran.sys.libc import syscall

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
_NR_SECCOMP = {"x86_64": 317, "aarch64": 277}


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_filter(program: list[tuple[int, int, int, int]]) -> None:
    """Install ``program`` (a list of (code, jt, jf, k) sock_filter tuples) for this process."""
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(raw, len(raw))
    prog = _SockFprog(len(program), ctypes.cast(buf, ctypes.c_void_p))
    syscall(_NR_SECCOMP[os.uname().machine], SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(prog), what="seccomp")
