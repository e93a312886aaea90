"""dockerd's checks on a create request, before anything is written (pure: no host but the CPU count).

What dockerd refuses at create (daemon/container.go verifyContainerSettings, daemon_unix.go
verifyPlatformContainerSettings) kran refuses there too, with its words, instead of failing -- or
answering 500 -- at start.  Everything here raises InvalidArgument (HTTP 400).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from kran.errors import InvalidArgument

if TYPE_CHECKING:
    from kran.engine.request import ContainerConfig, CreateRequest, HostConfig

MIN_MEMORY = 6 * 1024 * 1024
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_MS = 1_000_000  # ns


def check_create(req: CreateRequest, ncpu: int | None = None) -> None:
    check_config(req.config)
    check_host_config(req.host_config, ncpu)
    for ep in (req.networking_config.endpoints_config or {}).values():
        if ep is not None and ep.mac_address and not _MAC.fullmatch(ep.mac_address):
            raise InvalidArgument(f"invalid MAC address: {ep.mac_address}")


def check_config(c: ContainerConfig) -> None:
    if c.working_dir and not c.working_dir.startswith("/"):
        raise InvalidArgument(f"the working directory '{c.working_dir}' is invalid, it needs to be an absolute path")
    if c.stop_signal:
        _signal(c.stop_signal)
    if c.mac_address and not _MAC.fullmatch(c.mac_address):
        raise InvalidArgument(f"invalid MAC address: {c.mac_address}")
    for key in c.exposed_ports or {}:
        _port_spec(key)
    hc = c.healthcheck
    if hc is not None:
        for name, v in (("Interval", hc.interval), ("Timeout", hc.timeout), ("StartPeriod", hc.start_period),
                        ("StartInterval", hc.start_interval)):
            if v and v < _MS:
                raise InvalidArgument(f"{name} in Healthcheck cannot be less than 1ms")
        if hc.retries < 0:
            raise InvalidArgument("Retries in Healthcheck cannot be negative")


def check_host_config(h: HostConfig, ncpu: int | None = None) -> None:
    ncpu = ncpu or os.cpu_count() or 1
    rp = h.restart_policy.name if h.restart_policy else ""
    if rp and rp not in ("no", "always", "on-failure", "unless-stopped"):
        raise InvalidArgument(f"invalid restart policy '{rp}'")
    if h.restart_policy and h.restart_policy.maximum_retry_count < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if h.restart_policy and rp != "on-failure" and h.restart_policy.maximum_retry_count:
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if h.auto_remove and rp not in ("", "no"):
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    _resources(h, ncpu)
    if h.shm_size < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    if h.oom_score_adj and not -1000 <= h.oom_score_adj <= 1000:
        raise InvalidArgument(f"Invalid value {h.oom_score_adj}, range for oom score adj is [-1000, 1000]")
    if h.stop_signal:
        _signal(h.stop_signal)
    _modes(h)
    for port, bindings in (h.port_bindings or {}).items():
        _port_spec(port)
        for b in bindings or []:
            if b.host_port:
                _port_spec(b.host_port)
    from kran.engine.spec import RLIMITS

    for u in h.ulimits or []:
        if u.name not in RLIMITS:
            raise InvalidArgument(f"invalid ulimit type: {u.name}")
        if u.soft > u.hard:
            raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: {u.soft} > {u.hard}")
    for eh in h.extra_hosts or []:
        name, _, ip = eh.partition("=" if "=" in eh else ":")  # host:ip (ip may be IPv6) or host=ip
        if not name or not ip:
            raise InvalidArgument(f'bad format for add-host: "{eh}"')
    if h.log_config is not None:
        _log_opts(h.log_config.type or "json-file", h.log_config.config or {})
    for dest in h.tmpfs or {}:
        if not dest.startswith("/"):
            raise InvalidArgument(f"invalid mount path for tmpfs: '{dest}' is not an absolute path")


def _resources(h: HostConfig, ncpu: int) -> None:
    if h.memory != 0 and h.memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if h.memory_swap > 0 and h.memory and h.memory_swap < h.memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if h.memory_swap > 0 and not h.memory:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    if h.memory_reservation and h.memory and h.memory_reservation > h.memory:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")
    if h.memory_swappiness is not None and h.memory_swappiness != -1 and not 0 <= h.memory_swappiness <= 100:
        raise InvalidArgument(f"Invalid value: {h.memory_swappiness}, valid memory swappiness range is 0-100")
    if h.nano_cpus:
        if h.nano_cpus < 0 or h.nano_cpus > ncpu * 1_000_000_000:
            raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
        if h.cpu_period or h.cpu_quota:
            raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if h.cpu_period and not 1000 <= h.cpu_period <= 1_000_000:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    if h.cpu_quota and 0 < h.cpu_quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if h.cpu_shares < 0:
        raise InvalidArgument("shares: invalid argument")
    if h.blkio_weight and not 10 <= h.blkio_weight <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    if h.pids_limit is not None and h.pids_limit < -1:
        raise InvalidArgument("invalid PIDs limit")
    for what, spec, avail in (("CPUs", h.cpuset_cpus, ncpu), ("Memory nodes", h.cpuset_mems, None)):
        if not spec:
            continue
        ids = parse_cpuset(spec, "cpus" if what == "CPUs" else "mems")
        if avail is not None and ids and max(ids) >= avail:
            raise InvalidArgument(f"Requested CPUs are not available - requested {spec}, available: 0-{avail - 1}")


def parse_cpuset(spec: str, kind: str = "cpus") -> set[int]:
    """``0-2,4`` -> {0, 1, 2, 4} (the kernel's list format)."""
    out: set[int] = set()
    for part in spec.split(","):
        a, dash, b = part.strip().partition("-")
        if not a.isdigit() or (dash and not b.isdigit()) or (dash and int(b) < int(a)):
            raise InvalidArgument(f"Invalid value {spec} for cpuset {kind}")
        out.update(range(int(a), int(b) + 1) if dash else (int(a),))
    return out


def _modes(h: HostConfig) -> None:
    if h.ipc_mode and not (h.ipc_mode in ("none", "private", "shareable", "host") or h.ipc_mode.startswith("container:")):
        raise InvalidArgument(f"invalid IPC mode: {h.ipc_mode}")
    if h.pid_mode and not (h.pid_mode == "host" or h.pid_mode.startswith("container:")):
        raise InvalidArgument(f"invalid PID mode: {h.pid_mode}")
    if h.uts_mode and h.uts_mode != "host":
        raise InvalidArgument(f"invalid UTS mode: {h.uts_mode}")
    if h.cgroupns_mode and h.cgroupns_mode not in ("host", "private"):
        raise InvalidArgument(f"invalid cgroup namespace mode: {h.cgroupns_mode}")


def _signal(s: str) -> None:
    from kran.engine.spec import parse_signal

    try:
        parse_signal(s)
    except ValueError as e:
        raise InvalidArgument(str(e)) from None


def _port_spec(spec: str) -> None:
    """``80``, ``80/tcp``, ``8000-8010``: docker's nat.ParsePortRange."""
    port = spec.split("/", 1)[0]
    lo, dash, hi = port.partition("-")
    if not (lo.isdigit() and int(lo) <= 65535 and (not dash or (hi.isdigit() and int(lo) <= int(hi) <= 65535))):
        raise InvalidArgument(f'invalid port specification: "{port}"')


_LOG_OPTS = {"max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag", "mode",
             "max-buffer-size"}


def _log_opts(driver: str, opts: dict[str, str]) -> None:
    if driver == "none":
        return
    for k in opts:
        if k not in _LOG_OPTS:
            raise InvalidArgument(f"unknown log opt '{k}' for {driver} log driver")
    log_size(opts.get("max-size") or "0")
    mf = opts.get("max-file") or "1"
    if not mf.isdigit() or int(mf) < 1:
        raise InvalidArgument(f"invalid value for max-file: {mf}" if not mf.isdigit() else "max-file cannot be less than 1")


def log_size(s: str) -> int:
    """docker's log max-size (``10m``, ``1g``, ``512k``, bytes) -> bytes; 0 for none."""
    if not s or s == "0" or s == "-1":
        return 0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", s.strip().lower())
    if not m:
        raise InvalidArgument(f"invalid max-size: {s}")
    return int(float(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2)])


