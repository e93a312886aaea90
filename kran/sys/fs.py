"""statfs(2) magic numbers, close_range(2)."""

from __future__ import annotations

import ctypes
import os

from kran.sys.libc import check, libc, syscall

CGROUP2_SUPER_MAGIC = 0x63677270
TMPFS_MAGIC = 0x01021994

CLOSE_RANGE_CLOEXEC = 4
_NR_CLOSE_RANGE = 436  # same number on x86_64 and aarch64 (asm-generic)


def fs_magic(path: str) -> int:
    """The f_type of the filesystem holding ``path`` (struct statfs starts with a long f_type)."""
    buf = ctypes.create_string_buffer(256)
    check(libc.statfs(path.encode(), buf), "statfs", path)
    return int.from_bytes(buf.raw[: ctypes.sizeof(ctypes.c_long)], "little", signed=True) & 0xFFFFFFFF


def cloexec_from(first: int) -> None:
    """Mark every fd >= ``first`` close-on-exec (runc: CloseExecFrom), so nothing leaks into the container."""
    try:
        syscall(
            _NR_CLOSE_RANGE,
            ctypes.c_uint(first),
            ctypes.c_uint(0xFFFFFFFF),
            ctypes.c_uint(CLOSE_RANGE_CLOEXEC),
        )
    except OSError:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd >= first:
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    pass
