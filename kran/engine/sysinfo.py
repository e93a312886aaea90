"""``docker info`` / ``GET /info``: one document about this engine and its host, for both front ends.

:func:`info` gathers it (counts from the store, the host's kernel, cgroups and memory, the
rootless user namespace); :class:`Info` is Docker's ``system.Info`` (moby api/types/system/info.go)
in its field order, plus kran's own ``Rootless`` and, when rootless, ``IDMappings`` (Podman's
``idMappings``: what the user namespace maps ids to on the host).  :meth:`Info.document` is the
JSON the API sends and ``kran info --format`` renders; the CLI's text is made from the same object.

Reading only: nothing here creates the state root or its database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kran.codec import encode, jf

if TYPE_CHECKING:
    from kran.engine import Engine

# graphdriver.FsNames (moby daemon/graphdriver/driver_linux.go): statfs f_type -> the name docker
# prints as "Backing Filesystem"
FS_NAMES = {
    0xEF53: "extfs", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs", 0x794C7630: "overlayfs",
    0x2FC12FC1: "zfs", 0x6969: "nfs", 0x65735546: "fuse", 0x61756673: "aufs", 0xF15F: "ecryptfs",
    0x858458F6: "ramfs", 0x73717368: "squashfs", 0x52654973: "reiserfs", 0x28CD3D45: "cramfs",
    0xFF534D42: "cifs", 0x5346414F: "afs", 0x9FA0: "proc", 0x62656572: "sysfs", 0x64626720: "debugfs",
    0x27E0EB: "cgroup", 0x63677270: "cgroup2", 0x42465331: "befs", 0xF2F52010: "f2fs",
}

# moby daemon/info.go's wording, so scripts that grep docker's warnings find kran's
NO_CGROUPS_V1 = ("WARNING: Running in rootless-mode without cgroups. To enable cgroups in rootless-mode, "
                 "you need to boot the system in cgroup v2 mode.")
NO_CGROUPS_V2 = ("WARNING: Running in rootless-mode without cgroups. Systemd is required to enable cgroups "
                 "in rootless-mode.")

CGROUP_ROOT = "/sys/fs/cgroup"


def _k(key: str, default: Any = None, factory: Any = None) -> Any:
    """A field docker always sends, even when empty/false (the codec omits empty ones otherwise)."""
    return jf(key, default=default, keep=True, factory=factory)


@dataclass(frozen=True, slots=True, kw_only=True)
class IDRange:
    """One line of /proc/self/uid_map (or gid_map): ``size`` ids from ``container_id`` inside are
    ``host_id``... on the host."""

    container_id: int = _k("ContainerID", 0)
    host_id: int = _k("HostID", 0)
    size: int = _k("Size", 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class IDMappings:
    uid_map: tuple[IDRange, ...] = _k("UIDMap", ())
    gid_map: tuple[IDRange, ...] = _k("GIDMap", ())


@dataclass(frozen=True, slots=True, kw_only=True)
class Plugins:
    volume: tuple[str, ...] = _k("Volume", ("local",))
    network: tuple[str, ...] = _k("Network", ("bridge", "host", "null"))
    authorization: tuple[str, ...] | None = _k("Authorization", None)
    log: tuple[str, ...] = _k("Log", ())


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Which resource limits containers can get here (docker's sysinfo booleans)."""

    memory: bool = False
    swap: bool = False
    kernel_memory_tcp: bool = False
    cpu_cfs: bool = False
    cpu_shares: bool = False
    cpuset: bool = False
    pids: bool = False
    oom_kill_disable: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Info:
    """Docker's ``GET /info`` document (fields in moby's order; JSON keys as docker spells them)."""

    id: str = _k("ID", "")
    containers: int = _k("Containers", 0)
    containers_running: int = _k("ContainersRunning", 0)
    containers_paused: int = _k("ContainersPaused", 0)
    containers_stopped: int = _k("ContainersStopped", 0)
    images: int = _k("Images", 0)
    driver: str = _k("Driver", "overlay2")
    driver_status: tuple[tuple[str, str], ...] = _k("DriverStatus", ())
    plugins: Plugins = _k("Plugins", factory=Plugins)
    memory_limit: bool = _k("MemoryLimit", False)
    swap_limit: bool = _k("SwapLimit", False)
    kernel_memory_tcp: bool = jf("KernelMemoryTCP", default=False)  # omitempty in docker too
    cpu_cfs_period: bool = _k("CpuCfsPeriod", False)
    cpu_cfs_quota: bool = _k("CpuCfsQuota", False)
    cpu_shares: bool = _k("CPUShares", False)
    cpu_set: bool = _k("CPUSet", False)
    pids_limit: bool = _k("PidsLimit", False)
    ipv4_forwarding: bool = _k("IPv4Forwarding", True)
    debug: bool = _k("Debug", False)
    nfd: int = _k("NFd", 0)
    oom_kill_disable: bool = _k("OomKillDisable", False)
    ngoroutines: int = _k("NGoroutines", 0)
    system_time: str = _k("SystemTime", "")
    logging_driver: str = _k("LoggingDriver", "json-file")
    cgroup_driver: str = _k("CgroupDriver", "cgroupfs")
    cgroup_version: str = jf("CgroupVersion", default="")
    nevents_listener: int = _k("NEventsListener", 0)
    kernel_version: str = _k("KernelVersion", "")
    operating_system: str = _k("OperatingSystem", "")
    os_version: str = _k("OSVersion", "")
    os_type: str = _k("OSType", "linux")
    architecture: str = _k("Architecture", "")
    index_server_address: str = _k("IndexServerAddress", "https://index.docker.io/v1/")
    registry_config: dict[str, Any] | None = _k("RegistryConfig", None)
    ncpu: int = _k("NCPU", 1)
    mem_total: int = _k("MemTotal", 0)
    generic_resources: list[Any] | None = _k("GenericResources", None)
    docker_root_dir: str = _k("DockerRootDir", "")
    http_proxy: str = _k("HttpProxy", "")
    https_proxy: str = _k("HttpsProxy", "")
    no_proxy: str = _k("NoProxy", "")
    name: str = _k("Name", "")
    labels: tuple[str, ...] = _k("Labels", ())
    experimental_build: bool = _k("ExperimentalBuild", False)
    server_version: str = _k("ServerVersion", "")
    runtimes: dict[str, dict[str, str]] = _k("Runtimes", factory=dict)
    default_runtime: str = _k("DefaultRuntime", "kran")
    swarm: dict[str, Any] = _k("Swarm", factory=lambda: {
        "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False, "Error": "",
        "RemoteManagers": None})
    # kran's containers outlive the CLI and the API server (each has its own monitor)
    live_restore_enabled: bool = _k("LiveRestoreEnabled", True)
    isolation: str = _k("Isolation", "")
    init_binary: str = _k("InitBinary", "")
    containerd_commit: dict[str, str] = _k("ContainerdCommit", factory=lambda: {"ID": "N/A"})
    runc_commit: dict[str, str] = _k("RuncCommit", factory=lambda: {"ID": "N/A"})
    init_commit: dict[str, str] = _k("InitCommit", factory=lambda: {"ID": "N/A"})
    security_options: tuple[str, ...] = _k("SecurityOptions", ())
    cdi_spec_dirs: tuple[str, ...] = _k("CDISpecDirs", ())
    warnings: tuple[str, ...] | None = _k("Warnings", None)
    # kran's own: true in a rootless user's namespace; the mappings only then
    rootless: bool = _k("Rootless", False)
    id_mappings: IDMappings | None = jf("IDMappings")

    def document(self) -> dict[str, Any]:
        """The JSON object ``GET /info`` returns."""
        return encode(self)  # type: ignore[no-any-return]