#: HostConfig keys that need a cgroup -> the docker flag that sets each
_LIMIT_FLAGS = (
    ("Memory", "--memory"), ("MemorySwap", "--memory-swap"), ("MemoryReservation", "--memory-reservation"),
    ("KernelMemory", "--kernel-memory"), ("OomKillDisable", "--oom-kill-disable"), ("NanoCpus", "--cpus"),
    ("CpuShares", "--cpu-shares"), ("CpuQuota", "--cpu-quota"), ("CpuPeriod", "--cpu-period"),
    ("CpusetCpus", "--cpuset-cpus"), ("CpusetMems", "--cpuset-mems"), ("BlkioWeight", "--blkio-weight"),
    ("BlkioWeightDevice", "--blkio-weight-device"), ("BlkioDeviceReadBps", "--device-read-bps"),
    ("BlkioDeviceWriteBps", "--device-write-bps"), ("BlkioDeviceReadIOps", "--device-read-iops"),
    ("BlkioDeviceWriteIOps", "--device-write-iops"), ("CpuRealtimePeriod", "--cpu-rt-period"),
    ("CpuRealtimeRuntime", "--cpu-rt-runtime"),
)


def check_rootless_limits(h: dict) -> None:
    """Rootless kran without a delegated cgroup cannot enforce limits: refuse each one asked for
    (never run the container as if it had them)."""
    from kran import rootless

    if not rootless.active():
        return
    asked = [flag for key, flag in _LIMIT_FLAGS if h.get(key) and h.get(key) != -1]
    if h.get("MemorySwappiness") is not None and int(h["MemorySwappiness"]) >= 0:
        asked.append("--memory-swappiness")
    if h.get("PidsLimit") and int(h["PidsLimit"]) > 0:
        asked.append("--pids-limit")
    if not asked or rootless.delegated_cgroup():
        return
    v = "cgroup v2 is not delegated to this user" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") \
        else "this host has cgroup v1, which cannot be delegated"
    raise InvalidArgument(f"{', '.join(asked)}: resource limits need a cgroup delegated to the user in rootless mode,"
                          f" and {v}; run without {'them' if len(asked) > 1 else 'it'}, or as root")

