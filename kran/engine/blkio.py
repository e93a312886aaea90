"""Disk throughput limits: docker's ``--device-read-bps/-write-bps/-read-iops/-write-iops``,
``--blkio-weight`` and ``--blkio-weight-device`` (HostConfig's Blkio* keys) as OCI
``linux.resources.blockIO``.

The keys name devices by path (``{"Path": "/dev/sda", "Rate": N}``); the kernel wants major:minor,
so :func:`block_io` stats the paths at each start (a loop device's numbers are only good for this
boot) and :func:`check` at create and update, so that a missing device or a limit this host cannot
apply is refused before anything exists -- never accepted and then not enforced.  Rates are what
the kernel takes: bytes or I/Os per second (v1 ``blkio.throttle.*_device``, v2 ``io.max``).
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

from kran.errors import InvalidArgument

#: HostConfig key -> (OCI blockIO key, docker's flag)
THROTTLES = {
    "BlkioDeviceReadBps": ("throttleReadBpsDevice", "--device-read-bps"),
    "BlkioDeviceWriteBps": ("throttleWriteBpsDevice", "--device-write-bps"),
    "BlkioDeviceReadIOps": ("throttleReadIOPSDevice", "--device-read-iops"),
    "BlkioDeviceWriteIOps": ("throttleWriteIOPSDevice", "--device-write-iops"),
}
KEYS = ("BlkioWeight", "BlkioWeightDevice", *THROTTLES)
CGROUP_ROOT = "/sys/fs/cgroup"

_RATE_HELP = "The correct format is <device-path>:<number>[<unit>]. Number must be a positive integer. " \
             "Unit is optional and can be kb, mb, or gb"
# go-units' RAMInBytes: binary units, an optional "i" and "b" ("2mb", "2MiB", "512k", "100")
_RAM = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")


# -- the CLI's flags (docker/cli opts/throttledevice.go and weightdevice.go) -----------------------

def _device_arg(val: str) -> tuple[str, str]:
    k, sep, v = val.partition(":")
    if not sep or not k:
        raise ValueError(f"bad format: {val}")
    if not k.startswith("/dev/"):
        raise ValueError(f"bad format for device path: {val}")
    return k, v


def parse_bps(val: str) -> dict[str, Any]:
    """``/dev/sda:1mb`` -> ``{"Path": "/dev/sda", "Rate": 1048576}``; ValueError in docker's words."""
    path, v = _device_arg(val)
    m = _RAM.match(v)
    if not m:
        raise ValueError(f"invalid rate for device: {val}. {_RATE_HELP}")
    mult = 1024 ** " kmgtp".index((m.group(2) or " ").lower())
    return {"Path": path, "Rate": int(float(m.group(1)) * mult)}


def parse_iops(val: str) -> dict[str, Any]:
    path, v = _device_arg(val)
    if not v.isascii() or not v.isdigit():
        raise ValueError(f"invalid rate for device: {val}. The correct format is <device-path>:<number>. "
                         "Number must be a positive integer")
    return {"Path": path, "Rate": int(v)}


def parse_weight_device(val: str) -> dict[str, Any]:
    path, v = _device_arg(val)
    if not v.isascii() or not v.isdigit() or int(v) > 65535 or (int(v) and not 10 <= int(v) <= 1000):
        raise ValueError(f"invalid weight for device: {val}")
    return {"Path": path, "Weight": int(v)}


_FLAG_PARSERS = (("blkio_weight_device", "BlkioWeightDevice", parse_weight_device),
                 ("device_read_bps", "BlkioDeviceReadBps", parse_bps),
                 ("device_write_bps", "BlkioDeviceWriteBps", parse_bps),
                 ("device_read_iops", "BlkioDeviceReadIOps", parse_iops),
                 ("device_write_iops", "BlkioDeviceWriteIOps", parse_iops))


def from_flags(opts: Any) -> dict[str, Any]:
    """The run/create/update flags given -> their HostConfig keys.  ValueError carries
    ``(flag, value, message)`` for the CLI's pflag-style error."""
    out: dict[str, Any] = {}
    if getattr(opts, "blkio_weight", None) is not None:
        out["BlkioWeight"] = opts.blkio_weight
    for attr, key, parse in _FLAG_PARSERS:
        vals = getattr(opts, attr, None) or []
        items = []
        for v in vals:
            try:
                items.append(parse(v))
            except ValueError as e:
                raise ValueError("--" + attr.replace("_", "-"), v, str(e)) from None
        if vals:
            out[key] = items
    return out


# -- devices and host support ----------------------------------------------------------------------

