"""Image endpoints: list, inspect, history, tag, remove, pull/import, load, save, push, prune,
commit, build, and ``/system/df``.

Long operations (pull, push, save, build) run through :func:`kran.api.worker.stream_from_worker`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kran.api.http import Request, filter_args, route
from kran.api.http import registry_auth as _registry_auth
from kran.api.worker import _line, error_line, stream_from_worker
from kran.errors import InvalidArgument, KranError

# -- shared helpers ---------------------------------------------------------------------------------




def _progress_emitter(emit: Callable[[bytes], None]) -> Callable[[Any], None]:
    def show(p: Any) -> None:
        obj: dict[str, Any] = {"status": p.status}
        if p.id:
            if not p.status.startswith("Pulling from "):  # docker: a layer's line has progressDetail
                obj["progressDetail"] = {}
            obj["id"] = p.id
        emit(_line(obj))

    return show


# -- list / inspect / history -----------------------------------------------------------------------


def _labels(engine: Any, image_id: str) -> dict[str, str]:
    cfg = json.loads(engine.images.get(image_id).config)
    return (cfg.get("config") or {}).get("Labels") or {}


@route("GET", "/images/json")
def list_images(req: Request) -> None:
    from kran.engine import images

    flt = filter_args(req.qjson("filters"))
    if req.q("filter"):  # API < 1.41: a reference given on its own
        flt.append(f"reference={req.q('filter')}")
    rows = images.list_images(req.engine, all=req.qbool("all"), filters=flt)
    by_id: dict[str, dict[str, Any]] = {}
    for r in rows:
        item = by_id.get(r.id)
        if item is None:
            info = images.inspect(req.engine, r.id)
            item = by_id[r.id] = {
                "Id": r.id, "ParentId": info.get("Parent", ""), "RepoTags": [], "RepoDigests": info["RepoDigests"],
                "Created": int(r.created), "Size": r.size, "SharedSize": -1, "VirtualSize": r.size,
                "Labels": (info.get("Config") or {}).get("Labels") or {}, "Containers": -1,
            }
        if r.repository != "<none>" and r.tag not in ("<none>", ""):
            name = f"{r.repository}:{r.tag}"
            if name not in item["RepoTags"]:
                item["RepoTags"].append(name)
    req.send_json(list(by_id.values()))


@route("GET", "/images/{name:path}/json")
def inspect_image(req: Request) -> None:
    from kran.engine import images

    req.send_json(images.inspect(req.engine, req.params["name"]))


@route("GET", "/images/{name:path}/history")
def image_history(req: Request) -> None:
    from kran.engine import images

    rows = images.history(req.engine, req.params["name"])
    tags = images.inspect(req.engine, rows[0].id)["RepoTags"] if rows else []
    req.send_json([
        {"Id": r.id, "Created": int(r.created), "CreatedBy": r.created_by, "Tags": (tags or None) if i == 0 else None,
         "Size": r.size, "Comment": r.comment}
        for i, r in enumerate(rows)
    ])


# -- tag / remove / prune ---------------------------------------------------------------------------


def _repo_tag(repo: str, tag: str) -> str:
    if not tag:
        return repo
    return f"{repo}@{tag}" if tag.startswith("sha256:") else f"{repo}:{tag}"


@route("POST", "/images/{name:path}/tag")
def tag_image(req: Request) -> None:
    from kran.engine import images
    from kran.errors import InvalidReference
    from kran.image.reference import parse_normalized

    repo = req.q("repo") or ""
    target = _repo_tag(repo, req.q("tag") or "")
    try:
        parse_normalized(target)
    except InvalidReference as e:
        raise InvalidArgument(f'Error parsing reference: "{target}" is not a valid repository/tag: {e}') from e
    images.tag(req.engine, req.params["name"], target)
    req.send_empty(201)


def _deleted_items(lines: list[str]) -> list[dict[str, str]]:
    out = []
    for line in lines:
        kind, _, what = line.partition(": ")
        out.append({kind.capitalize(): what})
    return out


@route("DELETE", "/images/{name:path}")
def remove_image(req: Request) -> None:
    from kran.engine import images

    rep = images.remove(req.engine, [req.params["name"]], force=req.qbool("force"),
                        prune_children=not req.qbool("noprune"))
    if rep.errors:
        raise rep.errors[0]
    req.send_json(_deleted_items(rep.lines))


@route("POST", "/images/prune")
def prune_images(req: Request) -> None:
    from kran.engine import images

    flt = filter_args(req.qjson("filters"))
    all_ = False
    rest = []
    for f in flt:
        k, _, v = f.partition("=")
        if k == "dangling":
            all_ = v.lower() in ("false", "0")
        else:
            rest.append(f)
    rep = images.prune(req.engine, all=all_, filters=rest)
    req.send_json({"ImagesDeleted": _deleted_items(rep.lines) or None, "SpaceReclaimed": rep.reclaimed})


# -- pull / import ----------------------------------------------------------------------------------


@route("POST", "/images/create")
def create_image(req: Request) -> None:
    if req.q("fromSrc") is not None:
        _import(req)
        return
    name = req.q("fromImage") or ""
    if not name:
        raise InvalidArgument("either fromImage or fromSrc must be given")
    tag = req.q("tag") or ""
    from kran.image.reference import parse_normalized

    ref = parse_normalized(name)
    all_tags = not tag and ref.tag is None and ref.digest is None
    full = _repo_tag(name, tag) if tag and ref.tag is None and ref.digest is None else name
    platform = req.q("platform") or None
    creds = _registry_auth(req)

    def work(engine: Any, emit: Callable[[bytes], None]) -> None:
        from kran.engine import registry

        with _pull_errors_as_dockerd():
            registry.pull(engine, full, all_tags=all_tags, platform=platform, progress=_progress_emitter(emit),
                          creds=creds)

    stream_from_worker(req, work)


class _pull_errors_as_dockerd:
    """dockerd's statuses for a failed pull: "pull access denied" (the registry said unauthorized)
    is a 404 like an unknown repository; an unreachable registry is a 500 with the dial error."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: Any, e: BaseException | None, tb: Any) -> bool:
        from kran.errors import NotFound
        from kran.registry.errors import Unauthorized, Unreachable

        if isinstance(e, Unauthorized):
            raise NotFound(str(e)) from e
        if isinstance(e, Unreachable):
            raise KranError(str(e)) from e
        return False


