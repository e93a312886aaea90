"""Image archives: docker-archive (``docker save``) and OCI image layout, read and written.

What ``kran save`` writes is both at once, like Docker 25+: an OCI image layout (``oci-layout``,
``index.json``, ``blobs/sha256/...``) plus Docker's ``manifest.json`` pointing at the same blobs,
so ``docker load``, ``skopeo docker-archive:`` and ``skopeo oci-archive:`` all read it.
``save --since BASE`` writes the same layout less the blobs of the layers BASE has: an image delta,
marked as one so that ``load`` takes those layers from the host (see :class:`Delta`).

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

from kran.errors import DigestMismatch, InvalidContent, InvalidReference, KranError, NotFound
from kran.image import reference as refs
from kran.image import spec

if TYPE_CHECKING:
    from kran.image.store import ImageStore, LayerBlob

HOST_PLATFORM = ("linux", "amd64")


@dataclass
class Loaded:
    image_id: str
    tags: list[str] = field(default_factory=list)  # full references
    moved: list[tuple[str, str]] = field(default_factory=list)  # (tag, previous image id)


# Image deltas (``save --since BASE``): the archive keeps every manifest and config but leaves out
# the blobs of the bottom layers BASE has.  The omission is written down twice, once for each reader:
# as annotations on the image's descriptor in index.json (annotation values are strings, hence the
# comma list) and as a kran key in the docker manifest.json entry (docker and skopeo ignore unknown
# keys).  That is how ``load`` tells a delta, whose layers must already be on the host, from a
# corrupt archive.
ANNOTATION_DELTA_BASE = "io.kran.delta.base"
ANNOTATION_DELTA_BASE_ID = "io.kran.delta.base-id"
ANNOTATION_DELTA_OMITTED = "io.kran.delta.omitted-layers"
DOCKER_DELTA_KEY = "KranDelta"


@dataclass(frozen=True, slots=True, kw_only=True)
class Delta:
    """What a delta archive leaves out of one image: its bottom layers, which ``base`` has."""

    base: str  # the base as named to ``save --since`` (familiar reference, or its image ID)
    base_id: str
    omitted: tuple[str, ...]  # diff IDs of the omitted layers, bottom first: a prefix of rootfs.diff_ids


@dataclass(frozen=True, slots=True, kw_only=True)
class DeltaBase:
    """The ``--since`` image of a save: its name for the record and the chain IDs of its layers."""

    name: str
    image_id: str
    chains: frozenset[str]


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
    import hashlib

    from kran.image.store import LayerBlob

    manifest = ar.json("manifest.json")
    if not isinstance(manifest, list):
        raise InvalidContent("invalid archive: manifest.json is not a list")
    # Every entry is read and checked before anything is written, so a malformed entry or a delta
    # whose base layers this host lacks leaves the store as it was.
    plans: list[tuple[bytes, list[str], list[str], dict[int, LayerBlob]]] = []
    missing = _Missing()
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) or not isinstance(entry.get("Layers"), list):
            raise InvalidContent("invalid archive: malformed manifest.json entry")
        cfg_name = entry["Config"]
        config = ar.read(cfg_name)
        cfg_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        stem = posixpath.basename(cfg_name).removesuffix(".json")
        if len(stem) == 64 and all(c in "0123456789abcdef" for c in stem) and cfg_digest[7:] != stem:
            raise DigestMismatch(f"invalid archive: config {cfg_name} does not match its digest (got {cfg_digest})")
        if not all(isinstance(n, str) for n in entry["Layers"]):
            raise InvalidContent("invalid archive: malformed layer list in manifest.json")
        tags = []
        for t in entry.get("RepoTags") or []:
            try:
                r = refs.parse_normalized(t)
            except InvalidReference as e:
                raise InvalidContent(f"invalid archive: invalid tag {t!r}: {e}") from e
            if r.tag is None:
                raise InvalidContent(f"invalid archive: tag {t!r} has no tag part")
            tags.append(str(r))
        local = _local_layers(istore, ar, _delta_from_docker(entry), config, entry["Layers"], missing)
        plans.append((config, entry["Layers"], tags, local))
    missing.check()
    out = []
    for config, names, tags, local in plans:
        layers = []
        for i, lname in enumerate(names):
            if i in local:
                layers.append(local[i])
                continue
            expected = None
            if lname.startswith("blobs/sha256/"):
                expected = "sha256:" + posixpath.basename(lname)
            digest, size, mt = _ingest(istore, ar, lname, expected)
            layers.append(LayerBlob(digest=digest, media_type=mt, size=size))
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
    # As for docker archives: deltas are checked against the host before anything is written.
    # kran marks the top-level descriptors only, so only they are looked at.
    missing = _Missing()
    locals_: list[dict[int, LayerBlob]] = []
    for desc in index["manifests"]:
        delta = _delta_from_annotations(desc.get("annotations") if isinstance(desc, dict) else None)
        local: dict[int, LayerBlob] = {}
        if delta is not None:
            _, doc = _json_blob(ar, desc)
            cfg, lds = doc.get("config"), doc.get("layers")
            if not isinstance(cfg, dict) or not isinstance(lds, list) or not all(isinstance(ld, dict) for ld in lds):
                raise InvalidContent(f"invalid archive: manifest {desc['digest']} has no config or layers")
            names = [_blob_name(ld.get("digest") or "") for ld in lds]
            local = _local_layers(istore, ar, delta, _verified(ar, cfg), names, missing)
        locals_.append(local)
    missing.check()
    out: list[Loaded] = []
    for desc, local in zip(index["manifests"], locals_, strict=True):
        _load_oci_desc(istore, ar, desc, out, depth=0, local=local)
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


def _json_blob(ar: _Archive, desc: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    data = _verified(ar, desc)
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise InvalidContent(f"invalid archive: {desc['digest']} is not valid JSON") from e
    if not isinstance(doc, dict):
        raise InvalidContent(f"invalid archive: {desc['digest']} is not a JSON object")
    return data, doc


def _load_oci_desc(
    istore: ImageStore, ar: _Archive, desc: Any, out: list[Loaded], depth: int, local: dict[int, LayerBlob] | None = None
) -> None:
    from kran.image.store import LayerBlob

    if not isinstance(desc, dict) or depth > 4:
        raise InvalidContent("invalid archive: malformed descriptor in index")
    mt = desc.get("mediaType", "")
    data, doc = _json_blob(ar, desc)
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
    manifest_bytes: bytes | None = data
    for i, ld in enumerate(doc["layers"]):
        if not isinstance(ld, dict) or not isinstance(ld.get("digest"), str):
            raise InvalidContent("invalid archive: malformed layer descriptor")
        if local and i in local:
            lb = local[i]
            if lb.digest != ld["digest"]:
                manifest_bytes = None  # the host has this layer as another blob: a manifest naming it is made anew
            else:
                lb = LayerBlob(digest=lb.digest, media_type=ld.get("mediaType") or lb.media_type, size=lb.size)
            layers.append(lb)
            continue
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
    image_id, moved = istore.add(config_bytes=config, layers=layers, manifest_bytes=manifest_bytes, tags=tags)
    out.append(Loaded(image_id=image_id, tags=tags, moved=moved))


# -- deltas: reading --------------------------------------------------------------------------


def _delta_from_docker(entry: dict[str, Any]) -> Delta | None:
    raw = entry.get(DOCKER_DELTA_KEY)
    if raw is None:
        return None
    omitted = raw.get("OmittedLayers") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or not isinstance(raw.get("Base"), str) or not isinstance(omitted, list) \
            or not all(isinstance(d, str) for d in omitted):
        raise InvalidContent(f"invalid archive: malformed {DOCKER_DELTA_KEY} in manifest.json")
    return Delta(base=raw["Base"], base_id=str(raw.get("BaseID") or ""), omitted=tuple(omitted))


def _delta_from_annotations(ann: Any) -> Delta | None:
    if not isinstance(ann, dict) or not isinstance(ann.get(ANNOTATION_DELTA_OMITTED), str):
        return None
    omitted = tuple(d for d in ann[ANNOTATION_DELTA_OMITTED].split(",") if d)
    return Delta(base=str(ann.get(ANNOTATION_DELTA_BASE) or "?"), base_id=str(ann.get(ANNOTATION_DELTA_BASE_ID) or ""), omitted=omitted)


class _Missing:
    """The omitted layers of a delta that this host lacks, gathered over the whole archive."""

    def __init__(self) -> None:
        self.bases: dict[str, None] = {}
        self.layers: dict[str, None] = {}

    def add(self, base: str, diff_id: str) -> None:
        self.bases[base] = None
        self.layers[diff_id] = None

    def check(self) -> None:
        if not self.layers:
            return
        bases = ", ".join(self.bases)
        n = len(self.layers)
        raise NotFound(
            f"cannot load image delta: it leaves out {n} layer{'s' if n > 1 else ''} of its base {bases} that this host "
            f"does not have: {', '.join(self.layers)} (load or pull {bases} first, or save without --since)"
        )


def _local_layers(
    istore: ImageStore, ar: _Archive, delta: Delta | None, config: bytes, names: list[str], missing: _Missing
) -> dict[int, LayerBlob]:
    """For each layer the delta left out, the host's own blob of it (by index); the rest go to ``missing``."""
    if delta is None:
        return {}
    try:
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
        if not isinstance(diff_ids, list):
            raise TypeError
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidContent("invalid archive: image config without rootfs.diff_ids") from e
    k = len(delta.omitted)
    if list(delta.omitted) != diff_ids[:k] or k > len(names):
        raise InvalidContent("invalid archive: the layers the delta leaves out are not the bottom layers of its image")
    chains = spec.chain_ids(diff_ids[:k])
    out: dict[int, LayerBlob] = {}
    for i in range(k):
        if ar.has(_clean(names[i]) or ""):
            continue  # in the archive after all (another image in it needs the blob): loaded as usual
        lb = _local_layer(istore, chains[i], names[i])
        if lb is None:
            missing.add(delta.base, diff_ids[i])
        else:
            out[i] = lb
    return out


