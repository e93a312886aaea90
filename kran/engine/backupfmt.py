"""The backup store: an OCI image layout directory (image-spec image-layout.md) holding backups.

Glossary.  A *backup* is one OCI image manifest whose layers are only a container's backup
layers (never its image's) and whose config blob is an OCI image config with one extra top-level
key, ``kran.backup`` (the :class:`BackupMeta` record: the container's configuration, its base
image by ID and diff IDs, the previous backup of an incremental chain, the file index and the
volume blobs).  Each backup is tagged twice in ``index.json`` (annotation
``org.opencontainers.image.ref.name``): ``NAME:YYYYMMDD-HHMMSS`` and ``NAME:latest``.

Lifecycle of a write: blobs are written to a temp file inside the layout, hashed, fsynced and
renamed to ``blobs/sha256/<hex>`` (an existing blob is shared, never rewritten); ``index.json``
is rewritten last (temp + rename) under an flock on the layout directory, so a reader sees a
backup whole or not at all.

TRUST BOUNDARY: a layout read back may be corrupt or tampered with: every blob read here is
verified against its digest (``read_blob``) or hashed while streamed (``open_verified``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

from kran.codec import extra, jf
from kran.errors import DigestMismatch, InvalidArgument, InvalidContent, NotFound

T = TypeVar("T")

REF_NAME = "org.opencontainers.image.ref.name"
BACKUP_KEY = "kran.backup"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
INDEX_MEDIA = "application/vnd.kran.backup.index.v1+json"  # the file index of an incremental chain
VOLUME_MEDIA = "application/vnd.kran.backup.volume.v1.tar"  # a named volume's contents
FORMAT_VERSION = 1
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_CHUNK = 1 << 20


def _decode(cls: type[T], data: Any, what: str) -> T:
    """The codec's decode, its type errors as a one-line content error."""
    from kran import codec

    try:
        return codec.decode(cls, data)
    except (ValueError, TypeError) as e:
        raise InvalidContent(f"invalid {what} in backup: {e}") from e


