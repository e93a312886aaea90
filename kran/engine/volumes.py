"""Volume use cases (create, ls, inspect, rm, prune, export, import), container mounts and ``cp``.

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from kran.engine import label_match
from kran.errors import Conflict, InvalidArgument, KranError, NotFound
from kran.storage.db import transaction
from kran.volume.local import LocalVolumes, validate_name, validate_options

if TYPE_CHECKING:
    import sqlite3

    from kran.engine import Engine
    from kran.engine.containers import Container

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


def export(engine: Engine, name: str, out: BinaryIO) -> None:
    """The volume's contents as a tar (owners, modes, xattrs, links kept)."""
    from kran.storage.layertar import write_layer

    v = get(engine, name)
    LocalVolumes(engine.root).mount(v.name, v.options)
    write_layer(v.mountpoint, out, whiteout_format="none")


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

    from kran.engine import containers

    for spec in h.get("VolumesFrom") or []:
        ref, _, mode = spec.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidArgument(f"invalid mode: {mode}")
        other = containers.get(engine, ref)
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


# -- cp -------------------------------------------------------------------------------------------


class CopyNotFound(NotFound):
    pass


@contextmanager
def _container_fs(engine: Engine, ref: str) -> Iterator[tuple[Container, str]]:
    """The container and its root filesystem on the host, mounted for the time of a copy when it
    is not running (the overlay of image layers + its upper dir, read-write)."""
    from kran.engine import containers
    from kran.sys.fsutil import is_mountpoint

    c = containers.get(engine, ref)
    merged = os.path.join(c.dir, "merged")
    with engine.store.writing():
        mounted = False
        if not is_mountpoint(merged):
            containers._mount_rootfs(engine, c)
            mounted = True
        try:
            lv = LocalVolumes(engine.root)
            for mp in c.host_config.get("_MountPoints") or []:
                if mp["Type"] == "volume":
                    v = get(engine, mp["Name"])
                    lv.mount(v.name, v.options)
            yield c, merged
        finally:
            if mounted and not containers.get(engine, c.id).running:
                containers._cleanup_after_exit(engine, c)


def _locate(engine: Engine, c: Container, rootfs: str, path: str) -> tuple[str, str]:
    """(host directory to resolve in, path relative to it) for a container path: the deepest mount
    whose destination contains it, else the root filesystem.  Lexical, like docker's mount lookup."""
    p = posixpath.normpath("/" + path.lstrip("/"))
    lv = LocalVolumes(engine.root)
    table: list[tuple[str, str]] = [
        ("/etc/resolv.conf", os.path.join(c.dir, "resolv.conf")),
        ("/etc/hostname", os.path.join(c.dir, "hostname")),
        ("/etc/hosts", os.path.join(c.dir, "hosts")),
    ]
    for mp in c.host_config.get("_MountPoints") or []:
        if mp["Type"] == "volume":
            table.append((mp["Destination"], lv.data(mp["Name"])))
        elif mp["Type"] == "bind":
            table.append((mp["Destination"], mp["Source"]))
        else:
            table.append((mp["Destination"], ""))
    best: tuple[str, str] | None = None
    for dest, src in table:
        if (p == dest or p.startswith(dest.rstrip("/") + "/")) and (best is None or len(dest) > len(best[0])):
            best = (dest, src)
    if best is None:
        return rootfs, p.lstrip("/")
    dest, src = best
    if not src:
        raise KranError(f"copying to or from the tmpfs mount at {dest} is not supported")
    rel = p[len(dest):].lstrip("/")
    if not os.path.isdir(src):  # a bind-mounted file
        if rel:
            raise CopyNotFound(f"Could not find the file {path} in container {c.name}")
        return os.path.dirname(src), os.path.basename(src)
    return src, rel


def _check_writable(c: Container, path: str) -> None:
    """docker refuses to copy into a read-only volume or bind, or a read-only root filesystem."""
    p = posixpath.normpath("/" + path.lstrip("/"))
    best: dict[str, Any] | None = None
    for mp in c.host_config.get("_MountPoints") or []:
        d = mp["Destination"]
        if (p == d or p.startswith(d.rstrip("/") + "/")) and (best is None or len(d) > len(best["Destination"])):
            best = mp
    if best is not None:
        if not best.get("RW", True):
            raise InvalidArgument("mounted volume is marked read-only")
    elif c.host_config.get("ReadonlyRootfs"):
        raise InvalidArgument("container rootfs is marked read-only")


