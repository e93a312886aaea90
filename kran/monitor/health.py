"""Health checks, run by the monitor (so they hold with no kran running), in its poll loop.

Docker's rules (the container's Config.Healthcheck, turned by the engine into an argv and seconds):
the first probe runs ``interval`` after the start, each probe is ``runtime exec ID ARGV`` and is
killed after ``timeout``; exit 0 makes the container ``healthy`` and resets the failing streak; any
other result (or the timeout) adds to the streak -- except during ``start_period``, when failures do
not count (probes then run every ``start_interval``) -- and ``retries`` failures in a row make it
``unhealthy``.  The last five results are kept.  With Podman's ``on_failure`` action (kill, stop, restart), the turn
to ``unhealthy`` makes the monitor act (:meth:`Health.on_unhealthy`).  The state goes to ``health.json`` (atomically),
which the engine's inspect shows as State.Health::

    monitor loop                                   probe (runtime exec)
      | tick: due --> fork, exec ----------------->  | runs ARGV in the container
      | poll: output pipe readable <--------------- | stdout+stderr
      | reap (SIGCHLD) <--------------------------- x exit status
      | record result, status, health.json, event "health_status: healthy"

Only stdlib modules already loaded by the monitor are used.
"""

from __future__ import annotations

import os
import signal
import time

FILE = "health.json"
LOG_KEEP = 5
OUTPUT_MAX = 4096  # docker keeps at most 4 KiB of a probe's output


class Health:
    def __init__(self, cfg: dict, exec_prefix: list, write: object, dumps: object, event: object, now_rfc3339: object,
                 act: object = None) -> None:
        self.argv = list(exec_prefix) + list(cfg.get("test") or [])
        self.interval = float(cfg.get("interval") or 30.0)
        self.timeout_s = float(cfg.get("timeout") or 30.0)
        self.retries = int(cfg.get("retries") or 3)
        self.start_period = float(cfg.get("start_period") or 0.0)
        self.start_interval = float(cfg.get("start_interval") or 5.0)
        self.write, self.dumps, self.event, self.now_rfc3339 = write, dumps, event, now_rfc3339
        # Podman's --health-on-failure: act(action, signal) is the monitor's (it signals the container
        # and decides what its exit means); a stop's grace period ends in SIGKILL, sent from tick()
        self.on_failure = cfg.get("on_failure") or "none"
        self.act = act
        self.stop_signal = int(cfg.get("stop_signal") or signal.SIGTERM)
        self.stop_timeout = float(cfg.get("stop_timeout") if cfg.get("stop_timeout") is not None else 10)
        self.kill_at = 0.0
        self.status = "starting"
        self.streak = 0
        self.log: list = []
        self.pid = 0
        self.out_r = -1
        self.buf = bytearray()
        self.probe_start = ""
        self.deadline = 0.0
        self.timed_out = False
        self.started = 0.0
        self.next_at = 0.0
        self.active = False

    # -- the container's runs --------------------------------------------------------------------

    def start(self) -> None:
        """The container (re)started: a fresh "starting" state, first probe one interval away."""
        self.stop()
        now = time.monotonic()
        self.status, self.streak, self.log = "starting", 0, []
        self.started = now
        # docker 25+ (daemon/health.go getInterval): within a start period, probes (the first too)
        # come every start_interval
        self.next_at = now + (self.start_interval if self.start_period > 0 else self.interval)
        self.active = True
        self.save()

    def stop(self) -> None:
        """The container's process ended: no more probes (a running one is killed)."""
        self.active = False
        self.kill_at = 0.0
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
            self.pid = 0
        self.close_pipe()

    # -- the poll loop ---------------------------------------------------------------------------

    def fds(self) -> list:
        return [self.out_r] if self.out_r >= 0 else []

    def timeout(self) -> float | None:
        if not self.active:
            return None
        due = self.deadline if self.pid else self.next_at
        if self.kill_at:
            due = min(due, self.kill_at)
        return max(0.0, due - time.monotonic())

    def on_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close_pipe()
            return
        if len(self.buf) < OUTPUT_MAX:
            self.buf += data[: OUTPUT_MAX - len(self.buf)]

    def tick(self, reaped: dict) -> None:
        if not self.active:
            return
        now = time.monotonic()
        if self.kill_at and now >= self.kill_at and self.act is not None:
            self.kill_at = 0.0  # the stop's grace period is over
            self.act("", signal.SIGKILL)
        if self.pid and self.pid in reaped:
            status = reaped.pop(self.pid)
            self.pid = 0
            self.finish(os.waitstatus_to_exitcode(status), now)
        elif self.pid and now >= self.deadline and not self.timed_out:
            self.timed_out = True
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        elif not self.pid and now >= self.next_at:
            self.spawn(now)

    # -- probes ----------------------------------------------------------------------------------

    def spawn(self, now: float) -> None:
        r, w = os.pipe()
        os.set_blocking(r, False)
        pid = os.fork()
        if pid == 0:
            try:
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(w, 1)
                os.dup2(w, 2)
                for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(sig, signal.SIG_DFL)
                os.execvp(self.argv[0], self.argv)
            finally:
                os._exit(127)
        os.close(w)
        self.pid, self.out_r, self.buf = pid, r, bytearray()
        self.probe_start = self.now_rfc3339()
        self.deadline = now + self.timeout_s
        self.timed_out = False

    def finish(self, code: int, now: float) -> None:
        if self.out_r >= 0:
            self.on_readable(self.out_r)
        self.close_pipe()
        output = self.buf.decode(errors="replace")
        if self.timed_out:
            code, output = -1, f"Health check exceeded timeout ({self.timeout_s:g}s)"
        self.log = (self.log + [{"Start": self.probe_start, "End": self.now_rfc3339(), "ExitCode": code,
                                 "Output": output}])[-LOG_KEEP:]
        before = self.status
        in_start_period = now - self.started < self.start_period
        if code == 0:
            self.status, self.streak = "healthy", 0
        elif not in_start_period:
            self.streak += 1
            if self.streak >= self.retries:
                self.status = "unhealthy"
        self.next_at = now + (self.start_interval if in_start_period and self.status == "starting" else self.interval)
        self.save()
        if self.status != before:
            self.event("health_status: " + self.status)
            if self.status == "unhealthy" and self.on_failure != "none" and self.act is not None:
                self.on_unhealthy(now)

    def on_unhealthy(self, now: float) -> None:
        """kill: SIGKILL now; stop and restart: the stop signal, SIGKILL after the stop timeout
        (docker stop's rule).  No more probes: the container is on its way out."""
        grace = 0.0 if self.on_failure == "kill" else self.stop_timeout
        self.act(self.on_failure, self.stop_signal if grace > 0 else signal.SIGKILL)
        self.next_at = float("inf")
        self.kill_at = now + grace if grace > 0 else 0.0

    def close_pipe(self) -> None:
        if self.out_r >= 0:
            os.close(self.out_r)
            self.out_r = -1

    def save(self) -> None:
        doc = {"Status": self.status, "FailingStreak": self.streak, "Log": self.log}
        self.write(FILE, (self.dumps(doc) + "\n").encode())
