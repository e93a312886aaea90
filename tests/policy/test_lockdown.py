"""--lockdown: read-only root, tmpfs /tmp and home, no capabilities, no-new-privileges, no host
paths or volumes, and no way out for files (cp from it, export, commit, diff, backup, the API's
archive GET), in one line; it cannot be unlocked while it runs."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import UnixHTTP, start_service, stop_service
from tests.conftest import _kran_fixture
from tests.network.conftest import netns  # noqa: F401 - the fixture


@pytest.fixture
def kran(tmp_path, request):
    """kran in a private network namespace: its veths are out of the host's (and other tests') way."""
    yield from _kran_fixture(tmp_path / "root", request.getfixturevalue("netns").path)


LOCKED = "container lk is locked down: files cannot be copied out of it"


def _one_line_error(p, text: str) -> None:
    assert p.returncode != 0
    lines = [ln for ln in p.err.splitlines() if ln.strip()]
    assert lines and text in lines[0], p.err
    assert "Traceback" not in p.err and p.out == ""


def test_lockdown_enforced_inside(kran, busybox):
    kran("run", "-d", "--name", "lk", "--lockdown", "busybox", "sleep", "1000")
    h = json.loads(kran("inspect", "lk").out)[0]["HostConfig"]
    assert h["KranLockdown"] is True and h["ReadonlyRootfs"] is True and h["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in h["SecurityOpt"]
    assert set(h["Tmpfs"]) == {"/tmp", "/root"}
    assert not any(k.startswith("_") for k in h)
    p = kran("exec", "lk", "sh", "-c", "echo x > /evil", check=False)
    assert p.returncode != 0 and "Read-only file system" in p.err
    kran("exec", "lk", "sh", "-c", "echo x > /tmp/ok && echo y > /root/ok && cat /tmp/ok /root/ok")
    assert kran("exec", "lk", "cat", "/tmp/ok").out == "x\n"
    status = kran("exec", "lk", "cat", "/proc/self/status").out
    caps = {ln.split(":")[0]: ln.split()[1] for ln in status.splitlines() if ln.startswith("Cap")}
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapPrm"], 16) == 0 and int(caps["CapBnd"], 16) == 0
    assert "NoNewPrivs:\t1" in status


def test_no_files_out(kran, busybox, tmp_path):
    kran("run", "-d", "--name", "lk", "--lockdown", "busybox", "sh", "-c", "echo secret > /tmp/s; sleep 1000")
    out = tmp_path / "out"
    for args in (("cp", "lk:/etc/passwd", str(out)), ("cp", "lk:/tmp/s", "-"), ("export", "-o", str(out), "lk"),
                 ("commit", "lk", "stolen:1"), ("diff", "lk")):
        p = kran(*args, check=False)
        _one_line_error(p, LOCKED)
        assert not out.exists() and not list(tmp_path.glob("out*"))
    assert "stolen" not in kran("images").out
    p = kran("backup", "lk", f"oci:{tmp_path}/bk", check=False)
    _one_line_error(p, LOCKED)
    # also stopped: the layer stays in
    kran("stop", "-t", "0", "lk")
    _one_line_error(kran("cp", "lk:/etc/passwd", str(out), check=False), LOCKED)
    # in: the read-only root refuses it, as for any --read-only container
    (tmp_path / "in").write_text("x")
    p = kran("cp", str(tmp_path / "in"), "lk:/in", check=False)
    assert p.returncode != 0 and "read-only" in p.err


def test_api_refuses_archive_export_commit(kran, busybox, tmp_path):
    kran("run", "-d", "--name", "lk", "--lockdown", "busybox", "sleep", "1000")
    sock = tmp_path / "api" / "kran.sock"
    sock.parent.mkdir()
    svc = start_service(kran, sock, tmp_path / "api" / "service.log")
    try:
        c = UnixHTTP(sock)
        for method, url in (("GET", "/containers/lk/archive?path=/etc/passwd"), ("GET", "/containers/lk/export"),
                            ("POST", "/commit?container=lk&repo=stolen"), ("GET", "/v1.41/containers/lk/changes")):
            r, data = c.call(method, url)
            assert r.status == 403, (url, r.status, data)
            assert json.loads(data) == {"message": LOCKED}
            assert r.getheader("X-Docker-Container-Path-Stat") is None
        # what is not a way out still works: the stat of a path (docker cp INTO asks it first)
        r, _ = c.call("HEAD", "/containers/lk/archive?path=/etc")
        assert r.status == 200
        # and through the API, create with KranLockdown enforces the same settings
        body = json.dumps({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"KranLockdown": True}}).encode()
        r, data = c.call("POST", "/containers/create?name=lk2", body, {"Content-Type": "application/json"})
        assert r.status == 201, data
        r, data = c.call("GET", "/containers/lk2/json")
        h = json.loads(data)["HostConfig"]
        assert h["ReadonlyRootfs"] is True and h["CapDrop"] == ["ALL"] and h["KranLockdown"] is True
        body = json.dumps({"Image": "busybox", "HostConfig": {"KranLockdown": True, "Binds": ["/etc:/x"]}}).encode()
        r, data = c.call("POST", "/containers/create", body, {"Content-Type": "application/json"})
        assert r.status == 400 and b"--lockdown and a bind mount of the host path /etc" in data
        c.close()
    finally:
        stop_service(svc)


def test_conflicting_flags_refused_at_create(kran, busybox, tmp_path):
    (tmp_path / "h").mkdir()
    for extra, what in ((("-v", f"{tmp_path}/h:/x"), f"a bind mount of the host path {tmp_path}/h"),
                        (("--mount", f"type=bind,src={tmp_path}/h,dst=/x"), "a bind mount of the host path"),
                        (("-v", "named:/x"), "the volume named"),
                        (("--privileged",), "--privileged"), (("--cap-add", "NET_ADMIN"), "--cap-add"),
                        (("--security-opt", "no-new-privileges=false"), "--security-opt no-new-privileges=false"),
                        (("--security-opt", "seccomp=unconfined"), "--security-opt seccomp=unconfined")):
        p = kran("create", "--name", "bad", "--lockdown", *extra, "busybox", "true", check=False)
        assert p.returncode == 125
        assert p.err.splitlines()[0] == f"kran: Error response from daemon: conflicting options: --lockdown and {what}" \
            or p.err.splitlines()[0].startswith(f"kran: Error response from daemon: conflicting options: --lockdown and {what}"), p.err
    assert kran("ps", "-aq").out == ""
    assert kran("volume", "ls", "-q").out == ""
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == []


def test_image_volumes_become_tmpfs(kran, busybox, tmp_path):
    kran("create", "--name", "lk", "--lockdown", "-v", "/data", "busybox", "sh", "-c",
         "echo x > /data/f && cat /data/f && grep ' /data ' /proc/mounts")
    out = kran("start", "-a", "lk").out
    assert out.startswith("x\n") and "tmpfs" in out
    assert kran("volume", "ls", "-q").out == ""


def test_unlock_only_when_stopped(kran, busybox):
    kran("run", "-d", "--name", "lk", "--lockdown", "busybox", "sleep", "1000")
    p = kran("update", "--lockdown=false", "lk", check=False)
    assert p.returncode != 0
    assert p.err.strip() == ("Error response from daemon: container lk is locked down: it cannot be unlocked "
                             "while it runs: stop it first")
    assert json.loads(kran("inspect", "lk").out)[0]["HostConfig"]["KranLockdown"] is True
    kran("stop", "-t", "0", "lk")
    kran("update", "--lockdown=false", "lk")
    h = json.loads(kran("inspect", "lk").out)[0]["HostConfig"]
    assert h["KranLockdown"] is False and h["ReadonlyRootfs"] is False
    assert not h.get("CapDrop") and not h.get("Tmpfs") and not h.get("SecurityOpt")
    kran("start", "lk")
    kran("exec", "lk", "sh", "-c", "echo x > /now-writable")
    assert kran("cp", "lk:/now-writable", "-").returncode == 0
    # locking again: stopped only, and the settings come back
    p = kran("update", "--lockdown", "lk", check=False)
    assert p.returncode != 0 and "stop it first" in p.err
    kran("stop", "-t", "0", "lk")
    kran("update", "--lockdown", "lk")
    assert json.loads(kran("inspect", "lk").out)[0]["HostConfig"]["ReadonlyRootfs"] is True
