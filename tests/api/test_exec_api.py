"""Exec through the Engine API (docker-py and the docker CLI): detach keys, framing chosen by the start
call, exit codes of execs that cannot start, user/workdir, resize, clients that hang up."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from tests.api.conftest import open_fds
from tests.api.helpers import until as _until

CTRL_P, CTRL_Q, CTRL_X = b"\x10", b"\x11", b"\x18"




class _Hijacked:
    """docker-py's hijacked socket: its SocketIO wrapper holds a reference to the socket, so
    closing the socket alone would leave the connection open."""

    def __init__(self, io) -> None:
        self.io = io
        self.sock = getattr(io, "_sock", io)

    def __getattr__(self, name):
        return getattr(self.sock, name)

    def close(self) -> None:
        self.io.close()
        self.sock.close()


def _sock(s):
    return _Hijacked(s)


def _recv_until(sock: socket.socket, needle: bytes, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    buf = b""
    while needle not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def _recv_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    buf = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return buf
        buf += chunk


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        kind, n = struct.unpack(">BxxxL", data[:8])
        out.append((kind, data[8:8 + n]))
        data = data[8 + n:]
    return out


@pytest.fixture
def cat(api, api_busybox):
    c = api.client()
    ct = c.containers.run("busybox", "cat", detach=True, stdin_open=True)
    yield c, ct
    ct.remove(force=True)


def _ps(ct) -> str:
    return ct.exec_run("ps -o pid,args").output.decode()


def test_detach_with_default_keys_ends_the_stream_and_keeps_the_exec(cat):
    c, ct = cat
    ex = c.api.exec_create(ct.id, ["sh", "-c", "echo ready; exec sleep 300"], stdin=True, tty=True)
    s = _sock(c.api.exec_start(ex["Id"], tty=True, socket=True))
    assert b"ready" in _recv_until(s, b"ready")
    s.sendall(CTRL_P)
    time.sleep(0.2)
    s.sendall(CTRL_Q)
    assert _recv_all(s) == b""  # the server ended the stream
    s.close()
    info = c.api.exec_inspect(ex["Id"])
    assert info["Running"] is True and info["ExitCode"] is None
    assert "sleep 300" in _ps(ct)


def test_detach_keys_from_the_exec_config(cat):
    c, ct = cat
    # docker-py sends the config file's detachKeys in the create body (camelCase: dockerd matches keys
    # case-insensitively); ctrl-p ctrl-q are then plain input
    ex = c.api.exec_create(ct.id, "cat", stdin=True, tty=True, detach_keys="ctrl-x")
    assert c.api.exec_inspect(ex["Id"])["DetachKeys"] == "ctrl-x"
    s = _sock(c.api.exec_start(ex["Id"], tty=True, socket=True))
    s.sendall(b"one" + CTRL_P + CTRL_Q + b"two\n")
    got = _recv_until(s, b"two")
    # passed on to the container's terminal, which echoes ^P (and takes ^Q as XON): no detach
    assert b"one^Ptwo" in got
    s.sendall(CTRL_X)
    _recv_all(s)  # ends (whatever echo was still under way)
    s.close()
    assert c.api.exec_inspect(ex["Id"])["Running"] is True


def test_bad_detach_keys_are_refused(cat):
    import docker

    c, ct = cat
    with pytest.raises(docker.errors.APIError) as ei:
        c.api.exec_create(ct.id, "true", detach_keys="ctrl-ü")
    assert ei.value.status_code == 400 and "Invalid detach keys" in ei.value.explanation


def test_framing_follows_the_start_calls_tty(cat):
    c, ct = cat
    # a terminal for the process, multiplexed frames for the client (the start says Tty false)
    ex = c.api.exec_create(ct.id, ["printf", "in a tty"], tty=True)
    s = _sock(c.api.exec_start(ex["Id"], socket=True))
    assert _frames(_recv_all(s)) == [(1, b"in a tty")]
    s.close()
    # pipes for the process, a raw stream for the client
    ex = c.api.exec_create(ct.id, ["sh", "-c", "echo out; echo err >&2"])
    s = _sock(c.api.exec_start(ex["Id"], tty=True, socket=True))
    data = _recv_all(s)
    s.close()
    assert sorted(data.split()) == [b"err", b"out"] and b"\x01\x00\x00\x00" not in data
    # demux of a tty exec: all of it on stdout, nothing lost at its start
    ex = c.api.exec_create(ct.id, ["sh", "-c", "echo hello out; sleep 0.3; echo hello err >&2"], tty=True)
    assert c.api.exec_start(ex["Id"], tty=True) == b"hello out\r\nhello err\r\n"


def test_exec_that_cannot_start_exits_126_with_dockers_message(cat, api):
    c, ct = cat
    code, out = ct.exec_run("no-such-command")
    assert code == 126
    assert out == (b'OCI runtime exec failed: exec failed: unable to start container process: exec: "no-such-command": '
                   b'executable file not found in $PATH: unknown\r\n')
    code, out = ct.exec_run("/etc/passwd")
    assert code == 126 and b'exec: "/etc/passwd": permission denied' in out
    ex = c.api.exec_create(ct.id, "no-such-command")
    c.api.exec_start(ex["Id"])
    assert c.api.exec_inspect(ex["Id"])["ExitCode"] == 126
    code, out = ct.exec_run("true", user="nosuchuser")
    assert (code, out) == (126, b"unable to find user nosuchuser: no matching entries in passwd file\r\n")
    # the docker CLI: the same message and exit status
    r = api.docker("exec", ct.id, "no-such-command", check=False)
    assert r.returncode == 126 and "executable file not found in $PATH" in r.out + r.err
    r = api.docker("exec", ct.id, "/etc/passwd", check=False)
    assert r.returncode == 126 and "permission denied" in r.out + r.err
    assert api.docker("exec", ct.id, "sh", "-c", "exit 3", check=False).returncode == 3


def test_exec_as_user_in_workdir(cat, api):
    c, ct = cat
    assert ct.exec_run("whoami", user="nobody") == (0, b"nobody\n")
    assert ct.exec_run("id -u", user="65534:65534") == (0, b"65534\n")
    assert ct.exec_run("pwd", workdir="/etc") == (0, b"/etc\n")
    code, out = ct.exec_run("pwd", workdir="/no/such/dir")
    assert code == 126 and b"/no/such/dir" in out
    assert api.docker("exec", "-u", "nobody", "-w", "/tmp", ct.id, "sh", "-c", "whoami; pwd").out == "nobody\n/tmp\n"


def test_exec_start_socket_reads_the_output(cat):
    c, ct = cat
    ex = c.api.exec_create(ct.id, ["sh", "-c", "read x; echo got-$x"], stdin=True)
    s = _sock(c.api.exec_start(ex["Id"], socket=True))
    s.sendall(b"it\n")
    assert _frames(_recv_all(s)) == [(1, b"got-it\n")]
    s.close()
    assert _until(lambda: c.api.exec_inspect(ex["Id"])["ExitCode"] == 0)


def test_resize_changes_the_terminal_size(cat):
    c, ct = cat
    ex = c.api.exec_create(ct.id, ["sh", "-c", "stty size; read x; stty size"], stdin=True, tty=True)
    s = _sock(c.api.exec_start(ex["Id"], tty=True, socket=True))
    assert b"24 80" in _recv_until(s, b"24 80")  # docker's default size
    c.api.exec_resize(ex["Id"], height=33, width=111)
    s.sendall(b"\n")
    assert b"33 111" in _recv_until(s, b"33 111")
    s.close()
    with pytest.raises(Exception) as ei:
        c.api.exec_resize("0" * 64, height=10, width=10)
    assert "No such exec instance" in str(ei.value)


def test_docker_cli_exec_it_resize_and_detach(cat, api):
    import shutil

    import pexpect

    _c, ct = cat
    env = dict(os.environ, DOCKER_HOST=api.url, DOCKER_CONFIG=str(api.sock.parent / "docker-config"))
    child = pexpect.spawn(shutil.which("docker"), ["exec", "-it", ct.id, "sh"], env=env, timeout=20,
                          dimensions=(30, 100))
    child.expect(r"# ")
    child.sendline("stty size")
    child.expect(r"30 100")
    child.setwinsize(41, 121)
    time.sleep(0.3)
    child.sendline("stty size")
    child.expect(r"41 121")
    child.send(CTRL_P.decode() + CTRL_Q.decode())
    child.expect(pexpect.EOF)
    child.close()
    assert "sh" in _ps(ct)


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_clients_that_hang_up_free_everything(cat, api):
    c, ct = cat
    pid = api.proc.pid
    ct.exec_run("true")  # warm up: the service's lazy imports
    c.close()  # the client's kept-alive connections, and the server's threads serving them, go
    time.sleep(0.5)
    base = (open_fds(pid), _threads(pid))
    c = api.client()
    # without a terminal: the hang-up closes the process's stdin, so cat ends
    ex = c.api.exec_create(ct.id, "cat", stdin=True)
    s = _sock(c.api.exec_start(ex["Id"], socket=True))
    s.sendall(b"x\n")
    _recv_until(s, b"x")
    s.close()
    assert _until(lambda: c.api.exec_inspect(ex["Id"])["ExitCode"] == 0)
    # with a terminal the process runs on (as after a detach) until the container goes
    ex2 = c.api.exec_create(ct.id, "cat", stdin=True, tty=True)
    s = _sock(c.api.exec_start(ex2["Id"], tty=True, socket=True))
    s.sendall(b"y\n")
    _recv_until(s, b"y")
    s.close()
    time.sleep(0.3)
    assert c.api.exec_inspect(ex2["Id"])["Running"] is True
    c.api.kill(ct.id)  # (not ct.kill(): ct's client is the one closed above, which would reconnect)
    assert _until(lambda: c.api.exec_inspect(ex2["Id"])["Running"] is False)
    c.close()
    # every fd (pipes, pty master, console socket, database connections) and thread is gone
    ok = _until(lambda: open_fds(pid) <= base[0] and _threads(pid) <= base[1])
    assert ok, (base, open_fds(pid), _threads(pid), [os.readlink(f"/proc/{pid}/fd/{f}") for f in os.listdir(f"/proc/{pid}/fd")])


def test_kran_cli_and_api_share_the_engine(cat, api):
    # `kran exec` runs the engine code the API runs: the same message and exit codes
    _c, ct = cat
    r = api.kran("exec", ct.id, "no-such-command", check=False)
    assert r.returncode == 126 and 'exec: "no-such-command": executable file not found in $PATH' in r.err
    assert api.kran("exec", "-u", "nobody", "-w", "/tmp", ct.id, "sh", "-c", "whoami; pwd").out == "nobody\n/tmp\n"
    assert api.kran("exec", "-i", ct.id, "cat", input=b"piped\n").out == "piped\n"


def test_exec_create_checks_its_body(cat, api):
    from tests.api.conftest import UnixHTTP

    _c, ct = cat
    http = UnixHTTP(api.sock)
    for body in (b'{"Cmd": 5}', b'{"Cmd": ["true"], "Tty": "yes"}', b'{"Cmd": ["true"], "Env": "A=1"}', b"[1]"):
        r, data = http.call("POST", f"/containers/{ct.id}/exec", body, {"Content-Type": "application/json"})
        assert r.status == 400 and b"invalid" in data.lower(), (body, data)
    r, data = http.call("POST", f"/containers/{ct.id}/exec", b'{"Cmd": []}', {"Content-Type": "application/json"})
    assert r.status == 400 and b"No exec command specified" in data
    # docker's strslice: one string is the whole command
    r, data = http.call("POST", f"/containers/{ct.id}/exec", b'{"Cmd": "true"}', {"Content-Type": "application/json"})
    assert r.status == 201
    r, data = http.call("GET", "/exec/nope/json")
    assert r.status == 404 and b"No such exec instance: nope" in data
