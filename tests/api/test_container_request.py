"""The typed create/update requests (kran/engine/request.py): pure, no service needed."""

from __future__ import annotations

import pytest

from kran.engine.request import decode_create, decode_update
from kran.errors import InvalidArgument


def test_decodes_docker_json_into_typed_fields():
    req = decode_create(
        {"Image": "busybox", "Cmd": "echo hi", "Entrypoint": None, "Tty": True, "Labels": {"a": "b"},
         "Healthcheck": {"Test": "true", "Interval": 10**9}, "NewField": [1]},
        {"Memory": 1 << 26, "RestartPolicy": {"Name": "always"}, "PortBindings": {"80/tcp": [{"HostPort": "8080"}]},
         "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}}, "PidsLimit": None},
        {"EndpointsConfig": {"front": {"Aliases": ["web"], "MacAddress": "02:42:ac:11:00:0a"}, "back": None}},
    )
    assert req.config.image == "busybox" and req.config.cmd == ["echo hi"] and req.config.entrypoint is None
    assert req.config.tty is True and req.config.labels == {"a": "b"}
    assert req.config.healthcheck.test == ["true"] and req.config.healthcheck.interval == 10**9
    assert req.config.unknown == {"NewField": [1]}  # kept, not lost
    assert req.host_config.memory == 1 << 26 and req.host_config.restart_policy.name == "always"
    assert req.host_config.port_bindings["80/tcp"][0].host_port == "8080"
    assert req.host_config.log_config.config == {"max-size": "1m"}
    assert req.host_config.pids_limit is None and req.host_config.cpu_shares == 0
    ep = req.networking_config.endpoints_config["front"]
    assert ep.aliases == ["web"] and ep.mac_address == "02:42:ac:11:00:0a"
    assert req.networking_config.endpoints_config["back"] is None
    # the JSON the record keeps: strslices as lists, unknown keys as they came
    assert req.config_json["Cmd"] == ["echo hi"] and req.config_json["NewField"] == [1]
    assert req.config_json["Healthcheck"]["Test"] == ["true"]


@pytest.mark.parametrize(("config", "host", "message"), [
    ({"Cmd": 5}, None, "json: cannot unmarshal number into Go struct field CreateRequest.Cmd of type string"),
    ({"Cmd": [1]}, None, "json: cannot unmarshal number into Go struct field CreateRequest.Cmd of type string"),
    ({"Env": "A=1"}, None, "json: cannot unmarshal string into Go struct field CreateRequest.Env of type []string"),
    ({"Labels": ["a"]}, None,
     "json: cannot unmarshal array into Go struct field CreateRequest.Labels of type map[string]string"),
    ({"OpenStdin": 1}, None, "json: cannot unmarshal number into Go struct field CreateRequest.OpenStdin of type bool"),
    ({}, {"Memory": 1.5}, "json: cannot unmarshal number into Go struct field CreateRequest.HostConfig.Memory of type int64"),
    ({}, {"Memory": True}, "json: cannot unmarshal bool into Go struct field CreateRequest.HostConfig.Memory of type int64"),
    ({}, {"RestartPolicy": "always"}, "json: cannot unmarshal string into Go struct field"
     " CreateRequest.HostConfig.RestartPolicy of type container.RestartPolicy"),
    ({}, {"RestartPolicy": {"MaximumRetryCount": "3"}}, "json: cannot unmarshal string into Go struct field"
     " CreateRequest.HostConfig.RestartPolicy.MaximumRetryCount of type int64"),
    ({}, {"Binds": [3]}, "json: cannot unmarshal number into Go struct field CreateRequest.HostConfig.Binds of type string"),
    ([], None, "json: cannot unmarshal array into Go value of type container.ContainerConfig"),
])
def test_wrong_types_in_dockerd_words(config, host, message):
    with pytest.raises(InvalidArgument) as ei:
        decode_create(config, host)
    assert str(ei.value) == message
    assert ei.value.http_status == 400


def test_update_request():
    typed, checked = decode_update({"Memory": 1 << 26, "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
                                    "CpuShares": None})
    assert typed.memory == 1 << 26 and typed.restart_policy.maximum_retry_count == 2 and typed.cpu_shares == 0
    assert checked["CpuShares"] is None  # null: leave as it is
    with pytest.raises(InvalidArgument) as ei:
        decode_update({"CpusetCpus": 0})
    assert str(ei.value) == "json: cannot unmarshal number into Go struct field UpdateConfig.CpusetCpus of type string"
