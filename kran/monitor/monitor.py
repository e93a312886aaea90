"""The monitor process: one per running container, outlives the CLI (the role of conmon).

It gets CONTAINER_DIR with ``monitor.json`` (written by the engine) and drives an OCI runtime
binary through runc's CLI.  It owns the container's stdio (pipes, or the pty master that the
runtime hands over on ``--console-socket``), writes the json-file log, serves ``attach.sock``,
reaps the container's init (it is a child subreaper), records the exit in ``state.json`` and
applies the restart policy.  With ``"net"`` in ``monitor.json`` it also serves the container's
port proxies and embedded DNS (:mod:`kran.monitor.netserve`, imported only then) in the same loop.

::

    client.start          monitor (detached)             runtime                 container init
        | spawn, sync fd ---> |                              |                          |
        |                     | prctl(CHILD_SUBREAPER)       |                          |
        |                     | create --bundle B --pid-file |                          |
        |                     |   [--console-socket S] ----> | forks init ------------> | waits on exec fifo
        |                     | <-- pty master (SCM_RIGHTS)  |  exits; init reparents   |
        |                     | start ID ------------------> | opens the fifo --------> | execve(args)
        |                     | state.json "running"         |                          |
        | <-- {"ok": true, "pid": N}                         |                          |
        x (may die)           | stdio -> log + attach clients <------------------------ |
                              | waitpid(-1) <------------------------------------------ x exit
                              | drain output; delete ID; state.json "exited"|"restarting"
                              | exit frames; restart after backoff, or remove attach.sock and exit

It stays small in memory: only low-level stdlib modules (see ``docs/monitor.md``), no kran.*
module but its own parts: :mod:`kran.monitor.proto` (the frames), :mod:`kran.monitor.base` (JSON,
fd passing, the log writer) and :mod:`kran.monitor.attachserve` (attach clients).  Everything happens in one thread around ``poll``.
"""

from __future__ import annotations

import _socket  # not `socket`: it pulls in enum and selectors (~1 MiB of RSS)
import errno
import os
import select
import signal
import sys
import time

from kran.monitor import proto
from kran.monitor.attachserve import AttachServing
from kran.monitor.base import (  # noqa: F401 - re-exported: netserve, health and tests use them from here
    CLIENT_BUFFER_CAP,
    Client,
    LogWriter,
    _JSONContext,
    accept,
    clean_runtime_error,
    json_dumps,
    json_loads,
    now_rfc3339,
    read_available,
    recv_fd,
    set_nonblocking,
    set_subreaper,
    write_atomic,
)

Socket = _socket.socket

DRAIN_TIMEOUT = 2.0  # after init exits, how long to wait for EOF on its output (orphans may hold it)
STDIN_BUFFER_CAP = 1 << 20  # beyond it, stop reading stdin frames from clients (backpressure)
BACKOFF_START = 0.1  # docker's restart manager: 100 ms doubling, max 1 min, reset after 10 s of run
BACKOFF_MAX = 60.0
BACKOFF_RESET = 10.0


