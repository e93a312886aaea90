"""What a container's networks look like from outside: docker's NetworkSettings (inspect), and
the published ports and network names ``ps`` shows."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from kran.engine.endpointplan import endpoint_rows
from kran.engine.netrecord import endpoint_extra, get_net, resolve

if TYPE_CHECKING:
    from kran.engine import Engine
    from kran.engine.record import Container


def published_ports(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for cid, host_ip, host_port, proto, cport in engine.store.db.execute(
            "SELECT container_id, host_ip, host_port, proto, container_port FROM ports"):
        out.setdefault(cid, []).append({"IP": host_ip, "PrivatePort": cport, "PublicPort": host_port, "Type": proto})
    # exposed but not published ports of running containers show too ("443/tcp")
    for cid, config in engine.store.db.execute(
            "SELECT c.id, c.config FROM containers c WHERE c.config LIKE '%ExposedPorts%' AND EXISTS"
            " (SELECT 1 FROM endpoints e WHERE e.container_id=c.id AND e.ip IS NOT NULL)"):
        have = {(p["PrivatePort"], p["Type"]) for p in out.get(cid, [])}
        for key in json.loads(config).get("ExposedPorts") or {}:
            port, _, proto = key.partition("/")
            if port.isdigit() and (int(port), proto or "tcp") not in have:
                out.setdefault(cid, []).append({"PrivatePort": int(port), "Type": proto or "tcp"})
    return out


def networks_of(engine: Engine) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for cid, name in engine.store.db.execute(
            "SELECT e.container_id, n.name FROM endpoints e JOIN networks n ON n.id=e.network_id ORDER BY e.idx"):
        out.setdefault(cid, []).append(name)
    return out


def settings(engine: Engine, c: Container) -> dict[str, Any]:
    """docker's NetworkSettings for a container."""
    import ipaddress

    from kran.engine.netrecord import net_extra
    from kran.engine.record import netns_path
    from kran.network import ports as P

    db = engine.store.db
    nets: dict[str, Any] = {}
    top = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": ""}
    for nid, _idx, aliases, want, epid, ip, mac, _hif in endpoint_rows(engine, c.id):
        n = get_net(engine, nid)
        prefix = ipaddress.ip_network(n.subnet).prefixlen if n.subnet else 0
        al = json.loads(aliases)
        req, ip6 = endpoint_extra(engine, c.id, nid)
        v6 = net_extra(engine, nid).v6 if ip6 else None
        ipam_cfg: dict[str, Any] = {}
        if want:
            ipam_cfg["IPv4Address"] = want
        if req.ipv6:
            ipam_cfg["IPv6Address"] = req.ipv6
        if req.link_local:
            ipam_cfg["LinkLocalIPs"] = list(req.link_local)
        ep = {
            "IPAMConfig": ipam_cfg or None, "Links": list(req.links) or None,
            "Aliases": (al + [c.id[:12]]) if n.user_defined else None,
            # a MAC asked for is shown before the container runs too (docker's connect --mac-address)
            "MacAddress": mac if ip else req.mac, "NetworkID": n.id, "EndpointID": epid if ip else "",
            "Gateway": n.gateway if ip else "", "IPAddress": ip or "", "IPPrefixLen": prefix if ip else 0,
            "IPv6Gateway": v6.gateway if v6 else "", "GlobalIPv6Address": ip6 or "",
            "GlobalIPv6PrefixLen": ipaddress.ip_network(v6.subnet).prefixlen if v6 else 0,
            "DriverOpts": dict(req.driver_opts) or None,
            "DNSNames": ([c.name, *al, c.id[:12]] if n.user_defined else None),
        }
        nets[n.name] = ep
        if n.builtin and n.is_bridge and ip:
            top = {"EndpointID": epid, "Gateway": n.gateway, "IPAddress": ip, "IPPrefixLen": prefix, "MacAddress": mac}
    mode = c.host_config.get("NetworkMode") or "default"
    if mode in ("host", "none"):
        n = resolve(engine, mode)
        nets[mode] = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "NetworkID": n.id,
                      "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                      "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None}
    ports_map: dict[str, Any] = {}
    if c.running:
        for port, proto in P.exposed(c.config, c.host_config):
            ports_map[f"{port}/{proto}"] = None
        for host_ip, host_port, proto, cport in db.execute(
                "SELECT host_ip, host_port, proto, container_port FROM ports WHERE container_id=? ORDER BY rowid", (c.id,)):
            ports_map.setdefault(f"{cport}/{proto}", None)
            lst = ports_map[f"{cport}/{proto}"] or []
            lst.append({"HostIp": host_ip, "HostPort": str(host_port)})
            ports_map[f"{cport}/{proto}"] = lst
    sandbox = netns_path(engine, c.id) if os.path.exists(netns_path(engine, c.id)) else ""
    return {
        "Bridge": "", "SandboxID": c.id if sandbox else "", "SandboxKey": sandbox, "HairpinMode": False,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": ports_map,
        "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        **top, "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPv6Gateway": "",
        "Networks": nets,
    }
