"""Layer store: one unpacked, read-only directory per layer, shared by every image that has it.

``layers/<chain-id hex>/diff`` holds exactly the files of that layer (overlayfs whiteouts and
opaque dirs in kernel form), so a rootfs is an overlay mount of these directories.  A layer is
keyed by its chain ID (OCI image-spec config.md), which names the layer *and* everything below it.

Lifecycle: unpack into ``tmp/`` (verifying the diff ID while reading), syncfs, rename into place,
register in SQLite.  A crash leaves at worst an unregistered directory that ``Store.gc`` removes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sqlite3
import tempfile
from typing import BinaryIO

from kran.errors import DigestMismatch
from kran.storage.db import transaction


class _HashingReader:
    """Hashes everything read through it (the diff ID is the sha256 of the uncompressed tar)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        b = self.raw.read(n)
        self.hash.update(b)
        return b

    def readinto(self, buf: bytearray | memoryview) -> int:
        b = self.read(len(buf))
        buf[: len(b)] = b
        return len(b)

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


class LayerStore:
    def __init__(self, root: str, tmp: str, db: sqlite3.Connection, *, sync: bool = True) -> None:
        self.dir = os.path.join(root, "layers")
        self.tmp = tmp
        self.db = db
        self.sync = sync
        os.makedirs(self.dir, exist_ok=True)

    def path(self, chain_id: str) -> str:
        """The directory holding the layer's files (an overlay lowerdir)."""
        return os.path.join(self.dir, chain_id.split(":", 1)[1], "diff")

    def size(self, chain_id: str) -> int | None:
        row = self.db.execute("SELECT size FROM layers WHERE chain_id=?", (chain_id,)).fetchone()
        return None if row is None else int(row[0])

    def unpack(self, chain_id: str, parent: str | None, diff_id: str, blob: BinaryIO) -> int:
        """Unpack a (maybe compressed) layer blob as ``chain_id``; returns the layer's size.

        Bytes from outside: the uncompressed stream must hash to ``diff_id``, else nothing is kept.
        """
        size = self.size(chain_id)
        if size is not None and os.path.isdir(self.path(chain_id)):
            return size
        from kran.storage.layertar import apply_layer, open_decompressed

        work = tempfile.mkdtemp(prefix="layer-", dir=self.tmp)
        try:
            os.mkdir(os.path.join(work, "diff"), 0o755)
            reader = _HashingReader(open_decompressed(blob))
            stats = apply_layer(reader, os.path.join(work, "diff"))
            reader.drain()
            got = "sha256:" + reader.hash.hexdigest()
            if got != diff_id:
                raise DigestMismatch(f"layer content does not match its diff ID: expected {diff_id}, got {got}")
            if self.sync:
                from kran.sys.fsutil import syncfs

                syncfs(work)
            final = os.path.dirname(self.path(chain_id))
            try:
                os.rename(work, final)
                work = ""
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                # another kran process unpacked the same layer first: keep theirs
            with transaction(self.db):
                self.db.execute(
                    "INSERT OR IGNORE INTO layers(chain_id, diff_id, parent, size) VALUES (?,?,?,?)",
                    (chain_id, diff_id, parent, stats.bytes),
                )
            return self.size(chain_id) or stats.bytes
        finally:
            if work:
                shutil.rmtree(work, ignore_errors=True)

    def remove_unused(self) -> list[str]:
        """Delete layers no image references; returns their chain IDs.  Caller holds the GC lock."""
        with transaction(self.db):
            rows = self.db.execute(
                "SELECT chain_id FROM layers WHERE chain_id NOT IN (SELECT chain_id FROM image_layers)"
            ).fetchall()
            gone = [r[0] for r in rows]
            self.db.executemany("DELETE FROM layers WHERE chain_id=?", [(c,) for c in gone])
        for c in gone:
            self._discard(os.path.dirname(self.path(c)))
        return gone

    def _discard(self, path: str) -> None:
        # Rename first (atomic), then delete: a crash mid-delete leaves only tmp/ garbage.
        trash = tempfile.mkdtemp(prefix="trash-", dir=self.tmp)
        try:
            os.rename(path, os.path.join(trash, "x"))
        except FileNotFoundError:
            pass
        shutil.rmtree(trash, ignore_errors=True)

    def orphans(self) -> list[str]:
        """Directories under layers/ that no database row names (left by a crash)."""
        known = {r[0].split(":", 1)[1] for r in self.db.execute("SELECT chain_id FROM layers")}
        return [os.path.join(self.dir, n) for n in os.listdir(self.dir) if n not in known]
