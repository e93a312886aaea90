"""Sizes and durations the way Docker prints and parses them (github.com/docker/go-units).

Pure, stdlib only, and cheap to import: ``kran images`` loads it on every run.
"""

from __future__ import annotations

import math
import re
import time

__all__ = [
    "bytes_size",
    "from_human_size",
    "human_duration",
    "human_size",
    "human_size_with_precision",
    "ram_in_bytes",
    "since",
]

_DECIMAL_ABBRS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY_ABBRS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
_DECIMAL_MAP = {"k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5}
_BINARY_MAP = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def _size_and_unit(size: float, base: float, abbrs: tuple[str, ...]) -> tuple[float, str]:
    i = 0
    while size >= base and i < len(abbrs) - 1:
        size /= base
        i += 1
    return size, abbrs[i]


def _go_g(value: float, precision: int) -> str:
    """Go's ``%.<precision>g``: the same digits as C's, but Go spells the non-finite values."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.{precision}g}"


def human_size_with_precision(size: float, precision: int) -> str:
    """go-units ``HumanSizeWithPrecision``: decimal units, ``%.<precision>g``, no space."""
    value, unit = _size_and_unit(float(size), 1000.0, _DECIMAL_ABBRS)
    return _go_g(value, precision) + unit


def human_size(size: float) -> str:
    """The SIZE column of ``docker images``/``ps -s``/``system df``: ``HumanSizeWithPrecision(n, 3)``.

    0 -> "0B", 1000 -> "1kB", 4261888 -> "4.26MB".  (go-units' own ``HumanSize`` uses 4 digits;
    the docker CLI passes 3.)
    """
    return human_size_with_precision(size, 3)


def bytes_size(size: float) -> str:
    """go-units ``BytesSize``: binary units, 4 significant digits ("1.5KiB", "17MiB")."""
    value, unit = _size_and_unit(float(size), 1024.0, _BINARY_ABBRS)
    return _go_g(value, 4) + unit


# strconv.ParseFloat's syntax (decimal, hex with a binary exponent, Inf/NaN).  Python's float()
# is more lenient (surrounding spaces, "1_000" without a base prefix), so check first.  Compiled on
# first use: listing images never parses a size.
_GO_FLOAT = (
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
    r"|0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?\d+"
    r"|(?i:inf|infinity|nan))"
)


def _parse_go_float(s: str) -> float:
    if not re.fullmatch(_GO_FLOAT, s):
        raise ValueError(f'strconv.ParseFloat: parsing "{s}": invalid syntax')
    body = s.lstrip("+-")
    if body[:2] in ("0x", "0X"):
        value = float.fromhex(body)
        if s.startswith("-"):
            value = -value
    else:
        value = float(s)
    if math.isinf(value) and body.lower() not in ("inf", "infinity"):
        raise ValueError(f'strconv.ParseFloat: parsing "{s}": value out of range')
    return value


def _parse_size(size_str: str, umap: dict[str, int]) -> int:
    """go-units ``parseSize`` (v0.5): number, optional space, optional k/m/g/t/p with optional b/ib."""
    num, sep, sfx = size_str.partition(" ")
    if not sep:
        # No space between number and suffix: the suffix starts after the last digit or dot.
        cut = max(size_str.rfind(c) for c in "0123456789.")
        if cut == -1:
            raise ValueError(f"invalid size: '{size_str}'")
        num, sfx = size_str[: cut + 1], size_str[cut + 1 :]
    size = _parse_go_float(num)
    if size < 0 or math.isnan(size) or math.isinf(size):
        # go-units rejects negatives; a non-finite value would be garbage after int64().
        raise ValueError(f"invalid size: '{size_str}'")
    if not sfx:
        return int(size)
    if len(sfx) > 3:
        raise ValueError(f"invalid suffix: '{sfx}'")
    sfx = sfx.lower()
    if sfx[0] == "b":
        if len(sfx) > 1:
            raise ValueError(f"invalid suffix: '{sfx}'")
        return int(size)
    mul = umap.get(sfx[0])
    if mul is None or (len(sfx) == 2 and sfx[1] != "b") or (len(sfx) == 3 and sfx[1:] != "ib"):
        raise ValueError(f"invalid suffix: '{sfx}'")
    return int(size * mul)


def from_human_size(size: str) -> int:
    """go-units ``FromHumanSize``: "44kB" -> 44000 (SI units; the unit letters are case-insensitive)."""
    return _parse_size(size, _DECIMAL_MAP)


def ram_in_bytes(size: str) -> int:
    """go-units ``RAMInBytes`` (``--memory 512m``): "1g" -> 1073741824 (binary units, 'b' optional)."""
    return _parse_size(size, _BINARY_MAP)


def human_duration(seconds: float) -> str:
    from kran.engine.timefmt import human_duration as hd

    return hd(seconds)


def since(ts: float, now: float | None = None) -> str:
    """The CREATED column: ``HumanDuration(now - created) + " ago"``."""
    if now is None:
        now = time.time()
    return human_duration(now - ts) + " ago"
