"""Credentials in Docker's ``config.json`` (``$DOCKER_CONFIG/config.json``, default ``~/.docker``).

``{"auths": {"myhost:5000": {"auth": base64("user:password")}}}``; Docker Hub's key is
``https://index.docker.io/v1/``.  Other keys of the file are kept untouched on write.  Keys may
carry a scheme or path (``https://myhost:5000/v1/``): they match by host.
Credential helpers (``credsStore``) are not supported.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    username: str
    password: str

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def config_path(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    d = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(d, "config.json")


def _norm(key: str) -> str:
    k = key.split("://", 1)[-1]
    return k.split("/", 1)[0]


def _read(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as e:
        from kran.errors import InvalidArgument

        raise InvalidArgument(f"{path}: invalid JSON: {e}") from e
    return doc if isinstance(doc, dict) else {}


def lookup(key: str, path: str | None = None) -> Credentials | None:
    """Credentials stored for registry ``key`` (see kran.registry.config.auth_key), or None."""
    auths = _read(path or config_path()).get("auths")
    if not isinstance(auths, dict):
        return None
    want = _norm(key)
    for k in sorted(auths, key=lambda k: k != key):  # an exact key first
        entry = auths[k]
        if _norm(k) != want or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, pw = base64.b64decode(str(entry["auth"])).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
            return Credentials(username=user, password=pw)
        if entry.get("username"):
            return Credentials(username=str(entry["username"]), password=str(entry.get("password", "")))
    return None


def _write(path: str, doc: dict[str, object]) -> None:
    d = os.path.dirname(path)
    os.makedirs(d, 0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config.json-", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
        tmp = ""
    finally:
        if tmp:
            os.unlink(tmp)


def store(key: str, creds: Credentials, path: str | None = None) -> None:
    path = path or config_path()
    doc = _read(path)
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    for k in [k for k in auths if _norm(k) == _norm(key) and k != key]:
        del auths[k]
    entry = auths.get(key) if isinstance(auths.get(key), dict) else {}
    entry = {k: v for k, v in entry.items() if k not in ("username", "password")}  # type: ignore[union-attr]
    entry["auth"] = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    auths[key] = entry
    doc["auths"] = auths
    _write(path, doc)


def remove(key: str, path: str | None = None) -> bool:
    """Forget the credentials of ``key``; False if there were none."""
    path = path or config_path()
    doc = _read(path)
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return False
    gone = [k for k in auths if _norm(k) == _norm(key)]
    if not gone:
        return False
    for k in gone:
        del auths[k]
    _write(path, doc)
    return True
