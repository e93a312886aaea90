"""The pure parts of networking: IPAM, resolv.conf/hosts rules, the nft script, port wants."""

from __future__ import annotations

import pytest

from kran.network import files, ipam, nft, ports


def test_choose_subnet_skips_taken_networks_and_routes():
    assert ipam.choose_subnet([]) == "172.17.0.0/16"
    assert ipam.choose_subnet(["172.17.0.0/16", "172.18.5.0/24"]) == "172.19.0.0/16"
    # a host route inside a pool makes that pool unusable (docker's rule)
    assert ipam.choose_subnet(["172.16.0.0/12"]) == "192.168.0.0/20"
    with pytest.raises(ipam.PoolExhausted):
        ipam.choose_subnet(["0.0.0.0/1", "128.0.0.0/1"])


def test_allocate_never_gives_gateway_network_broadcast_or_used():
    assert ipam.allocate("10.0.0.0/29", "10.0.0.1", []) == "10.0.0.2"
    assert ipam.allocate("10.0.0.0/29", "10.0.0.1", ["10.0.0.2", "10.0.0.3"]) == "10.0.0.4"
    with pytest.raises(ipam.PoolExhausted):
        ipam.allocate("10.0.0.0/30", "10.0.0.1", ["10.0.0.2"])
    assert ipam.allocate("10.0.0.0/24", "10.0.0.254", []) == "10.0.0.1"
    assert ipam.allocate("10.0.0.0/24", "10.0.0.1", [], ip_range="10.0.0.128/25") == "10.0.0.129"


def test_allocate_wanted_address():
    assert ipam.allocate("10.0.0.0/24", "10.0.0.1", [], want="10.0.0.50") == "10.0.0.50"
    with pytest.raises(ipam.AddressInUse, match="Address already in use"):
        ipam.allocate("10.0.0.0/24", "10.0.0.1", ["10.0.0.50"], want="10.0.0.50")
    with pytest.raises(ValueError, match="no configured subnet"):
        ipam.allocate("10.0.0.0/24", "10.0.0.1", [], want="10.0.1.5")
    with pytest.raises(ipam.AddressInUse):
        ipam.allocate("10.0.0.0/24", "10.0.0.1", [], want="10.0.0.1")  # the gateway


def test_parse_subnet_errors():
    assert str(ipam.parse_subnet("10.5.0.0/16")) == "10.5.0.0/16"
    with pytest.raises(ValueError, match="invalid CIDR address: nope"):
        ipam.parse_subnet("nope")
    with pytest.raises(ValueError, match="it should be 10.5.0.0/16"):
        ipam.parse_subnet("10.5.3.0/16")
    with pytest.raises(ValueError, match="only IPv4"):
        ipam.parse_subnet("fd00::/64")


def test_mac_is_dockers():
    assert ipam.mac_for("172.17.0.2") == "02:42:ac:11:00:02"


HOST_RESOLV = """# generated
nameserver 127.0.0.53
nameserver 10.0.0.2
search example.com corp
options edns0 trust-ad
"""


def test_resolv_conf_default_bridge_drops_loopback_servers():
    out = files.resolv_conf(HOST_RESOLV, dns=[], search=[], options=[], embedded=False)
    assert out == "nameserver 10.0.0.2\nsearch example.com corp\noptions edns0 trust-ad\n"
    only_local = "nameserver 127.0.0.53\n"
    assert files.resolv_conf(only_local, dns=[], search=[], options=[], embedded=False) == \
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def test_resolv_conf_flags_replace_their_parts():
    out = files.resolv_conf(HOST_RESOLV, dns=["1.1.1.1"], search=["a.b"], options=["ndots:2"], embedded=False)
    assert out == "nameserver 1.1.1.1\nsearch a.b\noptions ndots:2\n"
    assert "search" not in files.resolv_conf(HOST_RESOLV, dns=[], search=["."], options=[], embedded=False)


def test_resolv_conf_user_network_uses_embedded_dns():
    out = files.resolv_conf(HOST_RESOLV, dns=[], search=[], options=[], embedded=True)
    lines = out.splitlines()
    assert "nameserver 127.0.0.11" in lines and sum(line.startswith("nameserver") for line in lines) == 1
    assert "options edns0 trust-ad ndots:0" in lines
    assert lines[0] == "# ExtServers: [127.0.0.53 10.0.0.2]"
    # the forwarder runs in the host's namespace: loopback resolvers are fine upstream
    assert files.upstreams(HOST_RESOLV, []) == ["127.0.0.53", "10.0.0.2"]
    assert files.upstreams(HOST_RESOLV, ["9.9.9.9"]) == ["9.9.9.9"]


def test_hosts_file():
    out = files.hosts(["db:10.0.0.5", "gw=10.0.0.1", "v6:[::1]"], [("172.17.0.2", "abc")])
    assert out.startswith("127.0.0.1\tlocalhost\n")
    assert out.endswith("10.0.0.5\tdb\n10.0.0.1\tgw\n::1\tv6\n172.17.0.2\tabc\n")


def test_nft_network_rules():
    script = nft.network_rules([nft.BridgeNet("kran0", "172.17.0.0/16", False),
                                nft.BridgeNet("kr-1", "10.1.0.0/24", True)])
    lines = script.splitlines()
    assert lines[:2] == ["flush chain ip kran postrouting", "flush chain ip kran forward"]
    assert 'add rule ip kran postrouting ip saddr 172.17.0.0/16 oifname != { "kran0", "kr-1" } masquerade' in lines
    assert not any("10.1.0.0/24" in line and "masquerade" in line for line in lines)  # internal: no NAT
    assert 'add rule ip kran forward iifname "kr-1" oifname != "kr-1" drop' in lines
    assert nft.network_rules([]).splitlines() == lines[:2]


def test_nft_port_elements():
    add = nft.port_elements("add", [("tcp", "0.0.0.0", 8080, "172.17.0.2", 80),
                                    ("udp", "10.0.0.1", 53, "172.17.0.3", 5353)])
    assert add == ("add element ip kran tcp_any { 8080 : 172.17.0.2 . 80 }\n"
                   "add element ip kran udp_ip { 10.0.0.1 . 53 : 172.17.0.3 . 5353 }\n")
    assert nft.port_elements("delete", [("tcp", "", 8080, "x", 80)]) == "delete element ip kran tcp_any { 8080 }\n"
    assert nft.port_elements("add", []) == ""


def test_ports_wanted():
    cfg = {"ExposedPorts": {"80/tcp": {}, "443/tcp": {}, "53/udp": {}}}
    host = {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                             "9000/tcp": [{"HostIp": "", "HostPort": "7000-7005"}]}}
    w = ports.wanted(cfg, host)
    assert w == [ports.Want("tcp", 80, "127.0.0.1", (8080, 8080)), ports.Want("tcp", 9000, "", (7000, 7005))]
    w = ports.wanted(cfg, dict(host, PublishAllPorts=True))
    assert ports.Want("tcp", 443, "", (0, 0)) in w and ports.Want("udp", 53, "", (0, 0)) in w
    assert len(w) == 4  # 80/tcp keeps its explicit binding
