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


def ensure_bridge(name: str, gateway: str, subnet: str) -> bool:
    """Make the bridge (with the gateway address, up) if missing; True if it was created."""
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
            if ep.default_route:
                netlink.add_route("default", ep.gateway, dev=ep.ifname)

        netlink.in_netns(netns_path, inside)
    except BaseException:
        netlink.del_link(ep.host_if, missing_ok=True)
        raise


def detach(host_if: str) -> None:
    if host_if:
        netlink.del_link(host_if, missing_ok=True)
