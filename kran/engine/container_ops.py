"""Looking into containers: diff, export, top, stats, update."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from kran.errors import Conflict, KranError

if TYPE_CHECKING:
    from kran.engine import Engine


def diff(engine: Engine, ref: str) -> list[tuple[str, str]]:
    """(kind, path) with kind A (added), C (changed), D (deleted), like ``docker diff``."""
    from kran.engine.containers import get

    c = get(engine, ref)
    from kran.engine.lockdown import refuse_files_out

    refuse_files_out(c)  # --lockdown: not even the names of its files
    upper = os.path.join(c.dir, "upper")
    lowers = [engine.store.layers.path(ch) for ch, *_ in engine.images.layers(c.image_id)]

    def in_lower(rel: str) -> bool:
        for lp in reversed(lowers):
            p = os.path.join(lp, rel)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                # a whiteout of a parent in a higher layer hides it
                continue
            return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)
        return False

    out: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(upper):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, upper)
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(p)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append(("D", "/" + rel))
            else:
                out.append(("C" if in_lower(rel) else "A", "/" + rel))
    # Mount points the runtime creates for every container are docker's "init layer", not changes.
    out = [(k, p) for k, p in out if not (k == "A" and p in INIT_PATHS)]
    keep = []
    for k, p in out:
        if k == "C" and os.path.isdir(os.path.join(upper, p.lstrip("/"))) and not any(
            q.startswith(p + "/") for _, q in out
        ) and _only_init_children(upper, p):
            continue
        keep.append((k, p))
    return sorted(keep, key=lambda x: x[1])


INIT_PATHS = frozenset({"/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev", "/dev/pts", "/dev/shm",
                        "/dev/console", "/proc", "/sys", "/etc/mtab", "/.dockerenv"})


def _only_init_children(upper: str, p: str) -> bool:
    d = os.path.join(upper, p.lstrip("/"))
    try:
        names = os.listdir(d)
    except OSError:
        return False
    return all(f"{p.rstrip('/')}/{n}" in INIT_PATHS for n in names)


def export(engine: Engine, ref: str, out: BinaryIO) -> None:
    """The container's whole filesystem as a tar (``docker export``)."""
    from kran.engine.containers import _mount_rootfs, get
    from kran.storage.layertar import write_layer
    from kran.sys.fsutil import MNT_DETACH, is_mountpoint, umount

    c = get(engine, ref)
    from kran.engine.lockdown import refuse_files_out

    refuse_files_out(c)
    merged = os.path.join(c.dir, "merged")
    if is_mountpoint(merged):
        write_layer(merged, out, whiteout_format="none", live=True)  # running: files may come and go
        return
    layers = [engine.store.layers.path(ch) for ch, *_ in engine.images.layers(c.image_id)]
    target = tempfile.mkdtemp(prefix="export-", dir=engine.store.tmp if os.path.isdir(engine.store.tmp) else None)
    try:
        lower = ":".join([os.path.join(c.dir, "upper")] + list(reversed(layers)))
        from kran.rootless.overlay import mount_overlay

        mount_overlay(target, f"lowerdir={lower}", readonly=True)
        try:
            write_layer(target, out, whiteout_format="none")
        finally:
            umount(target, MNT_DETACH)
    finally:
        os.rmdir(target)
    del _mount_rootfs


def _cgroup_dirs(pid: int) -> dict[str, str]:
    """controller -> host path of the cgroup of ``pid`` (v1: per controller; v2: key "")."""
    out = {}
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _hid, ctrls, path = line.rstrip("\n").split(":", 2)
                if ctrls == "":
                    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                        out[""] = "/sys/fs/cgroup" + path
                    continue
                for ctrl in ctrls.split(","):
                    ctrl = ctrl.removeprefix("name=")
                    base = f"/sys/fs/cgroup/{ctrl}"
                    if not os.path.isdir(base):
                        base = f"/sys/fs/cgroup/{ctrls}"
                    out[ctrl] = base + path
    except OSError:
        pass
    return out


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def container_pids(engine: Engine, ref: str) -> list[int]:
    from kran.engine.containers import get

    c = get(engine, ref)
    if not c.running:
        raise Conflict(f"container {c.id} is not running")
    pid = int((c.state or {}).get("pid") or 0)
    cg = _cgroup_dirs(pid)
    d = cg.get("") or cg.get("pids") or cg.get("memory") or ""
    if c.id not in d:
        # no cgroup of its own (rootless on cgroup v1): its cgroup is its user's, shared
        from kran.sys.ns import pidns_members

        return pidns_members(pid)
    pids = [int(x) for x in _read(os.path.join(d, "cgroup.procs")).split()] if d else []
    return pids or [pid]


