"""Container endpoints: list, create, inspect, start/stop/restart/kill/pause/unpause, rename, wait,
remove, top, changes, stats, prune, export, logs, resize and archive (attach and exec are in
:mod:`kran.api.streams`).

Each handler calls the engine use case the CLI calls.  One thing lives in this (the service's)
process, because docker's API splits what the CLI does in one call:

* ``docker run`` (attached) is create -> attach (hijacked) -> wait -> start.  An attach to a
  container that does not run yet registers itself in :data:`_ATTACH`; the start handler then starts
  the container with ``wait_attach=True`` (the monitor holds the process until a client is connected,
  as for ``kran run``) and wakes the waiting attach, which connects to the monitor's socket.  So the
  client sees the output from its first byte::

      client            attach handler           start handler          monitor
        |-- attach ------> | register, 101           |                       |
        |-- wait --------> (headers sent: the wait is registered)            |
        |-- start ---------------------------------> | start(wait_attach) -> | create, waits
        |                  | <------ wake ---------- | 204                   |
        |                  |-- connect attach.sock ----------------------->  | start the process
        | <== stdout/stderr (multiplexed) <== frames <=====================  |
"""

from __future__ import annotations

import json
import os
import shlex
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

from kran.api.http import Request, route
from kran.errors import Conflict, InvalidArgument, NotFound

# -- shared helpers ---------------------------------------------------------------------------------

MUX = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"


def mux(stream: int, data: bytes) -> bytes:
    """docker's stdcopy frame: stream type (1 stdout, 2 stderr), 3 zero bytes, big-endian length."""
    return struct.pack(">BxxxL", stream, len(data)) + data


def _get(req: Request) -> Any:
    from kran.engine import containers

    return containers.get(req.engine, req.params["id"])


@route("GET", "/containers/json")
def list_containers(req: Request) -> None:
    from kran.api.http import filter_args
    from kran.engine import containers, networks
    from kran.engine.spec import process_args

    e = req.engine
    limit = req.qint("limit", -1) or -1
    show_all = req.qbool("all") or limit > 0
    cs = containers.all_containers(e)
    # docker lists a linked container under its link names too ("/web/db")
    link_names: dict[str, list[str]] = {}
    for c in cs:
        for ln in c.host_config.get("Links") or []:
            target, _, full = ln.partition(":")
            link_names.setdefault(target.lstrip("/"), []).append(full)
    if not show_all:
        cs = [c for c in cs if c.running]
    cs = containers.filter_containers(e, cs, filter_args(req.qjson("filters")))
    if limit > 0:
        cs = cs[:limit]
    ports = networks.published_ports(e) if cs else {}
    now = time.time()
    out = []
    for c in cs:
        ns = networks.settings(e, c)
        item = {
            "Id": c.id, "Names": ["/" + c.name, *link_names.get(c.name, [])], "Image": c.image_name, "ImageID": c.image_id,
            "Command": " ".join(process_args(c.config)), "Created": int(c.created),
            "Ports": ports.get(c.id, []), "Labels": c.config.get("Labels") or {}, "State": c.status,
            "Status": containers.status_text(c, now),
            "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode") or "default"},
            "NetworkSettings": {"Networks": ns.get("Networks") or {}},
            "Mounts": [{k: v for k, v in m.items() if k != "Mode" or v} for m in containers.mounts_json(e, c)],
        }
        if req.qbool("size"):
            rw = containers.size_rw(c)
            item["SizeRw"] = rw
            item["SizeRootFs"] = rw + e.images.get(c.image_id).size
        out.append(item)
    req.send_json(out)


# -- create / inspect -------------------------------------------------------------------------------


@route("POST", "/containers/create")
def create_container(req: Request) -> None:
    from kran.engine import containers

    body = req.body_json()
    if not isinstance(body, dict):
        raise InvalidArgument("invalid container config")
    host = body.pop("HostConfig", None)
    networking = body.pop("NetworkingConfig", None)
    # the engine decodes the three into its typed request (wrong JSON types: 400, dockerd's words)
    cid = containers.create(req.engine, body, host, req.q("name") or None, networking)
    req.send_json({"Id": cid, "Warnings": []}, 201)


@route("POST", "/containers/{id}/update")
def update_container(req: Request) -> None:
    from kran.engine.update import update

    body = req.body_json()
    update(req.engine, req.params["id"], body if body is not None else {})
    req.send_json({"Warnings": []})


