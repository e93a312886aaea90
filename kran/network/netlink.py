"""A small rtnetlink client: links, IPv4 addresses and routes, bridge ports, in any netns.

Glossary: a *link* is a network interface (``ip link``), an *addr* an IPv4 address on one
(``ip addr``), a *route* an entry of the main IPv4 table (``ip route``).

Every call opens its own ``NETLINK_ROUTE`` socket and closes it before returning.  A netlink
socket belongs to the network namespace of the thread that created it, so a socket must never
be shared across threads or kept across ``setns``; one socket per call makes that impossible to
get wrong, and costs a few microseconds.  Requests carry ``NLM_F_ACK`` and a sequence number;
the kernel's answer (an ``NLMSG_ERROR`` whose errno is 0 on success) is checked, and a failure
raises :class:`NetlinkError` with the errno and, when the kernel gives one, its extended-ack text.

To work inside another namespace, use :func:`in_netns`: it runs a function in a short-lived
thread that has joined the namespace (``setns`` affects only the calling thread, and Python
must not ``setns`` its main thread, which others may be using).

Formats (``include/uapi/linux/netlink.h``, ``rtnetlink.h``, ``if_link.h``, ``if_addr.h``):
``nlmsghdr`` is ``len u32, type u16, flags u16, seq u32, pid u32``; attributes are
``len u16, type u16`` followed by the value, each padded to 4 bytes.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")

# --- netlink.h -------------------------------------------------------------------------------
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200  # on an NLMSG_ERROR: extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1

NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

_NLMSGHDR = struct.Struct("=IHHII")

# --- rtnetlink.h -----------------------------------------------------------------------------
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26

AF_UNSPEC = 0
AF_INET = 2
AF_INET6 = 10
AF_BRIDGE = 7

IFF_UP = 0x1

# struct ifinfomsg: family u8, pad, type u16, index i32, flags u32, change u32
_IFINFOMSG = struct.Struct("=BxHiII")
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_PROTINFO = 12
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_INFO_SLAVE_KIND = 4
IFLA_INFO_SLAVE_DATA = 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin: forward frames back out of the port they came in on

# struct ifaddrmsg: family u8, prefixlen u8, flags u8, scope u8, index u32
_IFADDRMSG = struct.Struct("=BBBBI")
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_F_NODAD = 0x02  # ifa_flags: no duplicate address detection (the address is usable at once)

# struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type (u8 each), flags u32
_RTMSG = struct.Struct("=BBBBBBBBI")
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

IFNAMSIZ = 16
_RECV_BUF = 1 << 18  # a dump datagram is at most ~32 KiB; leave ample room


class NetlinkError(OSError):
    """The kernel refused a request; ``errno`` is its error (EEXIST, ENODEV, ...)."""


class Link(NamedTuple):
    index: int
    name: str
    flags: int
    mtu: int | None
    master: int | None  # index of the bridge (or bond) this link is a port of
    address: str | None  # MAC, "02:42:ac:11:00:02"

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


# --- encoding --------------------------------------------------------------------------------


def _attr(kind: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)


def _nest(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind, b"".join(attrs))


def _u8(kind: int, v: int) -> bytes:
    return _attr(kind, struct.pack("=B", v))


def _u32(kind: int, v: int) -> bytes:
    return _attr(kind, struct.pack("=I", v))


def _str(kind: int, s: str) -> bytes:
    return _attr(kind, s.encode() + b"\0")


def _attrs(buf: bytes | memoryview, off: int = 0, end: int | None = None) -> dict[int, bytes]:
    """Parse attributes from ``buf[off:end]``; the nested/byte-order flags are masked off."""
    end = len(buf) if end is None else end
    out: dict[int, bytes] = {}
    while off + 4 <= end:
        length, kind = struct.unpack_from("=HH", buf, off)
        if length < 4 or off + length > end:
            break
        out[kind & NLA_TYPE_MASK] = bytes(buf[off + 4 : off + length])
        off += (length + 3) & ~3
    return out


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="replace")


def _check_name(name: str) -> bytes:
    b = name.encode()
    if not b or len(b) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"invalid interface name {name!r} (1 to {IFNAMSIZ - 1} bytes, no '/' or spaces)")
    return b


def _parse_mac(mac: str) -> bytes:
    try:
        b = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    except ValueError:
        b = b""
    if len(b) != 6:
        raise ValueError(f"invalid MAC address {mac!r}")
    return b


def _parse_ipv4(addr: str) -> bytes:
    try:
        return socket.inet_pton(socket.AF_INET, addr)
    except OSError:
        raise ValueError(f"invalid IPv4 address {addr!r}") from None


def _parse_cidr(cidr: str) -> tuple[bytes, int]:
    addr, sep, plen = cidr.partition("/")
    if not sep or not plen.isdigit() or not 0 <= int(plen) <= 32:
        raise ValueError(f"invalid IPv4 CIDR {cidr!r}")
    return _parse_ipv4(addr), int(plen)


def _parse_ip(addr: str) -> tuple[int, bytes]:
    """(address family, packed address) of an IPv4 or IPv6 address."""
    if ":" in addr:
        try:
            return AF_INET6, socket.inet_pton(socket.AF_INET6, addr)
        except OSError:
            raise ValueError(f"invalid IPv6 address {addr!r}") from None
    return AF_INET, _parse_ipv4(addr)


# --- transport -------------------------------------------------------------------------------


class _Conn:
    """One NETLINK_ROUTE socket, for one call, in the calling thread's netns."""

    _seq = 0

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            self.sock.bind((0, 0))
            # ask for the kernel's explanation with errors, and not for a copy of our request
            for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
                try:
                    self.sock.setsockopt(SOL_NETLINK, opt, 1)
                except OSError:
                    pass
        except BaseException:
            self.sock.close()
            raise
        self.buf = bytearray(_RECV_BUF)

    def __enter__(self) -> _Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _send(self, kind: int, flags: int, payload: bytes) -> int:
        _Conn._seq = (_Conn._seq + 1) & 0xFFFFFFFF or 1  # uniqueness per socket is all that matters
        seq = _Conn._seq
        self.sock.sendall(_NLMSGHDR.pack(_NLMSGHDR.size + len(payload), kind, flags, seq, 0) + payload)
        return seq

    def _messages(self, seq: int) -> Iterator[tuple[int, int, memoryview]]:
        """Yield (type, flags, payload) of every message answering ``seq``."""
        while True:
            n = self.sock.recv_into(self.buf)
            view = memoryview(self.buf)[:n]
            off = 0
            while off + _NLMSGHDR.size <= n:
                length, kind, flags, mseq, _pid = _NLMSGHDR.unpack_from(view, off)
                if length < _NLMSGHDR.size or off + length > n:
                    break
                if mseq == seq:
                    yield kind, flags, view[off + _NLMSGHDR.size : off + length]
                off += (length + 3) & ~3

    @staticmethod
    def _error(payload: memoryview, flags: int, what: str) -> NetlinkError | None:
        (err,) = struct.unpack_from("=i", payload, 0)
        if err == 0:
            return None
        code = -err
        msg = f"netlink: {what}: {os.strerror(code)}"
        if flags & NLM_F_ACK_TLVS and len(payload) >= 4 + _NLMSGHDR.size:
            # with NETLINK_CAP_ACK the echoed request is only its header, unless the kernel says not
            inner_len = _NLMSGHDR.unpack_from(payload, 4)[0]
            start = 4 + (_NLMSGHDR.size if flags & 0x100 else inner_len)  # 0x100: NLM_F_CAPPED
            text = _attrs(payload, (start + 3) & ~3).get(NLMSGERR_ATTR_MSG)
            if text:
                msg += f" ({_cstr(text)})"
        return NetlinkError(code, msg)

    def request(self, kind: int, flags: int, payload: bytes, what: str) -> list[bytes]:
        """Send one request with NLM_F_ACK; return the replies that came before the ack."""
        seq = self._send(kind, NLM_F_REQUEST | NLM_F_ACK | flags, payload)
        replies: list[bytes] = []
        for mkind, mflags, body in self._messages(seq):
            if mkind == NLMSG_ERROR:
                err = self._error(body, mflags, what)
                if err is not None:
                    raise err
                return replies
            if mkind not in (NLMSG_NOOP, NLMSG_DONE):
                replies.append(bytes(body))
        raise AssertionError("unreachable")

    def dump(self, kind: int, payload: bytes, what: str) -> list[tuple[int, bytes]]:
        """Run a dump request; return (type, payload) of every message, retrying interrupted dumps."""
        for _attempt in range(5):
            seq = self._send(kind, NLM_F_REQUEST | NLM_F_DUMP, payload)
            out: list[tuple[int, bytes]] = []
            interrupted = False
            for mkind, mflags, body in self._messages(seq):
                interrupted |= bool(mflags & NLM_F_DUMP_INTR)
                if mkind == NLMSG_DONE:
                    if len(body) >= 4 and struct.unpack_from("=i", body, 0)[0] < 0:
                        raise NetlinkError(
                            -struct.unpack_from("=i", body, 0)[0], f"netlink: {what}: dump failed"
                        )
                    break
                if mkind == NLMSG_ERROR:
                    err = self._error(body, mflags, what)
                    if err is not None:
                        raise err
                    break
                if mkind != NLMSG_NOOP:
                    out.append((mkind, bytes(body)))
            if not interrupted:  # the table changed during the dump (NLM_F_DUMP_INTR): ask again
                return out
        return out


