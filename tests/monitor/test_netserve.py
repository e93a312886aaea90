"""The monitor's port proxies and embedded DNS (kran/monitor/netserve.py), on 127.0.0.1 only.

Most tests drive a NetServer from a thread with a small poll loop (no root); the last one runs it
inside a real monitor, across a restart of the container.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import select
import socket
import struct
import threading
import time

import pytest

from kran.monitor import client, netserve

from .conftest import wait_for


class Loop:
    """Runs a NetServer the way the monitor's poll_once does, in a thread."""

    def __init__(self, cfg: dict) -> None:
        self.net = netserve.NetServer(cfg)
        self.stop = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            while not self.stop:
                p = select.poll()
                fds = self.net.poll_fds()
                for fd, m in fds:
                    p.register(fd, m)
                t = self.net.timeout()
                t = 0.05 if t is None else min(t, 0.05)
                for fd, ev in p.poll(int(t * 1000 + 0.999)):
                    self.net.handle(fd, ev)
                self.net.tick()
        except BaseException as e:  # pragma: no cover - surfaced by close()
            self.error = e

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)
        self.net.close()
        assert self.error is None, self.error


@pytest.fixture
def loops():
    made: list[Loop] = []

    def make(cfg: dict) -> Loop:
        lp = Loop(cfg)
        made.append(lp)
        return lp

    yield make
    for lp in made:
        lp.close()


def tcp_listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def udp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def passed(s: socket.socket) -> int:
    """The fd as the engine would pass it: the server owns it from now on."""
    return s.detach()


def tcp_server(handler) -> int:
    """A TCP server running handler(conn) for each connection in a thread of its own."""
    srv = tcp_listener()

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(c,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def echo_server() -> int:
    """A TCP echo server (one thread per connection) that shuts down writing after EOF."""

    def conn(c: socket.socket) -> None:
        with c:
            while data := c.recv(65536):
                c.sendall(data)
            c.sendall(b"<eof>")
            c.shutdown(socket.SHUT_WR)
            c.recv(1)

    return tcp_server(conn)


def recv_all(s: socket.socket) -> bytes:
    out = []
    while data := s.recv(1 << 20):
        out.append(data)
    return b"".join(out)


# -- TCP proxy ---------------------------------------------------------------------------------


def test_tcp_proxy_relays_and_half_closes(loops):
    port = echo_server()
    front = tcp_listener()
    addr = front.getsockname()
    loops({"proxies": [{"fd": passed(front), "proto": "tcp", "to": "127.0.0.1", "port": port}]})
    with socket.create_connection(addr, timeout=5) as c:
        c.sendall(b"hello")
        assert c.recv(5) == b"hello"
        c.shutdown(socket.SHUT_WR)  # the target sees EOF, answers, closes: we see all of it
        assert recv_all(c) == b"<eof>"


def test_tcp_proxy_large_transfer(loops):
    port = echo_server()
    front = tcp_listener()
    addr = front.getsockname()
    loops({"proxies": [{"fd": passed(front), "proto": "tcp", "to": "127.0.0.1", "port": port}]})
    data = os.urandom(20 << 20)
    got = []
    with socket.create_connection(addr, timeout=20) as c:
        reader = threading.Thread(target=lambda: got.append(recv_all(c)))
        reader.start()
        t0 = time.monotonic()
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        reader.join(30)
        took = time.monotonic() - t0
    print(f"20 MiB echoed through the proxy in {took:.2f}s")
    assert got and hashlib.sha256(got[0]).digest() == hashlib.sha256(data + b"<eof>").digest()


def test_tcp_proxy_connect_failure_closes_client(loops):
    dead = tcp_listener()
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there: connection refused
    front = tcp_listener()
    addr = front.getsockname()
    lp = loops({"proxies": [{"fd": passed(front), "proto": "tcp", "to": "127.0.0.1", "port": port}]})
    with socket.create_connection(addr, timeout=5) as c:
        try:
            assert c.recv(1) == b""
        except ConnectionResetError:
            pass
    assert wait_for(lambda: len(lp.net.fds) == 1, 5)  # only the listener is left


def test_fds_are_not_inherited(loops):
    front = tcp_listener()
    fd = passed(front)
    os.set_inheritable(fd, True)
    loops({"proxies": [{"fd": fd, "proto": "tcp", "to": "127.0.0.1", "port": 1}]})
    assert not os.get_inheritable(fd)


# -- UDP proxy ---------------------------------------------------------------------------------


def test_udp_proxy_round_trip(loops):
    target = udp_socket()
    tport = target.getsockname()[1]

    def echo() -> None:
        while True:
            try:
                data, a = target.recvfrom(65535)
            except OSError:
                return
            target.sendto(b"re:" + data, a)

    threading.Thread(target=echo, daemon=True).start()
    front = udp_socket()
    addr = front.getsockname()
    lp = loops({"proxies": [{"fd": passed(front), "proto": "udp", "to": "127.0.0.1", "port": tport}]})
    clients = [udp_socket() for _ in range(2)]
    for i, c in enumerate(clients):
        c.settimeout(5)
        for j in range(3):
            c.sendto(f"{i}.{j}".encode(), addr)
            data, src = c.recvfrom(100)
            assert data == f"re:{i}.{j}".encode() and src == addr
    assert len(lp.net.listeners[0].flows) == 2
    # idle flows expire
    lp.net.clock = lambda: time.monotonic() + netserve.UDP_IDLE + 1
    assert wait_for(lambda: not lp.net.listeners[0].flows, 5)
    target.close()


# -- DNS ---------------------------------------------------------------------------------------


def dns_query(name: str, qtype: int = 1, qid: int = 0x1234) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)


