"""Backups as any user (issue #13 under #12's rootless kran): a rootless user backs up a running
container to a directory in their home and restores it under another name with the same files and
owners; the same backup restores on a rootful root with the owners the container saw (uid 0 and
1000 inside, not the user's host ids). On cgroup v1 a rootless container cannot be frozen: the
backup says so in one warning and goes on, as with --no-pause."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.rootless.helpers import Made


@pytest.fixture
def made(ruser):
    m = Made(ruser)
    yield m
    m.cleanup()


def _ls(k, name: str) -> str:
    return k("exec", name, "ls", "-ln", "/srv").out


def test_rootless_backup_and_restore_here_and_on_a_rootful_root(ruser, made, kran, busybox, tmp_path: Path):
    src, copy = made.container("bk"), made.container("bkcopy")
    ruser.kran("run", "-d", "--network", "none", "--name", src, "busybox", "sleep", "3600")
    ruser.kran("exec", src, "sh", "-c", "mkdir /srv && echo mine > /srv/a && echo his > /srv/b && "
               "chown 1000:1000 /srv/b && chmod 640 /srv/b && rm /bin/vi")
    dest = ruser.home / "backups"
    p = ruser.kran("backup", "-v", src, f"oci:{dest}")
    v1 = not os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    if v1:
        assert "cannot be frozen on cgroup v1" in p.err and "not frozen" in p.out, (p.err, p.out)
    # the directory is the user's: nothing in it belongs to root or a subordinate id
    assert {(f.stat().st_uid) for f in dest.rglob("*")} == {ruser.uid}
    ruser.kran("restore", "--start", "--name", copy, f"oci:{dest}:{src}")
    want = _ls(ruser.kran, src)
    assert _ls(ruser.kran, copy) == want and " 1000 " in want
    assert ruser.kran("exec", copy, "cat", "/srv/a").out == "mine\n"
    assert ruser.kran("exec", copy, "sh", "-c", "test ! -e /bin/vi && echo gone").out == "gone\n"

    # the same backup on a rootful root (another host): the owners the container saw
    kran("restore", "--start", "--name", "fromuser", f"oci:{dest}:{src}")
    try:
        assert _ls(kran, "fromuser") == want
        info = json.loads(kran("backup", "inspect", f"oci:{dest}:{src}").out)[0]
        assert info["Name"] == src and info["Layers"]
    finally:
        kran("rm", "-f", "fromuser")
