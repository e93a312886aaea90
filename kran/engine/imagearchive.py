"""Images in and out as archives: ``docker load`` (docker-archive or OCI layout, plain or
compressed, from a pipe or a file), ``docker save`` and ``docker import`` (a filesystem tarball
becomes a one-layer image).  Re-exported by :mod:`kran.engine.images`."""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import TYPE_CHECKING, BinaryIO

from kran.engine.timefmt import rfc3339
from kran.errors import InvalidArgument, InvalidContent, InvalidReference
from kran.image import reference as refs

if TYPE_CHECKING:
    from kran.engine import Engine
    from kran.image.archive import DeltaBase, Loaded


# -- input helpers --------------------------------------------------------------------------------


def _spool(engine: Engine, src: BinaryIO, work: str) -> BinaryIO:
    """A seekable, uncompressed copy of ``src`` (gzip/zstd/bzip2/xz archives are accepted, like docker load)."""
    head = _peek(src)
    plain = not _compressed(head)
    if plain and _seekable(src):
        src.seek(0)
        return src
    path = os.path.join(work, "input.tar")
    with open(path, "wb") as out:
        stream = _decompressor(head, src)
        try:
            shutil.copyfileobj(stream, out, 1 << 20)
        except (OSError, EOFError, ValueError) as e:
            raise InvalidContent(f"invalid archive: cannot decompress input: {e}") from e
    return open(path, "rb")


class _Head:
    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                b, self.head = self.head + self.rest.read(), b""
                return b
            b, self.head = self.head[:n], self.head[n:]
            return b
        return self.rest.read(n)


def _peek(src: BinaryIO) -> bytes:
    if _seekable(src):
        pos = src.tell()
        head = src.read(6)
        src.seek(pos)
        return head
    head = src.read(6)
    src.__dict__  # noqa: B018 - plain file objects only
    _PEEKED[id(src)] = head
    return head


_PEEKED: dict[int, bytes] = {}


def _seekable(f: BinaryIO) -> bool:
    try:
        return f.seekable()
    except (AttributeError, ValueError):
        return False


def _compressed(head: bytes) -> bool:
    return head[:2] == b"\x1f\x8b" or head[:4] == b"\x28\xb5\x2f\xfd" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00"


def _decompressor(head: bytes, src: BinaryIO) -> BinaryIO:
    if not _seekable(src):
        src = _Head(_PEEKED.pop(id(src), b""), src)  # type: ignore[assignment]
    else:
        src.seek(0)
    if head[:3] == b"BZh":
        import bz2

        return bz2.BZ2File(src)  # type: ignore[arg-type]
    if head[:6] == b"\xfd7zXZ\x00":
        import lzma

        return lzma.LZMAFile(src)  # type: ignore[arg-type]
    from kran.storage.layertar import open_decompressed

    return open_decompressed(src)  # type: ignore[arg-type]


# -- load / save / import -------------------------------------------------------------------------


def load(engine: Engine, src: BinaryIO) -> list[Loaded]:
    from kran.image import archive

    store = engine.store
    with store.writing():
        work = store.workdir("load-")
        try:
            f = _spool(engine, src, work)
            try:
                return archive.load(engine.images, f)
            finally:
                if f is not src:
                    f.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)


def save(engine: Engine, names: list[str], out: BinaryIO, since: str = "") -> None:
    """``docker save``: a repository name saves all its tags; name:tag one tag; an ID the bare image.

    ``since`` (an image name or ID here) makes a delta: the layers that image has are left out.
    """
    from kran.image import archive

    if not names:
        raise InvalidArgument("requires at least 1 argument")
    base = _delta_base(engine, since) if since else None  # a missing base fails before the tar starts
    items: dict[str, list[str]] = {}
    ist = engine.images
    for n in names:
        tags: list[str] = []
        try:
            r = refs.parse_normalized(n)
        except InvalidReference:
            r = None
            if not refs.looks_like_id(n):
                raise
        if r is not None and r.tag is None and r.digest is None:
            prefix = r.name + ":"
            tags = [t for (t,) in ist.db.execute("SELECT name FROM tags WHERE name LIKE ? ORDER BY name", (prefix + "%",)) if t.startswith(prefix)]
            if tags:
                for t in tags:
                    iid = ist.image_for_tag(t)
                    assert iid
                    items.setdefault(iid, [])
                    if t not in items[iid]:
                        items[iid].append(t)
                continue
        iid = ist.resolve(n)
        lst = items.setdefault(iid, [])
        if r is not None and r.tag is not None and str(r) not in lst and ist.image_for_tag(str(r)) == iid:
            lst.append(str(r))
    archive.save(ist, list(items.items()), out, since=base)


def _delta_base(engine: Engine, since: str) -> DeltaBase:
    """The ``--since`` image, named in the archive the way the user will recognise it on the other host."""
    from kran.image.archive import DeltaBase

    ist = engine.images
    iid = ist.resolve(since)  # ImageNotFound: "No such image: BASE", Docker's wording
    name = iid
    try:
        r = refs.parse_normalized(since)
    except InvalidReference:
        r = None
    if r is not None and r.digest is None and ist.image_for_tag(str(r.tagged_or_latest())) == iid:
        name = r.tagged_or_latest().familiar()
    elif r is not None and r.digest is not None:
        name = r.familiar()
    return DeltaBase(name=name, image_id=iid, chains=frozenset(chain for chain, _, _, _ in ist.layers(iid)))


def import_image(
    engine: Engine,
    src: BinaryIO,
    *,
    source: str = "-",
    repository: str | None = None,
    changes: list[str] = (),  # type: ignore[assignment]
    message: str = "",
    platform: str = "",
) -> str:
    """``docker import``: a tarball of a filesystem becomes a one-layer image."""
    from kran.image.archive import host_platform, layer_media_type
    from kran.image.changes import apply_changes
    from kran.image.store import LayerBlob

    tag = str(refs.parse_tagged(repository)) if repository else None
    os_, arch = host_platform()
    if platform:
        parts = platform.split("/")
        if parts[0] != "linux" or len(parts) > 3:
            raise InvalidArgument(f'"{platform}": unknown operating system or architecture: operating system is not supported')
        if len(parts) > 1:
            arch = parts[1]
    cfg_obj = apply_changes({}, list(changes))
    store = engine.store
    with store.writing():
        work = store.workdir("import-")
        try:
            head = _peek(src)
            stream: BinaryIO = _decompressor(head, src) if _compressed(head) else (src if _seekable(src) else _Head(_PEEKED.pop(id(src), b""), src))  # type: ignore[assignment]
            if _seekable(stream) and stream is src:
                src.seek(0)
            digest, size = store.blobs.ingest(stream)
            with store.blobs.open(digest) as f:
                if layer_media_type(f.read(4)) != "application/vnd.oci.image.layer.v1.tar":
                    raise InvalidContent("invalid tar: nested compression")
            now = rfc3339(time.time())
            comment = message or f"Imported from {source}"
            config = {
                "architecture": arch,
                "comment": comment,
                "config": cfg_obj,
                "created": now,
                "history": [{"created": now, "comment": comment, "created_by": ""}],
                "os": os_,
                "rootfs": {"type": "layers", "diff_ids": [digest]},
            }
            raw = json.dumps(config, separators=(",", ":")).encode()
            image_id, _ = engine.images.add(
                config_bytes=raw,
                layers=[LayerBlob(digest=digest, media_type="application/vnd.oci.image.layer.v1.tar", size=size)],
                tags=[tag] if tag else [],
            )
            return image_id
        finally:
            shutil.rmtree(work, ignore_errors=True)


# -- listing --------------------------------------------------------------------------------------
