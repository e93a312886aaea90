"""Attach through the Engine API (docker-py and the docker CLI): detach keys (default, query parameter,
docker-py's config file), logs without a stream, clients that hang up, the websocket attach; and the
engine relay itself on fds past 1024."""

from __future__ import annotations

import os
import resource
import shutil
import time

import pytest

from tests.api.conftest import UnixHTTP, open_fds
from tests.api.test_exec_api import _recv_all, _recv_until, _sock, _until

CTRL_P, CTRL_Q, CTRL_X = b"\x10", b"\x11", b"\x18"


@pytest.fixture
def tty_cat(api, api_busybox):
    c = api.client()
    ct = c.containers.run("busybox", "cat", detach=True, stdin_open=True, tty=True)
    yield c, ct
    c.api.remove_container(ct.id, force=True)


def _attach(c, ct, **params):
    return _sock(c.api.attach_socket(ct.id, params={"stdin": 1, "stdout": 1, "stream": 1, **params}))


def test_detach_with_default_keys(tty_cat):
    c, ct = tty_cat
    s = _attach(c, ct)
    s.sendall(b"hello\n")
    assert b"hello" in _recv_until(s, b"hello")
    s.sendall(CTRL_P)
    time.sleep(0.2)
    s.sendall(CTRL_Q)
    _recv_all(s)  # the server ends the stream (what the terminal still echoed comes first)
    s.close()
    assert c.api.inspect_container(ct.id)["State"]["Running"] is True


def test_detach_keys_query_parameter_and_config_file(tty_cat):
    c, ct = tty_cat
    s = _attach(c, ct, detachKeys="ctrl-x")
    s.sendall(b"a" + CTRL_P + CTRL_Q + b"b\n")
    assert b"a^Pb" in _recv_until(s, b"b\r\n")  # not a detach: passed on to the container's terminal
    s.sendall(CTRL_X)
    _recv_all(s)
    s.close()
    # docker-py sends ~/.docker/config.json's detachKeys as the parameter
    c.api._general_configs["detachKeys"] = "ctrl-p"
    s = _sock(c.api.attach_socket(ct.id, params={"stdin": 1, "stdout": 1, "stream": 1}))
    s.sendall(CTRL_P)
    _recv_all(s)
    s.close()
    assert c.api.inspect_container(ct.id)["State"]["Running"] is True


def test_bad_detach_keys_are_refused_before_the_hijack(tty_cat, api):
    _c, ct = tty_cat
    r, body = UnixHTTP(api.sock).call("POST", f"/containers/{ct.id}/attach?stream=1&stdin=1&detachKeys=ctrl-%C3%BC")
    assert r.status == 400 and b"Invalid detach keys" in body


def test_attach_logs_without_stream_returns_the_logs_and_ends(api, api_busybox):
    c = api.client()
    ct = c.containers.run("busybox", ["sh", "-c", "echo hello; echo oops >&2"], detach=True)
    c.api.wait(ct.id)
    t0 = time.monotonic()
    assert c.api.attach(ct.id, stream=False, logs=True) == b"hello\noops\n"
    assert c.api.attach(ct.id, stream=False, logs=True, stderr=False) == b"hello\n"
    running = c.containers.run("busybox", ["sh", "-c", "echo up; exec sleep 60"], detach=True)
    assert _until(lambda: b"up" in running.logs())
    assert c.api.attach(running.id, stream=False, logs=True) == b"up\n"  # does not wait for more
    assert time.monotonic() - t0 < 10
    running.remove(force=True)


def test_docker_cli_run_it_detach_and_attach(api, api_busybox):
    import pexpect

    env = dict(os.environ, DOCKER_HOST=api.url, DOCKER_CONFIG=str(api.sock.parent / "docker-config"))
    docker = shutil.which("docker")
    child = pexpect.spawn(docker, ["run", "-it", "--name", "det", "busybox", "sh"], env=env, timeout=20,
                          dimensions=(30, 100))
    child.expect(r"# ")
    child.sendline("stty size")
    child.expect(r"30 100")
    child.send((CTRL_P + CTRL_Q).decode())
    child.expect(pexpect.EOF)
    child.close()
    assert api.docker("inspect", "-f", "{{.State.Running}}", "det").out == "true\n"
    child = pexpect.spawn(docker, ["attach", "--detach-keys", "ctrl-x", "det"], env=env, timeout=20)
    child.sendline("echo back-$((40+2))")
    child.expect("back-42")
    child.send(CTRL_X.decode())
    child.expect(pexpect.EOF)
    child.close()
    assert api.docker("inspect", "-f", "{{.State.Running}}", "det").out == "true\n"
    api.docker("rm", "-f", "det")


