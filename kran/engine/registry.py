"""Registry use cases: pull, push, login, logout.

Progress is reported as Docker's JSON-message stream does: a sequence of ``Progress(status, id)``
(``id`` a short layer ID, a tag, or "" for whole-image lines such as ``Digest: ...``), which
the front end prints as ``id: status`` lines.  Callbacks may come from download threads; they are
serialised here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kran.errors import ImageNotFound, InvalidArgument, InvalidContent
from kran.image import reference as refs

if TYPE_CHECKING:
    from kran.engine import Engine
    from kran.registry.client import Session

PARALLEL = 3


@dataclass(frozen=True, slots=True)
class Progress:
    status: str
    id: str = ""


ProgressFn = Callable[[Progress], None]


def _quiet(_: Progress) -> None:
    pass


def _serialised(fn: ProgressFn | None) -> ProgressFn:
    if fn is None:
        return _quiet
    lock = threading.Lock()

    def call(p: Progress) -> None:
        with lock:
            fn(p)

    return call


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _platform(platform: str | None) -> tuple[str, str, str]:
    from kran.image.archive import host_platform

    if not platform:
        os_name, arch = host_platform()
        return os_name, arch, ""
    parts = platform.split("/")
    if len(parts) == 1:
        return "linux", parts[0], ""
    return parts[0], parts[1], parts[2] if len(parts) > 2 else ""


# -- pull --------------------------------------------------------------------------------------


def pull(
    engine: Engine,
    name: str,
    *,
    all_tags: bool = False,
    platform: str | None = None,
    progress: ProgressFn | None = None,
    creds: Any = None,
) -> str:
    """``docker pull``: fetch ``name`` (tag or digest, ``:latest`` by default); returns the image ID.

    With ``all_tags``, every tag of the repository is pulled (the last one's ID is returned).
    ``creds`` (a registry ``Credentials``, the API's X-Registry-Auth) overrides stored ones.
    """
    from kran.registry.client import Session
    from kran.registry.config import RegistryConfig

    report = _serialised(progress)
    ref = refs.parse_normalized(name)
    if all_tags and (ref.tag or ref.digest):
        raise InvalidArgument("tag can't be used with --all-tags/-a")
    cfg = RegistryConfig.load()
    sessions = Session.connect(ref.domain, cfg, pull=True, creds=creds)
    if all_tags:
        tags = _denied_as_docker(ref, lambda: _first_ok(sessions, lambda s: s.list_tags(ref.path)))
        image_id = ""
        for t in sorted(tags):
            image_id = _pull_one(engine, sessions, ref.with_tag(t), platform, report)
        return image_id
    return _pull_one(engine, sessions, ref.tagged_or_latest(), platform, report)


def pull_if_missing(
    engine: Engine,
    name: str,
    *,
    policy: str = "missing",
    platform: str | None = None,
    on_missing: Callable[[str], None] | None = None,
    progress: ProgressFn | None = None,
) -> str:
    """``run``/``create --pull missing|always|never``: the image ID of ``name``, pulled if needed.

    ``on_missing(familiar name)`` is called before a pull caused by a missing image (Docker's
    ``Unable to find image 'x:latest' locally``).  A ``sha256:`` ID is never pulled.
    """
    if policy not in ("missing", "always", "never"):
        raise InvalidArgument(f'invalid pull option: \'{policy}\': must be one of "always", "missing" or "never"')
    if policy != "always":
        try:
            return engine.images.resolve(name)
        except ImageNotFound:
            if policy == "never" or name.startswith("sha256:"):
                raise
        if on_missing is not None:
            on_missing(refs.parse_normalized(name).tagged_or_latest().familiar())
    return pull(engine, name, platform=platform, progress=progress)


def _first_ok(sessions: list[Session], fn: Callable[[Session], Any]) -> Any:
    from kran.registry.errors import RegistryError, Unreachable

    for i, s in enumerate(sessions):
        try:
            return fn(s)
        except (RegistryError, Unreachable, OSError):
            if i == len(sessions) - 1:
                raise
    raise AssertionError("no sessions")


def _denied_as_docker(ref: refs.Reference, fn: Callable[[], Any]) -> Any:
    """Docker's wording for a repository we cannot read, and for a missing manifest."""
    from kran.registry.errors import ManifestUnknown, NameUnknown, Unauthorized

    try:
        return fn()
    except (Unauthorized, NameUnknown) as e:
        raise type(e)(
            f"pull access denied for {ref.familiar_name()}, repository does not exist or may require 'docker login': {e}",
            status=e.status, code=e.code,
        ) from e
    except ManifestUnknown as e:
        raise ManifestUnknown(f"manifest for {ref.familiar()} not found: {e}", status=e.status, code=e.code) from e


def _pull_one(engine: Engine, sessions: list[Session], ref: refs.Reference, platform: str | None, report: ProgressFn) -> str:
    from kran.image.store import LayerBlob
    from kran.registry.client import MANIFEST_ACCEPT, resolve_manifest

    want = ref.digest or ref.tag or "latest"
    session, manifest, media_type, digest = _denied_as_docker(
        ref, lambda: resolve_manifest(sessions, ref.path, want, _platform(platform))
    )
    # "Pulling from" only once the manifest is found, as dockerd: a missing repository, tag or
    # digest is then the request's own error status (404), not a line inside a 200 stream
    report(Progress(f"Pulling from {ref.path}", want))
    try:
        doc = json.loads(manifest)
        config_desc = doc["config"]
        layer_descs = doc["layers"]
        if doc.get("schemaVersion") != 2 or not isinstance(layer_descs, list):
            raise TypeError
        layers = [
            LayerBlob(digest=str(d["digest"]), media_type=str(d.get("mediaType", "")), size=int(d["size"]))
            for d in layer_descs
        ]
        config_digest, config_size = str(config_desc["digest"]), int(config_desc["size"])
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidContent(
            f"unsupported manifest for {ref.familiar()} ({media_type or 'no media type'}; expected one of {MANIFEST_ACCEPT})"
        ) from e
    for lb in layers:
        if "foreign" in lb.media_type or "nondistributable" in lb.media_type:
            raise InvalidContent(f"{ref.familiar()}: non-distributable layers are not supported ({lb.media_type})")
        refs.validate_digest(lb.digest)
    config = session.fetch_blob_bytes(ref.path, config_digest, config_size)
    store = engine.store
    tag = str(ref) if ref.tag else None
    with store.writing():
        blobs = store.blobs
        before = engine.images.image_for_tag(tag) if tag else None
        todo: list[LayerBlob] = []
        seen: set[str] = set()
        for lb in layers:
            if lb.digest in seen:
                continue
            seen.add(lb.digest)
            if blobs.has(lb.digest):
                report(Progress("Already exists", _short(lb.digest)))
            else:
                report(Progress("Pulling fs layer", _short(lb.digest)))
                todo.append(lb)
        if todo:
            _download(session, ref.path, todo, blobs, report)
        image_id, _moved = engine.images.add(
            config_bytes=config,
            layers=layers,
            manifest_bytes=manifest,
            tags=[tag] if tag else [],
            repo_digests=[f"{ref.name}@{digest}"],
        )
        for lb in todo:
            report(Progress("Pull complete", _short(lb.digest)))
    report(Progress(f"Digest: {digest}"))
    shown = ref.familiar()
    if before == image_id:
        report(Progress(f"Status: Image is up to date for {shown}"))
    else:
        report(Progress(f"Status: Downloaded newer image for {shown}"))
    return image_id


def _download(session: Session, repo: str, todo: list[Any], blobs: Any, report: ProgressFn) -> None:
    """Fetch layer blobs, PARALLEL at a time.  The first failure (or Ctrl-C) stops the others at
    their next chunk; their temp files are removed by ``BlobStore.ingest``."""
    from kran.registry.client import Aborted

    abort = threading.Event()

    def one(lb: Any) -> None:
        session.fetch_blob(repo, lb.digest, lb.size, blobs, abort)
        report(Progress("Verifying Checksum", _short(lb.digest)))
        report(Progress("Download complete", _short(lb.digest)))

    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(max_workers=min(PARALLEL, len(todo)), thread_name_prefix="pull")
    futures: list[Any] = []
    try:
        futures = [pool.submit(one, lb) for lb in todo]
        wait(futures, return_when=FIRST_EXCEPTION)
    except BaseException:  # Ctrl-C: stop every transfer now
        abort.set()
        raise
    finally:
        if any(f.done() and not f.cancelled() and f.exception() is not None for f in futures):
            abort.set()
        pool.shutdown(wait=True, cancel_futures=True)
    errors = [e for f in futures if not f.cancelled() and (e := f.exception()) is not None]
    real = [e for e in errors if not isinstance(e, Aborted)]
    if real or errors:
        raise (real or errors)[0]


# -- push --------------------------------------------------------------------------------------


def push(engine: Engine, name: str, *, all_tags: bool = False, progress: ProgressFn | None = None,
         creds: Any = None) -> str:
    """``docker push``: upload ``name`` (``:latest`` by default); returns the manifest digest (last tag's)."""
    from kran.registry.client import Session
    from kran.registry.config import RegistryConfig

    report = _serialised(progress)
    ref = refs.parse_normalized(name)
    if ref.digest:
        raise InvalidArgument("cannot push a digest reference")
    if all_tags:
        if ref.tag:
            raise InvalidArgument("tag can't be used with --all-tags/-a")
        prefix = ref.name + ":"
        tags = sorted(t for (t,) in engine.images.db.execute("SELECT name FROM tags WHERE name LIKE ?", (prefix + "%",)) if t.startswith(prefix) and "/" not in t[len(prefix):])
        if not tags:
            raise ImageNotFound(f"An image does not exist locally with the tag: {ref.familiar_name()}")
        targets = [refs.parse_normalized(t) for t in tags]
    else:
        ref = ref.tagged_or_latest()
        if engine.images.image_for_tag(str(ref)) is None:
            raise ImageNotFound(f"An image does not exist locally with the tag: {ref.familiar_name()}")
        targets = [ref]
    report(Progress(f"The push refers to repository [{ref.name}]"))
    session = Session.connect(ref.domain, RegistryConfig.load(), pull=False, creds=creds)[0]
    digest = ""
    for t in targets:
        digest = _push_one(engine, session, t, report)
    return digest


#: how many known sources a layer's mount is tried from before it is uploaded (Docker: 3)
MOUNT_ATTEMPTS = 3


def _mount_sources(engine: Engine, domain: str, repo: str, blobs: list[str]) -> dict[str, list[str]]:
    """For each blob, the repositories of ``domain`` other than ``repo`` that hold it as far as
    kran knows, best first: where kran last pushed it (kran.registry.blobsources), then where
    a local image with that layer (or that config) was pulled from or pushed to (its repo
    digests).  A local tag alone is no evidence: it may never have been pushed."""
    from kran.registry.blobsources import BlobSources

    record = BlobSources(engine.store.db)
    out: dict[str, list[str]] = {}
    for b in blobs:
        found = record.sources(domain, b, exclude=repo)
        rows = engine.store.db.execute(
            "SELECT rd.name FROM image_layers il JOIN repo_digests rd ON rd.image_id = il.image_id WHERE il.blob=?"
            " UNION SELECT name FROM repo_digests WHERE image_id=?",
            (b, b),
        )
        for (name,) in rows:
            try:
                other = refs.parse_normalized(name)
            except InvalidArgument:  # a stored name we cannot parse is no candidate
                continue
            if other.domain == domain and other.path != repo and other.path not in found:
                found.append(other.path)
        out[b] = found
    return out


def _mount(session: Session, repo: str, digest: str, sources: list[str], refused: set[str]) -> tuple[str, str | None, list[str]]:
    """Try a cross-repository mount of ``digest`` into ``repo`` from up to MOUNT_ATTEMPTS sources.

    Returns (the source it was mounted from or "", an open upload session's URL or None, the
    sources that answered 202 -- they no longer hold the blob).  The last 202's session is kept
    for the upload (spec: the registry "falls back to the standard upload behavior"); earlier
    ones are cancelled.  A source refused with an error (no pull access to it) joins
    ``refused``, shared by the layers of this push, so it is not asked again.
    """
    from kran.registry.errors import RegistryError

    tried = [s for s in sources if s not in refused][:MOUNT_ATTEMPTS]
    stale: list[str] = []
    for i, src in enumerate(tried):
        try:
            location = session.start_upload(repo, digest, mount_from=src)
        except RegistryError:
            refused.add(src)
            continue
        if location is None:
            return src, None, stale
        stale.append(src)
        if i == len(tried) - 1:
            return "", location, stale
        session.cancel_upload(repo, location)
    return "", None, stale


def _push_one(engine: Engine, session: Session, ref: refs.Reference, report: ProgressFn) -> str:
    from kran.registry.blobsources import BlobSources
    from kran.registry.client import OCI_MANIFEST

    store = engine.store
    with store.writing():  # keeps garbage collection away from the blobs being read
        image_id = engine.images.image_for_tag(str(ref))
        if image_id is None:
            raise ImageNotFound(f"An image does not exist locally with the tag: {ref.familiar_name()}")
        rec = engine.images.get(image_id)
        manifest = store.blobs.read(rec.manifest)
        doc = json.loads(manifest)
        media_type = doc.get("mediaType") or OCI_MANIFEST
        layers = [(str(d["digest"]), int(d["size"])) for d in doc.get("layers", [])]
        config = (str(doc["config"]["digest"]), int(doc["config"]["size"]))
        uniq = list(dict.fromkeys(layers))
        # read here, not in the upload threads: they share the store's one connection
        sources = _mount_sources(engine, ref.domain, ref.path, [d for d, _ in (*uniq, config)])
        refused: set[str] = set()
        for d, _ in uniq:
            report(Progress("Preparing", _short(d)))

        def one(item: tuple[str, int], show: bool = True) -> list[str]:
            """Push one blob (the config without progress lines, as Docker); returns stale sources."""
            d, size = item
            if session.blob_exists(ref.path, d):
                if show:
                    report(Progress("Layer already exists", _short(d)))
                return []
            mounted_from, location, stale = _mount(session, ref.path, d, sources.get(d, []), refused)
            if mounted_from:
                if show:
                    report(Progress(f"Mounted from {mounted_from}", _short(d)))
                return stale
            if location is None:
                location = session.start_upload(ref.path)
            assert location is not None
            if show:
                report(Progress("Pushing", _short(d)))
            with store.blobs.open(d) as f:
                session.upload(ref.path, location, d, size, f)
            if show:
                report(Progress("Pushed", _short(d)))
            return stale

        from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

        with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="push") as pool:
            futures = [pool.submit(one, item) for item in uniq]
            futures.append(pool.submit(one, config, False))
            wait(futures, return_when=FIRST_EXCEPTION)
            for f in futures:
                f.cancel()
        for f in futures:
            if not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
        digest = session.put_manifest(ref.path, ref.tag or "latest", manifest, media_type)
        record = BlobSources(store.db)
        # every blob of the image is in this repository now: the mount source of later pushes
        # (of this image, or of one built on it) to other repositories of the registry
        record.remember(ref.domain, ref.path, [d for d, _ in (*uniq, config)])
        record.forget(ref.domain, [(src, d) for (d, _), f in zip((*uniq, config), futures, strict=True)
                                   for src in f.result()])
        # like Docker, remember where the image now is (RepoDigests)
        from kran.image.store import LayerBlob

        engine.images.add(
            config_bytes=store.blobs.read(image_id),
            layers=[LayerBlob(digest=b, media_type=mt, size=sz) for _, b, mt, sz in engine.images.layers(image_id)],
            manifest_bytes=manifest,
            repo_digests=[f"{ref.name}@{digest}"],
        )
    report(Progress(f"{ref.tag}: digest: {digest} size: {len(manifest)}"))
    return digest


# -- login / logout ------------------------------------------------------------------------------


def _server_domain(server: str | None) -> str:
    from kran.registry.config import DOCKER_IO

    if not server:
        return DOCKER_IO
    s = server.split("://", 1)[-1].split("/", 1)[0]
    return DOCKER_IO if s in ("docker.io", "index.docker.io", "registry-1.docker.io") else s


def login(server: str | None, user: str, password: str) -> str:
    """Check the credentials against the registry's ``/v2/`` (Basic or token), then store them.

    Returns the key they were stored under.
    """
    from kran.registry import credentials
    from kran.registry.client import Session
    from kran.registry.config import RegistryConfig, auth_key
    from kran.registry.errors import Unauthorized

    if not user or not password:
        raise InvalidArgument("Username and password are required")
    domain = _server_domain(server)
    creds = credentials.Credentials(username=user, password=password)
    session = Session.connect(domain, RegistryConfig.load(), pull=False, creds=creds)[0]
    try:
        session.check_login()
    except Unauthorized as e:
        raise Unauthorized(f'Get "{session.endpoint.url}/v2/": {e}', status=e.status, code=e.code) from e
    key = auth_key(domain)
    credentials.store(key, creds)
    return key


def logout(server: str | None) -> tuple[str, bool]:
    """Forget the stored credentials; returns (server as shown, whether there were any)."""
    from kran.registry import credentials
    from kran.registry.config import auth_key

    domain = _server_domain(server)
    key = auth_key(domain)
    return key, credentials.remove(key)
