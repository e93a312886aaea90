"""Signals to a running container: kill, stop (signal, grace period, SIGKILL), pause and unpause,
and waiting for its exit.  The monitor records the exit; these only ask the runtime and watch
state.json.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from kran.engine.live import _event, _runtime, get
from kran.engine.record import Container, ContainerNotFound, _pid_alive
from kran.errors import Conflict, InvalidArgument, KranError

if TYPE_CHECKING:
    from kran.engine import Engine


def kill(engine: Engine, ref: str, sig: str = "KILL") -> Container:
    from kran.engine.spec import parse_signal

    c = get(engine, ref)
    try:
        n = parse_signal(sig)
    except ValueError as e:
        raise InvalidArgument(str(e)) from e
    if not c.running:
        raise Conflict(f"Cannot kill container: {ref}: container {c.id} is not running")
    # docker's rule: the restart policy is off for this exit, unless the container names a stop
    # signal and this is neither it nor SIGKILL (a reload signal to a long-running server)
    own = c.config.get("StopSignal") or ""
    try:
        own_n = parse_signal(own) if own else 0
    except ValueError:
        own_n = 0
    if not own_n or n in (9, own_n):
        _request_stop(c)
    pid = (c.state or {}).get("pid")
    if c.status == "paused" and n == 9:
        _runtime(engine, c, "resume", c.id, check=False)
    try:
        _runtime(engine, c, "kill", c.id, str(n))
    except KranError:
        if pid and _pid_alive(pid):
            os.kill(pid, n)
    _event(engine, "kill", c.id, signal=str(n))
    if n == 9:
        # docker's kill with SIGKILL returns once the container is down, so that an rm right
        # after it never finds it running
        if wait_exit(engine, c.id, 10) is None and pid and _pid_alive(pid):
            os.kill(pid, 9)
            wait_exit(engine, c.id, 10)
    return c


def _request_stop(c: Container) -> None:
    with open(os.path.join(c.dir, "stop-requested"), "w"):
        pass


def wait_exit(engine: Engine, ref: str, timeout: float | None = None) -> int | None:
    """Block until the container is not running; its exit code, or None on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    c = get(engine, ref)
    delay = 0.005
    while True:
        try:
            c = get(engine, c.id)
        except ContainerNotFound:  # removed meanwhile (--rm): it has exited
            st = c.state or {}
            return int(st.get("exit_code") or 0) if st.get("status") == "exited" else 0
        if not c.running:
            return int((c.state or {}).get("exit_code") or 0) if c.state else c.exit_code
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


class ContainerGone(Exception):
    """The container was removed while a :class:`Waiter` waited (``--rm``); ``last`` is the record
    as last seen."""

    def __init__(self, last: Container) -> None:
        super().__init__(last.id)
        self.last = last


class Waiter:
    """docker's ``wait`` (CLI and API): looks the container up at once (so a missing one fails
    before anything is sent), then :meth:`result` blocks until the condition holds.

    ``not-running`` returns at once for a container that does not run, else at its next exit --
    also when a restart policy has it up again before we look (its finish time or restart count
    moved on: the exit docker's waiter is woken by).  ``next-exit`` waits for an exit after this
    call.  ``removed`` waits for the removal (:class:`ContainerGone`).
    """

    def __init__(self, engine: Engine, ref: str, condition: str = "not-running") -> None:
        if condition not in WAIT_CONDITIONS:
            raise InvalidArgument(f"invalid condition: {condition!r}")
        self.engine = engine
        self.condition = condition
        self.first = get(engine, ref)

    def _exited_since(self, cur: Container) -> bool:
        st, st0 = cur.state or {}, self.first.state or {}
        return self.first.running and ((st.get("finished_at") or "") != (st0.get("finished_at") or "")
                                       or int(st.get("restart_count") or 0) != int(st0.get("restart_count") or 0))

    def _done(self, cur: Container) -> bool:
        if self.condition == "not-running":
            return not cur.running or self._exited_since(cur)
        if self.condition == "next-exit":
            first = (self.first.state or {}).get("finished_at"), self.first.status
            return (not cur.running and cur.status != "created"
                    and ((cur.state or {}).get("finished_at"), cur.status) != first) or self._exited_since(cur)
        return False

    def result(self, timeout: float | None = None) -> int | None:
        """The exit code once the condition holds; None on timeout; ContainerGone if removed."""
        from kran.engine.record import exit_code_of

        deadline = None if timeout is None else time.monotonic() + timeout
        cur = self.first
        delay = 0.01
        while not self._done(cur):
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            try:
                cur = get(self.engine, self.first.id)
            except ContainerNotFound:
                raise ContainerGone(cur) from None
        return exit_code_of(cur)


