"""A container's endpoints on bridge networks: planned at create, plugged at start, released at
exit; published ports and the embedded DNS.

State is in the database (``endpoints``, ``ports``); devices and nftables follow it:

- A container's endpoints (its memberships) are rows from ``create``/``connect`` to ``rm``/
  ``disconnect``.  While it runs an endpoint holds an address lease (``ip``) and a veth pair
  (``host_if``); ``ports`` rows are the host ports it holds.  Leases and ports are taken in one
  write transaction each, so concurrent starts never share an address or a port.
- When a container is seen exited (``containers._cleanup_after_exit``), or found not running by
  ``reconcile`` (a killed monitor, a host reboot), its veths, leases, ports and DNAT entries go.
- User networks get the embedded DNS: the monitor answers on 127.0.0.11 inside the container from
  ``dns.json`` in the container's directory, which kran rewrites whenever a peer comes or goes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kran.engine.netrecord import (
    EndpointExtra,
    Net,
    NetExtra,
    apply_rules,
    endpoint_extra,
    event,
    get_net,
    put_endpoint_extra,
    resolve,
)
from kran.errors import Conflict, Forbidden, InvalidArgument, KranError
from kran.storage.db import transaction

if TYPE_CHECKING:
    from kran.engine import Engine
    from kran.engine.record import Container


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


def _endpoint_rows(engine: Engine, cid: str) -> list[tuple[Any, ...]]:
    return engine.store.db.execute(
        "SELECT network_id, idx, aliases, want_ip, endpoint_id, ip, mac, host_if FROM endpoints"
        " WHERE container_id=? ORDER BY idx", (cid,),
    ).fetchall()


@dataclass
class Setup:
    """What the engine hands to the monitor: inherited fds and its ``net`` configuration."""

    fds: list[int]
    monitor_cfg: dict[str, Any] | None
    socks: list[Any]

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.socks = []


def _ensure_devices(engine: Engine, n: Net, x: NetExtra) -> None:
    from kran.network import bridge, netlink

    # The rules go in before a new bridge is made (first use, after a reboot, a network create):
    # so a bridge never exists without them, even after a kill -9 between the two, and while the
    # bridge is there no nft call is needed on the start path.
    if netlink.link_index(n.bridge) is None:
        apply_rules(engine)
    v6 = x.v6 if x.enable_ipv6 else None
    bridge.ensure_bridge(n.bridge, n.gateway, n.subnet, v6.gateway if v6 else "", v6.subnet if v6 else "")


def _lease(engine: Engine, cid: str, n: Net, want: str, mac: str = "", x: NetExtra | None = None,
           want6: str = "") -> tuple[str, str]:
    """The endpoint's IPv4 address (and IPv6 one on an IPv6 network), taken in one transaction."""
    from kran.network import ipam

    x = x or NetExtra()
    db = engine.store.db
    with transaction(db):
        used = [r[0] for r in db.execute(
            "SELECT ip FROM endpoints WHERE network_id=? AND ip IS NOT NULL AND container_id!=?", (n.id, cid))]
        aux = list(x.aux.values())  # docker's auxiliary addresses are never handed out
        ip6 = ""
        try:
            ip = ipam.allocate(n.subnet, n.gateway, used + aux, want, n.ip_range)
            if x.enable_ipv6 and x.v6:
                used6 = [r[0] for r in db.execute(
                    "SELECT ip6 FROM endpoint_extra WHERE network_id=? AND ip6 IS NOT NULL AND container_id!=?",
                    (n.id, cid))]
                ip6 = ipam.allocate(x.v6.subnet, x.v6.gateway, used6 + aux, want6, x.v6.ip_range)
        except ipam.AddressInUse as e:
            raise Conflict(str(e)) from None
        except (ValueError, ipam.PoolExhausted) as e:
            raise InvalidArgument(str(e)) from None
        from kran.network.bridge import host_ifname

        db.execute("UPDATE endpoints SET ip=?, mac=?, host_if=? WHERE container_id=? AND network_id=?",
                   (ip, mac or ipam.mac_for(ip), host_ifname(cid, n.id), cid, n.id))
        if ip6:
            db.execute("INSERT INTO endpoint_extra(container_id, network_id, ip6) VALUES (?,?,?)"
                       " ON CONFLICT(container_id, network_id) DO UPDATE SET ip6=excluded.ip6", (cid, n.id, ip6))
    return ip, ip6


