"""``kran backup``: a container's read-write layer (and optionally its named volumes) into an OCI
layout, never its image's layers.  The format is in :mod:`kran.engine.backupfmt` and docs/backup.md.

One backup, in order::

    freeze (runtime pause)  ->  write_layer(upper) to a raw tar  [-> volume tars]  ->  thaw
    parse the raw tar: file index (path -> type, size, mtime, mode, owner, xattrs, sha256)
    full:        the layer = the raw tar minus kran's init files
    incremental: the layer = entries that differ from the previous backup's index, plus
                 whiteouts for what is gone; no layer at all when nothing changed
    blobs (shared by digest), config, manifest  ->  index.json rewritten last

Only the raw copy happens while frozen, so the frozen time is the time to read the upper dir once.
The incremental layer is an ordinary OCI layer on top of the previous ones: stacking the image's
layers and the chain with OCI semantics gives the container's filesystem at backup time.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import posixpath
import tarfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kran.engine.backupfmt import (
    BACKUP_KEY,
    INDEX_MEDIA,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    VOLUME_MEDIA,
    BackupMeta,
    BaseImage,
    Desc,
    Layout,
    Volume,
)
from kran.errors import Conflict, InvalidArgument, KranError, NotFound

if TYPE_CHECKING:
    from kran.engine import Engine
    from kran.engine.record import Container

_OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupReport:
    """What one container's backup did (the CLI prints it with --verbose)."""

    name: str
    tag: str
    manifest: str
    frozen_ms: float | None  # None: not frozen (stopped, --no-pause, or cannot be frozen)
    layer_bytes: int  # bytes of the new layer (0 when nothing changed)
    new_bytes: int  # bytes this backup added to the directory (shared blobs cost nothing)
    incremental: bool
    warnings: list[str] = field(default_factory=list)

    def sent(self, n: int) -> BackupReport:
        """This report with ``new_bytes`` = what was uploaded (a registry destination)."""
        from dataclasses import replace

        return replace(self, new_bytes=n)


# -- the file index ------------------------------------------------------------------------------

Entry = list[Any]  # [type, size, mtime, mode, uid, gid, linkname, devmajor, devminor, xattrs sha256, sha256]


def _entry(m: tarfile.TarInfo, content_hash: str) -> Entry:
    xattrs = {k: v for k, v in sorted(m.pax_headers.items()) if k.startswith("SCHILY.xattr.")}
    xh = hashlib.sha256(json.dumps(xattrs).encode()).hexdigest()[:16] if xattrs else ""
    return [m.type.decode(), m.size, int(m.mtime), m.mode, m.uid, m.gid, m.linkname, m.devmajor, m.devminor, xh,
            content_hash]


def _name(m: tarfile.TarInfo) -> str:
    return m.name.lstrip("./").rstrip("/") if m.name not in ("./", ".") else ""


def _scan(raw: str) -> dict[str, Entry]:
    """The index of a full layer tar: every entry's metadata and content hash."""
    from kran.engine.commit import INIT_FILES

    out: dict[str, Entry] = {}
    with tarfile.open(raw, "r:") as t:
        for m in t:
            n = _name(m)
            if not n or (n in INIT_FILES and m.isfile() and m.size == 0):
                continue
            h = ""
            if m.isfile():
                f = t.extractfile(m)
                hh = hashlib.sha256()
                while chunk := f.read(1 << 20):  # type: ignore[union-attr]
                    hh.update(chunk)
                h = hh.hexdigest()
            out[n] = _entry(m, h)
    return out


def plan_incremental(prev: dict[str, Entry], cur: dict[str, Entry]) -> tuple[set[str], list[str]]:
    """Pure: which entries of ``cur`` go into the new layer, and which whiteouts (tar names).

    An entry goes in when it is new or any of its metadata or content differs; a hardlink when
    its target goes in (rewriting the target breaks the link); everything under a directory that
    became opaque or changed type (OCI hides the lower layers' contents there); the parent
    directories of all of these.  A path of ``prev`` that is gone gets a whiteout in its parent
    when the parent is still a directory (else the parent's own change hides it).
    """
    emit = {n for n, e in cur.items() if prev.get(n) != e}
    reset = {posixpath.dirname(n) for n in emit if posixpath.basename(n) == _OPAQUE}
    reset |= {n for n in emit if cur[n][0] == "5" and n in prev and prev[n][0] != "5"}
    if reset:
        emit |= {n for n in cur if any(n.startswith(d + "/") for d in reset if d) or "" in reset}
    emit |= {n for n, e in cur.items() if e[0] == "1" and e[6].rstrip("/") in emit}
    for n in list(emit):
        d = posixpath.dirname(n)
        while d and d not in emit and d in cur:
            emit.add(d)
            d = posixpath.dirname(d)
    whiteouts: list[str] = []
    for n in sorted(prev):
        base = posixpath.basename(n)
        if n in cur or base.startswith(".wh."):
            continue
        parent = posixpath.dirname(n)
        if parent and (parent not in cur or cur[parent][0] != "5"):
            continue
        wh = posixpath.join(parent, ".wh." + base)
        if wh not in cur:
            whiteouts.append(wh)
    return emit, whiteouts


