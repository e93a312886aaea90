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
from kran.engine.endpoints import (  # noqa: F401 - re-exported
    EndpointPlan,
    Setup,
    connect,
    disconnect,
    networks_of,
    plan,
    published_ports,
    reconcile,
    record,
    refresh_dns,
    settings,
    setup,
    teardown,
)
from kran.engine.netrecord import (  # noqa: F401 - re-exported
    BUILTIN,
    COLS,
    DEFAULT_BRIDGE,
    Net,
    all_networks,
    apply_rules,
    ensure_builtin,
    event,
    host_routes,
    resolve,
    table_exists,
)
from kran.errors import Conflict, Forbidden, InvalidArgument, NotFound
from kran.storage.db import transaction

if TYPE_CHECKING:
    from kran.engine import Engine


def create(engine: Engine, name: str, *, driver: str = "bridge", subnet: str | None = None, gateway: str | None = None,
           ip_range: str | None = None, internal: bool = False, labels: dict[str, str] | None = None,
           options: dict[str, str] | None = None, attachable: bool = False) -> str:
    from kran.engine.record import NAME_RE
    from kran.network import ipam

    if driver != "bridge":
        if driver in ("host", "null"):
            raise Forbidden(f"only one instance of \"{driver}\" network is allowed")
        raise NotFound(f'plugin "{driver}" not found')
    if not NAME_RE.match(name) and not (len(name) == 1 and name.isalnum()):
        raise InvalidArgument(f'invalid network name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
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
                clash = ipam.overlaps(net, others)
                if clash:
                    raise Forbidden("Pool overlaps with other one on this address space")
            else:
                if gateway or ip_range:
                    raise InvalidArgument("ip-range and gateway need a subnet (--subnet)")
                net = ipam.choose_subnet(others + host_routes(own_bridges))
            import ipaddress

            if gateway:
                try:
                    g = ipaddress.ip_address(gateway)
                except ValueError:
                    raise InvalidArgument(f"invalid gateway address: {gateway}") from None
                if g not in ipaddress.ip_network(net):
                    raise InvalidArgument(f"no matching subnet for gateway {gateway}")
                gw = str(g)
            else:
                gw = ipam.gateway_of(net)
            if ip_range:
                try:
                    rng = ipaddress.ip_network(ip_range)
                except ValueError:
                    raise InvalidArgument(f"invalid CIDR address: {ip_range}") from None
                if not rng.subnet_of(ipaddress.ip_network(net)):  # type: ignore[arg-type]
                    raise InvalidArgument(f"no matching subnet for range {ip_range}")
            db.execute(
                f"INSERT INTO networks({COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (nid, name, driver, time.time(), net, gw, ip_range or "", bridge, int(internal), int(attachable), 0,
                 json.dumps(labels or {}), json.dumps(options or {})),
            )
    except ValueError as e:
        raise InvalidArgument(str(e)) from e
    except ipam.PoolExhausted as e:
        raise InvalidArgument(str(e)) from e
    event(engine, "create", nid, name=name, type=driver)
    return nid


def _active(engine: Engine, nid: str) -> list[tuple[str, str, str, str, str]]:
    """(container id, name, endpoint id, mac, ip) of containers with a lease on the network."""
    return engine.store.db.execute(
        "SELECT e.container_id, c.name, e.endpoint_id, e.mac, e.ip FROM endpoints e JOIN containers c"
        " ON c.id=e.container_id WHERE e.network_id=? AND e.ip IS NOT NULL ORDER BY c.name", (nid,),
    ).fetchall()


def to_json(engine: Engine, n: Net) -> dict[str, Any]:
    """docker's NetworkResource."""
    import ipaddress

    from kran.engine.timefmt import rfc3339

    containers = {}
    if n.is_bridge:
        prefix = ipaddress.ip_network(n.subnet).prefixlen
        for cid, cname, epid, mac, ip in _active(engine, n.id):
            containers[cid] = {"Name": cname, "EndpointID": epid, "MacAddress": mac,
                               "IPv4Address": f"{ip}/{prefix}", "IPv6Address": ""}
    cfg: list[dict[str, str]] = []
    if n.subnet:
        c = {"Subnet": n.subnet, "Gateway": n.gateway}
        if n.ip_range:
            c["IPRange"] = n.ip_range
        cfg.append(c)
    opts = dict(n.options)
    if n.builtin and n.is_bridge:
        opts = {"com.docker.network.bridge.default_bridge": "true", "com.docker.network.bridge.enable_icc": "true",
                "com.docker.network.bridge.enable_ip_masquerade": "true",
                "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                "com.docker.network.bridge.name": n.bridge, "com.docker.network.driver.mtu": "1500"}
    return {
        "Name": n.name, "Id": n.id, "Created": rfc3339(n.created), "Scope": "local", "Driver": n.driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None if n.builtin else {}, "Config": cfg},
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
        from kran.network import bridge

        try:
            bridge.remove_bridge(n.bridge)
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
