"""Bandwidth limits on a container's veth pair: ``--network-rate EGRESS[/INGRESS]``.

Glossary: *egress* is what the container sends, *ingress* what it receives.  Both are shaped as
egress -- the only direction a qdisc shapes -- on one end of the pair each, so neither an ifb
device nor a policing filter is needed::

    host netns (or the rootless netns)           container netns
    bridge --- vethXXXXXXX [tbf: ingress]  <==>  eth0 [tbf: egress]

A tbf (token bucket filter) qdisc is the root of each end; it is built with rtnetlink here, with
no ``tc`` process.  It lives and dies with its link: when the engine deletes the veth pair (the
container exits) or the container's namespace goes (``rm``), the kernel removes both qdiscs.

Rates are tc's: a number and one of tc's units, case-insensitive (``bit kbit mbit gbit tbit``,
``kibit`` etc. for powers of 1024, and ``bps kbps mbps gbps tbps`` for *bytes* per second, as
tc reads them).  One value limits both directions; ``EGRESS/INGRESS`` each, where
``unlimited`` leaves one direction (or, alone, both) unshaped.  HostConfig keeps them as
``KranNetworkRate: {"Egress": bits/s, "Ingress": bits/s}``, 0 meaning unlimited.

Formats (``include/uapi/linux/rtnetlink.h``, ``pkt_sched.h``): ``struct tcmsg`` is ``family u8,
pad u8, pad u16, ifindex i32, handle u32, parent u32, info u32``; ``struct tc_ratespec`` is
``cell_log u8, linklayer u8, overhead u16, cell_align i16, mpu u16, rate u32``; ``struct
tc_tbf_qopt`` is ``rate, peakrate (tc_ratespec), limit u32, buffer u32, mtu u32``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

from kran.network import netlink
from kran.network.netlink import _attr, _attrs, _Conn, _cstr, _str

RTM_NEWQDISC = 36
RTM_DELQDISC = 37
RTM_GETQDISC = 38
TC_H_ROOT = 0xFFFFFFFF
TCA_KIND = 1
TCA_OPTIONS = 2
TCA_TBF_PARMS = 1
TCA_TBF_RATE64 = 4
TCA_TBF_BURST = 6
TC_LINKLAYER_ETHERNET = 1  # with a link layer set, the kernel computes times itself: no rate table

_TCMSG = struct.Struct("=BxHiIII")
_RATESPEC = struct.Struct("=BBHhHI")
_TBF_QOPT = struct.Struct("=12s12sIII")

KEY = "KranNetworkRate"
LATENCY = 0.050  # s: the queue holds this long of data at the rate (tc's ``latency 50ms``)
BURST_TIME = 0.010  # s: the bucket holds 10 ms of data at the rate ...
ETH_HLEN = 14  # ... and at least a few full frames (qdisc lengths include the Ethernet header)
BURST_FRAMES = 4
MAX_BYTES = (1 << 64) - 1  # TCA_TBF_RATE64 is a u64 of bytes per second

# tc's units (tc_util.c: suffixes), matched without case; the value is bits per second
_UNITS = {
    "": 1, "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12,
    "kibit": 2**10, "mibit": 2**20, "gibit": 2**30, "tibit": 2**40,
    "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9, "tbps": 8 * 10**12,
    "kibps": 8 * 2**10, "mibps": 8 * 2**20, "gibps": 8 * 2**30, "tibps": 8 * 2**40,
}
_RATE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([a-z]*)")
UNITS_HELP = "bit, kbit, mbit, gbit; bps, kbps, mbps, gbps for bytes per second"


# --- parsing and checking (pure) -------------------------------------------------------------


def parse_rate(s: str) -> int:
    """One tc rate (``4mbit``, ``500kbit``, ``1.5MBps``) in bits per second; ``unlimited`` is 0."""
    t = s.strip().lower()
    if t == "unlimited":
        return 0
    m = _RATE.fullmatch(t)
    if not m:
        raise ValueError(f"a rate is a number and a unit ({UNITS_HELP}), or \"unlimited\"")
    if m.group(2) not in _UNITS:
        raise ValueError(f"unknown rate unit \"{m.group(2)}\" (use {UNITS_HELP})")
    # exact decimal arithmetic: 1.5mbit is 1500000, not 1499999.99...
    whole, _, frac = m.group(1).partition(".")
    bits = (int(whole or "0") * 10 ** len(frac) + int(frac or "0")) * _UNITS[m.group(2)] // 10 ** len(frac)
    if bits < 8:
        raise ValueError("a rate must be at least 8bit (1 byte per second); use \"unlimited\" for no limit")
    if bits // 8 > MAX_BYTES:
        raise ValueError("the rate is too large")
    return bits


def parse(value: str) -> dict[str, int]:
    """``--network-rate``: ``RATE`` (both directions) or ``EGRESS/INGRESS`` -> the HostConfig value."""
    parts = value.split("/")
    if len(parts) > 2:
        raise ValueError("expected EGRESS or EGRESS/INGRESS")
    egress = parse_rate(parts[0])
    ingress = parse_rate(parts[1]) if len(parts) == 2 else egress
    return {"Egress": egress, "Ingress": ingress}


def format_rate(bits: int) -> str:
    """bits/s as tc prints them (``4Mbit``), or ``unlimited``."""
    if not bits:
        return "unlimited"
    for unit, scale in (("Tbit", 10**12), ("Gbit", 10**9), ("Mbit", 10**6), ("Kbit", 10**3)):
        if bits >= scale:
            return f"{bits / scale:g}{unit}"
    return f"{bits}bit"


def check(value: Any) -> dict[str, int] | None:
    """HostConfig.KranNetworkRate as sent (CLI or API), normalised to both keys (a missing one is
    0: unlimited); None stays None.  A wrong shape raises InvalidArgument (HTTP 400, exit 125)
    before anything is created."""
    from kran.errors import InvalidArgument

    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"Egress", "Ingress"}:
        raise InvalidArgument(f"invalid HostConfig.{KEY}: expected {{\"Egress\": bits/s, \"Ingress\": bits/s}}")
    out = {}
    for k in ("Egress", "Ingress"):
        v = value.get(k) or 0
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidArgument(f"invalid HostConfig.{KEY}.{k}: expected a whole number of bits per second"
                                  " (0 for unlimited)")
        if 0 < v < 8 or v // 8 > MAX_BYTES:
            raise InvalidArgument(f"invalid HostConfig.{KEY}.{k}: {v} is out of range (8 bits/s to 2^64 bytes/s)")
        out[k] = v
    return out


def limited(rate: dict[str, int] | None) -> bool:
    return bool(rate and any(rate.values()))


def check_mode(network_mode: str, value: Any) -> dict[str, int] | None:
    """:func:`check`, and a rate refused where the container has no veth of its own to shape."""
    from kran.errors import InvalidArgument

    rate = check(value)
    if not limited(rate):
        return rate
    mode = network_mode or "default"
    if mode == "host":
        raise InvalidArgument("conflicting options: --network-rate and the host network mode"
                              " (kran shapes a container's own veth, never the host's interfaces)")
    if mode == "none":
        raise InvalidArgument("conflicting options: --network-rate and the none network mode (nothing to shape)")
    if mode.startswith("container:"):
        raise InvalidArgument("conflicting options: --network-rate and the container network mode"
                              " (set the rate on the container that owns the network)")
    return rate


# --- tbf parameters (pure) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Tbf:
    rate: int  # bytes per second
    burst: int  # bytes: the bucket
    limit: int  # bytes: the queue in front of it


def tbf_for(bits: int, mtu: int = 1500) -> Tbf:
    """What ``tc qdisc replace dev X root tbf rate R burst B latency 50ms`` would set, with B the
    larger of 10 ms at the rate (timer slack) and four full frames (a burst below one frame
    would drop every full-size packet)."""
    rate = bits // 8
    burst = min(max(int(rate * BURST_TIME), BURST_FRAMES * (mtu + ETH_HLEN)), 1 << 30)
    limit = min(int(rate * LATENCY + burst), 0xFFFFFFFF)  # q_tbf.c: rate*latency + buffer; a u32 of bytes
    return Tbf(rate=rate, burst=burst, limit=limit)


def _ticks_per_usec() -> float:
    """tc_core_init: the packet scheduler's clock, from /proc/net/psched (t2us, us2t, resolution)."""
    try:
        with open("/proc/net/psched") as f:
            t2us, us2t, res = (int(x, 16) for x in f.read().split()[:3])
    except (OSError, ValueError):
        return 1000 / 64  # PSCHED_SHIFT 6: a tick is 64 ns on every kernel since 2.6.24
    if res == 1_000_000_000:  # tc's compatibility hack for nanosecond resolution
        t2us = us2t
    return t2us / us2t * (res / 1_000_000)


