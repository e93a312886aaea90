"""The Docker Engine API (v1.24 to v1.45) on a unix socket: ``kran system service``.

A long-lived process, so everything it opens per connection or per request is bounded and closed:

* one thread per connection (HTTP/1.1, keep-alive), at most ``MAX_CONNECTIONS`` at once; beyond
  that new connections wait in the listen backlog (``BACKLOG``) until a thread is free;
* engines (each a SQLite connection and a lock file) come from one :class:`EnginePool` per server:
  a request borrows one and gives it back when it is answered, so their number is bounded by the
  requests under way, not by the requests served;
* a connection with no request for ``IDLE_TIMEOUT`` seconds is closed (as dockerd's
  ReadHeaderTimeout does), so idle pooled client connections do not hold threads forever;
* on SIGTERM/SIGINT (:meth:`Server.stop`) the socket goes first, then every open connection is
  shut down so its thread ends and gives its engine back.

A handler is a function of a :class:`Request`; it calls one engine use case and answers with JSON,
an empty body, a chunked stream, or a hijacked raw connection (attach, exec).  A
:class:`~kran.errors.KranError` becomes docker's ``{"message": ...}`` with the error's HTTP status.
Handlers live in ``kran.api.containers``, ``images``, ``objects``, ``streams``, ``swarm``,
``system`` and ``backups`` (kran's own ``/kran/...`` routes); each registers its routes in
:mod:`kran.api.http`'s table when imported.
"""

from __future__ import annotations

import os
import re
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kran.api.http import API_VERSION, MIN_API_VERSION, ROUTES, Request

