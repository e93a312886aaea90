"""unshare(2) and setns(2), with the CLONE_NEW* flags and /proc/<pid>/ns names."""

from __future__ import annotations

from kran.sys.libc import check, libc

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

#: OCI namespace type -> (clone flag, name under /proc/<pid>/ns)
OCI_NAMESPACES = {
    "user": (CLONE_NEWUSER, "user"),
    "pid": (CLONE_NEWPID, "pid"),
    "network": (CLONE_NEWNET, "net"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "uts": (CLONE_NEWUTS, "uts"),
    "mount": (CLONE_NEWNS, "mnt"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "time": (CLONE_NEWTIME, "time"),
}


def unshare(flags: int) -> None:
    check(libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    check(libc.setns(fd, nstype), "setns")


def pidns_members(pid: int) -> list[int]:
    """The processes in ``pid``'s pid namespace (all we can see of it): how a container without a
    cgroup of its own (rootless on cgroup v1) lists its processes."""
    import os

    try:
        want = os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return [pid]
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}/ns/pid").st_ino == want:
                    out.append(int(d))
            except OSError:
                pass
    return sorted(out) or [pid]
