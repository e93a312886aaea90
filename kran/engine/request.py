"""The typed requests of the container use cases: create's Config, HostConfig and NetworkingConfig,
update's resources -- the same dataclasses for the CLI and the API.

Both front ends hand JSON-shaped data (the API's body, the CLI's parsed flags); :func:`decode_create`
and :func:`decode_update` check every known field's JSON type the way dockerd's decoder does (Go's
``encoding/json``: a wrong type is an error naming the field and its Go type, answered with 400),
then build the dataclasses through :mod:`kran.codec`.  Unknown keys are kept (``extra``), so
nothing a newer client sends is lost.  Docker's ``strslice`` (Cmd, Entrypoint, Shell, Healthcheck
Test) takes a string as a one-element list.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from kran.codec import decode, extra, jf
from kran.errors import InvalidArgument

_D = dataclass(frozen=True, slots=True, kw_only=True)


@_D
class HealthConfig:
    test: list[str] | None = jf("Test")
    interval: int = jf("Interval", default=0)  # nanoseconds, as docker's time.Duration
    timeout: int = jf("Timeout", default=0)
    start_period: int = jf("StartPeriod", default=0)
    start_interval: int = jf("StartInterval", default=0)
    retries: int = jf("Retries", default=0)
    unknown: dict[str, Any] = extra()


@_D
class ContainerConfig:
    hostname: str = jf("Hostname", default="")
    domainname: str = jf("Domainname", default="")
    user: str = jf("User", default="")
    attach_stdin: bool = jf("AttachStdin", default=False)
    attach_stdout: bool = jf("AttachStdout", default=False)
    attach_stderr: bool = jf("AttachStderr", default=False)
    exposed_ports: dict[str, dict[str, Any]] | None = jf("ExposedPorts")
    tty: bool = jf("Tty", default=False)
    open_stdin: bool = jf("OpenStdin", default=False)
    stdin_once: bool = jf("StdinOnce", default=False)
    env: list[str] | None = jf("Env")
    cmd: list[str] | None = jf("Cmd")
    healthcheck: HealthConfig | None = jf("Healthcheck")
    args_escaped: bool = jf("ArgsEscaped", default=False)
    image: str = jf("Image", default="")
    volumes: dict[str, dict[str, Any]] | None = jf("Volumes")
    working_dir: str = jf("WorkingDir", default="")
    entrypoint: list[str] | None = jf("Entrypoint")
    network_disabled: bool = jf("NetworkDisabled", default=False)
    mac_address: str = jf("MacAddress", default="")
    on_build: list[str] | None = jf("OnBuild")
    labels: dict[str, str] | None = jf("Labels")
    stop_signal: str = jf("StopSignal", default="")
    stop_timeout: int | None = jf("StopTimeout")
    shell: list[str] | None = jf("Shell")
    unknown: dict[str, Any] = extra()


@_D
class RestartPolicy:
    name: str = jf("Name", default="")
    maximum_retry_count: int = jf("MaximumRetryCount", default=0)


@_D
class LogConfig:
    type: str = jf("Type", default="")
    config: dict[str, str] | None = jf("Config")


@_D
class PortBinding:
    host_ip: str = jf("HostIp", default="")
    host_port: str = jf("HostPort", default="")


@_D
class Ulimit:
    name: str = jf("Name", default="")
    soft: int = jf("Soft", default=0)
    hard: int = jf("Hard", default=0)


@_D
class DeviceMapping:
    path_on_host: str = jf("PathOnHost", default="")
    path_in_container: str = jf("PathInContainer", default="")
    cgroup_permissions: str = jf("CgroupPermissions", default="")


@_D
class WeightDevice:
    path: str = jf("Path", default="")
    weight: int = jf("Weight", default=0)


@_D
class ThrottleDevice:
    path: str = jf("Path", default="")
    rate: int = jf("Rate", default=0)


@_D
class Resources:
    """docker's container.Resources: what ``docker update`` may change on a running container."""

    cpu_shares: int = jf("CpuShares", default=0)
    memory: int = jf("Memory", default=0)
    nano_cpus: int = jf("NanoCpus", default=0)
    cgroup_parent: str = jf("CgroupParent", default="")
    blkio_weight: int = jf("BlkioWeight", default=0)
    blkio_weight_device: list[WeightDevice] | None = jf("BlkioWeightDevice")
    blkio_device_read_bps: list[ThrottleDevice] | None = jf("BlkioDeviceReadBps")
    blkio_device_write_bps: list[ThrottleDevice] | None = jf("BlkioDeviceWriteBps")
    blkio_device_read_iops: list[ThrottleDevice] | None = jf("BlkioDeviceReadIOps")
    blkio_device_write_iops: list[ThrottleDevice] | None = jf("BlkioDeviceWriteIOps")
    cpu_period: int = jf("CpuPeriod", default=0)
    cpu_quota: int = jf("CpuQuota", default=0)
    cpu_realtime_period: int = jf("CpuRealtimePeriod", default=0)
    cpu_realtime_runtime: int = jf("CpuRealtimeRuntime", default=0)
    cpuset_cpus: str = jf("CpusetCpus", default="")
    cpuset_mems: str = jf("CpusetMems", default="")
    devices: list[DeviceMapping] | None = jf("Devices")
    device_cgroup_rules: list[str] | None = jf("DeviceCgroupRules")
    kernel_memory: int = jf("KernelMemory", default=0)
    memory_reservation: int = jf("MemoryReservation", default=0)
    memory_swap: int = jf("MemorySwap", default=0)
    memory_swappiness: int | None = jf("MemorySwappiness")
    oom_kill_disable: bool | None = jf("OomKillDisable")
    pids_limit: int | None = jf("PidsLimit")
    ulimits: list[Ulimit] | None = jf("Ulimits")


