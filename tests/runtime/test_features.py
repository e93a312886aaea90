"""More runtime behaviour: hooks, console socket, fds, user namespaces, exec options, CLI outputs.

Tests taking ``rt`` run against kran-runtime and runc; ``kran`` ones cover kran-only behaviour
(runc 1.1 has no ``features``; kran clamps rlimits where runc fails).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import REPO, cgroup_dirs

pytestmark = pytest.mark.privileged


def test_spec_matches_runc_spec(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for rootless in (False, True):
        k, r = tmp_path / f"k{rootless}", tmp_path / f"r{rootless}"
        k.mkdir()
        r.mkdir()
        extra = ["--rootless"] if rootless else []
        subprocess.run(
            [sys.executable, "-m", "kran.runtime.cli", "spec", "-b", str(k), *extra], check=True, env=env
        )
        subprocess.run(["runc", "spec", "-b", str(r), *extra], check=True)
        assert json.loads((k / "config.json").read_text()) == json.loads((r / "config.json").read_text())
        p = subprocess.run(
            [sys.executable, "-m", "kran.runtime.cli", "spec", "-b", str(k)],
            env=env,
            capture_output=True,
            text=True,
        )
        assert p.returncode != 0 and "exists" in p.stderr


def test_features(kran):
    f = json.loads(kran("features").stdout)
    assert f["ociVersionMin"] == "1.0.0"
    assert "SCMP_ACT_ERRNO" in f["linux"]["seccomp"]["actions"]
    assert "CAP_SYS_ADMIN" in f["linux"]["capabilities"]
    assert "user" in f["linux"]["namespaces"]


def test_list_formats(rt, bundle):
    cid = rt.new_id()
    bundle.set(cid, ["sleep", "100"])
    rt("create", "--bundle", str(bundle.path), cid)
    table = rt("list").stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert table[1].split()[:4] == [cid, str(rt.state(cid)["pid"]), "created", str(bundle.path)]
    items = json.loads(rt("list", "--format", "json").stdout)
    assert [(i["id"], i["status"]) for i in items] == [(cid, "created")]


def test_hooks_get_the_state_on_stdin(rt, bundle, tmp_path):
    cid = rt.new_id()
    c = bundle.set(cid, ["true"])
    c["hooks"] = {
        phase: [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {tmp_path}/{phase}.json"]}]
        for phase in ("prestart", "createRuntime", "poststart", "poststop")
    }
    bundle.write(c)
    rt("run", "--bundle", str(bundle.path), cid)
    for phase in ("prestart", "createRuntime", "poststart", "poststop"):
        st = json.loads((tmp_path / f"{phase}.json").read_text())
        assert st["id"] == cid and st["bundle"] == str(bundle.path), phase
    assert json.loads((tmp_path / "prestart.json").read_text())["pid"] > 0


def test_failing_prestart_hook_fails_create_and_cleans_up(rt, bundle):
    cid = rt.new_id()
    c = bundle.set(cid, ["true"])
    c["hooks"] = {"prestart": [{"path": "/bin/false"}]}
    bundle.write(c)
    p = rt("create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode != 0
    assert rt("state", cid, check=False).returncode != 0
    assert cgroup_dirs(cid) == []


def _console_server(path: str, result: dict) -> socket.socket:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def accept() -> None:
        conn, _ = srv.accept()
        with conn:
            msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
            result["name"], result["fd"] = msg, fds[0]

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    result["thread"] = t
    return srv


def _read_all(fd: int, timeout: float = 10) -> bytes:
    import select

    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the slave side is closed
                break
            if not chunk:
                break
            out += chunk
    return out


def test_console_socket_receives_the_pty_master(rt, bundle, tmp_path):
    cid = rt.new_id()
    bundle.set(cid, ["sh", "-c", "tty; echo hello-from-tty"], terminal=True)
    result: dict = {}
    sock = str(tmp_path / "console.sock")
    srv = _console_server(sock, result)
    try:
        rt("create", "--bundle", str(bundle.path), "--console-socket", sock, cid)
        result["thread"].join(5)
        assert "fd" in result
        rt("start", cid)
        out = _read_all(result["fd"]).decode()
        assert "/dev/pts/0" in out
        assert "hello-from-tty" in out
    finally:
        srv.close()
        if "fd" in result:
            os.close(result["fd"])


def test_create_requires_console_socket_for_terminal(rt, bundle):
    cid = rt.new_id()
    bundle.set(cid, ["true"], terminal=True)
    p = rt("create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode != 0 and "console socket" in p.stderr


def test_preserve_fds_and_nothing_else_leaks(rt, bundle, tmp_path):
    cid = rt.new_id()
    bundle.set(cid, ["sh", "-c", "cat <&3; ls /proc/self/fd | wc -l"])
    (tmp_path / "fd3").write_text("via-fd-3\n")
    cmd = " ".join(f"'{a}'" for a in rt.cmd("run", "--preserve-fds", "1", "--bundle", str(bundle.path), cid))
    p = subprocess.run(
        ["sh", "-c", f"exec 3<{tmp_path}/fd3; exec {cmd}"],
        capture_output=True,
        text=True,
        env=rt.env,
        timeout=60,
    )
    lines = p.stdout.splitlines()
    assert lines[0] == "via-fd-3", p.stderr
    # 0 1 2 3 and the directory ls is reading
    assert lines[1] == "5"


def test_no_fd_leaks_without_preserve(rt, bundle):
    p = _run(rt, bundle, ["ls", "/proc/self/fd"])
    assert sorted(p.stdout.split()) == ["0", "1", "2", "3"], p.stdout


@pytest.fixture
def open_bundle(tmp_path):
    """A bundle whose path a user namespace's root (an unprivileged host uid) can traverse:
    pytest's tmp dirs are 0700."""
    import shutil
    import tempfile

    from .conftest import Bundle, _spec, make_rootfs

    d = Path(tempfile.mkdtemp(prefix="kt-userns-", dir="/tmp"))
    try:
        d.chmod(0o755)
        make_rootfs(d / "rootfs")
        _spec(d)
        yield Bundle(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_user_namespace(rt, open_bundle):
    bundle = open_bundle
    cid = rt.new_id()
    c = bundle.set(cid, ["sh", "-c", "id -u; cat /proc/self/uid_map; echo x > /dev/null && echo ok"])
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    bundle.write(c)
    p = rt("run", "--bundle", str(bundle.path), cid)
    lines = p.stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "200000", "65536"]
    assert lines[2] == "ok"


