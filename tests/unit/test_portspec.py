"""Pure parsing of run/create's network flags: docker's nat.ParsePortSpec, --expose, --add-host,
--dns, --network, the daemon's network-mode checks, and ps's PORTS column."""

from __future__ import annotations

import pytest

from kran.cli import runopts
from kran.cli.container import displayable_ports
from kran.cli.flags import parse
from kran.cli.runopts import (
    CliError,
    FlagError,
    parse_add_host,
    parse_dns,
    parse_dns_search,
    parse_networks,
    parse_port_spec,
    parse_ports,
)
from kran.errors import InvalidArgument


def b(ip: str = "", port: str = "") -> dict[str, str]:
    return {"HostIp": ip, "HostPort": port}


@pytest.mark.parametrize(("spec", "want"), [
    ("80", [("80/tcp", b())]),
    ("8080:80", [("80/tcp", b("", "8080"))]),
    (":80", [("80/tcp", b())]),
    ("127.0.0.1::80", [("80/tcp", b("127.0.0.1"))]),
    ("127.0.0.1:8080:80", [("80/tcp", b("127.0.0.1", "8080"))]),
    ("[::1]:8080:80", [("80/tcp", b("::1", "8080"))]),
    ("::1:8080:80", [("80/tcp", b("::1", "8080"))]),
    ("[::]::80/udp", [("80/udp", b("::"))]),
    ("80/udp", [("80/udp", b())]),
    ("80/UDP", [("80/udp", b())]),
    ("80/", [("80/tcp", b())]),
    ("53:53/sctp", [("53/sctp", b("", "53"))]),
    ("8080-8082:80-82", [("80/tcp", b("", "8080")), ("81/tcp", b("", "8081")), ("82/tcp", b("", "8082"))]),
    ("80-81", [("80/tcp", b()), ("81/tcp", b())]),
    ("8080-8090:80", [("80/tcp", b("", "8080-8090"))]),
    ("0.0.0.0:8080-8081:80-81/udp", [("80/udp", b("0.0.0.0", "8080")), ("81/udp", b("0.0.0.0", "8081"))]),
    ("0", [("0/tcp", b())]),
    ("65535:65535", [("65535/tcp", b("", "65535"))]),
])
def test_port_spec(spec: str, want: list) -> None:
    assert parse_port_spec(spec) == want


@pytest.mark.parametrize(("spec", "msg"), [
    ("x", "invalid containerPort: x"),
    ("8080:x", "invalid containerPort: x"),
    ("65536", "invalid containerPort: 65536"),
    ("-1", "invalid containerPort: -1"),
    ("82-80", "invalid containerPort: 82-80"),
    ("x:80", "invalid hostPort: x"),
    ("70000:80", "invalid hostPort: 70000"),
    ("80/foo", "invalid proto: foo"),
    ("80/tcp/udp", "invalid proto: tcp/udp"),
    ("8080-8081:80-83", "invalid ranges specified for container and host Ports: 80-83 and 8080-8081"),
    ("1.2.3:80:80", "invalid IP address: 1.2.3"),
    ("localhost:80:80", "invalid IP address: localhost"),
    ("", "no port specified: <empty>"),
    ("8080:", "no port specified: 8080:<empty>"),
    ("8080:/tcp", "no port specified: 8080:/tcp<empty>"),
])
def test_port_spec_errors(spec: str, msg: str) -> None:
    with pytest.raises(CliError) as e:
        parse_port_spec(spec)
    assert str(e.value) == msg
    assert not e.value.from_daemon


def test_ports_merge_publish_and_expose() -> None:
    exposed, bindings = parse_ports(["8080:80", "8081:80", "127.0.0.1::53/udp"], ["443", "1000-1002/udp", "80"])
    assert exposed == {"80/tcp": {}, "53/udp": {}, "443/tcp": {}, "1000/udp": {}, "1001/udp": {}, "1002/udp": {}}
    assert bindings == {"80/tcp": [b("", "8080"), b("", "8081")], "53/udp": [b("127.0.0.1", "")]}


def test_publish_long_syntax() -> None:
    _, bindings = parse_ports(["target=80,published=8080,protocol=udp"], [])
    assert bindings == {"80/udp": [b("", "8080")]}
    _, bindings = parse_ports(["target=80"], [])
    assert bindings == {"80/tcp": [b()]}
    with pytest.raises(CliError, match="missing required 'target' field"):
        parse_ports(["published=80"], [])