@dataclass(frozen=True, slots=True, kw_only=True)
class Desc:
    """An OCI descriptor (image-spec descriptor.md)."""

    media_type: str = jf("mediaType", default="")
    digest: str = jf("digest", default="")
    size: int = jf("size", default=0, keep=True)

    def to_json(self) -> dict[str, Any]:
        from kran import codec

        return codec.encode(self)  # type: ignore[no-any-return]

    @staticmethod
    def from_json(d: Any) -> Desc:
        desc = _decode(Desc, d, "descriptor")
        if not desc.digest or not isinstance(d, dict) or "size" not in d:
            raise InvalidContent(f"invalid descriptor in backup: {d!r}")
        return desc


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume:
    """A named volume's tar in a backup: its name, where it was mounted, and its blob (the
    descriptor's keys are flattened into the volume's object)."""

    name: str = jf("Name", default="")
    destination: str = jf("Destination", default="")
    media_type: str = jf("mediaType", default=VOLUME_MEDIA)
    digest: str = jf("digest", default="")
    size: int = jf("size", default=0, keep=True)

    @property
    def blob(self) -> Desc:
        return Desc(media_type=self.media_type, digest=self.digest, size=self.size)


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseImage:
    """The image a backed-up container was made from: a backup holds none of its layers."""

    ref: str = jf("Ref", default="", keep=True)  # as the container was created ("busybox:latest")
    id: str = jf("ID", default="")  # its image ID (config digest)
    diff_ids: list[str] = jf("DiffIDs", factory=list, keep=True)  # any local image with these is the base
    # where it can be pulled by digest when a restoring host lacks it ("reg/busybox@sha256:...")
    repo_digests: list[str] = jf("RepoDigests", factory=list, keep=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupMeta:
    """The ``kran.backup`` key of a backup's config (docs/backup.md has the table)."""

    version: int = jf("Version", default=FORMAT_VERSION, keep=True)
    name: str = jf("Name", default="")  # the container's name (without "/")
    container_id: str = jf("ContainerID", default="")
    created: str = jf("Created", default="")  # RFC 3339, the capture time
    container: dict[str, Any] = jf("Container", factory=dict, keep=True)  # Config, HostConfig, NetworkingConfig
    image: BaseImage = jf("Image", factory=BaseImage, keep=True)
    previous: str | None = jf("Previous", keep=True)  # manifest digest of the previous backup of a chain
    index: Desc | None = jf("Index", keep=True)  # the file index (path -> metadata + sha256) after this backup
    volumes: list[Volume] = jf("Volumes", factory=list, keep=True)
    frozen_ms: float = jf("FrozenMs", default=0.0, keep=True)
    incremental: bool = jf("Incremental", default=False, keep=True)
    more: dict[str, Any] = extra()  # keys of a later version, kept when read and written again

    def to_json(self) -> dict[str, Any]:
        from dataclasses import replace

        from kran import codec

        return codec.encode(replace(self, frozen_ms=round(self.frozen_ms, 3)))  # type: ignore[no-any-return]

    @staticmethod
    def from_json(d: Any) -> BackupMeta:
        if not isinstance(d, dict) or d.get("Version") != FORMAT_VERSION:
            raise InvalidContent(f"unsupported backup format version {d.get('Version') if isinstance(d, dict) else d!r}")
        for key in ("Name", "ContainerID", "Created", "Container", "Image"):
            if key not in d:
                raise InvalidContent(f"invalid backup record: no {key!r}")
        meta = _decode(BackupMeta, d, "backup record")
        if meta.index is not None and not meta.index.digest:
            raise InvalidContent("invalid backup record: its file index has no digest")
        return meta


@dataclass(frozen=True, slots=True, kw_only=True)
class Backup:
    """One backup as listed: its tags, manifest, config and record."""

    name: str
    tags: list[str]  # without the "NAME:" part, "latest" included
    manifest_digest: str
    manifest_size: int
    config_desc: Desc
    layers: list[Desc]
    config: dict[str, Any]
    meta: BackupMeta

    def all_blobs(self) -> list[Desc]:
        """Every blob the backup needs: config, layers, file index, volumes."""
        return [self.config_desc, *self.layers, *([self.meta.index] if self.meta.index else []),
                *(v.blob for v in self.meta.volumes)]

    @property
    def tag(self) -> str:
        """The time tag (the first that is not "latest")."""
        return next((t for t in self.tags if t != "latest"), self.tags[0] if self.tags else "")

    @property
    def size(self) -> int:
        return sum(d.size for d in self.layers) + sum(v.blob.size for v in self.meta.volumes)


def parse_oci(dest: str, *, with_ref: bool) -> tuple[str, str, str]:
    """``oci:DIR`` -> (DIR, "", ""); ``oci:DIR:NAME[:TAG]`` -> (DIR, NAME, TAG or "latest")."""
    if not dest.startswith("oci:") or len(dest) == 4:
        raise InvalidArgument(f"invalid backup location {dest!r}: expected oci:DIR" + (":NAME[:TAG]" if with_ref else ""))
    rest = dest[4:]
    if not with_ref:
        return rest, "", ""
    path, sep, ref = rest.partition(":")
    name, _, tag = ref.partition(":")
    if not sep or not path or not _NAME_RE.match(name) or (tag and not _NAME_RE.match(tag)):
        raise InvalidArgument(f"invalid backup reference {dest!r}: expected oci:DIR:NAME[:TAG]")
    return path, name, tag or "latest"


class Layout:
    """An OCI image layout directory used as a backup store.  ``create`` makes DIR if missing."""

    def __init__(self, path: str, *, create: bool = False) -> None:
        self.path = os.path.abspath(path)
        self.blob_dir = os.path.join(self.path, "blobs", "sha256")
        marker = os.path.join(self.path, "oci-layout")
        if not os.path.exists(marker):
            if not create:
                if not os.path.isdir(self.path):
                    raise NotFound(f"backup directory {path} not found")
                raise InvalidContent(f"{path} is not an OCI image layout (no oci-layout file)")
            # what a creation killed before its oci-layout file leaves may be made again
            left = os.listdir(self.path) if os.path.isdir(self.path) else []
            no_blobs = not os.path.isdir(self.blob_dir) or not os.listdir(self.blob_dir)
            if not no_blobs or any(n not in ("index.json", "blobs") and not n.startswith(".") for n in left) or (
                    "index.json" in left and not _empty_index(os.path.join(self.path, "index.json"))):
                raise InvalidArgument(f"{path} is not empty and not an OCI image layout")
            os.makedirs(self.blob_dir, exist_ok=True)
            self._write_atomic("index.json", _dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}))
            self._write_atomic("oci-layout", _dumps({"imageLayoutVersion": "1.0.0"}))
        try:
            with open(marker, "rb") as f:
                if json.load(f).get("imageLayoutVersion") != "1.0.0":
                    raise InvalidContent(f"{path}: unsupported OCI layout version")
        except (OSError, ValueError, AttributeError) as e:
            raise InvalidContent(f"{path}: invalid oci-layout file: {e}") from e
        os.makedirs(self.blob_dir, exist_ok=True)

    # -- locking and temp space

    @contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive flock on the layout directory: one writer (backup, prune) at a time."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._sweep()
            yield
        finally:
            os.close(fd)

    def _sweep(self) -> None:
        """Under the lock: remove what a writer killed mid-way left (its scratch dir, a blob or an
        index.json not yet renamed).  Every writer holds the lock, so none of it is in use."""
        for n in os.listdir(self.path):
            if n.startswith((".kran-tmp-", ".blob-", ".index.json-", ".oci-layout-")):
                p = os.path.join(self.path, n)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    try:
                        os.unlink(p)
                    except FileNotFoundError:
                        pass

    @contextmanager
    def tempdir(self) -> Iterator[str]:
        """Scratch space on the layout's filesystem (blobs are renamed out of it), always removed."""
        d = tempfile.mkdtemp(prefix=".kran-tmp-", dir=self.path)
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def _write_atomic(self, name: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=self.path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(self.path, name))
            tmp = ""
        finally:
            if tmp:
                os.unlink(tmp)

    # -- blobs

    def blob_path(self, digest: str) -> str:
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexpart):
            raise InvalidContent(f"invalid digest in backup: {digest!r}")
        return os.path.join(self.blob_dir, hexpart)

    def has(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def put_file(self, path: str, digest: str | None = None) -> tuple[str, int]:
        """Move the file ``path`` (in :meth:`tempdir`) into the blobs; (digest, size).  A blob that is
        already there is kept (shared between backups) and ``path`` removed."""
        if digest is None:
            digest = "sha256:" + _sha256_file(path)
        size = os.path.getsize(path)
        final = self.blob_path(digest)
        if os.path.exists(final):
            os.unlink(path)
        else:
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            os.rename(path, final)
        return digest, size

    def put_bytes(self, data: bytes, media_type: str) -> Desc:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            fd, tmp = tempfile.mkstemp(prefix=".blob-", dir=self.path)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.rename(tmp, self.blob_path(digest))
                tmp = ""
            finally:
                if tmp:
                    os.unlink(tmp)
        return Desc(media_type=media_type, digest=digest, size=len(data))

    def read_blob(self, desc: Desc, what: str) -> bytes:
        """A small blob (manifest, config, index), verified against its digest and size."""
        try:
            with open(self.blob_path(desc.digest), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise InvalidContent(f"backup is incomplete: {what} blob {desc.digest} is missing") from None
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != desc.digest or len(data) != desc.size:
            raise DigestMismatch(f"backup is corrupt: {what} blob {desc.digest} does not match its digest (got {got})")
        return data

    def open_verified(self, desc: Desc, what: str) -> _VerifyingReader:
        try:
            f = open(self.blob_path(desc.digest), "rb")  # noqa: SIM115 - closed by the reader
        except FileNotFoundError:
            raise InvalidContent(f"backup chain is broken: {what} blob {desc.digest} is missing") from None
        return _VerifyingReader(f, desc, what)

    def blobs(self) -> list[str]:
        return ["sha256:" + n for n in os.listdir(self.blob_dir) if re.fullmatch(r"[0-9a-f]{64}", n)]

    # -- index.json

    def read_index(self) -> dict[str, Any]:
        try:
            with open(os.path.join(self.path, "index.json"), "rb") as f:
                idx = json.load(f)
            if not isinstance(idx, dict) or not isinstance(idx.get("manifests", []), list):
                raise ValueError("not an image index")
            return idx
        except FileNotFoundError:
            raise InvalidContent(f"{self.path} is not an OCI image layout (no index.json)") from None
        except (OSError, ValueError) as e:
            raise InvalidContent(f"{self.path}: invalid index.json: {e}") from e

    def write_index(self, idx: dict[str, Any]) -> None:
        self._write_atomic("index.json", _dumps(idx))

    def refs(self) -> dict[str, Desc]:
        """``NAME:TAG`` -> manifest descriptor, for every tagged manifest of the index."""
        out: dict[str, Desc] = {}
        for m in self.read_index().get("manifests") or []:
            ref = ((m or {}).get("annotations") or {}).get(REF_NAME)
            if ref and m.get("mediaType", OCI_MANIFEST) == OCI_MANIFEST:
                out[ref] = Desc.from_json(m)
        return out

    def add(self, manifest: Desc, refs: list[str]) -> None:
        """Tag ``manifest`` with ``refs`` in index.json (moving a tag that pointed elsewhere).
        Caller holds :meth:`locked`."""
        idx = self.read_index()
        keep = [m for m in idx.get("manifests") or [] if ((m.get("annotations") or {}).get(REF_NAME)) not in refs]
        for r in refs:
            keep.append({**manifest.to_json(), "annotations": {REF_NAME: r}})
        idx.update({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": keep})
        self.write_index(idx)

    # -- backups

    def load(self, name: str, tag: str) -> Backup:
        refs = self.refs()
        desc = refs.get(f"{name}:{tag}")
        if desc is None:
            raise NotFound(f"backup {name}:{tag} not found in {self.path}")
        tags = [r.split(":", 1)[1] for r, d in refs.items() if d.digest == desc.digest and r.split(":", 1)[0] == name]
        return self._backup(name, sorted(tags), desc)

    def _backup(self, name: str, tags: list[str], desc: Desc) -> Backup:
        try:
            man = json.loads(self.read_blob(desc, "manifest"))
            cdesc = Desc.from_json(man["config"])
            layers = [Desc.from_json(x) for x in man.get("layers") or []]
            cfg = json.loads(self.read_blob(cdesc, "config"))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidContent(f"backup {name}:{tags[0] if tags else '?'} is corrupt: {e}") from e
        if not isinstance(cfg, dict) or BACKUP_KEY not in cfg:
            raise InvalidContent(f"{name}: not a kran backup (its config has no {BACKUP_KEY!r} key)")
        return Backup(name=name, tags=tags, manifest_digest=desc.digest, manifest_size=desc.size, config_desc=cdesc,
                      layers=layers, config=cfg, meta=BackupMeta.from_json(cfg[BACKUP_KEY]))

    def all(self) -> list[Backup]:
        """Every backup (one per manifest and name), newest first within each name."""
        by: dict[tuple[str, str], list[str]] = {}
        descs: dict[str, Desc] = {}
        for ref, d in self.refs().items():
            name, _, tag = ref.partition(":")
            by.setdefault((name, d.digest), []).append(tag)
            descs[d.digest] = d
        out = [self._backup(n, sorted(t), descs[dg]) for (n, dg), t in by.items()]
        out.sort(key=lambda b: (b.name, b.meta.created), reverse=True)
        out.sort(key=lambda b: b.name)
        return out


class _VerifyingReader:
    """A blob read to its end while hashed; :meth:`check` raises if it was not what its descriptor says."""

    def __init__(self, f: BinaryIO, desc: Desc, what: str) -> None:
        self.f, self.desc, self.what = f, desc, what
        self.hash = hashlib.sha256()
        self.n = 0

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.hash.update(b)
        self.n += len(b)
        return b

    def readinto(self, buf: bytearray | memoryview) -> int:
        b = self.read(len(buf))
        buf[: len(b)] = b
        return len(b)

    def check(self) -> None:
        while self.read(_CHUNK):
            pass
        got = "sha256:" + self.hash.hexdigest()
        if got != self.desc.digest or self.n != self.desc.size:
            raise DigestMismatch(f"backup is corrupt: {self.what} blob {self.desc.digest} does not match its digest")

    def close(self) -> None:
        self.f.close()


def _empty_index(path: str) -> bool:
    """An index.json this module writes first when it makes a layout (and nothing else's)."""
    try:
        with open(path, "rb") as f:
            return json.load(f) == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    except (OSError, ValueError):
        return False


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()
