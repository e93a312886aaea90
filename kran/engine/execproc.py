"""One started exec process: the OCI runtime's ``exec --process`` child and our ends of its stdio.

Without a terminal the process gets pipes (the runtime's own stderr is the same pipe, so its error
lines are filtered out and kept to tell why a start failed).  With a terminal the runtime allocates
the pty inside the container and hands us the master over a console socket (runc's protocol); we
keep it, so a resize is one TIOCSWINSZ on it::

    engine                        runtime (exec, foreground)              container
      |-- listen console.sock ------->|                                       |
      |                               |-- fork, setns, open /dev/ptmx ------->|
      | <== master fd (SCM_RIGHTS) ===|                                       |
      | <======= output / input on the master ===============================>|
      | <---------------------------- exit status (the runtime's own) ---------|

Front ends never touch this object's fds themselves: :mod:`kran.engine.attach` relays them.
"""

from __future__ import annotations

import array
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from typing import TYPE_CHECKING, Any

from kran.errors import CannotInvoke, Conflict, KranError

if TYPE_CHECKING:
    from kran.engine import Engine
    from kran.engine.execs import ExecConfig

# the runtime's own lines on stderr: logrus's text format (runc), or the bare start error (kran-runtime)
RUNTIME_LOG = re.compile(rb'^(time="[^"]*" level=(error|fatal|warning)|exec failed: unable to start container process: )')

STDOUT, STDERR = 1, 2


def map_error(text: str) -> KranError:
    """The runtime's last error line in Docker's words.  Docker's exec start fails with 126 whatever
    the cause (moby sets the exec's exit code to 126 on any start error), unlike ``run`` (126/127)."""
    msg = text.strip().splitlines()[-1] if text.strip() else "exec failed"
    m = re.search(r'msg="((?:[^"\\]|\\.)*)"', msg)
    if m:
        msg = m.group(1).replace('\\"', '"')
    return CannotInvoke(f"OCI runtime exec failed: {msg}: unknown")