def _kind(st: os.stat_result | None) -> str:
    if st is None:
        return ""
    return "dir" if stat.S_ISDIR(st.st_mode) else "file"


def _stat_in(root: str, rel: str, follow: bool) -> os.stat_result | None:
    from kran.storage.rootpath import open_in_root, open_parent_in_root

    try:
        if follow:
            fd = open_in_root(root, rel, os.O_PATH)
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)
        pfd, leaf = open_parent_in_root(root, rel)
        try:
            return os.fstat(pfd) if not leaf else os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _split_src(path: str) -> tuple[str, bool]:
    """(path, contents_only): ``dir/.`` copies the directory's contents."""
    contents = path.endswith("/.") or path == "."
    return (path[:-2] or "/") if path.endswith("/.") else path, contents


def plan_dest(src_kind: str, src_base: str, contents: bool, dest: str, dest_kind: str,
              dest_parent_is_dir: bool) -> tuple[str, str, bool]:
    """Docker's ``cp`` rules (``docker cp --help``) -> (directory to unpack in, top name, contents only)."""
    if src_kind == "dir":
        if dest_kind == "file":
            raise InvalidArgument("cannot copy a directory to a file")
        if dest_kind == "dir":
            return (dest, "", True) if contents else (dest, src_base, False)
        if not dest_parent_is_dir:
            raise NotFound("no such directory")
        return posixpath.dirname(dest.rstrip("/")) or "/", posixpath.basename(dest.rstrip("/")), False
    if dest_kind == "dir":
        return dest, src_base, False
    if dest.endswith("/"):
        raise NotFound("no such directory")
    if not dest_kind and not dest_parent_is_dir:
        raise NotFound("no such directory")
    return posixpath.dirname(dest) or "/", posixpath.basename(dest), False


def _tar_from(root: str, rel: str, follow: bool, arcname: str, out: BinaryIO, keep_ids: bool, contents: bool) -> None:
    from kran.storage.rootpath import open_in_root, open_parent_in_root
    from kran.volume.copy import write_tar

    if follow:
        fd, leaf = open_in_root(root, rel), ""
    else:
        fd, leaf = open_parent_in_root(root, rel)
    try:
        write_tar(fd, leaf, arcname, out, keep_ids=keep_ids, contents_only=contents)
    finally:
        os.close(fd)


def copy_from_container(engine: Engine, ref: str, src: str, dest: str, *, follow: bool = False,
                        archive: bool = False, out: BinaryIO | None = None) -> None:
    """``cp CONTAINER:SRC DEST`` (``out``: write the tar there instead, for ``DEST`` = ``-``)."""
    from kran.volume.copy import apply_tar, spool

    src_path, contents = _split_src(src)
    with _container_fs(engine, ref) as (c, rootfs):
        root, rel = _locate(engine, c, rootfs, src_path)
        st = _stat_in(root, rel, follow)
        if st is None:
            raise CopyNotFound(f"Could not find the file {src} in container {ref}")
        if src_path.endswith("/") and _kind(st) != "dir" and not (follow or stat.S_ISLNK(st.st_mode)):
            raise InvalidArgument(f"{src_path}: not a directory")
        base = posixpath.basename(posixpath.normpath("/" + src_path.lstrip("/"))) or "/"
        if out is not None:
            _tar_from(root, rel, follow, base if base != "/" else ".", out, True, False)
            return
        dkind = _kind(_host_stat(dest))
        parent = os.path.dirname(os.path.abspath(dest.rstrip("/"))) or "/"
        ddir, name, only = plan_dest(_kind(st), base if base != "/" else "", contents, dest, dkind, os.path.isdir(parent))
        if name and dkind == "dir" and _kind(_host_stat(os.path.join(ddir, name))) == "dir" and _kind(st) != "dir":
            raise InvalidArgument(f"cannot overwrite directory {os.path.join(ddir, name)!r} with non-directory")
        if not name and not only:
            only = True
        with spool() as tmp:
            _tar_from(root, rel, follow, name, tmp, archive, only)
            tmp.seek(0)
            apply_tar(tmp, ddir)