def _ifinfomsg(index: int = 0, family: int = AF_UNSPEC, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFOMSG.pack(family, 0, index, flags, change)


# --- links -----------------------------------------------------------------------------------


def _parse_link(body: bytes) -> Link:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(body, 0)
    a = _attrs(body, _IFINFOMSG.size)
    mtu = struct.unpack("=I", a[IFLA_MTU][:4])[0] if IFLA_MTU in a else None
    master = struct.unpack("=I", a[IFLA_MASTER][:4])[0] if IFLA_MASTER in a else None
    mac = a.get(IFLA_ADDRESS)
    return Link(
        index=index,
        name=_cstr(a.get(IFLA_IFNAME, b"")),
        flags=flags,
        mtu=mtu,
        master=master or None,
        address=":".join(f"{x:02x}" for x in mac) if mac else None,
    )


def links() -> list[Link]:
    """Every link in the calling thread's network namespace."""
    with _Conn() as c:
        msgs = c.dump(RTM_GETLINK, _ifinfomsg(), "RTM_GETLINK")
    return [_parse_link(body) for kind, body in msgs if kind == RTM_NEWLINK]


def link(name: str) -> Link | None:
    """The link called ``name``, or None."""
    _check_name(name)
    with _Conn() as c:
        try:
            msgs = c.request(RTM_GETLINK, 0, _ifinfomsg() + _str(IFLA_IFNAME, name), f"RTM_GETLINK {name}")
        except NetlinkError as e:
            if e.errno == 19:  # ENODEV
                return None
            raise
    return _parse_link(msgs[0]) if msgs else None


def link_index(name: str) -> int | None:
    ln = link(name)
    return ln.index if ln else None


def link_names() -> list[str]:
    return [ln.name for ln in links()]


def _index_or_raise(name: str, what: str) -> int:
    idx = link_index(name)
    if idx is None:
        raise NetlinkError(19, f"netlink: {what} {name}: {os.strerror(19)}")
    return idx


def add_bridge(name: str) -> None:
    """Create a bridge (STP off, the kernel's default for a new bridge)."""
    _check_name(name)
    payload = _ifinfomsg() + _str(IFLA_IFNAME, name) + _nest(IFLA_LINKINFO, _str(IFLA_INFO_KIND, "bridge"))
    with _Conn() as c:
        c.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, payload, f"RTM_NEWLINK {name}")