BACKLOG = 128
MAX_CONNECTIONS = 128
IDLE_TIMEOUT = 300.0
POOL_KEEP = 8  # idle engines kept open for the next requests, at most
POOL_LINGER = 1.0  # seconds an idle engine stays open
_VERSION_PREFIX = re.compile(r"^/v(\d+\.\d+)(/.*)$")


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def version_error(version: str) -> str | None:
    """dockerd's refusal of an API version outside the range it serves, or None."""
    if _vtuple(version) < _vtuple(MIN_API_VERSION):
        return (f"client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                "please upgrade your client to a newer version")
    if _vtuple(version) > _vtuple(API_VERSION):
        return f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
    return None


class EnginePool:
    """Engines over one state root, lent to one thread at a time.

    Why not one engine shared by every thread: an engine's SQLite connection and its store's lock
    file (an flock, and a per-engine nesting count) belong to one user at a time; two threads
    sharing them would share a transaction and each other's lock.  Why not one per request: that is
    what leaked a connection and a file descriptor per request.  So a small stack of idle engines,
    reused: at most ``keep`` stay open, and those not used again within ``linger`` seconds are
    closed, so a quiet server holds no engine whatever the burst before.  (Closing them all matters:
    SQLite keeps a closed connection's descriptor open, for reuse, while another connection of the
    process still holds a lock on the same file, which an open WAL connection always does.)
    """

    def __init__(self, root: str, keep: int = POOL_KEEP, linger: float = POOL_LINGER) -> None:
        self.root = root
        self._keep = keep
        self._linger = linger
        self._idle: list[tuple[Any, float]] = []  # (engine, when it came back); the newest last
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False

    @contextmanager
    def lend(self) -> Iterator[Any]:
        with self._lock:
            engine = self._idle.pop()[0] if self._idle else None
        if engine is None:
            from kran.engine import Engine

            engine = Engine(self.root)
        try:
            yield engine
        finally:
            self._give_back(engine)

    def _give_back(self, engine: Any) -> None:
        import time

        keep = engine.reusable()
        with self._lock:
            if keep and not self._closed and len(self._idle) < self._keep:
                self._idle.append((engine, time.monotonic()))
                engine = None
                if self._timer is None:
                    self._timer = threading.Timer(self._linger, self._trim)
                    self._timer.daemon = True
                    self._timer.start()
        if engine is not None:
            engine.close()

    def _trim(self) -> None:
        import time

        with self._lock:
            self._timer = None
            now = time.monotonic()
            stale = [e for e, t in self._idle if now - t >= self._linger]
            self._idle = [(e, t) for e, t in self._idle if now - t < self._linger]
            if self._idle and not self._closed:
                self._timer = threading.Timer(self._linger, self._trim)
                self._timer.daemon = True
                self._timer.start()
        for e in stale:
            e.close()

    def idle(self) -> int:
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            if self._timer is not None:
                self._timer.cancel()
        for e, _ in idle:
            e.close()


class _HTTPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kran"
    sys_version = ""
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            sys.stderr.write("api: " + (format % args) + "\n")

    def address_string(self) -> str:
        return "unix"

    def version_string(self) -> str:
        return "kran"

    linger = False  # set when closing with a request body unread

    def finish(self) -> None:
        super().finish()
        if self.linger:
            self._lingering_close()

    def _lingering_close(self, seconds: float = 2.0, limit: int = 64 << 20) -> None:
        """Closing with the client still sending would make its next write fail (EPIPE, or a
        TCP reset) before it reads the answer; so, like Apache's lingering close and Go's
        closeWrite, end our side and discard what still comes, for a bounded time and size."""
        import time

        conn = self.connection
        try:
            conn.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + seconds
            while limit > 0 and (left := deadline - time.monotonic()) > 0:
                conn.settimeout(left)
                b = conn.recv(1 << 16)
                if not b:
                    break
                limit -= len(b)
        except OSError:
            pass

    def handle_one_request(self) -> None:
        # The standard library's, except that every method reaches the route table (dockerd answers
        # an unrouted method with its JSON 404, not an HTML 501) and that a connection waiting for
        # its next request times out.
        conn = self.connection
        try:
            conn.settimeout(IDLE_TIMEOUT)
            self.raw_requestline = self.rfile.readline(65537)
            conn.settimeout(None)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        self._dispatch()
        self.wfile.flush()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests (the standard library's parser): docker's JSON, and close."""
        import json

        self.close_connection = True
        text = message or self.responses.get(code, ("error",))[0]
        data = (json.dumps({"message": text.lower() if message is None else text}) + "\n").encode()
        self.send_response_only(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        version = API_VERSION
        m = _VERSION_PREFIX.match(path)
        if m:
            version, path = m.group(1), m.group(2)
        query = parse_qs(url.query, keep_blank_values=True)
        method = "GET" if self.command == "HEAD" else self.command
        for meth, rx, fn in ROUTES:
            if meth != method:
                continue
            mm = rx.match(path)
            if mm:
                with self.server.engines.lend() as engine:
                    req = Request(self, engine, self.command, path, mm.groupdict(), query, version)
                    refused = version_error(version) if m else None
                    if refused:
                        req.send_json({"message": refused}, 400)
                    else:
                        self._run(fn, req)
                    if not self.close_connection and not req.drain():
                        self.close_connection = self.linger = True  # answered, a huge body unread
                return
        # dockerd's router: any unknown method or path is this 404
        Request(self, None, self.command, path, {}, query, version).send_json({"message": "page not found"}, 404)

    def _run(self, fn: Any, req: Request) -> None:
        from kran.errors import KranError

        try:
            fn(req)
        except KranError as e:
            if req.answered:  # a stream already under way: all that is left is to end it
                self.close_connection = True
                return
            req.send_json({"message": str(e)}, e.http_status)
        except OSError as e:
            if not isinstance(e, (BrokenPipeError, ConnectionResetError, TimeoutError)):
                self._internal(req, e)
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - a bug: say so, keep serving
            self._internal(req, e)

    def _internal(self, req: Request, e: BaseException) -> None:
        import traceback

        traceback.print_exc()
        if req.answered:
            self.close_connection = True
            return
        try:
            req.send_json({"message": f"kran: internal error: {e}"}, 500)
        except OSError:
            self.close_connection = True


class Server(socketserver.UnixStreamServer):
    """The listening socket and its connection threads (see the module docstring)."""

    request_queue_size = BACKLOG

    def __init__(self, path: str, root: str, verbose: bool = False) -> None:
        self.path = path
        self.root = root
        self.verbose = verbose
        self.engines = EnginePool(root)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        super().__init__(path, _HTTPHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        while not self._slots.acquire(timeout=0.5):  # all threads busy: the rest wait in the backlog
            if self._stopping.is_set():
                self.shutdown_request(request)
                return
        t = threading.Thread(target=self._serve_connection, args=(request, client_address),
                             name="api-conn", daemon=True)
        with self._conns_lock:
            self._conns.add(request)
            self._threads.add(t)
        t.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except OSError:
            pass  # the client hung up: nothing to answer
        except Exception:  # noqa: BLE001
            self.handle_error(request, client_address)
        finally:
            with self._conns_lock:
                self._conns.discard(request)
                self._threads.discard(threading.current_thread())
            self.shutdown_request(request)
            self._slots.release()

    def open_connections(self) -> int:
        with self._conns_lock:
            return len(self._conns)

    def stop(self) -> None:
        """Stop serving (from any thread but the one in :meth:`serve_forever`)."""
        self._stopping.set()
        self.shutdown()

    def close(self, grace: float = 3.0) -> None:
        """After :meth:`serve_forever` has returned: remove the socket, end every connection
        (threads blocked on their client see EOF), wait up to ``grace`` seconds for their threads,
        close the engines."""
        import time

        try:
            if os.path.exists(self.path) and os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except OSError:
            pass
        self.server_close()
        with self._conns_lock:
            conns, threads = list(self._conns), list(self._threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.engines.close()

    def server_bind(self) -> None:
        super().server_bind()
        self._inode = os.stat(self.path).st_ino  # so close() removes this socket, not a successor's


def _load_handlers() -> None:
    import kran.api.backups  # noqa: F401
    import kran.api.containers  # noqa: F401
    import kran.api.images  # noqa: F401
    import kran.api.objects  # noqa: F401
    import kran.api.streams  # noqa: F401
    import kran.api.swarm  # noqa: F401
    import kran.api.system  # noqa: F401


def make_server(path: str, root: str, verbose: bool = False) -> Server:
    """Bind the socket (replacing a stale one; refusing if another server answers on it)."""
    _load_handlers()
    os.makedirs(os.path.dirname(path) or ".", 0o755, exist_ok=True)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens: left by a crash
        else:
            from kran.errors import Conflict

            raise Conflict(f"another API server is listening on {path}")
        finally:
            probe.close()
    srv = Server(path, root, verbose)
    from kran import rootless

    # rootful: root and the docker-like group may connect; rootless: the user alone (0700 dir too)
    os.chmod(path, 0o600 if rootless.active() else 0o660)
    return srv