def _process(c: Any, cfg: ExecConfig) -> dict[str, Any]:
    """The OCI process of the exec: the container's own, with the exec's args, env, user, cwd on top."""
    from kran.engine.containers import _lookup_user

    with open(os.path.join(c.dir, "config.json")) as f:
        spec = json.load(f)
    proc = dict(spec["process"])
    proc["args"] = list(cfg.cmd)
    proc["terminal"] = cfg.tty
    if cfg.tty:
        h, w = (list(cfg.console_size or []) + [0, 0])[:2]
        proc["consoleSize"] = {"height": h or 24, "width": w or 80}
    else:
        proc.pop("consoleSize", None)
    base = list(proc.get("env") or [])
    for e in cfg.env:
        k = e.split("=", 1)[0]
        base = [x for x in base if x.split("=", 1)[0] != k] + [e]
    if cfg.tty and not any(x.startswith("TERM=") for x in base):
        base.append("TERM=xterm")
    proc["env"] = base
    if cfg.working_dir:
        proc["cwd"] = cfg.working_dir
    if cfg.user:
        u = _lookup_user(spec["root"]["path"], cfg.user)
        proc["user"] = {"uid": u.uid, "gid": u.gid}
        if u.additional_gids:
            proc["user"]["additionalGids"] = list(u.additional_gids)
    if cfg.privileged:
        from kran.engine.seccomp_default import ALL_CAPS

        caps = sorted(ALL_CAPS)
        proc["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    return proc


def _recv_fd(sock: socket.socket) -> int:
    fds = array.array("i")
    _msg, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not fds:
        raise KranError("runtime sent no terminal")
    for extra in fds[1:]:
        os.close(extra)
    return fds[0]


def _console_in_foreground(runtime: str) -> bool:
    """Whether the runtime sends the terminal over a console socket without detaching: kran's does;
    runc refuses ("cannot use console socket if runc will not detach")."""
    return (runtime or os.environ.get("KRAN_RUNTIME") or "kran") == "kran"


class ExecProcess:
    """A running exec.  Lifecycle: :meth:`spawn` -> read/write until every output fd is at EOF ->
    :meth:`wait` (exit code; a failed start gives 126 and :attr:`error`) -> :meth:`close`."""

    def __init__(self, engine: Engine, container_id: str, cfg: ExecConfig, *, stdin: bool) -> None:
        self.engine: Engine | None = engine
        self.container_id = container_id
        self.cfg = cfg
        self.want_stdin = stdin
        self.pid = 0
        self.error: KranError | None = None
        self._p: subprocess.Popen[bytes] | None = None
        self._work = ""
        self._sock_dir = ""
        self._master = -1
        self._outer = False  # _master is a pty of ours that the runtime relays (runc), not the container's
        self._stdin = -1
        self._out: dict[int, int] = {}  # fd -> stream
        self._tail = bytearray()  # the runtime's stderr (last bytes), to explain a failed start

    # -- start ------------------------------------------------------------------------------------

    def spawn(self, *, orphan: bool = False) -> None:
        """Start the runtime; raises KranError (Docker's words) if the exec cannot be prepared.
        ``orphan``: the runtime detaches the process with no stdio of ours (``kran exec -d``, whose
        CLI exits at once); then :meth:`wait` only tells whether it started."""
        from kran.engine import containers

        engine, self.engine = self.engine, None  # not kept: the request's engine holds a database connection
        assert engine is not None
        c = containers.get(engine, self.container_id)
        if c.status == "paused":
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        proc = _process(c, self.cfg)
        rt = containers._runtime_argv(engine, c.host_config.get("Runtime") or "")
        rd = containers.run_dir(engine)
        self._work = tempfile.mkdtemp(prefix="exec-", dir=rd if os.path.isdir(rd) else None)
        try:
            path = os.path.join(self._work, "process.json")
            with open(path, "w") as f:
                json.dump(proc, f)
            argv = [*rt, "--root", os.path.join(rd, "runtime"), "exec", "--process", path]
            if orphan:
                self._spawn_orphan(argv, c.id)
            elif self.cfg.tty and _console_in_foreground(c.host_config.get("Runtime") or ""):
                self._spawn_tty(argv, c.id)
            elif self.cfg.tty:
                self._spawn_outer_tty(argv, c.id, proc["consoleSize"])
            else:
                self._spawn_pipes(argv, c.id)
        except BaseException:
            self.close()
            raise

    def _spawn_pipes(self, argv: list[str], cid: str) -> None:
        p = self._p = subprocess.Popen([*argv, cid], stdin=subprocess.PIPE if self.want_stdin else subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.pid = p.pid
        assert p.stdout is not None and p.stderr is not None
        # plain fds from here on (the Popen file objects would buffer)
        self._out = {os.dup(p.stdout.fileno()): STDOUT, os.dup(p.stderr.fileno()): STDERR}
        p.stdout.close()
        p.stderr.close()
        if p.stdin is not None:
            self._stdin = os.dup(p.stdin.fileno())
            p.stdin.close()

    def _console_path(self) -> str:
        sock_dir = self._work
        if len(os.fsencode(sock_dir)) > 90:  # sun_path holds 108 bytes: a short directory of its own
            sock_dir = self._sock_dir = tempfile.mkdtemp(prefix="kran-exec-")
        return os.path.join(sock_dir, "console.sock")

    def _spawn_orphan(self, argv: list[str], cid: str) -> None:
        tty = ["--tty", "--console-socket", self._console_path()] if self.cfg.tty else []
        srv = None
        if tty:  # the runtime wants somewhere to send the terminal; nobody keeps it (as before)
            srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            srv.bind(tty[-1])
            srv.listen(1)
        try:
            p = self._p = subprocess.Popen([*argv, "--detach", *tty, cid], stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
            _out, err = p.communicate()
            self._tail.extend(err[-4096:])
        finally:
            if srv is not None:
                srv.close()

    def _spawn_outer_tty(self, argv: list[str], cid: str, size: dict[str, int]) -> None:
        """runc hands the terminal over a console socket only when it detaches; in the foreground it
        copies between its own stdio and the container's pty: give it a raw pty of ours to copy to."""
        import tty

        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            self._master = master
            self.resize(size["height"], size["width"])
            p = self._p = subprocess.Popen([*argv, "--tty", cid], stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                                           start_new_session=True)
        finally:
            os.close(slave)
        self._outer = True
        self.pid = p.pid
        assert p.stderr is not None
        err = os.dup(p.stderr.fileno())
        p.stderr.close()
        self._out = {master: STDOUT, err: STDERR}

    def _spawn_tty(self, argv: list[str], cid: str) -> None:
        import selectors

        sock_path = self._console_path()
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            srv.bind(sock_path)
            srv.listen(1)
            p = self._p = subprocess.Popen([*argv, "--tty", "--console-socket", sock_path, cid],
                                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE, start_new_session=True)
            self.pid = p.pid
            assert p.stderr is not None
            err = os.dup(p.stderr.fileno())
            p.stderr.close()
            self._out = {err: STDERR}
            with selectors.DefaultSelector() as sel:
                sel.register(srv, selectors.EVENT_READ)
                sel.register(err, selectors.EVENT_READ)
                while True:
                    ready = {k.fd for k, _ in sel.select(30)}
                    if not ready:
                        raise KranError("timed out waiting for the runtime's terminal")
                    if srv.fileno() in ready:
                        conn, _ = srv.accept()
                        with conn:
                            self._master = _recv_fd(conn)
                        self._out[self._master] = STDOUT
                        return
                    if not self._read_runtime(err):  # the runtime failed before it made a terminal
                        sel.unregister(err)
                        self._out.pop(err, None)
                        os.close(err)
                        return
        finally:
            srv.close()

    # -- stdio ------------------------------------------------------------------------------------

    def fds(self) -> list[int]:
        """The output fds still open (stdout/stderr pipes, or the pty master and the runtime's stderr)."""
        return list(self._out)

    def _read_runtime(self, fd: int) -> bytes:
        """Read the runtime's stderr (the process's too, without a terminal); keep its tail and drop
        the runtime's own log lines, which are reported once, in Docker's words, at the end."""
        data = os.read(fd, 65536)
        if data:
            self._tail.extend(data)
            del self._tail[:-4096]
        return data

    def read(self, fd: int) -> tuple[int, bytes] | None:
        """(stream, bytes) from output ``fd`` (bytes may be empty); None at its end (then closed)."""
        stream = self._out[fd]
        try:
            data = self._read_runtime(fd) if stream == STDERR else os.read(fd, 65536)
        except OSError:  # EIO on the master: every slave fd in the container is closed
            data = b""
        if not data:
            del self._out[fd]
            if fd == self._master:
                return None  # kept open until close(): a late resize must not hit a reused fd
            os.close(fd)
            return None
        if stream == STDERR:
            data = b"".join(ln for ln in data.splitlines(keepends=True) if not RUNTIME_LOG.match(ln))
            if self.cfg.tty:
                data = b""  # with a terminal this pipe carries only the runtime's own messages
        return stream, data

    def write_stdin(self, data: bytes) -> None:
        fd = self._master if self._master >= 0 else self._stdin
        if fd < 0:
            return
        try:
            while data:
                data = data[os.write(fd, data):]
        except OSError:  # the process closed its stdin or is gone: drop the input, as docker does
            self.close_stdin()

    def close_stdin(self) -> None:
        if self._stdin >= 0:
            os.close(self._stdin)
            self._stdin = -1

    def resize(self, height: int, width: int) -> None:
        if self._master < 0:
            return
        import fcntl
        import struct
        import termios

        try:
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
            if self._outer and self._p is not None and self._p.poll() is None:
                os.kill(self._p.pid, signal.SIGWINCH)  # the runtime copies our size to the container's pty
        except OSError:
            pass

    # -- end --------------------------------------------------------------------------------------

    def wait(self) -> int:
        """The exit code (after the output ended): the process's, or 126 if it never started."""
        assert self._p is not None
        rc = self._p.wait()
        text = self._tail.decode(errors="replace")
        if rc != 0 and ("exec failed" in text or "unable to start container process" in text):
            self.error = map_error(text)
            return self.error.exit_code
        return rc

    def kill(self) -> None:
        if self._p is not None and self._p.poll() is None:
            try:
                self._p.kill()
            except OSError:
                pass

    def release(self) -> None:
        """Let go of the fds without touching the process or its work directory (a child of ours
        keeps them: :func:`kran.engine.execs._keep_in_child`)."""
        for fd in {*self._out, self._master, self._stdin} - {-1}:
            os.close(fd)
        self._out.clear()
        self._master = self._stdin = -1
        self._work = self._sock_dir = ""

    def close(self) -> None:
        """Free every fd and the work directory (idempotent)."""
        for fd in list(self._out):
            if fd != self._master:
                os.close(fd)
        self._out.clear()
        self.close_stdin()
        if self._master >= 0:
            os.close(self._master)
            self._master = -1
        for d in (self._work, self._sock_dir):
            if d:
                shutil.rmtree(d, ignore_errors=True)
        self._work = self._sock_dir = ""
