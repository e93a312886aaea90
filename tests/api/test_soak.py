"""Soak: one server, thousands of mixed requests, and its open files and memory stay flat.

A long-lived server leaks what a CLI never notices: a file descriptor or a database connection
per request, a thread per client that hung up.  These tests drive one `kran system service` the
way docker-py and the docker CLI do (kept-alive pooled connections, fresh ones, streams, hijacked
attaches that the client abandons) and read the server's own /proc entries.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from tests.api.conftest import UnixHTTP, open_fds

TOTAL = 5000
WARMUP = 100


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _fd_targets(pid: int) -> list[str]:
    out = []
    for f in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{f}"))
        except OSError:
            pass  # closed meanwhile
    return out


def _settle(pid: int, want: int, seconds: float = 8.0) -> int:
    """The fd count once the server has finished closing what clients left (within ``seconds``)."""
    deadline = time.monotonic() + seconds
    n = open_fds(pid)
    while n > want and time.monotonic() < deadline:
        time.sleep(0.05)
        n = open_fds(pid)
    return n


def test_five_thousand_mixed_requests_leave_fds_and_memory_flat(api, api_busybox):
    pid = api.proc.pid
    c = api.client()
    low = c.api
    sleeper = c.containers.run("busybox", ["sh", "-c", "echo ready; sleep 600"], detach=True, network_mode="none")
    raw = UnixHTTP(api.sock)  # a kept-alive raw connection, beside docker-py's pool
    count = 0
    base_fds = base_rss = 0

    def lifecycle() -> int:
        ct = low.create_container("busybox", ["true"], host_config=low.create_host_config(network_mode="none"))
        low.start(ct["Id"])
        assert low.wait(ct["Id"])["StatusCode"] == 0
        low.remove_container(ct["Id"])
        return 4

    def exec_true() -> int:
        x = low.exec_create(sleeper.id, ["echo", "hi"])
        assert low.exec_start(x["Id"]) == b"hi\n"
        assert low.exec_inspect(x["Id"])["ExitCode"] == 0
        return 3

    def ps() -> int:
        assert any(x["Id"] == sleeper.id for x in low.containers())
        return 1

    def inspect() -> int:
        assert low.inspect_container(sleeper.id)["State"]["Running"] is True
        return 1

    def logs() -> int:
        assert low.logs(sleeper.id, tail=1) == b"ready\n"
        return 1

    def ping_raw() -> int:
        r, data = raw.call("GET", "/_ping")
        assert (r.status, data) == (200, b"OK")
        return 1

    def version_raw() -> int:
        r, data = raw.call("GET", "/v1.45/version")
        assert r.status == 200 and json.loads(data)["ApiVersion"] == "1.45"
        return 1

    def fresh_connection() -> int:  # the docker CLI's way: one connection per command
        fresh = UnixHTTP(api.sock)
        r, _ = fresh.call("GET", "/v1.45/containers/nope/json")
        assert r.status == 404
        fresh.close()
        return 1

    cheap = [ps, inspect, logs, ping_raw, version_raw, fresh_connection, ping_raw, ps]
    # the first requests run every kind once (lazy imports, the engine pool filling up)
    for op in (lifecycle, exec_true, *cheap):
        count += op()
    i = 0
    start = time.monotonic()
    while count < TOTAL:
        if count >= WARMUP and not base_fds:
            time.sleep(0.2)
            base_fds, base_rss = open_fds(pid), rss_kib(pid)
        if i % 100 == 50:
            count += lifecycle()
        elif i % 40 == 20:
            count += exec_true()
        else:
            count += cheap[i % len(cheap)]()
        i += 1
    elapsed = time.monotonic() - start
    fds = _settle(pid, base_fds + 10)
    rss = rss_kib(pid)
    sleeper.remove(force=True)
    assert fds <= base_fds + 10, f"open fds grew from {base_fds} to {fds} over {count} requests"
    assert rss <= base_rss + 20 * 1024, f"RSS grew from {base_rss} KiB to {rss} KiB over {count} requests"
    assert elapsed < 240, f"{count} requests took {elapsed:.0f} s"


def test_concurrent_streams_and_abandoned_attaches_leave_the_server_healthy(api, api_busybox):
    pid = api.proc.pid
    c = api.client()
    low = c.api
    ticker = c.containers.run("busybox", ["sh", "-c", "while true; do echo tick; sleep 0.05; done"], detach=True,
                              network_mode="none")
    for _ in range(5):
        UnixHTTP(api.sock).call("GET", "/containers/json")
    c.close()
    time.sleep(0.2)
    base = open_fds(pid)
    c = api.client()
    low = c.api

    # two clients following at once: logs -f and events
    got = {"logs": 0, "events": 0}
    logs = low.logs(ticker.id, stream=True, follow=True)
    events = c.events(decode=True, filters={"type": "container", "event": "create"})

    def follow_logs() -> None:
        for _ in logs:
            got["logs"] += 1

    def follow_events() -> None:
        for _ in events:
            got["events"] += 1

    threads = [threading.Thread(target=follow_logs, daemon=True), threading.Thread(target=follow_events, daemon=True)]
    for t in threads:
        t.start()
    for _ in range(3):
        low.remove_container(low.create_container("busybox", ["true"])["Id"])
    deadline = time.monotonic() + 10
    while (got["logs"] < 20 or got["events"] < 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got["logs"] >= 20 and got["events"] == 3, got
    logs.close()
    events.close()
    for t in threads:
        t.join(5)

    # clients that hang up in the middle of an attach, on a container that keeps writing
    for _ in range(20):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(str(api.sock))
        s.sendall(f"POST /v1.45/containers/{ticker.id}/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\n"
                  "Host: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode())
        data = b""
        while b"tick" not in data:
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 101")
        s.close()
    # clients that hang up in the middle of a long download (the worker threads streaming it end)
    for url in (f"/v1.45/containers/{ticker.id}/export", "/v1.45/images/busybox/get") * 3:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(str(api.sock))
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = s.recv(65536)
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        s.close()
    # and one that hangs up in the middle of a request body
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(api.sock))
    s.sendall(b"POST /v1.45/containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"Ima")
    s.close()

    c.close()  # its pooled keep-alive connections are the client's, not a leak
    # What the streams and the abandoned attaches held (sockets, pipes, borrowed engines) is closed
    # within a few seconds.
    assert _settle(pid, base) <= base, f"fds: {_fd_targets(pid)} against {base} before the streams"
    r, data = UnixHTTP(api.sock).call("GET", "/_ping")
    assert (r.status, data) == (200, b"OK")
    ticker.remove(force=True)