def dns_parse(msg: bytes) -> tuple[int, int, list[str], bool]:
    """(id, rcode, A addresses, truncated) of a reply."""
    qid, flags, qd, an, _, _ = struct.unpack_from(">HHHHHH", msg)
    assert flags & 0x8000
    i = 12
    for _ in range(qd):
        while msg[i]:
            i += 1 + msg[i]
        i += 5
    addrs: list[str] = []
    ttls: list[int] = []
    for _ in range(an):
        if msg[i] & 0xC0:
            i += 2
        else:
            while msg[i]:
                i += 1 + msg[i]
            i += 1
        rtype, _, ttl, rdlen = struct.unpack_from(">HHIH", msg, i)
        i += 10
        if rtype == 1:
            addrs.append(socket.inet_ntoa(msg[i : i + rdlen]))
            ttls.append(ttl)
        i += rdlen
    dns_parse.ttls = ttls  # type: ignore[attr-defined]
    return qid, flags & 0xF, addrs, bool(flags & 0x0200)


class Dns:
    def __init__(self, loops, tmp_path, upstream: list[str], names: dict | None = None) -> None:
        self.names = tmp_path / "dns.json"
        if names is not None:
            self.write(names)
        u, t = udp_socket(), tcp_listener()
        self.udp_addr, self.tcp_addr = u.getsockname(), t.getsockname()
        self.loop = loops(
            {
                "dns": {
                    "udp_fd": passed(u),
                    "tcp_fd": passed(t),
                    "names": str(self.names),
                    "upstream": upstream,
                }
            }
        )

    def write(self, names: dict) -> None:
        tmp = self.names.with_suffix(".tmp")
        tmp.write_text(json.dumps({"names": names}))
        os.replace(tmp, self.names)

    def ask(self, q: bytes, timeout: float = 10) -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(q, self.udp_addr)
            return s.recv(65535)

    def ask_tcp(self, *qs: bytes) -> list[bytes]:
        with socket.create_connection(self.tcp_addr, timeout=10) as s:
            s.sendall(b"".join(struct.pack(">H", len(q)) + q for q in qs))
            s.shutdown(socket.SHUT_WR)
            data = recv_all(s)
        out = []
        while data:
            n = struct.unpack_from(">H", data)[0]
            out.append(data[2 : 2 + n])
            data = data[2 + n :]
        return out


def fake_upstream(answer: str = "203.0.113.7", *, drop: bool = False) -> tuple[str, list[bytes]]:
    """A UDP DNS server on 127.0.0.1 answering every A query with ANSWER; returns "ip:port"."""
    s = udp_socket()
    seen: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                q, a = s.recvfrom(65535)
            except OSError:
                return
            seen.append(q)
            if drop:
                continue
            qid, _, name, _, _, end = netserve.parse_question(q)
            rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + socket.inet_aton(answer)
            s.sendto(struct.pack(">HHHHHH", qid, 0x8180, 1, 1, 0, 0) + q[12:end] + rr, a)

    threading.Thread(target=serve, daemon=True).start()
    return f"127.0.0.1:{s.getsockname()[1]}", seen