def _plug(engine: Engine, c: Container, nspath: str, n: Net, idx: int, want: str, default_route: bool) -> str:
    import ipaddress

    from kran.engine.netrecord import net_extra
    from kran.network import bridge, ipam

    x = net_extra(engine, n.id)
    req, _ = endpoint_extra(engine, c.id, n.id)
    _ensure_devices(engine, n, x)
    # a MAC asked for at connect, else docker's --mac-address (kept by create)
    mac = req.mac or (c.host_config.get("_MacAddresses") or {}).get(n.id, "")
    ip, ip6 = _lease(engine, c.id, n, want, mac, x, req.ipv6)
    ep = bridge.Endpoint(host_if=bridge.host_ifname(c.id, n.id), ifname=f"eth{idx}", bridge=n.bridge, ip=ip,
                         prefix=ipaddress.ip_network(n.subnet).prefixlen, gateway=n.gateway, mac=mac or ipam.mac_for(ip),
                         default_route=default_route and not n.internal,
                         ip6=ip6, prefix6=ipaddress.ip_network(x.v6.subnet).prefixlen if ip6 and x.v6 else 0,
                         gateway6=x.v6.gateway if ip6 and x.v6 else "", link_local=tuple(req.link_local))
    bridge.attach(nspath, ep)
    return ip


def setup(engine: Engine, c: Container, nspath: str | None) -> Setup:
    """Connect a starting container: endpoints, published ports, DNS, hosts and resolv.conf."""
    from kran.network import files

    out = Setup([], None, [])
    mode = c.host_config.get("NetworkMode") or "default"
    try:
        with open("/etc/resolv.conf") as f:
            host_resolv = f.read()
    except OSError:
        host_resolv = ""
    h = c.host_config
    if mode == "host" or mode.startswith("container:"):
        if mode == "host":
            _copy_host_files(c, list(h.get("ExtraHosts") or []))
        return out
    reconcile(engine, skip=c.id)
    rows = _endpoint_rows(engine, c.id)
    if not rows and mode != "none":
        # its network was removed since (docker's "network X not found"), or removed and made again
        n = resolve(engine, mode)
        if n.is_bridge:
            with transaction(engine.store.db):
                record(engine.store.db, c.id, [EndpointPlan(n.id, (), "")])
            rows = _endpoint_rows(engine, c.id)
    own: list[tuple[str, str]] = []
    user_nets = False
    first_ip = ""
    routed = False
    try:
        for nid, idx, _aliases, want, _epid, _ip, _mac, _hif in rows:
            n = get_net(engine, nid)
            ip = _plug(engine, c, nspath or "", n, idx, want, default_route=not routed)
            routed = routed or not n.internal
            first_ip = first_ip or ip
            user_nets = user_nets or n.user_defined
            names = c.config.get("Hostname") or c.id[:12]
            if c.config.get("Domainname"):
                names = f"{names}.{c.config['Domainname']} {names}"
            own.append((ip, names))
        if first_ip:
            _publish(engine, c, first_ip, out)
        if user_nets and nspath:
            _dns_sockets(engine, c, nspath, out, files.upstreams(host_resolv, list(h.get("Dns") or [])))
            refresh_dns(engine, [r[0] for r in rows])
        _write(os.path.join(c.dir, "hosts"), files.hosts(list(h.get("ExtraHosts") or []), own[:1]))
        _write(os.path.join(c.dir, "resolv.conf"), files.resolv_conf(
            host_resolv, dns=list(h.get("Dns") or []), search=list(h.get("DnsSearch") or []),
            options=list(h.get("DnsOptions") or []), embedded=user_nets))
    except BaseException:
        out.close()
        teardown(engine, c.id)
        raise
    return out


def _copy_host_files(c: Container, extra_hosts: list[str]) -> None:
    """The host's hosts and resolv.conf (``--network host``), plus ``--add-host`` lines, as docker."""
    from kran.network import files

    for src, dst in (("/etc/hosts", "hosts"), ("/etc/resolv.conf", "resolv.conf")):
        try:
            with open(src) as f:
                text = f.read()
        except OSError:
            continue
        if dst == "hosts" and extra_hosts:
            added = files.hosts(extra_hosts, [])[len(files.HOSTS_HEADER):]
            text = (text if text.endswith("\n") or not text else text + "\n") + added
        _write(os.path.join(c.dir, dst), text)


def _write(path: str, text: str) -> None:
    # in place: the file is bind-mounted into a container that may already run (network connect)
    with open(path, "w") as f:
        f.write(text)


