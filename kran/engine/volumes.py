"""Volume use cases (create, ls, inspect, rm, prune, export, import) and container mounts (``cp`` is in kran.engine.copy).

Glossary: a *mount point* is one entry of a container's ``HostConfig._MountPoints`` (planned at
create from ``-v``, ``--mount``, ``--volumes-from`` and the image's ``VOLUME``s):
``{"Type": "volume"|"bind"|"tmpfs", "Name", "Source", "Destination", "Driver", "Mode", "RW",
"Propagation", "CopyData", "Anonymous", "TmpfsOptions"}``.  At start each becomes an OCI mount
(``_Mounts``); a volume's host path is resolved then.

Which container uses which volume is recorded in ``volume_refs`` in the same transaction as the
container's row, so a volume that a container references (running or not, and after a crash
between create and start) is never pruned nor removed.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from kran.engine import label_match
from kran.errors import Conflict, InvalidArgument, NotFound
from kran.storage.db import transaction
from kran.volume.local import LocalVolumes, validate_name, validate_options

if TYPE_CHECKING:
    import sqlite3

    from kran.engine import Engine
    from kran.engine.record import Container

ANON_LABEL = "com.docker.volume.anonymous"


class VolumeNotFound(NotFound):
    pass


def _db_ready(engine: Engine) -> bool:
    return os.path.exists(os.path.join(engine.root, "kran.db"))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# -- volumes --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume:
    name: str
    driver: str
    created: float
    labels: dict[str, str]
    options: dict[str, str]
    anonymous: bool
    mountpoint: str

    def to_json(self) -> dict[str, Any]:
        """docker's Volume (``volume inspect``)."""
        return {
            "CreatedAt": _iso(self.created),
            "Driver": self.driver,
            "Labels": dict(self.labels) or None,
            "Mountpoint": self.mountpoint,
            "Name": self.name,
            "Options": dict(self.options) or None,
            "Scope": "local",
        }


_VCOLS = "name, driver, created, labels, options, anonymous"


def _vol(engine: Engine, r: tuple[Any, ...]) -> Volume:
    return Volume(name=r[0], driver=r[1], created=r[2], labels=json.loads(r[3]), options=json.loads(r[4]),
                  anonymous=bool(r[5]), mountpoint=LocalVolumes(engine.root).data(r[0]))


def get(engine: Engine, name: str) -> Volume:
    r = engine.store.db.execute(f"SELECT {_VCOLS} FROM volumes WHERE name=?", (name,)).fetchone() if _db_ready(engine) else None
    if r is None:
        raise VolumeNotFound(f"get {name}: no such volume")
    return _vol(engine, r)


def all_volumes(engine: Engine) -> list[Volume]:
    if not _db_ready(engine):
        return []
    return [_vol(engine, r) for r in engine.store.db.execute(f"SELECT {_VCOLS} FROM volumes ORDER BY name")]


def users(engine: Engine, name: str) -> list[str]:
    """IDs of the containers (running or not) that reference the volume."""
    if not _db_ready(engine):
        return []
    return [r[0] for r in engine.store.db.execute("SELECT container_id FROM volume_refs WHERE volume=? ORDER BY container_id", (name,))]


def create(engine: Engine, name: str | None = None, driver: str = "local", labels: dict[str, str] | None = None,
           options: dict[str, str] | None = None) -> str:
    """docker's VolumeCreate: an existing volume of that name is returned as it is."""
    if driver not in ("", "local"):
        raise NotFound(f"create {name or ''}: error looking up volume plugin {driver}: plugin \"{driver}\" not found")
    anonymous = not name
    name = name or os.urandom(32).hex()
    validate_name(name)
    opts = dict(options or {})
    validate_options(opts)
    labs = dict(labels or {})
    if anonymous:
        labs.setdefault(ANON_LABEL, "")
    store = engine.store
    lv = LocalVolumes(engine.root)
    with store.writing():
        if store.db.execute("SELECT 1 FROM volumes WHERE name=?", (name,)).fetchone():
            return name
        made = lv.create(name)
        try:
            with transaction(store.db):
                store.db.execute("INSERT OR IGNORE INTO volumes(name, driver, created, labels, options, anonymous) "
                                 "VALUES (?,?,?,?,?,?)",
                                 (name, "local", time.time(), json.dumps(labs), json.dumps(opts), int(anonymous)))
        except BaseException:
            if made:
                lv.remove(name, store.workdir("vol-"))
            raise
    _event(engine, "create", name, driver="local")
    return name


def _event(engine: Engine, action: str, name: str, **attrs: str) -> None:
    from kran.engine.events import emit

    emit(engine.root, "volume", action, name, attrs)


