"""``run``/``create`` flags -> docker's container Config and HostConfig (pure; what the docker CLI sends)."""

from __future__ import annotations

import re
import shlex
from typing import Any

from kran.cli.flags import Flag
from kran.errors import InvalidArgument

_VOLNAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

RUN_FLAGS = (
    Flag("add-host", "", "list", "list", "Add a custom host-to-IP mapping (host:ip)"),
    Flag("cap-add", "", "list", "list", "Add Linux capabilities"),
    Flag("cap-drop", "", "list", "list", "Drop Linux capabilities"),
    Flag("cgroup-parent", "", "str", "string", "Optional parent cgroup for the container"),
    Flag("cpu-period", "", "int", "int", "Limit CPU CFS (Completely Fair Scheduler) period"),
    Flag("cpu-quota", "", "int", "int", "Limit CPU CFS (Completely Fair Scheduler) quota"),
    Flag("cpu-shares", "c", "int", "int", "CPU shares (relative weight)"),
    Flag("cpus", "", "str", "decimal", "Number of CPUs"),
    Flag("cpuset-cpus", "", "str", "string", "CPUs in which to allow execution (0-3, 0,1)"),
    Flag("cpuset-mems", "", "str", "string", "MEMs in which to allow execution (0-3, 0,1)"),
    Flag("detach", "d", help="Run container in background and print container ID"),
    Flag("detach-keys", "", "str", "string", "Override the key sequence for detaching a container"),
    Flag("domainname", "", "str", "string", "Container NIS domain name"),
    Flag("entrypoint", "", "str", "string", "Overwrite the default ENTRYPOINT of the image"),
    Flag("env", "e", "list", "list", "Set environment variables"),
    Flag("env-file", "", "list", "list", "Read in a file of environment variables"),
    Flag("hostname", "h", "str", "string", "Container host name"),
    Flag("init", help="Run an init inside the container that forwards signals and reaps processes"),
    Flag("interactive", "i", help="Keep STDIN open even if not attached"),
    Flag("label", "l", "list", "list", "Set meta data on a container"),
    Flag("log-driver", "", "str", "string", "Logging driver for the container"),
    Flag("log-opt", "", "list", "list", "Log driver options"),
    Flag("memory", "m", "str", "bytes", "Memory limit"),
    Flag("memory-reservation", "", "str", "bytes", "Memory soft limit"),
    Flag("mount", "", "list", "mount", "Attach a filesystem mount to the container"),
    Flag("memory-swap", "", "str", "bytes", "Swap limit equal to memory plus swap: '-1' to enable unlimited swap"),
    Flag("name", "", "str", "string", "Assign a name to the container"),
    Flag("network", "", "str", "network", "Connect a container to a network"),
    Flag("net", "", "str", "network", "Connect a container to a network", hidden=True),
    Flag("pids-limit", "", "int", "int", "Tune container pids limit (set -1 for unlimited)"),
    Flag("privileged", help="Give extended privileges to this container"),
    Flag("pull", "", "str", "string", 'Pull image before running ("always", "missing", "never")', default="missing"),
    Flag("quiet", "q", help="Suppress the pull output"),
    Flag("read-only", help="Mount the container's root filesystem as read only"),
    Flag("restart", "", "str", "string", "Restart policy to apply when a container exits", default="no"),
    Flag("rm", help="Automatically remove the container and its associated anonymous volumes when it exits"),
    Flag("runtime", "", "str", "string", "Runtime to use for this container"),
    Flag("security-opt", "", "list", "list", "Security Options"),
    Flag("shm-size", "", "str", "bytes", "Size of /dev/shm"),
    Flag("sig-proxy", "", "bool", help="Proxy received signals to the process", default=True),
    Flag("stop-signal", "", "str", "string", "Signal to stop the container"),
    Flag("stop-timeout", "", "int", "int", "Timeout (in seconds) to stop a container"),
    Flag("sysctl", "", "list", "map", "Sysctl options"),
    Flag("tmpfs", "", "list", "list", "Mount a tmpfs directory"),
    Flag("tty", "t", help="Allocate a pseudo-TTY"),
    Flag("ulimit", "", "list", "ulimit", "Ulimit options"),
    Flag("volume", "v", "list", "list", "Bind mount a volume"),
    Flag("volumes-from", "", "list", "list", "Mount volumes from the specified container(s)"),
    Flag("user", "u", "str", "string", "Username or UID (format: <name|uid>[:<group|gid>])"),
    Flag("workdir", "w", "str", "string", "Working directory inside the container"),
)
CREATE_EXCLUDE = {"detach", "detach-keys", "rm", "sig-proxy"}
CREATE_FLAGS = tuple(f for f in RUN_FLAGS if f.long not in CREATE_EXCLUDE or f.long == "rm")


