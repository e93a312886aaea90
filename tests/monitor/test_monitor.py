"""The per-container monitor against runc: exit codes, logs, attach, tty, restart, detachment."""

from __future__ import annotations

import calendar
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kran.errors import CommandNotFound, KranError
from kran.monitor import client, proto

from .conftest import alive, wait_for

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parents[2]


def collect(att: client.Attachment, timeout: float = 15) -> tuple[bytes, bytes, bytes | None]:
    """Read frames until the exit frame (or EOF): (stdout, stderr, exit payload)."""
    out, err = b"", b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([att], [], [], deadline - time.monotonic())
        if not r:
            break
        f = att.recv()
        if f is None:
            break
        kind, payload = f
        if kind == proto.STDOUT:
            out += payload
        elif kind == proto.STDERR:
            err += payload
        elif kind == proto.EXIT:
            return out, err, payload
    return out, err, None


def read_until(att: client.Attachment, needle: bytes, timeout: float = 10) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        r, _, _ = select.select([att], [], [], deadline - time.monotonic())
        if r:
            f = att.recv()
            assert f is not None, buf
            if f[0] in (proto.STDOUT, proto.STDERR):
                buf += f[1]
    assert needle in buf, buf
    return buf


def assert_gone(c) -> None:
    """Nothing of the container stays: monitor exited, attach.sock removed, runc forgot it."""
    c.wait_monitor_gone()
    assert not (c.dir / "attach.sock").exists()
    assert c.id not in c.runc("list", "-q").stdout


def test_exit_code_and_streams(env):
    c = env.container(["sh", "-c", "echo out; echo err >&2; printf partial; exit 3"])
    r = c.start()
    assert r.pid > 0 and r.monitor_pid > 0
    st = c.wait_exited()
    assert st["exit_code"] == 3
    assert st["oom_killed"] is False and st["restart_count"] == 0 and st["error"] == ""
    assert st["started_at"] <= st["finished_at"] and st["finished_at"].endswith("Z")
    logs = c.logs()
    assert [(s, d) for s, d, _ in logs] == [
        ("stdout", b"out\n"),
        ("stderr", b"err\n"),
        ("stdout", b"partial"),
    ]
    # docker's json-file format, line by line
    raw = [json.loads(ln) for ln in c.log.read_text().splitlines()]
    assert raw[0]["log"] == "out\n" and raw[0]["stream"] == "stdout"
    assert len(raw[0]["time"]) == len("2024-01-01T00:00:00.123456789Z")
    assert_gone(c)


def test_exit_zero_and_state_while_running(env):
    c = env.container(["sh", "-c", "sleep 0.5"])
    r = c.start()
    st = c.state()
    assert st["status"] == "running" and st["pid"] == r.pid and st["exit_code"] is None
    assert st["monitor_pid"] == r.monitor_pid and alive(r.monitor_pid)
    assert (c.dir / "attach.sock").exists()
    assert c.wait_exited()["exit_code"] == 0
    assert_gone(c)


def test_command_not_found(env):
    c = env.container(["nope"])
    with pytest.raises(CommandNotFound) as e:
        c.start()
    assert 'exec: "nope": executable file not found in $PATH' in str(e.value)
    assert "level=error" not in str(e.value) and "time=" not in str(e.value)
    assert e.value.exit_code == 127
    st = c.state()
    assert st["status"] == "exited" and st["exit_code"] == 127
    assert_gone(c)


def test_other_start_failure_is_a_kran_error(env):
    c = env.container(["true"])
    spec = json.loads((Path(c.config["bundle"]) / "config.json").read_text())
    spec["root"]["path"] = "missing-rootfs"
    (Path(c.config["bundle"]) / "config.json").write_text(json.dumps(spec))
    with pytest.raises(KranError) as e:
        c.start()
    assert type(e.value) is KranError and e.value.exit_code == 125
    assert_gone(c)


def test_sigkill_gives_137(env):
    c = env.container(["sleep", "100"])
    c.start()
    c.runc("kill", c.id, "KILL")
    st = c.wait_exited()
    assert st["exit_code"] == 137 and st["oom_killed"] is False
    assert_gone(c)