def _write_layer(raw: str, out: str, emit: set[str] | None, whiteouts: list[str]) -> int:
    """Copy the raw tar's entries named in ``emit`` (all when None, init files left out) to ``out``,
    then the whiteouts; returns the number of entries written."""
    from kran.engine.commit import INIT_FILES

    n = 0
    with tarfile.open(raw, "r:") as src, tarfile.open(out, "w:", format=tarfile.PAX_FORMAT) as dst:
        for m in src:
            name = _name(m)
            if name in INIT_FILES and m.isfile() and m.size == 0:
                continue
            if emit is not None and name not in emit:
                continue
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
            n += 1
        for wh in whiteouts:
            ti = tarfile.TarInfo(wh)
            ti.mode = 0o600
            ti.mtime = 0
            dst.addfile(ti)
            n += 1
    return n


# -- capture --------------------------------------------------------------------------------------


def _can_freeze() -> str:
    """"" when the runtime can freeze containers here, else why not (rootless on cgroup v1)."""
    from kran import rootless

    if rootless.active() and not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "rootless containers cannot be frozen on cgroup v1"
    return ""


def _capture(engine: Engine, c: Container, work: str, pause: bool, vols: list[tuple[str, str]],
             warnings: list[str]) -> tuple[str, dict[str, str], float | None]:
    """The raw tar of the upper dir and of each named volume, taken while the container is frozen.
    The container is thawed in all cases, also when the capture fails."""
    from kran.engine import containers
    from kran.engine import volumes as vmod
    from kran.storage.layertar import write_layer

    froze = False
    if pause and c.status == "running":
        why = _can_freeze()
        if why:
            warnings.append(f"{c.name}: {why}: backed up without freezing (as --no-pause)")
        else:
            try:
                containers.pause(engine, c.id)
                froze = True
                # frozen from inside the runtime's pause to inside its resume: counted from pause's
                # return to resume's return (an upper bound by the resume process's start-up)
                t0 = time.monotonic()
            except KranError:
                if containers.get(engine, c.id).running:
                    raise
    raw = os.path.join(work, "raw.tar")
    vol_tars: dict[str, str] = {}
    try:
        with open(raw, "wb") as f:
            # not frozen (--no-pause, a runtime that cannot freeze): files may come and go meanwhile
            write_layer(os.path.join(c.dir, "upper"), f, live=not froze)
        for vname, _dest in vols:
            p = os.path.join(work, f"vol-{len(vol_tars)}.tar")
            with open(p, "wb") as f:
                vmod.export(engine, vname, f, live=not froze)
            vol_tars[vname] = p
    except OSError as e:
        raise KranError(f"error backing up container {c.name}: {os_error(e)}") from e
    finally:
        frozen = None
        if froze:
            containers.unpause(engine, c.id)
            frozen = (time.monotonic() - t0) * 1000
    return raw, vol_tars, frozen


def os_error(e: OSError) -> str:
    """An OS error in Docker's (Go's) words, "no space left on device", not Python's "[Errno 28] ..."."""
    msg = (e.strerror or str(e)).lower()
    return f"{e.filename}: {msg}" if e.filename else msg


def _named_volumes(engine: Engine, c: Container) -> list[tuple[str, str]]:
    from kran.engine import volumes as vmod

    out = []
    for mp in c.host_config.get("_MountPoints") or []:
        if mp.get("Type") == "volume" and mp.get("Name") and not vmod.get(engine, mp["Name"]).anonymous:
            out.append((mp["Name"], mp["Destination"]))
    return out


