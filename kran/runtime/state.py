"""Container state on disk (``<root>/<id>/state.json``) and the status state machine.

A container is ``created`` while its init waits on ``exec.fifo``, ``running`` once ``start`` has
consumed the fifo, ``paused`` when its cgroup is frozen, ``stopped`` when the init pid is gone (or is
a zombie, or the pid was reused: we compare the start time from /proc/<pid>/stat).
"""

from __future__ import annotations

import os
import time

from kran.errors import Conflict, InvalidArgument, NotFound
from kran.runtime import jsonc
from kran.runtime.spec import OCI_VERSION

CREATING, CREATED, RUNNING, PAUSED, STOPPED = "creating", "created", "running", "paused", "stopped"
STATE_FILE = "state.json"
FIFO = "exec.fifo"


def proc_start_time(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks, state letter) of ``pid``, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19]), fields[0].decode()


def rfc3339_now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def validate_id(cid: str) -> None:
    ok = cid and cid not in (".", "..") and all(c.isalnum() or c in "_+-." for c in cid)
    if not ok:
        raise InvalidArgument(f"invalid id format: {cid}")


class Container:
    """One container's persisted record.  ``root`` is the runtime's state root (``--root``)."""

    __slots__ = ("root", "id", "data")

    def __init__(self, root: str, cid: str, data: dict) -> None:
        self.root, self.id, self.data = root, cid, data

    # -- paths -----------------------------------------------------------------------------
    @property
    def dir(self) -> str:
        return os.path.join(self.root, self.id)

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, FIFO)

    @property
    def pid(self) -> int:
        return int(self.data.get("init_pid") or 0)

    @property
    def config(self) -> dict:
        return self.data["config"]

    # -- persistence -------------------------------------------------------------------------
    @classmethod
    def load(cls, root: str, cid: str) -> Container:
        validate_id(cid)
        try:
            with open(os.path.join(root, cid, STATE_FILE), "rb") as f:
                data = jsonc.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"container does not exist: {cid}") from None
        return cls(root, cid, data)  # type: ignore[arg-type]

    def save(self) -> None:
        """Atomic: temp file, fsync, rename (a crash leaves the old or the new state, never half)."""
        tmp = os.path.join(self.dir, f".{STATE_FILE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, jsonc.dumps(self.data).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(self.dir, STATE_FILE))

    # -- status ------------------------------------------------------------------------------
    def alive(self) -> bool:
        pid = self.pid
        if pid <= 0:
            return False
        st = proc_start_time(pid)
        return st is not None and st[0] == self.data.get("init_start") and st[1] not in ("Z", "X")

    def status(self) -> str:
        if not self.alive():
            return STOPPED
        if os.path.exists(self.fifo):
            return CREATED
        if self.data.get("cgroup"):
            from kran.runtime.cgroups import CgroupManager

            if CgroupManager.from_state(self.data["cgroup"]).frozen():
                return PAUSED
        return RUNNING

    def oci_state(self, status: str | None = None) -> dict:
        """runc's ``state`` document (also fed to hooks on stdin)."""
        status = status or self.status()
        out = {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": self.pid if status != STOPPED else 0,
            "status": status,
            "bundle": self.data["bundle"],
            "rootfs": self.data["rootfs"],
            "created": self.data["created"],
            "owner": self.data.get("owner", ""),
        }
        if self.data.get("annotations"):
            out["annotations"] = self.data["annotations"]
        return out

    # -- transitions ---------------------------------------------------------------------------
    def require(self, *allowed: str, action: str) -> str:
        status = self.status()
        if status not in allowed:
            raise Conflict(_transition_error(action, self.id, status))
        return status


def _transition_error(action: str, cid: str, status: str) -> str:
    # runc's wording
    if action == "start":
        return {
            STOPPED: "cannot start a container that has stopped",
            RUNNING: "cannot start an already running container",
            PAUSED: "cannot start an already running container",
        }.get(status, f"cannot start a container in the {status} state")
    if action == "delete":
        return f"cannot delete container {cid} that is not stopped: {status}"
    if action in ("kill", "exec"):
        return "container not running" if action == "kill" else f"cannot exec in a {status} container"
    if action == "update":
        return f"cannot update a {status} container"
    if action == "pause":
        return f"container not running or created: {status}"
    if action == "resume":
        return "container not paused"
    return f"invalid operation {action} in state {status}"


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.exists(os.path.join(root, n, STATE_FILE)))
