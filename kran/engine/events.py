"""A small event journal (``<root>/events.jsonl``) for ``kran events``: one JSON object per line.

Events are appended with O_APPEND (atomic for lines under PIPE_BUF) and the file is trimmed to its
newest half when it passes 4 MiB, so it never grows without bound.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

MAX_BYTES = 4 << 20


def path(root: str) -> str:
    return os.path.join(root, "events.jsonl")


def emit(root: str, typ: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> None:
    now = time.time_ns()
    ev = {"Type": typ, "Action": action, "Actor": {"ID": actor_id, "Attributes": attributes or {}},
          "scope": "local", "time": now // 1_000_000_000, "timeNano": now}
    line = (json.dumps(ev, separators=(",", ":")) + "\n").encode()
    p = path(root)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, line)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size > MAX_BYTES:
        _trim(p)


def _trim(p: str) -> None:
    try:
        with open(p, "rb") as f:
            f.seek(-MAX_BYTES // 2, os.SEEK_END)
            f.readline()
            rest = f.read()
        tmp = p + ".tmp"
        with open(tmp, "wb") as f:
            f.write(rest)
        os.rename(tmp, p)
    except OSError:
        pass


def read(root: str, *, since: float | None = None, until: float | None = None, follow: bool = False,
         stop: Callable[[], bool] | None = None) -> Iterator[dict[str, Any]]:
    """Events from the journal (``follow``: and new ones as they come, until ``until`` or ``stop()``)."""
    p = path(root)
    pos = 0
    while True:
        try:
            with open(p, "rb") as f:
                f.seek(pos)
                for line in f:
                    if not line.endswith(b"\n"):
                        break
                    pos += len(line)
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    t = ev.get("timeNano", 0) / 1e9
                    if since is not None and t < since:
                        continue
                    if until is not None and t > until:
                        return
                    yield ev
        except FileNotFoundError:
            pass
        if not follow or (until is not None and time.time() > until) or (stop is not None and stop()):
            return
        time.sleep(0.1)


def matches(ev: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """docker's event filters: type, event (action), container (ID prefix or name), image, label."""
    actor = ev.get("Actor", {})
    attrs = actor.get("Attributes", {})
    if "type" in filters and ev.get("Type") not in filters["type"]:
        return False
    action = ev.get("Action") or ""
    # moby #25798: health_status, exec_create, exec_start match by prefix ("health_status: healthy")
    fuzzy = any(v in ("health_status", "exec_create", "exec_start") for v in filters.get("event", ()))
    if "event" in filters and not any(action == v or (fuzzy and action.startswith(v)) for v in filters["event"]):
        return False
    if "container" in filters and (ev.get("Type") != "container" or not any(
            actor.get("ID", "").startswith(v) or attrs.get("name") == v for v in filters["container"])):
        return False
    if "image" in filters and attrs.get("image") not in filters["image"]:
        return False
    if "network" in filters and (ev.get("Type") != "network" or not any(
            actor.get("ID", "").startswith(v) or attrs.get("name") == v for v in filters["network"])):
        return False
    return True
