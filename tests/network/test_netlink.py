"""kran.network.netlink against the real kernel (runs as root).

Every test works only inside network namespaces of its own, pinned at files under tmp_path by
kran.network.netns and entered with ``in_netns``; the fixture unpins them even when the test
fails, and checks that the host's links and mounts are as they were.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kran.network import netlink as nl
from kran.network import netns

pytestmark = pytest.mark.privileged

NetnsFactory = Callable[[str], str]


@pytest.fixture
def make_netns(tmp_path: Path) -> Iterator[NetnsFactory]:
    """Returns a function that creates a named netns (lo up) and gives its path."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    host_links = sorted(nl.link_names())
    made: list[str] = []

    def make(name: str) -> str:
        path = str(tmp_path / "netns" / name)
        netns.create(path)
        made.append(path)
        return path

    try:
        yield make
    finally:
        for path in reversed(made):
            netns.remove(path)
        mountinfo = Path("/proc/self/mountinfo").read_text()
        assert str(tmp_path) not in mountinfo, "a netns pin was left mounted"
        assert sorted(nl.link_names()) == host_links, "the test changed the host's links"


def _flags_up(name: str) -> bool:
    ln = nl.link(name)
    assert ln is not None, name
    return ln.up


def test_bridge_address_up(make_netns: NetnsFactory) -> None:
    a = make_netns("a")

    def setup() -> tuple:
        nl.add_bridge("kbr0")
        nl.add_addr("kbr0", "10.77.0.1/24")
        nl.set_link("kbr0", up=True, mtu=1400, address="02:42:0a:4d:00:01")
        return nl.link("kbr0"), nl.addrs("kbr0"), nl.link_names(), nl.routes()

    ln, addrs, names, routes = nl.in_netns(a, setup)
    assert ln is not None and ln.up and ln.mtu == 1400 and ln.address == "02:42:0a:4d:00:01"
    assert nl.in_netns(a, nl.link_index, "kbr0") == ln.index
    assert addrs == ["10.77.0.1/24"]
    assert sorted(names) == ["kbr0", "lo"]
    # the kernel adds the subnet route once the address is on an up link
    assert ("10.77.0.0/24", None, "kbr0") in routes
    # nothing of it is visible from the host's namespace
    assert "kbr0" not in nl.link_names()


def test_duplicate_name_is_eexist(make_netns: NetnsFactory) -> None:
    a = make_netns("a")

    def dup() -> None:
        nl.add_bridge("kran0")
        nl.add_bridge("kran0")

    with pytest.raises(nl.NetlinkError) as ei:
        nl.in_netns(a, dup)
    assert ei.value.errno == errno.EEXIST
    assert "RTM_NEWLINK kran0: File exists" in str(ei.value)
    assert isinstance(ei.value, OSError)


def test_del_link(make_netns: NetnsFactory) -> None:
    a = make_netns("a")

    def run() -> None:
        nl.add_veth("kv0", "kv1")
        assert {"kv0", "kv1"} <= set(nl.link_names())
        nl.del_link("kv0")  # takes its peer with it
        assert nl.link_index("kv0") is None and nl.link_index("kv1") is None
        nl.del_link("kv0")  # missing_ok by default
        with pytest.raises(nl.NetlinkError) as ei:
            nl.del_link("kv0", missing_ok=False)
        assert ei.value.errno == errno.ENODEV
        with pytest.raises(nl.NetlinkError) as ei:
            nl.set_link("nosuch0", up=True)
        assert ei.value.errno == errno.ENODEV

    nl.in_netns(a, run)


def test_names_are_checked() -> None:
    with pytest.raises(ValueError):
        nl.add_bridge("x" * 16)
    with pytest.raises(ValueError):
        nl.add_veth("ok0", "y" * 20)
    with pytest.raises(ValueError):
        nl.set_link("ok0", new_name="z" * 16)
    with pytest.raises(ValueError):
        nl.add_addr("ok0", "10.0.0.1")
    with pytest.raises(ValueError):
        nl.set_link("ok0", address="02:42")


def test_rename_and_move(make_netns: NetnsFactory) -> None:
    a, b = make_netns("a"), make_netns("b")
    fd_b = os.open(b, os.O_RDONLY | os.O_CLOEXEC)
    try:

        def run() -> None:
            nl.add_veth("kv0", "kv1")
            nl.set_link("kv1", netns_fd=fd_b, new_name="eth0", up=True)
            assert nl.link_index("kv1") is None

        nl.in_netns(a, run)
    finally:
        os.close(fd_b)
    assert "eth0" in nl.in_netns(b, nl.link_names)
    assert nl.in_netns(b, _flags_up, "eth0")