def test_dns_answers_container_names(loops, tmp_path):
    d = Dns(loops, tmp_path, [], {"web": ["172.18.0.2"], "multi": ["172.18.0.3", "172.18.0.4"]})
    assert dns_parse(d.ask(dns_query("web", qid=7))) == (7, 0, ["172.18.0.2"], False)
    assert dns_parse.ttls == [600]  # type: ignore[attr-defined]
    assert dns_parse(d.ask(dns_query("WeB.")))[2] == ["172.18.0.2"]  # case and trailing dot
    assert dns_parse(d.ask(dns_query("multi")))[2] == ["172.18.0.3", "172.18.0.4"]
    # AAAA of a known name: NOERROR, no answers
    assert dns_parse(d.ask(dns_query("web", qtype=28, qid=9))) == (9, 0, [], False)
    reply = d.ask(dns_query("web"))
    assert struct.unpack_from(">H", reply, 2)[0] & 0x0080  # RA


def test_dns_names_file_is_reread(loops, tmp_path):
    d = Dns(loops, tmp_path, [])  # no file yet: no names, no upstream -> SERVFAIL
    assert dns_parse(d.ask(dns_query("web")))[1] == 2
    d.write({"web": ["172.18.0.2"]})
    assert dns_parse(d.ask(dns_query("web")))[2] == ["172.18.0.2"]
    d.write({"web": ["172.18.0.9"]})
    assert dns_parse(d.ask(dns_query("web")))[2] == ["172.18.0.9"]
    d.names.unlink()
    assert dns_parse(d.ask(dns_query("web")))[1] == 2


def test_dns_forwards_unknown_names(loops, tmp_path):
    dead = udp_socket()
    dead_addr = f"127.0.0.1:{dead.getsockname()[1]}"
    dead.close()  # refused: the next server is tried at once
    up, seen = fake_upstream()
    d = Dns(loops, tmp_path, [dead_addr, up], {"web": ["172.18.0.2"]})
    q = dns_query("example.org", qid=0xBEEF)
    assert dns_parse(d.ask(q)) == (0xBEEF, 0, ["203.0.113.7"], False)
    assert seen == [q]


def test_dns_servfail_when_upstream_is_silent(loops, tmp_path):
    up, seen = fake_upstream(drop=True)
    d = Dns(loops, tmp_path, [up], {})
    t0 = time.monotonic()
    qid, rcode, addrs, _ = dns_parse(d.ask(dns_query("example.org", qid=42)))
    assert (qid, rcode, addrs) == (42, 2, [])
    assert netserve.DNS_TIMEOUT - 0.2 < time.monotonic() - t0 < netserve.DNS_TIMEOUT + 2
    assert not d.loop.net.dns.pending


def test_dns_over_tcp(loops, tmp_path):
    up, _ = fake_upstream("198.51.100.1")
    d = Dns(loops, tmp_path, [up], {"web": ["172.18.0.2"]})
    replies = d.ask_tcp(dns_query("web", qid=1), dns_query("example.org", qid=2))
    assert sorted(dns_parse(r)[:3] for r in replies) == [(1, 0, ["172.18.0.2"]), (2, 0, ["198.51.100.1"])]


def test_dns_malformed_queries_are_survived(loops, tmp_path):
    d = Dns(loops, tmp_path, [], {"web": ["172.18.0.2"]})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (
            b"",
            b"\x01",
            b"\x00" * 12,
            dns_query("web")[:-3],
            b"\x12\x34\x01\x00\x00\x01" + b"\xff" * 20,
        ):
            s.sendto(junk, d.udp_addr)
    assert dns_parse(d.ask(dns_query("web")))[2] == ["172.18.0.2"]


def test_local_answer_truncates_over_udp():
    names = {"many": [f"10.0.{i // 256}.{i % 256}" for i in range(100)]}
    reply = netserve.local_answer(dns_query("many"), names, 512)
    assert reply is not None and len(reply) <= 512
    _, rcode, addrs, tc = dns_parse(reply)
    assert rcode == 0 and tc and 0 < len(addrs) < 100
    assert netserve.local_answer(dns_query("other"), names) is None
    assert netserve.parse_server("[::1]:5353") == ("::1", 5353)
    assert netserve.parse_server("192.0.2.1") == ("192.0.2.1", 53)


# -- in a real monitor ---------------------------------------------------------------------------


