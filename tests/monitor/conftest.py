"""Fixtures for the monitor tests: a busybox bundle and a container directory per container,
a runc state root per test, and a teardown that leaves no container, monitor, mount or cgroup.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from kran.monitor import client

APPLETS = "sh echo cat sleep tty id true false ls printf seq head dd yes tr stty rm".split()
RUNC = shutil.which("runc") or "/usr/sbin/runc"
# The runtime the monitor drives (runc by default; KRAN_MONITOR_TEST_RUNTIME=/path/kran-runtime to try
# the runc-compatible kran-runtime).  Test set-up and clean-up always use runc's CLI with its path.
RUNTIME = os.environ.get("KRAN_MONITOR_TEST_RUNTIME") or RUNC


def alive(pid: int) -> bool:
    """Running, not a zombie (the monitor is reparented to pid 1, which may reap late)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(pred, timeout: float = 10, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


class Container:
    def __init__(self, env: Env, path: Path, cid: str, config: dict) -> None:
        self.env = env
        self.dir = path
        self.id = cid
        self.config = config
        self.log = Path(config["log_path"])
        self.result: client.StartResult | None = None

    def start(self, timeout: float = 30) -> client.StartResult:
        try:
            self.result = client.start(str(self.dir), timeout=timeout)
        finally:
            st = client.read_state(str(self.dir))
            if st and st.get("monitor_pid"):
                self.env.monitor_pids.append(st["monitor_pid"])
        self.env.monitor_pids.append(self.result.monitor_pid)
        return self.result

    def state(self) -> dict | None:
        return client.read_state(str(self.dir))

    def wait_exited(self, timeout: float = 15) -> dict:
        st = wait_for(lambda: (s := self.state()) and s["status"] == "exited" and s, timeout)
        assert st, f"container did not exit: {self.state()}"
        return st

    def wait_monitor_gone(self, timeout: float = 10) -> None:
        st = self.state()
        assert st is not None
        assert wait_for(lambda: not alive(st["monitor_pid"]), timeout), "monitor still running"

    def logs(self, **kw) -> list[tuple[str, bytes, str]]:
        return list(client.read_logs(str(self.log), **kw))

    def runc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.env.runc(*args, check=check)


class Env:
    def __init__(self, tmp_path: Path, template: dict) -> None:
        self.tmp = tmp_path
        self.root = tmp_path / "runc-root"
        self.template = template
        self.containers: list[Container] = []
        self.monitor_pids: list[int] = []

    def runc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [RUNTIME, "--root", str(self.root), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def container(
        self,
        args: list[str],
        *,
        tty: bool = False,
        stdin: bool = False,
        restart: str = "no",
        max_retries: int = 0,
        log_max_size: int = 0,
        log_max_file: int = 1,
        resources: dict | None = None,
        dirname: str = "",
    ) -> Container:
        n = len(self.containers)
        path = self.tmp / (dirname or f"c{n}")
        bundle = path / "bundle"
        rootfs = bundle / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
        for a in APPLETS:
            os.symlink("busybox", rootfs / "bin" / a)
        for d in ("proc", "sys", "dev", "tmp", "etc"):
            (rootfs / d).mkdir(exist_ok=True)
        spec = json.loads(json.dumps(self.template))
        spec["process"]["args"] = args
        spec["process"]["terminal"] = tty
        spec["root"]["readonly"] = False
        if resources:
            spec["linux"]["resources"].update(resources)
        (bundle / "config.json").write_text(json.dumps(spec, indent=2))
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        config = {
            "id": cid,
            "bundle": str(bundle),
            "runtime": RUNTIME,
            "runtime_root": str(self.root),
            "tty": tty,
            "stdin": stdin,
            "log_path": str(path / "log.json"),
            "log_max_size": log_max_size,
            "log_max_file": log_max_file,
            "restart": {"name": restart, "max_retries": max_retries},
            "stop_signal": "SIGTERM",
        }
        (path / "monitor.json").write_text(json.dumps(config))
        c = Container(self, path, cid, config)
        self.containers.append(c)
        return c

    def cleanup(self) -> list[str]:
        problems = []
        for pid in dict.fromkeys(self.monitor_pids):
            # a monitor whose container has exited goes right after writing state.json
            if wait_for(lambda pid=pid: not alive(pid), 5):
                continue
            if alive(pid):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        ours = b"kran/monitor" in f.read()
                except FileNotFoundError:
                    ours = False
                if ours:
                    problems.append(f"monitor {pid} still running")
                    os.kill(pid, signal.SIGKILL)
        for c in self.containers:
            if self.root.exists():
                self.runc("delete", "-f", c.id, check=False)
        for c in self.containers:
            left = list(Path("/sys/fs/cgroup").glob(f"*/{c.id}"))
            if left:
                problems.append(f"cgroups left: {left}")
        with open("/proc/self/mountinfo") as f:
            mounts = [ln for ln in f if str(self.tmp) in ln]
        if mounts:
            problems.append(f"mounts left: {mounts}")
        return problems


@pytest.fixture(scope="session")
def spec_template(tmp_path_factory) -> dict:
    if not Path("/bin/busybox").exists():
        pytest.fail("busybox-static is required")
    d = tmp_path_factory.mktemp("spec")
    subprocess.run([RUNC, "spec", "--bundle", str(d)], check=True)
    return json.loads((d / "config.json").read_text())


@pytest.fixture
def env(tmp_path: Path, spec_template: dict):
    e = Env(tmp_path, spec_template)
    try:
        yield e
    finally:
        problems = e.cleanup()
    assert not problems, problems