def add_veth(name: str, peer: str, peer_netns_fd: int | None = None) -> None:
    """Create a veth pair; with ``peer_netns_fd`` the peer is born inside that network namespace."""
    _check_name(name)
    _check_name(peer)
    peer_attrs = _str(IFLA_IFNAME, peer)
    if peer_netns_fd is not None:
        peer_attrs += _u32(IFLA_NET_NS_FD, peer_netns_fd)
    # VETH_INFO_PEER holds a whole struct ifinfomsg followed by the peer's attributes
    info = _nest(
        IFLA_LINKINFO,
        _str(IFLA_INFO_KIND, "veth"),
        _nest(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, _ifinfomsg() + peer_attrs)),
    )
    payload = _ifinfomsg() + _str(IFLA_IFNAME, name) + info
    with _Conn() as c:
        c.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, payload, f"RTM_NEWLINK {name}")


def set_link(
    name: str,
    *,
    up: bool | None = None,
    master: str | None = None,
    netns_fd: int | None = None,
    new_name: str | None = None,
    mtu: int | None = None,
    address: str | None = None,
) -> None:
    """Change a link in one RTM_SETLINK.  ``master=""`` releases it from its bridge.

    The kernel applies a move to ``netns_fd`` first, then the rest (``do_setlink``), so a link
    can be moved, renamed and brought up in one call.
    """
    _check_name(name)
    attrs = b""
    if new_name is not None:
        _check_name(new_name)
        attrs += _str(IFLA_IFNAME, new_name)
    if netns_fd is not None:
        attrs += _u32(IFLA_NET_NS_FD, netns_fd)
    if mtu is not None:
        attrs += _u32(IFLA_MTU, mtu)
    if address is not None:
        attrs += _attr(IFLA_ADDRESS, _parse_mac(address))
    if master is not None:
        attrs += _u32(IFLA_MASTER, _index_or_raise(master, "RTM_SETLINK") if master else 0)
    index = _index_or_raise(name, "RTM_SETLINK")
    flags = IFF_UP if up else 0
    change = IFF_UP if up is not None else 0
    with _Conn() as c:
        c.request(
            RTM_SETLINK, 0, _ifinfomsg(index, flags=flags, change=change) + attrs, f"RTM_SETLINK {name}"
        )


