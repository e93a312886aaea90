"""Long operations streamed from a worker thread (pull, push, save, build, export).

The worker runs with the request's engine: the handler thread only relays what the worker emits
and does not touch the engine until the worker has ended (the engine has one user at a time, and no
second engine is opened per stream).  It hands its output to the handler through a bounded queue: a failure before the first byte becomes docker's
JSON error with its HTTP status, a later one an ``{"errorDetail": ...}`` line inside the 200 stream
(docker's jsonmessage protocol).  A client that hangs up cancels the worker at its next write.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from kran.api.http import Request
from kran.errors import KranError


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj) + "\r\n").encode()


def error_line(e: BaseException) -> bytes:
    if isinstance(e, KranError):
        msg = str(e)
    else:  # a bug: the traceback for the service's log, a plain message for the client
        import traceback

        traceback.print_exception(e)
        msg = f"kran: internal error: {e}"
    return _line({"errorDetail": {"message": msg}, "error": msg})


_DONE = object()


class _Cancelled(Exception):
    pass


def stream_from_worker(req: Request, work: Callable[[Any, Callable[[bytes], None]], None], *,
                       content_type: str = "application/json",
                       on_error: Callable[[BaseException], bytes | None] = error_line) -> None:
    """Run ``work(engine, emit)`` in a thread; answer with what it emits, as a chunked stream.

    An exception raised before anything was emitted is re-raised here (the server maps it to
    docker's JSON error and status); after that, ``on_error`` gives the stream's last chunk.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=64)
    cancelled = threading.Event()
    engine = req.engine

    def put(item: Any) -> None:
        while True:
            if cancelled.is_set():
                raise _Cancelled
            try:
                q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def run() -> None:
        try:
            work(engine, lambda b: put(b) if b else None)
        except _Cancelled:
            return
        except BaseException as e:  # noqa: BLE001 - handed to the handler thread
            try:
                put(e)
            except _Cancelled:
                return
            return
        try:
            put(_DONE)
        except _Cancelled:
            pass

    t = threading.Thread(target=run, name="api-stream", daemon=True)
    t.start()
    first = q.get()
    if isinstance(first, BaseException):
        t.join()
        raise first
    if first is _DONE:
        t.join()
        req.send_stream(iter(()), content_type)
        return

    def chunks() -> Iterator[bytes]:
        item = first
        while True:
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                last = on_error(item)
                if last:
                    yield last
                else:
                    req._h.close_connection = True
                return
            yield item
            item = q.get()

    try:
        req.send_stream(chunks(), content_type)
    finally:
        cancelled.set()
        while t.is_alive():  # let a blocked worker see the cancel
            try:
                q.get(timeout=0.2)
            except queue.Empty:
                pass
