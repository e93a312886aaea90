"""Backups in a registry: the ``REGISTRY/REPO`` destinations of ``kran backup`` and ``kran restore``.

A registry backup is the same OCI image as in a directory (kran.engine.backupfmt): one manifest
per backup whose layers are only the container's backup layers, a config carrying the
``kran.backup`` record.  Container NAME's backups live in the repository ``REPO/NAME``, tagged
``YYYYMMDD-HHMMSS`` and ``latest``.  The record also names two blobs no image manifest lists
(the file index and the volume tars); a registry's garbage collection keeps only blobs that some
manifest lists, so each backup gets a second, untagged *data manifest* (config media type
:data:`DATA_CONFIG`, layers = those blobs, ``subject`` = the backup's manifest, the OCI 1.1
referrer form) that holds them.  Its bytes follow from the backup, so prune can delete it too.

Both directions go through a staging layout in the store's tmp dir, so the writing, verifying and
restoring code is the directory code:

    backup:  previous backup's manifest + config + file index (incremental only) -> staging
             -> backup_one (capture, layer, config, manifest in staging)
             -> push the blobs the repository lacks (the chain's earlier layers are there already)
             -> data manifest, then the tags (the time tag, then latest: a reader sees a backup
                whole or not at all)
    restore: manifest, config, index, volumes, layers -> staging (each verified on the way)
             -> the directory restore (the base image pulled by digest when the host lacks it)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kran.engine.backupfmt import INDEX_MEDIA, OCI_CONFIG, OCI_MANIFEST, Backup, Desc, Layout
from kran.errors import InvalidArgument, InvalidContent, KranError, NotFound

if TYPE_CHECKING:
    from kran.engine import Engine
    from kran.image.reference import Reference
    from kran.registry.client import Session

DATA_CONFIG = "application/vnd.kran.backup.data.v1+json"
_EMPTY = b"{}"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


def is_registry(location: str) -> bool:
    return not location.startswith("oci:")


def _parse(location: str, what: str) -> Reference:
    """``REGISTRY/REPO[:TAG]``; the registry host must be written out, so that a destination
    missing its ``oci:`` never goes to Docker Hub."""
    from kran.image import reference as refs

    first = location.split("/", 1)[0]
    if "/" not in location or not (any(c in first for c in ".:") or first == "localhost"):
        raise InvalidArgument(f"invalid backup {what} {location!r}: expected oci:DIR or REGISTRY/REPO (a registry "
                              "host first, e.g. localhost:5000/backups)")
    try:
        ref = refs.parse_normalized(location)
    except InvalidArgument as e:
        raise InvalidArgument(f"invalid backup {what} {location!r}: {e}") from None
    if ref.digest and what == "destination":
        raise InvalidArgument(f"invalid backup destination {location!r}: a digest cannot be written to")
    return ref


def repo_for(prefix: str, name: str) -> str:
    """The repository of container ``name``'s backups under ``prefix``: registry repository names
    are lower case, container names need not be."""
    comp = name.lower()
    if not _COMPONENT.match(comp):
        raise InvalidArgument(f"container name {name!r} cannot be a registry repository name: rename it or "
                              "back it up to a directory")
    return f"{prefix}/{comp}"


def _session(domain: str, *, pull: bool, creds: Any = None) -> list[Session]:
    from kran.registry.client import Session
    from kran.registry.config import RegistryConfig

    return Session.connect(domain, RegistryConfig.load(), pull=pull, creds=creds)


@contextmanager
def staging(engine: Engine) -> Iterator[Layout]:
    """A layout in the store's tmp dir, under the store's writing lock: a writer that starts
    meanwhile (this restore's own pull of the base, too) collects tmp/ only when no one holds it."""
    with engine.store.writing():
        d = engine.store.workdir("backup-")
        try:
            yield Layout(d, create=True)
        finally:
            shutil.rmtree(d, ignore_errors=True)


def data_manifest(b: Backup) -> bytes | None:
    """The untagged manifest that keeps the file index and volume blobs from garbage collection
    (None when the backup has neither).  Deterministic: prune recomputes its digest."""
    blobs = ([b.meta.index] if b.meta.index else []) + [v.blob for v in b.meta.volumes]
    if not blobs:
        return None
    doc = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": DATA_CONFIG,
        "config": {"mediaType": DATA_CONFIG, "digest": "sha256:" + hashlib.sha256(_EMPTY).hexdigest(),
                   "size": len(_EMPTY)},
        "layers": [d.to_json() for d in blobs],
        "subject": {"mediaType": OCI_MANIFEST, "digest": b.manifest_digest, "size": b.manifest_size},
        "annotations": {"io.kran.backup.data": b.name},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


# -- fetching a backup into a layout -----------------------------------------------------------------


def _fetch_small(s: Session, repo: str, layout: Layout, d: Desc, what: str) -> None:
    from kran.registry.errors import RegistryDigestMismatch

    try:
        layout.put_bytes(s.fetch_blob_bytes(repo, d.digest, d.size), d.media_type)
    except RegistryDigestMismatch as e:
        raise InvalidContent(f"backup is corrupt: {what} blob {d.digest} does not match its digest") from e


def _fetch_file(s: Session, repo: str, layout: Layout, d: Desc, work: str) -> None:
    """A layer or volume blob streamed to the layout (digest and size checked: put_file keeps it
    under the digest it hashed, and a mismatch is refused before anything is named after it)."""
    if layout.has(d.digest):
        return
    tmp = os.path.join(work, d.digest.split(":", 1)[1])
    h = hashlib.sha256()
    n = 0
    with s.open_blob(repo, d.digest) as r, open(tmp, "wb") as f:
        while chunk := r.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
            f.write(chunk)
    if "sha256:" + h.hexdigest() != d.digest or n != d.size:
        os.unlink(tmp)
        raise InvalidContent(f"backup is corrupt: blob {d.digest} from the registry does not match its digest")
    layout.put_file(tmp, d.digest)


def _load_remote(s: Session, repo: str, tag: str, layout: Layout, name: str, *, blobs: bool) -> Backup:
    """Put the backup ``repo:tag`` into ``layout`` tagged ``name:tag``: manifest, config, file
    index, and with ``blobs`` its layers and volumes too."""
    data, mt, digest = s.get_manifest(repo, tag)
    if mt != OCI_MANIFEST:
        raise InvalidContent(f"{s.domain}/{repo}:{tag} is not a kran backup (a {mt or 'manifest'} of another kind)")
    mdesc = layout.put_bytes(data, OCI_MANIFEST)
    try:
        man = json.loads(data)
        _fetch_small(s, repo, layout, Desc.from_json(man["config"]), "config")
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidContent(f"{s.domain}/{repo}:{tag} is not a kran backup: {e}") from e
    with layout.locked():
        layout.add(mdesc, [f"{name}:{tag}"])
    b = layout.load(name, tag)
    if b.meta.index is not None:
        _fetch_small(s, repo, layout, b.meta.index, "file index")
    if blobs:
        with layout.tempdir() as work:
            for d in [*b.layers, *(v.blob for v in b.meta.volumes)]:
                _fetch_file(s, repo, layout, d, work)
    return b


def fetch(engine: Engine, layout: Layout, source: str, creds: Any = None) -> tuple[str, str]:
    """Fetch the backup ``REGISTRY/REPO/NAME[:TAG]`` whole into ``layout``; (name, tag) in it."""
    from kran.engine.registry import _denied_as_docker

    ref = _parse(source, "source")
    tag = ref.digest or ref.tag or "latest"
    name = ref.path.rsplit("/", 1)[-1]
    sessions = _session(ref.domain, pull=True, creds=creds)
    last: Exception | None = None
    for s in sessions:  # mirrors first, as pull does
        try:
            _denied_as_docker(ref, lambda s=s: _load_remote(s, ref.path, tag, layout, name, blobs=True))
            return name, tag
        except KranError as e:
            last = e
            if s is sessions[-1]:
                raise
    raise last or NotFound(f"backup {source} not found")


def find(source: str, creds: Any = None) -> tuple[Backup, str]:
    """The backup at ``REGISTRY/REPO/NAME[:TAG]`` (manifest, config, record; no layers), and the
    repository it is in."""
    ref = _parse(source, "source")
    tag = ref.digest or ref.tag or "latest"
    from kran.engine.registry import _denied_as_docker

    s = _session(ref.domain, pull=True, creds=creds)[0]
    with _tmp_layout() as layout:
        b = _denied_as_docker(ref, lambda: _load_remote(s, ref.path, tag, layout, ref.path.rsplit("/", 1)[-1],
                                                        blobs=False))
        return b, ref.name


@contextmanager
def _tmp_layout() -> Iterator[Layout]:
    d = tempfile.mkdtemp(prefix="kran-backup-")
    try:
        yield Layout(d, create=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- backup ----------------------------------------------------------------------------------------------


def _push_blob(s: Session, repo: str, layout: Layout, d: Desc) -> bool:
    """Upload ``d`` to ``repo`` unless it is there; True when bytes were sent."""
    if s.blob_exists(repo, d.digest):
        return False
    if not layout.has(d.digest):
        raise KranError(f"backup chain is broken: layer {d.digest} of the previous backup is not in {s.domain}/{repo}")
    location = s.start_upload(repo)
    assert location is not None
    with open(layout.blob_path(d.digest), "rb") as f:
        s.upload(repo, location, d.digest, d.size, f)
    return True


class Target:
    """Where one container's backups go: a session and a repository, and the tags it has."""

    def __init__(self, s: Session, repo: str) -> None:
        self.s, self.repo = s, repo
        try:
            self.tags = set(s.list_tags(repo))
        except NotFound:
            self.tags = set()

    @property
    def where(self) -> str:
        return f"{self.s.domain}/{self.repo}"

    def stage_previous(self, layout: Layout, name: str) -> None:
        """The repository's latest backup (no layers) into ``layout`` as ``name:latest``, the base
        of an incremental backup."""
        if "latest" in self.tags:
            _load_remote(self.s, self.repo, "latest", layout, name, blobs=False)

    def push(self, layout: Layout, name: str, tag: str) -> tuple[int, list[str]]:
        """Upload staged backup ``name:tag``: the blobs the repository lacks, its data manifest,
        then the tags.  Returns (bytes sent, warnings)."""
        s, repo = self.s, self.repo
        b = layout.load(name, tag)
        sent = sum(d.size for d in b.all_blobs() if _push_blob(s, repo, layout, d))
        warnings = []
        if not any(r.startswith(s.domain + "/") for r in b.meta.image.repo_digests):
            warnings.append(f"{name}: its image {b.meta.image.ref} was never pulled from or pushed to {s.domain}: "
                            "a host without it must load it before restoring")
        manifest = layout.read_blob(Desc(media_type=OCI_MANIFEST, digest=b.manifest_digest, size=b.manifest_size),
                                    "manifest")
        s.put_manifest(repo, b.manifest_digest, manifest, OCI_MANIFEST)
        extra = data_manifest(b)
        if extra is not None:
            cfg = layout.put_bytes(_EMPTY, DATA_CONFIG)
            _push_blob(s, repo, layout, cfg)
            s.put_manifest(repo, "sha256:" + hashlib.sha256(extra).hexdigest(), extra, OCI_MANIFEST)
        for t in (tag, "latest"):
            s.put_manifest(repo, t, manifest, OCI_MANIFEST)
        self.tags |= {tag, "latest"}
        return sent, warnings

    def remember(self, engine: Engine, layout: Layout, name: str, tag: str) -> None:
        """Record where the backup's layers now are (mount sources for later pushes)."""
        from kran.registry.blobsources import BlobSources

        b = layout.load(name, tag)
        BlobSources(engine.store.db).remember(self.s.domain, self.repo, [d.digest for d in b.layers])


def targets(location: str, names: list[str], creds: Any = None) -> list[Target]:
    """One target per container name for the destination ``REGISTRY/REPO[:TAG]``."""
    ref = _parse(location, "destination")
    if ref.tag and len(names) > 1:
        raise InvalidArgument(f"invalid backup destination {location!r}: a tag names one backup, and {len(names)} "
                              "containers were given (give a repository prefix)")
    repos = [ref.path if ref.tag else repo_for(ref.path, n) for n in names]
    s = _session(ref.domain, pull=False, creds=creds)[0]
    return [Target(s, r) for r in repos]


def explicit_tag(location: str) -> str | None:
    return _parse(location, "destination").tag


# -- ls / inspect / prune -------------------------------------------------------------------------------


def _repos(s: Session, prefix: str) -> list[str]:
    """The repositories directly under ``prefix`` (the registry's catalog), and ``prefix`` itself."""
    out: list[str] = []
    path = "/v2/_catalog?n=1000"
    while path:
        with s.request("GET", path, scopes=("registry:catalog:*",)) as r:
            body = r.read_limited(16 << 20)
            if r.status != 200:
                from kran.registry.errors import from_response

                raise from_response(r.status, body, "catalog")
            link = r.header("Link")
        out += [x for x in json.loads(body).get("repositories") or []
                if x == prefix or (x.startswith(prefix + "/") and "/" not in x[len(prefix) + 1:])]
        path = link[link.index("<") + 1 : link.index(">")] if link.startswith("<") else ""
    return sorted(out)


def all_backups(location: str, creds: Any = None) -> list[tuple[str, Backup]]:
    """Every backup under ``REGISTRY/REPO`` as (repository, backup), newest first per name.  Tags
    that are not kran backups (other images in the same repositories) are left out."""
    ref = _parse(location, "location")
    s = _session(ref.domain, pull=True, creds=creds)[0]
    out: list[tuple[str, Backup]] = []
    with _tmp_layout() as layout:
        for repo in _repos(s, ref.path):
            name = repo.rsplit("/", 1)[-1]
            by: dict[str, Backup] = {}
            for t in sorted(s.list_tags(repo)):
                try:
                    b = _load_remote(s, repo, t, layout, name, blobs=False)
                except (InvalidContent, NotFound):
                    continue
                by[b.manifest_digest] = b
            # the layout's load gathered every tag of each manifest loaded so far
            found = [layout.load(name, b.tag) for b in by.values()]
            found.sort(key=lambda b: b.meta.created, reverse=True)
            out += [(repo, b) for b in found]
    return out


def prune(location: str, keep: int, creds: Any = None) -> tuple[list[str], int]:
    """Keep the newest ``keep`` backups of each repository under ``REGISTRY/REPO``: delete the
    other manifests (their tags go with them) and their data manifests.  Returns the removed
    ``NAME:TAG`` names and the bytes of the blobs no kept backup lists, which the registry's
    garbage collection frees."""
    ref = _parse(location, "location")
    s = _session(ref.domain, pull=False, creds=creds)[0]
    gone: list[str] = []
    freed = 0
    by_repo: dict[str, list[Backup]] = {}
    for repo, b in all_backups(location, creds):
        by_repo.setdefault(repo, []).append(b)
    for repo, bs in by_repo.items():
        kept, old = bs[:keep], bs[keep:]
        used = {d.digest for b in kept for d in b.all_blobs()}
        for b in old:
            for digest in (b.manifest_digest, *(["sha256:" + hashlib.sha256(x).hexdigest()]
                                                  if (x := data_manifest(b)) else [])):
                _delete_manifest(s, repo, digest)
            gone += [f"{b.name}:{t}" for t in b.tags]
            for d in b.all_blobs():
                if d.digest not in used:
                    used.add(d.digest)
                    freed += d.size
    return sorted(gone), freed


def _delete_manifest(s: Session, repo: str, digest: str) -> None:
    from kran.registry.errors import from_response

    with s.request("DELETE", f"/v2/{repo}/manifests/{digest}", scopes=(f"repository:{repo}:*",)) as r:
        body = r.read_limited(1 << 16)
        if r.status in (202, 200, 404):
            return
        if r.status == 405:
            raise KranError(f"registry {s.domain} does not allow deleting manifests (its storage.delete.enabled "
                            "setting): nothing was pruned there")
        raise from_response(r.status, body, f"manifest {repo}@{digest}")


__all__ = ["INDEX_MEDIA", "OCI_CONFIG", "all_backups", "fetch", "find", "is_registry", "prune", "repo_for",
           "targets"]