def info(engine: Engine) -> Info:
    """What ``docker info`` shows, for this engine (its state root) on this host."""
    import threading
    import time

    from kran import __version__, rootless
    from kran.engine.timefmt import rfc3339

    running = paused = total = images = 0
    if os.path.exists(os.path.join(engine.root, "kran.db")):
        from kran.engine.record import all_containers

        for c in all_containers(engine):
            total += 1
            s = c.status
            # moby counts "restarting" among the stopped (daemon.setStateCounter)
            running += s == "running"
            paused += s == "paused"
        images = engine.store.db.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    is_rootless = rootless.active()
    v2 = os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))
    delegated = rootless.delegated_cgroup() if is_rootless else ""
    # a rootless kran without a delegated cgroup runs its containers in none (docker's "none" driver)
    no_cgroups = is_rootless and not delegated
    lim = Limits() if no_cgroups else cgroup_limits(v2, delegated)
    warnings: list[str] = []
    if no_cgroups:
        warnings.append(NO_CGROUPS_V2 if v2 else NO_CGROUPS_V1)
    else:
        warnings += limit_warnings(lim, v2)

    security = ["name=seccomp,profile=builtin"]
    if is_rootless:
        security.append("name=rootless")
    if v2:
        security.append("name=cgroupns")  # containers get a private cgroup namespace (spec.py)

    mappings = None
    if is_rootless:
        mappings = IDMappings(uid_map=_ranges(rootless.uid_map()), gid_map=_ranges(rootless.gid_map()))

    runtimes, default_rt = _runtimes()
    registry, reg_warning = _registry_config()
    if reg_warning:
        warnings.append(reg_warning)
    os_name, os_version = _os_release()
    uname = os.uname()
    return Info(
        containers=total, containers_running=running, containers_paused=paused,
        containers_stopped=total - running - paused, images=images,
        # kran mounts overlay without metacopy or userxattr, and diffs the upper directory itself
        driver_status=(("Backing Filesystem", backing_fs(engine.root)), ("Using metacopy", "false"),
                       ("Native Overlay Diff", "true"), ("userxattr", "false")),
        plugins=Plugins(log=_log_drivers()),
        memory_limit=lim.memory, swap_limit=lim.swap, kernel_memory_tcp=lim.kernel_memory_tcp,
        cpu_cfs_period=lim.cpu_cfs, cpu_cfs_quota=lim.cpu_cfs, cpu_shares=lim.cpu_shares, cpu_set=lim.cpuset,
        pids_limit=lim.pids, oom_kill_disable=lim.oom_kill_disable,
        ipv4_forwarding=_ipv4_forwarding(is_rootless),
        nfd=_count_fds(), ngoroutines=threading.active_count(), system_time=rfc3339(time.time()),
        cgroup_driver="none" if no_cgroups else "cgroupfs", cgroup_version="2" if v2 else "1",
        kernel_version=uname.release, operating_system=os_name, os_version=os_version,
        architecture=uname.machine, registry_config=registry, ncpu=_ncpu(), mem_total=_mem_total(),
        docker_root_dir=engine.root,
        http_proxy=_env("HTTP_PROXY"), https_proxy=_env("HTTPS_PROXY"), no_proxy=_env("NO_PROXY"),
        name=uname.nodename, server_version=__version__, runtimes=runtimes, default_runtime=default_rt,
        init_binary="tini-static",  # --init bind-mounts it as /sbin/docker-init
        runc_commit={"ID": f"kran-runtime {__version__}"},  # the default runtime is kran's own
        security_options=tuple(security), warnings=tuple(warnings) or None,
        rootless=is_rootless, id_mappings=mappings,
    )


