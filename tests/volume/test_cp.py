"""``kran cp``: files, directories, symlinks, both directions, tar streams, stopped containers,
volumes and binds, and the symlink escapes of CVE-2018-15664 / CVE-2019-14271."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture
def ctr(kran, busybox):
    kran("run", "-d", "--name", "box", "busybox", "sh", "-c",
         "mkdir -p /data/sub && echo one > /data/f && echo two > /data/sub/g && ln -s f /data/link && "
         "chown 1234:5678 /data/f && chmod 640 /data/f && sleep 300")
    kran("exec", "box", "sh", "-c", "while [ ! -e /data/link ]; do sleep 0.05; done")
    return "box"


def test_cp_file_out_and_in(kran, kv, ctr, tmp_path):
    kv("cp", "box:/data/f", str(tmp_path / "f"))
    assert (tmp_path / "f").read_text() == "one\n"
    assert (tmp_path / "f").stat().st_uid == 0  # without -a: the invoking user's ids
    kv("cp", "-a", "box:/data/f", str(tmp_path / "fa"))
    st = (tmp_path / "fa").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1234, 5678, 0o640)
    # into an existing directory: the basename is kept
    (tmp_path / "d").mkdir()
    kv("cp", "box:/data/f", str(tmp_path / "d"))
    assert (tmp_path / "d" / "f").read_text() == "one\n"
    # DEST ending in / that does not exist
    r = kv("cp", "box:/data/f", str(tmp_path / "nodir") + "/", check=False)
    assert r.returncode == 1 and "no such directory" in r.err
    r = kv("cp", "box:/nope", str(tmp_path / "x"), check=False)
    assert r.returncode == 1 and r.err == "Error response from daemon: Could not find the file /nope in container box\n"
    # in: a file, over a file, into a directory
    (tmp_path / "h").write_text("host\n")
    kv("cp", str(tmp_path / "h"), "box:/data/h")
    kv("cp", str(tmp_path / "h"), "box:/data/sub/")
    kv("cp", str(tmp_path / "h"), "box:/data/f")
    assert kran("exec", "box", "cat", "/data/h", "/data/sub/h", "/data/f").out == "host\n" * 3
    assert kran("exec", "box", "stat", "-c", "%u:%g", "/data/h").out == "0:0\n"
    os.chown(tmp_path / "h", 4321, 4321)
    kv("cp", "-a", str(tmp_path / "h"), "box:/data/ha")
    assert kran("exec", "box", "stat", "-c", "%u:%g", "/data/ha").out == "4321:4321\n"


def test_cp_dirs_and_dot(kran, kv, ctr, tmp_path):
    kv("cp", "box:/data", str(tmp_path / "new"))  # DEST missing: created with the contents
    assert sorted(os.listdir(tmp_path / "new")) == ["f", "link", "sub"]
    assert os.readlink(tmp_path / "new" / "link") == "f"
    (tmp_path / "exists").mkdir()
    kv("cp", "box:/data", str(tmp_path / "exists"))  # into it, by name
    assert (tmp_path / "exists" / "data" / "sub" / "g").read_text() == "two\n"
    (tmp_path / "contents").mkdir()
    kv("cp", "box:/data/.", str(tmp_path / "contents"))  # /. : only the contents
    assert sorted(os.listdir(tmp_path / "contents")) == ["f", "link", "sub"]
    (tmp_path / "afile").write_text("")
    r = kv("cp", "box:/data", str(tmp_path / "afile"), check=False)
    assert r.returncode == 1 and "cannot copy a directory to a file" in r.err
    # a host dir into the container
    src = tmp_path / "tree"
    (src / "x" / "y").mkdir(parents=True)
    (src / "x" / "y" / "z").write_text("deep\n")
    os.symlink("y/z", src / "x" / "l")
    kv("cp", str(src), "box:/data")
    assert kran("exec", "box", "cat", "/data/tree/x/y/z", "/data/tree/x/l").out == "deep\n" * 2
    kv("cp", str(src) + "/.", "box:/data/sub")
    assert kran("exec", "box", "cat", "/data/sub/x/y/z").out == "deep\n"
    kv("cp", str(src), "box:/made")
    assert kran("exec", "box", "cat", "/made/x/y/z").out == "deep\n"


def test_cp_symlinks_and_follow(kran, kv, ctr, tmp_path):
    kv("cp", "box:/data/link", str(tmp_path / "l"))
    assert os.readlink(tmp_path / "l") == "f"
    kv("cp", "-L", "box:/data/link", str(tmp_path / "lf"))
    assert (tmp_path / "lf").read_text() == "one\n" and not (tmp_path / "lf").is_symlink()
    os.symlink(tmp_path / "l", tmp_path / "hostlink")
    (tmp_path / "target").write_text("t\n")
    os.symlink(tmp_path / "target", tmp_path / "hl2")
    kv("cp", "-L", str(tmp_path / "hl2"), "box:/data/followed")
    assert kran("exec", "box", "cat", "/data/followed").out == "t\n"
    kv("cp", str(tmp_path / "hl2"), "box:/data/notfollowed")
    assert kran("exec", "box", "readlink", "/data/notfollowed").out == f"{tmp_path / 'target'}\n"


def test_cp_streams(kran, kv, ctr, tmp_path):
    data = kv("cp", "box:/data", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = sorted(tf.getnames())
        assert names == ["data", "data/f", "data/link", "data/sub", "data/sub/g"]
        f = tf.getmember("data/f")
        assert (f.uid, f.gid, f.mode) == (1234, 5678, 0o640)
        assert tf.extractfile("data/sub/g").read() == b"two\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("in/streamed")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"abc"))
    kv("cp", "-", "box:/data", input=buf.getvalue())
    assert kran("exec", "box", "cat", "/data/in/streamed").out == "abc"
    r = kv("cp", "-", "box:/data/f", input=buf.getvalue(), check=False)
    assert r.returncode == 1 and "not a directory" in r.err
    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w") as tf:
        ti = tarfile.TarInfo("../../../../../../tmp/kran-cp-escape")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    r = kv("cp", "-", "box:/data", input=bad.getvalue(), check=False)
    assert r.returncode != 0 and not os.path.exists("/tmp/kran-cp-escape")


def test_cp_stopped_container(kran, kv, busybox, tmp_path):
    kran("create", "--name", "stopped", "-v", "sv:/vol", "busybox", "cat", "/etc/in", "/vol/in")
    (tmp_path / "in").write_text("copied in\n")
    kv("cp", str(tmp_path / "in"), "stopped:/etc/in")
    kv("cp", str(tmp_path / "in"), "stopped:/vol/in")
    assert (kran.root / "volumes/sv/_data/in").exists()  # written into the volume, not the rootfs
    assert kran("start", "-a", "stopped").out == "copied in\n" * 2
    kv("cp", "stopped:/etc/in", str(tmp_path / "back"))
    assert (tmp_path / "back").read_text() == "copied in\n"
    kv("cp", "stopped:/etc/passwd", str(tmp_path / "passwd"))
    assert (tmp_path / "passwd").read_text().startswith("root:x:0:0")
    mounts = open("/proc/self/mountinfo").read()
    assert str(kran.root / "containers") not in mounts  # the temporary rootfs mount is gone


def test_cp_through_volumes_and_binds(kran, kv, busybox, tmp_path):
    host = tmp_path / "bind"
    host.mkdir()
    kran("run", "-d", "--name", "mnt", "-v", "cpv:/v", "-v", f"{host}:/b", "busybox", "sleep", "300")
    (tmp_path / "f").write_text("x\n")
    kv("cp", str(tmp_path / "f"), "mnt:/v/f")
    kv("cp", str(tmp_path / "f"), "mnt:/b/f")
    assert kran("exec", "mnt", "cat", "/v/f", "/b/f").out == "x\n" * 2
    assert (host / "f").read_text() == "x\n"
    kran("exec", "mnt", "sh", "-c", "echo inside > /v/g")
    kv("cp", "mnt:/v/g", str(tmp_path / "g"))
    assert (tmp_path / "g").read_text() == "inside\n"
    assert kv("cp", "mnt:/etc/hostname", "-").stdout  # a file bind-mounted by kran itself


@pytest.mark.parametrize("link", ["/etc", "../../../../../../etc"])
def test_cp_symlink_escape(kran, kv, busybox, tmp_path, link):
    """A symlink in the container that points at /etc means the CONTAINER's /etc, never the host's."""
    name = f"kran-cp-escape-{os.getpid()}-{tmp_path.name}"
    assert not os.path.exists(f"/etc/{name}")
    kran("run", "-d", "--name", "evil", "busybox", "sh", "-c",
         f"ln -s {link} /evil && echo 'evil:x:0:0:container:/:/bin/sh' > /etc/passwd && sleep 300")
    kran("exec", "evil", "sh", "-c", "while [ ! -L /evil ]; do sleep 0.05; done")
    r = kv("cp", "evil:/evil/passwd", str(tmp_path / "out"), check=False)
    if r.returncode == 0:
        assert (tmp_path / "out").read_text() == "evil:x:0:0:container:/:/bin/sh\n"
    (tmp_path / "payload").write_text("pwned\n")
    try:
        r = kv("cp", str(tmp_path / "payload"), f"evil:/evil/{name}", check=False)
        assert not os.path.exists(f"/etc/{name}")
        if r.returncode == 0:
            assert kran("exec", "evil", "cat", f"/etc/{name}").out == "pwned\n"
        kran("exec", "evil", "rm", "-f", f"/etc/{name}")
        (tmp_path / name).write_text("pwned\n")
        kv("cp", str(tmp_path / name), "evil:/evil/", check=False)  # into the directory the link names
        assert not os.path.exists(f"/etc/{name}")
        # a directory of the container that is a symlink out, as the destination of a tar stream
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            ti = tarfile.TarInfo(name)
            ti.size = 1
            tf.addfile(ti, io.BytesIO(b"x"))
        kv("cp", "-", "evil:/evil", input=buf.getvalue(), check=False)
        assert not os.path.exists(f"/etc/{name}")
    finally:
        if os.path.exists(f"/etc/{name}"):
            os.unlink(f"/etc/{name}")


def test_cp_refuses_read_only_mounts(kran, kv, busybox, tmp_path):
    kran("create", "--name", "rocp", "-v", "rov:/ro:ro", "--read-only", "busybox", "true")
    (tmp_path / "f").write_text("x\n")
    r = kv("cp", str(tmp_path / "f"), "rocp:/ro/f", check=False)
    assert r.returncode == 1 and "mounted volume is marked read-only" in r.err
    r = kv("cp", str(tmp_path / "f"), "rocp:/etc/f", check=False)
    assert r.returncode == 1 and "container rootfs is marked read-only" in r.err
    assert not (kran.root / "volumes/rov/_data/f").exists()
