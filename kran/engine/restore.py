"""``kran restore`` and the read side of ``kran backup`` (``ls``, ``inspect``, ``prune``).

Restore, in order (each step undone if a later one fails, so nothing is half-restored)::

    read + verify manifest and config  ->  find the base image locally (by ID, else by diff IDs)
    -> check the name is free  ->  import the saved volumes (each must not exist yet)
    -> create the container from its saved Config/HostConfig/NetworkingConfig
    -> apply the chain of backup layers into its read-write layer (OCI whiteouts -> overlay,
       every layer hashed while applied)  ->  start (--start)

The base image is matched by image ID first and then by filesystem (the same diff IDs): the backup
layers only need the base's files, and `kran import` of the same tar on two hosts gives two IDs.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kran.engine.backupfmt import Backup, Layout, parse_oci
from kran.errors import Conflict, InvalidArgument, InvalidContent, KranError, NotFound

if TYPE_CHECKING:
    from kran.engine import Engine


def _local_base(engine: Engine, b: Backup) -> list[str]:
    ist = engine.images
    meta = b.meta
    try:
        ist.get(meta.image.id)
        return [meta.image.id]
    except NotFound:
        pass
    out = []
    for rec in ist.all():
        cfg = json.loads(ist.get(rec.id).config)
        if list((cfg.get("rootfs") or {}).get("diff_ids") or []) == meta.image.diff_ids:
            out.append(rec.id)
    return out


def _pull_base(engine: Engine, b: Backup) -> str:
    """Pull the base by one of its recorded repo digests (mirrors first, as every pull); the
    reference pulled, or "" when none could be."""
    from kran.engine.registry import pull

    errors = []
    for rd in b.meta.image.repo_digests:
        try:
            pull(engine, rd)
            return rd
        except KranError as e:
            errors.append(f"{rd}: {e}")
    if errors:
        raise NotFound(f"base image {b.meta.image.ref} ({b.meta.image.id}) of backup {b.name}:{b.tag} is not present "
                       f"and could not be pulled: {'; '.join(errors)}")
    return ""


def _base_image(engine: Engine, b: Backup) -> str:
    """The local image to create the container from (pulled by digest when missing): its
    reference when it still names the same image, else the repo digest pulled, else the ID."""
    meta = b.meta
    candidates = _local_base(engine, b)
    pulled = ""
    if not candidates:
        pulled = _pull_base(engine, b)
        candidates = _local_base(engine, b)
    if not candidates:
        raise NotFound(f"base image {meta.image.ref} ({meta.image.id}) of backup {b.name}:{b.tag} is not present: "
                       f"pull or load it first (kran pull {meta.image.ref})")
    try:
        if meta.image.ref and engine.images.resolve(meta.image.ref) in candidates:
            return meta.image.ref
    except KranError:
        pass
    return pulled or candidates[0]


def _check_name(engine: Engine, name: str) -> None:
    row = engine.store.db.execute("SELECT id FROM containers WHERE name=?", (name,)).fetchone()
    if row:
        raise Conflict(f'Conflict. The container name "/{name}" is already in use by container "{row[0]}". '
                       "You have to remove (or rename) that container to be able to reuse that name.")


def _check_blobs(layout: Layout, b: Backup) -> None:
    """Every blob of the chain is there before anything is made (a missing link fails early)."""
    for i, d in enumerate(b.layers):
        if not layout.has(d.digest):
            raise KranError(f"backup {b.name}:{b.tag}: chain is broken: layer {i + 1} of {len(b.layers)} "
                            f"({d.digest}) is missing")
    for v in b.meta.volumes:
        if not layout.has(v.blob.digest):
            raise KranError(f"backup {b.name}:{b.tag}: volume {v.name} blob {v.blob.digest} is missing")


def _apply_chain(layout: Layout, b: Backup, upper: str) -> None:
    """Stack the chain into the (empty) upper dir, then drop the whiteouts the original's upper did
    not have: a later layer's ``.wh.x`` for a file an earlier backup layer made becomes a whiteout
    char device that hides nothing below (overlayfs lists such a whiteout in a directory no lower
    layer has, and reading it fails), where the original simply had no ``x``."""
    import gzip
    import stat

    from kran.storage.layertar import apply_layer

    for i, d in enumerate(b.layers):
        r = layout.open_verified(d, f"layer {i + 1}")
        try:
            try:
                apply_layer(r, upper)  # type: ignore[arg-type]
            except InvalidContent:
                r.check()  # truncated or altered: name the blob and its digest, not what the tar parser met
                raise
            r.check()
        finally:
            r.close()
    if len(b.layers) < 2 or b.meta.index is None:
        return
    index = json.loads(gzip.decompress(layout.read_blob(b.meta.index, "file index")))
    for dirpath, dirnames, filenames in os.walk(upper):
        for n in filenames + dirnames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                rel = os.path.relpath(os.path.join(dirpath, ".wh." + n), upper)
                if rel not in index:
                    os.unlink(p)


def _restore_volumes(engine: Engine, layout: Layout, b: Backup, made: list[str]) -> None:
    from kran.engine import volumes as vmod

    for v in b.meta.volumes:
        try:
            vmod.get(engine, v.name)
        except NotFound:
            pass
        else:
            raise Conflict(f"volume {v.name} already exists: remove it to restore the backup's copy")
    for v in b.meta.volumes:
        r = layout.open_verified(v.blob, f"volume {v.name}")
        try:
            try:
                if vmod.import_(engine, v.name, r):  # type: ignore[arg-type]
                    made.append(v.name)
            except InvalidContent:
                r.check()  # as for layers: the blob's digest is the cause
                raise
            r.check()
        finally:
            r.close()


def restore(engine: Engine, source: str, *, name: str | None = None, start: bool = False, creds: Any = None) -> str:
    """Recreate the container of backup ``oci:DIR:NAME[:TAG]`` or ``REGISTRY/REPO/NAME[:TAG]``;
    returns its ID.  A registry backup is fetched whole (and verified) into a staging layout first."""
    from kran.engine import backupreg

    if backupreg.is_registry(source):
        with backupreg.staging(engine) as layout:
            bname, tag = backupreg.fetch(engine, layout, source, creds)
            return restore_from(engine, layout, bname, tag, name=name, start=start)
    path, bname, tag = parse_oci(source, with_ref=True)
    return restore_from(engine, Layout(path), bname, tag, name=name, start=start)


def restore_from(engine: Engine, layout: Layout, bname: str, tag: str, *, name: str | None, start: bool) -> str:
    from kran.engine import containers
    from kran.engine import volumes as vmod
    from kran.engine.create import create

    b = layout.load(bname, tag)
    _check_blobs(layout, b)
    image = _base_image(engine, b)
    new_name = name or b.meta.name
    _check_name(engine, new_name)
    saved = b.meta.container
    cfg = dict(saved.get("Config") or {})
    cfg["Image"] = image
    made: list[str] = []
    cid = ""
    with engine.store.writing():  # the staging dir in tmp/ is this restore's while it runs
        stage = engine.store.workdir("restore-")
        try:
            # the chain goes into a staging dir first (every layer verified before anything is
            # made), and becomes the container's upper dir by one rename: a restore killed at
            # any point leaves either no container or a whole one (tmp/ is swept by the next writer)
            staged = os.path.join(stage, "upper")
            os.mkdir(staged)
            _apply_chain(layout, b, staged)
            _restore_volumes(engine, layout, b, made)
            cid = create(engine, cfg, dict(saved.get("HostConfig") or {}), new_name, saved.get("NetworkingConfig"))
            c = containers.get(engine, cid)
            _swap_in(staged, os.path.join(c.dir, "upper"))
            if start:
                containers.start(engine, cid)
        except BaseException as e:
            errs = []
            if cid:
                try:
                    containers.remove(engine, cid, force=True)
                except KranError as e2:
                    errs.append(str(e2))
            for v in made:
                try:
                    vmod.remove(engine, v, force=True)
                except KranError as e2:
                    errs.append(str(e2))
            if errs and isinstance(e, KranError):
                raise KranError(f"{e} (and cleaning up failed: {'; '.join(errs)})") from e
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return cid


def _swap_in(staged: str, upper: str) -> None:
    """Make ``staged`` the container's (empty, new) upper dir.  Its root's mode and owner are the
    backup's (its layer's root entry) or, without one, a new directory's, as the upper dir's were."""
    os.rmdir(upper)
    os.rename(staged, upper)


# -- ls / inspect / prune -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupRow:
    name: str
    tag: str
    created: str
    size: int
    base: str
    digest: str


def list_backups(engine: Engine, dest: str, creds: Any = None) -> list[BackupRow]:
    from kran.engine import backupreg

    if backupreg.is_registry(dest):
        found = [b for _, b in backupreg.all_backups(dest, creds)]
    else:
        found = Layout(parse_oci(dest, with_ref=False)[0]).all()
    return [BackupRow(name=b.name, tag=b.tag, created=b.meta.created, size=b.size, base=b.meta.image.ref,
                      digest=b.manifest_digest) for b in found]


def inspect_backup(engine: Engine, source: str, creds: Any = None) -> dict[str, Any]:
    from kran.engine import backupreg

    where = ""
    if backupreg.is_registry(source):
        b, where = backupreg.find(source, creds)
    else:
        path, bname, tag = parse_oci(source, with_ref=True)
        b = Layout(path).load(bname, tag)
    meta = b.meta.to_json()
    return {
        "Name": b.name, **({"Repository": where} if where else {}), "Tags": b.tags, "Digest": b.manifest_digest, "Created": b.meta.created, "Size": b.size,
        "Incremental": b.meta.incremental, "Previous": b.meta.previous, "FrozenMs": b.meta.frozen_ms,
        "Image": meta["Image"], "Layers": [d.to_json() for d in b.layers], "Volumes": meta["Volumes"],
        "Index": meta["Index"], "Container": b.meta.container,
        "Architecture": b.config.get("architecture"), "Os": b.config.get("os"),
    }


def prune(engine: Engine, dest: str, keep: int, creds: Any = None) -> tuple[list[str], int]:
    """Keep the newest ``keep`` backups of each name; remove the others' tags and every blob no kept
    backup references.  Returns (removed "NAME:TAG"s, bytes freed).  A kept incremental backup's
    manifest lists its whole chain of layers, so keeping its blobs keeps the chain whole."""
    from kran.engine import backupreg

    if keep < 1:
        raise InvalidArgument(f"invalid --keep {keep}: must be at least 1")
    if backupreg.is_registry(dest):
        return backupreg.prune(dest, keep, creds)
    path, _, _ = parse_oci(dest, with_ref=False)
    layout = Layout(path)
    with layout.locked():
        backups = layout.all()
        kept: list[Backup] = []
        gone: list[str] = []
        count: dict[str, int] = {}
        for b in backups:  # newest first within each name
            count[b.name] = count.get(b.name, 0) + 1
            if count[b.name] <= keep:
                kept.append(b)
            else:
                gone += [f"{b.name}:{t}" for t in b.tags]
        keep_digests = {b.manifest_digest for b in kept}
        idx = layout.read_index()
        refs = layout.refs()
        idx["manifests"] = [m for m in idx.get("manifests") or []
                            if m.get("digest") in keep_digests or
                            (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") not in refs]
        used: set[str] = set()
        for m in idx["manifests"]:
            used.add(m.get("digest"))
        for b in kept:
            man = json.loads(layout.read_blob(layout.refs()[f"{b.name}:{b.tags[0]}"], "manifest"))
            used.add(man["config"]["digest"])
            used.update(d.digest for d in b.layers)
            used.update(v.blob.digest for v in b.meta.volumes)
            if b.meta.index:
                used.add(b.meta.index.digest)
        layout.write_index(idx)
        freed = 0
        for d in layout.blobs():
            if d not in used:
                p = layout.blob_path(d)
                freed += os.path.getsize(p)
                os.unlink(p)
    return sorted(gone), freed