@pytest.mark.privileged
def test_monitor_serves_net_across_restarts(env, tmp_path):
    port = echo_server()
    front = tcp_listener()
    dns_u, dns_t = udp_socket(), tcp_listener()
    c = env.container(["sh", "-c", "sleep 1; exit 1"], restart="always")
    cfg = dict(c.config)
    names = tmp_path / "dns.json"
    names.write_text(json.dumps({"names": {"web": ["172.18.0.2"]}}))
    cfg["net"] = {
        "proxies": [{"fd": front.fileno(), "proto": "tcp", "to": "127.0.0.1", "port": port}],
        "dns": {"udp_fd": dns_u.fileno(), "tcp_fd": dns_t.fileno(), "names": str(names), "upstream": []},
    }
    (c.dir / "monitor.json").write_text(json.dumps(cfg))
    addr, dns_addr = front.getsockname(), dns_u.getsockname()
    r = client.start(str(c.dir), pass_fds=(front.fileno(), dns_u.fileno(), dns_t.fileno()))
    env.monitor_pids.append(r.monitor_pid)
    for s in (front, dns_u, dns_t):
        s.close()  # the engine's copies
    # the container's processes do not get the monitor's sockets
    init_fds = {os.readlink(f"/proc/{r.pid}/fd/{n}") for n in os.listdir(f"/proc/{r.pid}/fd")}
    assert not any(f.startswith("socket:") for f in init_fds), init_fds

    def round_trip() -> None:
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(b"ping")
            s.shutdown(socket.SHUT_WR)
            assert recv_all(s) == b"ping<eof>"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(dns_query("web", qid=5), dns_addr)
            assert dns_parse(s.recv(512)) == (5, 0, ["172.18.0.2"], False)

    round_trip()
    with open(f"/proc/{r.monitor_pid}/status") as f:
        rss = int(next(ln for ln in f if ln.startswith("VmRSS:")).split()[1])
    print(f"monitor VmRSS with net: {rss} KiB")
    assert rss < 16 * 1024
    assert wait_for(lambda: (c.state() or {}).get("restart_count", 0) >= 1, 15)
    round_trip()
    client.request_stop(str(c.dir))
    c.wait_exited(20)
    c.wait_monitor_gone()
    with pytest.raises(OSError):
        socket.create_connection(addr, timeout=2).close()


# -- TCP relay paths: splice(2) through pipes, and recv/send when splice cannot be used ---------

MODES = ["splice", "recv-send", "splice-refused", "splice-refused-midstream", "pipe-emfile"]


@pytest.fixture(params=MODES)
def relay_mode(request, monkeypatch):
    """Forces one of the relay's paths; yields the list of (patched) splice calls seen."""
    mode = request.param
    real = netserve.splice
    calls: list[int] = []
    if mode != "recv-send" and real is None:
        pytest.skip("no os.splice on this platform")
    if mode == "recv-send":
        monkeypatch.setattr(netserve, "splice", None)
    elif mode in ("splice", "splice-refused", "splice-refused-midstream"):
        after = {"splice": None, "splice-refused": 0, "splice-refused-midstream": 20}[mode]

        def spy(*args):
            calls.append(1)
            if after is not None and len(calls) > after:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real(*args)

        monkeypatch.setattr(netserve, "splice", spy)
    elif mode == "pipe-emfile":
        real_open = netserve.Way.open_pipe

        def open_pipe(way):  # the first pipe works, the second fails: both must go
            calls.append(1)
            if len(calls) % 2 == 0:
                raise OSError(errno.EMFILE, "Too many open files")
            real_open(way)

        monkeypatch.setattr(netserve.Way, "open_pipe", open_pipe)
    yield mode, calls
    if mode != "recv-send":
        assert calls  # the path under test was taken


def proxy_to(loops, port: int) -> tuple[tuple, Loop]:
    front = tcp_listener()
    addr = front.getsockname()
    lp = loops({"proxies": [{"fd": passed(front), "proto": "tcp", "to": "127.0.0.1", "port": port}]})
    return addr, lp


def relays(lp: Loop) -> list:
    return [h for h in set(lp.net.fds.values()) if isinstance(h, netserve.Relay)]


def test_tcp_relay_integrity_both_directions(loops, relay_mode):
    up = os.urandom(48 << 20)
    down = os.urandom(48 << 20)

    def handler(c: socket.socket) -> None:  # hashes what it gets while sending `down`, then EOF
        with c:
            h = hashlib.sha256()
            sender = threading.Thread(target=c.sendall, args=(down,))
            sender.start()
            while data := c.recv(1 << 20):
                h.update(data)
            sender.join()
            c.sendall(h.digest())
            c.shutdown(socket.SHUT_WR)
            c.recv(1)

    addr, lp = proxy_to(loops, tcp_server(handler))
    got: list[bytes] = []
    with socket.create_connection(addr, timeout=30) as c:
        reader = threading.Thread(target=lambda: got.append(recv_all(c)))
        reader.start()
        c.sendall(up)
        c.shutdown(socket.SHUT_WR)
        reader.join(60)
    assert got and len(got[0]) == len(down) + 32
    assert hashlib.sha256(got[0][:-32]).digest() == hashlib.sha256(down).digest()
    assert got[0][-32:] == hashlib.sha256(up).digest()
    assert wait_for(lambda: not relays(lp), 5)
    if relay_mode[0] == "splice-refused-midstream":
        assert len(relay_mode[1]) > 20  # data went through pipes before splice was refused


