"""``docker update``: change a container's resources and restart policy (the CLI's ``kran update``
and the API's POST /containers/{id}/update).

The change is recorded in the HostConfig (inspect shows it, the next start's spec uses it); on a
running container the new limits go to its cgroups through the runtime's ``update --resources``
(a linux.resources fragment, the same for kran's runtime and runc) and a new restart policy to the
monitor's configuration, which it reads again when the container exits.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from kran.errors import Conflict, InvalidArgument

if TYPE_CHECKING:
    from kran.engine import Engine

# the HostConfig keys ``docker update`` may change
KEYS = ("CpuShares", "Memory", "NanoCpus", "BlkioWeight", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod",
        "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "KernelMemory", "MemoryReservation", "MemorySwap",
        "PidsLimit", "RestartPolicy", "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps",
        "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps")


def update(engine: Engine, ref: str, changes: dict[str, Any]) -> None:
    """Apply ``changes`` (docker's UpdateConfig JSON; absent or None: unchanged)."""
    from kran.engine.live import _event, _runtime, get
    from kran.engine.request import decode_update
    from kran.storage.db import transaction

    _typed, checked = decode_update(changes)
    new = {k: v for k, v in checked.items() if k in KEYS and v is not None}
    c = get(engine, ref)
    h = dict(c.host_config)
    from kran.network import shaping

    rate = checked.get(shaping.KEY)  # --network-rate: a missing direction is kept
    if rate is not None:
        rate = h[shaping.KEY] = shaping.check_mode(h.get("NetworkMode") or "", {**(h.get(shaping.KEY) or {}), **rate}
                                                   if isinstance(rate, dict) else rate)
    from kran.engine import fresh, lockdown

    lockdown.check_update(engine, c, h, checked)  # --lockdown[=false]: only while stopped
    fresh.check_update(c, h, checked)  # --restart-fresh[=false]: a running one's monitor too
    rp = new.get("RestartPolicy")
    if rp is not None:
        name = rp.get("Name") or "no"
        if name not in ("no", "always", "on-failure", "unless-stopped"):
            raise InvalidArgument(f"invalid restart policy '{name}'")
        if h.get("AutoRemove") and name != "no":
            raise InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled for the container")
        if name != "on-failure" and rp.get("MaximumRetryCount"):
            raise InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
        new["RestartPolicy"] = {"Name": name, "MaximumRetryCount": int(rp.get("MaximumRetryCount") or 0)}
    h.update(new)
    _validate(h, new)
    from kran.engine import blkio

    blkio.check({k: v for k, v in new.items() if k in blkio.KEYS})  # devices resolve, the host can
    from kran.engine import schedule

    policy = {k: checked[k] for k in schedule.KEYS if checked.get(k) is not None}
    h.update(policy)
    schedule.check_host_config(h)  # "" / 0 clear a policy
    from kran.engine.validate import check_rootless_limits

    check_rootless_limits({k: v for k, v in new.items() if k != "RestartPolicy"})
    if c.running:
        # (a policy alone is the monitor's business: no runtime update for it)
        res = resources(h, new, c.host_config) if set(new) - {"RestartPolicy"} else {}
        if res:
            path = os.path.join(c.dir, "update.json")
            with open(path, "w") as f:
                json.dump(res, f)
            try:
                _runtime(engine, c, "update", "--resources", path, c.id)
            except Exception as e:
                raise Conflict(f"Cannot update container {c.id}: {e}") from None
            finally:
                os.unlink(path)
        if rp is not None:
            _monitor_restart_policy(c.dir, new["RestartPolicy"])
        if policy:
            _monitor_set(c.dir, "policy", schedule.monitor_cfg(h, c.config))
    if rate is not None:
        from kran.engine.endpoints import shape

        shape(engine, c, rate)  # live, on its veths
    with transaction(engine.store.db):
        engine.store.db.execute("UPDATE containers SET host_config=? WHERE id=?", (json.dumps(h), c.id))
    _event(engine, "update", c.id)


def _validate(h: dict[str, Any], new: dict[str, Any]) -> None:
    mem, swap = int(h.get("Memory") or 0), int(h.get("MemorySwap") or 0)
    if new.get("Memory") and 0 < mem < 6 * 1024 * 1024:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if mem and swap > 0 and swap < mem:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if new.get("NanoCpus") and (new.get("CpuQuota") or new.get("CpuPeriod")):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    w = int(new.get("BlkioWeight") or 0)
    if w and not 10 <= w <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    if new.get("CpusetCpus"):
        from kran.engine.validate import parse_cpuset

        ncpu = os.cpu_count() or 1
        if max(parse_cpuset(str(new["CpusetCpus"]))) >= ncpu:
            raise InvalidArgument(f"Requested CPUs are not available - requested {new['CpusetCpus']}, "
                                  f"available: 0-{ncpu - 1}")
    if new.get("CpusetMems"):
        from kran.engine.validate import parse_cpuset

        parse_cpuset(str(new["CpusetMems"]), "mems")


def resources(h: dict[str, Any], new: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    """The linux.resources for ``runtime update``: the merged HostConfig ``h``'s limits (the spec's
    own mapping), plus what the spec leaves out because it only ever adds limits: a pids limit
    changed to 0 or -1 is lifted (-1, docker's "unlimited")."""
    from kran.engine.blkio import THROTTLES, block_io
    from kran.engine.spec import limits

    if any(h.get(k) or (old or {}).get(k) for k in ("BlkioWeightDevice", *THROTTLES)):
        h = dict(h, _BlockIO=block_io(h, previous=old))  # a throttle dropped since `old` is lifted
    res = limits(h)
    if "PidsLimit" in new and int(new["PidsLimit"] or 0) <= 0:
        res["pids"] = {"limit": -1}
    return res


def _monitor_set(cdir: str, key: str, value: Any) -> None:
    """Change one key of a running container's monitor.json (atomically); the monitor sees the file
    change on its next tick (kran.monitor.policy: schedules and lifetimes apply at once)."""
    path = os.path.join(cdir, "monitor.json")
    try:
        with open(path) as f:
            mon = json.load(f)
    except (OSError, ValueError):
        return
    mon[key] = value
    with open(path + ".tmp", "w") as f:
        json.dump(mon, f)
    os.rename(path + ".tmp", path)


def _monitor_restart_policy(cdir: str, rp: dict[str, Any]) -> None:
    """The monitor reads monitor.json again when the container exits (its restart decision)."""
    path = os.path.join(cdir, "monitor.json")
    try:
        with open(path) as f:
            mon = json.load(f)
    except (OSError, ValueError):
        return
    mon["restart"] = {"name": rp["Name"], "max_retries": int(rp.get("MaximumRetryCount") or 0)}
    with open(path + ".tmp", "w") as f:
        json.dump(mon, f)
    os.rename(path + ".tmp", path)
