"""testcontainers-python, unchanged, against kran's socket: what a CI job's integration tests do
(start a service container, wait for its log line, talk to its published port, exec, copy, stop)."""

from __future__ import annotations

import urllib.request

import pytest


@pytest.fixture
def tc_env(api, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", api.url)
    # Ryuk (the reaper sidecar) is an image from Docker Hub, unreachable here; testcontainers' own
    # switch turns it off and the context managers still remove what they started.
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    monkeypatch.setenv("DOCKER_CONFIG", str(api.sock.parent / "docker-config"))
    return api


def test_testcontainers_service_container_lifecycle(tc_env, api_busybox, tmp_path):
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    www = tmp_path / "index.html"
    www.write_text("served by a testcontainer\n")
    c = (DockerContainer("busybox:latest")
         .with_command(["sh", "-c", "mkdir -p /www && echo listening && exec httpd -f -p 8080 -h /www"])
         .with_exposed_ports(8080)
         .with_env("GREETING", "hi")
         .waiting_for(LogMessageWaitStrategy("listening").with_startup_timeout(30)))
    with c:
        code, out = c.exec(["sh", "-c", "echo $GREETING"])
        assert (code, out) == (0, b"hi\n")
        # testcontainers copies files in with put_archive
        c.get_wrapped_container().put_archive("/www", _tar("index.html", www.read_bytes()))
        host = c.get_container_host_ip()
        port = int(c.get_exposed_port(8080))
        assert port > 0
        url = f"http://{'127.0.0.1' if host == 'localhost' else host}:{port}/index.html"
        body = _fetch(url)
        assert body == b"served by a testcontainer\n"
        stdout, _ = c.get_logs()
        assert b"listening" in stdout
        cid = c.get_wrapped_container().id
    # leaving the context removes the container
    ids = tc_env.kran("ps", "-aq", "--no-trunc").out.split()
    assert cid not in ids


def _tar(name: str, data: bytes) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mode = 0o644
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _fetch(url: str) -> bytes:
    import time

    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