class Monitor(AttachServing):
    def __init__(self, cdir: str, cfg: dict) -> None:
        self.dir = cdir
        self.id = cfg["id"]
        self.bundle = cfg["bundle"]
        self.runtime = cfg.get("runtime") or "runc"
        self.runtime_root = cfg.get("runtime_root") or ""
        self.tty = bool(cfg.get("tty"))
        self.open_stdin = bool(cfg.get("stdin"))
        self.wait_attach = bool(cfg.get("wait_attach"))
        self.on_exit = cfg.get("on_exit") or []
        self.events_path = cfg.get("events_path") or ""
        self.event_attrs = cfg.get("event_attrs") or {}
        self.sync_fd = -1
        restart = cfg.get("restart") or {}
        self.policy = restart.get("name") or "no"
        self.max_retries = int(restart.get("max_retries") or 0)
        self.fresh = list(cfg.get("fresh") or [])  # --restart-fresh: the engine's helper (kran.engine.fresh)
        self.log = LogWriter(
            cfg["log_path"], int(cfg.get("log_max_size") or 0), int(cfg.get("log_max_file") or 1)
        )

        self.clients: dict[int, Client] = {}
        self.listener: Socket | None = None
        self.outputs: dict[int, str] = {}  # fd -> stream name ("stdout"/"stderr"), open until EOF
        self.stdin_fd = -1  # pipe write end, or the pty master
        self.stdin_buf = bytearray()
        self.stdin_close_pending = False
        self.master = -1  # pty master (with tty)

        self.pid = 0  # container init
        self.cgroup_mem = ""  # memory cgroup dir of the running container, for OOM detection
        self.reaped: dict[int, int] = {}
        self.started_ns = 0
        self.started_at = proto.ZERO_TIME
        self.finished_at = proto.ZERO_TIME
        self.exit_code: int | None = None
        self.oom_killed = False
        self.restart_count = 0
        self.stop_requested = False
        self.error = ""
        self.status = "created"
        self.phase = "init"  # running -> draining -> (backoff -> running)* -> done
        self.deadline = 0.0
        self.backoff = 0.0
        self.wake_r = -1
        # Port proxies and embedded DNS (kran/monitor/netserve.py), imported only when configured:
        # it serves for the monitor's whole life, across restarts of the container.
        self.net = None
        # Health checks (kran/monitor/health.py), likewise only when the container has one
        self.health = None
        if cfg.get("health"):
            from kran.monitor import health

            argv = list(self.runtime) if isinstance(self.runtime, list) else [self.runtime]
            if self.runtime_root:
                argv += ["--root", self.runtime_root]
            self.health = health.Health(cfg["health"], argv + ["exec", self.id], write_atomic, json_dumps,
                                        self.emit_event, now_rfc3339, self.health_action)
        self.health_restart = False  # --health-on-failure=restart: the next exit restarts, whatever the policy
        # Schedules, lifetimes, periodic fresh restarts (kran/monitor/policy.py), likewise
        self.timer = None
        self.policy_stop = ""  # why the monitor is stopping the container: schedule|lifetime|recreate
        self.kill_at = 0.0  # monotonic: the stop signal's grace period ends (then SIGKILL)
        self.window_at = 0.0  # clock time: a container stopped by its schedule starts again
        self.window_lifetime = False  # stopped by its lifetime: waits for the next window's start
        self.stop_signal = _signum(cfg.get("stop_signal") or "SIGTERM")
        self.config_mtime = _mtime(os.path.join(cdir, proto.CONFIG))
        if cfg.get("policy"):
            self.load_timer(cfg["policy"])
        if cfg.get("net"):
            from kran.monitor import netserve

            if cfg["net"].get("netns"):
                # rootless: the proxies' listeners came from the host's namespace, their
                # connections to the container go out from the rootless one (rootlessport's split)
                _join_netns(cfg["net"]["netns"])

            self.net = netserve.NetServer(cfg["net"])

    # -- runtime -------------------------------------------------------------------------

    def run_runtime(self, *args: str, stdio: tuple[int, int, int] | None = None) -> tuple[int, str]:
        """Run ``runtime --root R ARGS``; return (exit status, cleaned stderr message)."""
        argv = list(self.runtime) if isinstance(self.runtime, list) else [self.runtime]
        if self.runtime_root:
            argv += ["--root", self.runtime_root]
        argv += args
        err_r, err_w = os.pipe()
        if stdio is None:
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            stdio = (null, null, err_w)
        else:
            null = -1
        pid = os.fork()
        if pid == 0:  # child: only async-signal-safe-ish work, then exec
            try:
                for target, fd in enumerate(stdio):
                    os.dup2(fd, target)
                # Python ignores these; exec keeps SIG_IGN, and runc/the container must not.
                for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(sig, signal.SIG_DFL)
                os.execvp(argv[0], argv)
            except BaseException as e:
                try:
                    os.write(2, f"exec {argv[0]}: {e}\n".encode())
                finally:
                    os._exit(127)
        os.close(err_w)
        if null >= 0:
            os.close(null)
        _, status = os.waitpid(pid, 0)
        msg = clean_runtime_error(read_available(err_r))
        os.close(err_r)
        return os.waitstatus_to_exitcode(status), msg

    def delete(self) -> None:
        rc, _ = self.run_runtime("delete", self.id)
        if rc != 0:
            self.run_runtime("delete", "--force", self.id)

    def start_container(self) -> str:
        """create + start; returns "" on success, else the runtime's error message."""
        self.reaped.clear()
        for name in (proto.PID_FILE, proto.CONSOLE_SOCK):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
        create = ["create", "--bundle", self.bundle, "--pid-file", proto.PID_FILE]
        if self.tty:
            console = Socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                console.bind(proto.CONSOLE_SOCK)
                console.listen(1)
                # runc chdirs into the bundle: the path must be absolute, and short (sun_path).
                path = os.path.join(self.dir, proto.CONSOLE_SOCK)
                if len(os.fsencode(path)) > 100:
                    path = f"/proc/{os.getpid()}/cwd/{proto.CONSOLE_SOCK}"
                rc, msg = self.run_runtime(*create, "--console-socket", path, self.id)
                if rc == 0:
                    # runc has connected and sent the master before exiting: it is queued.
                    console.settimeout(10)
                    conn = accept(console)
                    try:
                        master = recv_fd(conn)
                    finally:
                        conn.close()
                    if master < 0:
                        msg, rc = "runtime sent no console", 1
                    else:
                        self.master = master
                        os.set_inheritable(self.master, False)
                        set_nonblocking(self.master)
                        self.outputs[self.master] = "stdout"
                        if self.open_stdin:
                            self.stdin_fd = self.master
            finally:
                console.close()
                try:
                    os.unlink(proto.CONSOLE_SOCK)
                except FileNotFoundError:
                    pass
        else:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            if self.open_stdin:
                in_r, in_w = os.pipe()
            else:
                in_r, in_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1
            # Pass-through stdio (runc's "detached, no terminal" mode): the container inherits
            # runc's own stdio, so runc's error messages land on our stderr pipe; the container
            # cannot write before `start`, so whatever is there now is runc's.
            rc, _ = self.run_runtime(*create, self.id, stdio=(in_r, out_w, err_w))
            for fd in (in_r, out_w, err_w):
                os.close(fd)
            msg = clean_runtime_error(read_available(err_r))
            if rc == 0:
                for fd in (out_r, err_r):
                    set_nonblocking(fd)
                self.outputs[out_r] = "stdout"
                self.outputs[err_r] = "stderr"
                if in_w >= 0:
                    set_nonblocking(in_w)
                    self.stdin_fd = in_w
            else:
                for fd in (out_r, err_r, in_w):
                    if fd >= 0:
                        os.close(fd)
        if rc != 0:
            self.close_stdio()
            self.delete()
            return msg or f"runtime create exited with status {rc}"
        try:
            with open(proto.PID_FILE) as f:
                self.pid = int(f.read().strip())
        except (OSError, ValueError) as e:
            self.close_stdio()
            self.delete()
            return f"cannot read the container's pid file: {e}"
        # Before `start`: init waits on the exec fifo, surely still alive and in its cgroup.
        self.cgroup_mem = self.find_memory_cgroup()
        if self.wait_attach and self.sync_fd >= 0:
            # `kran run` (attached): report success now, and start only once the CLI has
            # attached, so that it sees all of the container's output from its first byte.
            report(self.sync_fd, {"ok": True, "pid": self.pid, "monitor_pid": os.getpid()})
            self.sync_fd = -1
            self.wait_attach = False
            self.await_client(30.0)
        rc, msg = self.run_runtime("start", self.id)
        if rc != 0:
            self.close_stdio()
            self.delete()
            self.pid = 0
            return msg or f"runtime start exited with status {rc}"
        self.started_ns = time.monotonic_ns()
        self.started_at = now_rfc3339()
        self.oom_killed = False
        self.exit_code = None
        self.error = ""
        self.status = "running"
        self.phase = "running"
        if self.health is not None:
            self.health.start()
        # the (injectable) clock at this start: a lifetime that `kran update` adds later counts from it
        self.started_clock = self.clock_now()
        if self.timer is not None:
            self.mark_waiting(False)
            self.timer.started = self.started_clock
            if getattr(self, "fresh_saved", None) is not None:
                self.fresh, self.fresh_saved = self.fresh_saved, None  # a recreate's fresh run is done
            if getattr(self, "recreating", False):
                self.recreating = False
                self.emit_event("start")  # like `docker restart`: die, then start
        return ""

    def find_memory_cgroup(self) -> str:
        try:
            with open(f"/proc/{self.pid}/cgroup") as f:
                lines = f.read().splitlines()
        except OSError:
            return ""
        v2 = ""
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if path == "/":  # the root: no container cgroup (or, for a zombie, already gone)
                continue
            if "memory" in controllers.split(","):
                return "/sys/fs/cgroup/memory" + path
            if controllers == "":
                v2 = "/sys/fs/cgroup" + path
        if v2 and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            return v2
        return ""

    def detect_oom(self, signaled_kill: bool) -> bool:
        d = self.cgroup_mem
        if not d:
            return False
        try:
            for name in ("memory.events", "memory.oom_control"):  # v2, then v1
                try:
                    with open(os.path.join(d, name)) as f:
                        text = f.read()
                except FileNotFoundError:
                    continue
                for line in text.splitlines():
                    k, _, v = line.partition(" ")
                    if k == "oom_kill":
                        return int(v) > 0
            # old v1 kernels without the oom_kill counter: hitting the limit plus a SIGKILL
            with open(os.path.join(d, "memory.failcnt")) as f:
                return signaled_kill and int(f.read()) > 0
        except (OSError, ValueError):
            return False

    # -- state ---------------------------------------------------------------------------

    def write_state(self) -> None:
        state = {
            "status": self.status,
            "pid": self.pid if self.status == "running" else 0,
            "monitor_pid": os.getpid(),
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "oom_killed": self.oom_killed,
            "restart_count": self.restart_count,
            "error": self.error,
        }
        if self.phase == "window" and self.window_at < 1e12:  # stopped by its schedule (or lifetime)
            state["window_opens"] = now_rfc3339(int(self.window_at * 1e9))
        write_atomic(proto.STATE, json_dumps(state).encode() + b"\n")

    def stop_is_requested(self) -> bool:
        return self.stop_requested or os.path.exists(proto.STOP_FILE)

    # -- stdio ---------------------------------------------------------------------------

    def close_stdio(self) -> None:
        for fd, stream in list(self.outputs.items()):
            self.log.flush(stream)
            os.close(fd)
        if self.stdin_fd >= 0 and self.stdin_fd != self.master:
            os.close(self.stdin_fd)
        if self.master >= 0 and self.master not in self.outputs:
            os.close(self.master)
        self.outputs.clear()
        self.stdin_fd = -1
        self.master = -1
        self.stdin_buf.clear()
        self.stdin_close_pending = False

    def on_output(self, fd: int) -> None:
        stream = self.outputs[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the pty's last slave closed
                raise
            data = b""
        if not data:
            self.log.flush(stream)
            del self.outputs[fd]
            if fd == self.master:
                self.master = -1
                if self.stdin_fd == fd:
                    self.stdin_fd = -1
            os.close(fd)
            return
        self.log.write(stream, data)
        self.broadcast(proto.frame(proto.STDOUT if stream == "stdout" else proto.STDERR, data))

    # -- lifecycle -----------------------------------------------------------------------

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.reaped[pid] = status

    def on_init_exit(self, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            code = 128 - code
        self.exit_code = code
        if self.health is not None:
            self.health.stop()
        self.oom_killed = self.detect_oom(code == 128 + signal.SIGKILL)
        self.finished_at = now_rfc3339()
        self.phase = "draining"
        self.deadline = time.monotonic() + DRAIN_TIMEOUT

    def reload_policy(self) -> None:
        """``docker update --restart`` rewrites monitor.json while the container runs."""
        try:
            with open(os.path.join(self.dir, proto.CONFIG)) as f:
                cfg = json_loads(f.read())
        except (OSError, ValueError):
            return
        restart = cfg.get("restart") or {} if isinstance(cfg, dict) else {}
        self.policy = restart.get("name") or "no"
        self.max_retries = int(restart.get("max_retries") or 0)
        if isinstance(cfg, dict):
            self.fresh = list(cfg.get("fresh") or [])  # kran update --restart-fresh

    def should_restart(self) -> bool:
        if self.stop_is_requested():
            return False
        if self.health_restart:
            self.health_restart = False
            return True
        self.reload_policy()
        if self.policy in ("always", "unless-stopped"):
            return True
        if self.policy == "on-failure":
            return self.exit_code != 0 and (self.max_retries == 0 or self.restart_count < self.max_retries)
        return False

    def finish_run(self) -> None:
        """The container's process has ended and its output is drained."""
        self.close_stdio()
        self.delete()
        self.pid = 0
        ran = (time.monotonic_ns() - self.started_ns) / 1e9
        why, self.policy_stop, self.kill_at = self.policy_stop, "", 0.0
        if why:
            restart_it = self.policy_restart(why)
        else:
            restart_it = self.should_restart()
        if restart_it:
            self.restart_count += 1
            if ran >= BACKOFF_RESET:
                self.backoff = 0.0
            self.backoff = BACKOFF_START if self.backoff == 0 else min(self.backoff * 2, BACKOFF_MAX)
            self.status = "restarting"
            self.phase = "backoff"
            self.deadline = time.monotonic() + self.backoff
        else:
            self.status = "exited"
            self.phase = "done"
        if restart_it and why:
            self.after_policy_stop(why)
        self.write_state()
        self.emit_event("die", exitCode=str(self.exit_code), **({"reason": why} if why else {}))
        if self.oom_killed:
            self.emit_event("oom")
        self.attached_at_exit = bool(self.clients)
        self.broadcast(proto.frame(proto.EXIT, str(self.exit_code).encode()), force=True)
        for c in list(self.clients.values()):
            c.closing = True
            if not c.outbuf:
                self.drop_client(c)

    def restart(self) -> None:
        if self.stop_is_requested():
            self.status = "exited"
            self.phase = "done"
            self.write_state()
            return
        if self.timer is not None and not self.policy_may_run():
            self.window_at, self.phase = self.timer.wait_until(), "window"  # a crash outside its windows
            self.window_lifetime = False
            self.mark_waiting(True)
            self.write_state()
            return
        err = self.reset_fresh() if self.fresh else ""
        err = err or self.start_container()
        if err:
            self.status = "exited"
            self.error = err
            self.exit_code = proto.exit_code_for(err)
            self.finished_at = now_rfc3339()
            self.phase = "done"
        self.write_state()

    def reset_fresh(self) -> str:
        """--restart-fresh: run the engine's helper, which empties the read-write layer with the
        overlay unmounted and mounts it again (mounts and fuse-overlayfs are the engine's code, not
        the monitor's); "" on success, else its error."""
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, 0)
                os.dup2(null, 1)
                os.dup2(err_w, 2)
                os.execvp(self.fresh[0], self.fresh)
            finally:
                os._exit(127)
        os.close(err_w)
        _, status = os.waitpid(pid, 0)
        msg = read_available(err_r).decode(errors="replace").strip().splitlines()
        os.close(err_r)
        if os.waitstatus_to_exitcode(status) == 0:
            return ""
        return msg[-1] if msg else "cannot restart fresh: the helper failed"

    def poll_once(self, timeout: float) -> None:
        p = select.poll()
        IN, OUT = select.POLLIN, select.POLLOUT
        p.register(self.wake_r, IN)
        if self.listener is not None:
            p.register(self.listener.fileno(), IN)
        for fd in self.outputs:
            p.register(fd, IN | (OUT if fd == self.stdin_fd and self.stdin_buf else 0))
        if (
            self.stdin_fd >= 0
            and self.stdin_fd not in self.outputs
            and (self.stdin_buf or self.stdin_close_pending)
        ):
            p.register(self.stdin_fd, OUT)
        for fd, c in self.clients.items():
            mask = 0 if c.closing or len(self.stdin_buf) > STDIN_BUFFER_CAP else IN
            p.register(fd, mask | (OUT if c.outbuf else 0))
        net_fds: set[int] = set()
        if self.net is not None:
            for fd, mask in self.net.poll_fds():
                p.register(fd, mask)
                net_fds.add(fd)
            hint = self.net.timeout()
            if hint is not None:
                timeout = min(timeout, hint)
        health_fds: list = []
        if self.health is not None:
            health_fds = self.health.fds()
            for fd in health_fds:
                p.register(fd, IN)
            hint = self.health.timeout()
            if hint is not None:
                timeout = min(timeout, hint)
        events = p.poll(max(0, int(timeout * 1000 + 0.999)))
        for fd, ev in events:
            if fd in net_fds:
                assert self.net is not None
                self.net.handle(fd, ev)
            elif fd in health_fds:
                assert self.health is not None
                self.health.on_readable(fd)
            elif fd == self.wake_r:
                read_available(fd)
                self.reap()
            elif self.listener is not None and fd == self.listener.fileno():
                self.on_accept()
            elif fd in self.clients:
                c = self.clients[fd]
                if ev & OUT:
                    self.on_client_writable(c)
                if fd in self.clients and ev & (IN | select.POLLHUP | select.POLLERR):
                    self.on_client_readable(c)
            else:
                if fd == self.stdin_fd and ev & OUT:
                    self.write_stdin()
                if fd in self.outputs and ev & (IN | select.POLLHUP | select.POLLERR):
                    self.on_output(fd)
                elif (
                    fd == self.stdin_fd and fd not in self.outputs and ev & (select.POLLERR | select.POLLHUP)
                ):
                    self.stdin_buf.clear()  # reader gone
                    self.write_stdin()
        if self.stdin_fd >= 0 and self.stdin_close_pending and not self.stdin_buf:
            self.write_stdin()
        if self.net is not None:
            self.net.tick()

    def loop(self) -> None:
        while self.phase != "done":
            if self.phase == "running":
                timeout = 1.0
            else:
                timeout = min(0.2, max(0.0, self.deadline - time.monotonic()))
            if self.timer is not None and self.timer.active():
                timeout = min(timeout, self.timer.timeout() or timeout)
            self.poll_once(timeout)
            if self.health is not None:
                self.health.tick(self.reaped)
            self.policy_tick()
            if self.phase == "running" and self.pid in self.reaped:
                self.on_init_exit(self.reaped.pop(self.pid))
            if self.phase == "draining" and (not self.outputs or time.monotonic() >= self.deadline):
                self.finish_run()
            if self.phase == "backoff" and (self.stop_is_requested() or time.monotonic() >= self.deadline):
                self.restart()
        # Let attached clients read the exit frame (bounded), then go.
        end = time.monotonic() + 1.0
        while any(c.outbuf for c in self.clients.values()) and time.monotonic() < end:
            self.poll_once(0.05)
        for c in list(self.clients.values()):
            self.drop_client(c)
        if self.on_exit and self.status == "exited":
            # `kran run --rm` in the foreground removes the container itself (it said so with
            # CLI_REMOVES): a second remover would only race it
            if not (getattr(self, "attached_at_exit", False) and os.path.exists(proto.CLI_REMOVES)):
                self.spawn_detached(self.on_exit)

    # -- policies (kran/monitor/policy.py) --------------------------------------------------

    def load_timer(self, cfg: dict | None) -> None:
        if not cfg:
            self.timer = None
            return
        if self.timer is None:
            from kran import clock
            from kran.monitor import policy

            self.timer = policy.Timer(cfg, clock.now)
            self.timer.started = getattr(self, "started_clock", 0.0) or self.clock_now()
        else:
            self.timer.load(cfg)

    def clock_now(self) -> float:
        from kran import clock

        try:
            return clock.now()
        except Exception:  # a garbled KRAN_CLOCK file (tests): real time rather than no monitor
            return time.time()

    def policy_may_run(self) -> bool:
        try:
            return self.timer is None or self.timer.may_run()
        except Exception:
            return True

    def reload_config(self) -> None:
        """`kran update` rewrote monitor.json: policies and the restart policy apply at once."""
        m = _mtime(os.path.join(self.dir, proto.CONFIG))
        if m == self.config_mtime:
            return
        self.config_mtime = m
        try:
            with open(os.path.join(self.dir, proto.CONFIG)) as f:
                cfg = json_loads(f.read())
        except (OSError, ValueError):
            return
        if isinstance(cfg, dict):
            self.load_timer(cfg.get("policy"))
            self.reload_policy()

    def policy_tick(self) -> None:
        self.reload_config()
        t = self.timer
        if t is None:
            if self.phase == "window":  # `kran update` lifted the policy: start it now
                self.phase, self.deadline = "backoff", 0.0
            return
        try:
            if self.phase == "running" and self.pid not in self.reaped:
                if not self.policy_stop:
                    why = t.due()
                    if why:
                        self.policy_stop = why
                        self.kill_at = time.monotonic() + t.stop_timeout
                        self.emit_event(why + "-stop" if why != "recreate" else "recreate",
                                        signal=str(self.stop_signal))
                        self.run_runtime("kill", self.id, str(self.stop_signal if t.stop_timeout else 9))
                elif self.kill_at and time.monotonic() >= self.kill_at:
                    self.kill_at = 0.0  # docker stop's grace period is over
                    self.run_runtime("kill", self.id, "9")
            elif self.phase == "window":
                if self.stop_is_requested():
                    self.status, self.phase = "exited", "done"
                    self.mark_waiting(False)
                    self.write_state()
                elif t.now() >= self.window_at or (not self.window_lifetime and t.may_run()):
                    self.phase, self.deadline = "backoff", 0.0  # the loop's restart() starts it
        except Exception:  # KRAN_CLOCK unreadable for a moment: try again next tick
            pass

    def policy_restart(self, why: str) -> bool:
        """Whether a container the monitor stopped (``why``) starts again: a recreate at once; after a
        schedule or lifetime stop, with restart policy always|unless-stopped, at the next window's
        start (a lifetime stop without a schedule is final, like Podman's --timeout)."""
        if self.stop_is_requested():
            return False
        self.reload_policy()
        if why == "recreate":
            return True
        if self.policy not in ("always", "unless-stopped") or self.timer is None:
            return False
        return self.timer.wait_until(after_lifetime=why == "lifetime") != float("inf")

    def after_policy_stop(self, why: str) -> None:
        assert self.timer is not None
        if why == "recreate":
            self.restart_count -= 1  # kran's own restart, like `docker restart`: not the policy's
            self.recreating = True
            self.phase, self.deadline = "backoff", 0.0
            if self.timer.fresh and not getattr(self, "fresh", None):
                self.fresh_saved, self.fresh = [], self.timer.fresh  # this one restart is fresh
            return
        self.window_lifetime = why == "lifetime"
        self.window_at = self.timer.wait_until(after_lifetime=self.window_lifetime)
        self.phase = "window"
        self.mark_waiting(True)

    def mark_waiting(self, on: bool) -> None:
        """ROOT/schedule-waiting/ID while the container waits for its window: if this monitor dies
        (killed, a reboot), the next kran command finds it there and starts the container in its
        window (kran.engine.containers.reconcile_schedules) -- one listdir when there is none."""
        d = os.path.join(os.path.dirname(os.path.dirname(self.dir)), "schedule-waiting")
        try:
            if on:
                os.makedirs(d, 0o700, exist_ok=True)
                os.close(os.open(os.path.join(d, self.id), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            else:
                os.unlink(os.path.join(d, self.id))
        except OSError:
            pass

    def health_action(self, action: str, sig: int) -> None:
        """Podman's --health-on-failure (kran/monitor/health.py calls it when the container turns
        unhealthy, and with action "" when a stop's grace period ends): signal the container; the
        exit that follows restarts it (restart) or is final like `kran stop`'s (kill, stop)."""
        if self.phase != "running":
            return
        if action == "restart":
            self.health_restart = True
        elif action:
            self.stop_requested = True
            with open(proto.STOP_FILE, "w"):  # as the engine's stop: kept if the monitor goes
                pass
        if action:
            self.emit_event("kill", signal=str(sig), reason="health-on-failure=" + action)
        self.run_runtime("kill", self.id, str(sig))

    def emit_event(self, action: str, **attrs: str) -> None:
        """Append a docker-style event to the engine's journal (kran events), if it gave one."""
        if not self.events_path:
            return
        now = time.time_ns()
        ev = {"Type": "container", "Action": action,
              "Actor": {"ID": self.id, "Attributes": dict(self.event_attrs, **attrs)},
              "scope": "local", "time": now // 1_000_000_000, "timeNano": now}
        try:
            fd = os.open(self.events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, (json_dumps(ev) + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass

    def spawn_detached(self, argv: list) -> None:
        """Run ``argv`` (docker's --rm: the engine's `rm`) in its own session; don't wait for it."""
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                if os.fork():
                    os._exit(0)
                os.chdir("/")
                null = os.open(os.devnull, os.O_RDWR)
                for target in (0, 1, 2):
                    os.dup2(null, target)
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        os.waitpid(pid, 0)


def _signum(name: str) -> int:
    """monitor.json's stop_signal ("SIGTERM", or "SIG37" for a number) -> its number."""
    n = getattr(signal, name, None)
    if isinstance(n, int):
        return int(n)
    try:
        return int(name[3:] if name.startswith("SIG") else name)
    except ValueError:
        return int(signal.SIGTERM)


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def report(fd: int, msg: dict) -> None:
    if fd < 0:
        return
    try:
        os.write(fd, json_dumps(msg).encode() + b"\n")
    except OSError:
        pass
    os.close(fd)


def _usage() -> int:
    sys.stderr.write("usage: python -m kran.monitor CONTAINER_DIR [--sync-fd N] [--detach]\n")
    return 2


def _join_netns(path: str) -> None:
    from kran.sys.ns import CLONE_NEWNET, setns

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    cdir, sync_fd, detach = "", -1, False
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--sync-fd" and args:
            sync_fd = int(args.pop(0))
        elif a == "--detach":
            detach = True
        elif a.startswith("-") or cdir:
            return _usage()
        else:
            cdir = a
    if not cdir:
        return _usage()
    if sync_fd >= 0:
        os.set_inheritable(sync_fd, False)
    if detach:
        # The caller (client.start) made us a session leader and waits for this first process;
        # the monitor proper is its child, reparented to init: no zombie for the CLI to reap.
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        os.close(null)

    monitor: Monitor | None = None
    try:
        os.chdir(cdir)
        with open(proto.CONFIG) as f:
            cfg = json_loads(f.read())
        monitor = Monitor(os.getcwd(), cfg)
        try:
            os.unlink(proto.STOP_FILE)  # a stale request from the previous run (docker start resets it)
        except FileNotFoundError:
            pass
        set_subreaper()
        # Signals: SIGCHLD wakes poll through a pipe; termination signals are ignored (the engine
        # stops the container through the runtime, never by signalling the monitor).  Handlers,
        # unlike SIG_IGN, are reset by exec, so the runtime and the container get the defaults.
        monitor.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)
        monitor.listen()
        monitor.sync_fd = sync_fd
        err = monitor.start_container()
        if monitor.sync_fd < 0:
            sync_fd = -1  # already reported (wait_attach)
        if err:
            monitor.status = "exited"
            monitor.error = err
            monitor.exit_code = proto.exit_code_for(err)
            monitor.finished_at = now_rfc3339()
            monitor.write_state()
            report(sync_fd, {"ok": False, "error": err})
            sync_fd = -1
            return 1
        monitor.write_state()
        if sync_fd >= 0:
            report(sync_fd, {"ok": True, "pid": monitor.pid, "monitor_pid": os.getpid()})
        sync_fd = -1
        monitor.loop()
        return 0
    except Exception as e:
        msg = f"monitor: {type(e).__name__}: {e}"
        if sync_fd >= 0:
            report(sync_fd, {"ok": False, "error": msg})
        if monitor is not None:
            try:
                monitor.run_runtime("delete", "--force", monitor.id)  # no container may outlive us
                monitor.status, monitor.error = "exited", msg
                monitor.write_state()
            except Exception:
                pass
        return 1
    finally:
        if monitor is not None:
            if monitor.net is not None:
                monitor.net.close()
            if monitor.listener is not None:
                monitor.listener.close()
                try:
                    os.unlink(proto.ATTACH_SOCK)
                except OSError:
                    pass
            try:
                monitor.log.close()
            except OSError:
                pass
