"""Streams between a client and a process: one relay for ``exec`` and for ``attach``, used by the CLI
(the user's terminal) and the API server (a hijacked connection) alike.

Glossary: the *source* is the process side (an exec's fds, or a container's monitor connection);
the *client* is the front end's side (something with a readable fd for its input and a ``write`` for
output frames).  The relay ends when the source ends (an exit code), when the client types the
detach keys (:data:`DETACHED`: the process keeps running) or when the client hangs up
(:data:`HANGUP`).  It waits with ``poll`` (``select`` breaks on fds past 1024).
"""

from __future__ import annotations

import select
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kran.errors import InvalidArgument

DEFAULT_DETACH = "ctrl-p,ctrl-q"
DETACHED = "detached"
HANGUP = "hangup"

_CTRL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(spec: str | None) -> bytes:
    """docker's ``--detach-keys`` / ``detachKeys``: comma-separated ``ctrl-<x>`` or single characters."""
    out = bytearray()
    for part in (spec or DEFAULT_DETACH).split(","):
        p = part.strip().lower()
        if p.startswith("ctrl-") and len(p) == 6 and ("a" <= p[5] <= "z" or p[5] in _CTRL):
            out.append(ord(p[5]) - ord("a") + 1 if "a" <= p[5] <= "z" else _CTRL[p[5]])
        elif len(part) == 1:
            out.append(ord(part))
        else:
            raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class DetachScanner:
    """Finds the detach sequence in a client's input, across reads.  Bytes of a partial match are
    held back and sent on once the match breaks (docker's escape proxy does the same)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.matched = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to forward, detached?)"""
        if not self.keys:
            return data, False
        send = bytearray()
        for b in data:
            if b == self.keys[self.matched]:
                self.matched += 1
                if self.matched == len(self.keys):
                    return bytes(send), True
                continue
            if self.matched:
                send += self.keys[: self.matched]
                self.matched = 0
                if b == self.keys[0]:
                    self.matched = 1
                    continue
            send.append(b)
        return bytes(send), False


class Client(Protocol):
    """The front end's end: input from :meth:`fileno`/:meth:`read`, output frames to :meth:`write`.
    ``duplex``: the input fd is the connection the output goes to (a socket), so its hang-up means
    the client is gone; a terminal's or pipe's EOF only ends the input."""

    duplex: bool

    def fileno(self) -> int: ...

    def read(self) -> bytes | None:
        """Input bytes; b"" when the client closed its input (or went away); None when what came
        was for the front end alone (a websocket's ping)."""
        ...

    def write(self, stream: int, data: bytes) -> None:
        """Output of ``stream`` (1 stdout, 2 stderr); raises OSError if the client is gone."""
        ...


class Source(Protocol):
    """The process's end (see :class:`~kran.engine.execproc.ExecProcess`, :class:`MonitorSource`)."""

    def fds(self) -> list[int]: ...

    def read(self, fd: int) -> tuple[int, bytes] | None: ...

    def write_stdin(self, data: bytes) -> None: ...

    def close_stdin(self) -> None: ...


class MonitorSource:
    """A container's monitor connection as a :class:`Source`; ``exit_code`` is set by its exit frame."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.exit_code: int | None = None
        self._open = True

    def fds(self) -> list[int]:
        return [self.conn.fileno()] if self._open else []

    def read(self, fd: int) -> tuple[int, bytes] | None:
        from kran.monitor import proto

        msg = self.conn.recv()
        if msg is None:
            self._open = False
            return None
        kind, payload = msg
        if kind == proto.EXIT:
            try:
                self.exit_code = int(payload.decode() or 0)
            except ValueError:
                self.exit_code = 0
            self._open = False
            return None
        if kind in (proto.STDOUT, proto.STDERR):
            return kind, payload
        return kind, b""

    def write_stdin(self, data: bytes) -> None:
        self.conn.send_stdin(data)

    def close_stdin(self) -> None:
        self.conn.close_stdin()

    def resize(self, height: int, width: int) -> None:
        self.conn.resize(height, width)

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass

    def __enter__(self) -> MonitorSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachResult:
    """How an attach ended: the container's exit code (its monitor's exit frame), or the client
    detached or hung up (the container runs on), or neither (the monitor went away)."""

    exit_code: int | None = None
    detached: bool = False
    hung_up: bool = False


def open_attach(container_dir: str) -> MonitorSource:
    """Connect to a container's monitor (raises KranError if it is not running)."""
    from kran.monitor.client import attach

    return MonitorSource(attach(container_dir))


