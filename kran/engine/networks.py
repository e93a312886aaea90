"""Network use cases: docker's bridge driver -- create, inspect, list, remove, prune and filters.

The records live in :mod:`kran.engine.netrecord`; what containers hold on a network (endpoints,
leases, ports, DNS) in :mod:`kran.engine.endpoints`.  Both are re-exported here, the one name the
front ends and the container verbs use.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from kran.engine import label_match
from kran.engine.endpointplan import EndpointPlan, parse_endpoint, plan, record  # noqa: F401 - re-exported
from kran.engine.endpoints import (  # noqa: F401 - re-exported
    Setup,
    connect,
    disconnect,
    reconcile,
    refresh_dns,
    setup,
    teardown,
)
from kran.engine.netrecord import (  # noqa: F401 - re-exported
    BUILTIN,
    COLS,
    DEFAULT_BRIDGE,
    Net,
    NetExtra,
    Pool6,
    all_networks,
    apply_rules,
    ensure_builtin,
    event,
    host_routes,
    net_extra,
    put_net_extra,
    resolve,
    table_exists,
)
from kran.engine.netsettings import networks_of, published_ports, settings  # noqa: F401 - re-exported
from kran.errors import Conflict, Forbidden, InvalidArgument, NotFound
from kran.storage.db import transaction

if TYPE_CHECKING:
    from kran.engine import Engine


def create(engine: Engine, name: str, *, driver: str = "bridge", subnet: str | None = None, gateway: str | None = None,
           ip_range: str | None = None, internal: bool = False, labels: dict[str, str] | None = None,
           options: dict[str, str] | None = None, attachable: bool = False, ipv6: bool = False,
           subnet6: str | None = None, gateway6: str | None = None, ip_range6: str | None = None,
           aux_addresses: dict[str, str] | None = None, ipam_driver: str = "default",
           ipam_options: dict[str, str] | None = None) -> str:
    """``docker network create`` (bridge driver): one IPv4 pool (chosen from docker's defaults when
    not given) and, optionally, one IPv6 pool; its containers get IPv6 addresses with ``ipv6``."""
    from kran.network import ipam

    if driver != "bridge":
        if driver in ("host", "null"):
            raise Forbidden(f"only one instance of \"{driver}\" network is allowed")
        raise NotFound(f'plugin "{driver}" not found')
    if ipam_driver not in ("", "default"):
        raise NotFound(f'plugin "{ipam_driver}" not found')
    if not name or not name.strip():
        raise InvalidArgument("network name is required")  # docker takes any other name ("test 01")
    ensure_builtin(engine)
    db = engine.store.db
    nid = os.urandom(32).hex()
    bridge = str((options or {}).get("com.docker.network.bridge.name") or "") or f"kr-{nid[:12]}"
    if len(bridge) > 15:
        raise InvalidArgument(f"bridge name {bridge} is longer than 15 characters")
    try:
        with engine.store.writing(), transaction(db):
            if db.execute("SELECT 1 FROM networks WHERE name=?", (name,)).fetchone():
                raise Conflict(f"network with name {name} already exists")
            others = [r[0] for r in db.execute("SELECT subnet FROM networks WHERE subnet!=''")]
            own_bridges = {r[0] for r in db.execute("SELECT bridge FROM networks WHERE bridge!=''")}
            if subnet:
                net = str(ipam.parse_subnet(subnet))
                if ipam.overlaps(net, others):
                    raise Forbidden("Pool overlaps with other one on this address space")
            else:
                if gateway or ip_range:
                    raise InvalidArgument("ip-range and gateway need a subnet (--subnet)")
                net = ipam.choose_subnet(others + host_routes(own_bridges))
            gw = ipam.check_gateway(net, gateway) if gateway else ipam.gateway_of(net)
            if ip_range:
                ipam.check_range(net, ip_range)
            v6 = None
            if subnet6 or ipv6:
                taken6 = [x.v6.subnet for x in _all_extras(engine) if x.v6]
                if subnet6:
                    net6 = str(ipam.parse_subnet6(subnet6))
                    if ipam.overlaps(net6, taken6):
                        raise Forbidden("Pool overlaps with other one on this address space")
                else:
                    net6 = ipam.ula_subnet(nid, taken6)  # docker 27's default: a ULA /64 of its own
                gw6 = ipam.check_gateway(net6, gateway6) if gateway6 else ipam.gateway_of(net6)
                if ip_range6:
                    ipam.check_range(net6, ip_range6)
                v6 = Pool6(subnet=net6, gateway=gw6, ip_range=ip_range6 or "")
            aux = dict(aux_addresses or {})
            for key, addr in aux.items():
                ipam.check_aux(net, v6.subnet if v6 else "", key, addr)
            db.execute(
                f"INSERT INTO networks({COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (nid, name, driver, time.time(), net, gw, ip_range or "", bridge, int(internal), int(attachable), 0,
                 json.dumps(labels or {}), json.dumps(options or {})),
            )
            put_net_extra(db, nid, NetExtra(enable_ipv6=ipv6, ipam_driver=ipam_driver or "default",
                                            ipam_options=ipam_options, aux=aux, v6=v6))
    except ValueError as e:
        raise InvalidArgument(str(e)) from e
    except ipam.PoolExhausted as e:
        raise InvalidArgument(str(e)) from e
    event(engine, "create", nid, name=name, type=driver)
    return nid


def _all_extras(engine: Engine) -> list[NetExtra]:
    from kran.codec import loads

    return [loads(NetExtra, r[0]) for r in engine.store.db.execute("SELECT doc FROM network_extra")]


def _active(engine: Engine, nid: str) -> list[tuple[str, str, str, str, str, str | None]]:
    """(container id, name, endpoint id, mac, ip, ipv6) of containers with a lease on the network."""
    return engine.store.db.execute(
        "SELECT e.container_id, c.name, e.endpoint_id, e.mac, e.ip, x.ip6 FROM endpoints e JOIN containers c"
        " ON c.id=e.container_id LEFT JOIN endpoint_extra x ON x.container_id=e.container_id AND"
        " x.network_id=e.network_id WHERE e.network_id=? AND e.ip IS NOT NULL ORDER BY c.name", (nid,),
    ).fetchall()


def to_json(engine: Engine, n: Net) -> dict[str, Any]:
    """docker's NetworkResource."""
    import ipaddress

    from kran.engine.timefmt import rfc3339

    x = net_extra(engine, n.id)
    containers = {}
    if n.is_bridge:
        prefix = ipaddress.ip_network(n.subnet).prefixlen
        prefix6 = ipaddress.ip_network(x.v6.subnet).prefixlen if x.v6 else 0
        for cid, cname, epid, mac, ip, ip6 in _active(engine, n.id):
            containers[cid] = {"Name": cname, "EndpointID": epid, "MacAddress": mac,
                               "IPv4Address": f"{ip}/{prefix}", "IPv6Address": f"{ip6}/{prefix6}" if ip6 else ""}
    cfg: list[dict[str, Any]] = []
    if n.subnet:
        c: dict[str, Any] = {"Subnet": n.subnet, "Gateway": n.gateway}
        if n.ip_range:
            c["IPRange"] = n.ip_range
        aux4 = {k: v for k, v in x.aux.items() if ipaddress.ip_address(v).version == 4}
        if aux4:
            c["AuxiliaryAddresses"] = aux4
        cfg.append(c)
    if x.v6:
        c = {"Subnet": x.v6.subnet, "Gateway": x.v6.gateway}
        if x.v6.ip_range:
            c["IPRange"] = x.v6.ip_range
        aux6 = {k: v for k, v in x.aux.items() if ipaddress.ip_address(v).version == 6}
        if aux6:
            c["AuxiliaryAddresses"] = aux6
        cfg.append(c)
    opts = dict(n.options)
    if n.builtin and n.is_bridge:
        opts = {"com.docker.network.bridge.default_bridge": "true", "com.docker.network.bridge.enable_icc": "true",
                "com.docker.network.bridge.enable_ip_masquerade": "true",
                "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                "com.docker.network.bridge.name": n.bridge, "com.docker.network.driver.mtu": "1500"}
    return {
        "Name": n.name, "Id": n.id, "Created": rfc3339(n.created), "Scope": "local", "Driver": n.driver,
        "EnableIPv6": x.enable_ipv6,
        "IPAM": {"Driver": x.ipam_driver or "default", "Options": x.ipam_options, "Config": cfg},
        "Internal": n.internal, "Attachable": n.attachable, "Ingress": False, "ConfigFrom": {"Network": ""},
        "ConfigOnly": False, "Containers": containers, "Options": opts, "Labels": n.labels,
    }


def list_all(engine: Engine) -> list[dict[str, Any]]:
    reconcile(engine)
    return [to_json(engine, n) for n in all_networks(engine)]


def inspect(engine: Engine, ref: str) -> dict[str, Any]:
    n = resolve(engine, ref)
    reconcile(engine)
    return to_json(engine, n)


def remove(engine: Engine, ref: str) -> None:
    n = resolve(engine, ref)
    if n.builtin:
        raise Forbidden(f"{n.name} is a pre-defined network and cannot be removed")
    reconcile(engine)
    db = engine.store.db
    with engine.store.writing():
        with transaction(db):
            if db.execute("SELECT 1 FROM endpoints WHERE network_id=? AND ip IS NOT NULL", (n.id,)).fetchone():
                raise Forbidden(f"error while removing network: network {n.name} id {n.id} has active endpoints")
            db.execute("DELETE FROM endpoints WHERE network_id=?", (n.id,))
            db.execute("DELETE FROM networks WHERE id=?", (n.id,))
        from kran.network import bridge, hostns

        try:
            hostns.call(bridge.remove_bridge, n.bridge)
        except OSError:
            pass
        if table_exists():
            apply_rules(engine)
    event(engine, "destroy", n.id, name=n.name, type=n.driver)


def prune(engine: Engine, until: float | None = None, label_filters: list[str] | None = None) -> list[str]:
    reconcile(engine)
    out = []
    for n in all_networks(engine):
        if n.builtin or (until is not None and n.created >= until):
            continue
        if label_filters and not all(label_match(n.labels, f) for f in label_filters):
            continue
        try:
            remove(engine, n.id)
        except (Forbidden, NotFound):
            continue
        out.append(n.name)
    return out


def parse_filters(filters: list[str]) -> dict[str, list[str]]:
    """``-f key=value`` (repeatable) -> {key: [values]}; docker's errors for a bad form or key."""
    from kran.errors import InvalidArgument

    out: dict[str, list[str]] = {}
    for f in filters:
        k, sep, v = f.partition("=")
        if not sep:
            raise InvalidArgument("bad format of filter (expected name=value)")
        k = k.strip().lower()
        if k not in ("driver", "id", "label", "name", "scope", "type", "dangling"):
            raise InvalidArgument(f"invalid filter '{k}'")
        out.setdefault(k, []).append(v)
    for t in out.get("type", ()):
        if t not in ("custom", "builtin"):
            raise InvalidArgument(f"invalid filter: 'type'='{t}'")
    return out


def filter_networks(nets: list[dict[str, Any]], filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The daemon's network filters: name and id match as regular expressions, driver and scope
    exactly, label as ``key`` or ``key=value``, type ``custom``/``builtin``; values of one key OR,
    different keys AND."""
    import re

    from kran.engine import label_match

    def keep(n: dict[str, Any]) -> bool:
        name, nid = n.get("Name", ""), n.get("Id", "")
        if "name" in filters and not any(re.search(v, name) for v in filters["name"]):
            return False
        if "id" in filters and not any(re.search(v, nid) for v in filters["id"]):
            return False
        if "driver" in filters and n.get("Driver", "") not in filters["driver"]:
            return False
        if "scope" in filters and n.get("Scope", "") not in filters["scope"]:
            return False
        if "label" in filters and not all(label_match(n.get("Labels") or {}, v) for v in filters["label"]):
            return False
        if "type" in filters:
            builtin = name in BUILTIN
            if not any((t == "builtin") == builtin for t in filters["type"]):
                return False
        if "dangling" in filters:
            want = {v.lower() in ("1", "true") for v in filters["dangling"]}
            dangling = name not in BUILTIN and not n.get("Containers")
            if dangling not in want:
                return False
        return True

    return [n for n in nets if keep(n)]


def prune_filters(filters: list[str]) -> tuple[list[str], float | None]:
    from kran.errors import InvalidArgument

    labels: list[str] = []
    until = None
    for f in filters:
        k, sep, v = f.partition("=")
        if not sep:
            raise InvalidArgument("bad format of filter (expected name=value)")
        if k == "label":
            labels.append(v)
        elif k == "until":
            until = until_time(v)
        else:
            raise InvalidArgument(f"invalid filter '{k}'")
    return labels, until


def until_time(v: str) -> float:
    """docker's ``until`` filter: a Unix time, an RFC 3339 date, or a duration before now."""
    import re
    import time

    from kran.errors import InvalidArgument
    from kran.image.store import parse_created

    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)", v)
    if m:
        return time.time() - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
    if re.fullmatch(r"\d+(\.\d+)?", v):
        return float(v)
    t = parse_created(v if "T" in v else v + "T00:00:00Z")
    if not t:
        raise InvalidArgument(f'failed to parse value as time or duration: "{v}"')
    return t
