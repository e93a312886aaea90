"""Rootless Engine API: a user's ``kran system service`` on their own socket, the docker CLI and
docker-py against it, and nothing of theirs visible to, or reachable by, another user."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.rootless.conftest import BASE

DOCKER = "/usr/bin/docker"  # Debian's docker.io: the real client, never a daemon


def _listening(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


@pytest.fixture(scope="module")
def service(ruser):
    """``kran system service`` as the user, with no URI: the default socket is under test."""
    if not os.access(DOCKER, os.X_OK):
        pytest.fail(f"{DOCKER} is required (apt-get install docker.io; its daemon is never started)")
    log = tempfile.TemporaryFile()
    # its own session (process group), so a ^C to pytest does not reach it; stopped by its PID
    # (kran system service execs the API server: the PID stays the same)
    p = ruser.popen(*ruser.prefix, "system", "service", stdin=subprocess.DEVNULL,
                    stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (ruser.socket.exists() and _listening(ruser.socket)):
            if p.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"kran system service did not listen on {ruser.socket} "
                            f"(exit {p.poll()}):\n{log.read().decode(errors='replace')}")
            time.sleep(0.1)
        yield p
    finally:
        stopped = None
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                stopped = p.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        log.seek(0)
        out = log.read().decode(errors="replace")
        log.close()
    # after the cleanup above: SIGTERM is the way to stop it, and it takes its socket along
    assert stopped == 0, f"kran system service did not exit 0 on SIGTERM:\n{out}"
    assert not ruser.socket.exists()


def docker(ruser, *args: str, check: bool = True, timeout: float = 120):
    return ruser.run("env", f"DOCKER_HOST=unix://{ruser.socket}", DOCKER, *args, check=check, timeout=timeout)


def test_service_socket_and_state_are_the_users_alone(ruser, service, new_user):
    # the service fixture started it with no URI and found it at $XDG_RUNTIME_DIR/kran/kran.sock
    st = os.stat(ruser.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert st.st_uid == ruser.uid, "the socket belongs to the user on the host, not to a mapped id"
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0, oct(st.st_mode)
    d = os.stat(ruser.run_dir)
    assert (d.st_uid, stat.S_IMODE(d.st_mode)) == (ruser.uid, 0o700)
    data = os.stat(ruser.data)
    assert (data.st_uid, stat.S_IMODE(data.st_mode)) == (ruser.uid, 0o700)

    other = new_user(subids=False)
    # The test's XDG_RUNTIME_DIR is 0700 already (as systemd makes /run/user/UID); open it to
    # traversal for this check so that only kran's own modes stand between the other user and
    # the socket, as they must where XDG_RUNTIME_DIR is unset (/tmp/kran-UID).
    xdg = Path(ruser.env["XDG_RUNTIME_DIR"])
    old = stat.S_IMODE(os.stat(xdg).st_mode)
    xdg.chmod(0o711)
    try:
        probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
                 "try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n    print(e.strerror); sys.exit(3)\n"
                 "print('connected')\n")
        p = other.run("/usr/bin/python3", "-c", probe, str(ruser.socket), check=False)
        assert (p.returncode, p.out.strip()) == (3, "Permission denied"), (p.out, p.err)
        # what the other user sees from the docker CLI
        p = other.run("env", f"DOCKER_HOST=unix://{ruser.socket}", DOCKER, "ps", "-a", check=False)
        assert p.returncode != 0
        assert "permission denied" in p.err.lower(), p.err
        # nor can they read the store
        p = other.run("ls", str(ruser.data), check=False)
        assert p.returncode != 0 and "Permission denied" in p.err, (p.out, p.err)
    finally:
        xdg.chmod(old)
    assert service.poll() is None, "the service survived the other user's attempts"


def test_docker_cli(ruser, service):
    v = docker(ruser, "version")
    assert "Server: kran" in v.out, v.out
    assert "API version:       1.4" in v.out
    name = "dcli" + uuid.uuid4().hex[:6]
    try:
        assert docker(ruser, "ps").out.split("\n")[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND",
                                                                   "CREATED", "STATUS", "PORTS", "NAMES"]
        assert docker(ruser, "run", "--rm", "busybox", "echo", "hi").out == "hi\n"
        # a container made through the API is in the user's own store, where their kran sees it
        assert docker(ruser, "run", "--name", name, "busybox", "sh", "-c", "echo made; id -u").out == "made\n0\n"
        assert name in ruser.kran("ps", "-a", "--format", "{{.Names}}").out.split()
        assert name in docker(ruser, "ps", "-a", "--format", "{{.Names}}").out.split()
        images = docker(ruser, "images").out.split("\n")
        assert images[0].split()[:2] == ["REPOSITORY", "TAG"]
        assert any(line.split()[:2] == ["busybox", "latest"] for line in images[1:]), images
        docker(ruser, "rm", name)
        assert name not in ruser.kran("ps", "-a", "--format", "{{.Names}}").out.split()
    finally:
        ruser.kran("rm", "-f", name, check=False)


@pytest.fixture(scope="module")
def dockerpy_path(ruser):
    """PYTHONPATH under which the user's interpreter imports docker-py: the venv's own when the
    user can reach it, else a world-readable copy of docker-py and its dependencies (the conftest
    copies kran alone when the checkout is under a private directory, as CI's may be)."""
    base = [p for p in ruser.env.get("PYTHONPATH", "").split(":") if p]
    probe = ruser.run(ruser.prefix[0], "-c", "import docker", check=False)
    if probe.returncode == 0:
        yield ":".join(base)
        return
    try:
        import certifi
        import charset_normalizer
        import docker as dockerpy
        import idna
        import requests
        import urllib3
    except ImportError as e:
        pytest.fail(f"docker-py is not installed in {sys.prefix} ({e}): pip install docker")
    lib = BASE / f"dockerpy-{uuid.uuid4().hex[:8]}"
    try:
        lib.mkdir(parents=True)
        for mod in (dockerpy, requests, urllib3, idna, certifi, charset_normalizer):
            src = Path(mod.__file__).parent
            shutil.copytree(src, lib / src.name, ignore=shutil.ignore_patterns("__pycache__"))
        for p in [lib, *lib.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        path = ":".join([*base, str(lib)])
        probe = ruser.run("env", f"PYTHONPATH={path}", ruser.prefix[0], "-c", "import docker", check=False)
        if probe.returncode != 0:
            pytest.fail(f"docker-py cannot be imported by {ruser.prefix[0]} as the test user:\n{probe.err}")
        yield path
    finally:
        shutil.rmtree(lib, ignore_errors=True)


DOCKERPY_SCRIPT = r"""
import sys
import docker

client = docker.from_env()  # DOCKER_HOST: the user's socket
name = sys.argv[1]
c = client.containers.run("busybox", ["sh", "-c", "echo out-line; echo err-line >&2; id -u"],
                          name=name, detach=True)
try:
    print("exit", c.wait(timeout=60)["StatusCode"])
    print("stdout", c.logs(stdout=True, stderr=False).decode().split())
    print("stderr", c.logs(stdout=False, stderr=True).decode().split())
    print("names", [x.name for x in client.containers.list(all=True)])
    print("echo", client.containers.run("busybox", ["echo", "from-run"], remove=True).decode().strip())
finally:
    c.remove(force=True)
print("after", name in [x.name for x in client.containers.list(all=True)])
"""


def test_docker_py(ruser, service, dockerpy_path):
    path = dockerpy_path
    name = "dpy" + uuid.uuid4().hex[:6]
    try:
        p = ruser.run("env", f"DOCKER_HOST=unix://{ruser.socket}", f"PYTHONPATH={path}", ruser.prefix[0],
                      "-c", DOCKERPY_SCRIPT, name, timeout=180)
        lines = dict(line.split(" ", 1) for line in p.out.strip().split("\n"))
        assert lines["exit"] == "0"
        assert lines["stdout"] == "['out-line', '0']"
        assert lines["stderr"] == "['err-line']"
        assert name in lines["names"]
        assert lines["echo"] == "from-run"
        assert lines["after"] == "False"
    finally:
        ruser.kran("rm", "-f", name, check=False)


def test_nothing_of_one_user_is_visible_to_another(ruser, new_user, busybox_rootless_tar):
    from tests.conftest import BUSYBOX_CHANGES

    name = "priv" + uuid.uuid4().hex[:6]
    tag = "secret" + uuid.uuid4().hex[:6]
    cid = ruser.kran("create", "--name", name, "busybox", "true").out.strip()
    try:
        ruser.kran("tag", "busybox", tag)
        mine = ruser.kran("images", "-q", "--no-trunc").out.split()
        assert mine, "the first user has images"
        other = new_user()
        ps = other.kran("ps", "-a", "--no-trunc").out
        assert ps.split("\n")[1:] == [""], ps  # the header alone
        assert cid not in ps and name not in ps
        imgs = other.kran("images", "--no-trunc").out
        assert imgs.split("\n")[1:] == [""], imgs
        assert tag not in imgs and not any(i in imgs for i in mine)
        # their own image is theirs alone too: the first user's list does not grow
        other.kran("import", *BUSYBOX_CHANGES, str(busybox_rootless_tar), "othersbox")
        assert "othersbox" not in ruser.kran("images").out
        assert "othersbox" in other.kran("images").out
        p = other.kran("inspect", name, check=False)
        assert p.returncode == 1 and f"No such object: {name}" in p.err, p.err
    finally:
        ruser.kran("rm", "-f", name, check=False)
        ruser.kran("rmi", tag, check=False)
