"""API tests: a `kran system service` on a socket of its own, over the test's state root, driven by
docker-py (the client compose and testcontainers use) and, when installed, the docker CLI."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_CHANGES, Kran


class Api:
    def __init__(self, kran: Kran, sock: Path, proc: subprocess.Popen) -> None:
        self.kran = kran
        self.sock = sock
        self.url = f"unix://{sock}"
        self.proc = proc  # the server process (`kran system service` execs it: this is its PID)

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.url, timeout=60)

    def docker(self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 60,
               extra_env: dict[str, str] | None = None):
        """The real docker CLI against kran (scripts/setup.sh installs it: a missing one is a failure)."""
        exe = shutil.which("docker")
        if not exe:
            pytest.fail("the docker CLI is not installed: run scripts/setup.sh (it installs Debian's docker.io "
                        "for its CLI, without starting dockerd)")
        env = dict(os.environ, DOCKER_HOST=self.url, DOCKER_CONFIG=str(self.sock.parent / "docker-config"))
        env.pop("DOCKER_API_VERSION", None)
        env.update(extra_env or {})
        p = subprocess.run([exe, *args], input=input, capture_output=True, timeout=timeout, env=env)
        p.out = p.stdout.decode(errors="replace")  # type: ignore[attr-defined]
        p.err = p.stderr.decode(errors="replace")  # type: ignore[attr-defined]
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({p.returncode}):\n{p.err}\n{p.out}")
        return p


class UnixHTTP(http.client.HTTPConnection):
    """http.client over the service's unix socket: one kept-alive connection, as the docker CLI has."""

    def __init__(self, path, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)

    def call(self, method: str, url: str, body: bytes | None = None, headers: dict | None = None):
        self.request(method, url, body=body, headers=headers or {})
        r = self.getresponse()
        data = r.read()
        return r, data


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def start_service(kran: Kran, sock: Path, log: Path) -> subprocess.Popen:
    """`kran system service unix://SOCK` over the test's root; returns once the socket is there.
    Its stderr goes to ``log`` (a pipe nobody reads could fill and stall the server)."""
    with open(log, "ab") as err:
        p = subprocess.Popen([sys.executable, "-m", "kran", "--root", str(kran.root), "system", "service",
                              f"unix://{sock}"], env=kran.env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 15
    while not sock.exists():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            p.wait()
            raise AssertionError(f"kran system service did not start: {log.read_text()}")
        time.sleep(0.02)
    return p


def stop_service(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError("the service did not stop within 10 s of SIGTERM") from None


@pytest.fixture
def api(kran: Kran, tmp_path: Path):
    sock = tmp_path / "api" / "kran.sock"
    sock.parent.mkdir()
    p = start_service(kran, sock, tmp_path / "api" / "service.log")
    yield Api(kran, sock, p)
    stop_service(p)
    assert not sock.exists(), "the service left its socket behind"


@pytest.fixture
def api_busybox(api: Api, busybox_tar: Path) -> str:
    """busybox:latest in the service's store; returns the image ID."""
    return api.kran("import", *BUSYBOX_CHANGES, str(busybox_tar), "busybox:latest").out.strip()
