"""The OCI runtime spec of a container: a pure function of its docker Config/HostConfig and paths.

Defaults follow Docker's (moby daemon/oci_linux.go and oci/defaults.go): the default capability set,
masked and read-only /proc paths, a private /dev, read-only /sys and cgroups, the default seccomp
profile, the default device cgroup rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# (type, major, minor, access) allowed in the device cgroup besides "deny all" (moby's defaults)
DEFAULT_DEVICE_RULES = (
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 7, "rwm"), ("c", 5, 0, "rwm"), ("c", 1, 5, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 136, None, "rwm"), ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm"),
)

SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
    "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16, "CHLD": 17,
    "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25,
    "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}

RLIMITS = {
    "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE",
    "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK", "as": "RLIMIT_AS",
}


def parse_signal(s: str) -> int:
    """``SIGTERM``, ``TERM``, ``15`` -> 15; ValueError otherwise."""
    t = s.strip().upper()
    if t.isdigit():
        n = int(t)
        if 0 < n <= 64:
            return n
        raise ValueError(f"Invalid signal: {s}")
    t = t.removeprefix("SIG")
    if t in SIGNALS:
        return SIGNALS[t]
    if t.startswith("RTMIN") or t.startswith("RTMAX"):
        base = 34 if t.startswith("RTMIN") else 64
        off = t[5:]
        if not off:
            return base
        if off[0] in "+-" and off[1:].isdigit():
            return base + int(off) if off[0] == "+" else base - int(off[1:])
    raise ValueError(f"Invalid signal: {s}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Paths:
    rootfs: str
    hostname: str = ""
    hosts: str = ""
    resolv_conf: str = ""
    init: str = ""  # host path of a static init (docker-init) when --init


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecInput:
    id: str
    config: dict[str, Any]  # docker's container Config (Env, Cmd, Entrypoint, WorkingDir, Tty, ...)
    host_config: dict[str, Any]
    paths: Paths
    user: User = User()
    cgroup_parent: str = "/kran"
    cgroup_v2: bool = False
    seccomp: dict[str, Any] | None = None  # the profile; None = unconfined
    caps: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)


def process_args(config: dict[str, Any]) -> list[str]:
    return list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])


def make_spec(inp: SpecInput) -> dict[str, Any]:
    c, h = inp.config, inp.host_config
    privileged = bool(h.get("Privileged"))
    env = list(c.get("Env") or [])
    keys = {e.split("=", 1)[0] for e in env}
    if "PATH" not in keys:
        env.insert(0, "PATH=" + DEFAULT_PATH)
    if "HOSTNAME" not in keys and c.get("Hostname"):
        env.insert(1, "HOSTNAME=" + c["Hostname"])
    if c.get("Tty") and "TERM" not in keys:
        env.append("TERM=xterm")
    if "HOME" not in keys:
        env.append("HOME=" + (inp.user.home or "/"))
    args = process_args(c)
    if inp.paths.init:
        args = ["/sbin/docker-init", "--"] + args
    caps = list(inp.caps)
    process: dict[str, Any] = {
        "terminal": bool(c.get("Tty")),
        "user": {"uid": inp.user.uid, "gid": inp.user.gid},
        "args": args,
        "env": env,
        "cwd": c.get("WorkingDir") or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": any(o in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true")
                               for o in h.get("SecurityOpt") or []),
    }
    if h.get("OomScoreAdj"):
        process["oomScoreAdj"] = int(h["OomScoreAdj"])
    if inp.user.additional_gids:
        process["user"]["additionalGids"] = list(inp.user.additional_gids)
    if c.get("Tty"):
        process["consoleSize"] = {"height": 24, "width": 80}
    rl = []
    for u in h.get("Ulimits") or []:
        rl.append({"type": RLIMITS[u["Name"]], "hard": int(u["Hard"]), "soft": int(u["Soft"])})
    if rl:
        process["rlimits"] = rl
    if not privileged:
        process["apparmorProfile"] = ""

    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro" if not privileged else "rw"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro" if not privileged else "rw"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={int(h.get('ShmSize') or 67108864)}"]},
    ]
    user_mounts = list(h.get("_Mounts") or [])  # volumes and binds, planned by the engine
    # they go first so that /etc/hostname, /etc/hosts and /etc/resolv.conf land on top of a volume
    # or bind at /etc (docker's order: by depth), unless the user mounts those files themselves
    mounts += user_mounts
    taken = {m["destination"] for m in user_mounts}
    for dest, src in (("/etc/resolv.conf", inp.paths.resolv_conf), ("/etc/hostname", inp.paths.hostname),
                      ("/etc/hosts", inp.paths.hosts)):
        if src and dest not in taken:
            mounts.append({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]})
    if inp.paths.init:
        mounts.append({"destination": "/sbin/docker-init", "type": "bind", "source": inp.paths.init,
                       "options": ["rbind", "ro", "rprivate"]})
    for dest, opts in sorted((h.get("Tmpfs") or {}).items()):
        o = ["nosuid", "nodev", "noexec"]
        for x in (opts or "").split(","):
            if x and x not in o:
                o.append(x)
        mounts.append({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": o})

    resources: dict[str, Any] = {}
    if privileged:
        resources["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        devs: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
        for typ, major, minor, access in DEFAULT_DEVICE_RULES:
            d: dict[str, Any] = {"allow": True, "type": typ, "access": access}
            if major is not None:
                d["major"] = major
            if minor is not None:
                d["minor"] = minor
            devs.append(d)
        resources["devices"] = devs
    resources.update(limits(h))

    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    net = h.get("NetworkMode") or "default"
    if net != "host":
        ns: dict[str, Any] = {"type": "network"}
        if h.get("_NetNSPath"):
            ns["path"] = h["_NetNSPath"]
        namespaces.append(ns)
    if inp.cgroup_v2 and (h.get("CgroupnsMode") or "private") == "private":
        namespaces.append({"type": "cgroup"})

    linux: dict[str, Any] = {
        "cgroupsPath": f"{inp.cgroup_parent.rstrip('/')}/{inp.id}",
        "resources": resources,
        "namespaces": namespaces,
    }
    if not privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        if inp.seccomp is not None:
            linux["seccomp"] = inp.seccomp
    if h.get("Sysctls"):
        linux["sysctl"] = dict(h["Sysctls"])

    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": inp.paths.rootfs, "readonly": bool(h.get("ReadonlyRootfs"))},
        "hostname": c.get("Hostname") or inp.id[:12],
        "mounts": mounts,
        "linux": linux,
    }
    if c.get("Domainname"):
        spec["domainname"] = c["Domainname"]
    if inp.annotations:
        spec["annotations"] = dict(inp.annotations)
    return spec


def limits(h: dict[str, Any]) -> dict[str, Any]:
    """HostConfig's limits as OCI ``linux.resources`` (memory, cpu, blockIO, pids): for the spec at
    create, and for ``runtime update`` when ``kran update``/the API change them."""
    resources: dict[str, Any] = {}
    mem: dict[str, Any] = {}
    if h.get("Memory"):
        mem["limit"] = int(h["Memory"])
        swap = int(h.get("MemorySwap") or 0)
        if swap == 0:
            swap = 2 * int(h["Memory"])  # docker: swap defaults to the same amount as memory
        mem["swap"] = swap
    if h.get("MemoryReservation"):
        mem["reservation"] = int(h["MemoryReservation"])
    if h.get("MemorySwappiness") is not None and int(h["MemorySwappiness"]) >= 0:  # -1: the host's
        mem["swappiness"] = int(h["MemorySwappiness"])
    if h.get("OomKillDisable"):
        mem["disableOOMKiller"] = True
    if mem:
        resources["memory"] = mem
    cpu: dict[str, Any] = {}
    if h.get("CpuShares"):
        cpu["shares"] = int(h["CpuShares"])
    if h.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = int(h["NanoCpus"]) * 100000 // 1_000_000_000
    if h.get("CpuQuota"):
        cpu["quota"] = int(h["CpuQuota"])
    if h.get("CpuPeriod"):
        cpu["period"] = int(h["CpuPeriod"])
    if h.get("CpusetCpus"):
        cpu["cpus"] = h["CpusetCpus"]
    if h.get("CpusetMems"):
        cpu["mems"] = h["CpusetMems"]
    if cpu:
        resources["cpu"] = cpu
    # the Blkio* keys name devices by path: the engine resolves them (kran.engine.blkio) into _BlockIO
    bio = h.get("_BlockIO")
    if bio is None and h.get("BlkioWeight"):
        bio = {"weight": int(h["BlkioWeight"])}
    if bio:
        resources["blockIO"] = bio
    if h.get("PidsLimit") and int(h["PidsLimit"]) > 0:
        resources["pids"] = {"limit": int(h["PidsLimit"])}
    return resources
