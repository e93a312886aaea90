"""kran's config file: ``/etc/kran/config.toml``, or the file ``KRAN_CONFIG`` names.

Read only by the commands that need a setting (registries, the default bridge), never at start-up.
"""

from __future__ import annotations

import os
from typing import Any

DEFAULT_CONFIG = "/etc/kran/config.toml"


def path(env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("KRAN_CONFIG") or DEFAULT_CONFIG


def load(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The parsed file ({} if there is none); InvalidArgument names the file when it is malformed."""
    import tomllib

    from kran.errors import InvalidArgument

    p = path(env)
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, OSError) as e:
        raise InvalidArgument(f"invalid config file {p}: {e}") from e
