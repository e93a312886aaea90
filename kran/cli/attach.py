"""The user's terminal as a stream client: ``kran attach``, ``kran run -it``/``start -ai`` and
``kran exec`` relay it through the engine (:mod:`kran.engine.attach`), the code the API server runs
for docker's hijacked connections.

    kran CLI (this module)            engine relay                      container / exec
      | stdin (raw mode with -t) ----->|-- stdin bytes ------------------>|
      | SIGWINCH -> resize ----------->|-- TIOCSWINSZ / monitor resize -->|
      | <---------------- stdout/stderr <------------------------ output --|
      | <---------------- exit code <------------------------------- exit --|

Ctrl-P Ctrl-Q (or --detach-keys) detaches with a terminal and leaves the process running.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

DEFAULT_DETACH = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str | None) -> bytes:
    from kran.engine.attach import parse_detach_keys as parse

    return parse(spec)


class Terminal:
    """stdin, stdout and stderr of the CLI as the relay's client; with ``tty`` and a terminal on
    stdin, raw mode for the session; signals (SIGWINCH, and those proxied) come through a wakeup pipe
    so the relay's poll sees them."""

    duplex = False

    def __init__(self, *, stdin: bool, tty: bool, on_resize: Callable[[int, int], None] | None = None,
                 on_signal: Callable[[int], None] | None = None) -> None:
        self.in_fd = sys.stdin.fileno() if stdin and sys.stdin is not None else -1
        self.is_tty = self.in_fd >= 0 and os.isatty(self.in_fd)
        self.tty = tty
        self.on_resize = on_resize
        self.on_signal = on_signal
        self._saved: Any = None
        self._pipe: tuple[int, int] | None = None
        self._handlers: dict[int, Any] = {}
        self._pending: list[int] = []

    # -- the relay's client -----------------------------------------------------------------------

    def fileno(self) -> int:
        return self.in_fd

    def read(self) -> bytes:
        try:
            return os.read(self.in_fd, 65536)
        except OSError:
            return b""

    def write(self, stream: int, data: bytes) -> None:
        out = sys.stdout.buffer if stream == 1 else sys.stderr.buffer
        out.write(data)
        out.flush()

    # -- the session --------------------------------------------------------------------------------

    def size(self) -> tuple[int, int] | None:
        """(rows, columns) of the terminal on stdin (or stdout), if there is one."""
        for fd in (self.in_fd, sys.stdout.fileno() if sys.stdout is not None else -1):
            if fd >= 0 and os.isatty(fd):
                try:
                    sz = os.get_terminal_size(fd)
                    return sz.lines, sz.columns
                except OSError:
                    pass
        return None

    def resize(self) -> None:
        sz = self.size()
        if sz and self.on_resize is not None:
            self.on_resize(*sz)

    def watch(self) -> dict[int, Callable[[], None]]:
        assert self._pipe is not None
        return {self._pipe[0]: self._signalled}

    def _signalled(self) -> None:
        assert self._pipe is not None
        try:
            os.read(self._pipe[0], 512)
        except BlockingIOError:
            pass
        while self._pending:
            s = self._pending.pop(0)
            if s == signal.SIGWINCH:
                if self.tty:
                    self.resize()
            elif self.on_signal is not None:
                self.on_signal(s)

    def __enter__(self) -> Terminal:
        rd, wr = os.pipe()
        for fd in (rd, wr):
            os.set_blocking(fd, False)
        self._pipe = (rd, wr)
        signal.set_wakeup_fd(wr)
        sigs = [signal.SIGWINCH] + ([signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                                     signal.SIGUSR2] if self.on_signal is not None else [])
        for s in sigs:
            self._handlers[s] = signal.signal(s, lambda signum, _frame: self._pending.append(signum))
        if self.tty and self.is_tty:
            import termios
            import tty as ttymod

            self._saved = termios.tcgetattr(self.in_fd)
            ttymod.setraw(self.in_fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.in_fd, termios.TCSADRAIN, self._saved)
        signal.set_wakeup_fd(-1)
        for s, h in self._handlers.items():
            signal.signal(s, h)
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None


# -- attach ------------------------------------------------------------------------------------------


def attach_and_start(engine: Any, cid: str, *, stdin: bool, tty: bool, detach_keys: str | None,
                     sig_proxy: bool) -> int | None:
    """Start the container with its monitor waiting for us, attach, relay until it exits."""
    from kran.engine import containers

    parse_detach_keys(detach_keys)  # a bad sequence fails before the container starts
    c = containers.start(engine, cid, wait_attach=True)
    return _relay(engine, c, stdin=stdin, tty=tty, detach_keys=detach_keys, sig_proxy=sig_proxy and not tty)


def attach_running(engine: Any, c: Any, *, stdin: bool, tty: bool, detach_keys: str | None) -> int | None:
    parse_detach_keys(detach_keys)
    return _relay(engine, c, stdin=stdin, tty=tty, detach_keys=detach_keys, sig_proxy=not tty)


def _relay(engine: Any, c: Any, *, stdin: bool, tty: bool, detach_keys: str | None, sig_proxy: bool) -> int | None:
    """None when the user detached; else the container's exit code."""
    from kran.engine import attach, containers

    def proxy(s: int) -> None:
        try:
            containers.kill(engine, c.id, str(s))
        except Exception:  # noqa: BLE001 - the container may be gone already
            pass

    with attach.open_attach(c.dir) as src:
        term = Terminal(stdin=stdin, tty=tty, on_resize=src.resize, on_signal=proxy if sig_proxy else None)
        with term:
            if tty and term.is_tty:
                term.resize()
            # the CLI's stdin EOF closes the container's stdin (docker's CLI half-closes its stream)
            r = attach.run_attach(src, term, tty=tty, stdin=term.in_fd >= 0, detach_keys=detach_keys,
                                  stdin_once=True, watch=term.watch())
    if r.detached:
        return None
    if r.exit_code is not None:
        return r.exit_code
    code = containers.wait_exit(engine, c.id, 30)
    return 0 if code is None else code