def _import(req: Request) -> None:
    from kran.engine import images

    src = req.q("fromSrc") or "-"
    if src != "-":
        raise InvalidArgument("kran imports from the request body only (fromSrc=-)")
    repo = req.q("repo") or ""
    repository = _repo_tag(repo, req.q("tag") or "") if repo else None
    changes = req.query.get("changes", [])
    image_id = images.import_image(req.engine, req.body_file(), source="-", repository=repository,
                                   changes=[c for c in changes if c], message=req.q("message") or "",
                                   platform=req.q("platform") or "")
    req.send_stream(iter([_line({"status": image_id})]))


# -- load / save ------------------------------------------------------------------------------------


@route("POST", "/images/load")
def load_images(req: Request) -> None:
    from kran.engine import images
    from kran.image.reference import parse_normalized

    try:
        loaded = images.load(req.engine, req.body_file())
    except KranError as e:
        # dockerd answers 200 and puts a bad archive's error in the stream (docker-py raises
        # ImageLoadError from it, the CLI prints it and exits 1)
        if not req.drain():
            req._h.close_connection = True
        req.send_stream(iter([error_line(e)]))
        return
    out = []  # quiet only hides progress bars (kran shows none): the names are always reported
    for item in loaded:
        for tag, prev in item.moved:
            out.append(f"The image {parse_normalized(tag).familiar()} already exists, renaming the old one with ID {prev} to empty string\n")
        if item.tags:
            out += [f"Loaded image: {parse_normalized(t).familiar()}\n" for t in item.tags]
        else:
            out.append(f"Loaded image ID: {item.image_id}\n")
    req.send_stream(iter([_line({"stream": s}) for s in out]))


class _Emitter:
    """A write-only file object over ``emit`` (for the tar of ``save``), in chunks of 64 KiB."""

    def __init__(self, emit: Callable[[bytes], None]) -> None:
        self.emit = emit
        self.buf = bytearray()

    def write(self, b: bytes) -> int:
        self.buf += b
        if len(self.buf) >= 1 << 16:
            self.flush()
        return len(b)

    def flush(self) -> None:
        if self.buf:
            data, self.buf = bytes(self.buf), bytearray()
            self.emit(data)

    def writable(self) -> bool:
        return True


