"""Published ports: what ``PortBindings``/``-P`` ask for, and the host sockets that hold them.

The engine binds every host port itself before anything starts, so a port in use fails at once
with docker's text; the bound sockets then go to the container's monitor, which proxies what the
kernel's DNAT does not serve (loopback) — docker's userland proxy.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Want:
    proto: str  # tcp | udp | sctp
    container_port: int
    host_ip: str  # "" = every address
    host_ports: tuple[int, int]  # inclusive range; (0, 0) = any free port


@dataclass
class Bound:
    proto: str
    container_port: int
    host_ip: str
    host_port: int
    sock: socket.socket


class PortError(Exception):
    pass


def _split(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return int(port), (proto or "tcp").lower()


def wanted(config: dict[str, Any], host_config: dict[str, Any]) -> list[Want]:
    """docker's rules: explicit bindings, plus every exposed port on a random host port with -P."""
    out: list[Want] = []
    bindings = host_config.get("PortBindings") or {}
    for key in sorted(bindings, key=lambda k: _split(k)):
        cport, proto = _split(key)
        for b in bindings[key] or [{}]:
            hp = str((b or {}).get("HostPort") or "")
            if "-" in hp:
                lo, _, hi = hp.partition("-")
                rng = (int(lo), int(hi))
            else:
                rng = (int(hp), int(hp)) if hp else (0, 0)
            out.append(Want(proto, cport, str((b or {}).get("HostIp") or ""), rng))
    if host_config.get("PublishAllPorts"):
        for key in sorted(config.get("ExposedPorts") or {}, key=lambda k: _split(k)):
            if key in bindings:
                continue
            cport, proto = _split(key)
            out.append(Want(proto, cport, "", (0, 0)))
    return out


def exposed(config: dict[str, Any], host_config: dict[str, Any]) -> list[tuple[int, str]]:
    keys = set(config.get("ExposedPorts") or {}) | set(host_config.get("PortBindings") or {})
    return sorted(_split(k) for k in keys)


def _addr_text(ip: str, port: int) -> str:
    return f"{ip or '0.0.0.0'}:{port}"


def bind_one(proto: str, host_ip: str, port: int) -> socket.socket:
    """Bind (and listen, for TCP) like docker-proxy; raise PortError with docker's text."""
    if proto == "sctp":
        raise PortError("sctp port publishing is not supported")
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC)
    try:
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host_ip or "0.0.0.0", port))
        if proto == "tcp":
            s.listen(512)
    except OSError as e:
        s.close()
        reason = {errno.EADDRINUSE: "address already in use", errno.EADDRNOTAVAIL: "cannot assign requested address",
                  errno.EACCES: "permission denied"}.get(e.errno or 0, (e.strerror or str(e)).lower())
        msg = f"Error starting userland proxy: listen {proto}4 {_addr_text(host_ip, port)}: bind: {reason}"
        if e.errno == errno.EACCES:
            msg += _privileged_hint(port)
        raise PortError(msg) from None
    return s


def _privileged_hint(port: int) -> str:
    """Rootless kran binds as its user: below net.ipv4.ip_unprivileged_port_start it may not."""
    from kran import rootless

    if not rootless.active():
        return ""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            start = int(f.read().strip())
    except (OSError, ValueError):
        start = 1024
    return (f" (rootless: ports below net.ipv4.ip_unprivileged_port_start={start} are privileged;"
            f" publish a port >= {start}, or as root: sysctl net.ipv4.ip_unprivileged_port_start={port})")


def _taken(allocated: set[tuple[str, str, int]], proto: str, ip: str, port: int) -> bool:
    ip = ip or "0.0.0.0"
    return any(p == proto and n == port and (a == ip or "0.0.0.0" in (a, ip)) for p, a, n in allocated)


def bind_all(wants: list[Want], allocated: set[tuple[str, str, int]]) -> list[Bound]:
    """Bind every wanted port; ``allocated`` holds (proto, host_ip, port) other containers have.

    On any failure every socket bound so far is closed and PortError says why.
    """
    out: list[Bound] = []
    try:
        for w in wants:
            lo, hi = w.host_ports
            if lo == 0:
                s = bind_one(w.proto, w.host_ip, 0)
                out.append(Bound(w.proto, w.container_port, w.host_ip, s.getsockname()[1], s))
                continue
            last: PortError | None = None
            for port in range(lo, hi + 1):
                mine = {(b.proto, b.host_ip or "0.0.0.0", b.host_port) for b in out}
                if _taken(allocated | mine, w.proto, w.host_ip, port):
                    last = PortError(f"Bind for {_addr_text(w.host_ip, port)} failed: port is already allocated")
                    continue
                try:
                    s = bind_one(w.proto, w.host_ip, port)
                except PortError as e:
                    last = e
                    continue
                out.append(Bound(w.proto, w.container_port, w.host_ip, port, s))
                last = None
                break
            if last is not None:
                raise last
    except BaseException:
        for b in out:
            b.sock.close()
        raise
    return out
