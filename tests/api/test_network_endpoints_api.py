"""Networks through docker-py: what docker records of a network and of an endpoint (IPAM options
and auxiliary addresses, names with spaces, driver options, link-local addresses, links, MAC and
IPv6 addresses), each checked where a user sees it -- inspect, the container's own interfaces,
the embedded DNS."""

from __future__ import annotations

import pytest


def _run(c, cmd: list[str], **kw):
    ctr = c.containers.run("busybox", cmd, detach=True, **kw)
    return ctr


def _exec(ctr, cmd: list[str]) -> tuple[int, str]:
    code, out = ctr.exec_run(cmd)
    return code, out.decode()


def test_network_records(api, api_busybox):
    import docker
    from docker.types import IPAMConfig, IPAMPool

    c = api.client()
    n = c.networks.create("test 01", labels={"a": "b"})  # docker takes names with spaces
    assert c.networks.get("test 01").id == n.id
    ipam = IPAMConfig(pool_configs=[IPAMPool(subnet="172.28.0.0/16", iprange="172.28.5.0/24",
                                             gateway="172.28.5.254", aux_addresses={"a": "172.28.5.1"})])
    m = c.networks.create("pools", ipam=ipam)
    got = c.api.inspect_network(m.id)["IPAM"]
    assert got["Options"] is None  # none given: null, as dockerd
    assert got["Config"] == [{"Subnet": "172.28.0.0/16", "IPRange": "172.28.5.0/24", "Gateway": "172.28.5.254",
                              "AuxiliaryAddresses": {"a": "172.28.5.1"}}]
    # the auxiliary address is never handed out: the first container of the range gets .2
    ctr = _run(c, ["sleep", "60"], network="pools")
    try:
        ctr.reload()
        assert ctr.attrs["NetworkSettings"]["Networks"]["pools"]["IPAddress"] == "172.28.5.2"
    finally:
        ctr.remove(force=True)
    with_opts = c.api.create_network("opts", ipam=IPAMConfig(options={"x": "y"}))
    assert c.api.inspect_network(with_opts["Id"])["IPAM"]["Options"] == {"x": "y"}

    # the same pool twice: dockerd's 403
    with pytest.raises(docker.errors.APIError) as e:
        c.networks.create("clash", ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="172.28.0.0/16")]))
    assert e.value.status_code == 403 and "Pool overlaps with other one on this address space" in str(e.value)
    m.remove()  # frees the pool
    c.networks.create("again", ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="172.28.0.0/16")])).remove()

    for bad in ({"Name": "x", "Labels": ["a"]}, {"Name": "x", "Options": {"a": 1}},
                {"Name": "x", "IPAM": {"Config": "172.30.0.0/16"}}, {"Name": "x", "Internal": "yes"}):
        r = c.api._post_json(c.api._url("/networks/create"), data=bad)
        assert r.status_code == 400, (bad, r.text)
    r = c.api._post_json(c.api._url("/networks/{0}/connect", n.id), data={"Container": 5})
    assert r.status_code == 400, r.text
    r = c.api._post_json(c.api._url("/networks/{0}/connect", n.id),
                         data={"Container": "x", "EndpointConfig": {"Aliases": "a"}})
    assert r.status_code == 400, r.text
    with pytest.raises(docker.errors.APIError) as e:
        c.networks.create("test 01")
    assert e.value.status_code == 409
    with pytest.raises(docker.errors.APIError) as e:
        c.networks.create("h", driver="host")
    assert e.value.status_code == 403
    # a container naming a missing network in its endpoints is refused at create
    with pytest.raises(docker.errors.NotFound) as e:
        c.api.create_container("busybox", "true", networking_config={"EndpointsConfig": {"nosuchnet": {}}})
    assert "network nosuchnet not found" in str(e.value)
    n.remove()
    with_opts_net = c.networks.get(with_opts["Id"])
    with_opts_net.remove()
    assert [x.name for x in c.networks.list()] == ["bridge", "host", "none"]


def test_endpoint_settings_on_the_default_bridge(api, api_busybox):
    c = api.client()
    ep = c.api.create_endpoint_config(link_local_ips=["169.254.8.8"], driver_opt={"com.example.setting": "on"})
    ctr = c.api.create_container("busybox", ["sleep", "60"], host_config=c.api.create_host_config(network_mode="bridge"),
                                 networking_config=c.api.create_networking_config({"bridge": ep}))
    try:
        c.api.start(ctr)
        net = c.api.inspect_container(ctr)["NetworkSettings"]["Networks"]["bridge"]
        assert net["IPAMConfig"] == {"LinkLocalIPs": ["169.254.8.8"]}
        assert net["DriverOpts"] == {"com.example.setting": "on"}
        # the link-local address is really on the container's interface
        code, out = _exec(c.containers.get(ctr["Id"]), ["ip", "-4", "addr", "show", "eth0"])
        assert code == 0 and "inet 169.254.8.8/16" in out
    finally:
        c.api.remove_container(ctr, force=True)


