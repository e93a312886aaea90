"""Registry errors: kran's vocabulary (kran.errors) specialised with the distribution spec's codes.

A registry answers a failure with ``{"errors": [{"code": "MANIFEST_UNKNOWN", "message": ...}]}``
(distribution spec, "Error Codes").  The code, not the text, decides the class; the text is kept
for the message, formatted as Docker's errcode does (``manifest unknown: manifest unknown``).
"""

from __future__ import annotations

import json

from kran.errors import DigestMismatch, KranError, NotFound, Unavailable


class RegistryError(KranError):
    """A registry answered with an error (``status`` HTTP status, ``code`` first spec error code)."""

    def __init__(self, msg: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(msg)
        self.status = status
        self.code = code


class Unauthorized(RegistryError):
    """401/403, or credentials are needed and none (or wrong ones) are known."""


class NameUnknown(RegistryError, NotFound):
    """The repository does not exist (``NAME_UNKNOWN``)."""


class ManifestUnknown(RegistryError, NotFound):
    """No manifest for that tag or digest (``MANIFEST_UNKNOWN``)."""


class BlobUnknown(RegistryError, NotFound):
    pass


class Unreachable(Unavailable):
    """No endpoint of the registry answered (connection, TLS or protocol failure)."""


class RegistryDigestMismatch(DigestMismatch):
    """Bytes from the registry do not match the digest that names them."""


def _code_text(code: str) -> str:
    return code.lower().replace("_", " ")


def from_response(status: int, body: bytes, what: str = "") -> RegistryError:
    """Build the error for a failed response (pure: status + body)."""
    code, message = "", ""
    try:
        doc = json.loads(body or b"{}")
        errs = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errs, list) and errs and isinstance(errs[0], dict):
            code = str(errs[0].get("code", ""))
            message = str(errs[0].get("message", ""))
    except (ValueError, UnicodeDecodeError):
        pass
    if code:
        text = f"{_code_text(code)}: {message}" if message else _code_text(code)
    elif status == 401:
        code, text = "UNAUTHORIZED", "unauthorized: authentication required"
    elif status == 404:
        text = f"not found{': ' + what if what else ''}"
    else:
        text = f"unexpected status {status}{' from ' + what if what else ''}"
    cls: type[RegistryError] = RegistryError
    if code in ("UNAUTHORIZED", "DENIED") or status in (401, 403):
        cls = Unauthorized
    elif code == "NAME_UNKNOWN":
        cls = NameUnknown
    elif code in ("MANIFEST_UNKNOWN", "TAG_UNKNOWN") or (status == 404 and not code and "manifest" in what):
        cls = ManifestUnknown
    elif code == "BLOB_UNKNOWN" or (status == 404 and not code):
        cls = BlobUnknown
    return cls(text, status=status, code=code)