def devnum(path: str) -> tuple[int, int]:
    """A block device's (major, minor); InvalidArgument in dockerd's words when it is none."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidArgument(f"stat {path}: {(e.strerror or str(e)).lower()}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise InvalidArgument(f"{path} is not a block device")
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def block_io(h: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """HostConfig ``h``'s limits as OCI blockIO (paths resolved now).  With ``previous`` (update),
    a device that lost its throttle gets rate 0, which lifts the kernel's rule."""
    out: dict[str, Any] = {}
    if h.get("BlkioWeight"):
        out["weight"] = int(h["BlkioWeight"])
    wd = []
    for d in h.get("BlkioWeightDevice") or []:
        major, minor = devnum(d["Path"])
        wd.append({"major": major, "minor": minor, "weight": int(d.get("Weight") or 0)})
    if wd:
        out["weightDevice"] = wd
    for key, (spec_key, _flag) in THROTTLES.items():
        items = []
        for d in h.get(key) or []:
            major, minor = devnum(d["Path"])
            items.append({"major": major, "minor": minor, "rate": int(d.get("Rate") or 0)})
        now = {d.get("Path") for d in h.get(key) or []}
        for d in (previous or {}).get(key) or []:
            if d.get("Path") not in now:
                try:
                    major, minor = devnum(d["Path"])
                except InvalidArgument:
                    continue  # gone: nothing to lift
                items.append({"major": major, "minor": minor, "rate": 0})
        if items:
            out[spec_key] = items
    return out


def _v1_dir(root: str) -> str:
    from kran.runtime.cgroups import v1_mounts

    return v1_mounts(root).get("blkio", "")


def _child_has(d: str, name: str) -> bool:
    """Whether a cgroup below ``d`` offers ``name`` (BFQ's files exist only below the root):
    an existing child is looked at, else a probe made and removed at once."""
    try:
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    return os.path.exists(os.path.join(e.path, name))
    except OSError:
        return False
    probe = os.path.join(d, f"kran-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except OSError:
        return False
    try:
        return os.path.exists(os.path.join(probe, name))
    finally:
        os.rmdir(probe)


def _scheduler(major: int, minor: int) -> str:
    try:
        with open(f"/sys/dev/block/{major}:{minor}/queue/scheduler") as f:
            m = re.search(r"\[(\w+)\]", f.read())
    except OSError:
        return ""
    return m.group(1) if m else ""


def check(h: dict[str, Any], root: str = CGROUP_ROOT) -> None:
    """create/update: the Blkio keys of ``h`` are well formed, name block devices, and this host
    can enforce them (runc's files: blkio.weight or BFQ's blkio.bfq.weight; v2 io.max, io.weight
    or io.bfq.weight).  One-line InvalidArgument otherwise."""
    asked = [k for k in KEYS if h.get(k)]
    if not asked:
        return
    w = int(h.get("BlkioWeight") or 0)
    if w and not 10 <= w <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    for d in h.get("BlkioWeightDevice") or []:
        wt = int(d.get("Weight") or 0)
        if wt and not 10 <= wt <= 1000:
            raise InvalidArgument(f"invalid weight for device: {d.get('Path')}:{wt}")
    for key, (_spec, flag) in THROTTLES.items():
        for d in h.get(key) or []:
            if int(d.get("Rate") or 0) < 0:
                raise InvalidArgument(f"invalid rate for device: {d.get('Path')}:{d.get('Rate')} ({flag})")
    devices = {d["Path"]: devnum(d["Path"]) for k in ("BlkioWeightDevice", *THROTTLES) for d in h.get(k) or []}
    from kran.runtime.cgroups import is_v2

    if is_v2(root):
        try:
            with open(os.path.join(root, "cgroup.controllers")) as f:
                has_io = "io" in f.read().split()
        except OSError:
            has_io = False
        if not has_io:
            raise InvalidArgument(f"{_flags(asked)}: this host's cgroup v2 has no io controller")
        bfq = _child_has(root, "io.bfq.weight")
        if h.get("BlkioWeight") and not (bfq or _child_has(root, "io.weight")):
            raise InvalidArgument("--blkio-weight: this kernel has neither io.bfq.weight nor io.weight")
        wfile = "io.bfq.weight" if bfq else ""
    else:
        d = _v1_dir(root)
        if not d:
            raise InvalidArgument(f"{_flags(asked)}: no blkio cgroup is mounted on this host")
        if any(h.get(k) for k in THROTTLES) and not os.path.exists(os.path.join(d, "blkio.throttle.read_bps_device")):
            raise InvalidArgument("this kernel has no block I/O throttling (blkio.throttle.*)")
        cfq = os.path.exists(os.path.join(d, "blkio.weight"))
        bfq = not cfq and _child_has(d, "blkio.bfq.weight")
        if (h.get("BlkioWeight") or h.get("BlkioWeightDevice")) and not (cfq or bfq):
            raise InvalidArgument("--blkio-weight: this kernel offers no block I/O weight (neither blkio.weight nor "
                                  "BFQ's blkio.bfq.weight)")
        wfile = "" if cfq else "blkio.bfq.weight_device"
    if wfile:
        # BFQ keeps per-device weights only for devices it schedules: elsewhere the kernel refuses them
        for d in h.get("BlkioWeightDevice") or []:
            sched = _scheduler(*devices[d["Path"]])
            if sched != "bfq":
                name = os.path.basename(os.path.realpath(d["Path"]))
                raise InvalidArgument(f"--blkio-weight-device {d['Path']}: its I/O scheduler is {sched or 'unknown'}, "
                                      f"weights need bfq (echo bfq > /sys/block/{name}/queue/scheduler)")


def _flags(keys: list[str]) -> str:
    names = {"BlkioWeight": "--blkio-weight", "BlkioWeightDevice": "--blkio-weight-device",
             **{k: f for k, (_s, f) in THROTTLES.items()}}
    return ", ".join(names[k] for k in keys)