def _save(req: Request, names: list[str]) -> None:
    from kran.engine import images

    if not names:
        raise InvalidArgument("no images given to save (names=)")
    eng = req.engine
    for n in names:  # a missing image: a 404 before the tar starts
        try:
            eng.images.resolve(n)
        except KranError:
            from kran.image.reference import parse_normalized

            r = parse_normalized(n)
            if r.tag is not None or r.digest is not None or not eng.images.db.execute(
                    "SELECT 1 FROM tags WHERE name LIKE ?", (r.name + ":%",)).fetchone():
                raise

    # kran's own `since` (as `kran save --since`): a delta without BASE's layers; a missing BASE is a 404 here
    since = next((v for v in reversed(req.query.get("since", [])) if v), "")
    if since:
        eng.images.resolve(since)

    def work(engine: Any, emit: Callable[[bytes], None]) -> None:
        w = _Emitter(emit)
        images.save(engine, names, w, since=since)  # type: ignore[arg-type]
        w.flush()

    stream_from_worker(req, work, content_type="application/x-tar", on_error=lambda e: None)


@route("GET", "/images/get")
def save_images(req: Request) -> None:
    _save(req, [n for n in req.query.get("names", []) if n])


@route("GET", "/images/{name:path}/get")
def save_image(req: Request) -> None:
    _save(req, [req.params["name"]])


# -- push -------------------------------------------------------------------------------------------


@route("POST", "/images/{name:path}/push")
def push_image(req: Request) -> None:
    from kran.image.reference import parse_normalized

    name = req.params["name"]
    tag = req.q("tag") or ""
    ref = parse_normalized(name)
    has_tag = ref.tag is not None or ref.digest is not None
    full = _repo_tag(name, tag) if tag and not has_tag else name
    all_tags = not tag and not has_tag
    creds = _registry_auth(req)
    if not all_tags:
        r = parse_normalized(full).tagged_or_latest()
        if req.engine.images.image_for_tag(str(r)) is None:  # docker: 404 before the stream
            from kran.errors import ImageNotFound

            raise ImageNotFound(f"An image does not exist locally with the tag: {r.familiar_name()}")

    def work(engine: Any, emit: Callable[[bytes], None]) -> None:
        from kran.engine import registry

        show = _progress_emitter(emit)
        last: list[str] = []

        def progress(p: Any) -> None:
            show(p)
            if not p.id and ": digest: " in p.status:
                last[:] = [p.status]
                t, _, rest = p.status.partition(": digest: ")
                digest, _, size = rest.partition(" size: ")
                emit(_line({"progressDetail": {}, "aux": {"Tag": t, "Digest": digest,
                                                          "Size": int(size) if size.isdigit() else 0}}))

        registry.push(engine, full, all_tags=all_tags, progress=progress, creds=creds)

    stream_from_worker(req, work)


# -- commit -----------------------------------------------------------------------------------------


@route("POST", "/commit")
def commit_container(req: Request) -> None:
    from kran.engine.commit import commit

    container = req.q("container") or ""
    if not container:
        raise InvalidArgument("container is required")
    repo = req.q("repo") or ""
    repository = _repo_tag(repo, req.q("tag") or "") if repo else None
    changes = [c for c in req.query.get("changes", []) if c]
    req.body()  # a container config may be sent; kran takes the container's own
    image_id = commit(req.engine, container, repository=repository, changes=changes, message=req.q("comment") or "",
                      author=req.q("author") or "", pause=req.qbool("pause", True))
    req.send_json({"Id": image_id}, 201)


@route("GET", "/distribution/{name:path}/json")
def distribution_inspect(req: Request) -> None:
    from kran.engine import distribution

    with _pull_errors_as_dockerd():
        req.send_json(distribution.inspect(req.params["name"], creds=_registry_auth(req)))


# -- build ------------------------------------------------------------------------------------------


def _dockerfile_text(ctx: str, name: str) -> str:
    import os

    from kran.errors import NotFound

    path = os.path.normpath(os.path.join(ctx, name.lstrip("/")))
    if not (path + os.sep).startswith(ctx.rstrip(os.sep) + os.sep):
        raise InvalidArgument(f"the Dockerfile ({name}) must be within the build context")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise NotFound(f"Cannot locate specified Dockerfile: {name}") from None


def _json_map(req: Request, name: str) -> dict[str, Any]:
    v = req.qjson(name, {})
    if not isinstance(v, dict):
        raise InvalidArgument(f"invalid {name} parameter: expected a JSON object")
    return v


def _build_error(e: BaseException) -> bytes | None:
    """The stream's last message: docker's ``errorDetail`` carries a failed RUN's exit code."""
    from kran.build.builder import BuildFailed

    if isinstance(e, BuildFailed):
        return _line({"errorDetail": {"code": e.command_code, "message": str(e)}, "error": str(e)})
    return error_line(e)