def remove(engine: Engine, name: str, force: bool = False) -> None:
    """docker's VolumeRemove: a volume that a container references is kept (even with force)."""
    store = engine.store
    try:
        get(engine, name)
    except VolumeNotFound:
        if force:
            return
        raise
    with store.writing():
        with transaction(store.db):
            ids = [r[0] for r in store.db.execute("SELECT container_id FROM volume_refs WHERE volume=?", (name,))]
            if ids:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(ids)}]")
            store.db.execute("DELETE FROM volumes WHERE name=?", (name,))
        LocalVolumes(engine.root).remove(name, store.workdir("vol-"))
    _event(engine, "destroy", name)


def prune(engine: Engine, all_volumes_: bool = False, label_filters: list[str] | None = None) -> tuple[list[str], int]:
    """Remove unused volumes (only anonymous ones unless ``all_volumes_``): their names, bytes freed."""
    gone, space = [], 0
    lv = LocalVolumes(engine.root)
    for v in all_volumes(engine):
        if not all_volumes_ and not v.anonymous:
            continue
        if label_filters and not all(label_match(v.labels, f) for f in label_filters):
            continue
        if users(engine, v.name):
            continue
        size = lv.size(v.name)
        try:
            remove(engine, v.name)
        except Conflict:
            continue  # a container took it meanwhile
        gone.append(v.name)
        space += size
    return gone, space


def filter_volumes(engine: Engine, filters: list[str]) -> list[Volume]:
    """``volume ls --filter``: dangling=, name= (substring), label=, driver=."""
    by: dict[str, list[str]] = {}
    for f in filters:
        k, sep, v = f.partition("=")
        if not sep:
            raise InvalidArgument(f"bad format of filter (expected name=value): {f}")
        if k not in ("dangling", "name", "label", "driver"):
            raise InvalidArgument(f"invalid filter '{k}'")
        by.setdefault(k, []).append(v)
    out = []
    for v in all_volumes(engine):
        if "dangling" in by:
            want = by["dangling"][-1].lower()
            if want not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={by['dangling'][-1]}'")
            if bool(not users(engine, v.name)) != (want in ("true", "1")):
                continue
        if "name" in by and not any(n in v.name for n in by["name"]):
            continue
        if "driver" in by and v.driver not in by["driver"]:
            continue
        if "label" in by and not all(label_match(v.labels, lab) for lab in by["label"]):
            continue
        out.append(v)
    return out


def export(engine: Engine, name: str, out: BinaryIO, *, live: bool = False) -> None:
    """The volume's contents as a tar (owners, modes, xattrs, links kept); ``live``: its users may
    be writing to it meanwhile (see :func:`kran.storage.layertar.write_layer`)."""
    from kran.storage.layertar import write_layer

    v = get(engine, name)
    LocalVolumes(engine.root).mount(v.name, v.options)
    write_layer(v.mountpoint, out, whiteout_format="none", live=live)


def import_(engine: Engine, name: str, stream: BinaryIO) -> bool:
    """Unpack a tar into a volume (created when missing); names that would leave it are refused.
    Returns whether the volume was created.  A failed import into a new volume removes it."""
    from kran.volume.copy import apply_tar

    try:
        v = get(engine, name)
        new = False
    except VolumeNotFound:
        create(engine, name)
        v = get(engine, name)
        new = True
    try:
        LocalVolumes(engine.root).mount(v.name, v.options)
        with engine.store.writing():
            apply_tar(stream, v.mountpoint)
    except BaseException:
        if new:
            remove(engine, name, force=True)
        raise
    return new


# -- mounts of a container: planned at create ----------------------------------------------------


@dataclass
class MountPlan:
    mountpoints: list[dict[str, Any]] = field(default_factory=list)
    new_volumes: dict[str, tuple[bool, dict[str, str]]] = field(default_factory=dict)  # name -> (anonymous, labels)
    made: list[str] = field(default_factory=list)  # volume dirs this create made (undo on failure)


def _check_dest(dest: str, kind: str) -> str:
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid mount config for type \"{kind}\": invalid mount path: '{dest}' mount path must be absolute")
    d = posixpath.normpath(dest)
    if d == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")
    return d