def tbf_message(ifindex: int, t: Tbf, ticks_per_usec: float) -> bytes:
    """The RTM_NEWQDISC payload (tcmsg and attributes) for a root tbf on ``ifindex``."""
    rate32 = min(t.rate, 0xFFFFFFFF)  # ~0U says "see TCA_TBF_RATE64", as tc sends it
    rate = _RATESPEC.pack(0, TC_LINKLAYER_ETHERNET, 0, -1, 0, rate32)
    buffer = int(1_000_000 * t.burst / t.rate * ticks_per_usec)  # tc_calc_xmittime: ticks to send a burst
    qopt = _TBF_QOPT.pack(rate, bytes(_RATESPEC.size), t.limit, min(buffer, 0xFFFFFFFF), 0)
    opts = _attr(TCA_TBF_PARMS, qopt) + _attr(TCA_TBF_BURST, struct.pack("=I", t.burst))
    if t.rate >= 1 << 32:
        opts += _attr(TCA_TBF_RATE64, struct.pack("=Q", t.rate))
    return _TCMSG.pack(0, 0, ifindex, 0, TC_H_ROOT, 0) + _str(TCA_KIND, "tbf") + _attr(TCA_OPTIONS, opts)


# --- the kernel ------------------------------------------------------------------------------


def root_qdisc(ifname: str) -> dict[str, Any] | None:
    """The root qdisc of a link in the calling thread's netns: ``{"kind", "handle"}`` plus, for a
    tbf, ``rate`` (bytes/s) and ``limit``; None for the default (noqueue) or a missing link."""
    index = netlink.link_index(ifname)
    if index is None:
        return None
    with _Conn() as c:
        msgs = c.dump(RTM_GETQDISC, _TCMSG.pack(0, 0, index, 0, 0, 0), f"RTM_GETQDISC {ifname}")
    for kind, body in msgs:
        if kind != RTM_NEWQDISC:
            continue
        _fam, _pad, idx, handle, parent, _info = _TCMSG.unpack_from(body, 0)
        if idx != index or parent != TC_H_ROOT or handle == 0:
            continue
        a = _attrs(body, _TCMSG.size)
        out: dict[str, Any] = {"kind": _cstr(a.get(TCA_KIND, b"")), "handle": handle}
        opts = _attrs(a.get(TCA_OPTIONS, b""))
        if out["kind"] == "tbf" and TCA_TBF_PARMS in opts:
            ratespec, _peak, limit, _buffer, _mtu = _TBF_QOPT.unpack_from(opts[TCA_TBF_PARMS], 0)
            rate = _RATESPEC.unpack(ratespec)[5]
            if TCA_TBF_RATE64 in opts:
                rate = struct.unpack("=Q", opts[TCA_TBF_RATE64][:8])[0]
            out.update(rate=rate, limit=limit)
        return out
    return None