def del_link(name: str, missing_ok: bool = True) -> None:
    """Delete a link (deleting one end of a veth pair deletes both)."""
    _check_name(name)
    index = link_index(name)
    if index is None:
        if missing_ok:
            return
        raise NetlinkError(19, f"netlink: RTM_DELLINK {name}: {os.strerror(19)}")
    with _Conn() as c:
        try:
            c.request(RTM_DELLINK, 0, _ifinfomsg(index), f"RTM_DELLINK {name}")
        except NetlinkError as e:
            if not (missing_ok and e.errno == 19):  # ENODEV: gone in the meantime
                raise


def set_hairpin(name: str, on: bool = True) -> None:
    """Set hairpin mode on a bridge port, through its bridge (``bridge link set ... hairpin``).

    An AF_BRIDGE RTM_SETLINK reaches the port's master, whose ``br_setlink`` reads the port
    options from IFLA_PROTINFO; it must carry NLA_F_NESTED, or the bridge takes it for the old
    one-byte STP-state form.
    """
    _check_name(name)
    index = _index_or_raise(name, "RTM_SETLINK")
    protinfo = _attr(IFLA_PROTINFO | NLA_F_NESTED, _u8(IFLA_BRPORT_MODE, 1 if on else 0))
    with _Conn() as c:
        c.request(RTM_SETLINK, 0, _ifinfomsg(index, family=AF_BRIDGE) + protinfo, f"RTM_SETLINK {name}")


