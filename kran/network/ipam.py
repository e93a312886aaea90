"""Address management, pure: which subnet a new network gets, which address a new endpoint gets.

The engine calls these inside one SQLite write transaction holding every lease, so two
concurrent ``kran run`` never get the same address (the unique index on leases backs that up).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

# docker's default pools: 172.17-31.0.0/16, then 192.168.0-240.0/20
DEFAULT_POOLS = [f"172.{i}.0.0/16" for i in range(17, 32)] + [f"192.168.{i}.0/20" for i in range(0, 256, 16)]


class PoolExhausted(Exception):
    pass


class AddressInUse(Exception):
    pass


def _parse_pool(text: str, version: int, max_prefix: int, wrong_family: str) -> Any:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"invalid CIDR address: {text}") from None
    if net.version != version:
        raise ValueError(f"invalid CIDR address: {text}{wrong_family}")
    if net.network_address != ipaddress.ip_interface(text).ip:
        raise ValueError(f"invalid subnet {text}: it should be {net}")
    if net.prefixlen > max_prefix:
        raise ValueError(f"invalid subnet {text}: too small for a gateway and a container")
    return net


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    """A user's --subnet: "172.30.0.0/16" (host bits must be zero, like docker)."""
    return _parse_pool(text, 4, 30, " (only IPv4 subnets are supported)")  # type: ignore[no-any-return]


def overlaps(a: str, others: Iterable[str]) -> str | None:
    na = ipaddress.ip_network(a, strict=False)
    for o in others:
        try:
            no = ipaddress.ip_network(o, strict=False)
        except ValueError:
            continue
        if no.version == na.version and na.overlaps(no) and no.prefixlen > 0:
            return o
    return None


def parse_subnet6(text: str) -> ipaddress.IPv6Network:
    """An IPv6 pool: "2001:db8::/64" (host bits zero, room for a gateway and a container)."""
    return _parse_pool(text, 6, 126, "")  # type: ignore[no-any-return]


def ula_subnet(seed: str, taken: Iterable[str]) -> str:
    """A unique-local /64 (RFC 4193: fd00::/8 + 40 pseudo-random bits) derived from ``seed``, the
    way docker 27 gives an IPv6 network without a pool one of its own."""
    import hashlib

    taken = list(taken)
    for i in range(64):
        h = hashlib.sha256(f"{seed}/{i}".encode()).digest()
        net = ipaddress.IPv6Network((b"\xfd" + h[:7] + bytes(8), 64))
        if overlaps(str(net), taken) is None:
            return str(net)
    raise PoolExhausted("could not find an available, non-overlapping IPv6 address pool")


def check_gateway(subnet: str, gateway: str) -> str:
    try:
        g = ipaddress.ip_address(gateway)
    except ValueError:
        raise ValueError(f"invalid gateway address: {gateway}") from None
    if g not in ipaddress.ip_network(subnet):
        raise ValueError(f"no matching subnet for gateway {gateway}")
    return str(g)


def check_range(subnet: str, ip_range: str) -> None:
    try:
        rng = ipaddress.ip_network(ip_range)
    except ValueError:
        raise ValueError(f"invalid CIDR address: {ip_range}") from None
    net = ipaddress.ip_network(subnet)
    if rng.version != net.version or not rng.subnet_of(net):  # type: ignore[arg-type]
        raise ValueError(f"no matching subnet for range {ip_range}")


def check_aux(subnet: str, subnet6: str, key: str, addr: str) -> None:
    """An auxiliary address (``--aux-address name=ip``): inside one of the network's pools."""
    try:
        a = ipaddress.ip_address(addr)
    except ValueError:
        raise ValueError(f"invalid auxiliary address {key}={addr}") from None
    if not any(s and a in ipaddress.ip_network(s) for s in (subnet, subnet6)):
        raise ValueError(f"no matching subnet for aux-address {addr}")


def choose_subnet(taken: Iterable[str], pools: Iterable[str] = DEFAULT_POOLS) -> str:
    """The first pool that overlaps neither another network nor a host route."""
    taken = list(taken)
    for p in pools:
        if overlaps(p, taken) is None:
            return p
    raise PoolExhausted("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")


def gateway_of(subnet: str) -> str:
    return str(next(ipaddress.ip_network(subnet).hosts()))


def allocate(subnet: str, gateway: str, used: Iterable[str], want: str = "", ip_range: str = "") -> str:
    """A free host address of SUBNET (never the gateway or one in USED); WANT if given and free."""
    net = ipaddress.ip_network(subnet)
    taken = {ipaddress.ip_address(u) for u in used if u}
    if gateway:
        taken.add(ipaddress.ip_address(gateway))
    if want:
        try:
            a = ipaddress.ip_address(want)
        except ValueError:
            raise ValueError(f"invalid IP address: {want}") from None
        if a not in net or a in (net.network_address, net.broadcast_address):
            raise ValueError(f"no configured subnet or ip-range contain the IP address {want}")
        if a in taken:
            raise AddressInUse(f"Address already in use: {want}")
        return str(a)
    rng = ipaddress.ip_network(ip_range) if ip_range else net
    for a in rng.hosts() if rng.prefixlen < 31 else rng:
        if a in taken or a in (net.network_address, net.broadcast_address):
            continue
        return str(a)
    raise PoolExhausted(f"no available IPv{net.version} addresses on this network's address pools: {subnet}")


def mac_for(ip: str) -> str:
    """docker's MAC for an address: 02:42 then the four bytes of the IPv4 address."""
    b = ipaddress.ip_address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)
