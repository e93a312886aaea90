"""Image use cases: list, inspect, history, tag, remove, prune, disk usage (import, load and save
are in :mod:`kran.engine.imagearchive`, re-exported here)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kran.errors import Conflict, ImageNotFound, InvalidArgument, InvalidReference, KranError
from kran.image import reference as refs

if TYPE_CHECKING:
    from kran.engine import Engine


from kran.engine.imagearchive import import_image, load, save  # noqa: E402,F401 - re-exported
from kran.engine.timefmt import rfc3339  # noqa: E402 - re-exported for callers


@dataclass
class ImageRow:
    """One line of ``kran images``: an image under one of its names."""

    id: str
    repository: str
    tag: str
    digest: str
    created: float
    size: int


def _split_tag(full: str) -> tuple[str, str]:
    r = refs.parse_normalized(full)
    return r.familiar_name(), r.tag or ""


def _parse_filters(filters: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in filters:
        k, sep, v = f.partition("=")
        if not sep:
            raise InvalidArgument("bad format of filter (expected name=value)")
        out.setdefault(k.strip().lower(), []).append(v.strip())
    return out


def _path_match(pattern: str, name: str) -> bool:
    """Go's path.Match: ``*`` and ``?`` never match ``/``."""
    import re

    rx = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            rx += "[^/]*"
        elif c == "?":
            rx += "[^/]"
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                return False
            body = pattern[i + 1 : j]
            rx += "[" + ("^" + body[1:] if body.startswith("^") else body).replace("\\", "\\\\") + "]"
            i = j
        else:
            rx += re.escape(c)
        i += 1
    return re.fullmatch(rx, name) is not None


def _matches_reference(pattern: str, full: str) -> bool:
    """Docker's reference.FamiliarMatch against one name of an image."""
    r = refs.parse_normalized(full)
    return _path_match(pattern, r.familiar()) or _path_match(pattern, r.familiar_name())


def list_images(engine: Engine, *, all: bool = False, filters: list[str] = (), repository: str | None = None) -> list[ImageRow]:  # type: ignore[assignment]
    from kran.image.store import ImageRecord  # noqa: F401

    flt = _parse_filters(list(filters))
    for k in flt:
        if k not in ("dangling", "reference", "label", "before", "since"):
            raise InvalidArgument(f"invalid filter '{k}'")
    if repository:
        flt.setdefault("reference", []).append(repository)
    ist = engine.images
    records = ist.all() if os.path.exists(os.path.join(engine.root, "kran.db")) else []
    before = since = None
    if "before" in flt:
        before = ist.get(ist.resolve(flt["before"][0])).created
    if "since" in flt:
        since = ist.get(ist.resolve(flt["since"][0])).created
    rows: list[ImageRow] = []
    from kran.engine.buildcache import intermediate_ids

    intermediate = intermediate_ids(engine)  # docker's intermediate images: only with -a, never dangling

    for rec in records:
        if not rec.tags and not rec.digests and rec.id in intermediate:
            if not all or "dangling" in flt:
                continue
        dangling = not rec.tags and rec.id not in intermediate
        if "dangling" in flt:
            want = flt["dangling"][-1].lower()
            if want not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"Invalid filter 'dangling={flt['dangling'][-1]}'")
            if (want in ("true", "1")) != dangling:
                continue
        tags = rec.tags
        if "reference" in flt:
            tags = tuple(t for t in rec.tags if any(_matches_reference(p, t) for p in flt["reference"]))
            if not tags:
                continue
        if "label" in flt:
            labels = (json.loads(ist.get(rec.id).config).get("config") or {}).get("Labels") or {}
            ok = True
            for lf in flt["label"]:
                k, sep, v = lf.partition("=")
                if k not in labels or (sep and labels[k] != v):
                    ok = False
            if not ok:
                continue
        if before is not None and rec.created >= before:
            continue
        if since is not None and rec.created <= since:
            continue
        names: list[tuple[str, str, str]] = []
        digests_by_repo: dict[str, str] = {}
        for d in rec.digests:
            r = refs.parse_normalized(d)
            digests_by_repo[r.familiar_name()] = r.digest or ""
        for t in tags:
            repo, tag = _split_tag(t)
            names.append((repo, tag, digests_by_repo.get(repo, "<none>")))
        if not names:
            if digests_by_repo:
                names = [(repo, "<none>", d) for repo, d in digests_by_repo.items()]
            else:
                names = [("<none>", "<none>", "<none>")]
        for repo, tag, dg in names:
            rows.append(ImageRow(id=rec.id, repository=repo, tag=tag, digest=dg, created=rec.created, size=rec.size))
    return rows


