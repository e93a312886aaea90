"""`kran exec -it` through a real pseudo-terminal (pexpect): window resizes reach the exec's terminal,
the detach keys leave it running, and an exec that cannot start exits 126."""

from __future__ import annotations

import sys
import time

import pexpect
import pytest


@pytest.fixture(params=["kran", "runc"])
def runtime(request, kran):
    kran.env["KRAN_RUNTIME"] = request.param
    return request.param


def _spawn(kran, *args: str) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, ["-m", "kran", "--root", str(kran.root), *args], env=kran.env,
                         timeout=20, dimensions=(30, 100))


def test_exec_it_follows_window_resizes(kran, busybox, runtime):
    kran("run", "-d", "--name", "rs", "busybox", "sleep", "300")
    child = _spawn(kran, "exec", "-it", "rs", "sh")
    child.expect(r"# ")
    child.sendline("stty size")
    child.expect(r"30 100")
    child.setwinsize(45, 132)  # SIGWINCH to kran, which resizes the exec's terminal
    time.sleep(0.3)
    child.sendline("stty size")
    child.expect(r"45 132")
    child.sendline("exit 4")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 4


def test_exec_it_detach_keys(kran, busybox, runtime):
    kran("run", "-d", "--name", "dk", "busybox", "sleep", "300")
    child = _spawn(kran, "exec", "-it", "--detach-keys", "ctrl-x", "dk", "sh", "-c", "echo ready; exec sleep 200")
    child.expect("ready")
    child.send("\x18")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "sleep 200" in kran("exec", "dk", "ps", "-o", "args").out
    r = kran("exec", "-it", "--detach-keys", "ctrl-ü", "dk", "true", check=False)
    assert r.returncode == 125 and "Invalid detach keys" in r.err


def test_exec_it_of_a_missing_command(kran, busybox, runtime):
    kran("run", "-d", "--name", "mc", "busybox", "sleep", "300")
    child = _spawn(kran, "exec", "-it", "mc", "no-such-command")
    child.expect(r'exec: "no-such-command": executable file not found in \$PATH')
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 126
