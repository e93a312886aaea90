"""New images from a container's read-write layer (``commit``) or from any layer directory (``build``).

A layer directory is an overlay upper dir: kernel-form whiteouts (char 0/0) and opaque dirs are
written as OCI ``.wh.`` entries by kran.storage.layertar.write_layer.  The mount points every
container gets (/etc/hostname, /etc/hosts, /etc/resolv.conf: docker's "init layer") are left out.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import time
from typing import TYPE_CHECKING, Any

from kran.errors import Conflict, KranError

if TYPE_CHECKING:
    from kran.engine import Engine

INIT_FILES = frozenset({"etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv", "etc/mtab"})
CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal",
               "OnBuild", "Shell", "Healthcheck", "ArgsEscaped")


def _layer_from_dir(engine: Engine, layer_dir: str, work: str) -> tuple[str, int]:
    """Tar ``layer_dir`` (OCI whiteouts, init-layer files left out) into the blob store: (digest, size)."""
    from kran.storage.layertar import write_layer

    raw = os.path.join(work, "raw.tar")
    with open(raw, "wb") as f:
        write_layer(layer_dir, f, live=True)  # commit --pause=false: files may come and go meanwhile
    out = os.path.join(work, "layer.tar")
    with tarfile.open(raw, "r:") as src, tarfile.open(out, "w:", format=tarfile.PAX_FORMAT) as dst:
        for m in src:
            name = m.name.lstrip("./").rstrip("/")
            if name in INIT_FILES and m.isfile() and m.size == 0:
                continue
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    with open(out, "rb") as f:
        return engine.store.blobs.ingest(f)


def new_image(engine: Engine, base_image_id: str | None, layer_dir: str | None, *, config: dict[str, Any],
              history: dict[str, Any], tags: list[str] = ()) -> str:  # type: ignore[assignment]
    """An image = the base's layers (+ one made from ``layer_dir``) with image config ``config``.

    ``config`` is the full image config object; its rootfs and history are filled in here (the
    base's plus ``history`` for the new step).  ``base_image_id`` None means scratch.
    """
    from kran.engine.timefmt import rfc3339
    from kran.image.spec import OCI_LAYER
    from kran.image.store import LayerBlob

    ist = engine.images
    layers: list[LayerBlob] = []
    diff_ids: list[str] = []
    hist: list[dict[str, Any]] = []
    if base_image_id:
        base = json.loads(ist.get(base_image_id).config)
        diff_ids = list((base.get("rootfs") or {}).get("diff_ids") or [])
        hist = list(base.get("history") or [])
        layers = [LayerBlob(digest=blob, media_type=mt, size=size) for _c, blob, mt, size in ist.layers(base_image_id)]
    store = engine.store
    with store.writing():
        work = store.workdir("commit-")
        try:
            h = dict(history)
            if layer_dir is not None:
                digest, size = _layer_from_dir(engine, layer_dir, work)
                layers.append(LayerBlob(digest=digest, media_type=OCI_LAYER, size=size))
                diff_ids.append(digest)
                h.pop("empty_layer", None)
            else:
                h["empty_layer"] = True
            now = rfc3339(time.time())
            h.setdefault("created", now)
            hist.append({k: v for k, v in h.items() if v not in ("", None, False)})
            cfg = dict(config)
            cfg["created"] = now
            cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
            cfg["history"] = hist
            raw = json.dumps(cfg, separators=(",", ":")).encode()
            image_id, _moved = ist.add(config_bytes=raw, layers=layers, tags=list(tags))
            return image_id
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _exited_soon(engine: Engine, cid: str, timeout: float = 2.0) -> bool:
    from kran.engine.record import get

    deadline = time.monotonic() + timeout
    while get(engine, cid).running:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def commit(engine: Engine, ref: str, *, repository: str | None = None, changes: list[str] = (),  # type: ignore[assignment]
           message: str = "", author: str = "", pause: bool = True) -> str:
    """``docker commit``: the container's read-write layer on top of its image, as a new image.

    With ``pause`` (the default) a running container is frozen while its layer is read, so that a
    database inside is consistent; a container the user had paused stays paused.
    """
    from kran.engine import containers
    from kran.image import reference as refs
    from kran.image.changes import apply_changes

    tags = [str(refs.parse_tagged(repository))] if repository else []
    c = containers.get(engine, ref)
    from kran.engine.lockdown import refuse_files_out

    refuse_files_out(c)  # --lockdown: its layer does not leave it as an image either
    if c.status == "restarting":
        raise Conflict(f"cannot commit container {c.id[:12]}: container is restarting")
    base = json.loads(engine.images.get(c.image_id).config)
    ccfg = {k: c.config[k] for k in CONFIG_KEYS if c.config.get(k) not in (None, "", [], {})}
    ccfg = apply_changes(ccfg, list(changes))
    cfg: dict[str, Any] = {
        "architecture": base.get("architecture", ""),
        "os": base.get("os", "linux"),
        "config": ccfg,
    }
    if base.get("variant"):
        cfg["variant"] = base["variant"]
    # docker's local parent chain (image inspect's Parent): the image the container was made from
    cfg["parent"] = c.image_id
    if author:
        cfg["author"] = author
    if message:
        cfg["comment"] = message
    from kran.engine.spec import process_args

    hist = {"created_by": " ".join(process_args(c.config)), "comment": message, "author": author}
    paused_here = False
    if pause and c.status == "running":
        try:
            containers.pause(engine, c.id)
            paused_here = True
        except KranError:
            # it exited between the look-up and the freeze (a short command): nothing left to
            # freeze once its exit is recorded; a container still running must be frozen
            if not _exited_soon(engine, c.id):
                raise
    try:
        return new_image(engine, c.image_id, os.path.join(c.dir, "upper"), config=cfg, history=hist, tags=tags)
    except OSError as e:
        raise KranError(f"error committing container {c.id[:12]}: {e}") from e
    finally:
        if paused_here:
            containers.unpause(engine, c.id)
