"""Registry authentication state (pure): challenges, bearer tokens and their scopes.

Glossary (distribution docs, "Token Authentication Specification"): a *challenge* is the
``WWW-Authenticate`` header of a 401; a *scope* names an access (``repository:library/busybox:pull``);
a *token* from the challenge's realm grants the scopes it was asked for, for ``expires_in`` seconds.
kran.registry.client does the HTTP; this module only keeps and parses.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

from kran.registry.errors import Unauthorized

#: a token response without ``expires_in`` lasts 60 s (token spec, "Token Response Fields")
TOKEN_LIFETIME = 60.0
TOKEN_MARGIN = 10.0
MAX_TOKENS = 16


@dataclass
class AuthState:
    kind: str = ""  # "" (none needed yet) | "basic" | "bearer"
    realm: str = ""
    service: str = ""
    #: bearer tokens by the scopes they were asked for, with their expiry (time.monotonic()).
    #: Several at once: a push asks for ``B:pull,push`` and, for each mount, ``B:pull,push`` plus
    #: ``A:pull``; one slot would make parallel layer uploads take each other's token away.
    tokens: dict[frozenset[str], tuple[str, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cached(self, scopes: frozenset[str]) -> str:
        """A live token granted for (at least) ``scopes``, or ""; caller holds ``lock``."""
        now = time.monotonic()
        for key, (token, expires) in list(self.tokens.items()):
            if expires <= now:
                del self.tokens[key]
            elif scopes <= key:
                return token
        return ""

    def keep(self, scopes: frozenset[str], token: str, expires_in: float) -> None:
        """Caller holds ``lock``."""
        if len(self.tokens) >= MAX_TOKENS:
            del self.tokens[min(self.tokens, key=lambda k: self.tokens[k][1])]
        # a little early, so a token does not expire between this check and the registry's
        self.tokens[scopes] = (token, time.monotonic() + max(expires_in - TOKEN_MARGIN, 1.0))


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="x",service="y",scope="a b"`` -> ("bearer", {...}) (RFC 7235, simplified)."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,":
            i += 1
        j = rest.find("=", i)
        if j < 0:
            break
        key = rest[i:j].strip().lower()
        i = j + 1
        if i < n and rest[i] == '"':
            i += 1
            val = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                val.append(rest[i])
                i += 1
            i += 1
            params[key] = "".join(val)
        else:
            j = rest.find(",", i)
            j = n if j < 0 else j
            params[key] = rest[i:j].strip()
            i = j
    return scheme.lower(), params


def parse_token_response(body: bytes) -> tuple[str, float]:
    """(token, lifetime in seconds) of a token server's answer (``token`` or OAuth's ``access_token``)."""
    try:
        doc = json.loads(body)
        token = doc.get("token") or doc.get("access_token")
        expires_in = doc.get("expires_in")
    except (ValueError, AttributeError):
        token, expires_in = None, None
    if not isinstance(token, str) or not token:
        raise Unauthorized("unauthorized: the token server returned no token", status=401)
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = TOKEN_LIFETIME
    return token, float(expires_in)
