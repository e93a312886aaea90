"""Attaching the user's terminal to a container through its monitor's attach socket.

    kran CLI                         monitor (attach.sock)                 container
      |-- connect ---------------------->|                                     |
      |                                  |-- runtime start (if waiting) ------>|
      |-- [0|len|stdin bytes] ---------->|-- pipe / pty master --------------->|
      |-- [2|4|rows cols]  (SIGWINCH) -->|-- TIOCSWINSZ                        |
      |<--------- [1|len|stdout] / [2|len|stderr] <------------ output --------|
      |<--------- [3|len|exit code] <----------------------------- exit -------|

Ctrl-P Ctrl-Q (or --detach-keys) detaches and leaves the container running.
"""

from __future__ import annotations

import os
import select
import signal
import sys
from typing import Any

DEFAULT_DETACH = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str | None) -> bytes:
    from kran.errors import InvalidArgument

    out = bytearray()
    for part in (spec or DEFAULT_DETACH).split(","):
        p = part.strip().lower()
        if p.startswith("ctrl-") and len(p) == 6:
            c = p[5]
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
            else:
                raise InvalidArgument(f"Unknown character: '{part}'")
        elif len(part) == 1:
            out.append(ord(part))
        else:
            raise InvalidArgument(f"Unknown character: '{part}'")
    return bytes(out)


def attach_and_start(engine: Any, cid: str, *, stdin: bool, tty: bool, detach_keys: str | None,
                     sig_proxy: bool) -> int | None:
    """Start the container with its monitor waiting for us, attach, relay until it exits."""
    from kran.engine import containers

    keys = parse_detach_keys(detach_keys)
    c = containers.start(engine, cid, wait_attach=True)
    return _relay(engine, c, stdin=stdin, tty=tty, keys=keys, sig_proxy=sig_proxy and not tty)


def attach_running(engine: Any, c: Any, *, stdin: bool, tty: bool, detach_keys: str | None) -> int | None:
    return _relay(engine, c, stdin=stdin, tty=tty, keys=parse_detach_keys(detach_keys), sig_proxy=not tty)


def _relay(engine: Any, c: Any, *, stdin: bool, tty: bool, keys: bytes, sig_proxy: bool) -> int | None:
    from kran.engine import containers
    from kran.monitor.client import attach

    conn = attach(c.dir)
    in_fd = sys.stdin.fileno() if stdin and sys.stdin is not None else -1
    is_tty = in_fd >= 0 and os.isatty(in_fd)
    old_attrs = None
    rd, wr = os.pipe()
    os.set_blocking(wr, False)
    os.set_blocking(rd, False)
    signal.set_wakeup_fd(wr)
    handlers: dict[int, Any] = {}
    pending: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        pending.append(signum)

    watch = [signal.SIGWINCH] + ([signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                                  signal.SIGUSR2] if sig_proxy else [])
    for s in watch:
        handlers[s] = signal.signal(s, on_signal)
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    matched = 0
    try:
        if tty and is_tty:
            import termios
            import tty as ttymod

            old_attrs = termios.tcgetattr(in_fd)
            ttymod.setraw(in_fd)
            _resize(conn)
        while True:
            fds = [conn.fileno(), rd] + ([in_fd] if in_fd >= 0 else [])
            r, _, _ = select.select(fds, [], [])
            if rd in r:
                try:
                    os.read(rd, 512)
                except BlockingIOError:
                    pass
                while pending:
                    s = pending.pop(0)
                    if s == signal.SIGWINCH:
                        if tty and is_tty:
                            _resize(conn)
                    else:
                        try:
                            containers.kill(engine, c.id, str(s))
                        except Exception:  # noqa: BLE001 - the container may be gone already
                            pass
            if conn.fileno() in r:
                msg = conn.recv()
                if msg is None:
                    break
                typ, payload = msg
                if typ == 1:
                    out.write(payload)
                    out.flush()
                elif typ == 2:
                    err.write(payload)
                    err.flush()
                elif typ == 3:
                    try:
                        return int(payload.decode() or 0)
                    except ValueError:
                        return 0
            if in_fd >= 0 and in_fd in r:
                data = os.read(in_fd, 65536)
                if not data:
                    conn.close_stdin()
                    in_fd = -1
                    continue
                if tty and keys:
                    send = bytearray()
                    for b in data:
                        if b == keys[matched]:
                            matched += 1
                            if matched == len(keys):
                                return None
                            continue
                        if matched:
                            send += keys[:matched]
                            matched = 0
                        send.append(b)
                    data = bytes(send)
                if data:
                    conn.send_stdin(data)
    finally:
        if old_attrs is not None:
            import termios

            termios.tcsetattr(in_fd if in_fd >= 0 else sys.stdin.fileno(), termios.TCSADRAIN, old_attrs)
        signal.set_wakeup_fd(-1)
        for s, h in handlers.items():
            signal.signal(s, h)
        os.close(rd)
        os.close(wr)
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
    code = containers.wait_exit(engine, c.id, 30)
    return 0 if code is None else code


def _resize(conn: Any) -> None:
    try:
        sz = os.get_terminal_size(sys.stdin.fileno())
        conn.resize(sz.lines, sz.columns)
    except OSError:
        pass
