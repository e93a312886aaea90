"""The monitor's building blocks, below :mod:`kran.monitor.monitor`: JSON without the ``json``
package, fd passing and sockets without ``socket``, the json-file :class:`LogWriter` and the attach
:class:`Client` buffer.

Like the monitor itself this imports only low-level stdlib modules (the monitor stays small in
memory for as long as its container runs: see ``docs/monitor.md``).
"""

from __future__ import annotations

import _json  # the C half of json: `json` itself pulls in re and enum (~1 MiB of RSS)
import _socket  # likewise: `socket` pulls in enum and selectors
import fcntl
import os
import struct
import time

from kran.monitor import proto

Socket = _socket.socket
CLIENT_BUFFER_CAP = 4 << 20  # per attach client; beyond it output frames are dropped for that client
PR_SET_CHILD_SUBREAPER = 36


class _JSONContext:
    # what _json.make_scanner reads from json.JSONDecoder
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo: dict = {}


def json_loads(text: str) -> object:
    scan = _json.make_scanner(_JSONContext())
    start = len(text) - len(text.lstrip())
    obj, end = scan(text, start)
    if text[end:].strip():
        raise ValueError(f"extra data after JSON at offset {end}")
    return obj


def json_dumps(v: object) -> str:
    """JSON for what the monitor writes: str, int, bool, None, flat dicts of those."""
    if isinstance(v, str):
        return _json.encode_basestring(v)
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json_dumps(k)}: {json_dumps(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):  # the health log
        return "[" + ", ".join(json_dumps(x) for x in v) + "]"
    raise TypeError(f"cannot encode {type(v).__name__}")


def recv_fd(conn: Socket) -> int:
    """One fd sent with SCM_RIGHTS (runc's console socket protocol), or -1."""
    size = struct.calcsize("i")
    _, anc, _, _ = conn.recvmsg(4096, _socket.CMSG_SPACE(size))
    fds = [
        struct.unpack_from("i", data, i)[0]
        for level, kind, data in anc
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
        for i in range(0, len(data) - size + 1, size)
    ]
    for extra in fds[1:]:
        os.close(extra)
    return fds[0] if fds else -1


def accept(listener: Socket) -> Socket:
    fd, _ = listener._accept()
    return Socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)


def now_rfc3339(ns: int | None = None) -> str:
    """RFC 3339 with nanoseconds, UTC: ``2024-01-01T00:00:00.123456789Z``."""
    if ns is None:
        ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def clean_runtime_error(raw: bytes) -> str:
    """The last line of a runtime's stderr, without logrus' ``time=... level=error msg="..."``."""
    lines = [ln.strip() for ln in raw.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    i = line.find('msg="')
    if i < 0 or not line.startswith("time="):
        return line
    out = []
    j = i + 5
    while j < len(line):
        c = line[j]
        if c == "\\" and j + 1 < len(line):
            nxt = line[j + 1]
            out.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
            j += 2
            continue
        if c == '"':
            break
        out.append(c)
        j += 1
    return "".join(out)


def set_subreaper() -> None:
    # No os.prctl in the stdlib; ctypes costs ~0.5 MiB RSS, the only way without a C extension.
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def set_nonblocking(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


def read_available(fd: int) -> bytes:
    """Whatever a pipe holds right now, without waiting for EOF (a child may still hold it)."""
    set_nonblocking(fd)
    chunks = []
    while True:
        try:
            b = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


class LogWriter:
    """docker's json-file log: one JSON object per line, rotation by size (``max-size``/``max-file``)."""

    def __init__(self, path: str, max_size: int, max_file: int) -> None:
        self.path = path
        self.max_size = max_size
        self.max_file = max(1, max_file)
        self.partial = {"stdout": b"", "stderr": b""}
        self.fd = -1
        self._open()

    def _open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def _rotate(self) -> None:
        os.close(self.fd)
        if self.max_file > 1:
            # keep max_file files in total: log, log.1 .. log.(max_file-1)
            for n in range(self.max_file - 1, 0, -1):
                try:
                    os.rename(proto.rotated(self.path, n - 1), proto.rotated(self.path, n))
                except FileNotFoundError:
                    pass
        else:
            os.unlink(self.path)
        self._open()

    def _entry(self, stream: str, chunk: bytes) -> None:
        text = json_dumps(chunk.decode("utf-8", "replace"))
        line = f'{{"log":{text},"stream":"{stream}","time":"{now_rfc3339()}"}}\n'.encode()
        if self.max_size > 0 and self.size > 0 and self.size + len(line) > self.max_size:
            self._rotate()
        os.write(self.fd, line)
        self.size += len(line)

    def write(self, stream: str, data: bytes) -> None:
        buf = self.partial[stream] + data
        start = 0
        while start < len(buf):
            i = buf.find(b"\n", start, start + proto.MAX_LOG_LINE)
            if i >= 0:
                end = i + 1
            elif len(buf) - start >= proto.MAX_LOG_LINE:
                end = start + proto.MAX_LOG_LINE
            else:
                break
            self._entry(stream, buf[start:end])
            start = end
        self.partial[stream] = buf[start:]

    def flush(self, stream: str) -> None:
        """EOF on a stream: its partial line is written without "\\n"."""
        if self.partial[stream]:
            self._entry(stream, self.partial[stream])
            self.partial[stream] = b""

    def close(self) -> None:
        for s in self.partial:
            self.flush(s)
        os.close(self.fd)


class Client:
    """One attach connection: frames in, a bounded buffer of frames out."""

    def __init__(self, sock: Socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.outbuf = bytearray()
        self.closing = False  # close once outbuf is flushed

    def queue(self, data: bytes, force: bool = False) -> None:
        # A slow client must not block the container: drop whole frames beyond the cap.
        if force or len(self.outbuf) + len(data) <= CLIENT_BUFFER_CAP:
            self.outbuf += data


