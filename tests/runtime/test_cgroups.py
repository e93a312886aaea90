"""The cgroup managers against the kernel.  v1 is what this host runs for containers; the v2 code
path is exercised on the host's cgroup2 mount (on a hybrid host: /sys/fs/cgroup/unified)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

from kran.runtime.cgroups import CgroupManager, is_v2, v1_mounts

pytestmark = pytest.mark.privileged


def _cgroup2_mount() -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.split()[0] == "cgroup2":
                return pre.split()[4]
    return None


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "60"])
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_v2_manager_create_enter_freeze_destroy(sleeper):
    root = _cgroup2_mount()
    if root is None:
        pytest.fail("no cgroup2 mount on this host")
    assert is_v2(root)
    if root != "/sys/fs/cgroup":
        assert not is_v2("/sys/fs/cgroup")  # hybrid: the v1 tmpfs is what decides
    rel = f"kran-test/v2-{uuid.uuid4().hex[:8]}"
    mgr = CgroupManager.for_path(rel, root=root)
    assert mgr.version == 2
    try:
        mgr.create()
        assert os.path.isdir(os.path.join(root, rel))
        mgr.enter(sleeper.pid)
        assert mgr.pids() == [sleeper.pid]
        mgr.freeze(True)
        assert mgr.frozen()
        mgr.freeze(False)
        assert not mgr.frozen()
        mgr.destroy()
        sleeper.wait(timeout=10)
        assert sleeper.returncode == -9
        assert not os.path.exists(os.path.join(root, rel))
        assert not os.path.exists(os.path.join(root, "kran-test"))
    finally:
        for d in (os.path.join(root, rel), os.path.join(root, "kran-test")):
            try:
                os.rmdir(d)
            except OSError:
                pass


def test_v1_manager_applies_resources_and_cleans_up(sleeper):
    if is_v2():
        pytest.fail("this test is for a v1 (or hybrid) host")
    rel = f"kran-test/v1-{uuid.uuid4().hex[:8]}"
    mgr = CgroupManager.for_path(rel)
    assert set(v1_mounts()) >= {"memory", "pids", "freezer", "cpu", "cpuset", "devices"}
    res = {
        "memory": {"limit": 32 << 20, "reservation": 16 << 20},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        "pids": {"limit": 7},
        "devices": [{"allow": False, "access": "rwm"}],
    }
    try:
        mgr.create(res)
        mgr.apply(res)
        base = "/sys/fs/cgroup"

        def read(ctrl, name):
            with open(f"{base}/{ctrl}/{rel}/{name}") as f:
                return f.read().strip()

        assert read("memory", "memory.limit_in_bytes") == str(32 << 20)
        assert read("cpu", "cpu.shares") == "512"
        assert read("cpu", "cpu.cfs_quota_us") == "50000"
        assert read("pids", "pids.max") == "7"
        assert read("cpuset", "cpuset.cpus") == open(f"{base}/cpuset/cpuset.cpus").read().strip()
        assert "c 1:3 rwm" in read("devices", "devices.list")
        mgr.enter(sleeper.pid)
        assert mgr.pids() == [sleeper.pid]
        mgr.freeze(True)
        for _ in range(100):
            if _state(sleeper.pid) in ("D", "S", "T"):
                break
            time.sleep(0.01)
        assert mgr.frozen()
        mgr.destroy()
        sleeper.wait(timeout=10)
        assert [c for c in os.listdir(base) if os.path.exists(f"{base}/{c}/kran-test")] == []
    finally:
        for c in os.listdir("/sys/fs/cgroup"):
            for d in (f"/sys/fs/cgroup/{c}/{rel}", f"/sys/fs/cgroup/{c}/kran-test"):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