@pytest.mark.parametrize(("expose", "msg"), [
    ("x", 'invalid range format for --expose: x, error: strconv.ParseUint: parsing "x": invalid syntax'),
    ("90-80", "invalid range format for --expose: 90-80, error: invalid range specified for port: 90-80"),
    ("70000", 'invalid range format for --expose: 70000, error: strconv.ParseUint: parsing "70000": value out of range'),
    ("1:2", "invalid port format for --expose: 1:2"),
])
def test_expose_errors(expose: str, msg: str) -> None:
    with pytest.raises(CliError) as e:
        parse_ports([], [expose])
    assert str(e.value) == msg


@pytest.mark.parametrize(("val", "want"), [
    ("db:10.0.0.2", "db:10.0.0.2"),
    ("db=10.0.0.2", "db:10.0.0.2"),
    ("v6:2001:db8::1", "v6:2001:db8::1"),
    ("v6=[2001:db8::1]", "v6:2001:db8::1"),
    ("gw:host-gateway", "gw:host-gateway"),
    ("gw=host-gateway", "gw:host-gateway"),
])
def test_add_host(val: str, want: str) -> None:
    assert parse_add_host(val) == want


@pytest.mark.parametrize(("val", "msg"), [
    ("x", 'invalid argument "x" for "--add-host" flag: bad format for add-host: "x"'),
    (":1.2.3.4", 'invalid argument ":1.2.3.4" for "--add-host" flag: bad format for add-host: ":1.2.3.4"'),
    ("a:b", 'invalid argument "a:b" for "--add-host" flag: invalid IP address in add-host: "b"'),
    ("a=", 'invalid argument "a=" for "--add-host" flag: invalid IP address in add-host: ""'),
])
def test_add_host_errors(val: str, msg: str) -> None:
    with pytest.raises(FlagError) as e:
        parse_add_host(val)
    assert str(e.value) == msg


def test_dns() -> None:
    assert parse_dns("8.8.8.8") == "8.8.8.8"
    assert parse_dns("0:0::1") == "::1"
    with pytest.raises(FlagError, match='invalid argument "x" for "--dns" flag: IP address is not correctly formatted: x'):
        parse_dns("x")
    assert parse_dns_search("example.com") == "example.com"
    assert parse_dns_search(".") == "."
    with pytest.raises(FlagError, match="-foo is not a valid domain"):
        parse_dns_search("-foo")


def test_networks() -> None:
    assert parse_networks([], [], None, None) == ("default", {})
    assert parse_networks(["mynet"], [], None, None) == ("mynet", {})
    assert parse_networks(["host"], [], None, None) == ("host", {})
    assert parse_networks(["container:abc"], [], None, None) == ("container:abc", {})
    mode, eps = parse_networks(["mynet"], ["web", "www"], "10.1.0.5", None)
    assert mode == "mynet"
    assert eps == {"mynet": {"Aliases": ["web", "www"], "IPAMConfig": {"IPv4Address": "10.1.0.5"}}}
    mode, eps = parse_networks(["name=a,alias=x,ip=10.0.0.9", "b"], [], None, None)
    assert mode == "a"
    assert eps == {"a": {"Aliases": ["x"], "IPAMConfig": {"IPv4Address": "10.0.0.9"}}, "b": {}}