def saved_config(engine: Engine, c: Container) -> dict[str, Any]:
    """What `create` needs to make the container again: Config, HostConfig (public keys),
    NetworkingConfig (each network with its aliases and static addresses)."""
    from kran.engine.inspect import inspect

    info = inspect(engine, c.id)
    h = {k: v for k, v in c.host_config.items() if not k.startswith("_")}
    eps: dict[str, Any] = {}
    for net, ep in ((info.get("NetworkSettings") or {}).get("Networks") or {}).items():
        aliases = [a for a in ep.get("Aliases") or [] if a not in (c.id[:12], c.name)]
        e: dict[str, Any] = {}
        if aliases:
            e["Aliases"] = aliases
        if ep.get("IPAMConfig"):
            e["IPAMConfig"] = ep["IPAMConfig"]
        if ep.get("Links"):
            e["Links"] = ep["Links"]
        eps[net] = e
    cfg = dict(c.config)
    if cfg.get("Hostname") == c.id[:12]:
        cfg.pop("Hostname")  # the default: a restored container gets its own ID's
    return {"Config": cfg, "HostConfig": h, "NetworkingConfig": {"EndpointsConfig": eps}}


def _previous(layout: Layout, c: Container) -> tuple[Any, dict[str, Entry]] | None:
    """The container's latest backup in ``layout`` and its file index, or None (then a full one)."""
    try:
        prev = layout.load(c.name, "latest")
    except NotFound:
        return None
    if prev.meta.container_id != c.id or prev.meta.image.id != c.image_id or prev.meta.index is None:
        return None  # another container of that name, or a rebuilt one: start a new chain
    data = layout.read_blob(prev.meta.index, "file index")
    return prev, json.loads(gzip.decompress(data))


def backup_one(engine: Engine, layout: Layout, ref: str, *, pause: bool = True, incremental: bool = False,
               with_volumes: bool = False, now: float | None = None, taken: set[str] | None = None,
               where: str = "", tag: str | None = None) -> BackupReport:
    """Back up container ``ref`` into ``layout``.  A registry destination stages in a layout and
    passes the tags the repository has (``taken``, ``NAME:TAG``), its name (``where``, for
    messages) and an explicit ``tag`` when the destination named one."""
    from kran.engine import containers
    from kran.engine.timefmt import rfc3339

    c = containers.get(engine, ref)
    from kran.engine.lockdown import refuse_files_out

    refuse_files_out(c)  # --lockdown: a backup is a way out too
    if c.status == "restarting":
        raise Conflict(f"cannot back up container {c.name}: container is restarting")
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    img = json.loads(engine.images.get(c.image_id).config)
    warnings: list[str] = []
    vols = _named_volumes(engine, c) if with_volumes else []
    container = saved_config(engine, c)
    before = set(layout.blobs())
    with layout.locked(), layout.tempdir() as work:
        used = set(layout.refs()) | (taken or set())
        if tag is None:
            tag = next(t for t in (stamp if i == 0 else f"{stamp}.{i}" for i in range(len(used) + 1))
                       if f"{c.name}:{t}" not in used)  # two backups in one second keep both
        prev = _previous(layout, c) if incremental else None
        # a directory holds the whole chain: one with a missing link is not built on (the new backup could
        # never be restored).  A registry's staged record has no layers (they are in the registry).
        broken = [i + 1 for i, d in enumerate(prev[0].layers) if not layout.has(d.digest)] if prev and not where else []
        if broken:
            warnings.append(f"{c.name}: the chain of backup {c.name}:{prev[0].tag} is broken (layer {broken[0]} of "
                            f"{len(prev[0].layers)} is missing): a full backup")
            prev = None
        elif incremental and prev is None:
            warnings.append(f"{c.name}: no earlier backup of this container in {where or layout.path}: a full backup")
        raw, vol_tars, frozen = _capture(engine, c, work, pause, vols, warnings)
        cur = _scan(raw)
        layers: list[Desc] = list(prev[0].layers) if prev else []
        layer_path = os.path.join(work, "layer.tar")
        emit, whiteouts = plan_incremental(prev[1], cur) if prev else (None, [])
        layer_bytes = 0
        if prev is None or emit or whiteouts:
            _write_layer(raw, layer_path, emit, whiteouts)
            digest, layer_bytes = layout.put_file(layer_path)
            layers.append(Desc(media_type=OCI_LAYER, digest=digest, size=layer_bytes))
        index = layout.put_bytes(gzip.compress(json.dumps(cur, separators=(",", ":")).encode(), 6, mtime=0),
                                 INDEX_MEDIA)
        volumes = []
        for vname, dest in vols:
            digest, size = layout.put_file(vol_tars[vname])
            volumes.append(Volume(name=vname, destination=dest, media_type=VOLUME_MEDIA, digest=digest, size=size))
        meta = BackupMeta(
            name=c.name, container_id=c.id, created=rfc3339(now), container=container,
            image=BaseImage(ref=c.image_name, id=c.image_id, diff_ids=list((img.get("rootfs") or {}).get("diff_ids") or []),
                            repo_digests=list(engine.images.get(c.image_id).digests)),
            previous=prev[0].manifest_digest if prev else None, index=index, volumes=volumes,
            frozen_ms=frozen or 0.0, incremental=prev is not None,
        )
        cfg = {
            "created": rfc3339(now), "architecture": img.get("architecture") or "amd64", "os": img.get("os") or "linux",
            "config": {k: c.config[k] for k in ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels")
                       if c.config.get(k)},
            "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layers]},
            "history": [{"created": rfc3339(now), "created_by": f"kran backup {c.name}"} for _ in layers],
            BACKUP_KEY: meta.to_json(),
        }
        cdesc = layout.put_bytes(json.dumps(cfg, separators=(",", ":")).encode(), OCI_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc.to_json(),
                    "layers": [d.to_json() for d in layers],
                    "annotations": {"org.opencontainers.image.created": rfc3339(now),
                                    "org.opencontainers.image.base.name": c.image_name}}
        mdesc = layout.put_bytes(json.dumps(manifest, separators=(",", ":")).encode(), OCI_MANIFEST)
        layout.add(mdesc, [f"{c.name}:{tag}", f"{c.name}:latest"])
        new_bytes = sum(os.path.getsize(layout.blob_path(d)) for d in set(layout.blobs()) - before)
    return BackupReport(name=c.name, tag=tag, manifest=mdesc.digest, frozen_ms=frozen, layer_bytes=layer_bytes,
                        new_bytes=new_bytes, incremental=prev is not None, warnings=warnings)


