"""Rootless set-up: per-user paths, the id mapping, bad set-ups, single-id mode, a lost pause
process, fuse-overlayfs."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_CHANGES


def test_per_user_paths_are_private(ruser):
    ruser.kran("ps")
    for d in (ruser.data, ruser.run_dir):
        st = d.stat()
        assert st.st_uid == ruser.uid
        assert stat.S_IMODE(st.st_mode) == 0o700, d
    assert (ruser.data / "kran.db").exists()
    # nothing of the user's went to root's places
    assert not Path(f"/run/kran/{ruser.name}").exists()


def test_layer_files_are_owned_by_mapped_ids(ruser, tmp_path):
    """root-owned files of an image are the user's on the host; uid 1000 is subuid + 999."""
    ruser.kran("run", "--name", "own1", "busybox", "sh", "-c", "touch /u1000 && chown 1000:1000 /u1000")
    try:
        upper = next(ruser.data.glob("containers/*/upper"))
        st = (upper / "u1000").stat()
        assert (st.st_uid, st.st_gid) == (ruser.subuid + 999, ruser.subuid + 999)
        layer_bin = next(ruser.data.glob("layers/*/diff/bin/busybox"))
        assert layer_bin.stat().st_uid == ruser.uid
    finally:
        ruser.kran("rm", "-f", "own1", check=False)


def test_an_owner_beyond_the_subuid_range_is_a_clear_error(ruser, tmp_path):
    src = Path("/tmp/kran-rootless-tests") / f"big-{os.getpid()}.tar"
    import io
    import tarfile

    with tarfile.open(src, "w") as tf:
        ti = tarfile.TarInfo("bigowner")
        ti.uid = ti.gid = 70000  # the user has 65536 subordinate ids: 1..65536 inside
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"x\n"))
    src.chmod(0o644)
    try:
        p = ruser.kran("import", str(src), "bigowner", check=False)
        assert p.returncode != 0
        assert "potentially insufficient UIDs or GIDs available in user namespace (requested 70000:70000 for /bigowner)" in p.err
        assert "Traceback" not in p.err and "OSError" not in p.err
        assert "bigowner" not in ruser.kran("images", "--format", "{{.Repository}}").out
    finally:
        src.unlink()


def test_no_subids_names_the_usermod_line(new_user):
    u = new_user(subids=False)
    p = u.kran("ps", check=False)
    assert p.returncode == 125
    line = p.err.strip()
    assert "\n" not in line
    assert f"rootless mode needs subordinate ids for user {u.name}: none in /etc/subuid" in line
    assert "usermod --add-subuids " in line and "--add-subgids " in line and line.split(" (or ")[0].endswith(u.name)
    assert "ignore_chown_errors = true" in line
    # nothing was left running
    assert not u.pause_pid()


def test_single_id_mode_on_request(new_user, busybox_rootless_tar):
    u = new_user(subids=False)
    cfg = u.home / ".config/kran"
    u.run("mkdir", "-p", str(cfg))
    u.run("sh", "-c", f"printf '[storage]\\nignore_chown_errors = true\\n' > {cfg}/config.toml")
    u.kran("import", *BUSYBOX_CHANGES, str(busybox_rootless_tar), "busybox")
    p = u.kran("run", "--rm", "busybox", "sh", "-c", "id -u; cat /proc/self/uid_map; touch /x && chown 1000 /x; echo $?")
    lines = p.out.split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(u.uid), "1"]
    assert lines[2] != "0"  # only one id is mapped: chown to another fails inside
    assert u.kran("run", "--rm", "-t", "busybox", "tty").out.strip().startswith("/dev/pts/")