def test_veth_bridge_round_trip(make_netns: NetnsFactory) -> None:
    a, b = make_netns("a"), make_netns("b")

    def host_side(fd_b: int) -> None:
        nl.add_bridge("kbr0")
        nl.add_addr("kbr0", "10.88.0.1/16")
        nl.set_link("kbr0", up=True)
        nl.add_veth("kveth0", "eth0", peer_netns_fd=fd_b)
        assert nl.link_index("eth0") is None  # the peer was born in b
        nl.set_link("kveth0", master="kbr0", up=True)
        nl.set_hairpin("kveth0")
        nl.set_sysctl("net/ipv4/ip_forward", "1")

    def container_side() -> None:
        nl.set_link("eth0", address="02:42:0a:58:00:02", up=True)
        nl.add_addr("eth0", "10.88.0.2/16")
        nl.add_route("default", gateway="10.88.0.1")

    host_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    fd_b = os.open(b, os.O_RDONLY | os.O_CLOEXEC)
    try:
        nl.in_netns(a, host_side, fd_b)
    finally:
        os.close(fd_b)
    nl.in_netns(b, container_side)

    # what was set reads back
    port = nl.in_netns(a, nl.link, "kveth0")
    assert port is not None and port.up and port.master == nl.in_netns(a, nl.link_index, "kbr0")
    assert nl.in_netns(a, nl.hairpin, "kveth0") is True
    assert nl.in_netns(a, nl.hairpin, "kbr0") is None  # the bridge itself is no port
    assert nl.in_netns(a, Path("/proc/sys/net/ipv4/ip_forward").read_text).strip() == "1"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_forward
    assert nl.in_netns(b, nl.addrs, "eth0") == ["10.88.0.2/16"]
    assert nl.in_netns(b, nl.link, "eth0").address == "02:42:0a:58:00:02"
    rts = nl.in_netns(b, nl.routes)
    assert ("default", "10.88.0.1", "eth0") in rts
    assert ("10.88.0.0/16", None, "eth0") in rts

    nl.in_netns(a, nl.set_hairpin, "kveth0", False)
    assert nl.in_netns(a, nl.hairpin, "kveth0") is False

    # a real round trip: sockets made inside each netns, used from this thread
    def udp(addr: str) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, 0))
        s.settimeout(0.2)
        return s

    server = nl.in_netns(a, udp, "10.88.0.1")
    client = nl.in_netns(b, udp, "10.88.0.2")
    try:
        deadline = time.monotonic() + 10
        reply = None
        while reply is None and time.monotonic() < deadline:
            client.sendto(b"ping", server.getsockname())
            try:
                data, peer = server.recvfrom(100)
            except TimeoutError:
                continue
            assert data == b"ping" and peer[0] == "10.88.0.2"
            server.sendto(b"pong", peer)
            try:
                reply = client.recvfrom(100)
            except TimeoutError:
                continue
        assert reply is not None, "no UDP round trip across the veth/bridge"
        assert reply == (b"pong", server.getsockname())
    finally:
        server.close()
        client.close()

    # and TCP, listening inside b, connecting from a
    listener = nl.in_netns(b, socket.create_server, ("10.88.0.2", 0))
    try:
        conn_out = nl.in_netns(a, socket.create_connection, listener.getsockname(), 5)
        conn_in, _ = listener.accept()
        with conn_out, conn_in:
            conn_out.sendall(b"hello")
            assert conn_in.recv(5) == b"hello"
    finally:
        listener.close()

    nl.in_netns(a, nl.del_link, "kveth0")
    assert "eth0" not in nl.in_netns(b, nl.link_names)


def test_in_netns_reraises(make_netns: NetnsFactory) -> None:
    a = make_netns("a")

    def boom() -> None:
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        nl.in_netns(a, boom)
    assert nl.in_netns(a, nl.link_names) == ["lo"]
    assert nl.in_netns(a, lambda x, *, y: x + y, 1, y=2) == 3


def test_routes_with_dev(make_netns: NetnsFactory) -> None:
    a = make_netns("a")

    def run() -> list:
        nl.add_bridge("kbr1")
        nl.set_link("kbr1", up=True)
        nl.add_route("192.168.200.0/24", dev="kbr1")
        with pytest.raises(nl.NetlinkError) as ei:
            nl.add_route("192.168.200.0/24", dev="kbr1")
        assert ei.value.errno == errno.EEXIST
        return nl.routes()

    assert ("192.168.200.0/24", None, "kbr1") in nl.in_netns(a, run)