def test_connect_with_links_aliases_and_mac(api, api_busybox):
    c = api.client()
    net = c.networks.create("linked")
    try:
        a = _run(c, ["sleep", "60"], network="linked", name="client")
        a.reload()
        net.disconnect(a)
        net.connect(a, links=[("upstream", "bar")], aliases=["cli"])
        a.reload()
        ep = a.attrs["NetworkSettings"]["Networks"]["linked"]
        assert ep["Links"] == ["upstream:bar"] and "cli" in ep["Aliases"]
        b = _run(c, ["sleep", "60"], network="linked", name="upstream")
        b.reload()
        b_ip = b.attrs["NetworkSettings"]["Networks"]["linked"]["IPAddress"]
        # the link's alias resolves for the linking container, to the target's address
        code, out = _exec(a, ["nslookup", "bar"])
        assert code == 0 and b_ip in out, out
        code, out = _exec(b, ["nslookup", "cli"])
        assert code == 0, out
        code, _ = _exec(b, ["nslookup", "bar"])
        assert code != 0  # a link is the linking container's name for the target, nobody else's

        stopped = c.containers.create("busybox", ["cat", "/sys/class/net/eth1/address"])
        net.connect(stopped, mac_address="02:42:ac:11:00:99")
        stopped.reload()
        assert stopped.attrs["NetworkSettings"]["Networks"]["linked"]["MacAddress"] == "02:42:ac:11:00:99"
        stopped.start()
        stopped.wait()
        assert stopped.logs().decode().strip() == "02:42:ac:11:00:99"
        stopped.remove()
        a.remove(force=True)
        b.remove(force=True)
    finally:
        net.remove()


def test_ipv6_network(api, api_busybox):
    from docker.types import IPAMConfig, IPAMPool

    c = api.client()
    ipam = IPAMConfig(pool_configs=[IPAMPool(subnet="2001:389::/64", iprange="2001:389::/96", gateway="2001:389::ffff")])
    n = c.networks.create("v6", enable_ipv6=True, ipam=ipam)
    try:
        info = c.api.inspect_network(n.id)
        assert info["EnableIPv6"] is True
        v6 = [p for p in info["IPAM"]["Config"] if ":" in p["Subnet"]]
        assert v6 == [{"Subnet": "2001:389::/64", "IPRange": "2001:389::/96", "Gateway": "2001:389::ffff"}]
        assert [p for p in info["IPAM"]["Config"] if "." in p["Subnet"]]  # an IPv4 pool comes with it

        ep = c.api.create_endpoint_config(ipv6_address="2001:389::f00d")
        a = c.api.create_container("busybox", ["sleep", "60"], host_config=c.api.create_host_config(network_mode="v6"),
                                   networking_config=c.api.create_networking_config({"v6": ep}))
        c.api.start(a)
        b = _run(c, ["sleep", "60"], network="v6")
        try:
            s = c.api.inspect_container(a)["NetworkSettings"]["Networks"]["v6"]
            assert s["IPAMConfig"]["IPv6Address"] == "2001:389::f00d"
            assert s["GlobalIPv6Address"] == "2001:389::f00d" and s["GlobalIPv6PrefixLen"] == 64
            assert s["IPv6Gateway"] == "2001:389::ffff"
            b.reload()
            b6 = b.attrs["NetworkSettings"]["Networks"]["v6"]["GlobalIPv6Address"]
            assert b6.startswith("2001:389::") and b6 != "2001:389::f00d"
            # configured for real: on the interface, with a default route, and reachable
            code, out = _exec(c.containers.get(a["Id"]), ["ip", "-6", "addr", "show", "eth0"])
            assert "inet6 2001:389::f00d/64" in out, out
            code, out = _exec(c.containers.get(a["Id"]), ["ip", "-6", "route"])
            assert "default via 2001:389::ffff" in out, out
            code, out = _exec(b, ["ping", "-6", "-c1", "-W2", "2001:389::f00d"])
            assert code == 0, out
            members = c.api.inspect_network(n.id)["Containers"]
            assert members[a["Id"]]["IPv6Address"] == "2001:389::f00d/64"
        finally:
            c.api.remove_container(a, force=True)
            b.remove(force=True)
    finally:
        n.remove()


def test_docker_cli(api, api_busybox):
    api.docker("network", "create", "--ipv6", "--subnet", "fd00:77::/64", "--subnet", "172.29.0.0/16",
               "--aux-address", "r=172.29.0.9", "--ipam-opt", "k=v", "cli net")
    fmt = "{{.EnableIPv6}} {{json .IPAM.Options}} {{range .IPAM.Config}}{{.Subnet}} {{end}}"
    # dockerd lists the IPv4 pool, then the IPv6 one, whatever the order given
    assert api.docker("network", "inspect", "-f", fmt, "cli net").out.split() == [
        "true", '{"k":"v"}', "172.29.0.0/16", "fd00:77::/64"]
    api.docker("run", "-d", "--name", "c6", "--network", "cli net", "--ip6", "fd00:77::42", "busybox", "sleep", "60")
    out = api.docker("exec", "c6", "ip", "-6", "addr", "show", "eth0").out
    assert "inet6 fd00:77::42/64" in out
    api.docker("create", "--name", "late", "busybox", "true")
    api.docker("network", "connect", "--link", "c6:six", "--alias", "l8", "--driver-opt", "o=1", "cli net", "late")
    ep = api.docker("inspect", "-f", '{{json (index .NetworkSettings.Networks "cli net")}}', "late").out
    assert '"Links":["c6:six"]' in ep and '"DriverOpts":{"o":"1"}' in ep and '"l8"' in ep
    api.docker("rm", "-f", "c6", "late")
    assert "cli net" in api.docker("network", "prune", "-f").out
