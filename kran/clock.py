""""Now" for the engine and the monitor, with a clock tests can move.

``KRAN_CLOCK=/path/file``: when set, now() is the UNIX time (a float) written in that file, re-read on
every call, so a test can advance time for the engine and for running monitors by rewriting it.  Unset:
time.time().  Stdlib only -- the monitor imports this.
"""

from __future__ import annotations

import os
import time


def now() -> float:
    path = os.environ.get("KRAN_CLOCK")
    if not path:
        return time.time()
    try:
        with open(path, encoding="ascii") as f:
            return float(f.read().strip())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        # Imported here: the monitor's import path stays stdlib + kran.clock until something is wrong.
        from kran.errors import InvalidArgument

        raise InvalidArgument(f"KRAN_CLOCK={path}: cannot read a UNIX time from it: {_why(e)}") from e


def _why(e: Exception) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return "not a number"