# -- inspect / history ----------------------------------------------------------------------------

_CONFIG_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "Tty",
                "OpenStdin", "StdinOnce", "Env", "Cmd", "Image", "Volumes", "WorkingDir", "Entrypoint",
                "OnBuild", "Labels")


def inspect(engine: Engine, name: str) -> dict[str, Any]:
    ist = engine.images
    rec = ist.get(ist.resolve(name))
    cfg = json.loads(rec.config)
    c = cfg.get("config") or {}
    config: dict[str, Any] = {
        "Hostname": "", "Domainname": "", "User": c.get("User", ""), "AttachStdin": False,
        "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
        "StdinOnce": False, "Env": c.get("Env"), "Cmd": c.get("Cmd"), "Image": "",
        "Volumes": c.get("Volumes"), "WorkingDir": c.get("WorkingDir", ""),
        "Entrypoint": c.get("Entrypoint"), "OnBuild": c.get("OnBuild"), "Labels": c.get("Labels"),
    }
    for k, v in c.items():
        if k not in config:
            config[k] = v
    layers = ist.layers(rec.id)
    diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
    paths = [engine.store.layers.path(ch) for ch, *_ in layers]
    graph: dict[str, Any] = {"Name": "overlay2", "Data": {}}
    if paths:
        graph["Data"] = {"MergedDir": "", "UpperDir": paths[-1], "WorkDir": ""}
        if len(paths) > 1:
            graph["Data"]["LowerDir"] = ":".join(reversed(paths[:-1]))
        graph["Data"] = {k: v for k, v in graph["Data"].items() if v}
    last_tag = ist.db.execute("SELECT MAX(added) FROM tags WHERE image_id=?", (rec.id,)).fetchone()[0]
    return {
        "Id": rec.id,
        "RepoTags": [refs.parse_normalized(t).familiar() for t in rec.tags],
        "RepoDigests": [refs.parse_normalized(d).familiar() for d in rec.digests],
        "Parent": cfg.get("parent", ""),
        "Comment": cfg.get("comment", ""),
        "Created": cfg.get("created", "") or rfc3339(rec.created),
        "DockerVersion": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""),
        "Config": config,
        "Architecture": cfg.get("architecture", ""),
        **({"Variant": cfg["variant"]} if cfg.get("variant") else {}),
        "Os": cfg.get("os", ""),
        "Size": rec.size,
        "GraphDriver": graph,
        "RootFS": {"Type": (cfg.get("rootfs") or {}).get("type", "layers"), "Layers": diff_ids},
        "Metadata": {"LastTagTime": rfc3339(last_tag) if last_tag else "0001-01-01T00:00:00Z"},
    }


@dataclass
class HistoryRow:
    id: str
    created: float
    created_by: str
    size: int
    comment: str


def history(engine: Engine, name: str) -> list[HistoryRow]:
    from kran.image.store import parse_created

    ist = engine.images
    rec = ist.get(ist.resolve(name))
    cfg = json.loads(rec.config)
    sizes = [engine.store.layers.size(ch) or 0 for ch, *_ in ist.layers(rec.id)]
    hist = cfg.get("history") or []
    if not hist:
        hist = [{"created": cfg.get("created", "")} for _ in sizes] or [{"created": cfg.get("created", ""), "empty_layer": True}]
    rows: list[HistoryRow] = []
    li = 0
    for h in hist:
        size = 0
        if not h.get("empty_layer") and li < len(sizes):
            size = sizes[li]
            li += 1
        ts = parse_created(h.get("created", ""))
        rows.append(HistoryRow(id="<missing>", created=ts, created_by=h.get("created_by", ""), size=size, comment=h.get("comment", "")))
    rows.reverse()
    rows[0].id = rec.id
    return rows


# -- tag / remove / prune -------------------------------------------------------------------------


def tag(engine: Engine, source: str, target: str) -> None:
    ist = engine.images
    iid = ist.resolve(source)
    r = refs.parse_normalized(target)
    if r.digest:
        raise InvalidArgument("refusing to create a tag with a digest reference")
    ist.tag(iid, str(r.tagged_or_latest()))


