"""The server as a long-lived process: connections, keep-alive, version checks, stopping, limits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time

from tests.api.conftest import UnixHTTP, open_fds, start_service


def test_unknown_path_is_dockers_json_404(api):
    c = UnixHTTP(api.sock)
    r, data = c.call("GET", "/v1.45/no/such/thing")
    assert r.status == 404 and r.getheader("Content-Type") == "application/json"
    assert json.loads(data) == {"message": "page not found"}
    r, data = c.call("GET", "/_ping")  # the same connection still serves
    assert (r.status, data) == (200, b"OK")


def test_patch_and_unknown_methods_get_json_404(api):
    c = UnixHTTP(api.sock)
    for method in ("PATCH", "OPTIONS", "BREW"):
        r, data = c.call(method, "/containers/json", body=b'{"x": 1}', headers={"Content-Type": "application/json"})
        assert r.status == 404, method
        assert r.getheader("Content-Type") == "application/json"
        assert json.loads(data) == {"message": "page not found"}
    r, data = c.call("GET", "/_ping")
    assert (r.status, data) == (200, b"OK")


def test_keep_alive_after_an_error_with_a_body(api, api_busybox):
    """docker run of a missing image: create answers 404 with the body unread by the handler, then the
    pull goes out on the same pooled connection and must find it alive."""
    c = UnixHTTP(api.sock)
    body = json.dumps({"Image": "no-such-image:1", "Cmd": ["true"]}).encode()
    r, data = c.call("POST", "/v1.45/containers/create", body=body, headers={"Content-Type": "application/json"})
    assert r.status == 404 and "no-such-image" in json.loads(data)["message"]
    assert r.getheader("Connection") != "close"
    r, data = c.call("GET", "/v1.45/images/json")  # same connection
    assert r.status == 200 and len(json.loads(data)) == 1
    # an error for a chunked body, on a path no handler reads
    c.putrequest("POST", "/v1.45/nothing")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    c.send(b"5\r\nhello\r\n0\r\n\r\n")
    r = c.getresponse()
    assert r.status == 404 and json.loads(r.read()) == {"message": "page not found"}
    r, data = c.call("GET", "/_ping")
    assert (r.status, data) == (200, b"OK")


def test_a_huge_unread_body_closes_with_connection_close(api):
    c = UnixHTTP(api.sock)
    r, data = c.call("POST", "/v1.45/nothing", body=b"x" * (6 << 20))
    assert r.status == 404 and r.getheader("Connection") == "close"
    assert json.loads(data) == {"message": "page not found"}
    c.close()


def test_docker_run_of_a_missing_image_reaches_the_pull(api, api_busybox):
    p = api.docker("run", "--rm", "127.0.0.1:9/nothing/here:1", "true", check=False)
    assert p.returncode == 125
    assert "Unable to find image '127.0.0.1:9/nothing/here:1' locally" in p.err
    assert "Error response from daemon" in p.err  # the pull's own error, not a broken connection
    for broken in ("EOF", "connection reset", "Cannot connect"):
        assert broken not in p.err, p.err


def test_api_version_too_new_and_too_old(api):
    c = UnixHTTP(api.sock)
    r, data = c.call("GET", "/v1.99/version")
    assert r.status == 400
    assert json.loads(data) == {"message": "client version 1.99 is too new. Maximum supported API version is 1.45"}
    r, data = c.call("GET", "/v1.12/containers/json")
    assert r.status == 400
    assert json.loads(data) == {"message": "client version 1.12 is too old. Minimum supported API version is "
                                           "1.24, please upgrade your client to a newer version"}
    r, _ = c.call("GET", "/v1.24/version")
    assert r.status == 200
    new = api.docker("ps", check=False, extra_env={"DOCKER_API_VERSION": "1.99"})
    assert new.returncode == 1
    assert "client version 1.99 is too new. Maximum supported API version is 1.45" in new.err
    old = api.docker("ps", check=False, extra_env={"DOCKER_API_VERSION": "1.12"})
    assert old.returncode == 1
    assert "client version 1.12 is too old. Minimum supported API version is 1.24" in old.err


def test_thirty_connections_at_once_are_all_answered(api):
    socks = []
    for _ in range(30):  # all connected before any is served: the backlog must hold them
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(20)
        s.connect(str(api.sock))
        socks.append(s)
    for s in socks:
        s.sendall(b"GET /containers/json?all=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    for s in socks:
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        s.close()
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
        assert json.loads(body) == []


def test_fds_do_not_grow_with_requests(api, api_busybox):
    for _ in range(20):  # warm up: the engine pool, lazy imports
        UnixHTTP(api.sock).call("GET", "/containers/json?all=1")
    base = open_fds(api.proc.pid)
    for i in range(400):
        c = UnixHTTP(api.sock)  # a new connection each time, half of them errors
        r, _ = c.call("GET", "/containers/json?all=1" if i % 2 else "/containers/nothing/json")
        assert r.status == (200 if i % 2 else 404)
        c.close()
    c = UnixHTTP(api.sock)
    for _ in range(400):
        c.call("GET", "/images/json")
    c.close()
    time.sleep(0.2)
    assert open_fds(api.proc.pid) <= base + 2


def test_info_says_swarm_inactive(api):
    swarm = api.client().info()["Swarm"]
    assert swarm["LocalNodeState"] == "inactive" and swarm["NodeID"] == "" and swarm["ControlAvailable"] is False


def test_kran_version_speaks_the_servers_api_version(api):
    client = api.kran("version", "--format", "{{.Client.ApiVersion}}").out.strip()
    assert client == api.client().version()["ApiVersion"]
    assert f"API version:       {client}" in api.kran("version").out


def test_docker_rm_f_of_thirty_containers(api, api_busybox):
    c = api.client()
    for i in range(30):
        ct = c.api.create_container("busybox", ["sleep", "60"], name=f"many{i}", host_config=c.api.create_host_config(network_mode="none"))
        if i % 3 == 0:
            c.api.start(ct["Id"])
    ids = api.docker("ps", "-aq").out.split()
    assert len(ids) == 30
    p = api.docker("rm", "-f", *ids, check=False, timeout=120)
    assert p.returncode == 0, p.err
    assert "Cannot connect" not in p.err and p.err == ""
    assert sorted(p.out.split()) == sorted(ids)
    assert api.docker("ps", "-aq").out.split() == []


def _service_children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(d))
    return out


def _processes_naming(path: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if path.encode() in f.read():
                        out.append(int(d))
            except OSError:
                continue
    return out


def _stop_with(sig: int, api, tmp_path, busybox_id: str) -> None:
    sock = tmp_path / "second.sock"
    p = start_service(api.kran, sock, tmp_path / "second.log")
    import docker

    c = docker.DockerClient(base_url=f"unix://{sock}", timeout=30)
    ct = c.containers.run("busybox", ["sh", "-c", "while true; do echo tick; sleep 0.2; done"], detach=True,
                          network_mode="none")
    # clients in the middle of streams when the signal comes
    logs = c.api.logs(ct.id, stream=True, follow=True)
    assert next(iter(logs)).strip() == b"tick"
    events = c.events(decode=True)
    threading.Thread(target=lambda: [None for _ in events], daemon=True).start()
    idle = UnixHTTP(sock)
    idle.call("GET", "/_ping")  # a kept-alive, idle connection
    attached = socket.socket(socket.AF_UNIX)  # and a hijacked attach
    attached.settimeout(10)
    attached.connect(str(sock))
    attached.sendall(f"POST /containers/{ct.id}/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\n"
                     "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode())
    assert attached.recv(4096).startswith(b"HTTP/1.1 101")
    assert p.poll() is None
    os.kill(p.pid, sig)
    assert p.wait(10) == 0
    assert not sock.exists()
    while attached.recv(4096):  # the server ended the attach: EOF, not a hang
        pass
    deadline = time.monotonic() + 5
    while (_service_children(p.pid) or _processes_naming(str(sock))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_naming(str(sock)) == []
    # the container lives on (its monitor is its own process), as under dockerd's live-restore
    assert api.kran("inspect", "--format", "{{.State.Running}}", ct.id).out.strip() == "true"
    api.kran("rm", "-f", ct.id)
    # and a server started again on the same socket serves
    p2 = start_service(api.kran, sock, tmp_path / "second.log")
    try:
        assert UnixHTTP(sock).call("GET", "/_ping")[1] == b"OK"
    finally:
        p2.terminate()
        assert p2.wait(10) == 0
    assert not sock.exists()


def test_sigterm_to_the_service_pid_stops_it(api, api_busybox, tmp_path):
    _stop_with(signal.SIGTERM, api, tmp_path, api_busybox)


def test_sigint_to_the_service_pid_stops_it(api, api_busybox, tmp_path):
    _stop_with(signal.SIGINT, api, tmp_path, api_busybox)


def test_the_pid_is_the_server(api):
    """`kran system service` leaves one process: the one its caller started (it execs the server)."""
    assert _service_children(api.proc.pid) == []
    with open(f"/proc/{api.proc.pid}/cmdline", "rb") as f:
        assert b"kran.api" in f.read()
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert [line for line in ps.splitlines() if str(api.sock) in line and "kran" in line
            and int(line.split()[0]) != api.proc.pid] == []


def test_engine_pool_reuses_bounds_and_closes(tmp_path):
    from kran.api.server import EnginePool

    root = str(tmp_path / "root")

    def my_fds() -> int:
        """fds of this process open on the pool's state root (its databases and lock files); the
        process's other fds come and go with other tests' garbage"""
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                n += os.readlink(f"/proc/self/fd/{fd}").startswith(root)
            except OSError:
                pass
        return n

    before = my_fds()
    pool = EnginePool(root, keep=3, linger=0.3)
    with pool.lend() as a:
        a.store.db.execute("SELECT 1")
        with pool.lend() as b, pool.lend() as c, pool.lend() as d:
            assert len({id(a), id(b), id(c), id(d)}) == 4  # one user each
            for e in (b, c, d):
                e.store.db.execute("SELECT 1")
            assert my_fds() > before
    assert pool.idle() == 3  # d, c, b came back and stayed; a, the fourth, was closed
    assert "store" not in a.__dict__
    with pool.lend() as again:
        assert again is b  # the most recently returned is lent first
    time.sleep(0.8)
    assert pool.idle() == 0 and my_fds() == before  # a quiet pool closes them all
    with pool.lend() as e:
        e.store.db.execute("SELECT 1")
    assert pool.idle() == 1
    pool.close()
    assert pool.idle() == 0 and my_fds() == before
