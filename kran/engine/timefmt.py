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


def human_duration(seconds: float) -> str:
    """go-units ``HumanDuration``: "Less than a second", "About a minute", "3 weeks", ...

    ``seconds`` becomes a time.Duration (integer nanoseconds) first, so the thresholds fall exactly
    where Go's do: hours round half up, years truncate.
    """
    ns = round(seconds * 1e9)
    if ns < 1_000_000_000:
        return "Less than a second"
    secs = ns // 1_000_000_000
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = ns // 60_000_000_000
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hour_ns = 3_600_000_000_000
    # int(d.Hours() + 0.5), where Hours() = whole hours + remainder / 3600e9 as a float64.
    hours = int(ns // hour_ns + (ns % hour_ns) / 3.6e12 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{ns // hour_ns // 24 // 365} years"
