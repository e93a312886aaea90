"""cgroups v1 and v2: create the container's cgroup, apply ``linux.resources``, freeze, kill, remove.

v1 or v2 is decided by statfs(``root``): cgroup2 magic means the unified hierarchy.  On a hybrid host
(v1 controllers plus a cgroup2 mount at ``<root>/unified``) that mount is ignored.  The manager's
state (``to_state``) is stored in state.json so later commands need no detection.
"""

from __future__ import annotations

import errno
import os
import time

V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "devices", "blkio")

#: Devices every container may use (runc's AllowedDevices), plus mknod of anything ("m").
DEFAULT_DEVICE_RULES = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",  # null
    "c 1:8 rwm",  # random
    "c 1:7 rwm",  # full
    "c 5:0 rwm",  # tty
    "c 1:5 rwm",  # zero
    "c 1:9 rwm",  # urandom
    "c 5:1 rwm",  # console
    "c 136:* rwm",  # pts
    "c 5:2 rwm",  # ptmx
    "c 10:200 rwm",  # tun
]


#: OCI blockIO throttle key -> the kernel's name (v1 blkio.throttle.<name>_device)
_THROTTLES = (("throttleReadBpsDevice", "read_bps"), ("throttleWriteBpsDevice", "write_bps"),
              ("throttleReadIOPSDevice", "read_iops"), ("throttleWriteIOPSDevice", "write_iops"))


def spec_cgroup_path(spec_path: str | None, cid: str) -> str:
    """``linux.cgroupsPath`` -> a path relative to the hierarchy root.

    "/a/b" stays as is; systemd's "slice:prefix:name" maps to "<slice dirs>/<prefix>-<name>.scope".
    """
    if not spec_path:
        return f"kran-runtime/{cid}"
    if ":" in spec_path and not spec_path.startswith("/"):
        slice_, prefix, name = (spec_path.split(":") + ["", ""])[:3]
        parts: list[str] = []
        if slice_ and slice_ != "-.slice":
            stem = slice_.removesuffix(".slice").split("-")
            parts = ["-".join(stem[: i + 1]) + ".slice" for i in range(len(stem))]
        leaf = f"{prefix}-{name}.scope" if prefix else name
        return "/".join(parts + [leaf])
    path = os.path.normpath("/" + spec_path).lstrip("/")
    return path


def v2_controllers_for(res: dict) -> list[str]:
    mem, cpu = res.get("memory") or {}, res.get("cpu") or {}
    out = []
    if cpu.get("cpus") or cpu.get("mems"):
        out.append("cpuset")
    if cpu.get("shares") or cpu.get("quota") or cpu.get("period"):
        out.append("cpu")
    if any((res.get("blockIO") or {}).values()):
        out.append("io")
    if mem:
        out.append("memory")
    if res.get("pids"):
        out.append("pids")
    return out


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def is_v2(root: str = "/sys/fs/cgroup") -> bool:
    from kran.sys.fs import CGROUP2_SUPER_MAGIC, fs_magic

    return fs_magic(root) == CGROUP2_SUPER_MAGIC


def v1_mounts(root: str = "/sys/fs/cgroup") -> dict[str, str]:
    """controller -> mount point of its v1 hierarchy (from /proc/self/mountinfo)."""
    out: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = post.split()
            if len(fields) < 3 or fields[0] != "cgroup":
                continue
            mnt = pre.split()[4]
            if not mnt.startswith(root + "/"):
                continue
            for opt in fields[2].split(","):
                if opt in V1_CONTROLLERS:
                    out[opt] = mnt
    return out


