"""Rootless kran: where a user's state lives, and whether this process runs in the user's namespace.

A user who is not root gets their own kran (Podman's and Docker's rootless modes): the store in
``$XDG_DATA_HOME/kran``, runtime state in ``$XDG_RUNTIME_DIR/kran``, the config in
``$XDG_CONFIG_HOME/kran``.  Every kran process of that user then runs as root *inside* one user
namespace, held open by a pause process (:mod:`kran.rootless.pause`), in which uid 0 is the user
and 1..N their subordinate ids from /etc/subuid.  The engine below needs no rootless branches for
files: inside, ``chown`` to an image's uid 1000 is the user's first subuid + 999 on the host.

The bootstrap (:func:`kran.rootless.pause.enter`) exports the per-user paths to the environment
(``KRAN_ROOT``, ``KRAN_CONFIG`` unless the user set them, and ``KRAN_RUN``), so every process it
starts -- monitors, kran-runtime, ``kran rm`` after ``--rm`` -- finds them without recomputing.
"""

from __future__ import annotations

import os
from typing import NamedTuple

#: where rootful kran keeps its runtime state (the socket, netns pins, kran-runtime's state)
ROOTFUL_RUN = "/run/kran"


class Range(NamedTuple):
    """One line of /proc/self/uid_map: ``inside`` maps to ``outside`` on the host, ``count`` ids."""

    inside: int
    outside: int
    count: int


def _read_map(path: str) -> list[Range]:
    try:
        with open(path) as f:
            return [Range(*map(int, line.split())) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


_active: bool | None = None


def active() -> bool:
    """True in a user namespace other than the host's (the rootless user's, or any nested one).

    The initial namespace's map is the identity over all 2^32-1 ids; anything else is not it."""
    global _active
    if _active is None:
        m = _read_map("/proc/self/uid_map")
        _active = bool(m) and m != [Range(0, 0, 4294967295)]
    return _active


def uid_map() -> list[Range]:
    return _read_map("/proc/self/uid_map")


def gid_map() -> list[Range]:
    return _read_map("/proc/self/gid_map")


def host_uid() -> int:
    """The user's id on the host (what uid 0 inside maps to); our own uid when not rootless."""
    for r in uid_map():
        if r.inside == 0:
            return r.outside
    return os.getuid()


def single_id() -> bool:
    """Only the user's own id is mapped (no subordinate ids; Podman's ``ignore_chown_errors``)."""
    return active() and sum(r.count for r in uid_map()) <= 1


def run_base() -> str:
    """The directory of runtime state: /run/kran, or the rootless user's own."""
    return os.environ.get("KRAN_RUN") or ROOTFUL_RUN


def default_socket() -> str:
    return os.path.join(run_base(), "kran.sock")


def pause_pid() -> int:
    """The pid of the pause process holding the user namespace (0 when not rootless/unknown)."""
    if not active():
        return 0
    try:
        with open(os.path.join(run_base(), "pause.pid")) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def netns_path() -> str:
    """The rootless network namespace (bridges, veths, nft rules, the outbound tap) or ""."""
    pid = pause_pid()
    return f"/proc/{pid}/ns/net" if pid else ""


def delegated_cgroup() -> str:
    """The cgroup v2 directory delegated to this user (relative to /sys/fs/cgroup), or "".

    systemd delegates ``user@UID.service`` to each logged-in user; kran puts its containers under
    the highest cgroup above its own that the user owns and that offers the memory and pids
    controllers.  cgroup v1 (this project's CI host) has no delegation: rootless containers run
    without a cgroup there, and limits are refused (:func:`kran.engine.validate.check_rootless_limits`)."""
    base = "/sys/fs/cgroup"
    if not os.path.exists(os.path.join(base, "cgroup.controllers")):
        return ""
    try:
        with open("/proc/self/cgroup") as f:
            own = next((line.strip()[3:] for line in f if line.startswith("0::")), "")
    except OSError:
        return ""
    best = ""
    parts = [p for p in own.split("/") if p]
    uid = os.getuid()
    for i in range(len(parts), 0, -1):
        rel = "/".join(parts[:i])
        d = os.path.join(base, rel)
        try:
            if os.stat(d).st_uid != uid or not os.access(d, os.W_OK):
                break
            with open(os.path.join(d, "cgroup.controllers")) as f:
                ctrls = f.read().split()
        except OSError:
            break
        if "memory" in ctrls and "pids" in ctrls:
            best = rel
    return best
