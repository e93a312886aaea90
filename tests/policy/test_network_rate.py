# ruff: noqa: F811 - pytest fixtures imported above are the parameters' names
"""--network-rate: a tbf qdisc on each end of a container's veth, measured with real TCP transfers.

Everything that makes veths runs inside the test's own network namespace (``netns``/``nkran``);
``tc`` (iproute2) reads back what kran set through rtnetlink, as an independent check.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from kran.network import shaping
from tests.api.conftest import api, api_busybox  # noqa: F401 - fixtures
from tests.conftest import BUSYBOX_CHANGES, _run_dir
from tests.network.conftest import NetNS, netns, nkran  # noqa: F401 - fixtures
from tests.rootless.conftest import _tun, busybox_rootless_tar, ruser  # noqa: F401 - fixtures

MB = 1_000_000


# --- parsing (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "egress", "ingress"), [
    ("10mbit", 10 * MB, 10 * MB),  # one value: both directions
    ("500kbit/2mbit", 500_000, 2 * MB),
    ("1mbps", 8 * MB, 8 * MB),  # tc: bps/kbps/mbps are bytes per second
    ("1.5Mbit/64KBPS", 1_500_000, 512_000),  # tc's units match without case
    ("1kibit", 1024, 1024),
    ("3gbit/unlimited", 3_000_000_000, 0),
    ("unlimited", 0, 0),
    ("8", 8, 8),  # a bare number is bits per second, as in tc
])
def test_parse(value, egress, ingress):
    assert shaping.parse(value) == {"Egress": egress, "Ingress": ingress}


@pytest.mark.parametrize("value", ["10parsecs", "0", "-1mbit", "1mbit/2mbit/3mbit", "", "mbit", "1e6bit", "4bit",
                                   "1mbit/", "nan", "1 0mbit"])
def test_parse_refuses(value):
    with pytest.raises(ValueError):
        shaping.parse(value)


def test_tbf_parameters():
    t = shaping.tbf_for(4 * MB, 1500)
    # burst: four full frames (10 ms at 4mbit would be only 5000 bytes); limit: 50 ms of data + burst
    assert (t.rate, t.burst, t.limit) == (500_000, 4 * 1514, 25_000 + 4 * 1514)
    t = shaping.tbf_for(1000 * MB, 1500)
    assert (t.rate, t.burst, t.limit) == (125 * MB, 1_250_000, 6_250_000 + 1_250_000)


# --- what the kernel gets, against tc --------------------------------------------------------


def _tc(ns: NetNS, dev: str) -> str:
    out = ns.run("tc", "-d", "qdisc", "show", "dev", dev).out.strip()
    return out.split(" root ", 1)[1] if " root " in out else out  # handles differ: compare the rest


@pytest.mark.parametrize("bits", [100_000, 4 * MB, 1000 * MB, 40_000 * MB])
def test_tbf_is_what_tc_makes(netns: NetNS, bits: int):
    """kran's RTM_NEWQDISC and ``tc qdisc replace ... tbf rate R burst B latency 50ms`` give the same
    qdisc (rates of 2^32 bytes/s and more go in TCA_TBF_RATE64)."""
    netns.run("ip", "link", "add", "ktva", "type", "veth", "peer", "name", "ktvb")
    try:
        for dev in ("ktva", "ktvb"):
            netns.run("ip", "link", "set", dev, "up")
        netns.call(shaping.set_rate, "ktva", bits)
        t = shaping.tbf_for(bits)
        netns.run("tc", "qdisc", "replace", "dev", "ktvb", "root", "tbf", "rate", f"{bits}bit", "burst", str(t.burst),
                  "latency", "50ms")
        assert _tc(netns, "ktva") == _tc(netns, "ktvb")
        assert "tbf" in netns.run("tc", "qdisc", "show", "dev", "ktva").out and "lat 50ms" in _tc(netns, "ktva")
        got = netns.call(shaping.root_qdisc, "ktva")
        assert got["kind"] == "tbf" and got["rate"] == bits // 8 and got["limit"] == t.limit
        netns.call(shaping.set_rate, "ktva", bits * 2)  # replaced in place: the same handle
        assert netns.call(shaping.root_qdisc, "ktva")["handle"] == got["handle"]
        netns.call(shaping.set_rate, "ktva", 0)
        assert netns.call(shaping.root_qdisc, "ktva") is None
        assert "noqueue" in netns.run("tc", "qdisc", "show", "dev", "ktva").out
    finally:
        netns.run("ip", "link", "del", "ktva", check=False)


# --- bad input: one line, nothing created ----------------------------------------------------


def _one_line_error(p, *words: str) -> None:
    assert p.returncode == 125, (p.returncode, p.err)
    lines = [ln for ln in p.err.splitlines() if ln.strip() and not ln.startswith("Run 'kran")]
    assert len(lines) == 1, p.err
    assert all(w in lines[0] for w in words), p.err
    assert "Traceback" not in p.err and "Error:" not in p.err.replace("Error response", "")


@pytest.mark.parametrize(("value", "words"), [
    ("10parsecs", ('"10parsecs"', "--network-rate", "unknown rate unit")),
    ("0", ('"0"', "at least 8bit", "unlimited")),
    ("-1mbit", ('"-1mbit"', "a number and a unit")),
    ("1mbit/2mbit/3mbit", ('"1mbit/2mbit/3mbit"', "EGRESS/INGRESS")),
])
def test_bad_rates_refused_before_create(kran, busybox, value, words):
    for verb in ("create", "run"):
        p = kran(verb, "--network-rate", value, "busybox", "true", check=False)
        _one_line_error(p, *words)
    assert kran("ps", "-aq").out == ""
    assert not (kran.root / "containers").exists() or not list((kran.root / "containers").iterdir())


@pytest.mark.parametrize(("mode", "word"), [("host", "host network mode"), ("none", "nothing to shape"),
                                            ("container:owner", "container network mode")])
def test_rate_needs_a_veth_of_its_own(kran, busybox, mode, word):
    if mode.startswith("container:"):
        kran("create", "--name", "owner", "busybox", "true")
    p = kran("create", "--network", mode, "--network-rate", "1mbit", "busybox", "true", check=False)
    _one_line_error(p, "--network-rate", word)
    assert len(kran("ps", "-aq").out.split()) == (1 if mode.startswith("container:") else 0)
    # "unlimited" asks for nothing: fine anywhere
    kran("create", "--network", mode, "--network-rate", "unlimited", "busybox", "true")


def test_update_refuses_bad_rates(kran, busybox):
    kran("create", "--name", "rated", "--network-rate", "1mbit", "busybox", "true")
    kran("create", "--name", "onhost", "--network", "host", "busybox", "true")
    p = kran("update", "--network-rate", "1mbit/2mbit/3mbit", "rated", check=False)
    assert p.returncode != 0 and "EGRESS/INGRESS" in p.err and len(p.err.strip().splitlines()) == 1
    p = kran("update", "--network-rate", "2mbit", "onhost", check=False)
    assert p.returncode != 0 and "host network mode" in p.err and len(p.err.strip().splitlines()) == 1
    # a stopped container: recorded, applied at its next start
    kran("update", "--network-rate", "unlimited/3mbit", "rated")
    got = json.loads(kran("inspect", "-f", "{{json .HostConfig.KranNetworkRate}}", "rated").out)
    assert got == {"Egress": 0, "Ingress": 3 * MB}


def test_api_checks_types(api, api_busybox):
    from tests.api.conftest import UnixHTTP

    conn = UnixHTTP(api.sock)

    def create(rate) -> tuple[int, dict]:
        body = json.dumps({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"KranNetworkRate": rate}}).encode()
        r, data = conn.call("POST", "/containers/create", body, {"Content-Type": "application/json"})
        return r.status, json.loads(data or b"{}")

    for bad in ("10mbit", [1, 2], {"Egress": "10mbit"}, {"Egress": -1}, {"Egress": True}, {"Egress": 1.5},
                {"Egress": 4}, {"Up": 5}, {"Egress": 1 << 70}):
        status, body = create(bad)
        assert status == 400, (bad, status, body)
        assert "KranNetworkRate" in body["message"] and "\n" not in body["message"]
    r, data = conn.call("GET", "/containers/json?all=1")
    assert json.loads(data) == []
    status, body = create({"Egress": 4 * MB})
    assert status == 201, body
    cid = body["Id"]
    r, data = conn.call("GET", f"/containers/{cid}/json")
    assert json.loads(data)["HostConfig"]["KranNetworkRate"] == {"Egress": 4 * MB, "Ingress": 0}
    body = json.dumps({"KranNetworkRate": {"Ingress": "fast"}}).encode()
    r, data = conn.call("POST", f"/containers/{cid}/update", body, {"Content-Type": "application/json"})
    assert r.status == 400 and "KranNetworkRate.Ingress" in json.loads(data)["message"]
    body = json.dumps({"KranNetworkRate": {"Ingress": 2 * MB}}).encode()  # a missing direction is kept
    r, data = conn.call("POST", f"/containers/{cid}/update", body, {"Content-Type": "application/json"})
    assert r.status == 200, data
    r, data = conn.call("GET", f"/containers/{cid}/json")
    assert json.loads(data)["HostConfig"]["KranNetworkRate"] == {"Egress": 4 * MB, "Ingress": 2 * MB}
    conn.close()


# --- throughput ------------------------------------------------------------------------------


def _listener(ns: NetNS) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 0))
        s.listen(4)
        s.settimeout(60)
        return s

    return ns.call(make)


def measure_egress(nkran, ns: NetNS, name: str, gateway: str, nbytes: int) -> float:
    """The container sends ``nbytes`` to a listener in the test's namespace: bits/s of payload,
    timed at the receiver from the first 64 KiB on (the bucket's first burst excluded)."""
    lst = _listener(ns)
    port = lst.getsockname()[1]
    times: dict[str, float] = {}

    def serve() -> None:
        conn, _ = lst.accept()
        got = 0
        with conn:
            while got < nbytes:
                b = conn.recv(1 << 16)
                if not b:
                    break
                got += len(b)
                if "mark" not in times and got >= 1 << 16:
                    times["mark"], times["mark_bytes"] = time.monotonic(), got
            times["end"], times["bytes"] = time.monotonic(), got

    t = threading.Thread(target=serve)
    t.start()
    try:
        nkran("exec", name, "sh", "-c", f"head -c {nbytes} /dev/zero | nc {gateway} {port}", check=False, timeout=90)
        t.join(90)
    finally:
        lst.close()
    assert times.get("bytes") == nbytes, times
    return (times["bytes"] - times["mark_bytes"]) * 8 / (times["end"] - times["mark"])


def measure_ingress(nkran, ns: NetNS, name: str, gateway: str, nbytes: int) -> float:
    """The container downloads ``nbytes`` (busybox wget) from a server in the test's namespace:
    bits/s, from the request to the client's close once it has everything."""
    lst = _listener(ns)
    port = lst.getsockname()[1]
    times: dict[str, float] = {}

    def serve() -> None:
        conn, _ = lst.accept()
        with conn:
            conn.recv(4096)  # the request
            times["start"] = time.monotonic()
            conn.sendall(f"HTTP/1.0 200 OK\r\nContent-Length: {nbytes}\r\n\r\n".encode())
            chunk = b"x" * (1 << 16)
            left = nbytes
            while left:
                left -= conn.send(chunk[:left])
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(4096):  # EOF: the client has read it all and closed
                pass
            times["end"] = time.monotonic()

    t = threading.Thread(target=serve)
    t.start()
    try:
        p = nkran("exec", name, "wget", "-q", "-O", "/dev/null", f"http://{gateway}:{port}/data", check=False, timeout=90)
        t.join(90)
    finally:
        lst.close()
    assert p.returncode == 0 and "end" in times, (p.err, times)
    return nbytes * 8 / (times["end"] - times["start"])


def _within(measured: float, rate: int, tol: float = 0.15) -> bool:
    return (1 - tol) * rate <= measured <= (1 + tol) * rate


def _qdisc_rate(ns: NetNS, dev: str) -> str:
    out = ns.run("tc", "-s", "qdisc", "show", "dev", dev).out
    assert "qdisc tbf" in out, out
    return out.split(" rate ", 1)[1].split()[0]


def test_throughput_both_ways_live_update_restart_rm(nkran, netns: NetNS, busybox_tar: Path, capsys):
    nkran("import", *BUSYBOX_CHANGES, str(busybox_tar), "busybox:latest")
    cid = nkran("run", "-d", "--name", "lim", "--network-rate", "8mbit/4mbit", "busybox", "sleep", "1000").out.strip()
    gw = nkran("inspect", "-f", "{{.NetworkSettings.Gateway}}", "lim").out.strip()
    host_if = next(ln.split(":")[1].strip().split("@")[0] for ln in netns.run("ip", "-o", "link").out.splitlines()
                   if ln.split(":")[1].strip().startswith("veth"))
    inside = NetNS(str(_run_dir(nkran.root) / "netns" / cid))
    assert _qdisc_rate(inside, "eth0") == "8Mbit" and _qdisc_rate(netns, host_if) == "4Mbit"
    figures = {}
    figures["egress 8mbit"] = e = measure_egress(nkran, netns, "lim", gw, 3 * MB)
    figures["ingress 4mbit"] = i = measure_ingress(nkran, netns, "lim", gw, 3 * MB // 2)
    assert _within(e, 8 * MB) and _within(i, 4 * MB), figures

    nkran("update", "--network-rate", "2mbit/16mbit", "lim")  # live, on the running container
    assert _qdisc_rate(inside, "eth0") == "2Mbit" and _qdisc_rate(netns, host_if) == "16Mbit"
    figures["egress 2mbit"] = e = measure_egress(nkran, netns, "lim", gw, 3 * MB // 4)
    figures["ingress 16mbit"] = i = measure_ingress(nkran, netns, "lim", gw, 6 * MB)
    assert _within(e, 2 * MB) and _within(i, 16 * MB), figures
    with capsys.disabled():
        print("\nmeasured:", ", ".join(f"{k}: {v / MB:.2f} Mbit/s" for k, v in figures.items()))

    nkran("update", "--network-rate", "unlimited/3mbit", "lim")  # one direction lifted
    assert "noqueue" in inside.run("tc", "qdisc", "show", "dev", "eth0").out
    assert _qdisc_rate(netns, host_if) == "3Mbit"
    assert json.loads(nkran("inspect", "-f", "{{json .HostConfig.KranNetworkRate}}", "lim").out) == \
        {"Egress": 0, "Ingress": 3 * MB}

    nkran("update", "--network-rate", "5mbit", "lim")
    nkran("restart", "-t", "0", "lim")  # a new veth pair: both qdiscs made again
    assert _qdisc_rate(inside, "eth0") == "5Mbit" and _qdisc_rate(netns, host_if) == "5Mbit"

    nkran("stop", "-t", "0", "lim")  # the pair goes with the endpoint; the namespace stays, with lo only
    assert host_if not in netns.run("ip", "-o", "link").out
    assert [ln.split(":")[1].strip() for ln in inside.run("ip", "-o", "link").out.splitlines()] == ["lo"]
    assert "tbf" not in inside.run("tc", "qdisc", "show").out
    nkran("start", "lim")
    assert _qdisc_rate(inside, "eth0") == "5Mbit"
    nkran("rm", "-f", "lim")
    assert host_if not in netns.run("ip", "-o", "link").out
    assert not Path(inside.path).exists()
    assert "tbf" not in netns.run("tc", "qdisc", "show").out


def test_restart_policy_keeps_the_shaping(nkran, netns: NetNS, busybox_tar: Path):
    """A restart by policy (the monitor's, no kran running) keeps the veths and so their qdiscs."""
    nkran("import", *BUSYBOX_CHANGES, str(busybox_tar), "busybox:latest")
    cid = nkran("run", "-d", "--name", "flap", "--restart", "always", "--network-rate", "3mbit", "busybox",
                "sh", "-c", "sleep 0.3; exit 1").out.strip()
    inside = NetNS(str(_run_dir(nkran.root) / "netns" / cid))
    deadline = time.monotonic() + 20
    while int(nkran("inspect", "-f", "{{.RestartCount}}", "flap").out or 0) < 2:
        assert time.monotonic() < deadline, "no restart by policy"
        time.sleep(0.2)
    assert _qdisc_rate(inside, "eth0") == "3Mbit"
    nkran("update", "--network-rate", "1mbit", "flap")
    assert _qdisc_rate(inside, "eth0") == "1Mbit"


def test_rootless(ruser, capsys):
    """Rootless: the host ends live in the user's rootless netns (the pause process holds it), the
    container ends in the container's; both are the user's to shape."""
    name = f"rate{uuid.uuid4().hex[:8]}"
    cid = ruser.kran("run", "-d", "--name", name, "--network-rate", "4mbit/3mbit", "busybox", "sleep", "1000").out.strip()
    try:
        # the namespace's pin is a bind mount in the user's own mount namespace: reach it by the process
        pid = int(ruser.kran("inspect", "-f", "{{.State.Pid}}", cid).out)
        inside = NetNS(f"/proc/{pid}/ns/net")
        rootless_ns = NetNS(f"/proc/{ruser.pause_pid()}/ns/net")
        host_if = next(ln.split(":")[1].strip().split("@")[0] for ln in rootless_ns.run("ip", "-o", "link").out.splitlines()
                       if ln.split(":")[1].strip().startswith("veth"))
        assert _qdisc_rate(inside, "eth0") == "4Mbit" and _qdisc_rate(rootless_ns, host_if) == "3Mbit"
        # measured to the bridge's gateway in the rootless netns (slirp4netns, a userspace TCP relay,
        # would add its own stalls to what is measured: the shaping is what is under test)
        gw = ruser.kran("inspect", "-f", "{{.NetworkSettings.Gateway}}", name).out.strip()
        e = measure_egress(ruser.kran, rootless_ns, name, gw, 2 * MB)
        i = measure_ingress(ruser.kran, rootless_ns, name, gw, 3 * MB // 2)
        with capsys.disabled():
            print(f"\nrootless: egress 4mbit: {e / MB:.2f} Mbit/s, ingress 3mbit: {i / MB:.2f} Mbit/s")
        assert _within(e, 4 * MB) and _within(i, 3 * MB), (e, i)
        ruser.kran("update", "--network-rate", "1mbit", name)
        assert _qdisc_rate(inside, "eth0") == "1Mbit" and _qdisc_rate(rootless_ns, host_if) == "1Mbit"
    finally:
        ruser.kran("rm", "-f", name, check=False)
