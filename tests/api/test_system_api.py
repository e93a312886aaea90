"""The service itself: ping, version, info, errors, its socket."""

from __future__ import annotations

import json
import socket


def _raw(sock, request: bytes) -> bytes:
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    s.sendall(request)
    s.shutdown(socket.SHUT_WR)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    s.close()
    return out


def test_ping_version_info(api, api_busybox):
    c = api.client()
    assert c.ping() is True
    v = c.version()
    assert v["ApiVersion"] >= "1.41" and v["Os"] == "linux"
    info = c.info()
    assert info["Images"] == 1 and info["Containers"] == 0 and info["Driver"] == "overlay2"
    head = _raw(api.sock, b"HEAD /_ping HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Api-Version:" in head


def test_unknown_path_and_version_prefix(api):
    out = _raw(api.sock, b"GET /v1.41/nothing/here HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 404")
    body = out.split(b"\r\n\r\n", 1)[1]
    assert "page not found" in json.loads(body)["message"]
    assert _raw(api.sock, b"GET /v1.24/version HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_docker_cli_version(api):
    out = api.docker("version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}").out
    assert out.split() == [api.client().version()["ApiVersion"], "linux"]


def test_events_stream(api, api_busybox):
    import threading
    import time

    c = api.client()
    got: list[dict] = []
    start = time.time() - 1
    stream = c.events(since=start, decode=True, filters={"type": "container"})

    def collect() -> None:
        for ev in stream:
            got.append(ev)
            if ev.get("Action") == "destroy":
                break

    t = threading.Thread(target=collect, daemon=True)
    t.start()
    ctr = c.containers.create("busybox", "true", name="evt")
    ctr.start()
    ctr.wait()
    ctr.remove()
    t.join(20)
    stream.close()
    actions = [e["Action"] for e in got]
    assert actions[:2] == ["create", "start"] and "die" in actions and actions[-1] == "destroy"
    assert all(e["Actor"]["Attributes"]["name"] == "evt" for e in got)
    assert got[0]["status"] == "create" and got[0]["id"] == ctr.id
    # a bounded window ends by itself
    past = list(c.events(since=start, until=time.time(), decode=True, filters={"event": "destroy"}))
    assert [e["Actor"]["ID"] for e in past] == [ctr.id]