def _bytes(v: str, flag: str) -> int:
    from kran.cli.units import ram_in_bytes

    if v == "-1":
        return -1
    try:
        return ram_in_bytes(v)
    except ValueError as e:
        raise InvalidArgument(f'invalid argument "{v}" for "{flag}" flag: {e}') from e


def _env_file(path: str) -> list[str]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InvalidArgument(f"open {path}: {(e.strerror or str(e)).lower()}") from e
    out = []
    import os

    for line in lines:
        s = line.lstrip()
        if not s or s.startswith("#"):
            continue
        k, sep, v = s.partition("=")
        if not k:
            raise InvalidArgument(f"invalid environment variable: {line}")
        if " " in k:
            raise InvalidArgument(f"variable '{k}' contains whitespaces")
        if sep:
            out.append(f"{k}={v}")
        elif k in os.environ:
            out.append(f"{k}={os.environ[k]}")
    return out


def _env(values: list[str]) -> list[str]:
    import os

    out = []
    for v in values:
        k, sep, _ = v.partition("=")
        if not k:
            raise InvalidArgument(f"invalid environment variable: {v}")
        if sep:
            out.append(v)
        elif k in os.environ:
            out.append(f"{k}={os.environ[k]}")
    return out


def parse_restart(s: str) -> dict[str, Any]:
    name, _, n = (s or "no").partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise InvalidArgument(f"invalid restart policy {name}")
    if n and name != "on-failure":
        raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
    try:
        count = int(n) if n else 0
    except ValueError:
        raise InvalidArgument(f"maximum retry count must be an integer: {n}") from None
    return {"Name": name if name != "no" else "no", "MaximumRetryCount": count}


def parse_ulimit(s: str) -> dict[str, Any]:
    from kran.engine.spec import RLIMITS

    name, sep, vals = s.partition("=")
    if not sep:
        raise InvalidArgument(f"invalid ulimit argument: {s}")
    if name not in RLIMITS:
        raise InvalidArgument(f"invalid ulimit type: {name}")
    soft, _, hard = vals.partition(":")
    try:
        si = int(soft)
        hi = int(hard) if hard else si
    except ValueError:
        raise InvalidArgument(f"invalid ulimit argument: {s}") from None
    if si > hi:
        raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: {si} > {hi}")
    return {"Name": name, "Soft": si, "Hard": hi}


def parse_volume(spec: str) -> tuple[str, str, str]:
    """``-v [SOURCE:]DEST[:MODE]`` -> (source, dest, mode); docker's rules for the pieces."""
    parts = spec.split(":")
    if len(parts) == 1:
        src, dest, mode = "", parts[0], ""
    elif len(parts) == 2:
        if parts[1] and (parts[1] in ("ro", "rw", "z", "Z") or "," in parts[1]) and parts[0].startswith("/"):
            src, dest, mode = "", parts[0], parts[1]
        else:
            src, dest, mode = parts[0], parts[1], ""
    elif len(parts) == 3:
        src, dest, mode = parts
    else:
        raise InvalidArgument(f"invalid spec: {spec}: too many colons")
    if not dest:
        raise InvalidArgument(f"invalid spec: {spec}: empty section between colons")
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid mount config for type \"{'bind' if src.startswith('/') else 'volume'}\": "
                              f"invalid mount path: '{dest}' mount path must be absolute")
    for m in mode.split(",") if mode else []:
        if m not in ("ro", "rw", "z", "Z", "nocopy", "shared", "rshared", "slave", "rslave", "private", "rprivate"):
            raise InvalidArgument(f"invalid mode: {mode}")
    if src and not src.startswith("/") and not _VOLNAME.match(src):
        raise InvalidArgument(
            f'create {src}: "{src}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'
        )
    return src, dest, mode


