"""`kran run -it` through a real pseudo-terminal (pexpect), as a user at a shell would."""

from __future__ import annotations

import sys

import pexpect
import pytest


@pytest.fixture(params=["kran", "runc"])
def runtime(request, kran):
    kran.env["KRAN_RUNTIME"] = request.param
    return request.param


def _spawn(kran, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-m", "kran", "--root", str(kran.root), *args], env=kran.env,
                          timeout=20, dimensions=(30, 100))
    return child


def test_interactive_shell(kran, busybox, runtime):
    child = _spawn(kran, "run", "-it", "--name", "shell", "busybox", "sh")
    child.expect(r"/ # ")
    child.sendline("id")
    child.expect(r"uid=0\(root\) gid=0\(root\)")
    child.sendline("ps")
    child.expect(r"\s1 root\s+sh\r\n")
    child.sendline("stty size; tty")
    child.expect(r"30 100\r\n/dev/pts/0")
    child.sendline("exit 7")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 7
    assert kran("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "shell").out == "exited 7\n"


def test_window_resize_and_detach(kran, busybox, runtime):
    child = _spawn(kran, "run", "-it", "--name", "det", "busybox", "sh")
    child.expect(r"/ # ")
    child.setwinsize(40, 120)
    child.sendline("stty size")
    child.expect(r"40 120")
    child.send("\x10\x11")  # Ctrl-P Ctrl-Q
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert kran("inspect", "-f", "{{.State.Running}}", "det").out == "true\n"
    # attach again, and the shell is still there
    child = _spawn(kran, "attach", "det")
    child.sendline("")  # a fresh prompt (busybox's line editor may be waiting for a cursor report)
    child.expect(r"/ # ")
    child.sendline("echo back-$((40+2))")
    child.expect("back-42")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    assert kran("wait", "det").out == "0\n"


def test_exec_it(kran, busybox, runtime):
    kran("run", "-d", "--name", "ex", "busybox", "sleep", "300")
    child = _spawn(kran, "exec", "-it", "ex", "sh")
    child.expect(r"/ # ")
    child.sendline("tty; exit 3")
    child.expect(r"/dev/pts/\d+")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3
