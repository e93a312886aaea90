"""The Docker Engine API (v1.41+) on a unix socket: ``kran system service``.

One thread per connection (HTTP/1.1, keep-alive).  A handler is a function of a :class:`Request`;
it calls one engine use case and answers with JSON, an empty body, a chunked stream, or a
hijacked raw connection (attach, exec).  A :class:`~kran.errors.KranError` becomes docker's
``{"message": ...}`` with the error's HTTP status.  Each request gets its own
:class:`~kran.engine.Engine` (and so its own database connection).

Handlers live in ``kran.api.containers``, ``images``, ``objects``, ``streams``, ``swarm`` and
``system``; each registers its routes in :mod:`kran.api.http`'s table when imported.
"""

from __future__ import annotations

import os
import re
import socket
import socketserver
import sys
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kran.api.http import API_VERSION, ROUTES, Request

DEFAULT_SOCKET = "/run/kran/kran.sock"
_VERSION_PREFIX = re.compile(r"^/v(\d+\.\d+)(/.*)$")


class _HTTPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kran"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:  # type: ignore[attr-defined]
            sys.stderr.write("api: " + (format % args) + "\n")

    def address_string(self) -> str:
        return "unix"

    def version_string(self) -> str:
        return "kran"

    def _dispatch(self) -> None:
        from kran.engine import Engine
        from kran.errors import KranError, NotFound

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
                req = Request(self, Engine(self.server.root), self.command, path, mm.groupdict(), query, version)  # type: ignore[attr-defined]
                try:
                    fn(req)
                except KranError as e:
                    if req.answered:
                        self.close_connection = True
                        return
                    if self.headers.get("Content-Length", "0") != "0" or self.headers.get("Transfer-Encoding"):
                        self.close_connection = True  # the body may be unread: don't parse it as a request
                    req.send_json({"message": str(e)}, e.http_status)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                except Exception as e:  # a bug: say so, keep serving
                    import traceback

                    traceback.print_exc()
                    if not req.answered:
                        req.send_json({"message": f"kran: internal error: {type(e).__name__}: {e}"}, 500)
                    else:
                        self.close_connection = True
                return
        req = Request(self, None, self.command, path, {}, query, version)
        err = NotFound(f"page not found: {self.command} {path}")
        req.send_json({"message": str(err)}, 404)

    do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _dispatch


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, path: str, root: str, verbose: bool = False) -> None:
        self.root = root
        self.verbose = verbose
        super().__init__(path, _HTTPHandler)


def _load_handlers() -> None:
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
    os.chmod(path, 0o660)
    return srv
