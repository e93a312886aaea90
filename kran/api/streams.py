"""Attach and exec endpoints: the hijacked streams (docker's attach, exec create/start/inspect/resize).

``docker run`` (attached) is create -> attach -> wait -> start; how an attach waits for its container's
start is told in :mod:`kran.api.containers`.  Exec instances are created, then started: their specs and
results are kept in :data:`_EXECS` (docker's exec IDs are per daemon too, and forgotten when it restarts).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from kran.api.containers import _ATTACH, MUX, RAW, _get, mux
from kran.api.http import Request, route
from kran.errors import Conflict, InvalidArgument, KranError, NotFound

# -- attach -----------------------------------------------------------------------------------------


class _Peer:
    """The hijacked client connection.  Reads go through the handler's buffered reader, which may
    already hold bytes the client sent right after its request."""

    def __init__(self, req: Request, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = req._h.rfile

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> bytes:
        try:
            return self.rfile.read1(65536)
        except OSError:
            return b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


@route("POST", "/containers/{id}/attach")
def attach_container(req: Request) -> None:
    from kran.engine import containers
    from kran.monitor.client import attach, read_logs

    c = _get(req)
    opts = {k: req.qbool(k) for k in ("stdin", "stdout", "stderr")}
    tty = bool(c.config.get("Tty"))
    seen = _ATTACH.register(c.id) if req.qbool("stream") and not c.running else None
    try:
        peer = _Peer(req, req.hijack(RAW if tty else MUX))
        if req.qbool("logs"):
            for stream, data, _t in read_logs(os.path.join(c.dir, f"{c.id}-json.log")):
                kind = 2 if stream == "stderr" else 1
                if opts["stderr" if kind == 2 else "stdout"]:
                    peer.send(data if tty else mux(kind, data))
        if not req.qbool("stream"):
            return
        if seen is not None:
            # wait for a start (this service's, or anyone's), as long as the container exists
            while not _ATTACH.wait_start(c.id, seen, 0.25):
                try:
                    if containers.get(req.engine, c.id).running:
                        break
                except NotFound:
                    return
        try:
            conn = attach(c.dir)
        except KranError:
            return  # it did not start, or is gone already: the client sees the stream end
    finally:
        if seen is not None:
            _ATTACH.unregister(c.id)
    with conn:
        code = _relay(peer, conn, tty=tty, stdin=opts["stdin"], stdout=opts["stdout"], stderr=opts["stderr"],
                      stdin_once=bool(c.config.get("StdinOnce")))
    if code is not None:
        _ATTACH.exits[c.id] = code


def _relay(peer: _Peer, conn: Any, *, tty: bool, stdin: bool, stdout: bool, stderr: bool,
           stdin_once: bool) -> int | None:
    """Client bytes -> the container's stdin; monitor frames -> the client; None if either side
    went away before the exit frame."""
    from kran.monitor import proto

    client_open = True
    while True:
        fds = [conn.fileno()] + ([peer.fileno()] if client_open else [])
        r, _, _ = select.select(fds, [], [])
        if conn.fileno() in r:
            msg = conn.recv()
            if msg is None:
                return None
            kind, payload = msg
            if kind == proto.EXIT:
                try:
                    return int(payload.decode() or 0)
                except ValueError:
                    return 0
            if (kind == proto.STDOUT and stdout) or (kind == proto.STDERR and stderr):
                try:
                    peer.send(payload if tty else mux(kind, payload))
                except OSError:
                    return None
        if client_open and peer.fileno() in r:
            data = peer.read()
            if not data:  # the client closed its side (stdin EOF, or gone)
                client_open = False
                if stdin and stdin_once:
                    conn.close_stdin()
            elif stdin:
                conn.send_stdin(data)


# -- exec -------------------------------------------------------------------------------------------


@dataclass
class _Exec:
    id: str
    container_id: str
    cmd: list[str]
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool
    env: list[str]
    user: str
    workdir: str
    privileged: bool
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    pty_master: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)


_EXECS: dict[str, _Exec] = {}


def _exec(req: Request) -> _Exec:
    x = _EXECS.get(req.params["id"])
    if x is None:
        raise NotFound(f"No such exec instance: {req.params['id']}")
    return x


@route("POST", "/containers/{id}/exec")
def create_exec(req: Request) -> None:
    body = req.body_json()
    c = _get(req)
    if c.status == "paused":
        raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
    if not c.running:
        raise Conflict(f"Container {c.id} is not running")
    cmd = body.get("Cmd") or []
    if isinstance(cmd, str):
        cmd = [cmd]
    if not cmd:
        raise InvalidArgument("No exec command specified")
    x = _Exec(id=uuid.uuid4().hex + uuid.uuid4().hex, container_id=c.id, cmd=list(cmd), tty=bool(body.get("Tty")),
              stdin=bool(body.get("AttachStdin")), stdout=bool(body.get("AttachStdout")),
              stderr=bool(body.get("AttachStderr")), env=list(body.get("Env") or []), user=body.get("User") or "",
              workdir=body.get("WorkingDir") or "", privileged=bool(body.get("Privileged")))
    _EXECS[x.id] = x
    req.send_json({"Id": x.id}, 201)


@route("GET", "/exec/{id}/json")
def inspect_exec(req: Request) -> None:
    x = _exec(req)
    req.send_json({
        "ID": x.id, "Running": x.running, "ExitCode": x.exit_code, "CanRemove": False, "ContainerID": x.container_id,
        "DetachKeys": "", "OpenStdin": x.stdin, "OpenStdout": x.stdout, "OpenStderr": x.stderr, "Pid": x.pid,
        "ProcessConfig": {"tty": x.tty, "entrypoint": x.cmd[0], "arguments": x.cmd[1:], "privileged": x.privileged,
                          "user": x.user},
    })


@route("POST", "/exec/{id}/resize")
def resize_exec(req: Request) -> None:
    x = _exec(req)
    if x.pty_master >= 0:
        import fcntl
        import termios

        try:
            fcntl.ioctl(x.pty_master, termios.TIOCSWINSZ,
                        struct.pack("HHHH", req.qint("h", 24) or 24, req.qint("w", 80) or 80, 0, 0))
        except OSError:
            pass
    req.send_empty(200)


def _exec_command(engine: Any, x: _Exec) -> tuple[list[str], str]:
    """The runtime's ``exec --process`` command line for ``x`` and its work directory (to remove)."""
    from kran.engine import execs

    cmd, work, _cid = execs.prepare(engine, x.container_id, x.cmd, tty=x.tty, user=x.user or None,
                                    workdir=x.workdir or None, env=x.env, privileged=x.privileged)
    return cmd, work


