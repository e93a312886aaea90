"""nftables for kran's bridges: one table, ``ip kran``, that kran alone writes.

Static parts (maps of published ports, the hooks) are created once; the per-network rules
(outbound masquerade, isolation between bridges, ``--internal``) are regenerated from the database
as a whole chain flush + refill in one transaction, so the ruleset always matches what the store
says, whatever a crash left.  Published ports are map elements added and deleted one by one.

Loopback (``127.0.0.0/8``) is deliberately left out of the DNAT: docker's userland proxy serves it,
as the kernel path would need ``route_localnet`` on the host.

Scripts go to libnftables in-process (ctypes; no fork) when it is installed, else to ``nft -f -``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

TABLE = "kran"

BASE = f"""
add table ip {TABLE}
add map ip {TABLE} tcp_any {{ type inet_service : ipv4_addr . inet_service; }}
add map ip {TABLE} udp_any {{ type inet_service : ipv4_addr . inet_service; }}
add map ip {TABLE} tcp_ip {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}
add map ip {TABLE} udp_ip {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}
add chain ip {TABLE} ports
add chain ip {TABLE} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain ip {TABLE} output {{ type nat hook output priority -100; policy accept; }}
add chain ip {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
add chain ip {TABLE} forward {{ type filter hook forward priority filter; policy accept; }}
flush chain ip {TABLE} ports
flush chain ip {TABLE} prerouting
flush chain ip {TABLE} output
add rule ip {TABLE} prerouting fib daddr type local jump ports
add rule ip {TABLE} output ip daddr != 127.0.0.0/8 fib daddr type local jump ports
add rule ip {TABLE} ports dnat ip to ip daddr . tcp dport map @tcp_ip
add rule ip {TABLE} ports dnat ip to tcp dport map @tcp_any
add rule ip {TABLE} ports dnat ip to ip daddr . udp dport map @udp_ip
add rule ip {TABLE} ports dnat ip to udp dport map @udp_any
"""


@dataclass(frozen=True)
class BridgeNet:
    bridge: str
    subnet: str
    internal: bool
    subnet6: str = ""  # an IPv6 network's pool (its rules go to the ``ip6 kran`` table)


def network_rules(nets: list[BridgeNet]) -> str:
    """The postrouting and forward chains for these bridges (a pure function of the list)."""
    out = [f"flush chain ip {TABLE} postrouting", f"flush chain ip {TABLE} forward"]
    names = [n.bridge for n in nets]
    if names:
        all_br = "{ " + ", ".join(f'"{b}"' for b in names) + " }"
        for n in nets:
            if n.internal:
                # no way out, and nothing in from any other interface
                out.append(f'add rule ip {TABLE} forward iifname "{n.bridge}" oifname != "{n.bridge}" drop')
                out.append(f'add rule ip {TABLE} forward oifname "{n.bridge}" iifname != "{n.bridge}" drop')
                continue
            # isolation between kran networks (docker's DOCKER-ISOLATION chains)
            out.append(f'add rule ip {TABLE} forward iifname "{n.bridge}" oifname {all_br} oifname != "{n.bridge}" drop')
            # outbound NAT; and hairpin: a container reaching a published port lands on the same bridge
            out.append(f"add rule ip {TABLE} postrouting ip saddr {n.subnet} oifname != {all_br} masquerade")
            out.append(f'add rule ip {TABLE} postrouting ct status dnat ip saddr {n.subnet} oifname "{n.bridge}" masquerade')
    return "\n".join(out) + "\n"


def network_rules6(nets: list[BridgeNet]) -> str:
    """The same isolation and outbound NAT for IPv6 networks, in table ``ip6 kran`` (which goes
    away when no network has IPv6).  kran leaves the host's ``net.ipv6.conf.all.forwarding`` as
    it is (turning it on stops the host accepting router advertisements): until an admin turns it
    on, IPv6 stays on each bridge -- containers and the host -- and these rules are what hold then."""
    v6 = [n for n in nets if n.subnet6]
    if not v6:
        return f"add table ip6 {TABLE}\ndelete table ip6 {TABLE}\n"
    out = [f"add table ip6 {TABLE}",
           f"add chain ip6 {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}",
           f"add chain ip6 {TABLE} forward {{ type filter hook forward priority filter; policy accept; }}",
           f"flush chain ip6 {TABLE} postrouting", f"flush chain ip6 {TABLE} forward"]
    all_br = "{ " + ", ".join(f'"{n.bridge}"' for n in nets) + " }"
    for n in v6:
        if n.internal:
            out.append(f'add rule ip6 {TABLE} forward iifname "{n.bridge}" oifname != "{n.bridge}" drop')
            out.append(f'add rule ip6 {TABLE} forward oifname "{n.bridge}" iifname != "{n.bridge}" drop')
            continue
        out.append(f'add rule ip6 {TABLE} forward iifname "{n.bridge}" oifname {all_br} oifname != "{n.bridge}" drop')
        out.append(f"add rule ip6 {TABLE} postrouting ip6 saddr {n.subnet6} oifname != {all_br} masquerade")
    return "\n".join(out) + "\n"


def _elem_key(proto: str, host_ip: str, host_port: int) -> tuple[str, str]:
    if host_ip in ("", "0.0.0.0"):
        return f"{proto}_any", str(host_port)
    return f"{proto}_ip", f"{host_ip} . {host_port}"


def port_elements(op: str, ports: list[tuple[str, str, int, str, int]]) -> str:
    """``add``/``delete`` map elements for (proto, host_ip, host_port, container_ip, container_port)."""
    out = []
    for proto, host_ip, host_port, cip, cport in ports:
        m, key = _elem_key(proto, host_ip, host_port)
        if op == "add":
            out.append(f"add element ip {TABLE} {m} {{ {key} : {cip} . {cport} }}")
        else:
            out.append(f"delete element ip {TABLE} {m} {{ {key} }}")
    return "\n".join(out) + ("\n" if out else "")


class NftError(OSError):
    pass


_ctx = None
_LOCK = threading.Lock()


def _lib():
    if _ctx is not None:
        return _ctx or None
    with _LOCK:
        return _load()


def _load():
    global _ctx
    if _ctx is not None:
        return _ctx or None
    import ctypes

    try:
        lib = ctypes.CDLL("libnftables.so.1")
    except OSError:
        _ctx = False
        return None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    ctx = lib.nft_ctx_new(0)
    lib.nft_ctx_buffer_error(ctx)
    lib.nft_ctx_buffer_output(ctx)
    _ctx = (lib, ctx)
    return _ctx


def run(script: str, *, check: bool = True) -> str:
    """Apply an nft script atomically (all or nothing); returns its output."""
    if not script.strip():
        return ""
    h = None if os.environ.get("KRAN_NFT_BINARY") else _lib()
    if h is not None:
        lib, ctx = h
        with _LOCK:  # one libnftables context per process, not thread-safe (the API server has threads)
            rc = lib.nft_run_cmd_from_buffer(ctx, script.encode())
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
            out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
    else:
        import shutil
        import subprocess

        nft = shutil.which("nft") or "/usr/sbin/nft"
        try:
            p = subprocess.run([nft, "-f", "-"], input=script.encode(), capture_output=True)
        except FileNotFoundError as e:
            raise NftError(2, "nft is not installed (apt-get install nftables)") from e
        rc, err, out = p.returncode, p.stderr.decode(errors="replace"), p.stdout.decode(errors="replace")
    if rc != 0 and check:
        raise NftError(0, f"nftables: {err.strip() or 'failed'}")
    return out


def ensure_base() -> None:
    run(BASE)


def delete_table() -> None:
    run(f"add table ip {TABLE}\ndelete table ip {TABLE}\n", check=False)
    run(f"add table ip6 {TABLE}\ndelete table ip6 {TABLE}\n", check=False)


def list_table() -> str:
    return run(f"list table ip {TABLE}\n", check=False)
