"""Container create through the API: the body decoded into typed requests (wrong JSON types are
400 in dockerd's words), and the create options kran used to accept and ignore."""

from __future__ import annotations

import json

import pytest


def _post(api, path: str, body) -> tuple[int, dict]:
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(str(api.sock))

    conn = Conn("localhost", timeout=30)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", path, raw, {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, (json.loads(data) if data else {})


def test_wrong_json_types_are_400_with_dockerd_words(api, api_busybox):
    status, body = _post(api, "/v1.41/containers/create", {"Image": "busybox", "Cmd": 5})
    assert status == 400
    assert body["message"] == "json: cannot unmarshal number into Go struct field CreateRequest.Cmd of type string"
    status, body = _post(api, "/v1.41/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                           "HostConfig": {"Memory": "lots"}})
    assert status == 400
    assert body["message"] == ("json: cannot unmarshal string into Go struct field CreateRequest.HostConfig.Memory"
                               " of type int64")
    status, body = _post(api, "/v1.41/containers/create", {"Image": "busybox", "Tty": "yes"})
    assert status == 400 and "CreateRequest.Tty of type bool" in body["message"]
    # nothing was created by the refused requests
    assert api.client().containers.list(all=True) == []


def test_cmd_and_entrypoint_as_strings(api, api_busybox):
    """docker's strslice: a string is a one-element list."""
    status, body = _post(api, "/v1.41/containers/create", {"Image": "busybox", "Entrypoint": "echo", "Cmd": "hi there"})
    assert status == 201, body
    c = api.client()
    info = c.api.inspect_container(body["Id"])
    assert info["Config"]["Entrypoint"] == ["echo"] and info["Config"]["Cmd"] == ["hi there"]
    assert info["Path"] == "echo" and info["Args"] == ["hi there"]
    c.api.start(body["Id"])
    assert c.api.wait(body["Id"], timeout=30)["StatusCode"] == 0
    assert c.api.logs(body["Id"]) == b"hi there\n"


def test_update_body_types_are_checked(api, api_busybox):
    c = api.client()
    ct = c.containers.create("busybox", ["true"])
    status, body = _post(api, f"/v1.41/containers/{ct.id}/update", {"Memory": "1g"})
    assert status == 400 and body["message"].endswith("UpdateConfig.Memory of type int64")


def test_unknown_log_driver_refused_at_create(api, api_busybox):
    import docker

    c = api.client()
    with pytest.raises(docker.errors.APIError) as ei:
        c.containers.create("busybox", ["true"], log_config=docker.types.LogConfig(type="asdf"))
    assert ei.value.status_code == 400
    assert ei.value.explanation == "logger: no log driver named 'asdf' is registered"
    p = api.docker("create", "--log-driver", "asdf", "busybox", "true", check=False)
    assert p.returncode != 0 and "logger: no log driver named 'asdf' is registered" in p.err


def test_runtime_and_restart_policy_in_inspect(api, api_busybox):
    import docker

    c = api.client()
    ct = c.containers.create("busybox", ["true"], runtime="runc", restart_policy={"Name": "on-failure",
                                                                                  "MaximumRetryCount": 3})
    hc = c.api.inspect_container(ct.id)["HostConfig"]
    assert hc["Runtime"] == "runc"
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    plain = c.containers.create("busybox", ["true"])
    hc = c.api.inspect_container(plain.id)["HostConfig"]
    assert hc["Runtime"] == "kran" and hc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    with pytest.raises(docker.errors.APIError) as ei:
        c.containers.create("busybox", ["true"], runtime="no-such-runtime")
    assert ei.value.status_code == 400 and "unknown or invalid runtime name: no-such-runtime" in ei.value.explanation


def test_group_add_ids_and_names(api, api_busybox):
    c = api.client()
    out = c.containers.run("busybox", "id -G", group_add=["1000", 1001, "daemon"], remove=True)
    groups = out.decode().split()
    assert "1000" in groups and "1001" in groups
    assert "1" in groups  # busybox's "daemon" group


def test_mac_address(api, api_busybox):
    c = api.client()
    ct = c.api.create_container("busybox", ["sh", "-c", "cat /sys/class/net/eth0/address; sleep 60"],
                                mac_address="02:42:ac:11:00:0a")
    c.api.start(ct["Id"])
    try:
        info = c.api.inspect_container(ct["Id"])
        assert info["NetworkSettings"]["MacAddress"] == "02:42:ac:11:00:0a"
        assert info["NetworkSettings"]["Networks"]["bridge"]["MacAddress"] == "02:42:ac:11:00:0a"
        import time

        deadline = time.monotonic() + 10
        while b"02:42" not in c.api.logs(ct["Id"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.api.logs(ct["Id"]).strip() == b"02:42:ac:11:00:0a"
    finally:
        c.api.remove_container(ct["Id"], force=True)
    p = api.docker("run", "--rm", "--mac-address", "02:42:ac:11:00:0b", "busybox", "cat", "/sys/class/net/eth0/address")
    assert p.out.strip() == "02:42:ac:11:00:0b"


def test_networking_config_naming_a_missing_network(api, api_busybox):
    import docker

    c = api.client()
    c.networks.create("front")
    cfg = {"front": c.api.create_endpoint_config(aliases=["web"], driver_opt={"k": "v"}),
           "nosuchnet": c.api.create_endpoint_config(aliases=["x"])}
    with pytest.raises(docker.errors.NotFound) as ei:
        c.containers.run("busybox", "true", network="front", networking_config=cfg, detach=True)
    assert "network nosuchnet not found" in ei.value.explanation
    assert c.containers.list(all=True) == []
    # the endpoint's driver options are kept and shown
    ct = c.containers.create("busybox", "true", network="front", networking_config={"front": cfg["front"]})
    ep = c.api.inspect_container(ct.id)["NetworkSettings"]["Networks"]["front"]
    assert ep["DriverOpts"] == {"k": "v"} and ep["Aliases"][0] == "web"


def test_resource_options_reach_the_container(api, api_busybox):
    """HostConfig options that used to be accepted and dropped: oom score adj, swappiness, blkio weight."""
    import os

    c = api.client()
    ct = c.containers.run("busybox", ["sh", "-c", "cat /proc/self/oom_score_adj; sleep 60"], detach=True,
                          oom_score_adj=500, mem_swappiness=10, mem_limit="64m", blkio_weight=300)
    try:
        import time

        deadline = time.monotonic() + 10
        while not ct.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ct.logs().strip() == b"500"
        hc = c.api.inspect_container(ct.id)["HostConfig"]
        assert hc["OomScoreAdj"] == 500 and hc["MemorySwappiness"] == 10 and hc["BlkioWeight"] == 300
        if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):  # cgroup v1: swappiness is per cgroup
            pid = c.api.inspect_container(ct.id)["State"]["Pid"]
            with open(f"/proc/{pid}/cgroup") as f:
                path = next(ln.split(":", 2)[2].strip() for ln in f if ":memory:" in ln)
            with open(f"/sys/fs/cgroup/memory{path}/memory.swappiness") as f:
                assert f.read().strip() == "10"
    finally:
        ct.remove(force=True)
    import docker

    with pytest.raises(docker.errors.APIError) as ei:
        c.containers.create("busybox", "true", oom_score_adj=5000)
    assert ei.value.status_code == 400 and "range for oom score adj is [-1000, 1000]" in ei.value.explanation


@pytest.mark.parametrize(("config", "host", "message"), [
    ({}, {"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]}, "invalid ulimit type: bogus"),
    ({}, {"PortBindings": {"80/tcp": [{"HostPort": "http"}]}}, 'invalid port specification: "http"'),
    ({}, {"CpusetCpus": "0-99"}, "Requested CPUs are not available - requested 0-99"),
    ({}, {"CpusetCpus": "a"}, "Invalid value a for cpuset cpus"),
    ({}, {"ShmSize": -1}, "SHM size can not be less than 0"),
    ({}, {"IpcMode": "bogus"}, "invalid IPC mode: bogus"),
    ({}, {"MemorySwappiness": 101}, "valid memory swappiness range is 0-100"),
    ({}, {"Memory": -1}, "Minimum memory limit allowed is 6MB"),
    ({}, {"ExtraHosts": ["justaname"]}, 'bad format for add-host: "justaname"'),
    ({}, {"LogConfig": {"Type": "json-file", "Config": {"max-size": "big"}}}, "invalid max-size: big"),
    ({}, {"LogConfig": {"Type": "json-file", "Config": {"colour": "red"}}},
     "unknown log opt 'colour' for json-file log driver"),
    ({"WorkingDir": "rel"}, {}, "the working directory 'rel' is invalid, it needs to be an absolute path"),
    ({"StopSignal": "SIGNOPE"}, {}, "Invalid signal: SIGNOPE"),
    ({"ExposedPorts": {"x/tcp": {}}}, {}, 'invalid port specification: "x"'),
    ({"Healthcheck": {"Test": ["CMD", "true"], "Interval": 5}}, {}, "Interval in Healthcheck cannot be less than 1ms"),
])
def test_refused_at_create_not_at_start(api, api_busybox, config, host, message):
    """What dockerd refuses at create is refused there: 400, nothing created (not a 500 at start)."""
    status, body = _post(api, "/v1.41/containers/create", {"Image": "busybox", "Cmd": ["true"], **config,
                                                           "HostConfig": host})
    assert status == 400 and message in body["message"], body
    assert api.client().containers.list(all=True) == []


def test_docker_cli_sees_create_refusals(api, api_busybox):
    p = api.docker("create", "--cpuset-cpus", "0-99", "busybox", "true", check=False)
    assert p.returncode != 0 and "Requested CPUs are not available" in p.err
    p = api.docker("create", "-w", "rel", "busybox", "true", check=False)
    assert p.returncode != 0 and "the working directory 'rel' is invalid" in p.err
