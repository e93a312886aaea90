"""Exec instances: another process in a running container (``kran exec``, docker's ``/exec`` API).

Lifecycle, as dockerd's: :func:`create` records an instance (its :class:`ExecConfig`) under a new ID
-> :func:`start` runs it once, relayed to a client or detached -> :func:`inspect` shows it running,
then its exit code.  The registry is per process (dockerd forgets exec IDs when it restarts too):
the API server keeps one for its lifetime, the CLI one for its single command.

The process inherits the container's spec (capabilities, env, seccomp filter, no_new_privileges)
with the exec's args, env, user and workdir on top; :mod:`kran.engine.execproc` starts it and
:mod:`kran.engine.attach` relays it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kran.codec import extra, jf
from kran.errors import Conflict, InvalidArgument, KranError, NotFound

if TYPE_CHECKING:
    from kran.engine import Engine
    from kran.engine.attach import Client
    from kran.engine.execproc import ExecProcess


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecConfig:
    """docker's ExecConfig (the body of ``POST /containers/{id}/exec``)."""

    cmd: list[str] = jf("Cmd", factory=list)
    tty: bool = jf("Tty", default=False)
    attach_stdin: bool = jf("AttachStdin", default=False)
    attach_stdout: bool = jf("AttachStdout", default=False)
    attach_stderr: bool = jf("AttachStderr", default=False)
    detach_keys: str = jf("DetachKeys", default="")
    env: list[str] = jf("Env", factory=list)
    user: str = jf("User", default="")
    working_dir: str = jf("WorkingDir", default="")
    privileged: bool = jf("Privileged", default=False)
    console_size: list[int] | None = jf("ConsoleSize")
    extra: dict = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecStartConfig:
    """docker's ExecStartCheck (the body of ``POST /exec/{id}/start``).  Its Tty decides the framing
    of the output (raw or multiplexed); the create's Tty decides whether the process gets a pty."""

    detach: bool = jf("Detach", default=False)
    tty: bool = jf("Tty", default=False)
    console_size: list[int] | None = jf("ConsoleSize")
    extra: dict = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecProcessConfig:
    tty: bool = jf("tty", default=False, keep=True)
    entrypoint: str = jf("entrypoint", default="", keep=True)
    arguments: list[str] = jf("arguments", factory=list, keep=True)
    privileged: bool = jf("privileged", default=False, keep=True)
    user: str = jf("user", default="")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecInspect:
    """docker's ``GET /exec/{id}/json``."""

    id: str = jf("ID", default="", keep=True)
    running: bool = jf("Running", default=False, keep=True)
    exit_code: int | None = jf("ExitCode", keep=True)
    process_config: ExecProcessConfig = jf("ProcessConfig", factory=ExecProcessConfig, keep=True)
    open_stdin: bool = jf("OpenStdin", default=False, keep=True)
    open_stderr: bool = jf("OpenStderr", default=False, keep=True)
    open_stdout: bool = jf("OpenStdout", default=False, keep=True)
    can_remove: bool = jf("CanRemove", default=False, keep=True)
    container_id: str = jf("ContainerID", default="", keep=True)
    detach_keys: str = jf("DetachKeys", default="", keep=True)
    pid: int = jf("Pid", default=0, keep=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecResult:
    """How a started exec ended for its client: an exit code, or the client detached / hung up
    (the process runs on), and the start error (exit code 126) if it never ran."""

    exit_code: int | None = None
    detached: bool = False
    error: KranError | None = None


@dataclass(slots=True, kw_only=True)
class ExecInstance:
    id: str
    container_id: str
    config: ExecConfig
    started: bool = False
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    ended_at: float = 0.0
    proc: ExecProcess | None = None
    # a resize that came before the process had its terminal: the docker 20.10 CLI resizes right
    # after the start's hijack, racing the spawn; the size is applied once the terminal exists
    size: tuple[int, int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inspect(self) -> ExecInspect:
        cmd = self.config.cmd
        return ExecInspect(
            id=self.id, running=self.running, exit_code=self.exit_code, container_id=self.container_id,
            open_stdin=self.config.attach_stdin, open_stdout=self.config.attach_stdout,
            open_stderr=self.config.attach_stderr, detach_keys=self.config.detach_keys, pid=self.pid,
            process_config=ExecProcessConfig(tty=self.config.tty, entrypoint=cmd[0] if cmd else "",
                                             arguments=list(cmd[1:]), privileged=self.config.privileged,
                                             user=self.config.user))


_KEEP_ENDED = 600.0  # seconds an ended exec stays inspectable (dockerd also prunes old ones)


class ExecRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._execs: dict[str, ExecInstance] = {}

    def add(self, x: ExecInstance) -> None:
        now = time.time()
        with self._lock:
            for k in [k for k, v in self._execs.items() if v.ended_at and now - v.ended_at > _KEEP_ENDED]:
                del self._execs[k]
            self._execs[x.id] = x

    def get(self, exec_id: str) -> ExecInstance:
        x = self._execs.get(exec_id)
        if x is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return x


_REGISTRIES: dict[str, ExecRegistry] = {}
_REG_LOCK = threading.Lock()


def registry(engine: Engine) -> ExecRegistry:
    """This process's exec instances for ``engine``'s state root."""
    with _REG_LOCK:
        return _REGISTRIES.setdefault(engine.root, ExecRegistry())


# -- use cases ----------------------------------------------------------------------------------


def create(engine: Engine, ref: str, cfg: ExecConfig) -> ExecInstance:
    from kran.engine import containers
    from kran.engine.attach import parse_detach_keys

    c = containers.get(engine, ref)
    if c.status == "paused":
        raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
    if not c.running:
        raise Conflict(f"Container {c.id} is not running")
    if not cfg.cmd:
        raise InvalidArgument("No exec command specified")
    if cfg.detach_keys:
        parse_detach_keys(cfg.detach_keys)  # refuse a bad sequence now, not at start
    x = ExecInstance(id=uuid.uuid4().hex + uuid.uuid4().hex, container_id=c.id, config=cfg)
    registry(engine).add(x)
    return x


def get(engine: Engine, exec_id: str) -> ExecInstance:
    return registry(engine).get(exec_id)


def inspect(engine: Engine, exec_id: str) -> ExecInspect:
    return get(engine, exec_id).inspect()


def resize(engine: Engine, exec_id: str, height: int, width: int) -> None:
    x = get(engine, exec_id)
    with x.lock:
        if x.proc is None:
            x.size = (height, width)
            return
    if x.running:
        x.proc.resize(height, width)


def start(engine: Engine, exec_id: str, client: Client | None, *, initial: bytes = b"",
          watch: dict[int, Callable[[], None]] | None = None, orphan: bool = False,
          console_size: list[int] | None = None, outlive: bool = False) -> ExecResult:
    """Run exec ``exec_id`` once.  With a ``client``, relay it until the output ends, the client types
    the detach keys (ctrl-p ctrl-q unless the config says) or hangs up; without one, detached.  A
    process a client left goes on, its output drained, and its exit code is recorded when it ends.
    ``orphan`` (``kran exec -d``): the runtime detaches the process, which outlives this process.
    ``outlive`` (the CLI): a process the client detached from is kept by a child process of ours, as
    this one is about to exit (the API server keeps it with a thread)."""
    from kran.engine.attach import DETACHED, parse_detach_keys, relay
    from kran.engine.execproc import ExecProcess

    x = get(engine, exec_id)
    with x.lock:
        if x.started:
            raise Conflict(f"Exec command {x.id} is already running" if x.running
                           else f"Exec command {x.id} has already run")
        x.started = x.running = True
    cfg = x.config
    proc = ExecProcess(engine, x.container_id, cfg, stdin=cfg.attach_stdin and client is not None)
    try:
        proc.spawn(orphan=orphan)
        if orphan:
            code = proc.wait()
            proc.close()
            if proc.error is not None:
                raise proc.error
            if code:
                raise KranError(f"OCI runtime exec failed: exit status {code}: unknown")
            x.running = False  # no longer ours to watch
            return ExecResult(detached=True)
    except KranError as e:
        _ended(x, 126)  # dockerd's exit code for an exec that could not start
        return ExecResult(exit_code=126, error=e)
    except BaseException:
        _ended(x, 126)
        raise
    if console_size and len(console_size) == 2 and cfg.tty:
        proc.resize(console_size[0], console_size[1])
    with x.lock:
        x.proc, x.pid = proc, proc.pid
        early = x.size
    if early and cfg.tty:
        proc.resize(*early)
    if client is None:
        _drain_in_background(x, proc)
        return ExecResult(detached=True)
    try:
        streams = tuple(s for s, on in ((1, cfg.attach_stdout), (2, cfg.attach_stderr)) if on)
        how = relay(proc, client, stdin=cfg.attach_stdin, keys=parse_detach_keys(cfg.detach_keys) if cfg.tty else b"",
                    streams=streams, watch=watch, initial=initial)
    except BaseException:
        _drain_in_background(x, proc)
        raise
    if how is not None:  # detached or hung up: the process runs on without a client
        if outlive:
            _keep_in_child(proc)
            return ExecResult(detached=how == DETACHED)
        _drain_in_background(x, proc)
        return ExecResult(detached=how == DETACHED)
    code = _finish(x, proc)
    return ExecResult(exit_code=code, error=proc.error)


def _ended(x: ExecInstance, code: int) -> None:
    x.exit_code, x.running, x.ended_at = code, False, time.time()


def _finish(x: ExecInstance, proc: ExecProcess) -> int:
    try:
        code = proc.wait()
    finally:
        proc.close()
    _ended(x, code)
    x.proc = None  # an ended exec keeps only its record
    return code


def _keep_in_child(proc: ExecProcess) -> None:
    """Fork a keeper that holds the exec's terminal or pipes (closing them would hang it up) and
    drains them until it ends; the caller lets go of them.  Called with no other thread running."""
    import os

    from kran.engine.attach import drain

    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)  # let go of the user's terminal: its session ends with the CLI
            proc.close_stdin()
            drain(proc)
            proc.wait()
            proc.close()
        finally:
            os._exit(0)
    proc.release()


def _drain_in_background(x: ExecInstance, proc: ExecProcess) -> None:
    from kran.engine.attach import drain

    proc.close_stdin()

    def run() -> None:
        try:
            drain(proc)
        finally:
            _finish(x, proc)

    threading.Thread(target=run, name=f"exec-{x.id[:12]}", daemon=True).start()
