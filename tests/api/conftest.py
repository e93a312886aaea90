"""API tests: a `kran system service` on a socket of its own, over the test's state root, driven by
docker-py (the client compose and testcontainers use) and, when installed, the docker CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_CHANGES, Kran


class Api:
    def __init__(self, kran: Kran, sock: Path) -> None:
        self.kran = kran
        self.sock = sock
        self.url = f"unix://{sock}"

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.url, timeout=60)

    def docker(self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 60):
        """The real docker CLI against kran (tests using it skip when it is not installed)."""
        exe = shutil.which("docker")
        if not exe:
            pytest.skip("the docker CLI is not installed")
        env = dict(os.environ, DOCKER_HOST=self.url, DOCKER_CONFIG=str(self.sock.parent / "docker-config"))
        p = subprocess.run([exe, *args], input=input, capture_output=True, timeout=timeout, env=env)
        p.out = p.stdout.decode(errors="replace")  # type: ignore[attr-defined]
        p.err = p.stderr.decode(errors="replace")  # type: ignore[attr-defined]
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({p.returncode}):\n{p.err}\n{p.out}")
        return p


@pytest.fixture
def api(kran: Kran, tmp_path: Path):
    sock = tmp_path / "api" / "kran.sock"
    sock.parent.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "kran", "--root", str(kran.root), "system", "service",
                          f"unix://{sock}"], env=kran.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while not sock.exists():
        if p.poll() is not None or time.monotonic() > deadline:
            err = p.stderr.read().decode() if p.poll() is not None else ""
            p.kill()
            raise AssertionError(f"kran system service did not start: {err}")
        time.sleep(0.02)
    yield Api(kran, sock)
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    assert not sock.exists(), "the service left its socket behind"


@pytest.fixture
def api_busybox(api: Api, busybox_tar: Path) -> str:
    """busybox:latest in the service's store; returns the image ID."""
    return api.kran("import", *BUSYBOX_CHANGES, str(busybox_tar), "busybox:latest").out.strip()
