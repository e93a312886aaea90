"""Storage: the content store (blobs), the layer store (unpacked layers) and their database.

``Store(root)`` opens a state root::

    kran.db              SQLite (WAL)
    blobs/sha256/<hex>   content-addressed blobs
    layers/<hex>/diff    unpacked layers, keyed by chain ID
    tmp/                 work in progress; anything here after a crash is garbage
    lock                 flock: shared while creating content, exclusive for garbage collection
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property


class Store:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.tmp = os.path.join(self.root, "tmp")
        self._lock_fd: int | None = None
        self._lock_depth = 0

    @cached_property
    def db(self) -> sqlite3.Connection:
        from kran.storage.db import connect

        os.makedirs(self.root, 0o711, exist_ok=True)
        return connect(os.path.join(self.root, "kran.db"))

    @cached_property
    def blobs(self):  # noqa: ANN201 - lazy import keeps `kran images` fast
        from kran.storage.blobs import BlobStore

        os.makedirs(self.tmp, 0o700, exist_ok=True)
        return BlobStore(self.root, self.tmp)

    @cached_property
    def layers(self):  # noqa: ANN201
        from kran.storage.layers import LayerStore

        os.makedirs(self.tmp, 0o700, exist_ok=True)
        return LayerStore(self.root, self.tmp, self.db, sync=os.environ.get("KRAN_NOSYNC") != "1")

    def close(self) -> None:
        """Close the database connection and the lock file, if they were opened (a long-lived
        process such as the API server must not leave one of each behind per use)."""
        db = self.__dict__.pop("db", None)
        self.__dict__.pop("layers", None)  # holds the same connection
        if db is not None:
            db.close()
        if self._lock_fd is not None and self._lock_depth == 0:
            os.close(self._lock_fd)
            self._lock_fd = None

    def workdir(self, prefix: str = "work-") -> str:
        os.makedirs(self.tmp, 0o700, exist_ok=True)
        return tempfile.mkdtemp(prefix=prefix, dir=self.tmp)

    # -- locking -------------------------------------------------------------------------------

    def _lockfile(self) -> int:
        if self._lock_fd is None:
            os.makedirs(self.root, 0o711, exist_ok=True)
            self._lock_fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._lock_fd

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the store's shared lock while creating content (blobs, layers, tmp files).

        On entry, if no other kran process is writing, leftovers of crashed ones are collected.
        """
        fd = self._lockfile()
        if self._lock_depth == 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                try:
                    self._recover()
                finally:
                    fcntl.flock(fd, fcntl.LOCK_SH)
            except BlockingIOError:
                fcntl.flock(fd, fcntl.LOCK_SH)
        marker = None
        if self._lock_depth == 0:
            # A marker in tmp/ for the duration of the operation: if this process dies, the next
            # writer finds it and collects whatever the operation had written but not registered.
            os.makedirs(self.tmp, 0o700, exist_ok=True)
            mfd, marker = tempfile.mkstemp(prefix=f"op-{os.getpid()}-", dir=self.tmp)
            os.close(mfd)
        self._lock_depth += 1
        ok = False
        try:
            yield
            ok = True
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0:
                if ok and marker:
                    os.unlink(marker)
                fcntl.flock(fd, fcntl.LOCK_UN)
                if not ok:
                    # Failed: collect what it left now, unless another writer is busy (then later).
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        pass
                    else:
                        try:
                            self._recover()
                        finally:
                            fcntl.flock(fd, fcntl.LOCK_UN)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store's exclusive lock (garbage collection): no other process creates content."""
        fd = self._lockfile()
        if self._lock_depth:
            raise RuntimeError("exclusive() inside writing()")
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            self._recover()
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _recover(self) -> None:
        """Under the exclusive lock: remove what crashed writers left (cheap when nothing did)."""
        try:
            left = os.listdir(self.tmp)
        except FileNotFoundError:
            return
        if not left:
            return
        from kran.sys.fsutil import unmount_under

        unmount_under(self.tmp)  # a crashed `rm` may have left a mount in its trash
        for name in left:
            p = os.path.join(self.tmp, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
        self.collect_orphans()

    def collect_orphans(self) -> tuple[int, int]:
        """Remove unregistered layer dirs and unreferenced blobs.  Caller holds the exclusive lock."""
        layers = self.layers.orphans()
        for p in layers:
            self.layers._discard(p)
        used = set()
        for (d,) in self.db.execute(
            "SELECT manifest FROM images UNION SELECT id FROM images UNION SELECT blob FROM image_layers"
        ):
            used.add(d)
        blobs = [d for d in self.blobs.all() if d not in used]
        for d in blobs:
            self.blobs.delete(d)
        return len(layers), len(blobs)