def wait(engine: Engine, ref: str, condition: str = "not-running") -> int:
    """``kran wait``: block until the condition holds; the exit code (a container removed
    meanwhile, as with --rm, gives the code it was last seen with)."""
    from kran.engine.record import exit_code_of

    try:
        code = Waiter(engine, ref, condition).result()
    except ContainerGone as gone:
        return exit_code_of(gone.last) if gone.last.status == "exited" else 0
    return code if code is not None else 0


def stop(engine: Engine, ref: str, timeout: int | None = None, sig: str | None = None) -> Container:
    c = _stop(engine, ref, timeout, sig)
    _event(engine, "stop", c.id)
    return c


def _stop(engine: Engine, ref: str, timeout: int | None = None, sig: str | None = None) -> Container:
    from kran.engine.spec import parse_signal

    c = get(engine, ref)
    if not c.running:
        return c
    _request_stop(c)
    stop_sig = sig or c.config.get("StopSignal") or "SIGTERM"
    try:
        n = parse_signal(stop_sig)
    except ValueError as e:
        raise InvalidArgument(str(e)) from e
    if timeout is None:
        timeout = c.host_config.get("StopTimeout") or c.config.get("StopTimeout")
        timeout = 10 if timeout is None else int(timeout)
    if c.status == "paused":
        _runtime(engine, c, "resume", c.id, check=False)
        _clear_paused(c)
    if timeout != 0:
        _runtime(engine, c, "kill", c.id, str(n), check=False)
        if wait_exit(engine, c.id, None if timeout < 0 else timeout) is not None:
            return c
    _runtime(engine, c, "kill", c.id, "9", check=False)
    if wait_exit(engine, c.id, 30) is None:
        raise KranError(f"cannot stop container: {ref}: tried to kill container, but did not receive an exit event")
    return c



def _clear_paused(c: Container) -> None:
    try:
        os.unlink(os.path.join(c.dir, "paused"))
    except FileNotFoundError:
        pass


def _freeze(engine: Engine, c: Container, on: bool) -> None:
    """Freeze or thaw through the runtime.  kran's own runtime does it in this process (a write to
    the container's freezer): no runtime process to start, so the container is frozen for as little
    as the caller needs (a backup's copy of its layer)."""
    if (c.host_config.get("Runtime") or os.environ.get("KRAN_RUNTIME") or "kran") != "kran":
        _runtime(engine, c, "pause" if on else "resume", c.id)
        return
    from kran.engine.record import run_dir
    from kran.runtime import ops

    try:
        ops.pause(os.path.join(run_dir(engine), "runtime"), c.id, on)
    except OSError as e:
        raise KranError(f"cannot {'pause' if on else 'unpause'} container {c.id}: {e.strerror or e}") from None


def pause(engine: Engine, ref: str) -> None:
    c = get(engine, ref)
    if c.status == "paused":
        raise Conflict(f"Container {c.id} is already paused")
    if not c.running:
        raise Conflict(f"Container {c.id} is not running")
    # the marker first: killed between the two, the container shows as paused (and unpause
    # works) rather than frozen behind a "running" status
    with open(os.path.join(c.dir, "paused"), "w"):
        pass
    try:
        _freeze(engine, c, True)
    except BaseException:
        _clear_paused(c)
        raise
    _event(engine, "pause", c.id)


def unpause(engine: Engine, ref: str) -> None:
    c = get(engine, ref)
    if c.status != "paused":
        raise Conflict(f"Container {c.id} is not paused")
    try:
        _freeze(engine, c, False)
    except KranError as e:
        # thawed already: a pause or unpause (a backup's) killed between the freezer and the
        # paused marker; what the user asked for holds, so only the marker goes
        if "not paused" not in str(e):
            raise
    _clear_paused(c)
    _event(engine, "unpause", c.id)