def _containers_using(engine: Engine, image_id: str) -> list[tuple[str, bool]]:
    """(container id, running) of containers created from the image (hook for the container store)."""
    hook = getattr(engine, "containers_using_image", None)
    return list(hook(image_id)) if hook else []


@dataclass
class RemoveReport:
    lines: list[str] = field(default_factory=list)  # "Untagged: x" / "Deleted: sha256:..."
    errors: list[KranError] = field(default_factory=list)


def remove(engine: Engine, names: list[str], *, force: bool = False, prune_children: bool = True) -> RemoveReport:
    """``docker rmi``: untag, and delete the image when its last name goes (Docker's rules)."""
    rep = RemoveReport()
    for n in names:
        try:
            _remove_one(engine, n, force, rep.lines)
        except KranError as e:
            rep.errors.append(e)
    return rep


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


def _remove_one(engine: Engine, name: str, force: bool, lines: list[str]) -> None:
    ist = engine.images
    iid = ist.resolve(name)
    by_ref: str | None = None
    try:
        r = refs.parse_normalized(name)
        full = str(r.tagged_or_latest()) if not r.digest else str(r)
        if ist.image_for_tag(full) == iid or r.digest:
            by_ref = full
    except InvalidReference:
        pass
    rec = ist.get(iid)
    users = _containers_using(engine, iid)
    if by_ref is not None and not by_ref.startswith(iid) and "@" not in by_ref:
        # docker: digest references of the same repository go with its last tag; other tags, or
        # digests of other repositories, keep the image
        repo = refs.parse_normalized(by_ref).name
        remaining = [t for t in rec.tags if t != by_ref]
        other_digests = [d for d in rec.digests if refs.parse_normalized(d).name != repo]
        if remaining or other_digests:
            ist.untag(by_ref)
            lines.append(f"Untagged: {refs.parse_normalized(by_ref).familiar()}")
            if not any(refs.parse_normalized(t).name == repo for t in remaining):
                # that was the repository's last tag: its digests go too (moby's ImageDelete),
                # or they would keep the image after its other tags are removed
                own = [d for d in rec.digests if refs.parse_normalized(d).name == repo]
                if own:
                    from kran.storage.db import transaction

                    with transaction(engine.store.db):
                        engine.store.db.executemany("DELETE FROM repo_digests WHERE name=? AND image_id=?",
                                                    [(d, iid) for d in own])
                    lines += [f"Untagged: {refs.parse_normalized(d).familiar()}" for d in own]
            return
        if users and not force:
            cid, _ = users[0]
            raise Conflict(
                f'conflict: unable to remove repository reference "{name}" (must force) - '
                f"container {cid[:12]} is using its referenced image {_short(iid)}"
            )
    else:
        if len({refs.parse_normalized(t).name for t in rec.tags}) > 1 and not force:
            raise Conflict(f"conflict: unable to delete {_short(iid)} (must be forced) - image is referenced in multiple repositories")
        running = [c for c, run in users if run]
        if running:
            raise Conflict(
                f"conflict: unable to delete {_short(iid)} (cannot be forced) - image is being used by running container {running[0][:12]}"
            )
        if users and not force:
            raise Conflict(
                f"conflict: unable to delete {_short(iid)} (must be forced) - image is being used by stopped container {users[0][0][:12]}"
            )
    if users and any(run for _, run in users):
        raise Conflict(
            f"conflict: unable to delete {_short(iid)} (cannot be forced) - image is being used by running container {users[0][0][:12]}"
        )
    if users:
        # forced, and a stopped container still uses it: its names go and the image stays as a
        # dangling <none> while the container's filesystem needs its layers (moby's containerd
        # image store does the same)
        names = [*rec.tags, *rec.digests]
        if not names:
            raise Conflict(f"conflict: unable to delete {_short(iid)} (cannot be forced) - "
                           f"image is being used by stopped container {users[0][0][:12]}")
        from kran.storage.db import transaction

        with transaction(engine.store.db):
            engine.store.db.execute("DELETE FROM tags WHERE image_id=?", (iid,))
            engine.store.db.execute("DELETE FROM repo_digests WHERE image_id=?", (iid,))
        lines += [f"Untagged: {refs.parse_normalized(t).familiar()}" for t in names]
        return
    for t in rec.tags:
        lines.append(f"Untagged: {refs.parse_normalized(t).familiar()}")
    for d in rec.digests:
        lines.append(f"Untagged: {refs.parse_normalized(d).familiar()}")
    lines.extend(_delete_images(engine, [iid]))