# -- the host's parts (each small, read-only) ------------------------------------------------------


def backing_fs(root: str) -> str:
    """The filesystem under the state root (or its nearest existing parent, before the first pull)."""
    from kran.sys.fs import fs_magic

    path = os.path.abspath(root)
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    try:
        magic = fs_magic(path)
    except OSError:
        return "<unknown>"
    return FS_NAMES.get(magic, "<unknown>")


def cgroup_limits(v2: bool, delegated: str = "", base: str = CGROUP_ROOT) -> Limits:
    """Docker's sysinfo checks: which controllers (and their files) this host offers.

    v1: one hierarchy per controller under ``base``; v2: the controllers enabled where kran puts
    containers (the delegated subtree when rootless, else the root)."""
    j = os.path.join
    if not v2:
        mem, cpu = j(base, "memory"), j(base, "cpu")
        return Limits(
            memory=os.path.isdir(mem), swap=os.path.exists(j(mem, "memory.memsw.limit_in_bytes")),
            kernel_memory_tcp=os.path.exists(j(mem, "memory.kmem.tcp.limit_in_bytes")),
            cpu_cfs=os.path.exists(j(cpu, "cpu.cfs_quota_us")), cpu_shares=os.path.exists(j(cpu, "cpu.shares")),
            cpuset=os.path.isdir(j(base, "cpuset")), pids=os.path.isdir(j(base, "pids")),
            oom_kill_disable=os.path.exists(j(mem, "memory.oom_control")),
        )
    d = j(base, delegated) if delegated else base
    try:
        with open(j(d, "cgroup.controllers")) as f:  # what this subtree may enable
            ctrls = set(f.read().split())
    except OSError:
        ctrls = set()
    # v2 has swap wherever the kernel was built with swap accounting; the root cgroup has no
    # memory.swap.max of its own, so look for it one level down (any child)
    swap = "memory" in ctrls and _any_child_has(d, "memory.swap.max")
    return Limits(memory="memory" in ctrls, swap=swap, cpu_cfs="cpu" in ctrls, cpu_shares="cpu" in ctrls,
                  cpuset="cpuset" in ctrls, pids="pids" in ctrls)


