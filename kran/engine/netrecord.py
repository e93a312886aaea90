"""Network records: the ``networks`` rows (docker's built-in three and user networks), looked up
by name, ID or prefix; the nftables ruleset regenerated from them; network events.

Below both the network commands (:mod:`kran.engine.networks`) and the containers' endpoints
(:mod:`kran.engine.endpoints`), so those two never import each other's private names.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kran.codec import jf
from kran.errors import InvalidArgument, KranError, NotFound
from kran.storage.db import transaction

if TYPE_CHECKING:
    from kran.engine import Engine


BUILTIN = ("bridge", "host", "none")
DEFAULT_BRIDGE = "kran0"


@dataclass
class Net:
    id: str
    name: str
    driver: str
    created: float
    subnet: str
    gateway: str
    ip_range: str
    bridge: str
    internal: bool
    attachable: bool
    builtin: bool
    labels: dict[str, str]
    options: dict[str, str]

    @property
    def is_bridge(self) -> bool:
        return self.driver == "bridge"

    @property
    def user_defined(self) -> bool:
        return not self.builtin


COLS = "id, name, driver, created, subnet, gateway, ip_range, bridge, internal, attachable, builtin, labels, options"


def row_to_net(r: tuple[Any, ...]) -> Net:
    return Net(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), bool(r[9]), bool(r[10]),
               json.loads(r[11]), json.loads(r[12]))


def _config() -> dict[str, Any]:
    """The ``[network]`` table of kran's config file."""
    from kran import config

    net = config.load().get("network") or {}
    return net if isinstance(net, dict) else {}


def host_routes(own_bridges: set[str]) -> list[str]:
    from kran.network import hostns, netlink

    return [dst for dst, _gw, dev in hostns.call(netlink.routes) if dst != "default" and dev not in own_bridges]


def ensure_builtin(engine: Engine) -> None:
    db = engine.store.db
    if db.execute("SELECT COUNT(*) FROM networks WHERE builtin=1").fetchone()[0] == 3:
        return
    from kran.network import ipam

    cfg = _config()
    bridge = str(cfg.get("bridge") or DEFAULT_BRIDGE)
    subnet = str(cfg.get("bridge-subnet") or "")
    with transaction(db):
        have = {r[0] for r in db.execute("SELECT name FROM networks WHERE builtin=1")}
        for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            if name in have:
                continue
            sub = gw = ""
            if driver == "bridge":
                taken = [r[0] for r in db.execute("SELECT subnet FROM networks WHERE subnet!=''")]
                try:
                    sub = str(ipam.parse_subnet(subnet)) if subnet else ipam.choose_subnet(taken + host_routes({bridge}))
                except ValueError as e:
                    raise InvalidArgument(f"bridge-subnet in the config file: {e}") from e
                gw = ipam.gateway_of(sub)
            db.execute(
                f"INSERT INTO networks({COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (os.urandom(32).hex(), name, driver, time.time(), sub, gw, "", bridge if driver == "bridge" else "",
                 0, 0, 1, "{}", "{}"),
            )


def all_networks(engine: Engine) -> list[Net]:
    ensure_builtin(engine)
    return [row_to_net(r) for r in engine.store.db.execute(f"SELECT {COLS} FROM networks ORDER BY created")]


def resolve(engine: Engine, ref: str) -> Net:
    """A network by name, full ID or unique ID prefix (docker's lookup order)."""
    ensure_builtin(engine)
    db = engine.store.db
    if ref == "default":
        ref = "bridge"
    r = db.execute(f"SELECT {COLS} FROM networks WHERE id=?", (ref,)).fetchone()
    if r is None:
        r = db.execute(f"SELECT {COLS} FROM networks WHERE name=?", (ref,)).fetchone()
    if r is None and ref and all(c in "0123456789abcdef" for c in ref):
        rows = db.execute(f"SELECT {COLS} FROM networks WHERE id LIKE ?", (ref + "%",)).fetchall()
        if len(rows) > 1:
            raise NotFound(f"network {ref} is ambiguous ({len(rows)} matches found on name)")
        r = rows[0] if rows else None
    if r is None:
        raise NotFound(f"network {ref} not found")
    return row_to_net(r)


