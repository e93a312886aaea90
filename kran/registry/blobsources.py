"""Where kran last saw each blob on a registry: the candidates for a cross-repository mount.

Glossary: a *source* is (registry domain, repository) known to hold a blob, because kran pushed
the blob there, mounted it there, or found it already there.  The OCI distribution spec lets a
push ask the registry to link a blob from another repository of the same registry
(``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>``, "Mounting a blob from another
repository") instead of uploading it, but the client has to name that other repository: the
registry does not say where a blob lives.  Docker keeps the same knowledge in its
"v2 metadata" per layer.

Lifecycle: the push reads ``sources`` before uploading, ``remember``s every blob the target
repository holds once the manifest is in, and ``forget``s a source a mount from it failed.

The table is kept apart from the image rows on purpose: a layer outlives the tag it came with
(``rmi`` drops an image's repo digests with its last tag of that repository), and the knowledge
stays true as long as the registry keeps the blob.  Rows of blobs that are gone locally are
harmless (a later push of the same digest can use them) and few (one per pushed blob and repo).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

from kran.storage.db import transaction

# Created here rather than in kran.storage.db's schema: only the push reads or writes it, and a
# store made by an older kran gains it on first use without a schema migration.
_TABLE = """
CREATE TABLE IF NOT EXISTS registry_blobs(
    domain TEXT NOT NULL,   -- registry host as in references: docker.io, 127.0.0.1:5000
    repo   TEXT NOT NULL,   -- repository path in it: library/busybox
    blob   TEXT NOT NULL,   -- sha256:...
    seen   REAL NOT NULL,   -- last time kran saw it there (newest sources are tried first)
    PRIMARY KEY(blob, domain, repo)
)"""


class BlobSources:
    """The ``registry_blobs`` table of one store database."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._ready = False

    def _ensure(self) -> None:
        if not self._ready:
            self.db.execute(_TABLE)
            self._ready = True

    def sources(self, domain: str, blob: str, *, exclude: str = "") -> list[str]:
        """Repositories of ``domain`` known to hold ``blob``, most recently seen first."""
        self._ensure()
        rows = self.db.execute(
            "SELECT repo FROM registry_blobs WHERE blob=? AND domain=? AND repo<>? ORDER BY seen DESC, repo",
            (blob, domain, exclude),
        )
        return [str(r[0]) for r in rows]

    def remember(self, domain: str, repo: str, blobs: Iterable[str]) -> None:
        self._ensure()
        now = time.time()
        with transaction(self.db):
            self.db.executemany(
                "INSERT OR REPLACE INTO registry_blobs(domain, repo, blob, seen) VALUES (?,?,?,?)",
                [(domain, repo, b, now) for b in dict.fromkeys(blobs)],
            )

    def forget(self, domain: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Drop (repo, blob) sources a mount showed to be wrong (the blob was deleted there)."""
        self._ensure()
        with transaction(self.db):
            self.db.executemany(
                "DELETE FROM registry_blobs WHERE domain=? AND repo=? AND blob=?",
                [(domain, repo, b) for repo, b in pairs],
            )