_MOUNT_KEYS = {
    "type": "Type", "source": "Source", "src": "Source", "target": "Target", "dst": "Target",
    "destination": "Target", "readonly": "ReadOnly", "ro": "ReadOnly", "bind-propagation": "Propagation",
    "tmpfs-size": "TmpfsSize", "tmpfs-mode": "TmpfsMode", "volume-nocopy": "NoCopy", "volume-label": "Label",
    "volume-driver": "Driver", "volume-opt": "DriverOpt", "consistency": "Consistency",
}


def parse_mount(spec: str) -> dict[str, Any]:
    """``--mount type=...,src=...,dst=...`` -> docker's mount.Mount (HostConfig.Mounts item)."""
    import csv

    fields = next(csv.reader([spec])) if spec else []
    m: dict[str, Any] = {"Type": "volume"}
    bind: dict[str, Any] = {}
    vol: dict[str, Any] = {}
    tmp: dict[str, Any] = {}
    for f in fields:
        k, sep, v = f.partition("=")
        key = _MOUNT_KEYS.get(k.strip().lower())
        if key is None:
            raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: unexpected key '{k}' in '{f}'")
        if key in ("ReadOnly", "NoCopy"):
            if not sep:
                v = "true"
            if v.lower() not in ("1", "true", "0", "false"):
                raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: invalid value for {k}: {v}")
            if key == "ReadOnly":
                m["ReadOnly"] = v.lower() in ("1", "true")
            else:
                vol["NoCopy"] = v.lower() in ("1", "true")
            continue
        if not sep:
            raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: invalid field '{f}' must be a key=value pair")
        if key == "Type":
            m["Type"] = v.lower()
        elif key in ("Source", "Target", "Consistency"):
            m[key] = v
        elif key == "Propagation":
            bind["Propagation"] = v
        elif key == "TmpfsSize":
            tmp["SizeBytes"] = _bytes(v, "tmpfs-size")
        elif key == "TmpfsMode":
            tmp["Mode"] = int(v, 8)
        elif key == "Label":
            lk, _, lv = v.partition("=")
            vol.setdefault("Labels", {})[lk] = lv
        elif key == "DriverOpt":
            ok, _, ov = v.partition("=")
            vol.setdefault("DriverConfig", {"Name": "local"}).setdefault("Options", {})[ok] = ov
    if m["Type"] not in ("volume", "bind", "tmpfs"):
        raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: invalid mount type \"{m['Type']}\"")
    if not m.get("Target"):
        raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: target is required")
    if bind:
        if m["Type"] != "bind":
            raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: cannot mix 'bind-*' options with mount type '{m['Type']}'")
        m["BindOptions"] = bind
    if vol:
        if m["Type"] != "volume":
            raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: cannot mix 'volume-*' options with mount type '{m['Type']}'")
        m["VolumeOptions"] = vol
    if tmp:
        if m["Type"] != "tmpfs":
            raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: cannot mix 'tmpfs-*' options with mount type '{m['Type']}'")
        m["TmpfsOptions"] = tmp
    return m