@route("POST", "/exec/{id}/start")
def start_exec(req: Request) -> None:
    import shutil

    body = req.body_json()
    x = _exec(req)
    with x.lock:
        if x.started:
            raise Conflict(f"Exec command {x.id} has already run" if not x.running
                           else f"Exec command {x.id} is already running")
        x.started = True
    try:
        cmd, work = _exec_command(req.engine, x)
    except BaseException:
        x.started = False
        raise
    detach = bool(body.get("Detach"))
    if detach:
        p = subprocess.Popen([*cmd, x.container_id], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        x.running, x.pid = True, p.pid

        def reap() -> None:
            x.exit_code = p.wait()
            x.running = False
            shutil.rmtree(work, ignore_errors=True)

        threading.Thread(target=reap, daemon=True).start()
        req.send_empty(200)
        return
    try:
        peer = _Peer(req, req.hijack(RAW if x.tty else MUX))
        x.running = True
        x.exit_code = _run_tty(x, cmd, peer) if x.tty else _run_pipes(x, cmd, peer)
    finally:
        x.running = False
        shutil.rmtree(work, ignore_errors=True)


def _run_pipes(x: _Exec, cmd: list[str], peer: _Peer) -> int:
    from kran.engine.execs import RUNTIME_LOG, map_error

    p = subprocess.Popen([*cmd, x.container_id], stdin=subprocess.PIPE if x.stdin else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    x.pid = p.pid
    assert p.stdout is not None and p.stderr is not None
    outs = {p.stdout.fileno(): 1, p.stderr.fileno(): 2}
    tail = bytearray()
    client_open = x.stdin
    try:
        while outs:
            fds = list(outs) + ([peer.fileno()] if client_open else [])
            r, _, _ = select.select(fds, [], [])
            for fd in r:
                if fd == peer.fileno():
                    data = peer.read()
                    if not data:
                        client_open = False
                        p.stdin.close()  # type: ignore[union-attr]
                        continue
                    try:
                        p.stdin.write(data)  # type: ignore[union-attr]
                        p.stdin.flush()  # type: ignore[union-attr]
                    except BrokenPipeError:
                        client_open = False
                    continue
                data = os.read(fd, 65536)
                if not data:
                    del outs[fd]
                    continue
                kind = outs[fd]
                if kind == 2:
                    tail.extend(data)
                    del tail[:-4096]
                    lines = data.splitlines(keepends=True)
                    data = b"".join(ln for ln in lines if not RUNTIME_LOG.match(ln))
                if data and ((kind == 1 and x.stdout) or (kind == 2 and x.stderr)):
                    try:
                        peer.send(mux(kind, data))
                    except OSError:
                        pass
        rc = p.wait()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for f in (p.stdin, p.stdout, p.stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
    text = tail.decode(errors="replace")
    if rc != 0 and ("exec failed" in text or "unable to start container process" in text):
        e = map_error(text)
        try:
            peer.send(mux(2, f"{e}\r\n".encode()))
        except OSError:
            pass
        return e.exit_code
    return rc


def _run_tty(x: _Exec, cmd: list[str], peer: _Peer) -> int:
    """With a terminal the runtime (runc's behaviour) copies between its own terminal and the
    container's pty: give it a pty of ours and relay our end."""
    master, slave = os.openpty()
    x.pty_master = master
    try:
        p = subprocess.Popen([*cmd, "--tty", x.container_id], stdin=slave, stdout=slave, stderr=slave,
                             start_new_session=True)
    finally:
        os.close(slave)
    x.pid = p.pid
    client_open = True
    try:
        while True:
            fds = [master] + ([peer.fileno()] if client_open else [])
            r, _, _ = select.select(fds, [], [])
            if peer.fileno() in r:
                data = peer.read()
                if not data:
                    client_open = False
                elif x.stdin:
                    os.write(master, data)
            if master in r:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the runtime has exited, its side of the pty is closed
                    data = b""
                if not data:
                    break
                try:
                    peer.send(data)
                except OSError:
                    pass
        return p.wait()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        x.pty_master = -1
        os.close(master)