def backup(engine: Engine, refs: list[str], dest: str, *, pause: bool = True, incremental: bool = False,
           with_volumes: bool = False, creds: Any = None) -> list[BackupReport]:
    """Back up each container of ``refs`` to ``dest``: ``oci:DIR`` (made when missing) or a
    registry repository prefix ``REGISTRY/REPO`` (kran.engine.backupreg)."""
    from kran.engine import backupreg, containers
    from kran.engine.backupfmt import parse_oci

    if not refs:
        raise InvalidArgument("no container to back up")
    if backupreg.is_registry(dest):
        return _to_registry(engine, refs, dest, pause=pause, incremental=incremental, with_volumes=with_volumes,
                            creds=creds)

    path, _, _ = parse_oci(dest, with_ref=False)
    for r in refs:
        containers.get(engine, r)  # a wrong name fails before anything is written
    layout = Layout(path, create=True)
    now = time.time()
    reports = []
    for r in refs:
        try:
            reports.append(backup_one(engine, layout, r, pause=pause, incremental=incremental,
                                      with_volumes=with_volumes, now=now))
        except OSError as e:  # writing a blob or index.json (a full disk): one line, in Docker's words
            raise KranError(f"error backing up container {r}: {os_error(e)}") from e
    return reports


def _to_registry(engine: Engine, refs: list[str], dest: str, *, pause: bool, incremental: bool, with_volumes: bool,
                 creds: Any) -> list[BackupReport]:
    """Each container staged in a layout (with its previous backup's record when incremental) and
    pushed to its repository under ``dest`` (kran.engine.backupreg)."""
    from kran.engine import backupreg, containers

    cs = [containers.get(engine, r) for r in refs]  # a wrong name fails before anything is sent
    tag = backupreg.explicit_tag(dest)
    now = time.time()
    reports = []
    for c, target in zip(cs, backupreg.targets(dest, [c.name for c in cs], creds), strict=True):
        with backupreg.staging(engine) as layout:
            if incremental:
                target.stage_previous(layout, c.name)
            try:
                rep = backup_one(engine, layout, c.id, pause=pause, incremental=incremental,
                                 with_volumes=with_volumes, now=now, taken={f"{c.name}:{t}" for t in target.tags},
                                 where=target.where, tag=tag)
            except OSError as e:  # the staging layout in the store (a full disk): one line, Docker's words
                raise KranError(f"error backing up container {c.name}: {os_error(e)}") from e
            sent, warnings = target.push(layout, c.name, rep.tag)
            target.remember(engine, layout, c.name, rep.tag)
        rep.warnings.extend(warnings)
        reports.append(rep.sent(sent))
    return reports
