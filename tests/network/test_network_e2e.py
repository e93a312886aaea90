"""Issue 5 end to end: the seed's web-server session, published ports, user networks with DNS,
the special network modes, and that nothing is left behind.  Everything runs in the test's own
network namespace (see conftest): its 127.0.0.1, its dummy "host address" and its containers."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.network.conftest import HOST_IP

USERLAND = "Error starting userland proxy: listen tcp4 0.0.0.0:80: bind: address already in use"


def wait_http(ns, url: str, want: str, timeout: float = 10.0) -> str:
    end = time.monotonic() + timeout
    last = ""
    while time.monotonic() < end:
        p = ns.curl(url, check=False)
        last = p.out + p.err
        if p.returncode == 0 and want in p.out:
            return p.out
        time.sleep(0.1)
    raise AssertionError(f"{url} did not serve {want!r}: {last}")


def listen(ns, port: int, host: str = "0.0.0.0") -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen()
        return s

    return ns.call(make)


def links(ns) -> list[str]:
    return [line.split(":")[1].strip().split("@")[0] for line in ns.run("ip", "-o", "link").out.splitlines()]


def test_seed_web_server_session(nkran, netns, web_image):
    """Seed step 4 with busybox httpd in place of nginx."""
    held = listen(netns, 80)  # "the host's own web server holds port 80"
    try:
        p = nkran("run", "-d", "--name", "test-nginx", "-p", "80:80", "nginx", check=False)
        assert p.returncode == 125
        assert len(p.out.strip()) == 64  # docker prints the ID, then the error
        assert USERLAND in p.err
        assert "driver failed programming external connectivity on endpoint test-nginx" in p.err
        assert nkran("ps", "-q").out.strip() == ""  # nothing runs
        ps_a = nkran("ps", "-a", "--format", "{{.Names}} {{.Status}}").out
        assert "test-nginx Created" in ps_a  # the failed container stays and keeps its name
        p = nkran("run", "-d", "--name", "test-nginx", "-p", "8080:80", "nginx", check=False)
        assert p.returncode == 125
        assert 'Conflict. The container name "/test-nginx" is already in use by container' in p.err
    finally:
        held.close()
    nkran("rm", "test-nginx")
    cid = nkran("run", "-d", "--name", "test-nginx", "-p", "8080:80", "nginx").out.strip()
    assert len(cid) == 64
    # the browser on the host: its public address (kernel DNAT) and loopback (userland proxy)
    assert "Welcome to kran-nginx!" in wait_http(netns, f"http://{HOST_IP}:8080/", "Welcome")
    assert "Welcome to kran-nginx!" in wait_http(netns, "http://127.0.0.1:8080/", "Welcome")
    nkran("run", "-d", "--name", "test-nginx1", "-p", "8081:80", "nginx")
    nkran("run", "-d", "--name", "test-nginx2", "-p", "8082:80", "nginx")
    for port in (8080, 8081, 8082):
        wait_http(netns, f"http://{HOST_IP}:{port}/", "Welcome")
        wait_http(netns, f"http://127.0.0.1:{port}/", "Welcome")
    table = nkran("ps").out.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    rows = {line.split()[-1]: line for line in table[1:]}
    assert set(rows) == {"test-nginx", "test-nginx1", "test-nginx2"}
    assert "0.0.0.0:8080->80/tcp" in rows["test-nginx"]
    assert "0.0.0.0:8081->80/tcp" in rows["test-nginx1"]
    assert "0.0.0.0:8082->80/tcp" in rows["test-nginx2"]
    assert nkran("port", "test-nginx1").out == "80/tcp -> 0.0.0.0:8081\n"
    # another kran container cannot take a port one holds
    p = nkran("run", "-d", "--name", "dup", "-p", "8081:80", "nginx", check=False)
    assert p.returncode == 125 and "Bind for 0.0.0.0:8081 failed: port is already allocated" in p.err
    nkran("stop", "-t", "1", "test-nginx", "test-nginx1", "test-nginx2")
    assert nkran("ps", "-q").out.strip() == ""
    assert netns.curl(f"http://{HOST_IP}:8080/", check=False).returncode != 0
    assert netns.curl("http://127.0.0.1:8081/", check=False).returncode != 0
    # a stopped container's port is free again
    nkran("rm", "dup")
    nkran("run", "-d", "--name", "again", "-p", "8081:80", "nginx")
    wait_http(netns, "http://127.0.0.1:8081/", "Welcome")


def test_publish_forms_and_port_command(nkran, netns, web_image):
    nkran("run", "-d", "--name", "w1", "-p", "127.0.0.1:8090:80", "-p", "80", "-p", "9000-9001:7000-7001", "nginx")
    assert wait_http(netns, "http://127.0.0.1:8090/", "Welcome")
    # only loopback was asked for: the public address is not served
    assert netns.curl(f"http://{HOST_IP}:8090/", check=False).returncode != 0
    out = nkran("port", "w1").out.splitlines()
    assert "80/tcp -> 127.0.0.1:8090" in out
    rnd = [line for line in out if line.startswith("80/tcp -> 0.0.0.0:")]
    assert len(rnd) == 1
    port = int(rnd[0].rsplit(":", 1)[1])
    assert port > 1024
    wait_http(netns, f"http://{HOST_IP}:{port}/", "Welcome")
    assert "7000/tcp -> 0.0.0.0:9000" in out and "7001/tcp -> 0.0.0.0:9001" in out
    assert nkran("port", "w1", "7001").out.strip() == "0.0.0.0:9001"
    p = nkran("port", "w1", "443", check=False)
    assert p.returncode == 1 and "No public port '443' published for w1" in p.err
    ports = nkran("inspect", "-f", "{{json .NetworkSettings.Ports}}", "w1").out
    assert json.loads(ports)["7000/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "9000"}]
    # -P publishes every EXPOSEd port on a random host port
    nkran("run", "-d", "--name", "all", "-P", "nginx")
    line = nkran("port", "all").out.strip()
    assert line.startswith("80/tcp -> 0.0.0.0:")
    wait_http(netns, f"http://127.0.0.1:{line.rsplit(':', 1)[1]}/", "Welcome")


def test_udp_publish(nkran, netns, udpecho_image):
    nkran("run", "-d", "--name", "echo", "-p", "5353:9999/udp", "udpecho")
    assert nkran("port", "echo").out.strip() == "9999/udp -> 0.0.0.0:5353"

    def roundtrip(addr: str) -> bytes:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.5)
        try:
            for _ in range(20):
                s.sendto(b"ping", (addr, 5353))
                try:
                    return s.recv(100)
                except TimeoutError:
                    continue
            return b""
        finally:
            s.close()

    assert netns.call(roundtrip, "127.0.0.1") == b"echo:ping"  # userland proxy
    assert netns.call(roundtrip, HOST_IP) == b"echo:ping"  # kernel DNAT


def test_user_network_name_resolution(nkran, netns, web_image):
    nid = nkran("network", "create", "appnet").out.strip()
    assert len(nid) == 64
    nkran("run", "-d", "--name", "web", "--network", "appnet", "--network-alias", "www", "nginx")
    # by name and by alias, through the embedded DNS at 127.0.0.11
    out = nkran("run", "--rm", "--network", "appnet", "busybox", "sh", "-c",
                "cat /etc/resolv.conf; nslookup web; wget -qO- http://web/; wget -qO- http://www/").out
    assert "nameserver 127.0.0.11" in out
    assert out.count("Welcome to kran-nginx!") == 2
    web_ip = nkran("inspect", "-f", "{{(index .NetworkSettings.Networks \"appnet\").IPAddress}}", "web").out.strip()
    assert web_ip and web_ip in out
    # the default bridge has no embedded DNS: the name does not resolve there
    p = nkran("run", "--rm", "busybox", "nslookup", "web", check=False)
    assert p.returncode != 0
    # a name that is gone stops resolving
    nkran("rm", "-f", "web")
    p = nkran("run", "--rm", "--network", "appnet", "busybox", "nslookup", "web", check=False)
    assert p.returncode != 0
    nkran("network", "rm", "appnet")
    assert "appnet" not in nkran("network", "ls").out


def test_container_to_container_across_bridge(nkran, netns, web_image):
    nkran("run", "-d", "--name", "aa", "nginx")
    ip = nkran("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "aa").out.strip()
    assert ip.startswith(("172.", "192.168."))
    out = nkran("run", "--rm", "busybox", "wget", "-qO-", f"http://{ip}/").out
    assert "Welcome to kran-nginx!" in out
    # and the host reaches the container's address directly
    wait_http(netns, f"http://{ip}/", "Welcome")


def test_network_none_and_host_and_container(nkran, netns, web_image):
    out = nkran("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").out
    names = [line.split(":")[1].strip() for line in out.splitlines()]
    assert names == ["lo"]
    out = nkran("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link").out
    assert "kthost0" in out  # the (test) host's interfaces
    nkran("run", "-d", "--name", "srv", "nginx")
    out = nkran("run", "--rm", "--network", "container:srv", "busybox", "wget", "-qO-", "http://127.0.0.1/").out
    assert "Welcome to kran-nginx!" in out


def test_hosts_resolv_dns_flags(nkran, netns, web_image):
    out = nkran("run", "--rm", "--add-host", "db.local:10.1.2.3", "--dns", "10.9.9.9", "--dns-search", "corp.example",
                "--hostname", "box", "busybox", "sh", "-c", "cat /etc/hosts; echo ---; cat /etc/resolv.conf").out
    hosts, resolv = out.split("---")
    assert "10.1.2.3\tdb.local" in hosts
    assert "\tbox" in hosts and "127.0.0.1\tlocalhost" in hosts
    assert "nameserver 10.9.9.9" in resolv and "search corp.example" in resolv
    assert "127." not in resolv.replace("127.0.0.11", "")


def test_network_commands(nkran, netns, web_image):
    ls = nkran("network", "ls").out.splitlines()
    assert ls[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert {line.split()[1] for line in ls[1:]} == {"bridge", "host", "none"}
    nkran("network", "create", "--subnet", "10.77.0.0/24", "--gateway", "10.77.0.254", "n1")
    p = nkran("network", "create", "n1", check=False)
    assert p.returncode != 0 and "network with name n1 already exists" in p.err
    p = nkran("network", "create", "--subnet", "10.77.0.0/25", "n2", check=False)
    assert p.returncode != 0 and "overlaps" in p.err
    info = json.loads(nkran("network", "inspect", "n1").out)[0]
    assert info["IPAM"]["Config"] == [{"Subnet": "10.77.0.0/24", "Gateway": "10.77.0.254"}]
    assert info["Driver"] == "bridge" and info["Containers"] == {}
    nkran("run", "-d", "--name", "c1", "--network", "n1", "nginx")
    info = json.loads(nkran("network", "inspect", "n1").out)[0]
    (ep,) = info["Containers"].values()
    assert ep["Name"] == "c1" and ep["IPv4Address"] == "10.77.0.1/24"
    p = nkran("network", "rm", "n1", check=False)
    assert p.returncode != 0 and "has active endpoints" in p.err
    p = nkran("network", "rm", "bridge", check=False)
    assert "bridge is a pre-defined network and cannot be removed" in p.err
    # connect / disconnect a running container
    nkran("run", "-d", "--name", "c2", "nginx")
    nkran("network", "connect", "--alias", "second", "n1", "c2")
    out = nkran("exec", "c2", "ip", "-o", "-4", "addr").out
    assert "10.77.0.2/24" in out
    out = nkran("exec", "c1", "wget", "-qO-", "http://second/").out
    assert "Welcome" in out
    nkran("network", "disconnect", "n1", "c2")
    assert "10.77.0.2" not in nkran("exec", "c2", "ip", "-o", "-4", "addr").out
    p = nkran("network", "connect", "nope", "c2", check=False)
    assert p.returncode != 0 and "network nope not found" in p.err
    p = nkran("run", "--rm", "--network", "nope", "busybox", "true", check=False)
    assert p.returncode == 125 and "network nope not found" in p.err
    nkran("rm", "-f", "c1")
    nkran("network", "create", "n3")
    out = nkran("network", "prune", "-f").out
    assert "Deleted Networks:" in out and "n1" in out and "n3" in out
    assert [line.split()[1] for line in nkran("network", "ls").out.splitlines()[1:]] == ["bridge", "host", "none"]


def test_internal_network_has_no_way_out(nkran, netns, web_image):
    nkran("network", "create", "--internal", "inner")
    nkran("run", "-d", "--name", "aa", "--network", "inner", "nginx")
    # peers on the internal network reach each other...
    assert "Welcome" in nkran("run", "--rm", "--network", "inner", "busybox", "wget", "-qO-", "http://aa/").out
    # ...but nothing outside (no default route)
    p = nkran("run", "--rm", "--network", "inner", "busybox", "wget", "-T", "2", "-qO-", f"http://{HOST_IP}:1/",
              check=False)
    assert p.returncode != 0
    out = nkran("run", "--rm", "--network", "inner", "busybox", "ip", "route").out
    assert "default" not in out


def test_concurrent_runs_never_share_an_address(nkran, netns, web_image):
    procs = [nkran.popen("run", "-d", "--name", f"p{i}", "busybox", "sleep", "60",
                         stdout=__import__("subprocess").PIPE, stderr=__import__("subprocess").PIPE) for i in range(6)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    ips = [nkran("inspect", "-f", "{{.NetworkSettings.IPAddress}}", f"p{i}").out.strip() for i in range(6)]
    assert len(set(ips)) == 6 and all(ips)


def test_nothing_left_after_rm_everything(nkran, netns, web_image):
    nkran("network", "create", "left")
    nkran("run", "-d", "--name", "xx", "-p", "8085:80", "--network", "left", "nginx")
    nkran("run", "-d", "--name", "yy", "-p", "8086:80", "nginx")
    wait_http(netns, "http://127.0.0.1:8085/", "Welcome")
    assert sum(1 for n in links(netns) if n.startswith("veth")) == 2
    ids = nkran("ps", "-aq").out.split()
    nkran("rm", "-f", *ids)
    nkran("network", "rm", "left")
    deadline = time.monotonic() + 3  # the kernel deletes the veths with the namespaces, in the background
    while [n for n in links(netns) if n.startswith("veth")] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [n for n in links(netns) if n.startswith(("veth", "kr-"))]
    ruleset = netns.run("nft", "list", "table", "ip", "kran").out
    assert "8085" not in ruleset and "8086" not in ruleset and "kr-" not in ruleset
    import sqlite3

    db = sqlite3.connect(str(nkran.root / "kran.db"))
    assert db.execute("SELECT COUNT(*) FROM ports").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM endpoints").fetchone()[0] == 0
    assert not any(nkran.root.parent.glob("nothing"))  # (root exists)
    netns_dir = __import__("tests.conftest", fromlist=["_run_dir"])._run_dir(nkran.root) / "netns"
    assert not list(netns_dir.glob("*")) if netns_dir.exists() else True
    # the ports are free for anyone
    listen(netns, 8085).close()
    listen(netns, 8086).close()


def test_crashed_monitor_and_reboot_are_repaired(nkran, netns, web_image):
    import os
    import signal

    cid = nkran("run", "-d", "--name", "victim", "-p", "8087:80", "nginx").out.strip()
    wait_http(netns, f"http://{HOST_IP}:8087/", "Welcome")
    state = json.loads((nkran.root / "containers" / cid / "state.json").read_text())
    os.kill(state["monitor_pid"], signal.SIGKILL)
    os.kill(state["pid"], signal.SIGKILL)
    time.sleep(0.3)
    # the next start finds the dead container's lease, veth and port and releases them
    nkran("run", "-d", "--name", "heir", "-p", "8087:80", "nginx")
    wait_http(netns, f"http://{HOST_IP}:8087/", "Welcome")
    assert nkran("inspect", "-f", "{{.State.Status}}", "victim").out.strip() == "exited"
    vict = [n for n in links(netns) if n.startswith("veth")]
    assert len(vict) == 1
    # "reboot": the bridge and the nft table vanish (as /run and the kernel state would)
    nkran("rm", "-f", "heir")
    netns.run("ip", "link", "del", "kran0")
    netns.run("nft", "delete", "table", "ip", "kran")
    nkran("start", "victim")
    wait_http(netns, f"http://{HOST_IP}:8087/", "Welcome")
    wait_http(netns, "http://127.0.0.1:8087/", "Welcome")


@pytest.mark.parametrize("spec,err", [
    ("80:80:80:80", "invalid"),
    ("abc:80", "invalid"),
    ("8080:80/xyz", "invalid proto"),
])
def test_bad_publish_specs(nkran, netns, web_image, spec, err):
    p = nkran("run", "--rm", "-p", spec, "nginx", check=False)
    assert p.returncode == 125 and err in p.err.lower()
    assert nkran("ps", "-aq").out.strip() == ""


def test_outbound_nat_and_published_port_from_a_container(nkran, netns, web_image, tmp_path):
    """A container reaches "the internet" (a second namespace behind the host's NIC) masqueraded as
    the host, and reaches a published port through the host's public address."""
    import threading

    from kran.network import netlink
    from kran.network import netns as nsmod

    nkran("run", "-d", "--name", "pub", "-p", "8088:80", "nginx")
    wait_http(netns, "http://127.0.0.1:8088/", "Welcome")
    out = nkran("run", "--rm", "busybox", "wget", "-qO-", f"http://{HOST_IP}:8088/").out
    assert "Welcome to kran-nginx!" in out
    # and a container reaching its own published port (hairpin)
    out = nkran("exec", "pub", "wget", "-qO-", f"http://{HOST_IP}:8088/").out
    assert "Welcome to kran-nginx!" in out
    # (removing the outside namespace at the end takes the host's NIC, the veth pair, with it)
    outside = str(tmp_path / "outside-ns")
    nsmod.create(outside)
    try:
        fd = __import__("os").open(outside, __import__("os").O_RDONLY)
        try:
            netns.call(netlink.set_link, "kthost1", netns_fd=fd)
        finally:
            __import__("os").close(fd)

        def up() -> None:
            netlink.add_addr("kthost1", "10.123.0.2/24")
            netlink.set_link("kthost1", up=True)

        netlink.in_netns(outside, up)

        def make() -> socket.socket:
            s = socket.socket()
            s.bind(("10.123.0.2", 7777))
            s.listen()
            return s

        srv = netlink.in_netns(outside, make)
        peers: list[str] = []

        def serve() -> None:
            srv.settimeout(20)
            try:
                conn, addr = srv.accept()
            except OSError:
                return
            peers.append(addr[0])
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\noutside")
            conn.close()

        t = threading.Thread(target=serve)
        t.start()
        out = nkran("run", "--rm", "busybox", "wget", "-qO-", "http://10.123.0.2:7777/").out
        t.join(25)
        srv.close()
        assert out == "outside"
        assert peers == [HOST_IP]  # masqueraded: the outside world sees the host, not 172.x
    finally:
        nsmod.remove(outside)


def test_ports_are_released_when_the_container_ends_by_itself(nkran, netns, web_image):
    nkran("run", "-d", "--name", "short", "-p", "8089:80", "nginx", "sh", "-c", "httpd -p 80 -h /www; sleep 1")
    ruleset = ""
    for _ in range(100):  # nobody runs kran meanwhile: the monitor's exit hook cleans up
        ruleset = netns.run("nft", "list", "map", "ip", "kran", "tcp_any").out
        if "8089" not in ruleset and not [n for n in links(netns) if n.startswith("veth")]:
            break
        time.sleep(0.1)
    assert "8089" not in ruleset
    assert not [n for n in links(netns) if n.startswith("veth")]
    listen(netns, 8089).close()


def test_embedded_dns_forwards_other_names_to_the_hosts_resolvers(nkran, netns, web_image):
    """A name that is no container's goes from 127.0.0.11 to the upstream (--dns here: a fake
    resolver the test runs on the host's address) and its answer comes back."""
    import struct
    import threading

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST_IP, 53))
        return s

    up = netns.call(make)
    asked: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        up.settimeout(0.2)
        while not stop.is_set():
            try:
                q, addr = up.recvfrom(512)
            except TimeoutError:
                continue
            i, labels = 12, []
            while q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode())
                i += 1 + q[i]
            qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
            asked.append(".".join(labels))
            question = q[12:i + 5]
            if qtype == 1:
                ans = struct.pack("!HHHLH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton("10.55.55.55")
                up.sendto(q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + question + ans, addr)
            else:
                up.sendto(q[:2] + struct.pack("!HHHHH", 0x8180, 1, 0, 0, 0) + question, addr)

    t = threading.Thread(target=serve)
    t.start()
    try:
        nkran("network", "create", "fwd")
        out = nkran("run", "--rm", "--network", "fwd", "--dns", HOST_IP, "busybox", "nslookup", "far.example").out
    finally:
        stop.set()
        t.join()
        up.close()
    assert "10.55.55.55" in out
    assert "far.example" in asked


def test_default_bridge_from_the_config_file(nkran, netns, busybox_tar, tmp_path):
    from tests.conftest import BUSYBOX_CHANGES

    cfg = tmp_path / "config.toml"
    cfg.write_text('[network]\nbridge = "kbr9"\nbridge-subnet = "10.201.0.0/24"\n')
    nkran.env["KRAN_CONFIG"] = str(cfg)
    nkran("import", *BUSYBOX_CHANGES, str(busybox_tar), "busybox:latest")
    out = nkran("run", "--rm", "busybox", "ip", "-o", "-4", "addr", "show", "eth0").out
    assert "10.201.0.2/24" in out
    assert "kbr9" in links(netns) and "kran0" not in links(netns)
    assert json.loads(nkran("network", "inspect", "bridge").out)[0]["IPAM"]["Config"] == [
        {"Subnet": "10.201.0.0/24", "Gateway": "10.201.0.1"}]


def test_ps_filters_network_publish_expose(nkran, netns, web_image):
    nkran("network", "create", "fnet")
    nkran("run", "-d", "--name", "on-net", "--network", "fnet", "nginx")
    nkran("run", "-d", "--name", "pub", "-p", "8093:80", "nginx")

    def names(*f: str) -> set[str]:
        args = [x for v in f for x in ("--filter", v)]
        return set(nkran("ps", *args, "--format", "{{.Names}}").out.split())

    assert names("network=fnet") == {"on-net"}
    assert names("network=bridge") == {"pub"}
    assert names("publish=8093") == {"pub"}
    assert names("publish=8093/udp") == set()
    assert names("expose=80") == {"on-net", "pub"}


def test_network_removed_under_a_stopped_container(nkran, netns, web_image):
    nkran("network", "create", "gone")
    nkran("create", "--name", "waiting", "--network", "gone", "nginx")
    nkran("network", "rm", "gone")  # no running container uses it: docker lets it go
    p = nkran("start", "waiting", check=False)
    assert p.returncode != 0 and "network gone not found" in p.err
    nkran("network", "create", "--subnet", "10.66.0.0/24", "gone")  # made again, under the same name
    nkran("start", "waiting")
    assert nkran("inspect", "-f", '{{(index .NetworkSettings.Networks "gone").IPAddress}}', "waiting").out.strip() \
        == "10.66.0.2"


def test_fixed_ip_and_generic_inspect(nkran, netns, web_image):
    nkran("network", "create", "--subnet", "10.78.0.0/24", "fixed")
    nkran("run", "-d", "--name", "f1", "--network", "fixed", "--ip", "10.78.0.50", "nginx")
    assert nkran("inspect", "-f", '{{(index .NetworkSettings.Networks "fixed").IPAddress}}', "f1").out.strip() \
        == "10.78.0.50"
    p = nkran("run", "-d", "--name", "f2", "--network", "fixed", "--ip", "10.78.0.50", "nginx", check=False)
    assert p.returncode == 125 and "Address already in use" in p.err
    nkran("run", "-d", "--name", "f3", "nginx")
    nkran("network", "connect", "--ip", "10.78.0.60", "fixed", "f3")
    assert "10.78.0.60/24" in nkran("exec", "f3", "ip", "-o", "-4", "addr").out
    # docker's inspect finds networks too (after containers, images and volumes)
    assert nkran("inspect", "-f", "{{.Name}} {{.Driver}}", "fixed").out == "fixed bridge\n"
    assert nkran("inspect", "--type", "network", "-f", "{{.Name}}", "bridge").out == "bridge\n"
    p = nkran("inspect", "--type", "network", "nope", check=False)
    assert p.returncode == 1 and "nope" in p.err


def test_kill_9_during_run_with_ports_leaves_nothing(nkran, netns, web_image):
    """kill -9 of `kran run -p` at any moment: once kran has looked again, no veth, lease, port row
    or DNAT entry is left, and the port can be published again."""
    import os
    import signal
    import sqlite3
    import subprocess

    for i, delay in enumerate([0.05, 0.08, 0.11, 0.14, 0.17, 0.2, 0.25, 0.3]):
        p = nkran.popen("run", "-d", "--name", f"k{i}", "-p", "8095:80", "nginx",
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        ids = nkran("ps", "-aq").out.split()
        if ids:
            nkran("rm", "-f", *ids)
        deadline = time.monotonic() + 3
        while [n for n in links(netns) if n.startswith("veth")] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not [n for n in links(netns) if n.startswith("veth")], f"delay {delay}"
        db = sqlite3.connect(str(nkran.root / "kran.db"))
        try:
            assert db.execute("SELECT COUNT(*) FROM ports").fetchone()[0] == 0
            assert db.execute("SELECT COUNT(*) FROM endpoints WHERE ip IS NOT NULL").fetchone()[0] == 0
        finally:
            db.close()
        assert "8095" not in netns.run("nft", "list", "map", "ip", "kran", "tcp_any", check=False).out
    nkran("run", "-d", "--name", "after", "-p", "8095:80", "nginx")
    wait_http(netns, f"http://{HOST_IP}:8095/", "Welcome")


def test_table_deleted_under_the_bridge_is_put_back(nkran, netns, web_image):
    """The nft table gone while kran0 stays (a kill -9 mid-setup, an `nft flush ruleset`):
    publishing a port puts the rules back."""
    nkran("run", "--rm", "busybox", "true")  # kran0 and the table exist
    netns.run("nft", "delete", "table", "ip", "kran")
    nkran("run", "-d", "--name", "back", "-p", "8096:80", "nginx")
    wait_http(netns, f"http://{HOST_IP}:8096/", "Welcome")
    assert "8096" in netns.run("nft", "list", "map", "ip", "kran", "tcp_any").out