def hairpin(name: str) -> bool | None:
    """Whether hairpin mode is on for bridge port ``name``; None when it is no bridge port."""
    _check_name(name)
    with _Conn() as c:
        msgs = c.dump(RTM_GETLINK, _ifinfomsg(family=AF_BRIDGE), "RTM_GETLINK")
    for kind, body in msgs:
        if kind != RTM_NEWLINK:
            continue
        a = _attrs(body, _IFINFOMSG.size)
        if _cstr(a.get(IFLA_IFNAME, b"")) != name or IFLA_PROTINFO not in a:
            continue
        mode = _attrs(a[IFLA_PROTINFO]).get(IFLA_BRPORT_MODE)
        return bool(mode[0]) if mode else False
    return None


# --- addresses -------------------------------------------------------------------------------


def add_addr6(name: str, cidr: str) -> None:
    """Add an IPv6 address, e.g. ``"2001:db8::1/64"``, usable at once (no DAD, as docker does:
    the pool is the network's own, and DAD would leave it "tentative" for a second)."""
    _check_name(name)
    a, _, plen = cidr.partition("/")
    fam, addr = _parse_ip(a)
    if fam != AF_INET6 or not plen.isdigit() or not 0 <= int(plen) <= 128:
        raise ValueError(f"invalid IPv6 CIDR {cidr!r}")
    index = _index_or_raise(name, "RTM_NEWADDR")
    payload = _IFADDRMSG.pack(AF_INET6, int(plen), IFA_F_NODAD, RT_SCOPE_UNIVERSE, index) + _attr(IFA_ADDRESS, addr)
    with _Conn() as c:
        c.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, payload, f"RTM_NEWADDR {name} {cidr}")


def add_addr(name: str, cidr: str) -> None:
    """Add an IPv4 address, e.g. ``"172.18.0.1/16"``, with its broadcast address (an IPv6 one
    goes to :func:`add_addr6`)."""
    if ":" in cidr:
        add_addr6(name, cidr)
        return
    _check_name(name)
    addr, plen = _parse_cidr(cidr)
    index = _index_or_raise(name, "RTM_NEWADDR")
    attrs = _attr(IFA_LOCAL, addr) + _attr(IFA_ADDRESS, addr)
    if plen < 31:  # /31 and /32 have no broadcast address (RFC 3021)
        (a,) = struct.unpack("!I", addr)
        attrs += _attr(IFA_BROADCAST, struct.pack("!I", a | (0xFFFFFFFF >> plen)))
    payload = _IFADDRMSG.pack(AF_INET, plen, 0, RT_SCOPE_UNIVERSE, index) + attrs
    with _Conn() as c:
        c.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, payload, f"RTM_NEWADDR {name} {cidr}")


def addrs(name: str, family: int = AF_INET) -> list[str]:
    """The IPv4 (or, with ``family=AF_INET6``, IPv6) addresses on a link, as CIDRs; [] when it
    has none or does not exist."""
    index = link_index(name)
    if index is None:
        return []
    with _Conn() as c:
        msgs = c.dump(RTM_GETADDR, _IFADDRMSG.pack(family, 0, 0, 0, 0), "RTM_GETADDR")
    out = []
    for kind, body in msgs:
        if kind != RTM_NEWADDR:
            continue
        fam, plen, _flags, _scope, idx = _IFADDRMSG.unpack_from(body, 0)
        if fam != family or idx != index:
            continue
        a = _attrs(body, _IFADDRMSG.size)
        raw = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS)  # IFA_ADDRESS is the peer on point-to-point
        if raw:
            out.append(f"{socket.inet_ntop(socket.AF_INET6 if fam == AF_INET6 else socket.AF_INET, raw)}/{plen}")
    return out


# --- routes ----------------------------------------------------------------------------------