@_D
class UpdateConfig(Resources):
    restart_policy: RestartPolicy | None = jf("RestartPolicy")
    unknown: dict[str, Any] = extra()


@_D
class HostConfig(Resources):
    binds: list[str] | None = jf("Binds")
    container_id_file: str = jf("ContainerIDFile", default="")
    log_config: LogConfig | None = jf("LogConfig")
    network_mode: str = jf("NetworkMode", default="")
    port_bindings: dict[str, list[PortBinding] | None] | None = jf("PortBindings")
    restart_policy: RestartPolicy | None = jf("RestartPolicy")
    auto_remove: bool = jf("AutoRemove", default=False)
    volume_driver: str = jf("VolumeDriver", default="")
    volumes_from: list[str] | None = jf("VolumesFrom")
    cap_add: list[str] | None = jf("CapAdd")
    cap_drop: list[str] | None = jf("CapDrop")
    cgroupns_mode: str = jf("CgroupnsMode", default="")
    dns: list[str] | None = jf("Dns")
    dns_options: list[str] | None = jf("DnsOptions")
    dns_search: list[str] | None = jf("DnsSearch")
    extra_hosts: list[str] | None = jf("ExtraHosts")
    group_add: list[str] | None = jf("GroupAdd")
    ipc_mode: str = jf("IpcMode", default="")
    cgroup: str = jf("Cgroup", default="")
    links: list[str] | None = jf("Links")
    oom_score_adj: int = jf("OomScoreAdj", default=0)
    pid_mode: str = jf("PidMode", default="")
    privileged: bool = jf("Privileged", default=False)
    publish_all_ports: bool = jf("PublishAllPorts", default=False)
    readonly_rootfs: bool = jf("ReadonlyRootfs", default=False)
    security_opt: list[str] | None = jf("SecurityOpt")
    storage_opt: dict[str, str] | None = jf("StorageOpt")
    tmpfs: dict[str, str] | None = jf("Tmpfs")
    uts_mode: str = jf("UTSMode", default="")
    userns_mode: str = jf("UsernsMode", default="")
    shm_size: int = jf("ShmSize", default=0)
    sysctls: dict[str, str] | None = jf("Sysctls")
    runtime: str = jf("Runtime", default="")
    isolation: str = jf("Isolation", default="")
    mounts: list[dict[str, Any]] | None = jf("Mounts")
    masked_paths: list[str] | None = jf("MaskedPaths")
    readonly_paths: list[str] | None = jf("ReadonlyPaths")
    init: bool | None = jf("Init")
    console_size: list[int] | None = jf("ConsoleSize")
    stop_signal: str = jf("StopSignal", default="")
    stop_timeout: int | None = jf("StopTimeout")
    unknown: dict[str, Any] = extra()


@_D
class EndpointSettings:
    ipam_config: dict[str, Any] | None = jf("IPAMConfig")
    links: list[str] | None = jf("Links")
    aliases: list[str] | None = jf("Aliases")
    mac_address: str = jf("MacAddress", default="")
    driver_opts: dict[str, str] | None = jf("DriverOpts")
    network_id: str = jf("NetworkID", default="")
    unknown: dict[str, Any] = extra()


@_D
class NetworkingConfig:
    endpoints_config: dict[str, EndpointSettings | None] | None = jf("EndpointsConfig")
    unknown: dict[str, Any] = extra()


@_D
class CreateRequest:
    """One ``docker create``: what the API's body and the CLI's flags both become."""

    config: ContainerConfig
    host_config: HostConfig
    networking_config: NetworkingConfig
    # the JSON the record keeps (docker's inspect shows it back), with strslices made lists
    config_json: dict[str, Any]
    host_config_json: dict[str, Any]
    networking_json: dict[str, Any]


