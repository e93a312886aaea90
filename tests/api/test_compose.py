"""docker-compose (v1, Debian's; it speaks the Engine API through docker-py) against kran."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

COMPOSE = """\
version: "3"
services:
  web:
    image: busybox
    command: httpd -f -p 80 -h /www
    volumes:
      - site:/www
    networks: [back]
  client:
    image: busybox
    command: sh -c "i=0; while [ $$i -lt 60 ]; do wget -qO- http://web/index.html && break; i=$$((i+1)); sleep 0.5; done; sleep 60"
    depends_on: [web]
    networks: [back]
volumes:
  site:
networks:
  back:
"""


def compose(api, project_dir, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    if not exe:
        pytest.fail("docker-compose is required (apt-get install docker-compose)")
    env = dict(os.environ, DOCKER_HOST=api.url, COMPOSE_PROJECT_NAME="demo", COMPOSE_INTERACTIVE_NO_CLI="1")
    p = subprocess.run([exe, *args], cwd=project_dir, capture_output=True, timeout=120, env=env)
    p.out = p.stdout.decode(errors="replace")  # type: ignore[attr-defined]
    p.err = p.stderr.decode(errors="replace")  # type: ignore[attr-defined]
    if check and p.returncode != 0:
        raise AssertionError(f"docker-compose {' '.join(args)} failed ({p.returncode}):\n{p.err}\n{p.out}")
    return p


def test_compose_up_ps_logs_exec_down(api, api_busybox, tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "docker-compose.yml").write_text(COMPOSE)
    compose(api, proj, "up", "-d")
    c = api.client()
    names = sorted(x.name for x in c.containers.list())
    assert names == ["demo_client_1", "demo_web_1"]
    # a page into the named volume, through exec; the client finds "web" by its service name
    compose(api, proj, "exec", "-T", "web", "sh", "-c", "echo hello from web > /www/index.html")
    deadline = time.monotonic() + 15
    logs = ""
    while time.monotonic() < deadline:
        logs = compose(api, proj, "logs", "--no-color", "client").out
        if "hello from web" in logs:
            break
        time.sleep(0.3)
    assert "hello from web" in logs
    ps = compose(api, proj, "ps").out
    assert "demo_web_1" in ps and "Up" in ps
    assert {n.name for n in c.networks.list()} >= {"demo_back"}
    compose(api, proj, "down", "-v", "-t", "1")
    assert c.containers.list(all=True) == []
    assert "demo_back" not in {n.name for n in c.networks.list()}
    assert "demo_site" not in {v.name for v in c.volumes.list()}