def test_oom_kill_is_detected(env):
    limit = 8 << 20
    # `tail` keeps its last line in memory: an endless line grows until the cgroup OOM-kills it.
    c = env.container(
        ["sh", "-c", "cat /dev/zero | tail -n 1"],
        resources={"memory": {"limit": limit, "swap": limit}},
    )
    (Path(c.config["bundle"]) / "rootfs" / "bin" / "tail").symlink_to("busybox")
    c.start()
    st = c.wait_exited(timeout=30)
    assert st["oom_killed"] is True, st
    assert st["exit_code"] == 137, st
    assert_gone(c)


def test_long_and_partial_lines_split_like_docker(env):
    c = env.container(
        ["sh", "-c", "dd if=/dev/zero bs=1000 count=40 2>/dev/null | tr '\\0' a; echo; printf end"]
    )
    c.start()
    c.wait_exited()
    data = [d for _, d, _ in c.logs()]
    assert [len(d) for d in data] == [16384, 16384, 40000 - 2 * 16384 + 1, 3]
    assert data[2].endswith(b"a\n") and data[3] == b"end"


def test_rotation_keeps_max_file_and_reads_in_order(env):
    c = env.container(["seq", "1", "300"], log_max_size=1000, log_max_file=3)
    c.start()
    c.wait_exited()
    log = c.log
    files = sorted(p.name for p in log.parent.iterdir() if p.name.startswith(log.name))
    assert files == ["log.json", "log.json.1", "log.json.2"]
    for name in files:
        assert 0 < (log.parent / name).stat().st_size <= 1000
    lines = [int(d) for _, d, _ in c.logs()]
    assert lines[-1] == 300
    assert lines == list(range(lines[0], 301))  # contiguous: nothing lost or reordered
    assert len(lines) > 20
    assert [int(d) for _, d, _ in c.logs(tail=5)] == [296, 297, 298, 299, 300]


def test_read_logs_since_until_timestamps(env):
    c = env.container(["sh", "-c", "echo one; sleep 0.5; echo two"])
    c.start()
    c.wait_exited()
    (_, _, t1), (_, _, t2) = c.logs()
    t2_unix = calendar.timegm(time.strptime(t2[:19], "%Y-%m-%dT%H:%M:%S")) + float("0." + t2[20:29])
    assert [d for _, d, _ in c.logs(since=t2_unix - 0.001)] == [b"two\n"]
    assert [d for _, d, _ in c.logs(until=t2_unix - 0.1)] == [b"one\n"]
    assert c.logs(timestamps=True)[0][1] == t1.encode() + b" one\n"
    assert c.logs(tail=0) == []


def test_follow_returns_new_lines_and_ends_at_exit(env):
    c = env.container(["sh", "-c", "echo a; sleep 1; echo b; sleep 1; echo c"])
    c.start()
    t0 = time.monotonic()
    got = []
    for _, d, _ in client.read_logs(str(c.log), follow=True):
        got.append((d, time.monotonic() - t0))
    assert [d for d, _ in got] == [b"a\n", b"b\n", b"c\n"]
    assert got[0][1] < 0.9 and got[1][1] >= 0.9  # "b" came while following, not at the end
    assert c.state()["status"] == "exited"


def test_follow_across_rotation(env):
    c = env.container(
        ["sh", "-c", "for i in $(seq 1 60); do echo line$i; sleep 0.02; done"],
        log_max_size=1000,
        log_max_file=5,
    )
    c.start()
    got = [d for _, d, _ in client.read_logs(str(c.log), follow=True)]
    assert got == [f"line{i}\n".encode() for i in range(1, 61)]
    assert (c.log.parent / "log.json.1").exists()


def test_tty_attach_resize_and_exit_code(env):
    c = env.container(["sh"], tty=True, stdin=True)
    c.start()
    with client.attach(str(c.dir)) as att:
        att.resize(30, 100)
        att.send_stdin(b"stty size\n")
        read_until(att, b"30 100")
        att.send_stdin(b"echo hi; tty; exit 5\n")
        out, err, code = collect(att)
    assert b"hi" in out and b"/dev/pts/0" in out
    assert err == b""
    assert code == b"5"
    assert c.wait_exited()["exit_code"] == 5
    assert {s for s, _, _ in c.logs()} == {"stdout"}
    assert any(b"/dev/pts/0" in d for _, d, _ in c.logs())
    assert_gone(c)