def _local_layer(istore: ImageStore, chain: str, name: str) -> LayerBlob | None:
    """A blob of layer ``chain`` in the host's store: one an image here already pairs with that chain
    (its content was checked against the diff ID when the layer was unpacked), the archive's own
    digest first; or the archive's digest when the chain is not unpacked here (``add`` unpacks and
    checks it)."""
    from kran.image.store import LayerBlob

    blobs = istore.store.blobs
    want = "sha256:" + posixpath.basename(name) if name.startswith("blobs/sha256/") else ""
    paired = [str(r[0]) for r in istore.db.execute("SELECT DISTINCT blob FROM image_layers WHERE chain_id=?", (chain,))]
    paired.sort(key=lambda d: d != want)
    unpacked = istore.store.layers.size(chain) is not None
    for d in paired + ([want] if want and not unpacked else []):
        if blobs.has(d):
            with blobs.open(d) as f:
                head = f.read(4)
            return LayerBlob(digest=d, media_type=layer_media_type(head), size=blobs.size(d))
    return None


# -- writing -------------------------------------------------------------------------------------


def save(istore: ImageStore, items: list[tuple[str, list[str]]], out: BinaryIO, since: DeltaBase | None = None) -> None:
    """Write images as a docker-archive + OCI layout tar.  ``items``: (image ID, full refs to name it).

    With ``since``, a delta: the blobs of each image's bottom layers that ``since`` has (same chain
    ID) are left out and the omission recorded (see :data:`ANNOTATION_DELTA_BASE`).  An image that
    shares no layer with it is written whole and unmarked, byte for byte what a full save writes.
    """
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
        rows = istore.layers(image_id)
        delta = _delta_for(rec.config, [chain for chain, _, _, _ in rows], since)
        skip = len(delta.omitted) if delta else 0
        layers = [_blob_name(blob) if i < skip else add_blob(blob) for i, (_, blob, _, _) in enumerate(rows)]
        add_blob(rec.manifest)
        familiar = [refs.parse_normalized(n).familiar() for n in names]
        entry: dict[str, Any] = {"Config": _blob_name(rec.id), "RepoTags": familiar or None, "Layers": layers}
        if delta:
            entry[DOCKER_DELTA_KEY] = {"Base": delta.base, "BaseID": delta.base_id, "OmittedLayers": list(delta.omitted)}
        docker_manifest.append(entry)
        man = json.loads(store.blobs.read(rec.manifest))
        base = {
            "mediaType": man.get("mediaType") or spec.OCI_MANIFEST,
            "digest": rec.manifest,
            "size": store.blobs.size(rec.manifest),
        }
        marks = _delta_annotations(delta) if delta else {}
        if not names:
            index_manifests.append(dict(base, annotations=marks) if marks else base)
        for n in names:
            r = refs.parse_normalized(n)
            index_manifests.append(
                dict(base, annotations={spec.ANNOTATION_IMAGE_NAME: str(r), spec.ANNOTATION_REF_NAME: r.tag or "", **marks})
            )
    index = {"schemaVersion": 2, "mediaType": spec.OCI_INDEX, "manifests": index_manifests}
    add_bytes("index.json", json.dumps(index, separators=(",", ":")).encode())
    add_bytes("manifest.json", json.dumps(docker_manifest, separators=(",", ":")).encode())
    add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    tw.close()


def _delta_for(config: str, chains: list[str], since: DeltaBase | None) -> Delta | None:
    """The bottom layers ``since`` has.  By chain ID, not diff ID: a layer is the same only on the
    same parents, so what is shared is always a prefix of the stack."""
    if since is None:
        return None
    n = 0
    while n < len(chains) and chains[n] in since.chains:
        n += 1
    if n == 0:
        return None
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    return Delta(base=since.name, base_id=since.image_id, omitted=tuple(diff_ids[:n]))


def _delta_annotations(d: Delta) -> dict[str, str]:
    return {ANNOTATION_DELTA_BASE: d.base, ANNOTATION_DELTA_BASE_ID: d.base_id, ANNOTATION_DELTA_OMITTED: ",".join(d.omitted)}
