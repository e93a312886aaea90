"""Devices of the bridge driver: the host bridge, and one veth pair per container endpoint.

::

    host netns                               container netns (pinned file)
    kran0 172.17.0.1/16 --- vethXXXXXXX  <==>  eth0 172.17.0.2/16, default via 172.17.0.1

The pair is created with its peer directly inside the container's namespace, so a name clash with
the host is impossible and a crash never leaves the container end on the host.  Deleting either
end deletes both.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass

from kran.network import netlink


def host_ifname(container_id: str, network_id: str) -> str:
    return "veth" + hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()[:7]


def bridge_name(network_id: str) -> str:
    return "kr-" + network_id[:12]


def ensure_bridge(name: str, gateway: str, subnet: str, gateway6: str = "", subnet6: str = "") -> bool:
    """Make the bridge (with the gateway address(es), up) if missing; True if it was created."""
    prefix = ipaddress.ip_network(subnet).prefixlen
    want = f"{gateway}/{prefix}"
    created = False
    if netlink.link_index(name) is None:
        try:
            netlink.add_bridge(name)
            created = True
        except netlink.NetlinkError as e:
            if e.errno != 17:  # EEXIST: a concurrent kran made it
                raise
    if want not in netlink.addrs(name):
        try:
            netlink.add_addr(name, want)
        except netlink.NetlinkError as e:
            if e.errno != 17:
                raise
    if gateway6:
        want6 = f"{ipaddress.ip_address(gateway6)}/{ipaddress.ip_network(subnet6).prefixlen}"
        if want6 not in netlink.addrs(name, netlink.AF_INET6):
            try:
                netlink.add_addr6(name, want6)
            except netlink.NetlinkError as e:
                if e.errno != 17:
                    raise
    netlink.set_link(name, up=True)
    if created:
        try:
            netlink.set_sysctl("net/ipv4/ip_forward", "1")  # docker does the same: NAT needs it
        except OSError:
            pass
    return created


def remove_bridge(name: str) -> None:
    netlink.del_link(name, missing_ok=True)


@dataclass(frozen=True)
class Endpoint:
    host_if: str
    ifname: str  # inside the container: eth0, eth1...
    bridge: str
    ip: str
    prefix: int
    gateway: str
    mac: str
    default_route: bool
    ip6: str = ""  # with prefix6 and gateway6: the endpoint's IPv6 address on an IPv6 network
    prefix6: int = 0
    gateway6: str = ""
    link_local: tuple[str, ...] = ()  # docker's LinkLocalIPs: extra addresses on the interface


def attach(netns_path: str, ep: Endpoint) -> None:
    """Create the veth pair, plug the host end into the bridge, configure the container end."""
    if netlink.link_index(ep.host_if) is not None:
        netlink.del_link(ep.host_if)  # left by a crash
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        netlink.add_veth(ep.host_if, ep.ifname, peer_netns_fd=fd)
    finally:
        os.close(fd)
    try:
        netlink.set_link(ep.host_if, master=ep.bridge, up=True)
        try:
            netlink.set_hairpin(ep.host_if, True)
        except OSError:
            pass

        def inside() -> None:
            netlink.set_link(ep.ifname, address=ep.mac, up=True)
            netlink.add_addr(ep.ifname, f"{ep.ip}/{ep.prefix}")
            if ep.ip6:
                netlink.add_addr6(ep.ifname, f"{ep.ip6}/{ep.prefix6}")
            for ll in ep.link_local:
                # link-local ranges: 169.254.0.0/16 (RFC 3927), fe80::/64 (RFC 4291)
                netlink.add_addr(ep.ifname, f"{ll}/{64 if ':' in ll else 16}")
            if ep.default_route:
                netlink.add_route("default", ep.gateway, dev=ep.ifname)
                if ep.ip6 and ep.gateway6:
                    netlink.add_route("default", ep.gateway6, dev=ep.ifname)

        netlink.in_netns(netns_path, inside)
    except BaseException:
        netlink.del_link(ep.host_if, missing_ok=True)
        raise


def detach(host_if: str) -> None:
    if host_if:
        netlink.del_link(host_if, missing_ok=True)
