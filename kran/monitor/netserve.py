"""The monitor's network helpers: port proxies (docker-proxy's job) and the embedded DNS server.

Glossary: a *listener* is a socket the engine bound before spawning the monitor and passed by fd
(the monitor never binds host ports); a *relay* is one proxied TCP connection (client <-> target);
a *flow* is one UDP client address with its own connected socket to the target; a *forward* is a
DNS query sent to an upstream server on a socket of its own, answered or timed out.

Lifecycle: :class:`NetServer` is built from ``monitor.json``'s ``"net"`` (see ``docs/monitor.md``),
lives as long as the monitor (across container restarts) and never blocks: the monitor's poll loop
asks :meth:`NetServer.poll_fds` what to wait for, hands events to :meth:`NetServer.handle`, calls
:meth:`NetServer.tick` after each poll and bounds its poll timeout by :meth:`NetServer.timeout`.

Trust boundary: every byte from a client or an upstream server is untrusted: DNS messages are
parsed defensively (a malformed query is dropped or answered FORMERR, never raises out of here),
buffers are bounded, and an error on one connection closes only that connection.

Like the monitor, this module imports only low-level stdlib modules (no socket, json, re, enum).
"""

from __future__ import annotations

import _socket
import errno
import fcntl
import os
import select
import struct
import time

from kran.monitor.monitor import json_loads

Socket = _socket.socket
IN, OUT, ERR, HUP = select.POLLIN, select.POLLOUT, select.POLLERR, select.POLLHUP
NOSIGNAL = _socket.MSG_NOSIGNAL
splice = getattr(os, "splice", None)  # Linux, Python >= 3.10; None: relays use recv/send
SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
SPLICE_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)  # fall back to recv/send

TCP_BUFFER = 256 << 10  # per direction of a relay; when full, stop reading that side (backpressure)
PIPE_SIZE = 1 << 20  # a relay's pipe per direction when splicing (asked for; the kernel may refuse)
SPLICE_ROUNDS = 4  # splice in/out rounds per event while both sides keep up
UDP_IDLE = 60.0  # a UDP flow without traffic this long is dropped
UDP_MAX_FLOWS = 4096  # per proxy; datagrams from new clients beyond it are dropped
DNS_TTL = 600
DNS_PORT = 53
DNS_TIMEOUT = 2.0  # per upstream server
DNS_MAX_PENDING = 512  # forwards in flight; beyond it queries get SERVFAIL at once
DNS_TCP_IDLE = 30.0
UDP_DNS_MAX = 512  # RFC 1035 4.2.1, without EDNS
ACCEPT_PAUSE = 1.0  # after EMFILE/ENFILE, stop accepting for a while instead of spinning
BATCH = 64  # datagrams/connections taken per event, so one busy socket cannot starve the rest

HEADER = struct.Struct(">HHHHHH")
RR_TAIL = struct.Struct(">HHIH")  # type, class, ttl, rdlength after a name
QR, RD, RA, TC = 0x8000, 0x0100, 0x0080, 0x0200
FORMERR, SERVFAIL, NOTIMP = 1, 2, 4
TYPE_A, CLASS_IN = 1, 1


def family_of(host: str) -> int:
    return _socket.AF_INET6 if ":" in host else _socket.AF_INET