def run_attach(src: MonitorSource, client: Client, *, tty: bool, stdin: bool, stdout: bool = True,
               stderr: bool = True, detach_keys: str | None = None, stdin_once: bool = False,
               watch: dict[int, Callable[[], None]] | None = None, initial: bytes = b"") -> AttachResult:
    """Relay a client to an attached container.  The detach keys apply with a terminal only (as in
    docker); the container's stdin is closed at the client's EOF only if it is ``StdinOnce``."""
    keys = parse_detach_keys(detach_keys) if tty else b""
    streams = tuple(s for s, on in ((1, stdout), (2, stderr)) if on)
    how = relay(src, client, stdin=stdin, keys=keys, close_stdin=stdin and stdin_once, streams=streams,
                watch=watch, initial=initial)
    return AttachResult(exit_code=src.exit_code, detached=how == DETACHED, hung_up=how == HANGUP)


def relay(src: Source, client: Client, *, stdin: bool, keys: bytes = b"", close_stdin: bool = True,
          streams: tuple[int, ...] = (1, 2), watch: dict[int, Callable[[], None]] | None = None,
          initial: bytes = b"") -> str | None:
    """Copy the client's input to the source (if ``stdin``) and the source's output (of ``streams``)
    to the client until the source's output ends (None), the detach keys come (DETACHED) or the
    client hangs up (HANGUP).  On the client's input EOF, ``close_stdin`` closes the process's stdin.
    ``watch``: more fds to wait on (a signal pipe) and what to call when they are readable;
    ``initial``: input the client sent before the relay began (already read from its fd)."""
    watch = watch or {}
    scanner = DetachScanner(keys)
    if stdin and initial:
        data, detached = scanner.feed(initial)
        if data:
            src.write_stdin(data)
        if detached:
            return DETACHED
    poller = select.poll()
    src_fds = set(src.fds())
    for fd in src_fds:
        poller.register(fd, select.POLLIN)
    cfd = client.fileno() if stdin else -1
    duplex = bool(getattr(client, "duplex", False))
    input_open = cfd >= 0
    if cfd >= 0:
        poller.register(cfd, select.POLLIN)
    for fd in watch:
        poller.register(fd, select.POLLIN)
    while src_fds:
        for fd, ev in poller.poll():
            if fd in watch:
                watch[fd]()
            elif fd == cfd:
                if input_open:  # readable, or at its end (a pipe's EOF is POLLHUP alone)
                    data = client.read()
                    if data is None:  # nothing for the process (a websocket's control frame)
                        continue
                    if data:
                        data, detached = scanner.feed(data)
                        if data:
                            src.write_stdin(data)
                        if detached:
                            return DETACHED
                        continue
                    input_open = False
                    if close_stdin:
                        src.close_stdin()
                    if not duplex:  # a pipe or terminal: its EOF ends only the input
                        poller.unregister(cfd)
                        cfd = -1
                        continue
                    # a connection may only have shut its sending side: watch it for the hang-up of both
                    poller.modify(cfd, 0)
                if ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    return HANGUP
            elif fd in src_fds:
                got = src.read(fd)
                if got is None:
                    poller.unregister(fd)
                    src_fds.discard(fd)
                    continue
                stream, data = got
                if data and stream in streams:
                    try:
                        client.write(stream, data)
                    except OSError:
                        return HANGUP
    return None


def drain(src: Source) -> None:
    """Read and drop a source's output until it ends (a detached or abandoned exec must not block
    on a full pipe or pty)."""
    poller = select.poll()
    fds = set(src.fds())
    for fd in fds:
        poller.register(fd, select.POLLIN)
    while fds:
        for fd, _ev in poller.poll():
            if fd in fds and src.read(fd) is None:
                poller.unregister(fd)
                fds.discard(fd)