class CgroupManager:
    """``paths``: controller -> absolute cgroup directory (v2: the single key "")."""

    def __init__(
        self, version: int, paths: dict[str, str], created: list[str], mounts: dict[str, str] | None = None
    ) -> None:
        self.version, self.paths, self.created = version, paths, created
        self.mounts = mounts or {}  # v1: controller -> hierarchy mount point

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_state(cls, st: dict) -> CgroupManager:
        return cls(st["version"], st["paths"], st.get("created", []), st.get("mounts"))

    def to_state(self) -> dict:
        return {"version": self.version, "paths": self.paths, "created": self.created, "mounts": self.mounts}

    @classmethod
    def for_path(cls, rel: str, root: str = "/sys/fs/cgroup") -> CgroupManager:
        if is_v2(root):
            return cls(2, {"": os.path.join(root, rel)}, [])
        mounts = v1_mounts(root)
        return cls(1, {c: os.path.join(m, rel) for c, m in mounts.items()}, [], mounts)

    @property
    def dirs(self) -> list[str]:
        return sorted(set(self.paths.values()))

    # -- create / apply ------------------------------------------------------------------------
    def create(self, res: dict | None = None) -> None:
        """Make the directories (remembering which were new, for ``destroy``).  v2: enable in the
        ancestors' subtree_control only the controllers ``res`` (linux.resources) needs."""
        if self.version == 2:
            self._create_v2(v2_controllers_for(res or {}))
            return
        for ctrl, path in self.paths.items():
            self._mkdirs(path, cpuset=ctrl == "cpuset")

    def _mkdirs(self, path: str, cpuset: bool = False) -> None:
        missing = []
        p = path
        while not os.path.isdir(p):
            missing.append(p)
            p = os.path.dirname(p)
        for d in reversed(missing):
            try:
                os.mkdir(d, 0o755)
                self.created.append(d)
            except FileExistsError:
                pass
            if cpuset:
                # A new v1 cpuset is empty and refuses tasks: inherit the parent's cpus and mems.
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if not _read(os.path.join(d, f)).strip():
                        _write(os.path.join(d, f), _read(os.path.join(os.path.dirname(d), f)).strip())

    def _create_v2(self, wanted: list[str]) -> None:
        path = self.paths[""]
        # Enable controllers top-down along the path (v2 "no internal processes": the parents only
        # delegate, processes live in the leaf).
        self._mkdirs(path)
        anc = []
        p = os.path.dirname(path)
        while os.path.exists(os.path.join(p, "cgroup.subtree_control")):
            anc.append(p)
            if os.path.ismount(p):
                break
            p = os.path.dirname(p)
        for d in reversed(anc):
            avail = _read(os.path.join(d, "cgroup.controllers")).split()
            enabled = _read(os.path.join(d, "cgroup.subtree_control")).split()
            for c in wanted:
                if c in avail and c not in enabled:
                    try:
                        _write(os.path.join(d, "cgroup.subtree_control"), "+" + c)
                    except OSError:
                        pass  # e.g. cpuset/io not delegable here: the limit writes will say so

    def enter(self, pid: int = 0) -> None:
        """Move ``pid`` (0: the caller) into every hierarchy."""
        for d in self.dirs:
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    def apply(self, res: dict | None, devices: bool = True) -> None:
        """Write ``linux.resources``.  ``devices=False`` (``update``) leaves the device rules alone:
        rewriting them starts with "deny all", which a running container would notice."""
        if not res:
            res = {}
        w = self._set
        mem = res.get("memory") or {}
        cpu = res.get("cpu") or {}
        if self.version == 1:
            if "limit" in mem or "swap" in mem:
                limit, swap = mem.get("limit"), mem.get("swap")
                memsw = os.path.exists(
                    os.path.join(self.paths.get("memory", ""), "memory.memsw.limit_in_bytes")
                )
                # memsw must stay >= limit at every step: raise memsw first when growing.
                if swap is not None and memsw:
                    try:
                        w("memory", "memory.memsw.limit_in_bytes", swap)
                        swap = None
                    except OSError:
                        pass
                if limit is not None:
                    w("memory", "memory.limit_in_bytes", limit)
                if swap is not None and memsw:
                    w("memory", "memory.memsw.limit_in_bytes", swap)
            if mem.get("reservation") is not None:
                w("memory", "memory.soft_limit_in_bytes", mem["reservation"])
            if mem.get("swappiness") is not None:
                w("memory", "memory.swappiness", mem["swappiness"])
            if cpu.get("shares"):
                w("cpu", "cpu.shares", cpu["shares"])
            if cpu.get("period"):
                w("cpu", "cpu.cfs_period_us", cpu["period"])
            if cpu.get("quota"):
                w("cpu", "cpu.cfs_quota_us", cpu["quota"])
            if cpu.get("cpus"):
                w("cpuset", "cpuset.cpus", cpu["cpus"])
            if cpu.get("mems"):
                w("cpuset", "cpuset.mems", cpu["mems"])
            pids = (res.get("pids") or {}).get("limit")
            if pids is not None:
                w("pids", "pids.max", pids if pids > 0 else "max")
            self._blkio_v1(res.get("blockIO") or {})
            if devices and "devices" in self.paths:
                self._devices_v1(res.get("devices") or [])
            return
        # v2
        if mem.get("limit") is not None:
            w("", "memory.max", mem["limit"] if mem["limit"] > 0 else "max")
        if mem.get("swap") is not None:
            swap = mem["swap"]
            if swap < 0:
                w("", "memory.swap.max", "max")
            elif mem.get("limit") is not None and mem["limit"] > 0:
                w("", "memory.swap.max", max(swap - mem["limit"], 0))
        if mem.get("reservation") is not None:
            w("", "memory.low", mem["reservation"])
        if cpu.get("shares"):
            w("", "cpu.weight", 1 + ((int(cpu["shares"]) - 2) * 9999) // 262142)
        if cpu.get("quota") or cpu.get("period"):
            quota = cpu.get("quota") or 0
            w("", "cpu.max", f"{quota if quota > 0 else 'max'} {cpu.get('period') or 100000}")
        if cpu.get("cpus"):
            w("", "cpuset.cpus", cpu["cpus"])
        if cpu.get("mems"):
            w("", "cpuset.mems", cpu["mems"])
        pids = (res.get("pids") or {}).get("limit")
        if pids is not None:
            w("", "pids.max", pids if pids > 0 else "max")
        self._io_v2(res.get("blockIO") or {})
        # Device rules on v2 need an eBPF program: out of scope; /dev holds only the spec's nodes.

    def _set(self, ctrl: str, name: str, value: object) -> None:
        if value == -1:
            value = "max" if self.version == 2 else -1
        _write(os.path.join(self.paths[ctrl], name), str(value))

    def _blkio_v1(self, bio: dict) -> None:
        """runc's fs/blkio.go: blkio.weight (CFQ) where it exists, else BFQ's blkio.bfq.weight; the
        throttles as "MAJ:MIN RATE" lines (rate 0 lifts a rule).  A write the kernel refuses is an
        error: a limit asked for is never silently dropped."""
        if not any(bio.values()):
            return
        if "blkio" not in self.paths:
            raise OSError(errno.ENOTSUP, "no blkio cgroup is mounted: block I/O limits cannot be applied")
        d = self.paths["blkio"]
        cfq = os.path.exists(os.path.join(d, "blkio.weight"))
        weight, weight_device = ("blkio.weight", "blkio.weight_device") if cfq else \
            ("blkio.bfq.weight", "blkio.bfq.weight_device")
        if bio.get("weight"):
            _write(os.path.join(d, weight), str(bio["weight"]))
        for wd in bio.get("weightDevice") or []:
            if wd.get("weight"):
                _write(os.path.join(d, weight_device), f"{wd['major']}:{wd['minor']} {wd['weight']}")
        for key, name in _THROTTLES:
            for t in bio.get(key) or []:
                _write(os.path.join(d, f"blkio.throttle.{name}_device"), f"{t['major']}:{t['minor']} {t['rate']}")

    def _io_v2(self, bio: dict) -> None:
        """runc's fs2/io.go: io.bfq.weight when BFQ is there, else io.weight on its 1-10000 scale;
        throttles as io.max "MAJ:MIN rbps=N" (0: "max", no limit)."""
        if not any(bio.values()):
            return
        d = self.paths[""]
        bfq = os.path.exists(os.path.join(d, "io.bfq.weight"))
        if bio.get("weight"):
            w = int(bio["weight"])
            if bfq:
                _write(os.path.join(d, "io.bfq.weight"), str(w))
            else:
                _write(os.path.join(d, "io.weight"), str(1 + (w - 10) * 9999 // 990))
        for wd in bio.get("weightDevice") or []:
            if wd.get("weight"):
                _write(os.path.join(d, "io.bfq.weight" if bfq else "io.weight"),
                       f"{wd['major']}:{wd['minor']} {wd['weight'] if bfq else 1 + (wd['weight'] - 10) * 9999 // 990}")
        for key, name in _THROTTLES:
            v2 = {"read_bps": "rbps", "write_bps": "wbps", "read_iops": "riops", "write_iops": "wiops"}[name]
            for t in bio.get(key) or []:
                _write(os.path.join(d, "io.max"), f"{t['major']}:{t['minor']} {v2}={t['rate'] or 'max'}")

    def _devices_v1(self, rules: list[dict]) -> None:
        d = self.paths["devices"]
        # runc's order: deny all, the spec's rules, then the default devices (always usable).
        _write(os.path.join(d, "devices.deny"), "a")
        for r in rules:
            kind = r.get("type") or "a"
            major = "*" if r.get("major") in (None, -1) else r["major"]
            minor = "*" if r.get("minor") in (None, -1) else r["minor"]
            line = "a" if kind == "a" else f"{kind} {major}:{minor} {r.get('access') or 'rwm'}"
            if kind == "a" and r.get("access") and r["access"] != "rwm":
                line = f"a *:* {r['access']}"
            _write(os.path.join(d, "devices.allow" if r.get("allow") else "devices.deny"), line)
        for line in DEFAULT_DEVICE_RULES:
            _write(os.path.join(d, "devices.allow"), line)

    # -- queries / control -------------------------------------------------------------------------
    def pids(self) -> list[int]:
        for ctrl in ("", "pids", "freezer", "memory", "cpu"):
            if ctrl in self.paths:
                try:
                    return [int(x) for x in _read(os.path.join(self.paths[ctrl], "cgroup.procs")).split()]
                except FileNotFoundError:
                    return []
        return []

    def frozen(self) -> bool:
        try:
            if self.version == 2:
                return "frozen 1" in _read(os.path.join(self.paths[""], "cgroup.events"))
            if "freezer" in self.paths:
                return _read(os.path.join(self.paths["freezer"], "freezer.state")).strip() == "FROZEN"
        except OSError:
            pass
        return False

    def freeze(self, on: bool) -> None:
        if self.version == 2:
            _write(os.path.join(self.paths[""], "cgroup.freeze"), "1" if on else "0")
            want = "frozen 1" if on else "frozen 0"
            for _ in range(1000):
                if want in _read(os.path.join(self.paths[""], "cgroup.events")):
                    return
                time.sleep(0.001)
            raise OSError(errno.EBUSY, "cgroup did not freeze")
        if "freezer" not in self.paths:
            # no freezer hierarchy mounted (e.g. a /sys remounted without cgroups, as `ip netns exec` does)
            raise OSError(errno.ENOTSUP, "no freezer cgroup is mounted: the container cannot be paused")
        path = os.path.join(self.paths["freezer"], "freezer.state")
        want = "FROZEN" if on else "THAWED"
        for _ in range(1000):
            _write(path, want)
            if _read(path).strip() == want:
                return
            time.sleep(0.001)
        raise OSError(errno.EBUSY, f"freezer did not reach {want}")

    def signal_all(self, sig: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def destroy(self, timeout: float = 10.0) -> None:
        """SIGKILL whatever is left, wait until empty, remove the directories we created."""
        deadline = time.monotonic() + timeout
        if self.frozen():
            self.signal_all(9)
            self.freeze(False)
        while True:
            left = self.pids()
            if not left:
                break
            self.signal_all(9)
            if time.monotonic() > deadline:
                raise OSError(errno.EBUSY, f"processes {left} did not exit")
            time.sleep(0.005)
        leaves = self.dirs
        for d in leaves + sorted(set(self.created) - set(leaves), key=len, reverse=True):
            for _ in range(200):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno == errno.EBUSY and d in leaves and time.monotonic() < deadline:
                        time.sleep(0.005)
                        continue
                    break  # a parent still used by another container: keep it
