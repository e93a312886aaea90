"""User-visible behaviour of an OCI runtime, run against kran-runtime and runc alike."""

from __future__ import annotations

import json
import os
import time

import pytest

from .conftest import CGROUP_PARENT, cgroup_dirs

pytestmark = pytest.mark.privileged

DOCKER_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]  # fmt: skip


def docker_caps() -> dict:
    return {k: list(DOCKER_CAPS) for k in ("bounding", "effective", "permitted")}


def run(rt, bundle, args, **process):
    cid = rt.new_id()
    bundle.set(cid, args, **process)
    return rt("run", "--bundle", str(bundle.path), cid, check=False)


def test_run_exits_with_the_process_status(rt, bundle):
    p = run(rt, bundle, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert p.returncode == 3
    assert p.stdout == "out\n"
    assert "err" in p.stderr


def test_process_is_pid_1(rt, bundle):
    p = run(rt, bundle, ["ps"])
    assert p.returncode == 0
    lines = [line.split() for line in p.stdout.splitlines()[1:]]
    assert lines[0][0] == "1" and lines[0][-1] == "ps", p.stdout
    assert len(lines) == 1


def test_user_uid_gid_and_groups(rt, bundle):
    p = run(rt, bundle, ["id"], user={"uid": 1000, "gid": 1001, "additionalGids": [10, 20]})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[:2] == ["uid=1000", "gid=1001"]
    assert "groups=10,20" in p.stdout


def test_hostname_env_cwd(rt, bundle):
    cid = rt.new_id()
    c = bundle.set(cid, ["sh", "-c", "hostname; echo $FOO; pwd"], cwd="/tmp")
    c["hostname"] = "kt-host"
    c["process"]["env"].append("FOO=bar baz")
    bundle.write(c)
    p = rt("run", "--bundle", str(bundle.path), cid)
    assert p.stdout.splitlines() == ["kt-host", "bar baz", "/tmp"]


def test_docker_default_capabilities(rt, bundle):
    p = run(rt, bundle, ["grep", "^Cap", "/proc/self/status"], capabilities=docker_caps())
    caps = dict(line.split(":\t") for line in p.stdout.splitlines())
    for k in ("CapEff", "CapPrm", "CapBnd"):
        assert caps[k] == "00000000a80425fb", p.stdout
    assert caps["CapInh"] == caps["CapAmb"] == "0000000000000000"


def test_no_new_privileges(rt, bundle):
    p = run(rt, bundle, ["grep", "NoNewPrivs", "/proc/self/status"], noNewPrivileges=True)
    assert p.stdout.split() == ["NoNewPrivs:", "1"]
    p = run(rt, bundle, ["grep", "NoNewPrivs", "/proc/self/status"], noNewPrivileges=False)
    assert p.stdout.split() == ["NoNewPrivs:", "0"]


def test_masked_and_readonly_paths(rt, bundle):
    # /proc/kcore is the classic example, but this kernel has none: /proc/timer_list is masked too
    masked = "/proc/kcore" if os.path.exists("/proc/kcore") else "/proc/timer_list"
    script = f"wc -c < {masked}; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/domainname && echo WROTE"
    p = run(rt, bundle, ["sh", "-c", script], capabilities=docker_caps())
    out = p.stdout.split()
    assert out[:2] == ["0", "0"], p.stdout
    assert "WROTE" not in p.stdout
    assert "Read-only file system" in p.stderr


def test_mknod_block_device_needs_the_capability(rt, bundle):
    p = run(rt, bundle, ["mknod", "/tmp/blk", "b", "8", "0"])  # spec default caps: no CAP_MKNOD
    assert p.returncode != 0
    assert "Operation not permitted" in p.stderr
    p = run(rt, bundle, ["sh", "-c", "mknod /tmp/blk b 8 0 && echo made"], capabilities=docker_caps())
    assert p.stdout.strip() == "made", p.stderr


def test_mount_is_refused(rt, bundle):
    p = run(rt, bundle, ["mount", "-t", "tmpfs", "tmpfs", "/mnt"], capabilities=docker_caps())
    assert p.returncode != 0
    assert "Operation not permitted" in p.stderr or "permission denied" in p.stderr.lower()


def test_root_readonly(rt, bundle):
    cid = rt.new_id()
    c = bundle.set(cid, ["touch", "/x"])
    c["root"]["readonly"] = True
    bundle.write(c)
    p = rt("run", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode != 0
    assert "Read-only file system" in p.stderr


def test_memory_limit_visible_in_cgroup(rt, bundle, tmp_path):
    cid = rt.new_id()
    c = bundle.set(cid, ["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
    c["linux"]["resources"]["memory"] = {"limit": 64 * 1024 * 1024}
    bundle.write(c)
    out = tmp_path / "out"
    with open(out, "w") as f:
        rt("create", "--bundle", str(bundle.path), cid, stdout=f, stderr=f, capture_output=False)
    host = f"/sys/fs/cgroup/memory/{CGROUP_PARENT}/{cid}/memory.limit_in_bytes"
    assert open(host).read().strip() == str(64 * 1024 * 1024)
    rt("start", cid)
    assert rt.wait_status(cid, "stopped")["status"] == "stopped"
    assert out.read_text().strip() == str(64 * 1024 * 1024)
    rt("delete", cid)
    assert cgroup_dirs(cid) == []


def test_pids_limit_bounds_a_fork_bomb(rt, bundle):
    cid = rt.new_id()
    c = bundle.set(cid, ["sh", "-c", "for i in $(seq 20); do sleep 10 & done; echo spawned"])
    c["linux"]["resources"]["pids"] = {"limit": 10}
    bundle.write(c)
    p = rt("run", "--bundle", str(bundle.path), cid, check=False, timeout=30)
    assert "can't fork" in p.stderr or "Resource temporarily unavailable" in p.stderr, p.stderr


@pytest.mark.parametrize("nnp", [True, False])
def test_seccomp_errno_for_mkdir(rt, bundle, nnp):
    # without noNewPrivileges the filter is loaded before the capabilities are dropped
    cid = rt.new_id()
    c = bundle.set(
        cid,
        ["sh", "-c", "mkdir /tmp/d; touch /tmp/f && echo touched"],
        noNewPrivileges=nnp,
        user={"uid": 1000, "gid": 1000},
    )
    c["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }
    bundle.write(c)
    p = rt("run", "--bundle", str(bundle.path), cid, check=False)
    assert "Operation not permitted" in p.stderr, p.stderr
    assert p.stdout.strip() == "touched"


def test_seccomp_argument_filter(rt, bundle):
    # personality(0xffffffff) only queries; deny anything else with EPERM -> busybox setarch-like probe
    cid = rt.new_id()
    c = bundle.set(cid, ["sh", "-c", "kill -0 1 && echo self-ok; kill -0 $$ 2>/dev/null; echo done"])
    c["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["kill"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 1,
                "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}],
            }
        ],
    }
    bundle.write(c)
    p = rt("run", "--bundle", str(bundle.path), cid, check=False)
    assert "self-ok" not in p.stdout
    assert "done" in p.stdout


def test_lifecycle_create_start_state_kill_delete(rt, bundle, tmp_path):
    cid = rt.new_id()
    bundle.set(cid, ["sleep", "100"])
    pid_file = tmp_path / "pid"
    rt("create", "--bundle", str(bundle.path), "--pid-file", str(pid_file), cid)
    st = rt.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid and st["bundle"] == str(bundle.path)
    assert st["pid"] == int(pid_file.read_text())
    pid = st["pid"]
    assert os.path.exists(f"/proc/{pid}")
    assert cgroup_dirs(cid)
    assert cid in rt("list", "-q").stdout.split()
    rt("start", cid)
    assert rt.state(cid)["status"] == "running"
    p = rt("start", cid, check=False)
    assert p.returncode != 0
    rt("kill", cid, "KILL")
    st = rt.wait_status(cid, "stopped")
    assert st["status"] == "stopped"
    rt("delete", cid)
    assert not (rt.root / cid).exists()
    assert cgroup_dirs(cid) == []
    assert not _alive(pid)
    p = rt("state", cid, check=False)
    assert p.returncode != 0 and "does not exist" in p.stderr


def test_kill_by_name_and_number(rt, bundle):
    cid = rt.new_id()
    bundle.set(cid, ["sleep", "100"])
    rt("run", "-d", "--bundle", str(bundle.path), cid)
    assert rt.state(cid)["status"] == "running"
    rt("kill", cid, "15")  # PID 1 ignores SIGTERM without a handler...
    time.sleep(0.1)
    assert rt.state(cid)["status"] == "running"
    rt("kill", cid, "SIGKILL")  # ...but not SIGKILL
    assert rt.wait_status(cid, "stopped")["status"] == "stopped"


def test_delete_force_running_container(rt, bundle):
    cid = rt.new_id()
    bundle.set(cid, ["sleep", "100"])
    rt("run", "-d", "--bundle", str(bundle.path), cid)
    pid = rt.state(cid)["pid"]
    p = rt("delete", cid, check=False)
    assert p.returncode != 0 and "running" in p.stderr
    rt("delete", "-f", cid)
    assert not _alive(pid)
    assert cgroup_dirs(cid) == []
    assert not (rt.root / cid).exists()


def test_exec_in_running_container(rt, bundle):
    cid = rt.new_id()
    bundle.set(cid, ["sleep", "100"])
    rt("run", "-d", "--bundle", str(bundle.path), cid)
    p = rt(
        "exec",
        "--env",
        "X=y",
        "--cwd",
        "/tmp",
        cid,
        "sh",
        "-c",
        "echo $X; pwd; ps -o pid,args | grep -c sleep; exit 5",
        check=False,
    )
    assert p.returncode == 5
    assert p.stdout.splitlines()[:2] == ["y", "/tmp"]
    p = rt("exec", "--user", "1000:1000", cid, "id")
    assert p.stdout.split()[:2] == ["uid=1000", "gid=1000"]
    p = rt("exec", cid, "nosuchcmd", check=False)
    assert p.returncode != 0
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in unquote(p.stderr)


def test_exec_not_found_fails_create(rt, bundle):
    p = run(rt, bundle, ["nosuchcmd"])
    assert p.returncode != 0
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in unquote(p.stderr)


def test_pause_resume_and_ps(rt, bundle):
    cid = rt.new_id()
    bundle.set(cid, ["sleep", "100"])
    rt("run", "-d", "--bundle", str(bundle.path), cid)
    pid = rt.state(cid)["pid"]
    rt("pause", cid)
    assert rt.state(cid)["status"] == "paused"
    rt("resume", cid)
    assert rt.state(cid)["status"] == "running"
    p = rt("ps", "--format", "json", cid)
    assert pid in json.loads(p.stdout)
    p = rt("ps", cid)
    assert p.stdout.splitlines()[0].split()[1] == "PID"
    assert any(line.split()[1] == str(pid) for line in p.stdout.splitlines()[1:])


def unquote(text: str) -> str:
    """runc logs through logrus, which escapes the quotes in the message."""
    return text.replace('\\"', '"')


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_delete_created_container_and_kill_stopped(rt, bundle):
    cid = rt.new_id()
    bundle.set(cid, ["sleep", "100"])
    rt("create", "--bundle", str(bundle.path), cid)
    pid = rt.state(cid)["pid"]
    rt("delete", cid)  # a created container may be deleted without -f
    assert not _alive(pid)
    assert cgroup_dirs(cid) == []
    cid = rt.new_id()
    bundle.set(cid, ["true"])
    rt("run", "-d", "--bundle", str(bundle.path), cid)
    rt.wait_status(cid, "stopped")
    p = rt("kill", cid, "KILL", check=False)
    assert p.returncode != 0 and "not running" in p.stderr
    rt("delete", cid)


def test_errors_go_to_the_json_log(rt, tmp_path):
    log = tmp_path / "log.json"
    p = rt("--log", str(log), "--log-format", "json", "state", "nope", check=False)
    assert p.returncode != 0
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(e["level"] == "error" and "does not exist" in e["msg"] for e in entries)


@pytest.mark.parametrize("pid_ns", [True, False])
def test_state_pid_is_the_init_as_the_host_sees_it(rt, bundle, pid_ns):
    cid = rt.new_id()
    c = bundle.set(cid, ["sleep", "100"])
    if not pid_ns:
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
    bundle.write(c)
    rt("run", "-d", "--bundle", str(bundle.path), cid)
    pid = rt.state(cid)["pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] == b"sleep"
    if pid_ns:
        with open(f"/proc/{pid}/status") as f:
            nspid = [line.split()[1:] for line in f if line.startswith("NSpid:")][0]
        assert nspid == [str(pid), "1"]
    rt("delete", "-f", cid)
    assert not _alive(pid)


def test_memory_and_swap_limits(rt, bundle):
    memsw = "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
    cid = rt.new_id()
    c = bundle.set(cid, ["sleep", "100"])
    c["linux"]["resources"]["memory"] = {"limit": 64 << 20, "swap": 128 << 20}
    bundle.write(c)
    rt("create", "--bundle", str(bundle.path), cid)
    base = f"/sys/fs/cgroup/memory/{CGROUP_PARENT}/{cid}"
    assert open(f"{base}/memory.limit_in_bytes").read().strip() == str(64 << 20)
    if os.path.exists(memsw):
        assert open(f"{base}/memory.memsw.limit_in_bytes").read().strip() == str(128 << 20)
    rt("delete", cid)


def test_update_resources(rt, bundle, tmp_path):
    cid = rt.new_id()
    c = bundle.set(cid, ["sleep", "100"])
    c["linux"]["resources"]["memory"] = {"limit": 64 << 20}
    bundle.write(c)
    rt("run", "-d", "--bundle", str(bundle.path), cid)
    base = f"/sys/fs/cgroup/{{}}/{CGROUP_PARENT}/{cid}/{{}}"
    rt("update", "--memory", "96m", "--pids-limit", "42", cid)
    assert open(base.format("memory", "memory.limit_in_bytes")).read().strip() == str(96 << 20)
    assert open(base.format("pids", "pids.max")).read().strip() == "42"
    (tmp_path / "res.json").write_text(json.dumps({"cpu": {"shares": 256}}))
    rt("update", "--resources", str(tmp_path / "res.json"), cid)
    assert open(base.format("cpu", "cpu.shares")).read().strip() == "256"
    # the device rules are untouched: /dev/null still works in the running container
    assert rt("exec", cid, "sh", "-c", "echo x > /dev/null && echo ok").stdout.strip() == "ok"