def test_tcp_relay_half_close_from_target(loops, relay_mode):
    """The target says all it has and shuts down writing; the client, having seen EOF, still sends."""
    tail = os.urandom(4 << 20)
    heard: list[bytes] = []

    def handler(c: socket.socket) -> None:
        with c:
            c.sendall(b"banner" * 1000)
            c.shutdown(socket.SHUT_WR)
            heard.append(recv_all(c))

    addr, lp = proxy_to(loops, tcp_server(handler))
    with socket.create_connection(addr, timeout=10) as c:
        assert recv_all(c) == b"banner" * 1000  # EOF passed on while the other way stays open
        c.sendall(tail)
        c.shutdown(socket.SHUT_WR)
        assert wait_for(lambda: heard, 10)
        assert c.recv(1) == b""
    assert hashlib.sha256(heard[0]).digest() == hashlib.sha256(tail).digest()
    assert wait_for(lambda: not relays(lp), 5)


def test_tcp_relay_backpressure(loops, relay_mode):
    """A target that does not read: the relay holds at most its pipe/buffer, the client blocks."""
    go = threading.Event()
    got: list[bytes] = []

    def handler(c: socket.socket) -> None:
        with c:
            go.wait(20)
            got.append(recv_all(c))

    addr, lp = proxy_to(loops, tcp_server(handler))
    data = os.urandom(64 << 20)
    with socket.create_connection(addr, timeout=10) as c:
        c.setblocking(False)
        sent = 0
        stalled = 0.0
        while stalled < 0.5 and sent < len(data):
            try:
                sent += c.send(data[sent : sent + (1 << 20)])
                stalled = 0.0
            except BlockingIOError:
                time.sleep(0.05)
                stalled += 0.05
        assert sent < len(data)  # stuck: nobody is reading at the far end
        (r,) = relays(lp)
        held = r.up.unsent()
        assert held <= (r.up.size if r.up.pr >= 0 else netserve.TCP_BUFFER + r.up.size)
        go.set()
        c.setblocking(True)
        c.sendall(data[sent:])
        c.shutdown(socket.SHUT_WR)
        assert wait_for(lambda: got, 20)
    assert hashlib.sha256(got[0]).digest() == hashlib.sha256(data).digest()


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_tcp_relay_does_not_leak_fds(loops, relay_mode):
    def echo(c: socket.socket) -> None:  # like echo_server's, but quiet about resets
        with c:
            try:
                while data := c.recv(65536):
                    c.sendall(data)
                c.sendall(b"<eof>")
                c.shutdown(socket.SHUT_WR)
                c.recv(1)
            except OSError:
                pass

    addr, lp = proxy_to(loops, tcp_server(echo))
    with socket.create_connection(addr, timeout=5) as c:  # warm up: threads, lazily opened fds
        c.sendall(b"x")
        c.shutdown(socket.SHUT_WR)
        assert recv_all(c) == b"x<eof>"
    assert wait_for(lambda: not relays(lp), 5)
    before = fd_count()
    with socket.create_connection(addr, timeout=5) as c:
        c.sendall(b"y")
        assert c.recv(1) == b"y"
        (r,) = relays(lp)
        pipes = [fd for fd in (r.up.pr, r.up.pw, r.down.pr, r.down.pw) if fd >= 0]
        expected = {"splice": 4, "recv-send": 0, "pipe-emfile": 0}.get(relay_mode[0])
        assert expected is None or len(pipes) == expected
    for i in range(150):
        c = socket.create_connection(addr, timeout=5)
        c.sendall(os.urandom(200_000))
        if i % 3 == 0:  # RST while data is in flight
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif i % 3 == 1:
            c.shutdown(socket.SHUT_WR)
            assert recv_all(c).endswith(b"<eof>")
        c.close()
    assert wait_for(lambda: not relays(lp), 10)
    assert wait_for(lambda: fd_count() <= before, 10), (fd_count(), before)
    assert len(lp.net.fds) == 1  # the listener
