"""kran's one error vocabulary.

Every failure a user can see is one of these.  Only the front ends (``kran.cli.main`` and the
API's error handler) read ``exit_code`` / ``http_status``; everything else raises and keeps the
cause (``raise X(...) from e``).  Messages use Docker's wording where Docker has one.
"""

from __future__ import annotations


class KranError(Exception):
    """Base of all errors kran reports to a user."""

    exit_code = 125  # docker: 125 when the engine itself fails
    http_status = 500
    #: True for errors the Docker CLI would print behind "Error response from daemon: ".
    from_daemon = True


class InvalidArgument(KranError):
    http_status = 400


class InvalidReference(InvalidArgument):
    """A malformed image reference (docker: ``invalid reference format``)."""

    from_daemon = False


class NotFound(KranError):
    http_status = 404


class ImageNotFound(NotFound):
    pass


class Conflict(KranError):
    http_status = 409


class Forbidden(KranError):
    """The request is understood but not allowed (docker's 403: pre-defined networks, active endpoints)."""

    http_status = 403


class InvalidContent(KranError):
    """Bytes from outside (an archive, a layer, a registry) are malformed or do not verify."""

    http_status = 400


class DigestMismatch(InvalidContent):
    pass


class UnsafePath(InvalidContent):
    """A path from outside would land outside its root (traversal, symlink escape)."""


class Unavailable(KranError):
    http_status = 503


class CannotInvoke(KranError):
    exit_code = 126


class CommandNotFound(KranError):
    exit_code = 127
