"""The first things a new rootless user does."""

from __future__ import annotations


def test_hello_as_a_user(ruser):
    p = ruser.kran("run", "--rm", "busybox", "sh", "-c", "echo hello; id -u; cat /proc/self/uid_map")
    lines = p.out.split("\n")
    assert lines[0] == "hello"
    assert lines[1] == "0"
    # uid 0 inside is the user; 1.. their subordinate ids
    assert lines[2].split() == ["0", str(ruser.uid), "1"]
    assert lines[3].split() == ["1", str(ruser.subuid), "65536"]