def _json_list(req: Request, name: str) -> list[str]:
    """A JSON array of strings (``cachefrom``: both docker's CLI and docker-py send JSON)."""
    v = req.qjson(name, [])
    if not isinstance(v, list) or not all(isinstance(i, str) for i in v):
        raise InvalidArgument(f"invalid {name} parameter: expected a JSON array of strings")
    return v


def _comma_list(req: Request, name: str) -> list[str]:
    """``extrahosts``: comma-joined by docker's CLI, repeated by docker-py."""
    return [x for v in req.query.get(name, []) for x in v.split(",") if x]


@route("POST", "/build")
def build_image(req: Request) -> None:
    import shutil

    from kran.build.builder import BuildOptions
    from kran.build.context import drop_control_files
    from kran.engine.build import build, context_from_tar

    if req.q("remote"):
        raise InvalidArgument("remote build contexts (URLs, git) are not supported by kran yet")
    ctx = context_from_tar(req.engine, req.body_file())
    try:
        dockerfile = req.q("dockerfile") or "Dockerfile"
        text = _dockerfile_text(ctx, dockerfile)
        drop_control_files(ctx, dockerfile)
        net = req.q("networkmode") or ""
        opts = BuildOptions(
            context_dir=ctx, dockerfile=text, tags=[t for t in req.query.get("t", []) if t],
            build_args={k: (None if v is None else str(v)) for k, v in _json_map(req, "buildargs").items()},
            target=req.q("target") or "", no_cache=req.qbool("nocache"), pull=req.qbool("pull"),
            labels={k: str(v) for k, v in _json_map(req, "labels").items()},
            network="host" if net in ("", "default") else net, platform=req.q("platform") or "",
            extra_hosts=_comma_list(req, "extrahosts"), cache_from=_json_list(req, "cachefrom"),
            apply_dockerignore=False,  # the client sent the context already filtered
        )
        quiet = req.qbool("q")

        def work(engine: Any, emit: Callable[[bytes], None]) -> None:
            def out(s: str) -> None:
                if not quiet:
                    emit(_line({"stream": s}))

            def raw(b: bytes) -> None:
                out(b.decode(errors="replace"))

            def built(iid: str) -> None:
                emit(_line({"aux": {"ID": iid}}))

            iid = build(engine, opts, out, raw, built)
            if quiet:
                emit(_line({"stream": iid + "\n"}))

        stream_from_worker(req, work, on_error=_build_error)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)


@route("POST", "/build/prune")
def prune_build_cache(req: Request) -> None:
    """The classic builder's cache is its intermediate images (``all``, ``filters`` and
    ``keep-storage`` narrow nothing here: every entry goes)."""
    from kran.engine.build import prune_cache

    filter_args(req.qjson("filters"))  # a malformed filter is still a 400
    gone, space = prune_cache(req.engine)
    req.send_json({"CachesDeleted": gone or None, "SpaceReclaimed": space})


# -- disk usage -------------------------------------------------------------------------------------


@route("GET", "/system/df")
def disk_usage(req: Request) -> None:
    from kran.engine import images, volumes

    eng = req.engine
    rows = {r.type: r for r in images.disk_usage(eng)}
    imgs: dict[str, dict[str, Any]] = {}
    for r in images.list_images(eng, all=True):
        item = imgs.get(r.id)
        if item is None:
            info = images.inspect(eng, r.id)
            item = imgs[r.id] = {
                "Id": r.id, "ParentId": info.get("Parent", ""), "RepoTags": [], "RepoDigests": info["RepoDigests"],
                "Created": int(r.created), "Size": r.size, "SharedSize": -1, "VirtualSize": r.size,
                "Labels": (info.get("Config") or {}).get("Labels") or {},
                "Containers": len(eng.containers_using_image(r.id)),
            }
        if r.repository != "<none>" and r.tag not in ("<none>", ""):
            item["RepoTags"].append(f"{r.repository}:{r.tag}")
    vols = []
    for v in volumes.all_volumes(eng):
        j = v.to_json()
        j["UsageData"] = {"Size": -1, "RefCount": len(volumes.users(eng, v.name))}
        vols.append(j)
    req.send_json({"LayersSize": rows["Images"].size, "Images": list(imgs.values()), "Containers": [],
                   "Volumes": vols, "BuildCache": []})
