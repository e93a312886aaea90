"""Issue #12, deliverable 3: containers as a rootless user types them — hello, an interactive
shell on a pty, a detached container with logs/exec/stop/start and a restart policy, --rm, name
conflicts, named volumes and bind mounts of the user's files, --read-only and --tmpfs, and the
limit flags that need a delegated cgroup (refused on this cgroup v1 host)."""

from __future__ import annotations

import json
import os
import time

import pexpect
import pytest

from tests.rootless.helpers import Made, until


@pytest.fixture
def made(ruser):
    m = Made(ruser)
    yield m
    m.cleanup()


def _names(ruser) -> list[str]:
    return ruser.kran("ps", "-a", "--format", "{{.Names}}").out.split()


def _state(ruser, name: str) -> dict:
    return json.loads(ruser.kran("inspect", "--format", "{{json .State}}", name).out)


def test_hello(ruser, made):
    name = made.container("hello")
    p = ruser.kran("run", "--name", name, "busybox", "echo", "hello from rootless")
    assert p.out == "hello from rootless\n"
    assert _state(ruser, name)["ExitCode"] == 0


def test_interactive_shell_on_a_pty(ruser, made):
    name = made.container("it")
    argv = ruser.argv(*ruser.prefix, "run", "-it", "--name", name, "busybox", "sh")
    child = pexpect.spawn(argv[0], argv[1:], cwd=str(ruser.home), timeout=20, encoding="utf-8")
    try:
        child.expect("# ")
        child.sendline("id; tty")
        child.expect(r"uid=0\(root\) gid=0\(root\)")
        child.expect("/dev/pts/[0-9]+")
        child.sendline("exit 7")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    # the shell's exit status is `run`'s, and the container ended with it
    assert child.exitstatus == 7
    st = _state(ruser, name)
    assert (st["Status"], st["ExitCode"]) == ("exited", 7)


def test_detached_logs_exec_stop_start(ruser, made):
    name = made.container("d")
    cid = ruser.kran("run", "-d", "--name", name, "busybox", "sh", "-c",
                     "echo started; trap 'exit 0' TERM; while true; do sleep 0.1; done").out.strip()
    assert len(cid) == 64
    until(lambda: ruser.kran("logs", name).out == "started\n", what="the first log line")
    p = ruser.kran("exec", name, "sh", "-c", "id -u; echo made > /tmp/mark; cat /tmp/mark")
    assert p.out == "0\nmade\n"
    assert ruser.kran("exec", name, "sh", "-c", "exit 3", check=False).returncode == 3

    assert ruser.kran("stop", "-t", "5", name).out.strip() == name
    st = _state(ruser, name)
    assert (st["Status"], st["Running"]) == ("exited", False)
    assert ruser.kran("exec", name, "true", check=False).returncode != 0

    assert ruser.kran("start", name).out.strip() == name
    assert _state(ruser, name)["Status"] == "running"
    # same container: its log goes on, its file system kept the exec's file
    until(lambda: ruser.kran("logs", name).out == "started\nstarted\n", what="the second log line")
    assert ruser.kran("exec", name, "cat", "/tmp/mark").out == "made\n"


def test_restart_policy_on_failure(ruser, made):
    name = made.container("restart")
    ruser.kran("run", "-d", "--name", name, "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 3")

    def settled():
        info = json.loads(ruser.kran("inspect", "--format", "{{json .}}", name).out)
        return info if info["RestartCount"] == 2 and info["State"]["Status"] == "exited" else None

    # the container's monitor restarts it with no kran command running
    info = until(settled, timeout=20, what="two restarts, then exited")
    assert info["State"]["ExitCode"] == 3
    assert ruser.kran("logs", name).out == "run\n" * 3


def test_restart_policy_always_until_stopped(ruser, made):
    name = made.container("always")
    ruser.kran("run", "-d", "--name", name, "--restart", "always", "busybox", "sh", "-c", "echo up; sleep 0.2")
    # exit status 0 restarts too
    until(lambda: ruser.kran("inspect", "--format", "{{.RestartCount}}", name).out.strip() not in ("0", "1"),
          timeout=15, what="two restarts after a clean exit")
    ruser.kran("stop", "-t", "2", name)
    count = ruser.kran("inspect", "--format", "{{.RestartCount}}", name).out
    time.sleep(2)  # longer than the back-off after a few restarts (0.1 s doubling): a restart would have come
    assert _state(ruser, name)["Status"] == "exited"
    assert ruser.kran("inspect", "--format", "{{.RestartCount}}", name).out == count