def test_exec_in_user_namespace_container(rt, open_bundle):
    bundle = open_bundle
    cid = rt.new_id()
    c = bundle.set(cid, ["sleep", "100"])
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    bundle.write(c)
    rt("run", "-d", "--bundle", str(bundle.path), cid)
    p = rt("exec", cid, "sh", "-c", "id -u; cat /proc/self/uid_map; ps -o pid,args | grep -c 'sleep 100'")
    lines = p.stdout.split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "300000", "65536"]


def test_join_namespace_by_path(rt, bundle):
    """A namespace with a path is joined, not created (the engine hands over a prepared netns)."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        ns = f"/proc/{holder.pid}/ns/net"
        for _ in range(100):
            if os.readlink(ns) != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.01)
        cid = rt.new_id()
        c = bundle.set(cid, ["readlink", "/proc/self/ns/net"])
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
        c["linux"]["namespaces"].append({"type": "network", "path": ns})
        bundle.write(c)
        p = rt("run", "--bundle", str(bundle.path), cid)
        assert p.stdout.strip() == os.readlink(ns)
    finally:
        holder.kill()
        holder.wait()


def test_exec_process_file_detach_and_pid_file(rt, bundle, tmp_path):
    cid = rt.new_id()
    bundle.set(cid, ["sleep", "100"])
    rt("run", "-d", "--bundle", str(bundle.path), cid)
    proc = dict(
        bundle.config["process"],
        args=["sh", "-c", "echo $MARK > /tmp/mark; sleep 100"],
        env=["MARK=m1", "PATH=/bin"],
    )
    (tmp_path / "process.json").write_text(json.dumps(proc))
    rt(
        "exec",
        "--process",
        str(tmp_path / "process.json"),
        "-d",
        "--pid-file",
        str(tmp_path / "exec.pid"),
        cid,
    )
    pid = int((tmp_path / "exec.pid").read_text())
    assert os.path.exists(f"/proc/{pid}")
    for _ in range(100):
        p = rt("exec", cid, "cat", "/tmp/mark", check=False)
        if p.stdout.strip() == "m1":
            break
        time.sleep(0.05)
    assert p.stdout.strip() == "m1"
    # kill --all reaches the exec'd process too
    rt("kill", "--all", cid, "KILL")
    assert rt.wait_status(cid, "stopped")["status"] == "stopped"
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.05)


def test_exec_in_stopped_container_fails(rt, bundle):
    cid = rt.new_id()
    bundle.set(cid, ["true"])
    rt("run", "-d", "--bundle", str(bundle.path), cid)
    rt.wait_status(cid, "stopped")
    p = rt("exec", cid, "true", check=False)
    assert p.returncode != 0


def test_rlimits_applied(rt, bundle):
    p = _run(
        rt,
        bundle,
        ["sh", "-c", "ulimit -n; ulimit -Hn"],
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000}],
    )
    assert p.stdout.split() == ["512", "1000"]


def test_rlimit_above_hard_limit_is_clamped_with_a_warning(kran, bundle):
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    want = hard * 4
    p = _run(
        kran,
        bundle,
        ["sh", "-c", "ulimit -Hn"],
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": want, "hard": want}],
    )
    if p.returncode == 0 and p.stdout.strip() == str(want):
        pytest.fail("this host can raise the hard limit (CAP_SYS_RESOURCE): nothing to clamp")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(hard)
    assert "RLIMIT_NOFILE" in p.stderr and "clamped" in p.stderr


def test_sysctl(rt, bundle):
    cid = rt.new_id()
    c = bundle.set(cid, ["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward"])
    c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    bundle.write(c)
    p = rt("run", "--bundle", str(bundle.path), cid)
    assert p.stdout.split() == ["1"]


def test_domainname(kran, bundle):  # runtime-spec 1.1 (runc 1.1 ignores it)
    cid = kran.new_id()
    c = bundle.set(cid, ["cat", "/proc/sys/kernel/domainname"])
    c["domainname"] = "kt.example"
    bundle.write(c)
    assert kran("run", "--bundle", str(bundle.path), cid).stdout.split() == ["kt.example"]


def test_bind_mounts_and_options(rt, bundle, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("host-file\n")
    cid = rt.new_id()
    c = bundle.set(cid, ["sh", "-c", "cat /data/f; echo x > /data/g || echo ro-ok; cat /deep/new/dir/f"])
    c["mounts"] += [
        {
            "destination": "/data",
            "type": "bind",
            "source": str(data),
            "options": ["rbind", "ro", "nosuid", "nodev"],
        },
        {
            "destination": "/deep/new/dir",
            "type": "bind",
            "source": str(data),
            "options": ["bind", "rprivate"],
        },
    ]
    bundle.write(c)
    p = rt("run", "--bundle", str(bundle.path), cid)
    assert p.stdout.split() == ["host-file", "ro-ok", "host-file"]


def test_mount_target_symlink_cannot_escape_rootfs(rt, bundle, tmp_path):
    """A symlink in the image pointing at a host path must resolve inside the rootfs."""
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), bundle.rootfs / "evil")
    cid = rt.new_id()
    c = bundle.set(cid, ["true"])
    c["mounts"].append({"destination": "/evil/x", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]})
    bundle.write(c)
    rt("run", "--bundle", str(bundle.path), cid, check=False)
    assert list(outside.iterdir()) == []
    with open("/proc/self/mountinfo") as f:
        assert str(outside) not in f.read()


def test_device_from_spec_is_created(rt, bundle):
    cid = rt.new_id()
    c = bundle.set(cid, ["sh", "-c", "stat -c '%t:%T %F' /dev/kmsgx; head -c 4 /dev/kmsgx | wc -c"])
    c["linux"]["devices"] = [
        {"path": "/dev/kmsgx", "type": "c", "major": 1, "minor": 5, "fileMode": 438, "uid": 0, "gid": 0}
    ]
    c["linux"]["resources"]["devices"].append(
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"}
    )
    bundle.write(c)
    p = rt("run", "--bundle", str(bundle.path), cid)
    assert p.stdout.split() == ["1:5", "character", "special", "file", "4"]


def test_run_forwards_signals(rt, bundle):
    cid = rt.new_id()
    bundle.set(
        cid, ["sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done"]
    )
    p = subprocess.Popen(
        rt.cmd("run", "--bundle", str(bundle.path), cid), stdout=subprocess.PIPE, text=True, env=rt.env
    )
    try:
        assert p.stdout.readline().strip() == "ready"
        p.terminate()
        out, _ = p.communicate(timeout=20)
        assert "got-term" in out
        assert p.returncode == 7
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _run(rt, bundle, args, **process):
    cid = rt.new_id()
    bundle.set(cid, args, **process)
    return rt("run", "--bundle", str(bundle.path), cid, check=False)


def test_exec_with_tty_over_console_socket(rt, bundle, tmp_path):
    cid = rt.new_id()
    bundle.set(cid, ["sleep", "100"])
    rt("run", "-d", "--bundle", str(bundle.path), cid)
    result: dict = {}
    sock = str(tmp_path / "exec.sock")
    srv = _console_server(sock, result)
    try:
        rt("exec", "-t", "-d", "--console-socket", sock, cid, "sh", "-c", "tty; stty size; echo exec-tty-ok")
        result["thread"].join(5)
        out = _read_all(result["fd"]).decode()
        assert "/dev/pts/" in out and "exec-tty-ok" in out, out
    finally:
        srv.close()
        if "fd" in result:
            os.close(result["fd"])


def test_oom_score_adj_and_console_size(kran, bundle, tmp_path):
    cid = kran.new_id()
    bundle.set(
        cid,
        ["sh", "-c", "cat /proc/self/oom_score_adj; stty size"],
        terminal=True,
        oomScoreAdj=123,
        consoleSize={"height": 33, "width": 101},
    )
    result: dict = {}
    sock = str(tmp_path / "c.sock")
    srv = _console_server(sock, result)
    try:
        kran("create", "--bundle", str(bundle.path), "--console-socket", sock, cid)
        result["thread"].join(5)
        kran("start", cid)
        out = _read_all(result["fd"]).decode().split()
        assert out == ["123", "33", "101"], out
    finally:
        srv.close()
        if "fd" in result:
            os.close(result["fd"])


def test_run_with_terminal_relays_the_pty(kran, bundle):
    # kran-only: runc insists on a controlling terminal (/dev/tty) for this, pytest has none.
    rt = kran
    cid = rt.new_id()
    bundle.set(cid, ["sh", "-c", "tty; read x; echo got-$x; exit 4"], terminal=True)
    p = subprocess.run(
        rt.cmd("run", "--bundle", str(bundle.path), cid),
        input="hello\n",
        capture_output=True,
        text=True,
        env=rt.env,
        timeout=30,
    )
    assert p.returncode == 4, p.stderr
    assert "/dev/pts/0" in p.stdout
    assert "got-hello" in p.stdout


def test_container_side_hooks(rt, bundle, tmp_path):
    """createContainer runs in the container's namespaces before pivot_root (host paths resolve);
    startContainer runs inside the container right before the process."""
    cid = rt.new_id()
    c = bundle.set(cid, ["sh", "-c", "cat /tmp/start.json"])
    c["hooks"] = {
        "createContainer": [
            {"path": "/bin/sh", "args": ["sh", "-c", f"readlink /proc/self/ns/uts > {tmp_path}/cc-uts"]}
        ],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/start.json"]}],
    }
    bundle.write(c)
    p = rt("run", "--bundle", str(bundle.path), cid)
    assert json.loads(p.stdout)["id"] == cid
    assert (tmp_path / "cc-uts").read_text().strip() != os.readlink("/proc/self/ns/uts")


def test_no_pivot(rt, bundle):
    p = _run_flags(rt, bundle, ["--no-pivot"], ["sh", "-c", "ls /; cat /proc/self/mountinfo | wc -l"])
    assert p.returncode == 0, p.stderr
    assert "bin" in p.stdout.split()


def _run_flags(rt, bundle, flags, args, **process):
    cid = rt.new_id()
    bundle.set(cid, args, **process)
    return rt("run", *flags, "--bundle", str(bundle.path), cid, check=False)


def test_exec_of_a_non_executable_file_reports_the_error(rt, bundle):
    cid = rt.new_id()
    bundle.set(cid, ["sleep", "100"])
    (bundle.rootfs / "notexec").write_text("#!/bin/nonexistent\n")
    (bundle.rootfs / "notexec").chmod(0o755)
    rt("run", "-d", "--bundle", str(bundle.path), cid)
    p = rt("exec", cid, "/notexec", check=False)
    assert p.returncode != 0
    assert "no such file or directory" in p.stderr.lower()
