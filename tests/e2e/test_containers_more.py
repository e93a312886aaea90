"""More of the container CLI: logs -f, start -a, attach without a tty, restart, events filters, update."""

from __future__ import annotations

import subprocess
import time


def test_logs_follow_ends_with_the_container(kran, busybox):
    kran("run", "-d", "--name", "fol", "busybox", "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done")
    t0 = time.time()
    r = kran("logs", "-f", "fol", timeout=30)
    assert r.out == "line1\nline2\nline3\n"
    assert time.time() - t0 < 15


def test_start_attach_gets_output_and_exit_code(kran, busybox):
    kran("create", "--name", "sa", "busybox", "sh", "-c", "echo hello-start; exit 5")
    r = kran("start", "-a", "sa", check=False)
    assert r.out == "hello-start\n" and r.returncode == 5
    # start -a again: the same container runs again from its own writable layer
    r = kran("start", "-a", "sa", check=False)
    assert r.out == "hello-start\n" and r.returncode == 5


def test_run_interactive_pipes_stdin(kran, busybox):
    r = kran("run", "-i", "--rm", "busybox", "sh", "-c", "tr a-z A-Z", input=b"shout\n")
    assert r.out == "SHOUT\n"
    assert kran("ps", "-aq").out == ""


def test_attach_without_tty_streams_output(kran, busybox):
    kran("run", "-d", "--name", "att", "busybox", "sh", "-c", "sleep 0.5; echo after-attach; exit 2")
    p = kran.popen("attach", "att", stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out, _err = p.communicate(timeout=30)
    assert out == b"after-attach\n"
    assert p.returncode == 2


def test_restart_command(kran, busybox):
    kran("run", "-d", "--name", "rs", "busybox", "sh", "-c", "echo boot; sleep 300")
    pid1 = kran("inspect", "-f", "{{.State.Pid}}", "rs").out
    assert kran("restart", "-t", "0", "rs").out == "rs\n"
    assert kran("inspect", "-f", "{{.State.Running}}", "rs").out == "true\n"
    assert kran("inspect", "-f", "{{.State.Pid}}", "rs").out != pid1
    deadline = time.time() + 10
    while kran("logs", "rs").out.count("boot") < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert kran("logs", "rs").out == "boot\nboot\n"


def test_events_filters_and_format(kran, busybox):
    kran("run", "-d", "--name", "ev1", "busybox", "true")
    kran("run", "-d", "--name", "ev2", "busybox", "true")
    kran("wait", "ev1")
    kran("wait", "ev2")
    out = kran("events", "--until", "0s", "--filter", "container=ev2", "--format", "{{.Action}} {{.Actor.Attributes.name}}").out
    assert out.splitlines()[:2] == ["create ev2", "start ev2"]
    assert "ev1" not in out
    starts = kran("events", "--until", "0s", "--filter", "event=start", "--format", "{{.Actor.Attributes.name}}").out
    assert starts.split() == ["ev1", "ev2"]


def test_wait_prints_each_exit_code(kran, busybox):
    a = kran("run", "-d", "busybox", "sh", "-c", "exit 1").out.strip()
    b = kran("run", "-d", "busybox", "sh", "-c", "sleep 0.3; exit 2").out.strip()
    assert kran("wait", a, b, check=False).out == "1\n2\n"
    r = kran("wait", "nosuch", check=False)
    assert r.returncode == 1 and "No such container: nosuch" in r.err


def test_network_none_has_loopback_up_and_host_sees_host(kran, busybox):
    out = kran("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").out.splitlines()
    assert len(out) == 1 and out[0].startswith("1: lo: <LOOPBACK,UP,LOWER_UP>")
    assert "inet 127.0.0.1/8" in kran("run", "--rm", "--network", "none", "busybox", "ip", "-o", "addr").out
    # the default is docker's bridge: lo plus eth0 with an address of kran0's subnet
    out = kran("run", "--rm", "busybox", "ip", "-o", "-4", "addr").out
    assert "inet 127.0.0.1/8" in out and " eth0 " in out
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    seen = kran("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link").out
    assert len(seen.splitlines()) == len(host_links.splitlines())
    # the namespace is pinned while the container exists and gone with it
    cid = kran("run", "-d", "--name", "ns1", "busybox", "sleep", "300").out.strip()
    from pathlib import Path

    def pinned() -> list[str]:
        return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if f"/netns/{cid}" in line]

    assert len(pinned()) == 1
    kran("rm", "-f", "ns1")
    assert pinned() == []