def get_net(engine: Engine, nid: str) -> Net:
    r = engine.store.db.execute(f"SELECT {COLS} FROM networks WHERE id=?", (nid,)).fetchone()
    if r is None:
        raise NotFound(f"network {nid} not found")
    return row_to_net(r)


def apply_rules(engine: Engine) -> None:
    """nftables' per-network chains from the database (plus the static base)."""
    from kran.codec import loads
    from kran.network import nft

    extras = {}
    for nid, doc in engine.store.db.execute("SELECT network_id, doc FROM network_extra"):
        x = loads(NetExtra, doc)
        if x.enable_ipv6 and x.v6:
            extras[nid] = x.v6.subnet
    nets = [nft.BridgeNet(n.bridge, n.subnet, n.internal, extras.get(n.id, "")) for n in all_networks(engine)
            if n.is_bridge]
    from kran.network import hostns

    try:
        hostns.call(nft.run, nft.BASE + nft.network_rules(nets) + nft.network_rules6(nets))
    except OSError as e:
        raise KranError(f"failed to program nftables: {e}") from e


def table_exists() -> bool:
    from kran.network import hostns, nft

    return "table ip" in hostns.call(nft.list_table)


def event(engine: Engine, action: str, nid: str, **attrs: str) -> None:
    from kran.engine.events import emit

    emit(engine.root, "network", action, nid, attrs)


# -- what docker records beyond the columns (tables network_extra, endpoint_extra) ---------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool6:
    """The IPv6 entry of a network's IPAM config."""

    subnet: str = jf("Subnet", default="")
    gateway: str = jf("Gateway", default="")
    ip_range: str = jf("IPRange", default="")


@dataclass(frozen=True, slots=True, kw_only=True)
class NetExtra:
    enable_ipv6: bool = jf("EnableIPv6", default=False)
    ipam_driver: str = jf("IPAMDriver", default="")
    # docker tells "no options" (null) from "empty options" ({}): kept as given
    ipam_options: dict[str, str] | None = jf("IPAMOptions", keep=True)
    aux: dict[str, str] = jf("AuxiliaryAddresses", factory=dict)  # of the IPv4 pool
    v6: Pool6 | None = jf("IPv6")


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointExtra:
    """An endpoint's requested settings (docker's EndpointSettings) beyond aliases and IPv4."""

    links: list[str] = jf("Links", factory=list)  # "container:alias", resolved by the embedded DNS
    driver_opts: dict[str, str] = jf("DriverOpts", factory=dict)
    link_local: list[str] = jf("LinkLocalIPs", factory=list)
    ipv6: str = jf("IPv6Address", default="")
    mac: str = jf("MacAddress", default="")


def net_extra(engine: Engine, nid: str) -> NetExtra:
    from kran.codec import loads

    r = engine.store.db.execute("SELECT doc FROM network_extra WHERE network_id=?", (nid,)).fetchone()
    return loads(NetExtra, r[0]) if r else NetExtra()


def put_net_extra(db: Any, nid: str, x: NetExtra) -> None:
    from kran.codec import dumps

    db.execute("INSERT OR REPLACE INTO network_extra(network_id, doc) VALUES (?,?)", (nid, dumps(x)))


def endpoint_extra(engine: Engine, cid: str, nid: str) -> tuple[EndpointExtra, str | None]:
    """The endpoint's requested settings and its IPv6 lease (None when it holds none)."""
    from kran.codec import loads

    r = engine.store.db.execute("SELECT doc, ip6 FROM endpoint_extra WHERE container_id=? AND network_id=?",
                                (cid, nid)).fetchone()
    return (loads(EndpointExtra, r[0]), r[1]) if r else (EndpointExtra(), None)


def put_endpoint_extra(db: Any, cid: str, nid: str, x: EndpointExtra) -> None:
    from kran.codec import dumps

    if x != EndpointExtra():
        db.execute("INSERT OR REPLACE INTO endpoint_extra(container_id, network_id, doc) VALUES (?,?,?)",
                   (cid, nid, dumps(x)))
