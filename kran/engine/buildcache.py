"""Which images the build cache points at (small: `kran images` reads it on every call)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kran.engine import Engine


def intermediate_ids(engine: Engine) -> set[str]:
    """Images the build cache points at: Docker's "intermediate" images (``images`` shows them
    only with ``-a``, and they are not "dangling" while a build may reuse them)."""
    try:
        with open(os.path.join(engine.root, "build-cache.json")) as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        return set()
    return {v for v in data.values() if isinstance(v, str)} if isinstance(data, dict) else set()