def stat_path(engine: Engine, ref: str, path: str, *, follow: bool = False) -> dict[str, Any]:
    """docker's ``PathStat`` of a path inside a container (``HEAD /containers/{id}/archive``):
    name, size, Go's FileMode bits, mtime, and the link target."""
    from kran.engine.timefmt import rfc3339

    with _container_fs(engine, ref) as (c, rootfs):
        p = posixpath.normpath("/" + path.lstrip("/"))
        root, rel = _locate(engine, c, rootfs, p)
        st = _stat_in(root, rel, follow)
        if st is None:
            raise CopyNotFound(f"Could not find the file {path} in container {ref}")
        link = ""
        if stat.S_ISLNK(st.st_mode):
            from kran.storage.rootpath import open_parent_in_root

            pfd, leaf = open_parent_in_root(root, rel)
            try:
                link = os.readlink(leaf, dir_fd=pfd)
            finally:
                os.close(pfd)
    m = st.st_mode
    mode = stat.S_IMODE(m) & 0o777
    for flag, bit in ((stat.S_ISUID, 1 << 23), (stat.S_ISGID, 1 << 22), (stat.S_ISVTX, 1 << 20)):
        if m & flag:
            mode |= bit
    for test, bit in ((stat.S_ISDIR, 1 << 31), (stat.S_ISLNK, 1 << 27), (stat.S_ISFIFO, 1 << 25),
                      (stat.S_ISSOCK, 1 << 24), (stat.S_ISCHR, (1 << 26) | (1 << 21)), (stat.S_ISBLK, 1 << 26)):
        if test(m):
            mode |= bit
    return {"name": posixpath.basename(p) or "/", "size": st.st_size, "mode": mode,
            "mtime": rfc3339(st.st_mtime), "linkTarget": link}


def _host_stat(p: str) -> os.stat_result | None:
    try:
        return os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        return None


def copy_to_container(engine: Engine, ref: str, src: str | None, dest: str, *, follow: bool = False,
                      archive: bool = False, stream: BinaryIO | None = None) -> None:
    """``cp SRC CONTAINER:DEST`` (``stream``: a tar for ``SRC`` = ``-``, unpacked into the directory DEST)."""
    from kran.storage.rootpath import open_parent_in_root
    from kran.volume.copy import apply_tar, prefix_tar, spool, write_tar

    with _container_fs(engine, ref) as (c, rootfs):
        dpath = posixpath.normpath("/" + dest.lstrip("/"))
        _check_writable(c, dpath)
        root, rel = _locate(engine, c, rootfs, dpath)
        dst = _stat_in(root, rel, True)
        if stream is not None:
            if dst is None:
                raise CopyNotFound(f"Could not find the file {dest} in container {ref}")
            if _kind(dst) != "dir":
                raise InvalidArgument("extraction point is not a directory")
            with spool() as tmp:
                prefix_tar(stream, rel, tmp, keep_ids=True)
                tmp.seek(0)
                apply_tar(tmp, root)
            return
        assert src is not None
        src_path, contents = _split_src(src)
        hsrc = os.path.abspath(src_path)
        if follow:
            hsrc = os.path.realpath(hsrc)
        try:
            sst = os.lstat(hsrc)
        except FileNotFoundError:
            raise NotFound(f"lstat {hsrc}: no such file or directory") from None
        dparent_root, dparent_rel = _locate(engine, c, rootfs, posixpath.dirname(dpath))
        parent_st = _stat_in(dparent_root, dparent_rel, True)
        if dst is None and (parent_st is None or not stat.S_ISDIR(parent_st.st_mode)) and _kind(sst) != "dir":
            raise CopyNotFound(f"Could not find the file {posixpath.dirname(dpath)} in container {ref}")
        ddir, name, only = plan_dest(_kind(sst), os.path.basename(hsrc), contents, dest, _kind(dst),
                                     parent_st is not None and stat.S_ISDIR(parent_st.st_mode))
        droot, drel = _locate(engine, c, rootfs, ddir)
        if name and _kind(dst) == "dir" and _kind(sst) != "dir" and _kind(_stat_in(droot, posixpath.join(drel, name), False)) == "dir":
            raise InvalidArgument(f"cannot overwrite directory \"{posixpath.join(ddir, name)}\" with non-directory")
        arc = posixpath.join(drel, name) if name else drel
        pfd, leaf = open_parent_in_root("/", hsrc)
        try:
            with spool() as tmp:
                write_tar(pfd, leaf, arc, tmp, keep_ids=archive, contents_only=only or not name)
                tmp.seek(0)
                apply_tar(tmp, droot)
        finally:
            os.close(pfd)