def top(engine: Engine, ref: str, ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
    pids = container_pids(engine, ref)
    args = ps_args or ["-ef"]
    p = subprocess.run(["ps", *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise KranError(f"Error running ps: {p.stderr.strip()}")
    lines = p.stdout.splitlines()
    if not lines:
        return [], []
    titles = lines[0].split()
    try:
        pid_col = titles.index("PID")
    except ValueError:
        raise KranError("Couldn't find PID field in ps output") from None
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
            rows.append(fields)
    return titles, rows


@dataclass
class Stats:
    id: str
    name: str
    cpu_percent: float
    mem_usage: int
    mem_limit: int
    pids: int
    blk_read: int
    blk_write: int
    net_rx: int
    net_tx: int


def stats(engine: Engine, ref: str, interval: float = 0.5) -> Stats:
    import time

    from kran.engine.containers import get

    c = get(engine, ref)
    if not c.running:
        return Stats(c.id, c.name, 0.0, 0, 0, 0, 0, 0, 0, 0)
    pid = int((c.state or {}).get("pid") or 0)
    cg = _cgroup_dirs(pid)

    def cpu_ns() -> int:
        if "" in cg:
            for line in _read(os.path.join(cg[""], "cpu.stat")).splitlines():
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) * 1000
            return 0
        v = _read(os.path.join(cg.get("cpuacct", ""), "cpuacct.usage"))
        return int(v) if v.isdigit() else 0

    t0, c0 = time.monotonic(), cpu_ns()
    time.sleep(interval)
    t1, c1 = time.monotonic(), cpu_ns()
    cpu = (c1 - c0) / ((t1 - t0) * 1e9) * 100.0
    if "" in cg:
        usage = int(_read(os.path.join(cg[""], "memory.current")) or 0)
        lim_s = _read(os.path.join(cg[""], "memory.max"))
        pids_n = int(_read(os.path.join(cg[""], "pids.current")) or 0)
        inactive = 0
        for line in _read(os.path.join(cg[""], "memory.stat")).splitlines():
            if line.startswith("inactive_file "):
                inactive = int(line.split()[1])
        usage -= inactive
    else:
        m = cg.get("memory", "")
        usage = int(_read(os.path.join(m, "memory.usage_in_bytes")) or 0)
        lim_s = _read(os.path.join(m, "memory.limit_in_bytes"))
        for line in _read(os.path.join(m, "memory.stat")).splitlines():
            if line.startswith("total_inactive_file "):
                usage -= int(line.split()[1])
        pids_n = int(_read(os.path.join(cg.get("pids", ""), "pids.current")) or 0)
    total_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = int(lim_s) if lim_s.isdigit() else total_mem
    limit = min(limit, total_mem)
    rx = tx = 0
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            for line in list(f)[2:]:
                name, data = line.split(":", 1)
                if name.strip() == "lo":
                    continue
                v = data.split()
                rx += int(v[0])
                tx += int(v[8])
    except OSError:
        pass
    return Stats(c.id, c.name, cpu, max(usage, 0), limit, pids_n, 0, 0, rx, tx)


def update(engine: Engine, ref: str, changes: dict[str, Any]) -> None:
    """``docker update`` (the use case lives in :mod:`kran.engine.update`)."""
    from kran.engine.update import update as _update

    _update(engine, ref, changes)