def test_clients_that_hang_up_mid_attach_free_everything(tty_cat, api):
    c, ct = tty_cat
    pid = api.proc.pid
    c.api.inspect_container(ct.id)
    c.close()
    time.sleep(0.5)
    base = open_fds(pid), len(os.listdir(f"/proc/{pid}/task"))
    c = api.client()
    for _ in range(3):
        s = _sock(c.api.attach_socket(ct.id, params={"stdin": 1, "stdout": 1, "stream": 1}))
        s.sendall(b"ping\n")
        _recv_until(s, b"ping")
        s.close()  # gone without a word: the server sees the hang-up
    c.close()
    ok = _until(lambda: open_fds(pid) <= base[0] and len(os.listdir(f"/proc/{pid}/task")) <= base[1])
    assert ok, (base, os.listdir(f"/proc/{pid}/fd"))
    c = api.client()
    assert c.api.inspect_container(ct.id)["State"]["Running"] is True
    c.close()


class _PipeClient:
    duplex = False

    def __init__(self, rfd: int) -> None:
        self.rfd = rfd
        self.out: list[tuple[int, bytes]] = []

    def fileno(self) -> int:
        return self.rfd

    def read(self) -> bytes:
        return os.read(self.rfd, 65536)

    def write(self, stream: int, data: bytes) -> None:
        self.out.append((stream, data))


class _PipeSource:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd
        self.stdin: list[bytes] = []

    def fds(self) -> list[int]:
        return [self.rfd]

    def read(self, fd: int):
        data = os.read(fd, 65536)
        return (1, data) if data else None

    def write_stdin(self, data: bytes) -> None:
        self.stdin.append(data)
        os.write(self.wfd, data.upper())  # echo, so the test sees its input came through

    def close_stdin(self) -> None:
        os.close(self.wfd)


def _high(fd: int, at: int) -> int:
    os.dup2(fd, at)
    os.close(fd)
    return at


def test_relay_works_on_fds_past_1024():
    """select() cannot wait on fd 1024 or higher; the relay polls."""
    from kran.engine.attach import DETACHED, parse_detach_keys, relay

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1200:
        pytest.skip("the hard fd limit is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    try:
        out_r, out_w = os.pipe()
        in_r, in_w = os.pipe()
        src = _PipeSource(_high(out_r, 1100), _high(out_w, 1101))
        client = _PipeClient(_high(in_r, 1102))
        os.write(in_w, b"abc")
        os.close(in_w)  # the client's EOF closes the source's stdin: its output ends
        assert relay(src, client, stdin=True) is None
        assert client.out == [(1, b"ABC")] and src.stdin == [b"abc"]
        # detach keys across reads, and a partial match passed on
        out_r, out_w = os.pipe()
        in_r, in_w = os.pipe()
        src = _PipeSource(_high(out_r, 1110), _high(out_w, 1111))
        client = _PipeClient(_high(in_r, 1112))
        os.write(in_w, b"x\x10y\x10\x11z")
        assert relay(src, client, stdin=True, keys=parse_detach_keys(None)) == DETACHED
        assert b"".join(src.stdin) == b"x\x10y"
        for fd in (in_w, 1110, 1111, 1112):
            os.close(fd)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _ws_connect(api, path: str):
    import socket as so

    s = so.socket(so.AF_UNIX)
    s.settimeout(10)
    s.connect(str(api.sock))
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    return s, head.decode()


def _ws_send(s, op: int, data: bytes) -> None:
    mask = b"\x01\x02\x03\x04"
    s.sendall(bytes([0x80 | op, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def _ws_recv(s) -> tuple[int, bytes]:
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            assert chunk, "the server closed the connection mid-frame"
            buf += chunk
        return buf

    b0, b1 = exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(exact(2), "big")
    return b0 & 0x0F, exact(n)


def test_websocket_attach(api, api_busybox):
    c = api.client()
    # the docker-py test's shape: attach (logs and stream) before the start, read the output raw
    ct = c.api.create_container("busybox", "printf 'hi there'")
    s, head = _ws_connect(api, f"/v1.45/containers/{ct['Id']}/attach/ws?stdout=1&stream=1&logs=1")
    assert head.startswith("HTTP/1.1 101")
    assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head  # RFC 6455's own example
    c.api.start(ct["Id"])
    assert _ws_recv(s) == (0x2, b"hi there")
    assert _ws_recv(s)[0] == 0x8  # the container ended: a close frame
    s.close()
    # input from the client's (masked) frames; a ping is answered, not passed on
    ct = c.containers.run("busybox", "cat", detach=True, stdin_open=True)
    s, head = _ws_connect(api, f"/containers/{ct.id}/attach/ws?stdin=1&stdout=1&stream=1")
    assert head.startswith("HTTP/1.1 101")
    _ws_send(s, 0x9, b"are you there")
    assert _ws_recv(s) == (0xA, b"are you there")
    _ws_send(s, 0x1, b"echo me\n")
    assert _ws_recv(s) == (0x2, b"echo me\n")
    s.close()
    assert c.api.inspect_container(ct.id)["State"]["Running"] is True
    r, body = UnixHTTP(api.sock).call("GET", f"/containers/{ct.id}/attach/ws?stream=1")  # no upgrade asked
    assert r.status == 400 and b"websocket" in body
    ct.remove(force=True)