def _delete_images(engine: Engine, ids: list[str]) -> list[str]:
    store = engine.store
    ist = engine.images
    out = []
    with store.exclusive():
        for iid in ids:
            ist.delete(iid)
            out.append(f"Deleted: {iid}")
        for chain in store.layers.remove_unused():
            out.append(f"Deleted: {chain}")
        store.collect_orphans()
    return out


@dataclass
class PruneReport:
    lines: list[str] = field(default_factory=list)
    reclaimed: int = 0


def prune(engine: Engine, *, all: bool = False, filters: list[str] = ()) -> PruneReport:  # type: ignore[assignment]
    """``docker image prune``: dangling images (or, with ``all``, every image no container uses)."""
    ist = engine.images
    rep = PruneReport()
    if not os.path.exists(os.path.join(engine.root, "kran.db")):
        return rep
    before = _layer_bytes(engine)
    victims = []
    for rec in ist.all():
        if _containers_using(engine, rec.id):
            continue
        if rec.tags and not all:
            continue
        victims.append(rec)
    for rec in victims:
        for t in rec.tags:
            rep.lines.append(f"untagged: {refs.parse_normalized(t).familiar()}")
    if victims or True:
        lines = _delete_images(engine, [r.id for r in victims])
        rep.lines.extend(line.replace("Deleted: ", "deleted: ") for line in lines)
    rep.reclaimed = max(0, before - _layer_bytes(engine))
    return rep


def delete_unused(engine: Engine, ids: list[str]) -> tuple[list[str], int]:
    """Delete those of ``ids`` that exist, have no name and no container: (deleted IDs, bytes freed)."""
    victims = []
    for iid in ids:
        try:
            rec = engine.images.get(iid)
        except ImageNotFound:
            continue
        if not rec.tags and not rec.digests and not _containers_using(engine, iid):
            victims.append(iid)
    if not victims:
        return [], 0
    before = _layer_bytes(engine)
    _delete_images(engine, victims)
    return victims, max(0, before - _layer_bytes(engine))


def _layer_bytes(engine: Engine) -> int:
    row = engine.store.db.execute("SELECT COALESCE(SUM(size),0) FROM layers").fetchone()
    return int(row[0])


@dataclass
class DiskUsageRow:
    type: str
    total: int
    active: int
    size: int
    reclaimable: int


def disk_usage(engine: Engine) -> list[DiskUsageRow]:
    n = active = total = reclaim = 0
    if os.path.exists(os.path.join(engine.root, "kran.db")):
        db = engine.store.db
        n = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        total = _layer_bytes(engine)
        used_ids = [r.id for r in engine.images.all() if _containers_using(engine, r.id)]
        active = len(used_ids)
        if used_ids:
            q = ",".join("?" * len(used_ids))
            used = db.execute(
                f"SELECT COALESCE(SUM(size),0) FROM layers WHERE chain_id IN (SELECT chain_id FROM image_layers WHERE image_id IN ({q}))",
                used_ids,
            ).fetchone()[0]
        else:
            used = 0
        reclaim = total - used

    cs = []
    if os.path.exists(os.path.join(engine.root, "kran.db")):
        from kran.engine.containers import all_containers, size_rw

        cs = all_containers(engine)
    c_sizes = [(c, size_rw(c)) for c in cs]
    c_total = sum(sz for _, sz in c_sizes)
    c_reclaim = sum(sz for c, sz in c_sizes if not c.running)
    return [
        DiskUsageRow(type="Images", total=n, active=active, size=total, reclaimable=reclaim),
        DiskUsageRow(type="Containers", total=len(cs), active=sum(1 for c in cs if c.running), size=c_total,
                     reclaimable=c_reclaim),
        DiskUsageRow(type="Local Volumes", total=0, active=0, size=0, reclaimable=0),
        DiskUsageRow(type="Build Cache", total=0, active=0, size=0, reclaimable=0),
    ]


__all__ = ["ImageNotFound"]