def add_route(dst: str, gateway: str | None = None, dev: str | None = None) -> None:
    """Add a main-table IPv4 route (``dst`` ``"default"`` or a CIDR), or a default IPv6 route
    (an IPv6 ``gateway``)."""
    if gateway is None and dev is None:
        raise ValueError("a route needs a gateway or a device")
    family = AF_INET6 if gateway is not None and ":" in gateway else AF_INET
    if dst == "default":
        dst_addr, plen = b"", 0
    elif family == AF_INET6:
        raise ValueError("only a default IPv6 route is supported")
    else:
        dst_addr, plen = _parse_cidr(dst)
    attrs = _attr(RTA_DST, dst_addr) if plen else b""
    if gateway is not None:
        attrs += _attr(RTA_GATEWAY, _parse_ip(gateway)[1])
    if dev is not None:
        attrs += _u32(RTA_OIF, _index_or_raise(dev, "RTM_NEWROUTE"))
    # IPv6 routes are all of universe scope (the kernel refuses others)
    scope = RT_SCOPE_UNIVERSE if gateway is not None or family == AF_INET6 else RT_SCOPE_LINK
    rtm = _RTMSG.pack(family, plen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0)
    with _Conn() as c:
        c.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, rtm + attrs, f"RTM_NEWROUTE {dst}")


def routes() -> list[tuple[str, str | None, str | None]]:
    """The main IPv4 table as (dst CIDR or "default", gateway, device name)."""
    names = {ln.index: ln.name for ln in links()}
    with _Conn() as c:
        msgs = c.dump(RTM_GETROUTE, _RTMSG.pack(AF_INET, 0, 0, 0, 0, 0, 0, 0, 0), "RTM_GETROUTE")
    out: list[tuple[str, str | None, str | None]] = []
    for kind, body in msgs:
        if kind != RTM_NEWROUTE:
            continue
        family, dst_len, _src_len, _tos, table, _proto, _scope, _type, _flags = _RTMSG.unpack_from(body, 0)
        a = _attrs(body, _RTMSG.size)
        if RTA_TABLE in a:  # tables above 255 are only in the attribute
            table = struct.unpack("=I", a[RTA_TABLE][:4])[0]
        if family != AF_INET or table != RT_TABLE_MAIN:
            continue
        if dst_len == 0:
            dst = "default"
        else:
            dst = f"{socket.inet_ntop(socket.AF_INET, a.get(RTA_DST, bytes(4)))}/{dst_len}"
        gw = socket.inet_ntop(socket.AF_INET, a[RTA_GATEWAY]) if RTA_GATEWAY in a else None
        dev = names.get(struct.unpack("=I", a[RTA_OIF][:4])[0]) if RTA_OIF in a else None
        out.append((dst, gw, dev))
    return out


# --- namespaces and sysctls ------------------------------------------------------------------


def _setns_net(fd: int) -> None:
    try:
        from kran.sys.ns import CLONE_NEWNET, setns
    except ImportError:  # pragma: no cover - kran.sys is part of kran; ctypes only as a fallback
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, 0x40000000) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}") from None
        return
    setns(fd, CLONE_NEWNET)


def in_netns(path: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Run ``fn(*args, **kw)`` in the network namespace pinned at ``path``; return its result.

    It runs in a fresh thread that joins the namespace and then ends, so the caller's thread is
    never moved.  Sockets made by ``fn`` stay in that namespace after it returns, which is how
    a caller listens inside a container's network.  ``fn``'s exception is re-raised here.
    """
    import threading

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    result: list[Any] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            _setns_net(fd)
            result.append(fn(*args, **kw))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            error.append(e)

    try:
        t = threading.Thread(target=run, name=f"netns:{os.path.basename(path)}", daemon=True)
        t.start()
        t.join()
    finally:
        os.close(fd)
    if error:
        raise error[0]
    return result[0]


def set_sysctl(key: str, value: str) -> None:
    """Write ``/proc/sys/<key>`` (e.g. ``net/ipv4/ip_forward``); net.* keys follow the calling
    thread's network namespace, so call it through :func:`in_netns` for a container."""
    parts = key.replace(".", "/").split("/") if "/" not in key else key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid sysctl key {key!r}")
    with open(os.path.join("/proc/sys", *parts), "w") as f:
        f.write(value)