@pytest.mark.parametrize(("nets", "aliases", "ip", "msg"), [
    ([], ["x"], None, "network-scoped alias is supported only for containers in user defined networks"),
    (["bridge"], ["x"], None, "network-scoped alias is supported only for containers in user defined networks"),
    (["bridge"], [], "172.17.0.9", "user specified IP address is supported on user defined networks only"),
    (["a", "host"], [], None, "conflicting options: cannot attach both user-defined and non-user-defined network-modes"),
    (["a", "a"], [], None, 'network "a" is specified multiple times'),
    (["container:"], [], None, "Invalid network mode: invalid container format container:<name|id>"),
])
def test_network_errors(nets: list[str], aliases: list[str], ip: str | None, msg: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_networks(nets, aliases, ip, None)
    assert str(e.value) == msg


def test_bad_ipv4() -> None:
    with pytest.raises(CliError, match="invalid IPv4 address: 1.2.3"):
        parse_networks(["n"], [], "1.2.3", None)
    with pytest.raises(CliError, match="invalid IPv4 address: ::1"):
        parse_networks(["n"], [], "::1", None)


def _build(*argv: str) -> tuple:
    from kran.cli.container import RUN

    p = parse(RUN, [*argv, "busybox"])
    return runopts.build_run(p, "busybox", [])


def test_build_defaults() -> None:
    config, host, networking, warnings = _build()
    assert "ExposedPorts" not in config
    assert host["NetworkMode"] == "default"
    assert host["PortBindings"] == {}
    assert host["PublishAllPorts"] is False
    assert host["Dns"] == [] and host["DnsSearch"] == [] and host["DnsOptions"] == []
    assert host["ExtraHosts"] is None
    assert networking is None and warnings == []


def test_build_network_flags() -> None:
    config, host, networking, warnings = _build(
        "-p", "8080:80", "-P", "--expose", "443", "--net", "mynet", "--network-alias", "web", "--ip", "10.9.0.2",
        "--dns", "1.1.1.1", "--dns-search", "example.com", "--dns-opt", "ndots:2", "--dns-option", "timeout:1",
        "--add-host", "db=10.0.0.2")
    assert config["ExposedPorts"] == {"80/tcp": {}, "443/tcp": {}}
    assert host["PortBindings"] == {"80/tcp": [b("", "8080")]}
    assert host["PublishAllPorts"] is True
    assert host["NetworkMode"] == "mynet"
    assert host["Dns"] == ["1.1.1.1"] and host["DnsSearch"] == ["example.com"]
    assert sorted(host["DnsOptions"]) == ["ndots:2", "timeout:1"]
    assert host["ExtraHosts"] == ["db:10.0.0.2"]
    assert networking == {"EndpointsConfig": {"mynet": {"Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.9.0.2"}}}}
    assert warnings == []


def test_build_host_network_warns_about_ports() -> None:
    _, host, _, warnings = _build("--network", "host", "-p", "80:80")
    assert host["NetworkMode"] == "host"
    assert warnings == ["Published ports are discarded when using host network mode"]


@pytest.mark.parametrize(("argv", "msg"), [
    (("--network", "container:x", "-p", "80"), "conflicting options: port publishing and the container type network mode"),
    (("--network", "container:x", "-P"), "conflicting options: port publishing and the container type network mode"),
    (("--network", "container:x", "--expose", "80"), "conflicting options: port exposing and the container type network mode"),
    (("--network", "container:x", "--dns", "1.1.1.1"), "conflicting options: dns and the network mode"),
    (("--network", "container:x", "--hostname", "h"), "conflicting options: hostname and the network mode"),
    (("--network", "container:x", "--add-host", "a:1.2.3.4"), "conflicting options: custom host-to-IP mapping and the network mode"),
    (("--network", "host", "--mac-address", "92:d0:c6:0a:29:33"), "conflicting options: mac-address and the network mode"),
])
def test_build_network_mode_conflicts(argv: tuple, msg: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        _build(*argv)
    assert str(e.value) == msg
    assert e.value.from_daemon


def test_build_bad_mac() -> None:
    with pytest.raises(CliError, match="zz is not a valid mac address"):
        _build("--network", "n", "--mac-address", "zz")


def P(private: int, public: int = 0, ip: str = "", typ: str = "tcp") -> dict:
    d: dict = {"PrivatePort": private, "Type": typ}
    if ip:
        d.update(IP=ip, PublicPort=public)
    return d


@pytest.mark.parametrize(("ports", "want"), [
    ([], ""),
    ([P(80, 8080, "0.0.0.0")], "0.0.0.0:8080->80/tcp"),
    ([P(443), P(80, 8080, "0.0.0.0")], "443/tcp, 0.0.0.0:8080->80/tcp"),
    ([P(82, 82, "0.0.0.0"), P(80, 80, "0.0.0.0"), P(81, 81, "0.0.0.0")], "0.0.0.0:80-82->80-82/tcp"),
    ([P(80, 80, "0.0.0.0"), P(80, 80, "::")], "0.0.0.0:80->80/tcp, :::80->80/tcp"),
    ([P(80, 8080, "::")], "[::]:8080->80/tcp"),
    ([P(1, typ="udp"), P(2, typ="udp"), P(3, typ="udp"), P(5, typ="udp")], "1-3/udp, 5/udp"),
    ([P(80, 8080, "0.0.0.0"), P(81, 8081, "0.0.0.0")], "0.0.0.0:8080->80/tcp, 0.0.0.0:8081->81/tcp"),
    ([P(53, typ="udp"), P(53)], "53/tcp, 53/udp"),
])
def test_displayable_ports(ports: list, want: str) -> None:
    assert displayable_ports(ports) == want