def test_rm_leaves_nothing(ruser, made):
    name = made.container("rm")
    assert ruser.kran("run", "--rm", "--name", name, "busybox", "echo", "gone").out == "gone\n"
    assert name not in _names(ruser)
    assert not [d for d in os.listdir(ruser.data / "containers") if d.startswith(name)]


def test_name_conflict(ruser, made):
    name = made.container("dup")
    cid = ruser.kran("create", "--name", name, "busybox", "true").out.strip()
    p = ruser.kran("run", "--name", name, "busybox", "true", check=False)
    assert p.returncode == 125
    assert f'Conflict. The container name "/{name}" is already in use by container "{cid}"' in p.err
    assert _names(ruser).count(name) == 1


def test_named_volume_in_two_containers(ruser, made):
    vol = made.volume()
    writer, reader = made.container("vw"), made.container("vr")
    ruser.kran("volume", "create", vol)
    ruser.kran("run", "--name", writer, "-v", f"{vol}:/data", "busybox", "sh", "-c",
               "echo shared > /data/f && chown 1000:1000 /data/f")
    p = ruser.kran("run", "--name", reader, "-v", f"{vol}:/other", "busybox", "sh", "-c",
                   "cat /other/f; stat -c %u:%g /other/f")
    assert p.out == "shared\n1000:1000\n"
    mountpoint = ruser.kran("volume", "inspect", "--format", "{{.Mountpoint}}", vol).out.strip()
    st = os.stat(os.path.join(mountpoint, "f"))
    # uid 1000 inside is the user's subordinate id 999 on the host
    assert (st.st_uid, st.st_gid) == (ruser.subuid + 999, ruser.subuid + 999)


def test_bind_mount_of_the_users_directory(ruser, made):
    host_dir = ruser.home / made.unique("bind")
    ruser.run("mkdir", str(host_dir))
    ruser.run("sh", "-c", f"echo from-host > {host_dir}/in")
    try:
        name = made.container("bind")
        p = ruser.kran("run", "--name", name, "-v", f"{host_dir}:/b", "busybox", "sh", "-c",
                       "id -u; cat /b/in; echo from-container > /b/out; mkdir /b/sub; stat -c %u /b/in")
        # the user's own files are root's inside, and root's writes are the user's outside
        assert p.out == "0\nfrom-host\n0\n"
        for entry in ("out", "sub"):
            st = os.lstat(host_dir / entry)
            assert (st.st_uid, st.st_gid) == (ruser.uid, ruser.gid), entry
        assert (host_dir / "out").read_text() == "from-container\n"
    finally:
        ruser.run("rm", "-rf", str(host_dir))


def test_read_only_and_tmpfs(ruser, made):
    ro = made.container("ro")
    p = ruser.kran("run", "--name", ro, "--read-only", "busybox", "sh", "-c", "echo x > /f", check=False)
    assert p.returncode != 0
    assert "Read-only file system" in p.err
    tmp = made.container("tmpfs")
    p = ruser.kran("run", "--name", tmp, "--read-only", "--tmpfs", "/x", "busybox", "sh", "-c",
                   "echo x > /x/f && cat /x/f && grep ' /x ' /proc/mounts | cut -d' ' -f3")
    assert p.out == "x\ntmpfs\n"


@pytest.mark.parametrize("flag", [("--memory", "64m"), ("--cpus", "1"), ("--pids-limit", "10")],
                         ids=lambda f: f[0])
def test_limit_flag_refused_without_cgroup_delegation(ruser, made, flag):
    name = made.container("limit")
    p = ruser.kran("run", "--name", name, *flag, "busybox", "true", check=False)
    assert p.returncode == 125
    first = p.err.strip().splitlines()[0]
    # one line that names the flag and why (cgroup v1 cannot be delegated to a user)
    assert flag[0] in first and "cgroup" in first and "rootless" in first
    assert "Traceback" not in p.err
    assert name not in _names(ruser)
    # nothing else in that command line was the problem
    ok = made.container("nolimit")
    assert ruser.kran("run", "--name", ok, "busybox", "echo", "ran").out == "ran\n"