def test_a_killed_pause_process_is_replaced_and_containers_stay_reachable(ruser):
    ruser.kran("run", "-d", "--name", "keeper", "busybox", "sleep", "300")
    try:
        old = ruser.pause_pid()
        assert old
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{old}/ns/user").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ruser.kran("exec", "keeper", "echo", "still-here").out.strip() == "still-here"
        assert ruser.pause_pid() not in (0, old)
        assert "keeper" in ruser.kran("ps", "--format", "{{.Names}}").out
        # a new rootless netns came with the new pause process: bridged containers run again
        assert ruser.kran("run", "--rm", "busybox", "echo", "net-ok").out.strip() == "net-ok"
    finally:
        ruser.kran("rm", "-f", "keeper", check=False)


@pytest.fixture
def fuse_usable():
    fuse = Path("/dev/fuse")
    if not fuse.exists():
        pytest.fail("/dev/fuse is missing (modprobe fuse)")
    old = fuse.stat().st_mode & 0o777
    fuse.chmod(0o666)  # as Debian's udev sets it
    yield
    fuse.chmod(old)


def test_fuse_overlayfs_when_the_kernel_refuses(ruser, fuse_usable):
    ruser.env["KRAN_FUSE_OVERLAY"] = "1"
    try:
        p = ruser.kran("run", "--rm", "busybox", "sh", "-c", "echo hi > /x && cat /x && grep ' / ' /proc/mounts")
    finally:
        del ruser.env["KRAN_FUSE_OVERLAY"]
    assert p.out.split("\n")[0] == "hi"
    assert "fuse-overlayfs" in p.out


def test_an_unwritable_home_is_a_one_line_error(new_user):
    u = new_user()
    u.env["HOME"] = "/nonexistent"
    p = u.kran("ps", check=False)
    assert p.returncode == 125
    assert p.err.count("\n") == 1 and "Traceback" not in p.err
    assert "mkdir /nonexistent" in p.err and "set HOME (or XDG_DATA_HOME)" in p.err


def test_device_nodes_in_a_layer_are_skipped(ruser):
    """A debootstrap tarball's /dev/null: no process in a user namespace may mknod it; the import
    goes on without it, as Docker's and Podman's rootless modes do."""
    import io
    import tarfile

    src = Path("/tmp/kran-rootless-tests") / f"dev-{os.getpid()}.tar"
    with tarfile.open(src, "w") as tf:
        for name, kind in (("dev", tarfile.DIRTYPE), ("dev/null", tarfile.CHRTYPE), ("dev/fifo", tarfile.FIFOTYPE)):
            ti = tarfile.TarInfo(name)
            ti.type = kind
            ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o666
            if kind == tarfile.CHRTYPE:
                ti.devmajor, ti.devminor = 1, 3
            tf.addfile(ti)
        ti = tarfile.TarInfo("hello")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"hi\n"))
    src.chmod(0o644)
    try:
        ruser.kran("import", str(src), "withdev")
        layer = next(d for d in ruser.data.glob("layers/*/diff") if (d / "hello").exists())
        assert not (layer / "dev/null").exists()
        assert stat.S_ISFIFO((layer / "dev/fifo").lstat().st_mode)
    finally:
        ruser.kran("rmi", "withdev", check=False)
        src.unlink()


def test_unshare_runs_as_root_of_the_users_namespace(ruser, new_user):
    p = ruser.kran("unshare", "sh", "-c", "id -u; cat /proc/self/uid_map")
    lines = p.out.split("\n")
    assert lines[0] == "0" and lines[1].split() == ["0", str(ruser.uid), "1"]
    # what subordinate ids own on the host is the user's to remove in there
    ruser.kran("run", "--name", "unsh", "busybox", "sh", "-c", "mkdir /d && touch /d/f && chown -R 1000 /d")
    try:
        upper = next(p for p in ruser.data.glob("containers/*/upper") if (p / "d").exists())
        assert ruser.run("rm", "-rf", str(upper / "d"), check=False).returncode != 0
        ruser.kran("unshare", "rm", "-rf", str(upper / "d"))
        assert not (upper / "d").exists()
    finally:
        ruser.kran("rm", "-f", "unsh", check=False)
