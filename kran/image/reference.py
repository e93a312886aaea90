"""Image references, parsed and normalised as Docker does (distribution/reference).

Grammar (distribution/reference, reference.go)::

    reference   := name [ ":" tag ] [ "@" digest ]
    name        := [domain '/'] path-component ['/' path-component]*
    domain      := host [':' port]
    tag         := [\\w][\\w.-]{0,127}
    digest      := algorithm ":" hex

``nginx`` normalises to ``docker.io/library/nginx`` and, for commands that need a tag,
``docker.io/library/nginx:latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kran.errors import InvalidReference

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"

_REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_ANCHORED_ID_RE = re.compile(r"^[a-f0-9]{64}$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_DIGEST_ALGOS = {"sha256": 64, "sha384": 96, "sha512": 128}


def validate_digest(digest: str) -> str:
    """Check an ``algorithm:hex`` digest (go-digest's Validate) and return it."""
    algo, sep, hexpart = digest.partition(":")
    if not sep or not hexpart or not re.fullmatch(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*", algo):
        raise InvalidReference("invalid checksum digest format")
    if algo not in _DIGEST_ALGOS:
        raise InvalidReference("unsupported digest algorithm")
    if len(hexpart) != _DIGEST_ALGOS[algo] or not re.fullmatch(r"[a-f0-9]+", hexpart):
        raise InvalidReference("invalid checksum digest length")
    return digest


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    """A normalised reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The full repository name, e.g. ``docker.io/library/nginx``."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def familiar_name(self) -> str:
        """Docker's short form of the repository: ``nginx``, ``user/app``, ``localhost:5000/app``."""
        if self.domain == DEFAULT_DOMAIN:
            if self.path.startswith(OFFICIAL_PREFIX) and "/" not in self.path[len(OFFICIAL_PREFIX) :]:
                return self.path[len(OFFICIAL_PREFIX) :]
            return self.path
        return self.name

    def familiar(self) -> str:
        s = self.familiar_name()
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def with_tag(self, tag: str) -> Reference:
        return Reference(domain=self.domain, path=self.path, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        return Reference(domain=self.domain, path=self.path, digest=digest)

    def tagged_or_latest(self) -> Reference:
        """Docker's TagNameOnly: a bare name gets ``:latest``."""
        if self.tag is None and self.digest is None:
            return self.with_tag(DEFAULT_TAG)
        return self


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i == -1 or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[i + 1 :]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def parse_normalized(s: str) -> Reference:
    """Docker's ParseNormalizedNamed: accept familiar forms, return the full reference.

    Raises InvalidReference with Docker's messages.
    """
    if _ANCHORED_ID_RE.match(s):
        raise InvalidReference(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_domain(s)
    remote = remainder
    for sep in (":", "@"):
        cut = remote.find(sep)
        if cut > -1:
            remote = remote[:cut]
    if remote.lower() != remote:
        raise InvalidReference(
            f"invalid reference format: repository name ({remote}) must be lowercase"
        )
    return _parse(f"{domain}/{remainder}")


def _parse(s: str) -> Reference:
    m = _REFERENCE_RE.match(s)
    if m is None:
        if not s:
            raise InvalidReference("repository name must have at least one component")
        if _REFERENCE_RE.match(s.lower()):
            raise InvalidReference("invalid reference format: repository name must be lowercase")
        raise InvalidReference("invalid reference format")
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if digest is not None:
        validate_digest(digest)
    domain, _, path = name.partition("/")
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def parse_tagged(s: str) -> Reference:
    """Parse a user's image name for commands that need a tag (pull, tag, rmi, run...)."""
    return parse_normalized(s).tagged_or_latest()


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.match(tag))


def looks_like_id(s: str) -> bool:
    """Whether ``s`` could be an image ID or its prefix (hex, optionally ``sha256:``)."""
    if s.startswith("sha256:"):
        s = s[7:]
    return 1 <= len(s) <= 64 and all(c in "0123456789abcdef" for c in s)
