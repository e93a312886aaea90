"""Network namespaces as files: made by the engine, kept while the container exists.

A namespace is created in a short-lived child (``unshare(CLONE_NEWNET)`` in a process that has
started no threads), its loopback brought up (docker's containers always have ``lo`` up, even
with ``--network none``), and ``/proc/<child>/ns/net`` bind-mounted on a file under the run
directory, so the namespace outlives every process in it.  The runtime joins it by path.
"""

from __future__ import annotations

import errno
import os

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def _loopback_up() -> None:
    import fcntl
    import socket
    import struct

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))
    finally:
        s.close()


def create(path: str) -> None:
    """Make a new network namespace with ``lo`` up, pinned at ``path`` (a new empty file)."""
    from kran.sys.fsutil import MS_BIND, mount
    from kran.sys.ns import CLONE_NEWNET, unshare

    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    r, w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no threads here; unshare, configure, then wait to be pinned
        os.close(r)
        os.close(hold_w)
        code = 0
        try:
            unshare(CLONE_NEWNET)
            _loopback_up()
        except BaseException:
            code = 1
        os.write(w, bytes([code]))
        os.close(w)
        os.read(hold_r, 1)  # EOF once the parent has bind-mounted our namespace
        os._exit(code)
    os.close(w)
    os.close(hold_r)
    try:
        status = os.read(r, 1)
        if status != b"\x00":
            raise OSError(errno.EPERM, "cannot create a network namespace")
        mount(f"/proc/{pid}/ns/net", path, "", MS_BIND)
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    finally:
        os.close(r)
        os.close(hold_w)
        os.waitpid(pid, 0)


def remove(path: str) -> None:
    """Unpin and delete a namespace file (the namespace goes when nothing else uses it)."""
    from kran.sys.fsutil import MNT_DETACH, umount

    try:
        umount(path, MNT_DETACH)
    except OSError:
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
