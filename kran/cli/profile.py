"""``run/create --profile NAME``: reusable policy from ``NAME.toml`` in the config dir's ``profiles/``
(next to config.toml: ``/etc/kran/profiles``, or beside the file ``KRAN_CONFIG`` names; rootless:
``$XDG_CONFIG_HOME/kran/profiles``).

A profile holds run flags by their long names, as if typed before the command line's, e.g.
``browser.toml``::

    lockdown = true
    restart-fresh = true
    restart = "always"
    memory = "1g"
    schedule = "Mon-Fri 12:00-13:00,17:00-23:00"

A flag typed on the command line wins over the profile's (a list flag typed there replaces the
profile's list).  Keys must be flags of the command (``name`` and ``profile`` are not allowed: a
profile is for many containers); types follow the flag: booleans, integers, strings (a number is
taken for a string flag such as ``cpus``), lists of strings (or one string).  Every mistake is one
line naming the file and the key.  The profile is applied by the CLI, which knows the flags; the
engine records its name in ``HostConfig.KranProfile``.
"""

from __future__ import annotations

import os
import re
from typing import Any

from kran.cli.flags import Flag, Parsed
from kran.errors import InvalidArgument

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_NOT_IN_PROFILES = ("name", "profile")


class ProfileError(InvalidArgument):
    from_daemon = False  # the CLI's own file, not the daemon's answer


def directory(env: dict[str, str] | None = None) -> str:
    from kran import config

    return os.path.join(os.path.dirname(config.path(env)) or ".", "profiles")


def load(name: str, env: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """(path, table) of profile ``name``."""
    import tomllib

    if not _NAME.match(name):
        raise ProfileError(f"invalid profile name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    path = os.path.join(directory(env), name + ".toml")
    try:
        with open(path, "rb") as f:
            return path, tomllib.load(f)
    except FileNotFoundError:
        raise ProfileError(f"profile {name} not found: no file {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"invalid profile {path}: {e}") from None
    except OSError as e:
        raise ProfileError(f"cannot read profile {path}: {e.strerror or e}") from None


def _kind(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(v), type(v).__name__)


def _value(path: str, key: str, f: Flag, v: Any) -> Any:
    def wrong(want: str) -> ProfileError:
        return ProfileError(f"invalid profile {path}: key {key!r} wants {want}, got {_kind(v)}")

    if f.kind == "bool":
        if not isinstance(v, bool):
            raise wrong("a boolean (true or false)")
        return v
    if f.kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise wrong("an integer")
        return v
    if f.kind == "list":
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise wrong("a list of strings")
        return list(items)
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise wrong("a string")
    return str(v)


def apply(p: Parsed, flags: tuple[Flag, ...]) -> None:
    """Fill ``p`` (a parsed run/create) from its ``--profile``, below what was typed."""
    path, table = load(p.profile)
    by_long = {f.long: f for f in flags}
    for key, v in table.items():
        f = by_long.get(key)
        if f is None or f.dest not in p.opts or key in _NOT_IN_PROFILES or f.hidden:
            raise ProfileError(f"invalid profile {path}: unknown key {key!r} (keys are run flags, e.g. lockdown)")
        val = _value(path, key, f, v)
        if f.dest not in p.given:
            p.opts[f.dest] = val
