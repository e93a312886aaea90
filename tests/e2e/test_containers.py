"""Containers as a user drives them: run, ps, stop, start, rm, logs, exec, names, limits, security."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, params=["kran", "runc"])
def runtime(request, kran):
    """Every container test runs with kran's own runtime and with runc: the engine speaks runc's CLI."""
    kran.env["KRAN_RUNTIME"] = request.param
    return request.param


def test_detached_lifecycle(kran, busybox):
    cid = kran("run", "-d", "--name", "web", "busybox", "sh", "-c", "echo started; sleep 300").out.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    ps = kran("ps").out.splitlines()
    assert ps[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert ps[1].startswith(cid[:12]) and ps[1].rstrip().endswith("web") and " Up " in ps[1]
    assert kran("inspect", "-f", "{{.State.Status}} {{.State.Running}} {{.Name}}", "web").out == "running true /web\n"
    # logs, exec
    deadline = time.time() + 10
    while "started" not in kran("logs", "web").out and time.time() < deadline:
        time.sleep(0.05)
    assert kran("logs", "web").out == "started\n"
    assert kran("exec", "web", "cat", "/etc/hostname").out == cid[:12] + "\n"
    r = kran("exec", "web", "sh", "-c", "echo to-err >&2; exit 4", check=False)
    assert r.returncode == 4 and r.err == "to-err\n"
    # as dockerd: an exec that cannot start exits 126, whatever the cause (run says 127 for this)
    r = kran("exec", "web", "nope", check=False)
    assert r.returncode == 126 and "executable file not found" in r.err
    # stop: sh as PID 1 ignores SIGTERM, so the timeout then SIGKILL decides
    t0 = time.time()
    assert kran("stop", "-t", "1", "web").out == "web\n"
    assert time.time() - t0 < 8
    assert kran("ps", "-q").out == ""
    assert "Exited (137)" in kran("ps", "-a").out
    assert kran("inspect", "-f", "{{.State.ExitCode}}", "web").out == "137\n"
    # start again: the same container, its writable layer kept
    kran("start", "web")
    assert kran("inspect", "-f", "{{.State.Running}}", "web").out == "true\n"
    r = kran("rm", "web", check=False)
    assert r.returncode == 1
    assert r.err.startswith('Error response from daemon: cannot remove container "/web": container is running')
    assert kran("rm", "-f", "web").out == "web\n"
    assert kran("ps", "-aq").out == ""
    r = kran("rm", "web", check=False)
    assert r.returncode == 1 and r.err == "Error response from daemon: No such container: web\n"


def test_name_conflict_exactly_like_docker(kran, busybox):
    first = kran("create", "--name", "test-nginx", "busybox", "true").out.strip()
    r = kran("run", "-d", "--name", "test-nginx", "busybox", "true", check=False)
    assert r.returncode == 125
    assert r.err.splitlines()[0] == (
        f'kran: Error response from daemon: Conflict. The container name "/test-nginx" is already in use by container '
        f'"{first}". You have to remove (or rename) that container to be able to reuse that name.'
    )
    kran("rm", "test-nginx")
    kran("run", "-d", "--name", "test-nginx", "busybox", "true")
    r = kran("run", "--name", "bad name!", "busybox", "true", check=False)
    assert r.returncode == 125 and "Invalid container name (bad name!)" in r.err
    kran("rename", "test-nginx", "renamed")
    assert kran("ps", "-a", "--format", "{{.Names}}").out == "renamed\n"


def test_exit_codes(kran, busybox):
    r = kran("run", "-d", "busybox", "nope", check=False)
    assert r.returncode == 127
    assert 'exec: "nope": executable file not found in $PATH' in r.err
    cid = kran("ps", "-lq", "--no-trunc").out.strip()
    assert kran("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid).out == "created 127\n"
    r = kran("run", "-d", "busybox", "/etc/passwd", check=False)
    assert r.returncode == 126, r.err
    r = kran("run", "nosuchimage", check=False)
    assert r.returncode == 125
    assert r.err.startswith("Unable to find image 'nosuchimage:latest' locally\n")
    r = kran("run", "-d", "busybox", "sh", "-c", "exit 3")
    cid = r.out.strip()
    assert kran("wait", cid).out == "3\n"


def test_security_defaults(kran, busybox):
    kran("run", "-d", "--name", "sec", "busybox", "sleep", "300")
    status = kran("exec", "sec", "cat", "/proc/self/status").out
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapEff"].strip() == "00000000a80425fb"
    assert fields["CapPrm"].strip() == "00000000a80425fb"
    assert fields["CapBnd"].strip() == "00000000a80425fb"
    assert fields["CapInh"].strip() == "0000000000000000"
    assert fields["CapAmb"].strip() == "0000000000000000"
    assert fields["Seccomp"].strip() == "2"
    # masked and read-only paths
    for masked in ("/proc/keys", "/proc/timer_list", "/proc/kcore"):
        if Path(masked).exists():  # masked with /dev/null: reads as empty
            assert kran("exec", "sec", "cat", masked).out == ""
    assert kran("exec", "sec", "ls", "/sys/firmware").out == ""
    r = kran("exec", "sec", "sh", "-c", "echo 1 > /proc/sys/kernel/domainname", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.err
    # CAP_MKNOD makes the node, but the device cgroup refuses to open it (like docker)
    kran("exec", "sec", "mknod", "/tmp/sda", "b", "8", "0")
    r = kran("exec", "sec", "head", "-c", "1", "/tmp/sda", check=False)
    assert r.returncode != 0 and "Operation not permitted" in r.err
    r = kran("exec", "sec", "mount", "-t", "tmpfs", "none", "/mnt", check=False)
    assert r.returncode != 0
    # only the container's processes are visible, and PID 1 is its command
    ps = kran("exec", "sec", "ps").out.splitlines()
    assert ps[1].split()[:3] == ["1", "root", "sleep"]
    # /dev is private: no host disks
    assert kran("exec", "sec", "ls", "/dev").out.split() == sorted(kran("exec", "sec", "ls", "/dev").out.split())
    assert "vda" not in kran("exec", "sec", "ls", "/dev").out
    # no-new-privileges when asked
    kran("run", "-d", "--name", "nnp", "--security-opt", "no-new-privileges", "busybox", "sleep", "300")
    assert "NoNewPrivs:\t1" in kran("exec", "nnp", "cat", "/proc/self/status").out


def test_user_env_workdir_hostname(kran, busybox, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\n")
    out = kran("run", "-d", "--name", "uu", "-u", "daemon", "-e", "A=1", "--env-file", str(env_file), "-w", "/tmp",
               "--hostname", "box", "busybox", "sleep", "300").out
    assert out.strip()
    assert kran("exec", "uu", "id").out == "uid=1(daemon) gid=1(daemon) groups=1(daemon)\n"
    env = kran("exec", "uu", "env").out.split()
    assert "A=1" in env and "FROM_FILE=yes" in env and "HOSTNAME=box" in env
    assert any(e.startswith("PATH=") for e in env)
    assert kran("exec", "uu", "pwd").out == "/tmp\n"
    assert kran("exec", "uu", "hostname").out == "box\n"
    assert kran("exec", "-u", "0", "uu", "id", "-u").out == "0\n"


def test_resource_limits_visible(kran, busybox):
    cid = kran("run", "-d", "-m", "64m", "--pids-limit", "20", "--cpu-shares", "512", "busybox", "sleep", "300").out.strip()
    info = json.loads(kran("inspect", cid).out)[0]
    assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
    pid = info["State"]["Pid"]
    cg = Path(f"/proc/{pid}/cgroup").read_text()
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        path = next(line.split(":", 2)[2] for line in cg.splitlines() if line.startswith("0::"))
        assert Path(f"/sys/fs/cgroup{path}/memory.max").read_text().strip() == str(64 * 1024 * 1024)
        assert Path(f"/sys/fs/cgroup{path}/pids.max").read_text().strip() == "20"
    else:
        mem = next(line.split(":", 2)[2] for line in cg.splitlines() if ":memory:" in line)
        assert Path(f"/sys/fs/cgroup/memory{mem}/memory.limit_in_bytes").read_text().strip() == str(64 * 1024 * 1024)
        pids = next(line.split(":", 2)[2] for line in cg.splitlines() if ":pids:" in line)
        assert Path(f"/sys/fs/cgroup/pids{pids}/pids.max").read_text().strip() == "20"
        cpu = next(line.split(":", 2)[2] for line in cg.splitlines() if re.search(r":cpu(,|:)", line))
        assert Path(f"/sys/fs/cgroup/cpu{cpu}/cpu.shares").read_text().strip() == "512"
    # the limit is also what the container sees
    seen = kran("exec", cid, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes", check=False).out.strip()
    if seen:
        assert seen == str(64 * 1024 * 1024)


def test_read_only_and_tmpfs(kran, busybox):
    kran("run", "-d", "--name", "ro", "--read-only", "--tmpfs", "/scratch", "busybox", "sleep", "300")
    r = kran("exec", "ro", "touch", "/file", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.err
    kran("exec", "ro", "touch", "/scratch/ok")


def test_writable_layer_is_the_containers_own(kran, busybox):
    kran("run", "-d", "--name", "aa", "busybox", "sh", "-c", "echo mine > /etc/note; rm /etc/group; sleep 300")
    kran("run", "-d", "--name", "bb", "busybox", "sleep", "300")
    deadline = time.time() + 10
    while kran("exec", "aa", "cat", "/etc/note", check=False).returncode and time.time() < deadline:
        time.sleep(0.05)
    assert kran("exec", "aa", "cat", "/etc/note").out == "mine\n"
    assert kran("exec", "bb", "cat", "/etc/note", check=False).returncode != 0
    assert kran("exec", "bb", "cat", "/etc/group").out.startswith("root:")
    upper = Path(json.loads(kran("inspect", "aa").out)[0]["GraphDriver"]["Data"]["UpperDir"])
    assert (upper / "etc" / "note").read_text() == "mine\n"
    # the image's layer is untouched
    lower = json.loads(kran("image", "inspect", "busybox").out)[0]["GraphDriver"]["Data"]["UpperDir"]
    assert (Path(lower) / "etc" / "group").exists()
    # rmi of an image a container uses: docker's conflict
    r = kran("rmi", "busybox", check=False)
    assert r.returncode == 1
    assert "conflict: unable to remove repository reference \"busybox\" (must force) - container" in r.err


def test_kill_and_signals(kran, busybox):
    kran("run", "-d", "--name", "kk", "busybox", "sleep", "300")
    assert kran("kill", "-s", "TERM", "kk").out == "kk\n"  # sleep as PID 1 has no TERM handler: ignored
    time.sleep(0.3)
    assert kran("inspect", "-f", "{{.State.Running}}", "kk").out == "true\n"
    kran("kill", "kk")
    assert kran("wait", "kk").out == "137\n"
    r = kran("kill", "kk", check=False)
    assert r.returncode == 1 and "is not running" in r.err


def test_pause_unpause(kran, busybox):
    kran("run", "-d", "--name", "pp", "busybox", "sleep", "300")
    kran("pause", "pp")
    assert "(Paused)" in kran("ps").out
    assert kran("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "pp").out == "paused true\n"
    r = kran("exec", "pp", "true", check=False)
    assert r.returncode != 0 and "paused" in r.err
    kran("unpause", "pp")
    assert kran("inspect", "-f", "{{.State.Status}}", "pp").out == "running\n"
    kran("exec", "pp", "true")


def test_ps_filters_and_formats(kran, busybox):
    kran("run", "-d", "--name", "one", "-l", "tier=web", "busybox", "sleep", "300")
    kran("create", "--name", "two", "busybox", "true")
    assert kran("ps", "--format", "{{.Names}}").out == "one\n"
    assert sorted(kran("ps", "-a", "--format", "{{.Names}} {{.State}}").out.splitlines()) == ["one running", "two created"]
    assert kran("ps", "-a", "--filter", "status=created", "--format", "{{.Names}}").out == "two\n"
    assert kran("ps", "-a", "--filter", "label=tier=web", "--format", "{{.Names}}").out == "one\n"
    assert kran("ps", "-a", "--filter", "name=tw", "-q").out.strip() == kran("inspect", "-f", "{{.Id}}", "two").out.strip()[:12]
    assert kran("ps", "-l", "--format", "{{.Names}}").out == "two\n"
    assert kran("ps", "-n", "2", "-q").out.count("\n") == 2
    lines = kran("ps", "-a", "-s").out.splitlines()
    assert lines[0].rstrip().endswith("SIZE") and "virtual" in lines[1]


def test_container_prune(kran, busybox):
    kran("run", "-d", "--name", "alive", "busybox", "sleep", "300")
    kran("create", "--name", "dead", "busybox", "true")
    out = kran("container", "prune", "-f").out
    assert out.startswith("Deleted Containers:\n")
    assert kran("ps", "-a", "--format", "{{.Names}}").out == "alive\n"


@pytest.mark.parametrize("cmd", ["run", "create", "start", "stop", "restart", "kill", "rm", "ps", "logs", "exec",
                                 "wait", "rename", "pause", "unpause", "attach"])
def test_container_help(kran, cmd):
    out = kran(cmd, "--help").out
    assert out.startswith(f"Usage:  kran {cmd} ")


def test_diff_export_top_stats_update_events(kran, busybox, tmp_path):
    kran("run", "-d", "--name", "ops", "busybox", "sh", "-c", "echo hi > /new; rm /etc/group; sleep 300")
    deadline = time.time() + 10
    while "/new" not in kran("diff", "ops").out and time.time() < deadline:
        time.sleep(0.05)
    assert kran("diff", "ops").out == "C /etc\nD /etc/group\nA /new\n"
    # export: the merged filesystem, as another tool (GNU tar) reads it
    out = tmp_path / "ops.tar"
    kran("export", "-o", str(out), "ops")
    import subprocess

    names = set(subprocess.run(["tar", "-tf", str(out)], capture_output=True, text=True, check=True).stdout.split())
    assert "new" in names and "bin/busybox" in names and "etc/group" not in names and "etc/passwd" in names
    top = kran("top", "ops").out.splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"]
    assert any(line.endswith("sleep 300") for line in top[1:])
    st = kran("stats", "--no-stream", "ops").out.splitlines()
    assert st[0].split()[:3] == ["CONTAINER", "ID", "NAME"] and " ops " in st[1]
    kran("update", "--memory", "100m", "--restart", "on-failure:3", "ops")
    assert kran("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}", "ops").out == "104857600 on-failure\n"
    kran("stop", "-t", "0", "ops")
    kran("rm", "ops")
    ev = kran("events", "--until", "0s").out.splitlines()
    actions = [line.split()[2] for line in ev]
    assert actions[:2] == ["create", "start"] and actions[-1] == "destroy"
    assert "die" in actions and actions.index("die") > actions.index("start")
    assert any("exitCode=137" in line for line in ev if " die " in line)
    assert all("name=ops" in line for line in ev)


def test_init_and_ulimit(kran, busybox):
    kran("run", "-d", "--name", "ini", "--init", "--ulimit", "nofile=512:1024", "busybox", "sleep", "300")
    ps = kran("exec", "ini", "ps").out.splitlines()
    assert ps[1].split()[2:] == ["/sbin/docker-init", "--", "sleep", "300"]
    assert kran("exec", "ini", "sh", "-c", "ulimit -n; ulimit -Hn").out == "512\n1024\n"


def test_logs_options(kran, busybox):
    kran("run", "-d", "--name", "lg", "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done")
    assert kran("wait", "lg").out == "0\n"
    r = kran("logs", "lg")
    assert r.out == "".join(f"out{i}\n" for i in range(1, 6))
    assert r.err == "".join(f"err{i}\n" for i in range(1, 6))
    t = kran("logs", "--tail", "2", "lg")
    assert (t.out + t.err).count("\n") == 2 and ("out5" in t.out or "err5" in t.err)
    ts = kran("logs", "-t", "lg").out.splitlines()
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z out1$", ts[0])
    assert kran("logs", "--until", "1h", "lg").out == ""  # everything is newer than an hour ago... until: before
    assert kran("logs", "--since", "1h", "lg").out.count("\n") == 5


def test_oom_killed(kran, busybox):
    cid = kran("run", "-d", "-m", "16m", "--memory-swap", "16m", "busybox", "tail", "/dev/zero").out.strip()
    assert kran("wait", cid, timeout=60).out == "137\n"
    assert kran("inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", cid).out == "true 137\n"


def test_restart_policy_after_crash(kran, busybox):
    kran("run", "-d", "--name", "crashy", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 1")
    deadline = time.time() + 30
    while time.time() < deadline:
        st = kran("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "crashy").out.split()
        if st == ["exited", "2"]:
            break
        time.sleep(0.1)
    assert st == ["exited", "2"]
    assert kran("logs", "crashy").out == "run\nrun\nrun\n"
    kran("run", "-d", "--name", "always", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2; exit 0")
    deadline = time.time() + 30
    while int(kran("inspect", "-f", "{{.RestartCount}}", "always").out) < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert int(kran("inspect", "-f", "{{.RestartCount}}", "always").out) >= 2
    kran("stop", "-t", "1", "always")
    time.sleep(0.5)
    assert kran("inspect", "-f", "{{.State.Status}}", "always").out == "exited\n"


def test_container_outlives_killed_cli(kran, busybox):
    """kill -9 of the CLI that started a container: the container, its monitor and its log go on."""
    import signal
    import subprocess

    p = kran.popen("run", "--name", "survivor", "busybox", "sh", "-c", "while true; do echo tick; sleep 0.1; done",
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while "tick" not in kran("logs", "survivor", check=False).out and time.time() < deadline:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    n1 = kran("logs", "survivor").out.count("tick")
    time.sleep(0.6)
    assert kran("inspect", "-f", "{{.State.Running}}", "survivor").out == "true\n"
    assert kran("logs", "survivor").out.count("tick") > n1


def test_foreground_rm_whose_cli_was_killed_is_still_removed(kran, busybox):
    """`run --rm` in the foreground removes the container itself; if that CLI is killed, the
    container's monitor does it when the container ends (docker's daemon-side --rm)."""
    p = kran.popen("run", "--rm", "--name", "orphan", "busybox", "sh", "-c", "echo up; sleep 1",
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"up\n"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.time() + 20
    while kran("ps", "-aq").out and time.time() < deadline:
        time.sleep(0.1)
    assert kran("ps", "-aq").out == ""


def test_detached_rm_removes_itself(kran, busybox):
    cid = kran("run", "-d", "--rm", "busybox", "sh", "-c", "sleep 0.3").out.strip()
    assert kran("ps", "-q", "--no-trunc").out.strip() == cid
    deadline = time.time() + 20
    while kran("ps", "-aq").out and time.time() < deadline:
        time.sleep(0.1)
    assert kran("ps", "-aq").out == ""
    # and a stopped --rm container goes too
    kran("run", "-d", "--rm", "--name", "gone", "busybox", "sleep", "300")
    kran("stop", "-t", "0", "gone")
    deadline = time.time() + 20
    while kran("ps", "-aq").out and time.time() < deadline:
        time.sleep(0.1)
    assert kran("ps", "-aq").out == ""


def test_system_df_and_prune_count_containers(kran, busybox):
    kran("run", "-d", "--name", "up1", "busybox", "sh", "-c", "head -c 100000 /dev/zero > /big; sleep 300")
    kran("run", "--name", "down1", "busybox", "sh", "-c", "head -c 50000 /dev/zero > /big")
    deadline = time.time() + 10
    while time.time() < deadline:
        rows = {line.split()[0]: line.split() for line in kran("system", "df").out.splitlines()[1:]}
        if rows["Containers"][3] != "0B":
            break
        time.sleep(0.1)
    assert rows["Containers"][1:3] == ["2", "1"]
    assert rows["Images"][1:3] == ["1", "1"]
    kran("network", "create", "unused-net")
    kran("network", "create", "used-net")
    kran("network", "connect", "used-net", "up1")
    kran("volume", "create", "named-vol")
    kran("run", "-v", "/anon", "busybox", "true")
    out = kran("system", "prune", "-f", "--volumes").out
    assert out.startswith("Deleted Containers:\n")
    assert "Deleted Networks:\nunused-net\n" in out
    assert "Deleted Volumes:\n" in out and "named-vol" not in out  # only anonymous volumes, like docker
    assert kran("ps", "-a", "--format", "{{.Names}}").out == "up1\n"
    assert [line.split()[1] for line in kran("network", "ls").out.splitlines()[1:]] == [
        "bridge", "host", "none", "used-net"]
    assert kran("volume", "ls", "-q").out == "named-vol\n"
    assert kran("images", "-q").out.strip() == busybox[7:19]
