"""The container record, below every verb: the ``containers`` row, its directory, and the live
status read from the monitor's state.json.

Everything above (the verbs in :mod:`kran.engine.containers`, networks, volumes, cp) looks
containers up here.  Reading a record never changes the host: releasing what an exited container
held (its rootfs mount, its network endpoints) is the verbs' business, done by
``containers.get``/``containers.all_containers`` -- the one cleanup path -- so that this module needs
nothing above it.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kran.errors import Conflict, NotFound

if TYPE_CHECKING:
    from kran.engine import Engine

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class ContainerNotFound(NotFound):
    pass


@dataclass
class Container:
    id: str
    name: str
    image_id: str
    image_name: str
    created: float
    config: dict[str, Any]
    host_config: dict[str, Any]
    exit_code: int
    error: str
    started_at: str
    finished_at: str
    dir: str
    state: dict[str, Any] | None = None  # the monitor's state.json

    @property
    def status(self) -> str:
        st = self.state
        if st is None:
            return "created"
        s = st.get("status", "exited")
        if s == "running" and st.get("paused"):
            return "paused"
        return s

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting")


def _now_rfc3339() -> str:
    from kran.engine.timefmt import rfc3339

    return rfc3339(time.time())


# -- lookup ---------------------------------------------------------------------------------------

_COLS = "id, name, image_id, image_name, created, config, host_config, exit_code, error, started_at, finished_at"


def _row(engine: Engine, r: tuple[Any, ...]) -> Container:
    d = os.path.join(engine.root, "containers", r[0])
    c = Container(id=r[0], name=r[1], image_id=r[2], image_name=r[3], created=r[4], config=json.loads(r[5]),
                  host_config=json.loads(r[6]), exit_code=r[7], error=r[8], started_at=r[9], finished_at=r[10], dir=d)
    c.state = _live_state(engine, c)
    return c


def get(engine: Engine, ref: str) -> Container:
    """By full ID, name (with or without "/"), or unique ID prefix (docker's lookup order)."""
    db = engine.store.db
    name = ref[1:] if ref.startswith("/") else ref
    r = db.execute(f"SELECT {_COLS} FROM containers WHERE id=?", (ref,)).fetchone()
    if r is None:
        r = db.execute(f"SELECT {_COLS} FROM containers WHERE name=?", (name,)).fetchone()
    if r is None and ref and all(ch in "0123456789abcdef" for ch in ref):
        rows = db.execute(f"SELECT {_COLS} FROM containers WHERE id >= ? AND id < ? LIMIT 2", (ref, ref + "g")).fetchall()
        if len(rows) > 1:
            raise Conflict(f"multiple IDs found with provided prefix: {ref}")
        r = rows[0] if rows else None
    if r is None:
        raise ContainerNotFound(f"No such container: {ref}")
    return _row(engine, r)


def status_text(c: Container, now: float) -> str:
    """The list's ``Status`` ("Up 2 seconds", "Exited (0) 3 seconds ago"), as ``kran ps`` shows it."""
    from kran.engine.timefmt import human_duration
    from kran.image.store import parse_created

    st = c.state or {}
    s = c.status
    if s == "created":
        return "Created"
    if s in ("running", "paused"):
        started = parse_created(st.get("started_at") or c.started_at)
        txt = "Up " + human_duration(now - started) if started else "Up"
        return txt + (" (Paused)" if s == "paused" else _health_suffix(c))
    if s == "restarting":
        fin = parse_created(st.get("finished_at") or "")
        return f"Restarting ({st.get('exit_code') or 0}) {human_duration(now - fin)} ago" if fin else "Restarting"
    fin = parse_created(st.get("finished_at") or c.finished_at)
    code = st.get("exit_code")
    code = c.exit_code if code is None else code
    return f"Exited ({code}) {human_duration(now - fin)} ago" if fin else f"Exited ({code})"


def _health_suffix(c: Container) -> str:
    """docker ps: "Up 3 minutes (healthy)", "(health: starting)" while the first checks run."""
    test = (c.config.get("Healthcheck") or {}).get("Test") or []
    if not test or test[0] == "NONE":
        return ""
    try:
        with open(os.path.join(c.dir, "health.json")) as f:
            status = json.load(f).get("Status") or "starting"
    except (OSError, ValueError):
        status = "starting"
    return " (health: starting)" if status == "starting" else f" ({status})"


def exit_code_of(c: Container) -> int:
    """The last exit code: the monitor's, else the one recorded when a start failed."""
    st = c.state or {}
    if st.get("exit_code") is not None:
        return int(st["exit_code"])
    return int(c.exit_code or 0)


def all_containers(engine: Engine) -> list[Container]:
    if not os.path.exists(os.path.join(engine.root, "kran.db")):
        return []
    return [_row(engine, r) for r in engine.store.db.execute(f"SELECT {_COLS} FROM containers ORDER BY created DESC")]


def containers_using_image(engine: Engine, image_id: str) -> list[tuple[str, bool]]:
    out = []
    for (cid,) in engine.store.db.execute("SELECT id FROM containers WHERE image_id=?", (image_id,)):
        try:
            c = get(engine, cid)
        except NotFound:
            continue
        out.append((c.id, c.running))
    return out


# -- live state -----------------------------------------------------------------------------------


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _live_state(engine: Engine, c: Container) -> dict[str, Any] | None:
    from kran.monitor.client import read_state

    st = read_state(c.dir)
    if st is None:
        return None
    if st.get("status") in ("running", "restarting") and not _pid_alive(st.get("monitor_pid")):
        # the monitor died: the container may still run (reparented to init), else it is gone
        if st.get("status") == "running" and _pid_alive(st.get("pid")):
            st["monitor_dead"] = True
        else:
            st = dict(st, status="exited", exit_code=st.get("exit_code") if st.get("exit_code") is not None else 255,
                      finished_at=st.get("finished_at") or _now_rfc3339())
            _write_state(c.dir, st)
    if st.get("status") == "running":
        st["paused"] = os.path.exists(os.path.join(c.dir, "paused"))
    return st


def _write_state(d: str, st: dict[str, Any]) -> None:
    tmp = os.path.join(d, ".state.json.tmp")
    with open(tmp, "w") as f:
        json.dump(st, f)
    os.rename(tmp, os.path.join(d, "state.json"))


class _ThreadState(threading.local):
    """Per thread (the API server runs requests in threads): what this thread is in the middle of."""

    def __init__(self) -> None:
        self.starting: set[str] = set()  # containers this thread is starting (it holds their start.lock)
        self.removing = False  # inside remove(): the container's netns goes with it, and its veths too


_T = _ThreadState()


def _being_started(c: Container) -> bool:
    """Another process is starting this container (state.json still tells of its previous run)."""
    if c.id in _T.starting:
        return False
    import fcntl

    try:
        fd = os.open(os.path.join(c.dir, "start.lock"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def run_dir(engine: Engine) -> str:
    """Per-root runtime state on tmpfs (/run, a rootless user's $XDG_RUNTIME_DIR/kran): gone after
    a reboot, like runc's."""
    from kran.engine import DEFAULT_ROOT
    from kran.rootless import run_base

    base = run_base()
    if engine.root == (os.environ.get("KRAN_ROOTLESS_ROOT") if base != "/run/kran" else DEFAULT_ROOT):
        return base
    import hashlib

    return os.path.join(base, hashlib.sha256(engine.root.encode()).hexdigest()[:12])


def netns_path(engine: Engine, cid: str) -> str:
    return os.path.join(run_dir(engine), "netns", cid)


