"""Capabilities: capget/capset (v3), bounding set and ambient set via prctl."""

from __future__ import annotations

import ctypes

from kran.sys.libc import check, libc
from kran.sys.prctl import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAP_AMBIENT_RAISE,
    PR_CAPBSET_DROP,
    PR_CAPBSET_READ,
    prctl,
)

#: capability(7) numbers, in order.
NAMES = (
    "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL CAP_SETGID CAP_SETUID "
    "CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE CAP_NET_BROADCAST CAP_NET_ADMIN CAP_NET_RAW "
    "CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT "
    "CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE CAP_SYS_RESOURCE CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD "
    "CAP_LEASE CAP_AUDIT_WRITE CAP_AUDIT_CONTROL CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG "
    "CAP_WAKE_ALARM CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE"
).split()
NUMBERS = {name: i for i, name in enumerate(NAMES)}

_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(NAMES) - 1


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) masks of this thread."""
    hdr = _Header(_VERSION_3, 0)
    data = (_Data * 2)()
    check(libc.capget(ctypes.byref(hdr), data), "capget")
    return tuple(
        data[0].__getattribute__(f) | (data[1].__getattribute__(f) << 32)
        for f in ("effective", "permitted", "inheritable")
    )  # type: ignore[return-value]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _Header(_VERSION_3, 0)
    data = (_Data * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    check(libc.capset(ctypes.byref(hdr), data), "capset")


def bounding_mask(last: int) -> int:
    return sum(1 << c for c in range(last + 1) if prctl(PR_CAPBSET_READ, c) == 1)


def drop_bounding(keep: int, last: int) -> None:
    for c in range(last + 1):
        if not keep & (1 << c) and prctl(PR_CAPBSET_READ, c) == 1:
            prctl(PR_CAPBSET_DROP, c)


def set_ambient(mask: int, last: int) -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    for c in range(last + 1):
        if mask & (1 << c):
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c)
