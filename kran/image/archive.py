"""Image archives: docker-archive (``docker save``) and OCI image layout, read and written.

What ``kran save`` writes is both at once, like Docker 25+: an OCI image layout (``oci-layout``,
``index.json``, ``blobs/sha256/...``) plus Docker's ``manifest.json`` pointing at the same blobs,
so ``docker load``, ``skopeo docker-archive:`` and ``skopeo oci-archive:`` all read it.

Trust boundary: everything read from an archive is verified against its digest (blobs named by
digest, the config against the image ID, each layer against its diff ID) before it is kept.
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from kran.errors import DigestMismatch, InvalidContent, InvalidReference, KranError
from kran.image import reference as refs
from kran.image import spec

if TYPE_CHECKING:
    from kran.image.store import ImageStore

HOST_PLATFORM = ("linux", "amd64")


@dataclass
class Loaded:
    image_id: str
    tags: list[str] = field(default_factory=list)  # full references
    moved: list[tuple[str, str]] = field(default_factory=list)  # (tag, previous image id)


def host_platform() -> tuple[str, str]:
    import platform

    m = platform.machine()
    return "linux", {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(m, m)


def layer_media_type(first: bytes, oci: bool = True) -> str:
    if first[:2] == b"\x1f\x8b":
        return spec.OCI_LAYER_GZIP if oci else spec.DOCKER_LAYER_GZIP
    if first[:4] == b"\x28\xb5\x2f\xfd":
        return spec.OCI_LAYER_ZSTD
    return spec.OCI_LAYER if oci else spec.DOCKER_LAYER


class _Archive:
    """Random access to the members of an (uncompressed, seekable) tar, with safe names."""

    def __init__(self, f: BinaryIO) -> None:
        try:
            self.tf = tarfile.open(fileobj=f, mode="r:")
            members = self.tf.getmembers()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise InvalidContent(f"invalid archive: {_why(e)}") from e
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in members:
            name = _clean(m.name)
            if name is None:
                raise InvalidContent(f"invalid archive: unsafe path {m.name!r}")
            if name in self.members and not (m.isdir() and self.members[name].isdir()):
                raise InvalidContent(f"invalid archive: duplicate entry {name!r}")
            self.members[name] = m

    def has(self, name: str) -> bool:
        return name in self.members

    def open(self, name: str, _depth: int = 0) -> tuple[BinaryIO, int]:
        m = self.members.get(_clean(name) or "")
        if m is None:
            raise InvalidContent(f"invalid archive: {name} is missing")
        if m.issym() or m.islnk():
            # docker save (old) links duplicate layers to their first copy: follow inside the archive only
            target = posixpath.normpath(posixpath.join(posixpath.dirname(m.name), m.linkname) if m.issym() else m.linkname)
            if _clean(target) is None or _depth > 8:
                raise InvalidContent(f"invalid archive: {name} links outside the archive")
            return self.open(target, _depth + 1)
        if not m.isfile():
            raise InvalidContent(f"invalid archive: {name} is not a regular file")
        f = self.tf.extractfile(m)
        assert f is not None
        return f, m.size  # type: ignore[return-value]

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        f, size = self.open(name)
        if size > limit:
            raise InvalidContent(f"invalid archive: {name} is too large")
        try:
            data = f.read()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise InvalidContent(f"invalid archive: {_why(e)}") from e
        if len(data) != size:
            raise InvalidContent("invalid archive: unexpected end of data")
        return data

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError as e:
            raise InvalidContent(f"invalid archive: {name} is not valid JSON: {e}") from e


def _why(e: BaseException) -> str:
    s = str(e) or type(e).__name__
    if "unexpected end" in s or isinstance(e, EOFError):
        return "unexpected end of data (truncated archive?)"
    return s


def _clean(name: str) -> str | None:
    """Normalise a member name; None if it is absolute or climbs out."""
    if name.startswith("/"):
        return None
    n = posixpath.normpath(name)
    if n == "." or n.startswith("../") or n == "..":
        return None if n != "." else "."
    return n


def _blob_name(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64:
        raise InvalidContent(f"invalid archive: unsupported digest {digest!r}")
    return f"blobs/sha256/{hexpart}"


def load(istore: ImageStore, f: BinaryIO) -> list[Loaded]:
    """Load every image of a docker-archive or OCI-layout tar.  Caller holds ``store.writing()``."""
    ar = _Archive(f)
    if ar.has("manifest.json"):
        return _load_docker(istore, ar)
    if ar.has("index.json"):
        return _load_oci(istore, ar)
    if ar.has("repositories"):
        raise InvalidContent("invalid archive: legacy (pre-1.10) docker-archive without manifest.json is not supported")
    raise InvalidContent("invalid archive: no manifest.json or index.json found (not a docker-archive or OCI layout)")


def _ingest(istore: ImageStore, ar: _Archive, name: str, expected: str | None = None, size: int | None = None) -> tuple[str, int, str]:
    """Copy one member into the blob store; returns (digest, size, media type of a layer)."""
    src, msize = ar.open(name)
    if size is not None and size != msize:
        raise DigestMismatch(f"size mismatch for {expected or name}: descriptor says {size}, archive has {msize}")
    head = src.read(4)
    try:
        digest, n = istore.store.blobs.ingest(_Prefixed(head, src), expected=expected, size=msize)
    except (tarfile.TarError, EOFError) as e:
        raise InvalidContent(f"invalid archive: {_why(e)}") from e
    return digest, n, layer_media_type(head)


class _Prefixed:
    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            b, self.head = self.head, b""
            return b
        return self.rest.read(n)


def _load_docker(istore: ImageStore, ar: _Archive) -> list[Loaded]:
    from kran.image.store import LayerBlob

    manifest = ar.json("manifest.json")
    if not isinstance(manifest, list):
        raise InvalidContent("invalid archive: manifest.json is not a list")
    out = []
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) or not isinstance(entry.get("Layers"), list):
            raise InvalidContent("invalid archive: malformed manifest.json entry")
        cfg_name = entry["Config"]
        config = ar.read(cfg_name)
        import hashlib

        cfg_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        stem = posixpath.basename(cfg_name).removesuffix(".json")
        if len(stem) == 64 and all(c in "0123456789abcdef" for c in stem) and cfg_digest[7:] != stem:
            raise DigestMismatch(f"invalid archive: config {cfg_name} does not match its digest (got {cfg_digest})")
        layers = []
        for lname in entry["Layers"]:
            if not isinstance(lname, str):
                raise InvalidContent("invalid archive: malformed layer list in manifest.json")
            expected = None
            if lname.startswith("blobs/sha256/"):
                expected = "sha256:" + posixpath.basename(lname)
            digest, size, mt = _ingest(istore, ar, lname, expected)
            layers.append(LayerBlob(digest=digest, media_type=mt, size=size))
        tags = []
        for t in entry.get("RepoTags") or []:
            try:
                r = refs.parse_normalized(t)
            except InvalidReference as e:
                raise InvalidContent(f"invalid archive: invalid tag {t!r}: {e}") from e
            if r.tag is None:
                raise InvalidContent(f"invalid archive: tag {t!r} has no tag part")
            tags.append(str(r))
        image_id, moved = istore.add(config_bytes=config, layers=layers, tags=tags)
        out.append(Loaded(image_id=image_id, tags=tags, moved=moved))
    return out


def _load_oci(istore: ImageStore, ar: _Archive) -> list[Loaded]:
    layout = ar.json("oci-layout") if ar.has("oci-layout") else None
    if layout is not None and not isinstance(layout, dict):
        raise InvalidContent("invalid archive: malformed oci-layout")
    index = ar.json("index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidContent("invalid archive: malformed index.json")
    out: list[Loaded] = []
    for desc in index["manifests"]:
        _load_oci_desc(istore, ar, desc, out, depth=0)
    if not out:
        raise InvalidContent("invalid archive: index.json lists no image for this platform")
    return out


def _verified(ar: _Archive, desc: dict[str, Any]) -> bytes:
    import hashlib

    digest = desc.get("digest")
    if not isinstance(digest, str):
        raise InvalidContent("invalid archive: descriptor without digest")
    data = ar.read(_blob_name(digest))
    got = "sha256:" + hashlib.sha256(data).hexdigest()
    if got != digest:
        raise DigestMismatch(f"digest mismatch for {digest}: archive content hashes to {got}")
    if isinstance(desc.get("size"), int) and desc["size"] != len(data):
        raise DigestMismatch(f"size mismatch for {digest}: descriptor says {desc['size']}, content has {len(data)}")
    return data


def _load_oci_desc(istore: ImageStore, ar: _Archive, desc: Any, out: list[Loaded], depth: int) -> None:
    from kran.image.store import LayerBlob

    if not isinstance(desc, dict) or depth > 4:
        raise InvalidContent("invalid archive: malformed descriptor in index")
    mt = desc.get("mediaType", "")
    data = _verified(ar, desc)
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise InvalidContent(f"invalid archive: {desc['digest']} is not valid JSON") from e
    if not isinstance(doc, dict):
        raise InvalidContent(f"invalid archive: {desc['digest']} is not a JSON object")
    if mt in spec.INDEX_TYPES or (not mt and "manifests" in doc):
        want = host_platform()
        for sub in doc.get("manifests") or []:
            p = sub.get("platform") or {} if isinstance(sub, dict) else {}
            if not p or (p.get("os"), p.get("architecture")) == want:
                _load_oci_desc(istore, ar, sub, out, depth + 1)
                if p:
                    break
        return
    cfg_desc = doc.get("config")
    if not isinstance(cfg_desc, dict) or not isinstance(doc.get("layers"), list):
        raise InvalidContent(f"invalid archive: manifest {desc['digest']} has no config or layers")
    config = _verified(ar, cfg_desc)
    layers = []
    for ld in doc["layers"]:
        if not isinstance(ld, dict) or not isinstance(ld.get("digest"), str):
            raise InvalidContent("invalid archive: malformed layer descriptor")
        digest, size, _ = _ingest(istore, ar, _blob_name(ld["digest"]), ld["digest"], ld.get("size"))
        layers.append(LayerBlob(digest=digest, media_type=ld.get("mediaType") or spec.OCI_LAYER, size=size))
    tags: list[str] = []
    ann = desc.get("annotations") or {}
    name = ann.get(spec.ANNOTATION_IMAGE_NAME) or ann.get(spec.ANNOTATION_REF_NAME) or ""
    if name and (refs.is_valid_tag(name) and "/" not in name):
        name = ""  # a bare tag names no repository: the image loads untagged
    if name:
        try:
            tags.append(str(refs.parse_tagged(name)))
        except KranError as e:
            raise InvalidContent(f"invalid archive: invalid image name {name!r}: {e}") from e
    image_id, moved = istore.add(config_bytes=config, layers=layers, manifest_bytes=data, tags=tags)
    out.append(Loaded(image_id=image_id, tags=tags, moved=moved))


# -- writing -------------------------------------------------------------------------------------


def save(istore: ImageStore, items: list[tuple[str, list[str]]], out: BinaryIO) -> None:
    """Write images as a docker-archive + OCI layout tar.  ``items``: (image ID, full refs to name it)."""
    tw = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
    written: set[str] = set()
    store = istore.store

    def add_bytes(name: str, data: bytes) -> None:
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mode = 0o644
        tw.addfile(ti, io.BytesIO(data))

    def add_blob(digest: str) -> str:
        name = _blob_name(digest)
        if digest not in written:
            written.add(digest)
            path = store.blobs.path(digest)
            ti = tw.gettarinfo(path, arcname=name)
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.mode = 0o644
            ti.mtime = 0
            with open(path, "rb") as fh:
                tw.addfile(ti, fh)
        return name

    for d in ("blobs", "blobs/sha256"):
        ti = tarfile.TarInfo(d)
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        tw.addfile(ti)
    docker_manifest = []
    index_manifests = []
    for image_id, names in items:
        rec = istore.get(image_id)
        add_blob(rec.id)
        layers = [add_blob(blob) for _, blob, _, _ in istore.layers(image_id)]
        add_blob(rec.manifest)
        familiar = [refs.parse_normalized(n).familiar() for n in names]
        docker_manifest.append({"Config": _blob_name(rec.id), "RepoTags": familiar or None, "Layers": layers})
        man = json.loads(store.blobs.read(rec.manifest))
        base = {
            "mediaType": man.get("mediaType") or spec.OCI_MANIFEST,
            "digest": rec.manifest,
            "size": store.blobs.size(rec.manifest),
        }
        if not names:
            index_manifests.append(base)
        for n in names:
            r = refs.parse_normalized(n)
            index_manifests.append(
                dict(base, annotations={spec.ANNOTATION_IMAGE_NAME: str(r), spec.ANNOTATION_REF_NAME: r.tag or ""})
            )
    index = {"schemaVersion": 2, "mediaType": spec.OCI_INDEX, "manifests": index_manifests}
    add_bytes("index.json", json.dumps(index, separators=(",", ":")).encode())
    add_bytes("manifest.json", json.dumps(docker_manifest, separators=(",", ":")).encode())
    add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    tw.close()