def parse_server(s: str, default_port: int = DNS_PORT) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``::1``, ``[::1]:5353`` -> (host, port)."""
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if s.count(":") == 1:
        host, _, port = s.partition(":")
        return host, int(port)
    return s, default_port


def inherit_socket(fd: int) -> Socket:
    """Wrap an fd passed by the engine: non-blocking, and not inherited by the runtime/container."""
    os.set_inheritable(fd, False)
    s = Socket(fileno=fd)
    s.setblocking(False)
    return s


# -- DNS messages (pure) ----------------------------------------------------------------------


def parse_question(msg: bytes) -> tuple[int, int, str, int, int, int]:
    """(id, flags, name, qtype, qclass, end of question); ValueError if malformed."""
    if len(msg) < HEADER.size:
        raise ValueError("short header")
    qid, flags, qd, _, _, _ = HEADER.unpack_from(msg)
    if qd != 1:
        raise ValueError("one question expected")
    i = HEADER.size
    labels = []
    while True:
        if i >= len(msg):
            raise ValueError("truncated name")
        n = msg[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0:
            raise ValueError("compressed question name")
        labels.append(msg[i + 1 : i + 1 + n])
        i += 1 + n
    if i + 4 > len(msg):
        raise ValueError("truncated question")
    qtype, qclass = struct.unpack_from(">HH", msg, i)
    name = b".".join(labels).decode("ascii", "replace").lower()
    return qid, flags, name, qtype, qclass, i + 4


def error_reply(query: bytes, rcode: int) -> bytes:
    """A reply with RCODE and no records; echoes the question if it can be parsed, else none."""
    qid = struct.unpack_from(">H", query)[0] if len(query) >= 2 else 0
    flags = struct.unpack_from(">H", query, 2)[0] if len(query) >= 4 else 0
    try:
        _, _, _, _, _, end = parse_question(query)
        question, qd = query[HEADER.size : end], 1
    except ValueError:
        question, qd = b"", 0
    return HEADER.pack(qid, QR | (flags & (0x7800 | RD)) | RA | rcode, qd, 0, 0, 0) + question


def local_answer(query: bytes, names: dict, max_size: int = 65535) -> bytes | None:
    """The reply for a query about a container name, b"" to drop it, None to forward it.

    A/IN of a known name: its IPv4 addresses (TTL 600, the answer's name a pointer to the
    question, RA set); any other type or class of a known name: NOERROR without answers.
    Replies larger than ``max_size`` are cut to whole records with TC set (RFC 1035 4.1.1).
    """
    try:
        qid, flags, name, qtype, qclass, end = parse_question(query)
    except ValueError:
        if len(query) >= HEADER.size and not query[2] & 0x80:
            return error_reply(query, FORMERR)
        return b""
    if flags & QR:
        return b""  # a response, not a query
    if flags & 0x7800:
        return error_reply(query, NOTIMP)  # only standard queries (opcode 0)
    addrs = names.get(name)
    if addrs is None:
        return None
    records = []
    if qtype == TYPE_A and qclass == CLASS_IN:
        for a in addrs:
            try:
                records.append(
                    b"\xc0\x0c" + RR_TAIL.pack(TYPE_A, CLASS_IN, DNS_TTL, 4) + _socket.inet_aton(a)
                )
            except (OSError, TypeError):
                continue  # not an IPv4 address
    question = query[HEADER.size : end]
    out_flags = QR | (flags & RD) | RA
    room = (max_size - HEADER.size - len(question)) // 16
    if len(records) > room:
        records = records[: max(room, 0)]
        out_flags |= TC
    return HEADER.pack(qid, out_flags, 1, len(records), 0, 0) + question + b"".join(records)


class Names:
    """The ``names`` file, ``{"names": {"web": ["172.18.0.2"]}}``, re-read when it changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.key: tuple | None = None
        self.names: dict = {}

    def get(self) -> dict:
        try:
            st = os.stat(self.path)
        except OSError:
            self.key, self.names = None, {}
            return self.names
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self.key:
            try:
                with open(self.path, "rb") as f:
                    doc = json_loads(f.read().decode())
                raw = doc.get("names") if isinstance(doc, dict) else None
                self.names = {
                    str(k).lower().rstrip("."): [a for a in v if isinstance(a, str)]
                    for k, v in (raw or {}).items()
                    if isinstance(v, list)
                }
            except (OSError, ValueError, UnicodeDecodeError, AttributeError):
                self.names = {}  # being rewritten (not atomically) or broken: no names until fixed
            self.key = key
        return self.names


# -- the server ------------------------------------------------------------------------------


