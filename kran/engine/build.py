"""``kran build``: the engine side of the builder (kran.build.builder), i.e. its :class:`Backend`.

The builder decides what to do; this module does it with the engine's own use cases: images come
from the store (pulled when missing), RUN runs in a real container whose upper dir becomes a layer
(``kran.engine.commit.new_image``), and stage root filesystems are read-only overlay mounts.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from kran.build.builder import Backend, Builder, BuildOptions, Cache, RunResult
from kran.engine import Engine
from kran.engine.buildcache import intermediate_ids  # noqa: F401 - part of this module's API
from kran.errors import ImageNotFound, KranError, NotFound


class EngineBackend(Backend):
    def __init__(self, engine: Engine, *, quiet_pull: bool = True, progress: Callable[[str], None] | None = None,
                 extra_hosts: list[str] | None = None) -> None:
        self.engine = engine
        self.progress = progress
        self.extra_hosts = list(extra_hosts or [])

    def resolve_image(self, name: str, *, pull: bool, platform: str) -> str:
        from kran.engine.registry import pull_if_missing

        def missing(familiar: str) -> None:
            if self.progress:
                self.progress(f"Unable to find image '{familiar}' locally\n")

        return pull_if_missing(self.engine, name, policy="always" if pull else "missing",
                               platform=platform or None, on_missing=missing)

    def image_config(self, image_id: str) -> dict[str, Any]:
        cfg = json.loads(self.engine.images.get(image_id).config)
        assert isinstance(cfg, dict)
        return cfg

    def image_exists(self, image_id: str) -> bool:
        try:
            self.engine.images.get(image_id)
        except ImageNotFound:
            return False
        return True

    def find_image(self, name: str) -> str | None:
        try:
            return self.engine.images.resolve(name)
        except (ImageNotFound, KranError):
            return None

    def new_image(self, base: str | None, layer_dir: str | None, *, config: dict[str, Any],
                  history: dict[str, Any]) -> str:
        from kran.engine.commit import new_image

        return new_image(self.engine, base, layer_dir, config=config, history=history)

    def run(self, image_id: str | None, *, argv: list[str], env: list[str], workdir: str, user: str,
            network: str, config: dict[str, Any], history: dict[str, Any],
            on_start: Callable[[str], None], output: Callable[[bytes], None]) -> RunResult:
        from kran.engine import containers
        from kran.errors import InvalidArgument
        from kran.monitor.client import read_logs

        if image_id is None:
            raise InvalidArgument("no such file or directory: a RUN in a stage FROM scratch has no shell")
        ccfg = {"Image": image_id, "Cmd": argv, "Entrypoint": [], "Env": env, "WorkingDir": workdir, "User": user,
                "Labels": {"io.kran.build": "intermediate"}}
        hc: dict[str, Any] = {"NetworkMode": network or "host"}
        if self.extra_hosts:
            hc["ExtraHosts"] = self.extra_hosts
        cid = containers.create(self.engine, config=ccfg, host_config=hc)
        try:
            on_start(cid)
            c = containers.start(self.engine, cid)
            log = os.path.join(c.dir, f"{cid}-json.log")
            for stream, data, _t in read_logs(log, follow=True, container_dir=c.dir):
                # docker's classic builder shows a RUN's stderr in red (ANSI SGR 91 ... 0)
                output(b"\x1b[91m" + data + b"\x1b[0m" if stream == "stderr" else data)
            code = containers.wait_exit(self.engine, cid)
            code = int(code or 0)
            new_id = None
            if code == 0:
                upper = os.path.join(c.dir, "upper")
                try:
                    gd = containers.inspect(self.engine, cid).get("GraphDriver") or {}
                    upper = (gd.get("Data") or {}).get("UpperDir") or upper
                except KranError:
                    pass
                new_id = self.new_image(image_id, upper, config=config, history=history)
            return RunResult(container_id=cid, exit_code=code, image_id=new_id)
        finally:
            try:
                containers.remove(self.engine, cid, force=True)
            except NotFound:
                pass

    @contextmanager
    def rootfs(self, image_id: str | None) -> Iterator[str]:
        from kran.sys.fsutil import umount

        layers = [self.engine.store.layers.path(ch) for ch, *_ in self.engine.images.layers(image_id)] if image_id else []
        if len(layers) == 1:
            yield layers[0]  # one layer: its directory is the whole root (read it, never write)
            return
        work = self.workdir()
        try:
            if not layers:
                yield work
                return
            target = os.path.join(work, "merged")
            os.mkdir(target)
            from kran.rootless.overlay import mount_overlay

            mount_overlay(target, "lowerdir=" + ":".join(reversed(layers)))
            try:
                yield target
            finally:
                umount(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def remove_image(self, image_id: str) -> None:
        from kran.engine.images import remove

        remove(self.engine, [image_id], force=True)

    def tag(self, image_id: str, name: str) -> None:
        from kran.engine.images import tag

        tag(self.engine, image_id, name)

    def workdir(self) -> str:
        return build_workdir(self.engine)


def build_workdir(engine: Engine) -> str:
    """A private directory under ``<root>/build-tmp`` (same filesystem as the layers).

    Not under the store's tmp/: that is collected whenever no writer holds the store's lock, and a
    build cannot hold it throughout (removing its containers takes the lock exclusively).  Dirs
    of builds whose process is gone are removed by the next build (:func:`sweep_workdirs`).
    """
    import tempfile

    base = os.path.join(engine.root, "build-tmp")
    os.makedirs(base, 0o700, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base)


def sweep_workdirs(engine: Engine) -> None:
    base = os.path.join(engine.root, "build-tmp")
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return
    for n in names:
        pid = n.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(os.path.join(base, n), ignore_errors=True)


def context_from_tar(engine: Engine, src: IO[bytes]) -> str:
    """``kran build -``: a tar on stdin becomes a context directory (the caller removes it)."""
    from kran.build.context import extract_archive

    work = build_workdir(engine)
    data = src.read()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as t:
            t.next()
    except (tarfile.TarError, EOFError):
        # not a tar: the input is the Dockerfile itself, with an empty context
        with open(os.path.join(work, "Dockerfile"), "wb") as f:
            f.write(data)
        return work
    tmp = os.path.join(work, ".context.tar")
    with open(tmp, "wb") as f:
        f.write(data)
    os.mkdir(os.path.join(work, "ctx"))
    extract_archive(tmp, "/", os.path.join(work, "ctx"), None)
    os.unlink(tmp)
    for n in os.listdir(os.path.join(work, "ctx")):
        os.rename(os.path.join(work, "ctx", n), os.path.join(work, n))
    os.rmdir(os.path.join(work, "ctx"))
    return work


def build(engine: Engine, opts: BuildOptions, out: Callable[[str], None],
          raw_out: Callable[[bytes], None] | None = None, on_built: Callable[[str], None] | None = None) -> str:
    """Build ``opts``; the image ID.  Progress goes to ``out`` (Docker's classic builder lines);
    ``on_built`` hears the image ID before the "Successfully built" line."""
    from dataclasses import replace

    from kran.image import reference as refs

    # tags are checked before any work, and shown as Docker does ("x" -> "x:latest")
    opts = replace(opts, tags=[refs.parse_normalized(t).tagged_or_latest().familiar() for t in opts.tags])
    backend = EngineBackend(engine, progress=out, extra_hosts=opts.extra_hosts)
    cache = Cache(os.path.join(engine.root, "build-cache.json"), backend.image_exists)
    sweep_workdirs(engine)
    return Builder(backend, cache, out, raw_out, on_built).build(opts)


def prune_cache(engine: Engine) -> tuple[list[str], int]:
    """``docker builder prune``: forget the build cache, and delete the intermediate images it
    kept that nothing else names or uses.  (deleted image IDs, bytes freed)"""
    from kran.engine.images import delete_unused

    ids = sorted(intermediate_ids(engine))
    try:
        os.unlink(os.path.join(engine.root, "build-cache.json"))
    except FileNotFoundError:
        pass
    if not ids or not os.path.exists(os.path.join(engine.root, "kran.db")):
        return [], 0
    return delete_unused(engine, ids)


__all__ = ["BuildOptions", "EngineBackend", "build", "context_from_tar", "intermediate_ids", "prune_cache"]
