"""Network and volume endpoints through docker-py and the docker CLI.

Networks made here are bridges in the host's namespace (the shared fixture removes them); no
container here is started, so none needs traffic.
"""

from __future__ import annotations

import pytest


def test_networks_create_list_get_remove(api):
    import docker

    c = api.client()
    names = {n.name for n in c.networks.list()}
    assert {"bridge", "host", "none"} <= names
    net = c.networks.create("apinet", driver="bridge", labels={"k": "v"}, internal=True,
                            ipam=docker.types.IPAMConfig(pool_configs=[
                                docker.types.IPAMPool(subnet="10.231.7.0/24", gateway="10.231.7.1")]))
    got = c.networks.get(net.id)
    assert got.name == "apinet" and got.attrs["Internal"] is True and got.attrs["Labels"] == {"k": "v"}
    assert got.attrs["IPAM"]["Config"] == [{"Subnet": "10.231.7.0/24", "Gateway": "10.231.7.1"}]
    assert [n.name for n in c.networks.list(names=["apinet"])] == ["apinet"]
    assert [n.name for n in c.networks.list(filters={"label": "k=v"})] == ["apinet"]
    assert {n.name for n in c.networks.list(filters={"type": "builtin"})} == {"bridge", "host", "none"}

    with pytest.raises(docker.errors.APIError) as e:
        c.networks.create("apinet")
    assert e.value.status_code == 409 and "network with name apinet already exists" in str(e.value)
    with pytest.raises(docker.errors.NotFound) as e2:
        c.networks.get("nonet")
    assert "network nonet not found" in str(e2.value)
    with pytest.raises(docker.errors.APIError) as e3:
        c.networks.get("bridge").remove()
    assert e3.value.status_code == 403 and "pre-defined network" in str(e3.value)

    net.remove()
    assert "apinet" not in {n.name for n in c.networks.list()}


def test_network_connect_disconnect_prune(api, api_busybox):
    import docker

    c = api.client()
    net = c.networks.create("connet")
    cid = api.kran("create", "--name", "netbox", "busybox", "sleep", "30").out.strip()
    net.connect("netbox", aliases=["db"], ipv4_address="")
    net.reload()
    assert list(net.attrs["Containers"]) in ([], [cid])  # endpoints show once the container runs
    with pytest.raises(docker.errors.APIError) as e:
        net.connect("netbox")
    assert e.value.status_code == 403 and "already exists in network connet" in str(e.value)
    net.disconnect("netbox")
    with pytest.raises(docker.errors.APIError) as e2:
        net.disconnect("netbox")
    assert "is not connected to network connet" in str(e2.value)
    api.kran("rm", "netbox")

    c.networks.create("unused1", labels={"gone": "1"})
    c.networks.create("unused2")
    out = c.networks.prune(filters={"label": "gone=1"})
    assert out == {"NetworksDeleted": ["unused1"]}
    out = c.networks.prune()
    assert sorted(out["NetworksDeleted"]) == ["connet", "unused2"]
    assert {n.name for n in c.networks.list()} == {"bridge", "host", "none"}


def test_docker_cli_networks(api):
    api.docker("network", "create", "clinet")
    out = api.docker("network", "ls").out.splitlines()
    assert out[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert any(line.split()[1:] == ["clinet", "bridge", "local"] for line in out[1:])
    assert api.docker("network", "inspect", "-f", "{{.Driver}}", "clinet").out.strip() == "bridge"
    assert api.docker("network", "rm", "clinet").out.strip() == "clinet"
    p = api.docker("network", "rm", "clinet", check=False)
    # (the daemon's words, or the 20.10 CLI's own rewording of a 404)
    assert p.returncode != 0 and ("network clinet not found" in p.err or "No such network: clinet" in p.err)


def test_volumes(api, api_busybox):
    import docker

    c = api.client()
    v = c.volumes.create("data1", labels={"a": "b"}, driver_opts={})
    assert v.name == "data1" and v.attrs["Labels"] == {"a": "b"} and v.attrs["Driver"] == "local"
    anon = c.volumes.create()
    assert len(anon.name) == 64
    assert {x.name for x in c.volumes.list()} == {"data1", anon.name}
    assert [x.name for x in c.volumes.list(filters={"label": "a=b"})] == ["data1"]
    assert [x.name for x in c.volumes.list(filters={"name": "data"})] == ["data1"]
    assert c.volumes.get("data1").attrs["Mountpoint"].endswith("/_data")
    with pytest.raises(docker.errors.NotFound) as e:
        c.volumes.get("novol")
    assert "get novol: no such volume" in str(e.value)

    api.kran("create", "--name", "volbox", "-v", "data1:/data", "busybox", "true")
    with pytest.raises(docker.errors.APIError) as e2:
        c.volumes.get("data1").remove()
    assert e2.value.status_code == 409 and "volume is in use" in str(e2.value)
    assert [x.name for x in c.volumes.list(filters={"dangling": True})] == [anon.name]

    out = c.volumes.prune()  # anonymous ones only
    assert out["VolumesDeleted"] == [anon.name] and "SpaceReclaimed" in out
    api.kran("rm", "volbox")
    c.volumes.create("data2")
    out = c.volumes.prune(filters={"all": "true"})
    assert sorted(out["VolumesDeleted"]) == ["data1", "data2"]
    c.volumes.create("data3")
    c.volumes.get("data3").remove()
    assert c.volumes.list() == []
    # force: a missing volume is no error (docker-py's remove_volume never sends force)
    assert c.api._delete(c.api._url("/volumes/data3"), params={"force": "1"}).status_code == 204


def test_docker_cli_volumes(api):
    assert api.docker("volume", "create", "clivol").out.strip() == "clivol"
    out = api.docker("volume", "ls").out.splitlines()
    assert out[0].split() == ["DRIVER", "VOLUME", "NAME"] and out[1].split() == ["local", "clivol"]
    assert api.docker("volume", "inspect", "-f", "{{.Name}} {{.Scope}}", "clivol").out.strip() == "clivol local"
    assert api.docker("volume", "rm", "clivol").out.strip() == "clivol"
    p = api.docker("volume", "rm", "clivol", check=False)
    assert p.returncode != 0 and "no such volume" in p.err.lower()  # daemon's or the 20.10 CLI's words
