"""Content store: blobs addressed by their sha256 digest (OCI image layout ``blobs/sha256/<hex>``).

Lifecycle of a write: bytes stream into a temp file under ``tmp/`` while being hashed; the digest
(and size, when known) is verified; the file is fsynced and renamed into place.  A reader never
sees a partial or unverified blob.  Trust boundary: ``ingest`` is where bytes from archives and
registries enter, and it verifies them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import BinaryIO

from kran.errors import DigestMismatch, InvalidContent, NotFound

CHUNK = 1 << 20


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise InvalidContent(f"invalid digest: {digest!r}")
    return hexpart


class BlobStore:
    """``root/blobs/sha256/<hex>`` plus a temp dir on the same filesystem."""

    def __init__(self, root: str, tmp: str) -> None:
        self.dir = os.path.join(root, "blobs", "sha256")
        self.tmp = tmp
        os.makedirs(self.dir, exist_ok=True)

    def path(self, digest: str) -> str:
        return os.path.join(self.dir, _hex(digest))

    def has(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        return os.stat(self.path(digest)).st_size

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def write(self, data: bytes, expected: str | None = None) -> str:
        import io

        digest, _ = self.ingest(io.BytesIO(data), expected=expected, size=len(data))
        return digest

    def ingest(self, src: BinaryIO, *, expected: str | None = None, size: int | None = None) -> tuple[str, int]:
        """Copy ``src`` to EOF into the store; verify ``expected`` digest and ``size`` if given.

        Returns (digest, size).  On a mismatch nothing is kept and DigestMismatch is raised.
        """
        if expected is not None:
            _hex(expected)
        fd, tmp = tempfile.mkstemp(prefix="blob-", dir=self.tmp)
        try:
            h = hashlib.sha256()
            n = 0
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = src.read(CHUNK)
                    if not chunk:
                        break
                    h.update(chunk)
                    out.write(chunk)
                    n += len(chunk)
                    if size is not None and n > size:
                        break
                out.flush()
                os.fsync(out.fileno())
            digest = "sha256:" + h.hexdigest()
            if size is not None and n != size:
                raise DigestMismatch(f"size mismatch for {expected or digest}: expected {size} bytes, got {n}")
            if expected is not None and digest != expected:
                raise DigestMismatch(f"digest mismatch: expected {expected}, got {digest}")
            os.rename(tmp, self.path(digest))
            tmp = ""
            return digest, n
        finally:
            if tmp:
                os.unlink(tmp)

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def all(self) -> list[str]:
        return ["sha256:" + n for n in os.listdir(self.dir) if len(n) == 64]
