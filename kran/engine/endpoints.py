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

from kran.engine.netrecord import Net, apply_rules, event, get_net, resolve
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


def plan(engine: Engine, host_config: dict[str, Any], networking_config: dict[str, Any] | None) -> list[EndpointPlan]:
    """What a new container joins (validated at create, like docker)."""
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
    eps = (networking_config or {}).get("EndpointsConfig") or {}
    ep = eps.get(mode) or eps.get(n.name) or eps.get(n.id) or {}
    aliases = tuple(ep.get("Aliases") or ())
    want = str(((ep.get("IPAMConfig") or {}).get("IPv4Address")) or "")
    if n.builtin and aliases:
        raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
    if want and n.builtin:
        raise InvalidArgument("user specified IP address is supported on user defined networks only")
    if want:
        import ipaddress

        try:
            ok = ipaddress.ip_address(want) in ipaddress.ip_network(n.subnet)
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address: {want}") from None
        if not ok:
            raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {want}")
    return [EndpointPlan(n.id, aliases, want)]


def record(db: Any, cid: str, plans: list[EndpointPlan]) -> None:
    """Insert the endpoint rows (inside the container's create transaction)."""
    for i, p in enumerate(plans):
        db.execute(
            "INSERT INTO endpoints(container_id, network_id, idx, aliases, want_ip, endpoint_id) VALUES (?,?,?,?,?,?)",
            (cid, p.network_id, i, json.dumps(list(p.aliases)), p.want_ip, os.urandom(32).hex()),
        )


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


def _ensure_devices(engine: Engine, n: Net) -> None:
    from kran.network import bridge, netlink

    # The rules go in before a new bridge is made (first use, after a reboot, a network create):
    # so a bridge never exists without them, even after a kill -9 between the two, and while the
    # bridge is there no nft call is needed on the start path.
    if netlink.link_index(n.bridge) is None:
        apply_rules(engine)
    bridge.ensure_bridge(n.bridge, n.gateway, n.subnet)


def _lease(engine: Engine, cid: str, n: Net, want: str, mac: str = "") -> str:
    from kran.network import ipam

    db = engine.store.db
    with transaction(db):
        used = [r[0] for r in db.execute(
            "SELECT ip FROM endpoints WHERE network_id=? AND ip IS NOT NULL AND container_id!=?", (n.id, cid))]
        try:
            ip = ipam.allocate(n.subnet, n.gateway, used, want, n.ip_range)
        except ipam.AddressInUse as e:
            raise Conflict(str(e)) from None
        except (ValueError, ipam.PoolExhausted) as e:
            raise InvalidArgument(str(e)) from None
        from kran.network.bridge import host_ifname

        db.execute("UPDATE endpoints SET ip=?, mac=?, host_if=? WHERE container_id=? AND network_id=?",
                   (ip, mac or ipam.mac_for(ip), host_ifname(cid, n.id), cid, n.id))
    return ip


def _plug(engine: Engine, c: Container, nspath: str, n: Net, idx: int, want: str, default_route: bool) -> str:
    import ipaddress

    from kran.network import bridge, ipam

    _ensure_devices(engine, n)
    mac = (c.host_config.get("_MacAddresses") or {}).get(n.id, "")  # docker's --mac-address, kept by create
    ip = _lease(engine, c.id, n, want, mac)
    ep = bridge.Endpoint(host_if=bridge.host_ifname(c.id, n.id), ifname=f"eth{idx}", bridge=n.bridge, ip=ip,
                         prefix=ipaddress.ip_network(n.subnet).prefixlen, gateway=n.gateway, mac=mac or ipam.mac_for(ip),
                         default_route=default_route and not n.internal)
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
            for pcid, pname, aliases, ip in db.execute(
                "SELECT e.container_id, c.name, e.aliases, e.ip FROM endpoints e JOIN containers c ON c.id=e.container_id"
                " WHERE e.network_id=? AND e.ip IS NOT NULL", (nid,),
            ):
                for key in [pname, pcid[:12], *json.loads(aliases)]:
                    lst = names.setdefault(key.lower(), [])
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
            ipv4: str | None = None) -> None:
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
    if aliases and n.builtin:
        raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
    db = engine.store.db
    with transaction(db):
        if db.execute("SELECT 1 FROM endpoints WHERE container_id=? AND network_id=?", (c.id, n.id)).fetchone():
            raise Forbidden(f"endpoint with name {c.name} already exists in network {n.name}")
        idx = db.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM endpoints WHERE container_id=?", (c.id,)).fetchone()[0]
        record(db, c.id, [EndpointPlan(n.id, tuple(aliases), ipv4 or "")])
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

    from kran.engine.record import netns_path
    from kran.network import ports as P

    db = engine.store.db
    nets: dict[str, Any] = {}
    top = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": ""}
    for nid, _idx, aliases, want, epid, ip, mac, _hif in _endpoint_rows(engine, c.id):
        n = get_net(engine, nid)
        prefix = ipaddress.ip_network(n.subnet).prefixlen if n.subnet else 0
        al = json.loads(aliases)
        ep = {
            "IPAMConfig": {"IPv4Address": want} if want else None, "Links": None,
            "Aliases": (al + [c.id[:12]]) if n.user_defined else None,
            "MacAddress": mac if ip else "", "NetworkID": n.id, "EndpointID": epid if ip else "",
            "Gateway": n.gateway if ip else "", "IPAddress": ip or "", "IPPrefixLen": prefix if ip else 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": None,
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