def test_stdin_pipe_cat_and_close_stdin(env):
    c = env.container(["cat"], stdin=True)
    c.start()
    with client.attach(str(c.dir)) as att:
        att.send_stdin(b"hello\n")
        assert read_until(att, b"hello\n") == b"hello\n"
        att.send_stdin(b"world")
        att.close_stdin()
        out, _, code = collect(att)
    assert out == b"world" and code == b"0"
    assert [(s, d) for s, d, _ in c.logs()] == [("stdout", b"hello\n"), ("stdout", b"world")]
    assert_gone(c)


def test_without_stdin_the_container_reads_dev_null(env):
    c = env.container(["cat"])
    c.start()
    assert c.wait_exited()["exit_code"] == 0


def test_several_clients_and_a_slow_one(env):
    line = "x" * 999
    c = env.container(["sh", "-c", f"sleep 1; echo start; yes {line} | head -c 8000000; echo done >&2"])
    c.start()
    slow = client.attach(str(c.dir))  # never reads: must not block the container
    try:
        with client.attach(str(c.dir)) as a, client.attach(str(c.dir)) as b:
            out_a, err_a, code_a = collect(a, timeout=60)
            out_b, err_b, code_b = collect(b, timeout=60)
        # both got the output (frames beyond a client's 4 MiB backlog are dropped, whole), then the exit
        for out, err, code in ((out_a, err_a, code_a), (out_b, err_b, code_b)):
            assert out.startswith(b"start\n" + line.encode()) and len(out) > 1_000_000
            assert set(out[6:]) <= set(b"x\n")
            assert err == b"done\n" and code == b"0"
        assert c.wait_exited()["exit_code"] == 0
    finally:
        slow.close()
    # the log has everything, whatever the clients did
    assert sum(len(d) for s, d, _ in c.logs() if s == "stdout") == 6 + 8_000_000
    assert_gone(c)


def test_restart_on_failure_max_retries(env):
    c = env.container(["sh", "-c", "echo run; exit 3"], restart="on-failure", max_retries=2)
    c.start()
    seen = set()

    def done():
        st = c.state()
        seen.add(st["status"])
        return st["status"] == "exited" and not alive(st["monitor_pid"]) and st

    st = wait_for(done, timeout=20, interval=0.005)
    assert st and st["restart_count"] == 2 and st["exit_code"] == 3
    assert [d for _, d, _ in c.logs()] == [b"run\n"] * 3
    assert "restarting" in seen
    assert_gone(c)


def test_failed_restart_is_recorded(env):
    # the first run removes its own shell: the restart's `create` fails like `docker start` would
    c = env.container(["sh", "-c", "rm /bin/sh; exit 1"], restart="on-failure")
    c.start()
    st = wait_for(lambda: (s := c.state())["status"] == "exited" and not alive(s["monitor_pid"]) and s, 15)
    assert st, c.state()
    assert st["restart_count"] == 1 and st["exit_code"] == 127
    assert 'exec: "sh": executable file not found' in st["error"]
    assert_gone(c)


def test_long_container_dir_path(env):
    # sun_path holds 108 bytes; the engine's dirs are near that (…/containers/<64 hex>/attach.sock)
    c = env.container(["sh"], tty=True, stdin=True, dirname="d" * 100)
    assert len(str(c.dir / "attach.sock")) > 108
    c.start()
    with client.attach(str(c.dir)) as att:
        att.send_stdin(b"exit 4\n")
        _, _, code = collect(att)
    assert code == b"4"
    assert_gone(c)


def test_on_failure_does_not_restart_on_success(env):
    c = env.container(["true"], restart="on-failure")
    c.start()
    st = c.wait_exited()
    assert st["restart_count"] == 0 and st["exit_code"] == 0
    assert_gone(c)


def test_always_restarts_until_stop_requested(env):
    c = env.container(["sleep", "100"], restart="always")
    first = c.start()
    c.runc("kill", c.id, "KILL")
    st = wait_for(lambda: (s := c.state())["status"] == "running" and s["pid"] != first.pid and s, 10)
    assert st and st["restart_count"] == 1
    with client.attach(str(c.dir)) as att:
        att.request_stop()
        time.sleep(0.2)  # the frame is read before the kill below
        c.runc("kill", c.id, "KILL")
        _, _, code = collect(att)
    assert code == b"137"
    st = c.wait_exited()
    assert st["restart_count"] == 1 and st["exit_code"] == 137
    assert_gone(c)