@route("GET", "/containers/{id}/json")
def inspect_container(req: Request) -> None:
    from kran.engine import containers

    req.send_json(containers.inspect(req.engine, req.params["id"], size=req.qbool("size")))


# -- lifecycle --------------------------------------------------------------------------------------


class _AttachWaiters:
    """Attach requests waiting for their container to start (see the module docstring)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pending: dict[str, int] = {}  # container ID -> attach requests waiting
        self.starts: dict[str, int] = {}  # container ID -> starts done by this service
        self.exits: dict[str, int] = {}  # container ID -> last exit code an attach saw

    def register(self, cid: str) -> int:
        with self.cond:
            self.pending[cid] = self.pending.get(cid, 0) + 1
            return self.starts.get(cid, 0)

    def unregister(self, cid: str) -> None:
        with self.cond:
            n = self.pending.get(cid, 0) - 1
            if n > 0:
                self.pending[cid] = n
            else:
                self.pending.pop(cid, None)

    def wants_attach(self, cid: str) -> bool:
        with self.cond:
            return self.pending.get(cid, 0) > 0

    def started(self, cid: str) -> None:
        with self.cond:
            self.starts[cid] = self.starts.get(cid, 0) + 1
            self.cond.notify_all()

    def wait_start(self, cid: str, seen: int, timeout: float) -> bool:
        with self.cond:
            if self.starts.get(cid, 0) == seen:
                self.cond.wait(timeout)
            return self.starts.get(cid, 0) != seen


_ATTACH = _AttachWaiters()


@route("POST", "/containers/{id}/start")
def start_container(req: Request) -> None:
    from kran.engine import containers

    req.body()  # old clients send a HostConfig here; docker ignores it since 1.24
    c = _get(req)
    if c.running and c.status != "paused":
        req.send_empty(304)
        return
    try:
        containers.start(req.engine, c.id, wait_attach=_ATTACH.wants_attach(c.id))
    finally:
        _ATTACH.started(c.id)  # a waiting attach connects now (or sees the failure)
    req.send_empty(204)


@route("POST", "/containers/{id}/stop")
def stop_container(req: Request) -> None:
    from kran.engine import containers

    c = _get(req)
    if not c.running:
        req.send_empty(304)
        return
    containers.stop(req.engine, c.id, req.qint("t"), req.q("signal") or None)
    req.send_empty(204)


@route("POST", "/containers/{id}/restart")
def restart_container(req: Request) -> None:
    from kran.engine import containers

    containers.restart(req.engine, req.params["id"], req.qint("t"), req.q("signal") or None)
    req.send_empty(204)


@route("POST", "/containers/{id}/kill")
def kill_container(req: Request) -> None:
    from kran.engine import containers

    containers.kill(req.engine, req.params["id"], req.q("signal") or "KILL")
    req.send_empty(204)


@route("POST", "/containers/{id}/pause")
def pause_container(req: Request) -> None:
    from kran.engine import containers

    containers.pause(req.engine, req.params["id"])
    req.send_empty(204)


@route("POST", "/containers/{id}/unpause")
def unpause_container(req: Request) -> None:
    from kran.engine import containers

    containers.unpause(req.engine, req.params["id"])
    req.send_empty(204)


@route("POST", "/containers/{id}/rename")
def rename_container(req: Request) -> None:
    from kran.engine import containers

    new = req.q("name") or ""
    if not new:
        raise InvalidArgument("Container name cannot be empty")
    containers.rename(req.engine, req.params["id"], new)
    req.send_empty(204)


@route("DELETE", "/containers/{id}")
def remove_container(req: Request) -> None:
    from kran.engine import containers

    if req.qbool("link"):
        from kran.engine import links

        links.remove(req.engine, req.params["id"])
    else:
        containers.remove(req.engine, req.params["id"], force=req.qbool("force"), volumes=req.qbool("v"))
    req.send_empty(204)


@route("DELETE", "/containers/{parent}/{alias}")
def remove_link(req: Request) -> None:
    """``docker rm --link /parent/alias`` (a link's name has a slash in it)."""
    from kran.engine import links

    if not req.qbool("link"):
        raise NotFound(f"No such container: {req.params['parent']}/{req.params['alias']}")
    links.remove(req.engine, f"/{req.params['parent']}/{req.params['alias']}")
    req.send_empty(204)


@route("POST", "/containers/{id}/wait")
def wait_container(req: Request) -> None:
    """Headers go out at once (the docker CLI waits for them before it starts the container), the
    result when the condition is met."""
    from kran.engine.lifecycle import ContainerGone, Waiter

    w = Waiter(req.engine, req.params["id"], req.q("condition") or "not-running")

    def result() -> Iterator[bytes]:
        try:
            code = w.result()
        except ContainerGone as gone:  # removed (--rm): it has exited, maybe between two looks
            if gone.last.status != "exited":
                # an attach saw its exit frame (docker run --rm): it records the code at once
                cid = gone.last.id
                end = time.monotonic() + 2.0
                while cid not in _ATTACH.exits and time.monotonic() < end:
                    time.sleep(0.02)
                code = _ATTACH.exits.get(cid, 0)
            else:
                from kran.engine.record import exit_code_of

                code = exit_code_of(gone.last)
        yield _wait_body(code if code is not None else 0)

    req.send_stream(result(), "application/json")


def _wait_body(code: int) -> bytes:
    return (json.dumps({"StatusCode": code, "Error": None}) + "\n").encode()


# -- looking inside ---------------------------------------------------------------------------------


@route("GET", "/containers/{id}/top")
def top_container(req: Request) -> None:
    from kran.engine.container_ops import top

    titles, rows = top(req.engine, req.params["id"], shlex.split(req.q("ps_args") or ""))
    req.send_json({"Titles": titles, "Processes": rows})


@route("GET", "/containers/{id}/changes")
def container_changes(req: Request) -> None:
    from kran.engine.container_ops import diff

    kinds = {"C": 0, "A": 1, "D": 2}
    req.send_json([{"Path": p, "Kind": kinds[k]} for k, p in diff(req.engine, req.params["id"])])


def _stats_json(engine: Any, c: Any, interval: float) -> dict[str, Any]:
    """docker's stats sample; CPU as counters that give the engine's percentage by the CLI's formula
    ``(cpu delta / system delta) * online CPUs * 100``."""
    from kran.engine.container_ops import stats
    from kran.engine.timefmt import rfc3339

    s = stats(engine, c.id, interval)
    ncpu = os.cpu_count() or 1
    system = int(interval * 1e9) * ncpu
    total = int(s.cpu_percent / 100 * system / ncpu)
    now = time.time()
    return {
        "read": rfc3339(now), "preread": rfc3339(now - interval), "id": c.id, "name": "/" + c.name,
        "pids_stats": {"current": s.pids},
        "blkio_stats": {"io_service_bytes_recursive": [{"major": 0, "minor": 0, "op": "read", "value": s.blk_read},
                                                       {"major": 0, "minor": 0, "op": "write", "value": s.blk_write}]},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": {"cpu_usage": {"total_usage": total, "usage_in_kernelmode": 0, "usage_in_usermode": total},
                      "system_cpu_usage": system, "online_cpus": ncpu,
                      "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
        "precpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                         "system_cpu_usage": 0, "online_cpus": ncpu,
                         "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
        "memory_stats": {"usage": s.mem_usage, "limit": s.mem_limit, "stats": {}} if c.running else {},
        "networks": {"eth0": {"rx_bytes": s.net_rx, "rx_packets": 0, "rx_errors": 0, "rx_dropped": 0,
                              "tx_bytes": s.net_tx, "tx_packets": 0, "tx_errors": 0, "tx_dropped": 0}},
    }


@route("GET", "/containers/{id}/stats")
def container_stats(req: Request) -> None:
    from kran.engine import containers

    c = _get(req)
    if not req.qbool("stream", True) or req.qbool("one-shot"):
        req.send_json(_stats_json(req.engine, c, 0.0 if req.qbool("one-shot") else 0.2))
        return

    def samples() -> Iterator[bytes]:
        while True:
            cur = containers.get(req.engine, c.id)
            yield (json.dumps(_stats_json(req.engine, cur, 1.0)) + "\n").encode()
            if not cur.running:
                return

    req.send_stream(samples(), "application/json")


@route("POST", "/containers/prune")
def prune_containers(req: Request) -> None:
    from kran.api.http import filter_args
    from kran.engine import containers

    gone, space = containers.prune(req.engine, filter_args(req.qjson("filters")))
    req.send_json({"ContainersDeleted": gone or None, "SpaceReclaimed": space})


@route("GET", "/containers/{id}/export")
def export_container(req: Request) -> None:
    from kran.api.worker import stream_from_worker
    from kran.engine.container_ops import export
    from kran.engine.lockdown import refuse_files_out

    c = _get(req)
    refuse_files_out(c)  # --lockdown: 403 before the stream starts
    cid = c.id

    class _Out:
        def __init__(self, emit: Any) -> None:
            self.emit = emit

        def write(self, b: bytes) -> int:
            self.emit(bytes(b))
            return len(b)

        def flush(self) -> None:
            pass

    stream_from_worker(req, lambda engine, emit: export(engine, cid, _Out(emit)),  # type: ignore[arg-type]
                       content_type="application/x-tar", on_error=lambda _e: None)


@route("POST", "/containers/{id}/resize")
def resize_container(req: Request) -> None:
    from kran.monitor.client import attach

    c = _get(req)
    if not c.running:
        raise Conflict(f"Container {c.id} is not running")
    with attach(c.dir) as conn:
        conn.resize(req.qint("h", 24) or 24, req.qint("w", 80) or 80)
    req.send_empty(200)


# -- logs -------------------------------------------------------------------------------------------


def _unix_time(req: Request, name: str) -> float | None:
    v = req.q(name)
    if not v:
        return None
    try:
        t = float(v)
    except ValueError:
        raise InvalidArgument(f'invalid value for "{name}": {v!r}') from None
    return t or None


@route("GET", "/containers/{id}/logs")
def container_logs(req: Request) -> None:
    from kran.monitor.client import read_logs

    c = _get(req)
    want_out, want_err = req.qbool("stdout"), req.qbool("stderr")
    if not (want_out or want_err):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    tail_s = req.q("tail") or "all"
    tail = None
    if tail_s != "all":
        try:
            tail = int(tail_s)
        except ValueError:
            raise InvalidArgument(f'invalid value for "tail": "{tail_s}"') from None
        if tail < 0:
            tail = None
    tty = bool(c.config.get("Tty"))
    entries = read_logs(os.path.join(c.dir, f"{c.id}-json.log"), follow=req.qbool("follow") and c.running, tail=tail,
                        since=_unix_time(req, "since"), until=_unix_time(req, "until"),
                        timestamps=req.qbool("timestamps"))

    def chunks() -> Iterator[bytes]:
        for stream, data, _t in entries:
            kind = 2 if stream == "stderr" else 1
            if (kind == 1 and want_out) or (kind == 2 and want_err):
                yield data if tty else mux(kind, data)

    try:
        req.send_stream(chunks(), RAW if tty else MUX)
    finally:
        entries.close()


# -- archive (docker cp) ------------------------------------------------------------------------------


@route("GET", "/containers/{id}/archive")
def get_archive(req: Request) -> None:
    """A tar of PATH (GET), or only its stat in X-Docker-Container-Path-Stat (HEAD)."""
    import base64
    import tempfile

    from kran.engine import copy

    path = req.q("path") or ""
    if not path:
        raise InvalidArgument("path is required")
    if req.method == "GET":
        from kran.engine.lockdown import refuse_files_out

        refuse_files_out(_get(req))  # --lockdown: 403 before a byte (or a stat header) is sent
    st = copy.stat_path(req.engine, req.params["id"], path)
    req.extra_headers.append(("X-Docker-Container-Path-Stat", base64.b64encode(json.dumps(st).encode()).decode()))
    if req.method == "HEAD":
        req.send_file(None, 0, "application/x-tar")
        return
    with tempfile.TemporaryFile() as tmp:
        copy.copy_from_container(req.engine, req.params["id"], path, "", out=tmp)
        size = tmp.tell()
        tmp.seek(0)
        req.send_file(tmp, size, "application/x-tar")


@route("PUT", "/containers/{id}/archive")
def put_archive(req: Request) -> None:
    """Unpack the tar in the body into the directory PATH."""
    from kran.engine import copy

    path = req.q("path") or ""
    if not path:
        raise InvalidArgument("path is required")
    copy.copy_to_container(req.engine, req.params["id"], None, path, stream=req.body_file())
    req.send_empty(200)