def set_rate(ifname: str, bits: int) -> None:
    """Shape what ``ifname`` sends to ``bits`` per second (a root tbf, replaced in place when it is
    one already: no packet is lost), or, with 0, remove kran's tbf from it."""
    index = netlink.link_index(ifname)
    if index is None:
        raise netlink.NetlinkError(19, f"netlink: RTM_NEWQDISC {ifname}: No such device")
    if not bits:
        cur = root_qdisc(ifname)
        if cur and cur["kind"] == "tbf":
            with _Conn() as c:
                try:
                    c.request(RTM_DELQDISC, 0, _TCMSG.pack(0, 0, index, 0, TC_H_ROOT, 0), f"RTM_DELQDISC {ifname}")
                except netlink.NetlinkError as e:
                    if e.errno not in (2, 19):  # ENOENT, ENODEV: gone already
                        raise
        return
    ln = netlink.link(ifname)
    t = tbf_for(bits, (ln.mtu if ln and ln.mtu else 1500))
    with _Conn() as c:
        c.request(RTM_NEWQDISC, netlink.NLM_F_CREATE | netlink.NLM_F_REPLACE,
                  tbf_message(index, t, _ticks_per_usec()), f"RTM_NEWQDISC {ifname} tbf")


def shape_endpoint(netns_path: str, host_if: str, ifname: str, rate: dict[str, int] | None) -> None:
    """Apply (or, with None/zeros, lift) a container's rate on one endpoint: egress on ``ifname``
    inside its namespace, ingress on ``host_if`` in the calling thread's (kran's) namespace."""
    rate = rate or {}
    netlink.in_netns(netns_path, set_rate, ifname, int(rate.get("Egress") or 0))
    set_rate(host_if, int(rate.get("Ingress") or 0))
