"""The request model of the Engine API and its route table, below every handler module.

Handler modules (``kran.api.containers``, ``images``, ``objects``, ``streams``, ``swarm``, ``system``)
register their routes here with :func:`route` when imported; :mod:`kran.api.server` imports them
and dispatches.  Keeping the table in this bottom module (not in the server) is what keeps the
API package free of import cycles (pinned by the import-linter contract in pyproject.toml).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from kran import API_VERSION
from kran import MIN_API_VERSION as MIN_API_VERSION  # (re-exported: the handlers' one import)

# What the server reads and discards of a body its handler did not read, to keep the connection;
# past this it answers with "Connection: close" and closes instead.
DRAIN_LIMIT = 4 << 20

Handler = Callable[["Request"], None]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` for METHOD and a path pattern; ``{name}`` matches one segment, ``{name:path}``
    the rest of the path (image names contain slashes)."""

    def regex(p: str) -> re.Pattern[str]:
        out = re.sub(r"\{(\w+):path\}", r"(?P<\1>.+)", p)
        out = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", out)
        return re.compile("^" + out + "$")

    def deco(fn: Handler) -> Handler:
        ROUTES.append((method, regex(pattern), fn))
        return fn

    return deco


def filter_args(raw: Any) -> list[str]:
    """docker's ``filters`` JSON (``{"k": ["v"]}`` or the older ``{"k": {"v": true}}``) -> ``["k=v"]``."""
    if not raw:
        return []
    if not isinstance(raw, dict):
        raise _invalid("invalid filter format")
    out: list[str] = []
    for k, vals in raw.items():
        if isinstance(vals, dict):
            vals = [v for v, on in vals.items() if on]
        elif isinstance(vals, str):
            vals = [vals]
        for v in vals:
            out.append(f"{k}={v}")
    return out


def _invalid(msg: str) -> Exception:
    from kran.errors import InvalidArgument

    return InvalidArgument(msg)


