"""What the engine uses to talk to a container's monitor (see ``kran/monitor/monitor.py``).

Glossary: CONTAINER_DIR holds ``monitor.json`` (written by the engine), ``state.json`` (written
by the monitor, atomically), ``attach.sock`` (while the monitor lives) and ``stop-requested``
(created by the engine to tell the restart policy the user stopped the container).

Lifecycle: :func:`start` spawns a detached monitor that creates and starts the container and
returns once it runs (or raises); :func:`read_state` tells where it is; :func:`attach` connects
to its stdio; :func:`read_logs` reads the json-file log, following it while the container runs.
"""

from __future__ import annotations

import collections
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from kran.errors import CannotInvoke, CommandNotFound, KranError
from kran.monitor import proto

MONITOR_MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__main__.py")

__all__ = [
    "Attachment",
    "StartResult",
    "attach",
    "monitor_command",
    "read_logs",
    "read_state",
    "request_stop",
    "start",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StartResult:
    pid: int  # the container's init, as the host sees it
    monitor_pid: int


def monitor_command(container_dir: str) -> list[str]:
    """The monitor's command line: ``python -I -S .../kran/monitor/__main__.py DIR``.

    ``-I -S`` skips site (and the venv's site-packages, which the monitor does not need): about
    1 MiB less RSS than ``python -m kran.monitor``, and no PYTHON* variable can change it.
    """
    return [sys.executable, "-I", "-S", MONITOR_MAIN, os.path.abspath(container_dir)]


def start(container_dir: str, *, timeout: float = 30, pass_fds: tuple[int, ...] = ()) -> StartResult:
    """Start the container of CONTAINER_DIR under a new, detached monitor; return once it runs.

    ``pass_fds``: fds the monitor inherits under the same numbers, the sockets that
    ``monitor.json``'s ``"net"`` names (bound by the engine: the monitor never binds host ports).
    The caller still owns its copies and should close them once this returns.

    Raises CommandNotFound / CannotInvoke (docker's 127 / 126) when the runtime cannot exec the
    process, KranError for any other failure; the monitor then has cleaned up and exited.
    """
    sync_r, sync_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        try:
            p = subprocess.Popen(
                [*monitor_command(container_dir), "--sync-fd", str(sync_w), "--detach"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err_w,  # only until the monitor detaches: Python startup errors
                pass_fds=(sync_w, *pass_fds),
                close_fds=True,
                start_new_session=True,
                cwd="/",
            )
        finally:
            os.close(sync_w)
            os.close(err_w)
        # The first process forks the monitor and exits at once; read the report first, so that
        # the wait below finds it gone (Popen.wait with a timeout would poll with sleeps).
        line = _read_line(sync_r, time.monotonic() + timeout)
        p.wait(timeout)
        if not line:
            err = _read_all(err_r, time.monotonic() + 1.0).decode(errors="replace").strip()
            tail = err.splitlines()[-1] if err else f"exit status {p.returncode}"
            raise KranError(f"container monitor exited without reporting: {tail}")
    except subprocess.TimeoutExpired as e:
        raise KranError(f"container monitor did not start within {timeout}s") from e
    finally:
        os.close(sync_r)
        os.close(err_r)
    try:
        msg = json.loads(line)
    except ValueError as e:
        raise KranError(f"container monitor: bad report {line!r}") from e
    if msg.get("ok"):
        return StartResult(pid=int(msg["pid"]), monitor_pid=int(msg["monitor_pid"]))
    error = str(msg.get("error") or "unknown error")
    code = proto.exit_code_for(error)
    if code == 127:
        raise CommandNotFound(error)
    if code == 126:
        raise CannotInvoke(error)
    raise KranError(error)


def _readable(fd: int, timeout: float) -> bool:
    """poll, not select: the API server is a long-lived process whose fds may pass 1024, where
    select() fails ("filedescriptor out of range")."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(max(0.0, timeout) * 1000))


def _read_line(fd: int, deadline: float) -> bytes:
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise KranError("container monitor did not report in time")
        if not _readable(fd, left):
            continue
        b = os.read(fd, 4096)
        if not b:
            break
        buf += b
    return buf.split(b"\n", 1)[0]


def _read_all(fd: int, deadline: float) -> bytes:
    buf = b""
    while (left := deadline - time.monotonic()) > 0:
        if not _readable(fd, left):
            break
        b = os.read(fd, 65536)
        if not b:
            break
        buf += b
    return buf


def read_state(container_dir: str) -> dict | None:
    """The monitor's ``state.json``, or None before the first write."""
    try:
        with open(os.path.join(container_dir, proto.STATE), "rb") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def request_stop(container_dir: str) -> None:
    """Tell the monitor that the user stops the container: no restart follows its exit.

    (The same as an attach client's STOP frame; works while no client is attached.)
    """
    path = os.path.join(container_dir, proto.STOP_FILE)
    with open(path, "w"):
        pass


# -- attach ---------------------------------------------------------------------------------


class Attachment:
    """A connection to a monitor's ``attach.sock``; a thin wrapper for a select loop.

    ``recv`` reads exactly one frame and nothing more, so ``select`` on ``fileno()`` stays
    truthful.  Output frames: (proto.STDOUT|STDERR, bytes), then (proto.EXIT, b"<code>").
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def _send(self, kind: int, payload: bytes = b"") -> None:
        self.sock.sendall(proto.frame(kind, payload))

    def send_stdin(self, data: bytes) -> None:
        for i in range(0, len(data), proto.MAX_FRAME):
            self._send(proto.STDIN, data[i : i + proto.MAX_FRAME])

    def close_stdin(self) -> None:
        self._send(proto.CLOSE_STDIN)

    def resize(self, rows: int, cols: int) -> None:
        self._send(proto.RESIZE, struct.pack(">HH", rows, cols))

    def request_stop(self) -> None:
        self._send(proto.STOP)

    def _exactly(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            b = self.sock.recv(n - len(buf))
            if not b:
                return None
            buf += b
        return buf

    def recv(self) -> tuple[int, bytes] | None:
        """The next frame (type, payload), or None when the monitor closed the connection."""
        head = self._exactly(proto.HEADER.size)
        if head is None:
            return None
        kind, length = proto.HEADER.unpack(head)
        payload = self._exactly(length) if length else b""
        if payload is None:
            return None
        return kind, payload

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach(container_dir: str) -> Attachment:
    """Connect to the container's monitor.  Raises KranError if the monitor is not there."""
    path = os.path.join(container_dir, proto.ATTACH_SOCK)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if len(os.fsencode(path)) < 100:
            sock.connect(path)
        else:  # sun_path holds 108 bytes: reach a long path through the directory's fd
            dfd = os.open(container_dir, os.O_PATH | os.O_DIRECTORY)
            try:
                sock.connect(f"/proc/self/fd/{dfd}/{proto.ATTACH_SOCK}")
            finally:
                os.close(dfd)
    except OSError as e:
        sock.close()
        raise KranError(f"cannot attach to the container's monitor: {e.strerror}") from e
    return Attachment(sock)


# -- logs -----------------------------------------------------------------------------------


def _parse_time(s: str) -> int:
    """RFC 3339 (``2024-01-01T00:00:00.123456789Z``, any fraction length, Z or offset) -> ns."""
    import calendar

    base = calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S"))
    rest = s[19:]
    frac = 0
    if rest.startswith("."):
        digits = ""
        i = 1
        while i < len(rest) and rest[i].isdigit():
            i += 1
        digits = rest[1:i]
        frac = int((digits + "000000000")[:9])
        rest = rest[i:]
    offset = 0
    if rest and rest[0] in "+-":
        hh, mm = int(rest[1:3]), int(rest[4:6])
        offset = (hh * 3600 + mm * 60) * (1 if rest[0] == "+" else -1)
    return (base - offset) * 1_000_000_000 + frac


def _decode(line: bytes) -> tuple[str, bytes, str] | None:
    try:
        e = json.loads(line)
        return e.get("stream", "stdout"), e.get("log", "").encode(), e.get("time", "")
    except (ValueError, AttributeError):
        return None  # a torn or foreign line: skip it, as docker does


def _log_files(log_path: str) -> list[str]:
    """Rotated files oldest first, then the live file."""
    n = 1
    while os.path.exists(proto.rotated(log_path, n)):
        n += 1
    return [proto.rotated(log_path, i) for i in range(n - 1, 0, -1)] + [log_path]


def _running(container_dir: str) -> bool:
    st = read_state(container_dir)
    return st is not None and st.get("status") in ("running", "restarting")


def read_logs(
    log_path: str,
    *,
    follow: bool = False,
    tail: int | None = None,
    since: float | None = None,
    until: float | None = None,
    timestamps: bool = False,
    container_dir: str | None = None,
    poll_interval: float = 0.1,
) -> Iterator[tuple[str, bytes, str]]:
    """Entries of a json-file log as (stream, data, time), across rotated files in order.

    ``tail``: only the last N entries written so far; ``since``/``until``: unix times (inclusive,
    like docker); ``timestamps``: data is prefixed with the time and a space (``docker logs -t``).
    ``follow``: then keep reading new entries, across rotations, until the container is no longer
    running or restarting according to ``state.json`` in ``container_dir`` (default: the log's
    directory).
    """
    since_ns = None if since is None else int(since * 1e9)
    until_ns = None if until is None else int(until * 1e9)
    cdir = container_dir or os.path.dirname(os.path.abspath(log_path))

    def wanted(entry: tuple[str, bytes, str]) -> bool:
        if since_ns is None and until_ns is None:
            return True
        try:
            t = _parse_time(entry[2])
        except ValueError:
            return True
        return (since_ns is None or t >= since_ns) and (until_ns is None or t <= until_ns)

    def out(entry: tuple[str, bytes, str]) -> tuple[str, bytes, str]:
        if timestamps:
            return entry[0], entry[2].encode() + b" " + entry[1], entry[2]
        return entry

    # Snapshot: read what exists now.  Keep the live file open to follow it afterwards.
    files = _log_files(log_path)
    live = None
    pending = b""
    old: collections.deque | list = collections.deque(maxlen=tail) if tail is not None and tail >= 0 else []
    for path in files:
        try:
            f = open(path, "rb")  # noqa: SIM115 - the live one stays open for follow
        except FileNotFoundError:
            continue
        data = f.read()
        lines = data.split(b"\n")
        pending = lines.pop()  # a line still being written (no "\n" yet)
        for ln in lines:
            e = _decode(ln)
            if e is not None and wanted(e):
                old.append(e)
        if path == log_path:
            live = f
        else:
            f.close()
    if tail == 0:
        old.clear()
    try:
        for e in old:
            yield out(e)
        if not follow:
            return
        while True:
            # Order matters: state first, then drain.  The monitor writes the log before
            # state.json, so after seeing "exited" one more drain gets everything.
            running = _running(cdir)
            while True:
                if live is not None:
                    chunk = live.read()
                    if chunk:
                        pending += chunk
                        *lines, pending = pending.split(b"\n")
                        for ln in lines:
                            e = _decode(ln)
                            if e is None:
                                continue
                            if until_ns is not None and _parse_time(e[2]) > until_ns:
                                return  # follow ends at `until`
                            if wanted(e):
                                yield out(e)
                        continue
                # At EOF: has the file been rotated (or created) under us?
                try:
                    st = os.stat(log_path)
                except FileNotFoundError:
                    break
                if live is not None and os.fstat(live.fileno()).st_ino == st.st_ino:
                    break
                if live is not None:
                    live.close()
                live = open(log_path, "rb")  # noqa: SIM115
                pending = b""
            if not running:
                return
            time.sleep(poll_interval)
    finally:
        if live is not None:
            live.close()