def build(opts: Any, image: str, cmd: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Docker's parse(): flags + IMAGE + COMMAND -> (Config, HostConfig)."""
    env = []
    for f in opts.env_file:
        env += _env_file(f)
    env += _env(opts.env)
    labels = {}
    for lab in opts.label:
        k, _, v = lab.partition("=")
        labels[k] = v
    config: dict[str, Any] = {
        "Hostname": opts.hostname or "",
        "Domainname": opts.domainname or "",
        "User": opts.user or "",
        "AttachStdin": bool(opts.interactive and not opts.opts.get("detach")),
        "AttachStdout": not opts.opts.get("detach"),
        "AttachStderr": not opts.opts.get("detach"),
        "Tty": bool(opts.tty),
        "OpenStdin": bool(opts.interactive),
        "StdinOnce": bool(opts.interactive and not opts.opts.get("detach")),
        "Env": env,
        "Cmd": cmd or None,
        "Image": image,
        "WorkingDir": opts.workdir or "",
        "Labels": labels,
    }
    if opts.entrypoint is not None:
        config["Entrypoint"] = shlex.split(opts.entrypoint) if opts.entrypoint else []
    if opts.stop_signal:
        config["StopSignal"] = opts.stop_signal
    if opts.stop_timeout is not None:
        config["StopTimeout"] = opts.stop_timeout
    log_opts = {}
    for o in opts.log_opt:
        k, sep, v = o.partition("=")
        if not sep:
            raise InvalidArgument(f"invalid key-value pair format in log-opt: {o}")
        if k not in ("max-size", "max-file", "compress", "labels", "env", "tag", "mode"):
            raise InvalidArgument(f"unknown log opt '{k}' for json-file log driver")
        log_opts[k] = v
    if opts.log_driver not in (None, "", "json-file"):
        raise InvalidArgument(f'logging driver "{opts.log_driver}" is not supported; use json-file')
    tmpfs = {}
    for t in opts.tmpfs:
        path, _, o = t.partition(":")
        tmpfs[path] = o
    cpus = 0
    if opts.cpus:
        try:
            cpus = int(round(float(opts.cpus) * 1e9))
        except ValueError:
            raise InvalidArgument(f'invalid argument "{opts.cpus}" for "--cpus" flag: failed to parse {opts.cpus} as a rational number') from None
    sysctls = {}
    for s in opts.sysctl:
        k, sep, v = s.partition("=")
        if not sep:
            raise InvalidArgument(f"invalid value {s}: sysctl must be key=value")
        sysctls[k] = v
    network = opts.network or opts.net or "default"
    if network not in ("default", "bridge", "none", "host"):
        raise InvalidArgument(f"network {network} not found")
    if opts.pull not in ("always", "missing", "never"):
        raise InvalidArgument(f'invalid pull option: \'{opts.pull}\': must be one of "always", "missing" or "never"')
    binds = []
    volumes: dict[str, Any] = {}
    for v in opts.volume:
        src, dest, _mode = parse_volume(v)
        if src:
            binds.append(v)
        else:
            volumes[dest] = {}
    if volumes:
        config["Volumes"] = volumes
    host: dict[str, Any] = {
        "Binds": binds or None,
        "Mounts": [parse_mount(m) for m in opts.mount] or None,
        "VolumesFrom": opts.volumes_from or None,
        "AutoRemove": bool(opts.opts.get("rm")),
        "RestartPolicy": parse_restart(opts.restart),
        "Memory": _bytes(opts.memory, "--memory") if opts.memory else 0,
        "MemorySwap": _bytes(opts.memory_swap, "--memory-swap") if opts.memory_swap else 0,
        "MemoryReservation": _bytes(opts.memory_reservation, "--memory-reservation") if opts.memory_reservation else 0,
        "NanoCpus": cpus,
        "CpuShares": opts.cpu_shares or 0,
        "CpuPeriod": opts.cpu_period or 0,
        "CpuQuota": opts.cpu_quota or 0,
        "CpusetCpus": opts.cpuset_cpus or "",
        "CpusetMems": opts.cpuset_mems or "",
        "PidsLimit": opts.pids_limit,
        "ReadonlyRootfs": bool(opts.read_only),
        "Tmpfs": tmpfs or None,
        "Init": bool(opts.init) or None,
        "CapAdd": opts.cap_add or None,
        "CapDrop": opts.cap_drop or None,
        "Privileged": bool(opts.privileged),
        "SecurityOpt": opts.security_opt or None,
        "Ulimits": [parse_ulimit(u) for u in opts.ulimit] or None,
        "LogConfig": {"Type": "json-file", "Config": log_opts},
        "NetworkMode": network,
        "Runtime": opts.runtime or "",
        "CgroupParent": opts.cgroup_parent or "",
        "ShmSize": _bytes(opts.shm_size, "--shm-size") if opts.shm_size else 67108864,
        "Sysctls": sysctls or None,
        "ExtraHosts": opts.add_host or None,
    }
    return config, host
