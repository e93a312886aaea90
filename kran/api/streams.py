"""Attach and exec endpoints: the hijacked streams (docker's attach, exec create/start/inspect/resize).

``docker run`` (attached) is create -> attach -> wait -> start; how an attach waits for its container's
start is told in :mod:`kran.api.containers`.  Exec instances and both relays live in the engine
(:mod:`kran.engine.execs`, :mod:`kran.engine.attach`), the same code ``kran exec``/``kran attach`` run;
these handlers only parse, hijack the connection and frame the output: docker's multiplexed frames
unless the call says Tty (for an exec, its *start* call, whatever its create said).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Any

from kran.api.containers import _ATTACH, MUX, RAW, _get, mux
from kran.api.http import Request, route
from kran.errors import Conflict, InvalidArgument, KranError, NotFound

# -- the client end of a hijacked connection ---------------------------------------------------------


class _Peer:
    """The hijacked connection as the engine relay's client.  Its input is read through the handler's
    buffered reader, which may already hold bytes the client sent right after its request: those are
    taken once, by :meth:`pending`, before the relay polls the socket."""

    duplex = True

    def __init__(self, req: Request, sock: socket.socket, *, raw: bool) -> None:
        self.sock = sock
        self.rfile = req._h.rfile
        self.raw = raw
        self._since = time.monotonic()

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self) -> bytes:
        self.sock.setblocking(False)
        try:
            return self.rfile.read1(65536) or b""
        except OSError:
            return b""
        finally:
            self.sock.setblocking(True)

    def read(self) -> bytes:
        try:
            return self.rfile.read1(65536)
        except OSError:
            return b""

    def write(self, stream: int, data: bytes) -> None:
        if self._since:
            # docker-py reads a hijacked stream from the raw socket, past http.client's buffer: bytes
            # that came with the response headers would be lost.  Let the headers go alone first.
            time.sleep(max(0.0, self._since + 0.05 - time.monotonic()))
            self._since = 0.0
        self.sock.sendall(data if self.raw else mux(stream, data))

    def end(self) -> None:
        """Hang up: a detached client sees its stream end at once."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _WsPeer(_Peer):
    """docker's ``/attach/ws``: a WebSocket (RFC 6455) instead of a hijacked stream.  Output goes
    raw (never multiplexed) in binary frames; the client's frames (masked, section 5.3) are its input.
    Frames are read straight from the socket, so the relay's poll sees every one."""

    _GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3

    def __init__(self, req: Request) -> None:
        import base64
        import hashlib

        key = req.headers.get("Sec-WebSocket-Key") or ""
        if "websocket" not in (req.headers.get("Upgrade") or "").lower() or not key:
            raise InvalidArgument("a websocket upgrade is required (Upgrade: websocket, Sec-WebSocket-Key)")
        h = req._h
        h.send_response_only(101, "Switching Protocols")
        h.send_header("Upgrade", "websocket")
        h.send_header("Connection", "Upgrade")
        h.send_header("Sec-WebSocket-Accept",
                      base64.b64encode(hashlib.sha1((key.strip() + self._GUID).encode()).digest()).decode())
        h.end_headers()
        h.wfile.flush()
        req.answered = True
        h.close_connection = True
        super().__init__(req, h.connection, raw=True)
        self._since = 0.0  # a websocket client reads frames after the handshake, not past a buffer

    def pending(self) -> bytes:
        return b""

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def read(self) -> bytes | None:  # type: ignore[override]
        """One frame's payload; b"" at a close frame or EOF; None for a control frame (answered)."""
        try:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack(">H", self._exact(2))
            elif n == 127:
                (n,) = struct.unpack(">Q", self._exact(8))
            mask = self._exact(4) if b1 & 0x80 else b""
            payload = self._exact(n) if n else b""
        except (EOFError, OSError):
            return b""
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        op = b0 & 0x0F
        if op == 0x8:  # close: answer it, the input ends
            self._frame(0x8, payload[:2])
            return b""
        if op == 0x9:  # ping
            self._frame(0xA, payload)
            return None
        if op == 0xA:
            return None
        return payload

    def _frame(self, op: int, data: bytes) -> None:
        n = len(data)
        head = bytes([0x80 | op]) + (bytes([n]) if n < 126 else b"\x7e" + struct.pack(">H", n) if n < 65536
                                     else b"\x7f" + struct.pack(">Q", n))
        try:
            self.sock.sendall(head + data)
        except OSError:
            pass

    def write(self, stream: int, data: bytes) -> None:
        n = len(data)
        head = bytes([0x82]) + (bytes([n]) if n < 126 else b"\x7e" + struct.pack(">H", n) if n < 65536
                                else b"\x7f" + struct.pack(">Q", n))
        self.sock.sendall(head + data)

    def end(self) -> None:
        self._frame(0x8, struct.pack(">H", 1000))  # a normal closure
        super().end()


