"""The image store: images, their layers and tags, on top of kran.storage.

An image is its config blob (whose digest is the image ID), a manifest blob, and an ordered list
of layers (blob + unpacked directory).  Tags map full references (``docker.io/library/busybox:latest``)
to image IDs; an image without tags is "dangling" (``<none>:<none>``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kran.errors import Conflict, ImageNotFound, InvalidContent, InvalidReference
from kran.image import reference as refs
from kran.storage.db import transaction

if TYPE_CHECKING:
    from kran.storage import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerBlob:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRecord:
    id: str
    manifest: str
    config: str  # JSON text
    created: float
    size: int
    added: float
    tags: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()


def parse_created(s: str) -> float:
    """RFC 3339 (as in image configs, maybe with nanoseconds) to a Unix time; 0 if absent/bad."""
    if not s:
        return 0.0
    from datetime import datetime

    t = s.strip().replace("Z", "+00:00")
    frac = ""
    if "." in t:
        head, rest = t.split(".", 1)
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tz = rest[:i], rest[i:]
        t = head + tz
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return 0.0
    return dt.timestamp() + (float("0." + frac) if frac else 0.0)


class ImageStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    # -- adding ------------------------------------------------------------------------------

    def add(
        self,
        *,
        config_bytes: bytes,
        layers: list[LayerBlob],
        manifest_bytes: bytes | None = None,
        tags: list[str] = (),  # type: ignore[assignment]
        repo_digests: list[str] = (),  # type: ignore[assignment]
    ) -> tuple[str, list[tuple[str, str]]]:
        """Register an image whose layer blobs are already in the content store.

        Unpacks missing layers (verifying each diff ID), writes the config and manifest blobs,
        then records image, layers and tags in one transaction.  Returns the image ID and the
        (tag, previous image ID) pairs whose tag moved to this image.
        Caller holds ``store.writing()``.
        """
        from kran.image.spec import OCI_CONFIG, OCI_MANIFEST, chain_ids

        try:
            cfg = json.loads(config_bytes)
            diff_ids = cfg["rootfs"]["diff_ids"]
            if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
                raise TypeError
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidContent("invalid image config: missing or malformed rootfs.diff_ids") from e
        if len(diff_ids) != len(layers):
            raise InvalidContent(
                f"image config lists {len(diff_ids)} layers but the manifest has {len(layers)}"
            )
        for d in diff_ids:
            refs.validate_digest(d) if d.startswith("sha256:") else None
            if not d.startswith("sha256:") or len(d) != 71:
                raise InvalidContent(f"invalid diff ID in image config: {d!r}")
        blobs = self.store.blobs
        image_id = blobs.write(config_bytes)
        if manifest_bytes is None:
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": image_id, "size": len(config_bytes)},
                "layers": [{"mediaType": lb.media_type, "digest": lb.digest, "size": lb.size} for lb in layers],
            }
            manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
        manifest_digest = blobs.write(manifest_bytes)
        chains = chain_ids(diff_ids)
        total = 0
        for i, (lb, chain) in enumerate(zip(layers, chains, strict=True)):
            with blobs.open(lb.digest) as f:
                total += self.store.layers.unpack(chain, chains[i - 1] if i else None, diff_ids[i], f)
        now = time.time()
        moved: list[tuple[str, str]] = []
        with transaction(self.db):
            self.db.execute(
                "INSERT OR IGNORE INTO images(id, manifest, config, created, size, added) VALUES (?,?,?,?,?,?)",
                (image_id, manifest_digest, config_bytes.decode(), parse_created(cfg.get("created", "")), total, now),
            )
            self.db.execute("DELETE FROM image_layers WHERE image_id=?", (image_id,))
            self.db.executemany(
                "INSERT INTO image_layers(image_id, idx, chain_id, blob, media_type, blob_size) VALUES (?,?,?,?,?,?)",
                [(image_id, i, c, lb.digest, lb.media_type, lb.size) for i, (lb, c) in enumerate(zip(layers, chains, strict=True))],
            )
            for t in tags:
                prev = self._tag_tx(image_id, t, now)
                if prev:
                    moved.append((t, prev))
            for d in repo_digests:
                self.db.execute("INSERT OR REPLACE INTO repo_digests(name, image_id) VALUES (?,?)", (d, image_id))
        return image_id, moved

    def _tag_tx(self, image_id: str, ref: str, now: float) -> str | None:
        row = self.db.execute("SELECT image_id FROM tags WHERE name=?", (ref,)).fetchone()
        if row and row[0] == image_id:
            return None
        self.db.execute("INSERT OR REPLACE INTO tags(name, image_id, added) VALUES (?,?,?)", (ref, image_id, now))
        return row[0] if row else None

    def tag(self, image_id: str, ref: str) -> str | None:
        with transaction(self.db):
            return self._tag_tx(image_id, ref, time.time())

    def untag(self, ref: str) -> None:
        with transaction(self.db):
            self.db.execute("DELETE FROM tags WHERE name=?", (ref,))

    def delete(self, image_id: str) -> None:
        """Forget an image (its tags go too).  Its layers and blobs are collected by ``gc``."""
        with transaction(self.db):
            self.db.execute("DELETE FROM images WHERE id=?", (image_id,))

    # -- reading -----------------------------------------------------------------------------

    def get(self, image_id: str) -> ImageRecord:
        row = self.db.execute(
            "SELECT id, manifest, config, created, size, added FROM images WHERE id=?", (image_id,)
        ).fetchone()
        if row is None:
            raise ImageNotFound(f"No such image: {image_id}")
        return ImageRecord(
            id=row[0], manifest=row[1], config=row[2], created=row[3], size=row[4], added=row[5],
            tags=tuple(r[0] for r in self.db.execute("SELECT name FROM tags WHERE image_id=? ORDER BY added, name", (image_id,))),
            digests=tuple(r[0] for r in self.db.execute("SELECT name FROM repo_digests WHERE image_id=? ORDER BY name", (image_id,))),
        )

    def all(self) -> list[ImageRecord]:
        """Every image with its tags, newest first (one query each, for ``kran images``)."""
        tags: dict[str, list[str]] = {}
        for name, iid in self.db.execute("SELECT name, image_id FROM tags ORDER BY added, name"):
            tags.setdefault(iid, []).append(name)
        digests: dict[str, list[str]] = {}
        for name, iid in self.db.execute("SELECT name, image_id FROM repo_digests ORDER BY name"):
            digests.setdefault(iid, []).append(name)
        return [
            ImageRecord(
                id=r[0], manifest=r[1], config="", created=r[2], size=r[3], added=r[4],
                tags=tuple(tags.get(r[0], ())), digests=tuple(digests.get(r[0], ())),
            )
            for r in self.db.execute("SELECT id, manifest, created, size, added FROM images ORDER BY created DESC, added DESC")
        ]

    def layers(self, image_id: str) -> list[tuple[str, str, str, int]]:
        """(chain_id, blob digest, media type, blob size) of each layer, bottom first."""
        return [
            (r[0], r[1], r[2], r[3])
            for r in self.db.execute(
                "SELECT chain_id, blob, media_type, blob_size FROM image_layers WHERE image_id=? ORDER BY idx",
                (image_id,),
            )
        ]

    def image_for_tag(self, ref: str) -> str | None:
        row = self.db.execute("SELECT image_id FROM tags WHERE name=?", (ref,)).fetchone()
        return row[0] if row else None

    def resolve(self, name: str) -> str:
        """Find an image by reference, ``name@digest``, full ID or unique ID prefix (Docker's GetImage)."""
        try:
            ref = refs.parse_normalized(name)
        except InvalidReference:
            if refs.looks_like_id(name):
                return self._by_prefix(name)
            raise
        if ref.digest and ref.tag is None:
            row = self.db.execute("SELECT image_id FROM repo_digests WHERE name=?", (str(ref),)).fetchone()
            if row:
                return str(row[0])
            if self.db.execute("SELECT 1 FROM images WHERE id=? OR manifest=?", (ref.digest, ref.digest)).fetchone():
                pass
        else:
            iid = self.image_for_tag(str(ref.tagged_or_latest()))
            if iid:
                return iid
        if refs.looks_like_id(name):
            try:
                return self._by_prefix(name)
            except ImageNotFound:
                pass
        raise ImageNotFound(f"No such image: {ref.tagged_or_latest().familiar()}")

    def _by_prefix(self, s: str) -> str:
        hexpart = s[7:] if s.startswith("sha256:") else s
        rows = self.db.execute(
            "SELECT id FROM images WHERE id >= ? AND id < ? LIMIT 2", ("sha256:" + hexpart, "sha256:" + hexpart + "g")
        ).fetchall()
        if not rows:
            raise ImageNotFound(f"No such image: {s}")
        if len(rows) > 1:
            raise Conflict(f"multiple IDs found with provided prefix: {hexpart}")
        return str(rows[0][0])

    def children_tags(self, image_id: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM tags WHERE image_id=?", (image_id,))]