# -- decoding with dockerd's type errors ---------------------------------------------------------

_STRSLICE = {"Cmd", "Entrypoint", "Shell", "Test"}


def _go_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return ("*" if len(args) == 1 and args[0] in (int, bool) else "") + _go_type(args[0])
    if origin is list:
        return "[]" + _go_type(typing.get_args(tp)[0])
    if origin is dict:
        return "map[string]" + _go_type(typing.get_args(tp)[1])
    if tp is int:
        return "int64"
    if tp is str:
        return "string"
    if tp is bool:
        return "bool"
    if dataclasses.is_dataclass(tp):
        return "container." + tp.__name__
    return "interface {}"


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


class _TypeError(Exception):
    def __init__(self, value: Any, path: str, go: str) -> None:
        super().__init__(f"json: cannot unmarshal {_json_kind(value)} into Go struct field {path} of type {go}")


def _check(tp: Any, v: Any, path: str) -> Any:
    """``v`` checked against ``tp`` (strslices turned into lists); _TypeError where Go's would fail."""
    if v is None or tp is Any:
        return v
    origin = typing.get_origin(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _check(args[0], v, path) if len(args) == 1 else v
    if origin is list:
        (arg,) = typing.get_args(tp)
        if path.rsplit(".", 1)[-1] in _STRSLICE and isinstance(v, str):
            return [v]
        if not isinstance(v, list):
            raise _TypeError(v, path, _go_type(tp) if path.rsplit(".", 1)[-1] not in _STRSLICE else "string")
        return [_check(arg, x, path) for x in v]
    if origin is dict:
        if not isinstance(v, dict):
            raise _TypeError(v, path, _go_type(tp))
        varg = typing.get_args(tp)[1]
        return {k: _check(varg, x, path) for k, x in v.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(v, dict):
            raise _TypeError(v, path, _go_type(tp))
        hints = typing.get_type_hints(tp)
        out = dict(v)
        for f in dataclasses.fields(tp):
            key = f.metadata.get("json")
            if key and key in v:
                out[key] = _check(hints[f.name], v[key], f"{path}.{key}")
        return out
    if tp is bool and not isinstance(v, bool):
        raise _TypeError(v, path, "bool")
    if tp is int and (isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v)):
        raise _TypeError(v, path, "int64")
    if tp is int:
        return int(v)
    if tp is str and not isinstance(v, str):
        raise _TypeError(v, path, "string")
    return v


def _no_nulls(tp: Any, v: Any) -> Any:
    """Go leaves a struct field at its zero value for a JSON null: such fields are dropped, so the
    dataclass defaults apply (a null in a map, like EndpointsConfig's ``{"net": null}``, stays)."""
    if v is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _no_nulls(args[0], v) if len(args) == 1 else v
    if origin is list and isinstance(v, list):
        return [_no_nulls(typing.get_args(tp)[0], x) for x in v]
    if origin is dict and isinstance(v, dict):
        return {k: _no_nulls(typing.get_args(tp)[1], x) for k, x in v.items()}
    if dataclasses.is_dataclass(tp) and isinstance(v, dict):
        hints = typing.get_type_hints(tp)
        keys = {f.metadata.get("json"): f.name for f in dataclasses.fields(tp) if f.metadata.get("json")}
        return {k: (_no_nulls(hints[keys[k]], x) if k in keys else x) for k, x in v.items()
                if not (k in keys and x is None)}
    return v


def _decode(cls: type[Any], data: Any, path: str) -> tuple[Any, dict[str, Any]]:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"json: cannot unmarshal {_json_kind(data)} into Go value of type {_go_type(cls)}")
    try:
        checked = _check(cls, data, path)
        return decode(cls, _no_nulls(cls, checked)), checked
    except _TypeError as e:
        raise InvalidArgument(str(e)) from None
    except (ValueError, TypeError) as e:  # a shape the checks above let through
        raise InvalidArgument(f"invalid {path}: {e}") from None


def decode_create(config: Any, host_config: Any = None, networking_config: Any = None) -> CreateRequest:
    cfg, cfg_json = _decode(ContainerConfig, config, "CreateRequest")
    host, host_json = _decode(HostConfig, host_config, "CreateRequest.HostConfig")
    net, net_json = _decode(NetworkingConfig, networking_config, "CreateRequest.NetworkingConfig")
    return CreateRequest(config=cfg, host_config=host, networking_config=net, config_json=cfg_json,
                         host_config_json=host_json, networking_json=net_json)


def decode_update(changes: Any) -> tuple[UpdateConfig, dict[str, Any]]:
    """``docker update``'s body: the resources and restart policy to change (None/absent: keep)."""
    return _decode(UpdateConfig, changes, "UpdateConfig")