def test_stop_request_cancels_a_pending_restart(env):
    c = env.container(["sh", "-c", "exit 1"], restart="always")
    t0 = time.monotonic()
    c.start()
    # backoff 0.1, 0.2, 0.4 s...: the third restart is decided after >= 0.3 s of waiting
    assert wait_for(lambda: c.state()["restart_count"] >= 3, 10)
    assert time.monotonic() - t0 >= 0.3
    st = wait_for(lambda: (s := c.state())["status"] == "restarting" and s, 10, 0.005)
    assert st
    client.request_stop(str(c.dir))
    st = c.wait_exited()
    assert st["exit_code"] == 1 and st["restart_count"] >= 3
    time.sleep(0.3)
    assert c.state()["restart_count"] == st["restart_count"]
    assert_gone(c)


def test_unless_stopped_honours_the_stop_file(env):
    c = env.container(["sleep", "100"], restart="unless-stopped")
    c.start()
    client.request_stop(str(c.dir))
    c.runc("kill", c.id, "KILL")
    st = c.wait_exited()
    assert st["restart_count"] == 0
    assert_gone(c)


CHILD = """
import json, os, signal, sys
sys.path.insert(0, {repo!r})
from kran.monitor import client
marker = os.open({marker!r}, os.O_RDONLY)  # an fd the monitor must not inherit
os.set_inheritable(marker, True)
r = client.start({cdir!r})
print(json.dumps({{"pid": r.pid, "monitor_pid": r.monitor_pid}}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_survives_the_cli_being_killed(env, tmp_path):
    c = env.container(["sh", "-c", "while true; do echo tick; sleep 0.1; done"])
    marker = tmp_path / "cli-marker"
    marker.write_text("x")
    code = CHILD.format(repo=str(REPO), marker=str(marker), cdir=str(c.dir))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert p.returncode == -signal.SIGKILL, p.stderr
    r = json.loads(p.stdout)
    env.monitor_pids.append(r["monitor_pid"])
    time.sleep(0.5)
    assert alive(r["monitor_pid"]) and alive(r["pid"])
    assert c.state()["status"] == "running"
    n = len(c.logs())
    assert wait_for(lambda: len(c.logs()) > n + 2, 5)
    fds = [
        os.readlink(f"/proc/{r['monitor_pid']}/fd/{fd}") for fd in os.listdir(f"/proc/{r['monitor_pid']}/fd")
    ]
    assert str(marker) not in fds
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{r['monitor_pid']}/fd/{fd}") == "/dev/null"
    with open(f"/proc/{r['monitor_pid']}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    assert fields[3] != str(os.getpid())  # not our child: reparented away from the dead CLI
    c.runc("kill", c.id, "KILL")
    assert c.wait_exited()["exit_code"] == 137
    assert_gone(c)


def test_sigterm_to_the_monitor_is_ignored(env):
    c = env.container(["sleep", "100"])
    r = c.start()
    os.kill(r.monitor_pid, signal.SIGTERM)
    time.sleep(0.3)
    assert alive(r.monitor_pid) and c.state()["status"] == "running"
    c.runc("kill", c.id, "KILL")
    assert c.wait_exited()["exit_code"] == 137
    assert_gone(c)


def test_monitor_rss_is_small(env, record_property):
    c = env.container(["sleep", "100"])
    r = c.start()
    time.sleep(0.5)
    with open(f"/proc/{r.monitor_pid}/status") as f:
        rss_kib = int(next(ln for ln in f if ln.startswith("VmRSS:")).split()[1])
    record_property("monitor_rss_kib", rss_kib)
    print(f"monitor VmRSS: {rss_kib} KiB")
    assert rss_kib < 16 * 1024
    c.runc("kill", c.id, "KILL")
    c.wait_exited()
    assert_gone(c)


def test_monitor_failure_is_reported(env):
    c = env.container(["true"])
    (c.dir / "monitor.json").unlink()
    with pytest.raises(KranError, match="monitor: FileNotFoundError"):
        c.start()