@route("POST", "/containers/{id}/attach")
def attach_container(req: Request) -> None:
    _serve_attach(req, ws=False)


@route("GET", "/containers/{id}/attach/ws")
def attach_container_ws(req: Request) -> None:
    _serve_attach(req, ws=True)


def _serve_attach(req: Request, *, ws: bool) -> None:
    from kran.engine import attach, containers
    from kran.monitor.client import read_logs

    c = _get(req)
    opts = {k: req.qbool(k) for k in ("stdin", "stdout", "stderr")}
    tty = bool(c.config.get("Tty"))
    keys = req.q("detachKeys") or None
    if keys:
        attach.parse_detach_keys(keys)  # a bad sequence is the client's error, before the hijack
    seen = _ATTACH.register(c.id) if req.qbool("stream") and not c.running else None
    try:
        peer = _WsPeer(req) if ws else _Peer(req, req.hijack(RAW if tty else MUX), raw=tty)
        if req.qbool("logs"):
            for stream, data, _t in read_logs(os.path.join(c.dir, f"{c.id}-json.log")):
                kind = 2 if stream == "stderr" else 1
                if opts["stderr" if kind == 2 else "stdout"]:
                    peer.write(kind, data)
        if not req.qbool("stream"):
            peer.end()
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
            src = attach.open_attach(c.dir)
        except KranError:
            return  # it did not start, or is gone already: the client sees the stream end
    finally:
        if seen is not None:
            _ATTACH.unregister(c.id)
    with src:
        r = attach.run_attach(src, peer, tty=tty, stdin=opts["stdin"], stdout=opts["stdout"], stderr=opts["stderr"],
                              detach_keys=keys, initial=peer.pending(),
                              # docker closes the container's stdin at the client's EOF only without a tty
                              stdin_once=bool(c.config.get("StdinOnce")) and not tty)
    peer.end()
    if r.exit_code is not None:
        _ATTACH.exits[c.id] = r.exit_code


# -- exec -------------------------------------------------------------------------------------------


def _decode(cls: Any, body: Any) -> Any:
    """A request body as ``cls``; keys match case-insensitively, as Go's JSON decoding in dockerd
    does (docker-py sends ``detachKeys`` for ``DetachKeys``)."""
    import dataclasses

    from kran.codec import decode

    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: expected an object")
    known = {f.metadata["json"].lower(): f.metadata["json"] for f in dataclasses.fields(cls) if "json" in f.metadata}
    # null is Go's zero value: the field's default here
    body = {known.get(k.lower(), k) if k not in known.values() else k: v for k, v in body.items() if v is not None}
    try:
        return decode(cls, body)
    except (ValueError, TypeError) as e:
        raise InvalidArgument(f"invalid JSON: {e}") from None


@route("POST", "/containers/{id}/exec")
def create_exec(req: Request) -> None:
    from kran.engine import execs

    body = req.body_json()
    if isinstance(body, dict) and isinstance(body.get("Cmd"), str):
        body["Cmd"] = [body["Cmd"]]  # docker's strslice takes one string too
    cfg = _decode(execs.ExecConfig, body)
    x = execs.create(req.engine, req.params["id"], cfg)
    req.send_json({"Id": x.id}, 201)


@route("GET", "/exec/{id}/json")
def inspect_exec(req: Request) -> None:
    from kran.codec import encode
    from kran.engine import execs

    req.send_json(encode(execs.inspect(req.engine, req.params["id"])))


@route("POST", "/exec/{id}/resize")
def resize_exec(req: Request) -> None:
    from kran.engine import execs

    h, w = req.qint("h", 0) or 0, req.qint("w", 0) or 0
    if h < 0 or w < 0:
        raise InvalidArgument("invalid terminal size")
    execs.resize(req.engine, req.params["id"], h or 24, w or 80)
    req.send_empty(200)


@route("POST", "/exec/{id}/start")
def start_exec(req: Request) -> None:
    from kran.engine import execs

    start = _decode(execs.ExecStartConfig, req.body_json())
    x = execs.get(req.engine, req.params["id"])  # 404 before any hijack
    if x.started:
        raise Conflict(f"Exec command {x.id} is already running" if x.running else f"Exec command {x.id} has already run")
    if start.detach:
        r = execs.start(req.engine, x.id, None)
        if r.error is not None:
            raise r.error
        req.send_empty(200)
        return
    peer = _Peer(req, req.hijack(RAW if start.tty else MUX), raw=start.tty)
    try:
        r = execs.start(req.engine, x.id, peer, initial=peer.pending(), console_size=start.console_size)
    except KranError as e:  # after the hijack an error can only be told in the stream (as dockerd does)
        r = execs.ExecResult(exit_code=126, error=e)
    try:
        if r.error is not None:
            peer.write(1, f"{r.error}\r\n".encode())
    except OSError:
        pass
    finally:
        peer.end()