class Handler:
    """Something owning one or more fds in :attr:`NetServer.fds`."""

    def mask(self, fd: int) -> int:
        raise NotImplementedError

    def event(self, fd: int, ev: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class NetServer:
    """All of a container's proxies and its DNS server, driven by the monitor's poll loop."""

    def __init__(self, cfg: dict, clock=time.monotonic) -> None:
        self.clock = clock
        self.fds: dict[int, Handler] = {}
        self.timers: list = []  # handlers with a ``deadline()``/``expire(now)``
        self.listeners: list[Handler] = []
        try:
            for p in cfg.get("proxies") or []:
                proto = p.get("proto", "tcp")
                cls = TcpProxy if proto == "tcp" else UdpProxy if proto == "udp" else None
                if cls is None:
                    raise ValueError(f"net: unknown proxy protocol {proto!r}")
                self.listeners.append(cls(self, int(p["fd"]), str(p["to"]), int(p["port"])))
            dns = cfg.get("dns")
            if dns:
                self.dns = DnsServer(self, dns)
        except BaseException:
            self.close()
            raise

    # the monitor's side

    def poll_fds(self) -> list[tuple[int, int]]:
        """(fd, events) to poll; fds with nothing to wait for are left out (no POLLHUP spin)."""
        out = []
        for fd, h in self.fds.items():
            m = h.mask(fd)
            if m:
                out.append((fd, m))
        return out

    def handle(self, fd: int, ev: int) -> None:
        h = self.fds.get(fd)
        if h is None:
            return
        try:
            h.event(fd, ev)
        except Exception:
            # A bug or an unexpected errno must not take the monitor (and the container) down.
            if h in self.listeners or h is getattr(self, "dns", None):
                return
            h.close()

    def tick(self) -> None:
        now = self.clock()
        for t in list(self.timers):
            try:
                t.expire(now)
            except Exception:
                t.close()

    def timeout(self) -> float | None:
        """Seconds until the next timer is due (None: no timer)."""
        due = [d for t in self.timers if (d := t.deadline()) is not None]
        if not due:
            return None
        return max(0.0, min(due) - self.clock())

    def close(self) -> None:
        for h in list(dict.fromkeys(self.fds.values())):
            try:
                h.close()
            except OSError:
                pass
        self.fds.clear()
        self.timers.clear()

    # for handlers

    def add(self, fd: int, h: Handler) -> None:
        self.fds[fd] = h

    def remove(self, fd: int) -> None:
        self.fds.pop(fd, None)


def _accept(listener: Socket, family: int) -> Socket:
    fd, _ = listener._accept()
    s = Socket(family, _socket.SOCK_STREAM, 0, fd)
    s.setblocking(False)
    return s


class _Listener(Handler):
    def __init__(self, server: NetServer, sock: Socket) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.family = sock.family
        self.paused_until = 0.0
        server.add(self.fd, self)

    def mask(self, fd: int) -> int:
        return IN if self.paused_until <= self.server.clock() else 0

    def accept_some(self) -> list[Socket]:
        out = []
        for _ in range(BATCH):
            try:
                out.append(_accept(self.sock, self.family))
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.paused_until = self.server.clock() + ACCEPT_PAUSE
                    if self not in self.server.timers:
                        self.server.timers.append(self)
                break  # ECONNABORTED and friends: that one is gone, try again next poll
        return out

    def deadline(self) -> float | None:
        return self.paused_until if self.paused_until else None

    def expire(self, now: float) -> None:
        if self.paused_until and now >= self.paused_until:
            self.paused_until = 0.0
            self.server.timers.remove(self)

    def close(self) -> None:
        self.server.remove(self.fd)
        self.sock.close()


class TcpProxy(_Listener):
    def __init__(self, server: NetServer, fd: int, to: str, port: int) -> None:
        super().__init__(server, inherit_socket(fd))
        self.target = (to, port)
        self.target_family = family_of(to)

    def event(self, fd: int, ev: int) -> None:
        for conn in self.accept_some():
            Relay(self.server, conn, self.target_family, self.target)


class Way:
    """One direction of a relay, ``src`` -> ``dst``: a pipe that splice(2) fills from ``src`` and
    empties into ``dst`` (zero-copy: the bytes never reach userland), or, without a pipe, a bounded
    buffer for recv/send (no splice on this platform, no fds left for a pipe, or splice refused)."""

    __slots__ = ("src", "dst", "sfd", "dfd", "eof", "shut", "buf", "pr", "pw", "size", "pending", "full")

    def __init__(self, src: Socket, dst: Socket) -> None:
        self.src, self.dst = src, dst
        self.sfd, self.dfd = src.fileno(), dst.fileno()
        self.eof = False  # read EOF from src
        self.shut = False  # we shut down writing to dst
        self.buf = bytearray()
        self.pr = self.pw = -1  # the pipe's read and write ends; -1: recv/send
        self.size = TCP_BUFFER  # what the pipe holds
        self.pending = 0  # bytes in the pipe, not yet sent to dst
        self.full = False  # splicing into the pipe would block: stop reading until some are sent

    def open_pipe(self) -> None:
        self.pr, self.pw = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self.size = fcntl.fcntl(self.pw, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # EPERM: above fs.pipe-max-size or the user's pipe-user-pages limits
            self.size = fcntl.fcntl(self.pw, fcntl.F_GETPIPE_SZ)

    def unsent(self) -> int:
        return self.pending if self.pr >= 0 else len(self.buf)

    def readable(self) -> bool:
        """Whether to poll src for input: not at EOF, and room to put it (else backpressure)."""
        if self.eof:
            return False
        if self.pr >= 0:
            return not self.full and self.pending < self.size
        return len(self.buf) < TCP_BUFFER

    def unsplice(self) -> None:
        """Go over to recv/send: what is in the pipe moves to the buffer (at most a pipe's worth)."""
        if self.pr < 0:
            return
        while self.pending > 0:
            try:
                data = os.read(self.pr, self.pending)
            except BlockingIOError:
                break
            if not data:
                break
            self.buf += data
            self.pending -= len(data)
        self.close_pipe()

    def close_pipe(self) -> None:
        for fd in (self.pr, self.pw):
            if fd >= 0:
                os.close(fd)
        self.pr = self.pw = -1
        self.pending = 0
        self.full = False


class Relay(Handler):
    """One proxied TCP connection: a :class:`Way` each direction, half-close passed on."""

    def __init__(self, server: NetServer, client: Socket, family: int, target: tuple) -> None:
        self.server = server
        self.c = client
        self.cfd = client.fileno()
        self.closed = False
        self.u = Socket(family, _socket.SOCK_STREAM)
        self.ufd = self.u.fileno()
        self.u.setblocking(False)
        self.up = Way(client, self.u)  # client -> target
        self.down = Way(self.u, client)  # target -> client
        if splice is not None:
            try:  # created per connection (nothing for an idle listener): 4 fds
                self.up.open_pipe()
                self.down.open_pipe()
            except OSError:  # EMFILE/ENFILE/ENOMEM: this connection goes by recv/send
                self.up.close_pipe()
                self.down.close_pipe()
        server.add(self.cfd, self)
        server.add(self.ufd, self)
        err = self.u.connect_ex(target)
        self.connecting = err == errno.EINPROGRESS
        if err not in (0, errno.EINPROGRESS):
            self.close()

    def mask(self, fd: int) -> int:
        if fd == self.cfd:
            return (IN if self.up.readable() else 0) | (OUT if self.down.unsent() else 0)
        if self.connecting:
            return OUT
        return (IN if self.down.readable() else 0) | (OUT if self.up.unsent() else 0)

    def event(self, fd: int, ev: int) -> None:
        if fd == self.ufd and self.connecting:
            if self.u.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR) or ev & (ERR | HUP) and not ev & OUT:
                self.close()  # connection refused or unreachable: drop the client too
                return
            self.connecting = False
            self.flush(self.up)
            return
        if ev & ERR:
            self.close()
            return
        if fd == self.cfd:
            if ev & OUT:
                self.flush(self.down)
            if not self.closed and ev & (IN | HUP):
                self.pump(self.up)
        else:
            if ev & OUT:
                self.flush(self.up)
            if not self.closed and ev & (IN | HUP):
                self.pump(self.down)

    def pump(self, w: Way) -> None:
        """Read what ``w`` has room for from its src, and pass it on."""
        room = TCP_BUFFER - len(w.buf)  # < 0 after a pipe's worth moved to the buffer (unsplice)
        if w.pr < 0 and room > 0:
            try:
                data = w.src.recv(min(65536, room))
            except BlockingIOError:
                return
            except OSError:
                self.close()  # RST
                return
            if data:
                w.buf += data
            else:
                w.eof = True
        elif w.pr >= 0:
            for _ in range(SPLICE_ROUNDS):
                try:
                    n = splice(w.sfd, w.pw, w.size - w.pending, None, None, SPLICE_FLAGS)
                except BlockingIOError:
                    # No data, or no free slot in the pipe (one per skb fragment, so it can fill
                    # before `size` bytes): with bytes pending, wait for dst before reading again.
                    w.full = w.pending > 0
                    break
                except OSError as e:
                    if e.errno in SPLICE_UNSUPPORTED:
                        self.unsplice()
                        self.pump(w)
                    else:
                        self.close()  # RST
                    return
                if not n:
                    w.eof = True
                    break
                w.pending += n
                if w is self.up and self.connecting or not self.flush(w, quiet=True):
                    break  # dst cannot take more yet: its POLLOUT resumes
                if self.closed or w.pr < 0 or w.pending >= w.size:
                    break  # closed, gone over to recv/send, or the pipe is full
        if w is self.up and self.connecting:
            return
        self.flush(w)

    def flush(self, w: Way, quiet: bool = False) -> bool:
        """Send what ``w`` holds to its dst; True if all of it went. Then pass on EOF (unless quiet)."""
        if self.closed:
            return False
        if w.pr >= 0:
            while w.pending:
                try:
                    n = splice(w.pr, w.dfd, w.pending, None, None, SPLICE_FLAGS)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno in SPLICE_UNSUPPORTED:
                        self.unsplice()
                        return self.flush(w, quiet)
                    self.close()  # EPIPE, ECONNRESET
                    return False
                if not n:
                    break
                w.pending -= n
                w.full = False
        else:
            buf = w.buf
            while buf:
                try:
                    n = w.dst.send(buf, NOSIGNAL)
                except BlockingIOError:
                    break
                except OSError:
                    self.close()
                    return False
                del buf[:n]
        if not quiet:
            self.half_close()
        return not w.unsent()

    def unsplice(self) -> None:
        """splice(2) refused these sockets (EINVAL...): this connection goes on by recv/send."""
        self.up.unsplice()
        self.down.unsplice()

    def half_close(self) -> None:
        try:
            up, down = self.up, self.down
            if up.eof and not up.unsent() and not up.shut and not self.connecting:
                self.u.shutdown(_socket.SHUT_WR)
                up.shut = True
            if down.eof and not down.unsent() and not down.shut:
                self.c.shutdown(_socket.SHUT_WR)
                down.shut = True
        except OSError:
            self.close()
            return
        if self.up.shut and self.down.shut:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.remove(self.cfd)
        self.server.remove(self.ufd)
        self.c.close()
        self.u.close()
        self.up.close_pipe()
        self.down.close_pipe()


class UdpProxy(Handler):
    """Datagrams from each client address go out on a socket of their own, connected to the
    target, so replies find their way back; flows idle for UDP_IDLE seconds are dropped."""

    def __init__(self, server: NetServer, fd: int, to: str, port: int) -> None:
        self.server = server
        self.sock = inherit_socket(fd)
        self.fd = self.sock.fileno()
        self.target = (to, port)
        self.family = family_of(to)
        self.flows: dict = {}  # client address -> [socket, last activity]
        self.by_fd: dict[int, tuple] = {}  # flow socket fd -> client address
        server.add(self.fd, self)
        server.timers.append(self)

    def mask(self, fd: int) -> int:
        return IN

    def event(self, fd: int, ev: int) -> None:
        now = self.server.clock()
        if fd == self.fd:
            self.from_clients(now)
            return
        addr = self.by_fd.get(fd)
        flow = self.flows.get(addr)
        if flow is None:
            return
        for _ in range(BATCH):
            try:
                data = flow[0].recv(65535)
            except BlockingIOError:
                break
            except OSError:  # ICMP unreachable from the target: the flow stays, like docker-proxy
                break
            flow[1] = now
            try:
                self.sock.sendto(data, addr)
            except OSError:
                pass

    def from_clients(self, now: float) -> None:
        for _ in range(BATCH):
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                break
            except OSError:
                continue  # a pending ICMP error on the listener; the next datagram is fine
            flow = self.flows.get(addr)
            if flow is None:
                if len(self.flows) >= UDP_MAX_FLOWS:
                    continue
                s = Socket(self.family, _socket.SOCK_DGRAM)
                s.setblocking(False)
                try:
                    s.connect(self.target)
                except OSError:
                    s.close()
                    continue
                flow = self.flows[addr] = [s, now]
                self.by_fd[s.fileno()] = addr
                self.server.add(s.fileno(), self)
            flow[1] = now
            try:
                flow[0].send(data)
            except OSError:
                pass

    def drop(self, addr: tuple) -> None:
        s, _ = self.flows.pop(addr)
        self.by_fd.pop(s.fileno(), None)
        self.server.remove(s.fileno())
        s.close()

    def deadline(self) -> float | None:
        if not self.flows:
            return None
        return min(last for _, last in self.flows.values()) + UDP_IDLE

    def expire(self, now: float) -> None:
        for addr, (_, last) in list(self.flows.items()):
            if now - last >= UDP_IDLE:
                self.drop(addr)

    def close(self) -> None:
        for addr in list(self.flows):
            self.drop(addr)
        self.server.remove(self.fd)
        self.sock.close()


# -- DNS -------------------------------------------------------------------------------------


class Forward:
    """One query on its way to the upstream servers, tried in order, DNS_TIMEOUT each."""

    def __init__(self, dns: DnsServer, query: bytes, reply_to: object) -> None:
        self.dns = dns
        self.query = query
        self.reply_to = reply_to  # a client address (UDP) or a DnsTcpConn
        self.index = -1
        self.sock: Socket | None = None
        self.until = 0.0

    def next_server(self) -> None:
        self.drop_socket()
        server = self.dns.server
        while True:
            self.index += 1
            if self.index >= len(self.dns.upstream):
                self.finish(error_reply(self.query, SERVFAIL))
                return
            host, port = self.dns.upstream[self.index]
            s = Socket(family_of(host), _socket.SOCK_DGRAM)
            s.setblocking(False)
            try:
                s.connect((host, port))
                s.send(self.query)
            except OSError:
                s.close()
                continue
            self.sock = s
            self.until = server.clock() + DNS_TIMEOUT
            server.add(s.fileno(), self)
            return

    def mask(self, fd: int) -> int:
        return IN

    def event(self, fd: int, ev: int) -> None:
        assert self.sock is not None
        for _ in range(BATCH):
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return
            except OSError:  # ECONNREFUSED: nothing listens there; next
                self.next_server()
                return
            # The socket is ours alone and connected, but check it answers this query.
            if len(data) >= HEADER.size and data[:2] == self.query[:2] and data[2] & 0x80:
                self.finish(data)
                return

    def deadline(self) -> float | None:
        return self.until

    def expire(self, now: float) -> None:
        if now >= self.until and self in self.dns.pending:
            self.next_server()

    def finish(self, reply: bytes) -> None:
        self.close()
        self.dns.respond(self.reply_to, reply)

    def drop_socket(self) -> None:
        if self.sock is not None:
            self.dns.server.remove(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        self.drop_socket()
        if self in self.dns.pending:
            self.dns.pending.remove(self)
            self.dns.server.timers.remove(self)
            if isinstance(self.reply_to, DnsTcpConn):
                self.reply_to.pending -= 1


class DnsTcpConn(Handler):
    """One TCP client of the DNS server: 2-byte length-prefixed messages both ways (RFC 1035 4.2.2)."""

    def __init__(self, dns: DnsServer, sock: Socket) -> None:
        self.dns = dns
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.eof = False
        self.closed = False
        self.pending = 0
        self.last = dns.server.clock()
        dns.server.add(self.fd, self)
        dns.server.timers.append(self)

    def mask(self, fd: int) -> int:
        m = IN if not self.eof and len(self.outbuf) < TCP_BUFFER else 0
        return m | (OUT if self.outbuf else 0)

    def event(self, fd: int, ev: int) -> None:
        self.last = self.dns.server.clock()
        if ev & ERR:
            self.close()
            return
        if ev & OUT:
            self.flush()
        if self.closed or not ev & (IN | HUP) or self.eof:
            return
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        if not data:
            self.eof = True
            self.flush()
            return
        self.inbuf += data
        while len(self.inbuf) >= 2:
            n = struct.unpack_from(">H", self.inbuf)[0]
            if len(self.inbuf) < 2 + n:
                break
            msg = bytes(self.inbuf[2 : 2 + n])
            del self.inbuf[: 2 + n]
            self.dns.query(msg, self)
            if self.closed:
                return

    def send(self, msg: bytes) -> None:
        if self.closed:
            return
        self.outbuf += struct.pack(">H", len(msg)) + msg
        self.flush()

    def flush(self) -> None:
        while self.outbuf:
            try:
                n = self.sock.send(self.outbuf, NOSIGNAL)
            except BlockingIOError:
                return
            except OSError:
                self.close()
                return
            del self.outbuf[:n]
        if self.eof and not self.pending:
            self.close()

    def deadline(self) -> float | None:
        return self.last + DNS_TCP_IDLE

    def expire(self, now: float) -> None:
        if now - self.last >= DNS_TCP_IDLE and not self.pending:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.dns.server.remove(self.fd)
        self.dns.server.timers.remove(self)
        self.sock.close()


class DnsServer(_Listener):
    """Docker's embedded DNS (127.0.0.11): container names from the names file, the rest upstream.

    Its UDP and TCP sockets live in the container's network namespace (the engine made them);
    the forwards go out on the monitor's own sockets, in the host's namespace.
    """

    def __init__(self, server: NetServer, cfg: dict) -> None:
        self.udp: Socket | None = None
        self.pending: list[Forward] = []
        self.names = Names(str(cfg.get("names") or ""))
        self.upstream = [parse_server(str(u)) for u in cfg.get("upstream") or []]
        tcp_fd = cfg.get("tcp_fd")
        self.tcp: Socket | None = None
        if tcp_fd is not None:
            super().__init__(server, inherit_socket(int(tcp_fd)))
            self.tcp = self.sock
        else:
            self.server = server
            self.paused_until = 0.0
            self.fd = -1
        udp_fd = cfg.get("udp_fd")
        if udp_fd is not None:
            self.udp = inherit_socket(int(udp_fd))
            self.udp_fd = self.udp.fileno()
            server.add(self.udp_fd, self)

    def mask(self, fd: int) -> int:
        return IN if fd != self.fd else super().mask(fd)

    def event(self, fd: int, ev: int) -> None:
        if fd == self.fd:
            for conn in self.accept_some():
                DnsTcpConn(self, conn)
            return
        assert self.udp is not None
        for _ in range(BATCH):
            try:
                msg, addr = self.udp.recvfrom(65535)
            except BlockingIOError:
                break
            except OSError:
                continue
            self.query(msg, addr)

    def query(self, msg: bytes, reply_to: object) -> None:
        tcp = isinstance(reply_to, DnsTcpConn)
        reply = local_answer(msg, self.names.get(), 65535 if tcp else UDP_DNS_MAX)
        if reply is None:
            if not self.upstream or len(self.pending) >= DNS_MAX_PENDING:
                reply = error_reply(msg, SERVFAIL)
            else:
                f = Forward(self, msg, reply_to)
                self.pending.append(f)
                self.server.timers.append(f)
                if tcp:
                    reply_to.pending += 1  # type: ignore[attr-defined]
                f.next_server()
                return
        if reply:
            self.respond(reply_to, reply)

    def respond(self, reply_to: object, reply: bytes) -> None:
        if isinstance(reply_to, DnsTcpConn):
            reply_to.send(reply)
            if reply_to.eof and not reply_to.pending and not reply_to.outbuf:
                reply_to.close()
        elif self.udp is not None:
            try:
                self.udp.sendto(reply, reply_to)
            except OSError:
                pass

    def close(self) -> None:
        for f in list(self.pending):
            f.close()
        if self.tcp is not None:
            super().close()
        if self.udp is not None:
            self.server.remove(self.udp_fd)
            self.udp.close()
