"""Docker's exit codes for `rm -f` / `rmi -f` of a name that does not exist (the error is printed,
the exit code is 0), and docker 28's `stop`/`restart --timeout` (the old `--time` still accepted)."""

from __future__ import annotations


def test_rm_and_rmi_force_of_missing_names_exit_0(kran, busybox):
    kran("create", "--name", "here", "busybox", "true")
    p = kran("rm", "-f", "nosuch", "here", check=False)
    assert p.returncode == 0 and "No such container: nosuch" in p.err and p.out.split() == ["here"]
    assert kran("rm", "nosuch", check=False).returncode == 1
    p = kran("rmi", "-f", "nosuch", check=False)
    assert p.returncode == 0 and "No such image: nosuch:latest" in p.err
    assert kran("rmi", "nosuch", check=False).returncode == 1


def test_stop_and_restart_timeout(kran, busybox):
    kran("run", "-d", "--network", "none", "--name", "tt", "busybox", "sleep", "300")
    assert kran("restart", "--timeout", "0", "tt").out.strip() == "tt"
    assert kran("stop", "--timeout", "0", "tt").out.strip() == "tt"
    kran("start", "tt")
    assert kran("stop", "--time", "0", "tt").out.strip() == "tt"  # the name before docker 28
    assert "--timeout" in kran("stop", "--help").out and "--time " not in kran("stop", "--help").out
    assert kran("inspect", "-f", "{{.State.ExitCode}}", "tt").out.strip() == "137"