class Request:
    """What a handler gets: the parsed request and the ways to answer it."""

    def __init__(self, h: Any, engine: Any, method: str, path: str, params: dict[str, str],
                 query: dict[str, list[str]], version: str) -> None:
        self._h = h
        self.engine = engine
        self.method = method
        self.path = path
        self.params = {k: unquote(v) for k, v in params.items()}
        self.query = query
        self.version = version
        self.headers = h.headers
        self.answered = False
        self.extra_headers: list[tuple[str, str]] = []  # sent with the answer
        # The body's framing: what is left of a Content-Length body, or of the current chunk of a
        # chunked one.  Tracked so that whatever a handler leaves unread can be drained before
        # the answer (else its bytes would be parsed as the next request on a kept-alive connection).
        self._chunked = (self.headers.get("Transfer-Encoding") or "").lower() == "chunked"
        self._left = 0
        if not self._chunked:
            try:
                self._left = max(0, int(self.headers.get("Content-Length") or 0))
            except ValueError:
                self._left, h.close_connection = 0, True  # unframed: the connection cannot be reused
        self._body_done = not self._chunked and self._left == 0

    # -- the request ----------------------------------------------------------------------------

    def q(self, name: str, default: str | None = None) -> str | None:
        v = self.query.get(name)
        return v[0] if v else default

    def qbool(self, name: str, default: bool = False) -> bool:
        v = self.q(name)
        if v is None or v == "":
            return default
        return v.lower() in ("1", "true", "yes")

    def qint(self, name: str, default: int | None = None) -> int | None:
        v = self.q(name)
        if v is None or v == "":
            return default
        from kran.errors import InvalidArgument

        try:
            return int(v)
        except ValueError:
            raise InvalidArgument(f"invalid value for {name}: {v!r}") from None

    def qjson(self, name: str, default: Any = None) -> Any:
        """A JSON-encoded query parameter (docker's ``filters``, ``buildargs``...)."""
        v = self.q(name)
        if not v:
            return default
        from kran.errors import InvalidArgument

        try:
            return json.loads(v)
        except ValueError:
            raise InvalidArgument(f"invalid {name} parameter: {v}") from None

    def body(self) -> bytes:
        return b"".join(self.body_chunks())

    def body_json(self) -> Any:
        data = self.body()
        if not data.strip():
            return {}
        from kran.errors import InvalidArgument

        try:
            return json.loads(data)
        except ValueError as e:
            raise InvalidArgument(f"invalid JSON: {e}") from None

    def body_chunks(self, size: int = 1 << 16) -> Iterable[bytes]:
        """The body as it arrives (Content-Length or chunked transfer encoding)."""
        while b := self._read_some(size):
            yield b

    def _read_some(self, size: int) -> bytes:
        """At most ``size`` bytes of the body; b"" at its end."""
        if self._body_done:
            return b""
        rfile = self._h.rfile
        if self._chunked and self._left == 0:
            line = rfile.readline(65537)
            try:
                n = int(line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                n, self._h.close_connection = 0, True  # malformed framing: don't read on
            if n <= 0:
                while line and rfile.readline(65537) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                self._body_done = True
                return b""
            self._left = n
        b = rfile.read(min(self._left, size))
        if not b:  # the client hung up mid-body
            self._body_done, self._h.close_connection = True, True
            return b""
        self._left -= len(b)
        if self._left == 0:
            if self._chunked:
                rfile.readline(3)  # the CRLF after a chunk
            else:
                self._body_done = True
        return b

    def drain(self, limit: int = DRAIN_LIMIT) -> bool:
        """Read and discard what is left of the body, up to ``limit`` bytes; False if more is left
        (then the connection must be closed: its next bytes are not a request)."""
        while not self._body_done:
            if limit <= 0:
                return False
            limit -= len(self._read_some(min(limit, 1 << 16)))
        return True

    def body_file(self) -> Any:
        """The body as a readable file object (for tar uploads)."""
        return _ChunkReader(iter(self.body_chunks()))

    # -- answers --------------------------------------------------------------------------------

    def send_file(self, f: Any, length: int, content_type: str, status: int = 200) -> None:
        """A body of known length from a file object (nothing but the headers for HEAD)."""
        self._start(status, content_type, length)
        if self.method == "HEAD":
            return
        while chunk := f.read(1 << 16):
            self._h.wfile.write(chunk)

    def send_json(self, obj: Any, status: int = 200) -> None:
        data = (json.dumps(obj) + "\n").encode()
        self._start(status, "application/json", len(data))
        if self.method != "HEAD":  # (a HEAD answer has the headers of a GET, and no body)
            self._h.wfile.write(data)

    def send_text(self, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> None:
        data = text.encode()
        self._start(status, content_type, len(data))
        if self.method != "HEAD":
            self._h.wfile.write(data)

    def send_empty(self, status: int = 204) -> None:
        self._start(status, None, 0 if status != 204 else None)

    def send_stream(self, chunks: Iterable[bytes], content_type: str = "application/json", status: int = 200) -> None:
        """A chunked body written as it is produced (pull progress, logs -f, events)."""
        self._start(status, content_type, None, chunked=True)
        w = self._h.wfile
        try:
            for c in chunks:
                if c:
                    w.write(b"%x\r\n%s\r\n" % (len(c), c))
                    w.flush()
            w.write(b"0\r\n\r\n")
            w.flush()
        except (BrokenPipeError, ConnectionResetError):
            self._h.close_connection = True

    def hijack(self, content_type: str = "application/vnd.docker.raw-stream") -> socket.socket:
        """Take over the connection (docker's attach/exec): 101 UPGRADED if the client asked for an
        upgrade, else 200; the caller then reads and writes the raw socket."""
        h = self._h
        upgrade = "upgrade" in (self.headers.get("Connection") or "").lower()
        if upgrade:
            h.send_response_only(101, "UPGRADED")
            h.send_header("Content-Type", content_type)
            h.send_header("Connection", "Upgrade")
            h.send_header("Upgrade", "tcp")
        else:
            h.send_response_only(200)
            h.send_header("Content-Type", content_type)
        h.send_header("Api-Version", API_VERSION)
        h.end_headers()
        h.wfile.flush()
        self.answered = True
        h.close_connection = True
        return h.connection

    def _start(self, status: int, content_type: str | None, length: int | None, chunked: bool = False) -> None:
        h = self._h
        if not self.drain():
            h.close_connection = True
            h.linger = True  # read on a little after answering, so the client sees the answer
        h.send_response_only(status)
        h.send_header("Date", h.date_time_string())
        h.send_header("Api-Version", API_VERSION)
        h.send_header("Docker-Experimental", "false")
        h.send_header("Ostype", "linux")
        h.send_header("Server", "kran")
        for k, v in self.extra_headers:
            h.send_header(k, v)
        if content_type:
            h.send_header("Content-Type", content_type)
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        elif length is not None:
            h.send_header("Content-Length", str(length))
        if h.close_connection:  # a server that will close says so (RFC 9112 §9.6)
            h.send_header("Connection", "close")
        h.end_headers()
        self.answered = True


class _ChunkReader:
    def __init__(self, it: Any) -> None:
        self._it = it
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True




def registry_auth(req: Any) -> Any:
    """The ``X-Registry-Auth`` header (base64url JSON: username, password, serveraddress...) as
    registry credentials, or None (then the ones ``kran login`` stored apply)."""
    import base64

    raw = req.headers.get("X-Registry-Auth") or ""
    if not raw:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except ValueError:
        return None
    if not isinstance(data, dict) or not data.get("username"):
        return None
    from kran.registry.credentials import Credentials

    return Credentials(username=str(data["username"]), password=str(data.get("password") or ""))
