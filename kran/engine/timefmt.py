"""Times as Docker prints them."""

from __future__ import annotations

import time


def rfc3339(ts: float) -> str:
    """Go's time.RFC3339Nano in UTC, as Docker prints ``Created`` (trailing zeros of the fraction dropped)."""
    ns = int(round(ts * 1e9))
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    f = f"{frac:09d}".rstrip("0")
    return base + (f".{f}" if f else "") + "Z"
