"""The engine: kran's use cases (images, containers, ...), owning state and ordering.

Front ends (``kran.cli``, ``kran.api``) call these functions and only format what they return.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kran.image.store import ImageStore
    from kran.storage import Store

DEFAULT_ROOT = "/var/lib/kran"


def default_root() -> str:
    return os.environ.get("KRAN_ROOT") or DEFAULT_ROOT


class Engine:
    """One state root and the stores inside it.  Cheap to create: everything opens lazily.

    Used by one thread at a time (its database connection and its lock file are not shared between
    threads).  A short-lived CLI may leave it to the process exit; a long-lived one (the API server)
    closes it, or uses it as a context manager.
    """

    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or default_root())

    def close(self) -> None:
        """Release what the engine opened (database connection, lock file); it reopens them lazily
        if used again."""
        self.__dict__.pop("images", None)
        store = self.__dict__.pop("store", None)
        if store is not None:
            store.close()

    def reusable(self) -> bool:
        """False if a database transaction was left open (a pool then closes the engine rather
        than lend it again)."""
        store = self.__dict__.get("store")
        db = store.__dict__.get("db") if store is not None else None
        return db is None or not db.in_transaction

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @cached_property
    def store(self) -> Store:
        from kran.storage import Store

        return Store(self.root)

    @cached_property
    def images(self) -> ImageStore:
        from kran.image.store import ImageStore

        return ImageStore(self.store)

    def containers_using_image(self, image_id: str) -> list[tuple[str, bool]]:
        """(container ID, running) of every container made from ``image_id``."""
        if not os.path.exists(os.path.join(self.root, "kran.db")):
            return []
        if not self.store.db.execute("SELECT 1 FROM containers WHERE image_id=? LIMIT 1", (image_id,)).fetchone():
            return []
        from kran.engine.record import containers_using_image

        return containers_using_image(self, image_id)


def label_match(labels: dict[str, str], f: str) -> bool:
    """docker's ``label=KEY`` / ``label=KEY=VALUE`` filter on an object's labels."""
    k, sep, v = f.partition("=")
    return k in labels and (not sep or labels[k] == v)