def _any_child_has(d: str, name: str) -> bool:
    if os.path.exists(os.path.join(d, name)):
        return True
    try:
        with os.scandir(d) as it:
            return any(e.is_dir(follow_symlinks=False) and os.path.exists(os.path.join(e.path, name)) for e in it)
    except OSError:
        return False


def limit_warnings(lim: Limits, v2: bool) -> list[str]:
    """moby daemon/info_unix.go's warnings for what is missing (some only mean something on v1)."""
    out = []
    if not lim.memory:
        out.append("WARNING: No memory limit support")
    if not lim.swap:
        out.append("WARNING: No swap limit support")
    if not v2 and not lim.oom_kill_disable:
        out.append("WARNING: No oom kill disable support")
    if not lim.cpu_cfs:
        out += ["WARNING: No cpu cfs quota support", "WARNING: No cpu cfs period support"]
    if not lim.cpu_shares:
        out.append("WARNING: No cpu shares support")
    if not lim.cpuset:
        out.append("WARNING: No cpuset support")
    return out


def _ranges(m: list[Any]) -> tuple[IDRange, ...]:
    return tuple(IDRange(container_id=r.inside, host_id=r.outside, size=r.count) for r in m)


def _runtimes() -> tuple[dict[str, dict[str, str]], str]:
    """The runtimes a container's ``--runtime`` may name, and the default (``KRAN_RUNTIME`` names
    another one, or points the "kran" runtime at another binary: engine/live.py)."""
    import shutil
    import sys

    env = os.environ.get("KRAN_RUNTIME", "")
    own = os.path.join(os.path.dirname(sys.executable), "kran-runtime")
    out = {"kran": {"path": env if os.sep in env else (own if os.path.exists(own) else "kran-runtime")}}
    runc = shutil.which("runc") or shutil.which("runc", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if runc:
        out["runc"] = {"path": runc}
    default = env if env and os.sep not in env else "kran"
    if default not in out:
        out[default] = {"path": shutil.which(default) or default}
    return out, default


def _registry_config() -> tuple[dict[str, Any] | None, str]:
    """Docker's RegistryConfig from kran's config file; a malformed file is a warning here (info
    must work to find out what is wrong), the commands that use it still refuse it."""
    from kran.errors import KranError
    from kran.registry.config import DOCKER_IO, RegistryConfig

    try:
        rc = RegistryConfig.load()
    except KranError as e:
        return None, f"WARNING: {e}"
    cidrs, hosts = ["::1/128", "127.0.0.0/8"], []
    for h in rc.insecure:
        if "/" in h:
            cidrs.append(h)
        else:
            hosts.append(h)
    index = {DOCKER_IO: {"Name": DOCKER_IO, "Mirrors": list(rc.mirrors), "Secure": True, "Official": True}}
    for h in hosts:
        index[h] = {"Name": h, "Mirrors": [], "Secure": False, "Official": False}
    return {"AllowNondistributableArtifactsCIDRs": None, "AllowNondistributableArtifactsHostnames": None,
            "InsecureRegistryCIDRs": cidrs, "IndexConfigs": index, "Mirrors": list(rc.mirrors)}, ""


def _log_drivers() -> tuple[str, ...]:
    from kran.engine.create import LOG_DRIVERS

    return tuple(LOG_DRIVERS)


def _ipv4_forwarding(is_rootless: bool) -> bool:
    """The host's net.ipv4.ip_forward; rootless containers' bridges live in kran's own netns, where
    kran turns forwarding on with the first bridge (network/bridge.py), as dockerd does at start."""
    if is_rootless:
        return True
    try:
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def _count_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def _ncpu() -> int:
    """CPUs this process may run on (Go's runtime.NumCPU honours the affinity mask too)."""
    try:
        return len(os.sched_getaffinity(0))
    except OSError:
        return os.cpu_count() or 1


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _os_release() -> tuple[str, str]:
    """(PRETTY_NAME, VERSION_ID) from os-release(5)."""
    vals: dict[str, str] = {}
    for p in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(p) as f:
                for line in f:
                    k, sep, v = line.strip().partition("=")
                    if sep:
                        vals[k] = v.strip().strip("\"'")
            break
        except OSError:
            continue
    return vals.get("PRETTY_NAME") or "Linux", vals.get("VERSION_ID", "")


def _env(name: str) -> str:
    return os.environ.get(name) or os.environ.get(name.lower()) or ""
