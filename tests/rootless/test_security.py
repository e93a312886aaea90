"""A rootless container's root is the user and no more: it cannot read what the user cannot read,
cannot write the user's files outside its mounts, and its capabilities count only inside the
user's namespace (checked from inside and from the host's root)."""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import uuid
from pathlib import Path

import pytest

from tests.rootless.conftest import BASE

#: ioctl(2) on a namespace fd: the uid of the user namespace's creator (linux/nsfs.h _IO(0xb7, 0x4))
NS_GET_OWNER_UID = 0xB704


@pytest.fixture
def host_dir():
    """A directory of root's that every user may traverse (like /etc), removed afterwards."""
    BASE.mkdir(mode=0o755, exist_ok=True)
    d = BASE / f"root-{uuid.uuid4().hex[:8]}"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def container(ruser):
    """Names of containers a test makes, removed afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append("sec" + uuid.uuid4().hex[:8])
        return names[-1]

    yield make
    if names:
        ruser.kran("rm", "-f", *names, check=False)


def test_container_root_cannot_read_a_host_file_the_user_cannot(ruser, host_dir):
    secret = host_dir / "secret"
    secret.write_text("root's secret\n")
    secret.chmod(0o600)  # root-owned, as the files under /etc/ssl/private
    p = ruser.run("cat", str(secret), check=False)
    assert p.returncode != 0 and "Permission denied" in p.err, "the user cannot read it on the host"

    # the file bound alone, and its directory
    p = ruser.kran("run", "--rm", "-v", f"{secret}:/secret", "busybox", "sh", "-c",
                   "id -u; cat /secret; echo rc=$?", check=False)
    assert p.returncode == 0, p.err
    assert p.out.split("\n")[0] == "0", "root inside"
    assert "rc=1" in p.out and "root's secret" not in p.out, p.out
    assert "Permission denied" in p.err, p.err

    p = ruser.kran("run", "--rm", "-v", f"{host_dir}:/d", "busybox", "sh", "-c",
                   "ls /d; cat /d/secret; echo rc=$?; chmod 644 /d/secret; echo chmod=$?", check=False)
    assert p.out.split("\n")[0] == "secret", "the directory itself is visible"
    assert "rc=1" in p.out and "root's secret" not in p.out, p.out
    assert "chmod=1" in p.out, "nor can it change the file's mode"
    assert "Permission denied" in p.err and "Operation not permitted" in p.err, p.err
    assert (secret.stat().st_mode & 0o777, secret.stat().st_uid) == (0o600, 0)


def test_container_root_cannot_write_outside_its_mounts(ruser, host_dir, container):
    marker = f"kran-sec-{uuid.uuid4().hex[:8]}"
    mine = ruser.home / marker
    ruser.run("sh", "-c", f"echo mine > {mine}")
    try:
        # no mount: the user's home is not there (nor anything with the marker's name)
        p = ruser.kran("run", "--rm", "busybox", "sh", "-c",
                       f"ls {ruser.home}; echo ls=$?; find / -name {marker} 2>/dev/null | grep -c .", check=False)
        assert "ls=1" in p.out and p.out.split("\n")[-2] == "0", p.out

        # a read-only bind of the user's own directory
        shared = ruser.home / f"d-{marker}"
        ruser.run("mkdir", str(shared))
        p = ruser.kran("run", "--rm", "-v", f"{shared}:/d:ro", "busybox", "sh", "-c",
                       "touch /d/new; echo rc=$?", check=False)
        assert "rc=1" in p.out and "Read-only file system" in p.err, (p.out, p.err)
        assert list(shared.iterdir()) == []

        # rw: writes land as the user on the host (container root is the user, not root)
        name = container()
        ruser.kran("run", "--name", name, "-v", f"{shared}:/d", "busybox", "sh", "-c",
                   "echo hi > /d/new; mkdir /d/sub; chown 1000 /d/sub")
        st = (shared / "new").stat()
        assert (st.st_uid, st.st_gid) == (ruser.uid, ruser.gid)
        assert (shared / "sub").stat().st_uid == ruser.subuid + 999, "uid 1000 inside is a subuid"

        # a root-owned 0755 directory bound rw: root inside is not its owner
        p = ruser.kran("run", "--rm", "-v", f"{host_dir}:/d", "busybox", "sh", "-c",
                       "touch /d/new; echo rc=$?; mkdir /d/sub; echo mkdir=$?", check=False)
        assert "rc=1" in p.out and "mkdir=1" in p.out, p.out
        assert "Permission denied" in p.err, p.err
        assert list(host_dir.iterdir()) == []
        assert mine.read_text() == "mine\n"
    finally:
        mine.unlink(missing_ok=True)


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_capabilities_count_only_inside_the_users_namespace(ruser, container):
    name = container()
    ruser.kran("run", "-d", "--name", name, "busybox", "sleep", "300")
    inside = ruser.kran("exec", name, "sh", "-c", "id -u; grep CapEff /proc/1/status").out.split("\n")
    assert inside[0] == "0"
    cap_eff = int(inside[1].split()[1], 16)
    assert cap_eff != 0, "root inside has capabilities (docker's default set)"
    assert cap_eff & (1 << 21) == 0, "but not CAP_SYS_ADMIN"

    pid = int(ruser.kran("inspect", "-f", "{{.State.Pid}}", name).out.strip())
    assert pid > 0
    st = _status(pid)  # read by root on the host
    assert st["Name"] == "sleep"
    assert st["Uid"].split() == [str(ruser.uid)] * 4, st["Uid"]
    assert st["Gid"].split() == [str(ruser.gid)] * 4, st["Gid"]
    # its user namespace is not the host's: the caps above are over that namespace only.  (The
    # host's is read from this root process: /proc/1/ns may be closed to us in a sandbox.)
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
    try:
        owner = fcntl.ioctl(fd, NS_GET_OWNER_UID, b"\0" * 4)
    finally:
        os.close(fd)
    assert struct.unpack("I", owner)[0] == ruser.uid, "the namespace was made by the user"
    with open(f"/proc/{pid}/uid_map") as f:
        assert f.read().split()[:3] == ["0", str(ruser.uid), "1"]

    # privileged acts on the host's objects fail from inside: the host's network namespace is
    # not owned by the user's namespace, and device nodes need CAP_MKNOD in the initial one
    lo_mtu = Path("/sys/class/net/lo/mtu").read_text()
    p = ruser.kran("run", "--rm", "--network", "host", "busybox", "sh", "-c",
                   "grep CapEff /proc/self/status; ip link set lo mtu 1000; echo rc=$?", check=False)
    assert int(p.out.split()[1], 16) == cap_eff, "the same capabilities, and still:"
    assert "rc=" in p.out and "rc=0" not in p.out and "Operation not permitted" in p.err, (p.out, p.err)
    assert Path("/sys/class/net/lo/mtu").read_text() == lo_mtu
    p = ruser.kran("run", "--rm", "busybox", "sh", "-c", "mknod /tmp/mem c 1 1; echo rc=$?", check=False)
    assert "rc=1" in p.out and "Operation not permitted" in p.err, (p.out, p.err)
    p = ruser.kran("run", "--rm", "busybox", "sh", "-c", "echo 1 > /proc/sys/kernel/sysrq; echo rc=$?", check=False)
    assert "rc=1" in p.out, p.out