def _publish(engine: Engine, c: Container, ip: str, out: Setup) -> None:
    from kran.network import nft, ports

    wants = ports.wanted(c.config, c.host_config)
    if not wants:
        return
    db = engine.store.db
    epid = (_endpoint_rows(engine, c.id) or [("", 0, "", "", "")])[0][4]
    with transaction(db):
        allocated = {(p, a or "0.0.0.0", n) for p, a, n in db.execute(
            "SELECT proto, host_ip, host_port FROM ports WHERE container_id!=?", (c.id,))}
        try:
            bound = ports.bind_all(wants, allocated)
        except ports.PortError as e:
            raise KranError(f"driver failed programming external connectivity on endpoint {c.name} ({epid}): {e}") from None
        out.socks += [b.sock for b in bound]
        db.execute("DELETE FROM ports WHERE container_id=?", (c.id,))
        for b in bound:
            db.execute("INSERT INTO ports VALUES (?,?,?,?,?,?)",
                       (c.id, b.host_ip or "0.0.0.0", b.host_port, b.proto, ip, b.container_port))
    kernel = [(b.proto, b.host_ip, b.host_port, ip, b.container_port) for b in bound
              if not (b.host_ip or "").startswith("127.")]
    if kernel:
        try:
            try:
                nft.run(nft.port_elements("add", kernel))
            except OSError:
                apply_rules(engine)  # the table went away under the bridge (nft flush ruleset...)
                nft.run(nft.port_elements("add", kernel))
        except (OSError, KranError) as e:
            raise KranError(f"driver failed programming external connectivity on endpoint {c.name} ({epid}): {e}") from None
    cfg = out.monitor_cfg or {}
    cfg["proxies"] = [{"fd": b.sock.fileno(), "proto": b.proto, "to": ip, "port": b.container_port} for b in bound]
    out.monitor_cfg = cfg
    out.fds += [b.sock.fileno() for b in bound]


def _dns_sockets(engine: Engine, c: Container, nspath: str, out: Setup, upstream: list[str]) -> None:
    import socket

    from kran.network import files, netlink

    def make() -> tuple[socket.socket, socket.socket]:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            u.bind((files.EMBEDDED_DNS, 53))
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            t.bind((files.EMBEDDED_DNS, 53))
            t.listen(64)
        except BaseException:
            u.close()
            t.close()
            raise
        return u, t

    u, t = netlink.in_netns(nspath, make)
    out.socks += [u, t]
    out.fds += [u.fileno(), t.fileno()]
    cfg = out.monitor_cfg or {}
    cfg["dns"] = {"udp_fd": u.fileno(), "tcp_fd": t.fileno(), "names": os.path.join(c.dir, "dns.json"),
                  "upstream": upstream}
    out.monitor_cfg = cfg