def plan_mounts(engine: Engine, cfg: dict[str, Any], h: dict[str, Any]) -> MountPlan:
    """Docker's order: --volumes-from, then -v binds/volumes, then --mount, then the image's and
    -v's anonymous VOLUMEs for destinations not mounted yet.  A destination used twice is an error."""
    plan = MountPlan()
    by_dest: dict[str, dict[str, Any]] = {}

    def add(mp: dict[str, Any], replace: bool = False) -> None:
        if mp["Destination"] in by_dest and not replace:
            raise InvalidArgument(f"Duplicate mount point: {mp['Destination']}")
        by_dest[mp["Destination"]] = mp

    def volume(name: str, dest: str, rw: bool, mode: str, nocopy: bool = False,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
        anonymous = not name
        if anonymous:
            name = os.urandom(32).hex()
        else:
            validate_name(name)
        exists = _db_ready(engine) and engine.store.db.execute("SELECT 1 FROM volumes WHERE name=?", (name,)).fetchone()
        if not exists and name not in plan.new_volumes:
            plan.new_volumes[name] = (anonymous, dict(labels or {}))
        return {"Type": "volume", "Name": name, "Source": "", "Destination": dest, "Driver": "local", "Mode": mode,
                "RW": rw, "Propagation": "", "CopyData": not nocopy, "Anonymous": anonymous}

    from kran.engine import record

    for spec in h.get("VolumesFrom") or []:
        ref, _, mode = spec.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidArgument(f"invalid mode: {mode}")
        other = record.get(engine, ref)
        for mp in other.host_config.get("_MountPoints") or []:
            m = dict(mp, CopyData=False, Anonymous=False)
            if mode:
                m["RW"] = mode == "rw"
            add(m, replace=True)
    for spec in h.get("Binds") or []:
        parts = spec.split(":")
        src, dest, mode = (parts + [""])[:3] if len(parts) >= 2 else ("", parts[0], "")
        modes = [x for x in mode.split(",") if x]
        rw = "ro" not in modes
        if src.startswith("/"):
            d = _check_dest(dest, "bind")
            prop = next((x for x in modes if x in ("shared", "rshared", "slave", "rslave", "private", "rprivate")), "rprivate")
            add({"Type": "bind", "Source": posixpath.normpath(src), "Destination": d, "Mode": mode, "RW": rw,
                 "Propagation": prop, "CreateSource": True}, replace=True)
        else:
            d = _check_dest(dest, "volume")
            add(volume(src, d, rw, mode or "z", nocopy="nocopy" in modes), replace=True)
    for m in h.get("Mounts") or []:
        typ = m.get("Type") or "volume"
        rw = not m.get("ReadOnly")
        if typ == "bind":
            src = m.get("Source") or ""
            if not src:
                raise InvalidArgument('invalid mount config for type "bind": field Source must not be empty')
            if not src.startswith("/"):
                raise InvalidArgument(f"invalid mount config for type \"bind\": invalid mount path: '{src}' mount path must be absolute")
            d = _check_dest(m.get("Target") or "", "bind")
            if not os.path.exists(src):
                raise InvalidArgument(f'invalid mount config for type "bind": bind source path does not exist: {src}')
            prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
            add({"Type": "bind", "Source": posixpath.normpath(src), "Destination": d, "Mode": "", "RW": rw,
                 "Propagation": prop})
        elif typ == "volume":
            d = _check_dest(m.get("Target") or "", "volume")
            vo = m.get("VolumeOptions") or {}
            add(volume(m.get("Source") or "", d, rw, "", nocopy=bool(vo.get("NoCopy")), labels=vo.get("Labels")))
        elif typ == "tmpfs":
            if m.get("Source"):
                raise InvalidArgument('invalid mount config for type "tmpfs": field Source must not be specified')
            d = _check_dest(m.get("Target") or "", "tmpfs")
            add({"Type": "tmpfs", "Source": "", "Destination": d, "Mode": "", "RW": rw, "Propagation": "",
                 "TmpfsOptions": m.get("TmpfsOptions") or {}})
        else:
            raise InvalidArgument(f"invalid mount config: mount type unknown: \"{typ}\"")
    for dest in sorted(cfg.get("Volumes") or {}):
        d = _check_dest(dest, "volume")
        if d in by_dest:
            continue
        add(volume("", d, True, ""))
    plan.mountpoints = list(by_dest.values())
    return plan


def prepare(engine: Engine, plan: MountPlan) -> None:
    """Before the container's row: make the new volumes' directories and missing -v host dirs."""
    lv = LocalVolumes(engine.root)
    for name in {mp["Name"] for mp in plan.mountpoints if mp["Type"] == "volume"}:
        if lv.create(name):
            plan.made.append(name)
    for mp in plan.mountpoints:
        if mp.get("CreateSource"):
            del mp["CreateSource"]
            if not os.path.lexists(mp["Source"]):
                os.makedirs(mp["Source"], 0o755, exist_ok=True)  # docker's -v creates a missing host dir


def record(db: sqlite3.Connection, cid: str, plan: MountPlan) -> None:
    """Inside the container's create transaction: the new volumes' rows and the container's refs."""
    now = time.time()
    used = {mp["Name"]: (mp.get("Anonymous", False), {}) for mp in plan.mountpoints if mp["Type"] == "volume"}
    # every used volume, not only the new ones: one removed since the plan comes back, empty (its
    # directory is made again at start), rather than failing on the reference
    for name, (anonymous, labels) in {**used, **plan.new_volumes}.items():
        labs = dict(labels)
        if anonymous:
            labs.setdefault(ANON_LABEL, "")
        db.execute("INSERT OR IGNORE INTO volumes(name, driver, created, labels, options, anonymous) VALUES (?,?,?,?,?,?)",
                   (name, "local", now, json.dumps(labs), "{}", int(anonymous)))
    for name in {mp["Name"] for mp in plan.mountpoints if mp["Type"] == "volume"}:
        db.execute("INSERT OR IGNORE INTO volume_refs(container_id, volume) VALUES (?,?)", (cid, name))


def undo(engine: Engine, plan: MountPlan) -> None:
    """The create failed: remove the volume dirs it made that no row claims."""
    lv = LocalVolumes(engine.root)
    for name in plan.made:
        if _db_ready(engine) and engine.store.db.execute("SELECT 1 FROM volumes WHERE name=?", (name,)).fetchone():
            continue
        lv.remove(name, engine.store.workdir("vol-"))


def remove_anonymous(engine: Engine, c: Container) -> None:
    """``rm -v``: the container's anonymous volumes that no other container uses."""
    for mp in c.host_config.get("_MountPoints") or []:
        if mp.get("Type") == "volume" and mp.get("Anonymous"):
            try:
                remove(engine, mp["Name"])
            except (Conflict, NotFound):
                pass


# -- mounts of a container: resolved at start -----------------------------------------------------


def start_mounts(engine: Engine, c: Container, rootfs: str) -> list[dict[str, Any]]:
    """The OCI mounts of a container about to start; fills new volumes from the image first (copy-up)."""
    lv = LocalVolumes(engine.root)
    mps = c.host_config.get("_MountPoints") or []
    out: list[dict[str, Any]] = []
    copied = False
    for mp in mps:
        dest = mp["Destination"]
        if mp["Type"] == "tmpfs":
            o = ["nosuid", "nodev", "noexec"]
            t = mp.get("TmpfsOptions") or {}
            if t.get("SizeBytes"):
                o.append(f"size={int(t['SizeBytes'])}")
            if t.get("Mode"):
                o.append(f"mode={int(t['Mode']):o}")
            if not mp.get("RW", True):
                o.append("ro")
            out.append({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": o})
            continue
        if mp["Type"] == "volume":
            v = get(engine, mp["Name"])
            lv.create(v.name)  # a no-op unless a concurrent `volume rm` won a race with our create
            lv.mount(v.name, v.options)
            src = v.mountpoint
            if mp.get("CopyData"):
                if lv.is_empty(v.name):
                    _copy_up(rootfs, dest, src)
                mp["CopyData"] = False
                copied = True
        else:
            src = mp["Source"]
            if not os.path.exists(src):
                raise InvalidArgument(f'invalid mount config for type "bind": bind source path does not exist: {src}')
        opts = ["rbind", mp.get("Propagation") or "rprivate"]
        if not mp.get("RW", True):
            opts.append("ro")
        out.append({"destination": dest, "type": "bind", "source": src, "options": opts})
    if copied:
        with transaction(engine.store.db):
            engine.store.db.execute("UPDATE containers SET host_config=? WHERE id=?", (json.dumps(c.host_config), c.id))
    # parents before children (docker sorts mounts by the depth of their destination)
    out.sort(key=lambda m: m["destination"].rstrip("/").count("/"))
    return out


def _copy_up(rootfs: str, dest: str, data: str) -> None:
    """Copy the image's content at ``dest`` into an empty new volume (docker's copy-up)."""
    from kran.storage.rootpath import open_in_root
    from kran.volume.copy import copy_tree

    try:
        fd = open_in_root(rootfs, dest, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # nothing there in the image (or not a directory): nothing to copy
    try:
        copy_tree(fd, data)
        st = os.fstat(fd)
        os.chown(data, st.st_uid, st.st_gid)
        os.chmod(data, stat.S_IMODE(st.st_mode))
    finally:
        os.close(fd)


def mounts_json(engine: Engine, c: Container) -> list[dict[str, Any]]:
    """docker's ``Mounts`` of ``inspect``."""
    lv = LocalVolumes(engine.root)
    out = []
    for mp in c.host_config.get("_MountPoints") or []:
        if mp["Type"] == "volume":
            out.append({"Type": "volume", "Name": mp["Name"], "Source": lv.data(mp["Name"]),
                        "Destination": mp["Destination"], "Driver": "local", "Mode": mp.get("Mode", ""),
                        "RW": bool(mp.get("RW", True)), "Propagation": ""})
        else:
            out.append({"Type": mp["Type"], "Source": mp.get("Source", ""), "Destination": mp["Destination"],
                        "Mode": mp.get("Mode", ""), "RW": bool(mp.get("RW", True)),
                        "Propagation": mp.get("Propagation", "")})
    return out
