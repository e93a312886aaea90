"""What a container asks of its networks: docker's EndpointSettings parsed and checked (at create
and at connect), and the ``endpoints`` rows that record it until ``rm``/``disconnect``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kran.engine.netrecord import EndpointExtra, Net, put_endpoint_extra, resolve
from kran.errors import Forbidden, InvalidArgument

if TYPE_CHECKING:
    from kran.engine import Engine


@dataclass(frozen=True)
class EndpointPlan:
    network_id: str
    aliases: tuple[str, ...]
    want_ip: str
    extra: EndpointExtra = EndpointExtra()


def _strs(v: Any, what: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidArgument(f"invalid {what}: expected a list of strings")
    return list(v)


def _str(v: Any, what: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise InvalidArgument(f"invalid {what}: expected a string")
    return v


def parse_endpoint(ep: Any) -> tuple[tuple[str, ...], str, EndpointExtra]:
    """docker's EndpointSettings (create's EndpointsConfig entry, connect's EndpointConfig) as
    (aliases, requested IPv4, the rest); a wrong JSON type is a 400."""
    if ep is None:
        ep = {}
    if not isinstance(ep, dict):
        raise InvalidArgument("invalid endpoint settings: expected a JSON object")
    ipam = ep.get("IPAMConfig") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("invalid IPAMConfig: expected a JSON object")
    opts = ep.get("DriverOpts") or {}
    if not isinstance(opts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in opts.items()):
        raise InvalidArgument("invalid DriverOpts: expected a JSON object of strings")
    extra = EndpointExtra(links=_strs(ep.get("Links"), "Links"), driver_opts=dict(opts),
                          link_local=_strs(ipam.get("LinkLocalIPs"), "LinkLocalIPs"),
                          ipv6=_str(ipam.get("IPv6Address"), "IPv6Address"),
                          mac=_str(ep.get("MacAddress"), "MacAddress"))
    return tuple(_strs(ep.get("Aliases"), "Aliases")), _str(ipam.get("IPv4Address"), "IPv4Address"), extra


def check_endpoint(engine: Engine, n: Net, aliases: tuple[str, ...], want: str, extra: EndpointExtra) -> None:
    """docker's rules for what a container may ask of a network (at create and at connect)."""
    import ipaddress

    from kran.engine.netrecord import net_extra

    if n.builtin and aliases:
        raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
    if (want or extra.ipv6) and n.builtin:
        raise InvalidArgument("user specified IP address is supported on user defined networks only")
    if want:
        try:
            ok = ipaddress.ip_address(want).version == 4 and ipaddress.ip_address(want) in ipaddress.ip_network(n.subnet)
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address: {want}") from None
        if not ok:
            raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {want}")
    if extra.ipv6:
        v6 = net_extra(engine, n.id).v6
        try:
            a = ipaddress.ip_address(extra.ipv6)
        except ValueError:
            raise InvalidArgument(f"invalid IPv6 address: {extra.ipv6}") from None
        if a.version != 6 or v6 is None or a not in ipaddress.ip_network(v6.subnet):
            raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {extra.ipv6}")
    for ll in extra.link_local:
        try:
            ipaddress.ip_address(ll)
        except ValueError:
            raise InvalidArgument(f"invalid link-local IP address: {ll}") from None
    if extra.mac:
        from kran.network.netlink import _parse_mac

        try:
            _parse_mac(extra.mac)
        except ValueError:
            raise InvalidArgument(f"invalid MAC address: {extra.mac}") from None
    for ln in extra.links:
        if not ln.split(":", 1)[0].strip("/"):
            raise InvalidArgument(f"invalid link: {ln}")


def plan(engine: Engine, host_config: dict[str, Any], networking_config: dict[str, Any] | None) -> list[EndpointPlan]:
    """What a new container joins (validated at create, like docker): the network of its
    NetworkMode, then any other network its EndpointsConfig names (API 1.44+)."""
    eps = (networking_config or {}).get("EndpointsConfig") or {}
    if not isinstance(eps, dict):
        raise InvalidArgument("invalid EndpointsConfig: expected a JSON object")
    named = {key: resolve(engine, key) for key in eps}  # docker: "network X not found"
    mode = host_config.get("NetworkMode") or "default"
    if mode in ("host", "none"):
        return []
    if mode.startswith("container:"):
        from kran.engine.record import get

        get(engine, mode.split(":", 1)[1])
        return []
    n = resolve(engine, mode)
    if n.driver == "host":
        host_config["NetworkMode"] = "host"
        return []
    if n.driver == "null":
        host_config["NetworkMode"] = "none"
        return []
    out: list[EndpointPlan] = []
    for key, m in [(next((k for k, v in named.items() if v.id == n.id), mode), n),
                   *((k, v) for k, v in named.items() if v.id != n.id)]:
        if any(p.network_id == m.id for p in out):
            continue
        if m.driver != "bridge":
            raise Forbidden("container cannot be connected to multiple networks with one of the networks in "
                            f"{'host' if m.driver == 'host' else 'private (none)'} mode")
        aliases, want, extra = parse_endpoint(eps.get(key))
        check_endpoint(engine, m, aliases, want, extra)
        out.append(EndpointPlan(m.id, aliases, want, extra))
    return out


def record(db: Any, cid: str, plans: list[EndpointPlan]) -> None:
    """Insert the endpoint rows (inside the container's create transaction)."""
    for i, p in enumerate(plans):
        db.execute(
            "INSERT INTO endpoints(container_id, network_id, idx, aliases, want_ip, endpoint_id) VALUES (?,?,?,?,?,?)",
            (cid, p.network_id, i, json.dumps(list(p.aliases)), p.want_ip, os.urandom(32).hex()),
        )
        put_endpoint_extra(db, cid, p.network_id, p.extra)


def endpoint_rows(engine: Engine, cid: str) -> list[tuple[Any, ...]]:
    return engine.store.db.execute(
        "SELECT network_id, idx, aliases, want_ip, endpoint_id, ip, mac, host_if FROM endpoints"
        " WHERE container_id=? ORDER BY idx", (cid,),
    ).fetchall()