def refresh_dns(engine: Engine, network_ids: list[str]) -> None:
    """Rewrite dns.json of every running container on these (user) networks."""
    if not network_ids:
        return
    import fcntl

    from kran.engine.record import run_dir

    os.makedirs(run_dir(engine), 0o700, exist_ok=True)
    lock = os.open(os.path.join(run_dir(engine), "dns.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent refreshes: the last writer has seen every lease
        _refresh_dns(engine, network_ids)
    finally:
        os.close(lock)


def _refresh_dns(engine: Engine, network_ids: list[str]) -> None:
    db = engine.store.db
    q = ",".join("?" * len(network_ids))
    targets = [r[0] for r in db.execute(
        f"SELECT DISTINCT container_id FROM endpoints WHERE network_id IN ({q}) AND ip IS NOT NULL", network_ids)]
    for cid in targets:
        names: dict[str, list[str]] = {}
        for nid, in db.execute("SELECT network_id FROM endpoints WHERE container_id=? AND ip IS NOT NULL", (cid,)):
            n = get_net(engine, nid)
            if n.builtin:
                continue
            by_name: dict[str, str] = {}
            for pcid, pname, aliases, ip in db.execute(
                "SELECT e.container_id, c.name, e.aliases, e.ip FROM endpoints e JOIN containers c ON c.id=e.container_id"
                " WHERE e.network_id=? AND e.ip IS NOT NULL", (nid,),
            ):
                by_name[pname.lower()] = ip
                for key in [pname, pcid[:12], *json.loads(aliases)]:
                    lst = names.setdefault(key.lower(), [])
                    if ip not in lst:
                        lst.append(ip)
            # the endpoint's links ("target:alias"): the alias names the target for this container only
            for ln in endpoint_extra(engine, cid, nid)[0].links:
                target, _, alias = ln.partition(":")
                ip = by_name.get(target.strip("/").lower())
                if ip:
                    lst = names.setdefault((alias or target).strip("/").lower(), [])
                    if ip not in lst:
                        lst.append(ip)
        path = os.path.join(engine.root, "containers", cid, "dns.json")
        tmp = path + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump({"names": names}, f)
            os.rename(tmp, path)
        except OSError:
            pass


def teardown(engine: Engine, cid: str, network_id: str | None = None, *, links: bool = True) -> None:
    """Release what a container that no longer runs held: veths, leases, ports, DNAT entries.

    ``links=False`` when the container's namespace is about to go: the kernel then deletes its veth
    pairs itself, in the background (deleting one here costs ~20 ms of RCU grace period)."""
    from kran.network import bridge, nft

    db = engine.store.db
    cond, args = ("container_id=?", (cid,)) if network_id is None else ("container_id=? AND network_id=?", (cid, network_id))
    eps = db.execute(f"SELECT network_id, host_if FROM endpoints WHERE {cond} AND (ip IS NOT NULL OR host_if!='')",
                     args).fetchall()
    prts = db.execute("SELECT proto, host_ip, host_port, container_ip, container_port FROM ports WHERE container_id=?",
                      (cid,)).fetchall() if network_id is None else []
    if not eps and not prts:
        return
    for _nid, host_if in eps if links else ():
        try:
            bridge.detach(host_if)
        except OSError:
            pass
    for p in prts:
        if not p[1].startswith("127."):
            try:
                nft.run(nft.port_elements("delete", [p]), check=False)
            except OSError:
                pass
    with transaction(db):
        db.execute(f"UPDATE endpoints SET ip=NULL, host_if='' WHERE {cond}", args)
        db.execute(f"UPDATE endpoint_extra SET ip6=NULL WHERE {cond}", args)
        if network_id is None:
            db.execute("DELETE FROM ports WHERE container_id=?", (cid,))
    refresh_dns(engine, [e[0] for e in eps])


def reconcile(engine: Engine, skip: str = "") -> None:
    """Release what containers that do not run still hold (a killed monitor, a reboot, a crash)."""
    from kran.engine.record import ContainerNotFound, _being_started, get

    db = engine.store.db
    cids = [r[0] for r in db.execute(
        "SELECT container_id FROM endpoints WHERE ip IS NOT NULL OR host_if!='' UNION SELECT container_id FROM ports")]
    for cid in cids:
        if cid == skip:
            continue
        try:
            c = get(engine, cid)
        except ContainerNotFound:
            continue
        if not c.running and c.status != "restarting" and not _being_started(c):
            teardown(engine, cid)


def connect(engine: Engine, net_ref: str, container_ref: str, *, aliases: tuple[str, ...] | list[str] = (),
            ipv4: str | None = None, extra: EndpointExtra | None = None) -> None:
    """``docker network connect``: ``extra`` carries the rest of docker's EndpointSettings
    (links, driver options, link-local and IPv6 addresses, a MAC address)."""
    from kran.engine.record import get, netns_path

    n = resolve(engine, net_ref)
    c = get(engine, container_ref)
    mode = c.host_config.get("NetworkMode") or "default"
    if mode == "host" or mode.startswith("container:") or n.driver in ("host", "null"):
        if n.driver == "host" or mode == "host":
            raise Forbidden("container cannot be disconnected from host network or connected to host network")
        raise Forbidden("container sharing network namespace with another container or host cannot be connected to any other network")
    if mode == "none":
        raise Forbidden("container cannot be connected to multiple networks with one of the networks in private (none) mode")
    extra = extra or EndpointExtra()
    check_endpoint(engine, n, tuple(aliases), ipv4 or "", extra)
    db = engine.store.db
    with transaction(db):
        if db.execute("SELECT 1 FROM endpoints WHERE container_id=? AND network_id=?", (c.id, n.id)).fetchone():
            raise Forbidden(f"endpoint with name {c.name} already exists in network {n.name}")
        idx = db.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM endpoints WHERE container_id=?", (c.id,)).fetchone()[0]
        record(db, c.id, [EndpointPlan(n.id, tuple(aliases), ipv4 or "", extra)])
        db.execute("UPDATE endpoints SET idx=? WHERE container_id=? AND network_id=?", (idx, c.id, n.id))
    if c.running:
        try:
            _plug(engine, c, netns_path(engine, c.id), n, idx, ipv4 or "", default_route=False)
        except BaseException:
            teardown(engine, c.id, n.id)
            with transaction(db):
                db.execute("DELETE FROM endpoints WHERE container_id=? AND network_id=?", (c.id, n.id))
            raise
        refresh_dns(engine, [n.id])
    event(engine, "connect", n.id, container=c.id, name=n.name, type=n.driver)


def disconnect(engine: Engine, net_ref: str, container_ref: str, *, force: bool = False) -> None:
    from kran.engine.record import get

    n = resolve(engine, net_ref)
    c = get(engine, container_ref)
    db = engine.store.db
    if not db.execute("SELECT 1 FROM endpoints WHERE container_id=? AND network_id=?", (c.id, n.id)).fetchone():
        if n.driver == "host":
            raise Forbidden("container cannot be disconnected from host network or connected to host network")
        raise Forbidden(f"container {c.id} is not connected to network {n.name}")
    teardown(engine, c.id, n.id)
    with transaction(db):
        db.execute("DELETE FROM endpoints WHERE container_id=? AND network_id=?", (c.id, n.id))
    refresh_dns(engine, [n.id])
    event(engine, "disconnect", n.id, container=c.id, name=n.name, type=n.driver)


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
    for nid, _idx, aliases, want, epid, ip, mac, _hif in _endpoint_rows(engine, c.id):
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
