"""--restart-fresh: every restart -- by the restart policy (the monitor) and by ``kran restart`` or
stop + start (the engine) -- begins with an empty read-write layer; volumes and the init files'
original contents are kept."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import _kran_fixture
from tests.network.conftest import netns  # noqa: F401 - the fixture
from tests.rootless.conftest import _tun, busybox_rootless_tar, ruser  # noqa: F401 - the rootless fixtures

# each run: report what the previous runs left in the rw layer, in /etc/hosts and in the volume,
# then leave traces of its own and fail (so that on-failure restarts it)
SCRIPT = (
    "[ -e /marker ] && echo SEEN-MARKER; grep -q evil /etc/hosts && echo SEEN-HOSTS; "
    "echo x >> /data/count; echo run $(wc -l < /data/count); "
    "echo x > /marker; echo '10.9.9.9 evil' >> /etc/hosts; exit 1"
)


@pytest.fixture
def kran(tmp_path, request):
    """kran in a private network namespace: its veths are out of the host's (and other tests') way."""
    yield from _kran_fixture(tmp_path / "root", request.getfixturevalue("netns").path)


def _wait_exited(kran, name: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = json.loads(kran("inspect", name).out)[0]["State"]
        if st["Status"] == "exited":
            return st
        assert time.monotonic() < deadline, st
        time.sleep(0.1)


def test_restart_by_policy_starts_fresh_and_keeps_volumes(kran, busybox):
    kran("run", "-d", "--name", "fr", "--restart", "on-failure:2", "--restart-fresh", "-v", "keep:/data",
         "busybox", "sh", "-c", SCRIPT)
    st = _wait_exited(kran, "fr")
    assert st["ExitCode"] == 1 and st["Error"] == ""
    info = json.loads(kran("inspect", "fr").out)[0]
    assert info["RestartCount"] == 2
    assert info["HostConfig"]["KranRestartFresh"] is True
    logs = kran("logs", "fr").out.split("\n")
    assert [ln for ln in logs if ln] == ["run 1", "run 2", "run 3"]  # the volume kept, nothing else
    # the last run's traces are in its layer until the next start
    assert kran("diff", "fr").out.split().count("/marker") == 1


def test_without_fresh_the_layer_survives(kran, busybox):
    kran("run", "-d", "--name", "st", "--restart", "on-failure:1", "-v", "keep2:/data",
         "busybox", "sh", "-c", SCRIPT)
    _wait_exited(kran, "st")
    logs = kran("logs", "st").out
    assert "SEEN-MARKER" in logs and "SEEN-HOSTS" in logs  # the control: the traces are there


def test_kran_restart_and_start_are_fresh(kran, busybox):
    kran("run", "-d", "--name", "rs", "--restart-fresh", "-v", "keep3:/data", "busybox", "sh", "-c",
         "[ -e /marker ] && echo SEEN; echo x >> /data/count; echo x > /marker; sleep 1000")
    for _ in range(2):
        kran("restart", "-t", "0", "rs")
    kran("stop", "-t", "0", "rs")
    kran("start", "rs")
    kran("exec", "rs", "test", "-e", "/marker")
    assert "SEEN" not in kran("logs", "rs").out
    assert kran("exec", "rs", "wc", "-l", "/data/count").out.split()[0] == "4"
    assert kran("exec", "rs", "cat", "/etc/hostname").out.strip() == json.loads(
        kran("inspect", "rs").out)[0]["Id"][:12]
    kran("rm", "-f", "rs")


def test_cp_into_created_container_is_kept_for_its_first_start(kran, busybox, tmp_path):
    # the first start is not a restart: what `kran cp` put into a created container stays
    (tmp_path / "seed").write_text("seed\n")
    kran("create", "--name", "cc", "--restart-fresh", "busybox", "cat", "/seed")
    kran("cp", str(tmp_path / "seed"), "cc:/seed")
    assert kran("start", "-a", "cc").out == "seed\n"
    p = kran("start", "-a", "cc", check=False)  # the restart: fresh, the file is gone
    assert "No such file" in p.out + p.err


def test_update_restart_fresh(kran, busybox):
    kran("run", "-d", "--name", "up", "--restart", "on-failure:1", "-v", "keep4:/data", "busybox", "sh", "-c",
         "sleep 2; " + SCRIPT)
    kran("update", "--restart-fresh", "up")  # while it runs: the monitor reads it at the exit
    assert json.loads(kran("inspect", "up").out)[0]["HostConfig"]["KranRestartFresh"] is True
    _wait_exited(kran, "up")
    logs = kran("logs", "up").out
    assert "run 2" in logs and "SEEN-MARKER" not in logs
    kran("update", "--restart-fresh=false", "up")
    assert json.loads(kran("inspect", "up").out)[0]["HostConfig"]["KranRestartFresh"] is False



@pytest.mark.parametrize("fuse", [False, True], ids=["kernel-overlay", "fuse-overlayfs"])
def test_rootless_restart_by_policy_and_by_kran_restart(request, fuse):
    """The same as a rootless user (the helper runs in the user's namespace), on the kernel's
    overlayfs and on fuse-overlayfs (KRAN_FUSE_OVERLAY=1)."""
    import os

    from tests.rootless.helpers import Made

    user = request.getfixturevalue("ruser")  # tests/rootless's user, with busybox in their store
    made = Made(user)
    old_fuse = os.stat("/dev/fuse").st_mode & 0o777
    if fuse:
        os.chmod("/dev/fuse", 0o666)  # as Debian's udev sets it (tests/rootless/test_setup.py does the same)
        user.env["KRAN_FUSE_OVERLAY"] = "1"
    try:
        vol, name = made.volume("keep"), made.container("fr")
        user.kran("run", "-d", "--name", name, "--network", "none", "--restart", "on-failure:2", "--restart-fresh",
                   "-v", f"{vol}:/data", "busybox", "sh", "-c", SCRIPT)
        deadline = time.monotonic() + 30
        while json.loads(user.kran("inspect", name).out)[0]["State"]["Status"] != "exited":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        info = json.loads(user.kran("inspect", name).out)[0]
        assert info["RestartCount"] == 2 and info["State"]["Error"] == ""
        assert [ln for ln in user.kran("logs", name).out.split("\n") if ln] == ["run 1", "run 2", "run 3"]
        name2 = made.container("rs")
        user.kran("run", "-d", "--name", name2, "--network", "none", "--restart-fresh", "busybox", "sh", "-c",
                   "[ -e /marker ] && echo SEEN; echo x > /marker; sleep 1000")
        user.kran("restart", "-t", "0", name2)
        user.kran("exec", name2, "test", "-e", "/marker")
        assert "SEEN" not in user.kran("logs", name2).out
        root = [ln for ln in user.kran("exec", name2, "cat", "/proc/mounts").out.splitlines() if ln.split()[1:2] == ["/"]]
        assert ("fuse" in root[0]) == fuse, root
    finally:
        user.env.pop("KRAN_FUSE_OVERLAY", None)
        os.chmod("/dev/fuse", old_fuse)
        made.cleanup()
