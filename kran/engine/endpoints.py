"""A container's endpoints on bridge networks at run time: plugged at start (veth, addresses,
published ports, the embedded DNS), released at exit.  What it asks for is planned and recorded
by :mod:`kran.engine.endpointplan`; how it looks from outside is :mod:`kran.engine.netsettings`.

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

from kran.engine.endpointplan import EndpointPlan, check_endpoint, endpoint_rows, record
from kran.engine.netrecord import (
    EndpointExtra,
    Net,
    NetExtra,
    apply_rules,
    endpoint_extra,
    event,
    get_net,
    resolve,
)
from kran.errors import Conflict, Forbidden, InvalidArgument, KranError
from kran.storage.db import transaction

if TYPE_CHECKING:
    from kran.engine import Engine
    from kran.engine.record import Container


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
    from kran.network import bridge, hostns, netlink

    # The rules go in before a new bridge is made (first use, after a reboot, a network create):
    # so a bridge never exists without them, even after a kill -9 between the two, and while the
    # bridge is there no nft call is needed on the start path.
    if hostns.call(netlink.link_index, n.bridge) is None:
        apply_rules(engine)
    v6 = x.v6 if x.enable_ipv6 else None
    hostns.call(bridge.ensure_bridge, n.bridge, n.gateway, n.subnet, v6.gateway if v6 else "", v6.subnet if v6 else "")


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
    from kran.network import bridge, hostns, ipam

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
    hostns.call(bridge.attach, nspath, ep)
    rate = c.host_config.get("KranNetworkRate")
    if rate and any(rate.values()):  # --network-rate: a tbf on each end (kran.network.shaping)
        from kran.network import shaping

        hostns.call(shaping.shape_endpoint, nspath, ep.host_if, ep.ifname, rate)
    return ip


def shape(engine: Engine, c: Container, rate: dict[str, int]) -> None:
    """``kran update --network-rate``: re-shape every plugged endpoint now (running, or between two
    restarts by policy, when the monitor keeps the veths); the next start applies the new rate anyway."""
    from kran.engine.record import netns_path
    from kran.network import hostns, shaping

    for _nid, idx, _aliases, _want, _epid, ip, _mac, host_if in endpoint_rows(engine, c.id):
        if not (ip and host_if):
            continue
        try:
            hostns.call(shaping.shape_endpoint, netns_path(engine, c.id), host_if, f"eth{idx}", rate)
        except OSError as e:
            if e.errno != 19 and c.running:  # ENODEV: its veth went with an exit seen by nobody yet
                raise Conflict(f"Cannot update container {c.id}: {e}") from None


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
    rows = endpoint_rows(engine, c.id)
    if not rows and mode != "none":
        # its network was removed since (docker's "network X not found"), or removed and made again
        n = resolve(engine, mode)
        if n.is_bridge:
            with transaction(engine.store.db):
                record(engine.store.db, c.id, [EndpointPlan(n.id, (), "")])
            rows = endpoint_rows(engine, c.id)
    if rows:
        from kran.network import hostns

        hostns.ensure_outbound()
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
    from kran.network import hostns, nft, ports

    wants = ports.wanted(c.config, c.host_config)
    if not wants:
        return
    db = engine.store.db
    epid = (endpoint_rows(engine, c.id) or [("", 0, "", "", "")])[0][4]
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
              if not (b.host_ip or "").startswith("127.") and hostns.kernel_dnat()]
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
    if hostns.path():
        cfg["netns"] = hostns.path()  # the proxies connect from the rootless netns
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
    from kran.network import bridge, hostns, nft

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
            hostns.call(bridge.detach, host_if)
        except OSError:
            pass
    for p in prts if hostns.kernel_dnat() else ():
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
