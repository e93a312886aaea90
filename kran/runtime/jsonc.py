"""JSON at the edges, without importing :mod:`json` (it pulls in ``re`` and ``enum``: ~8 ms of
startup on every runtime command).  Uses the same C accelerators the stdlib module uses."""

from __future__ import annotations

import _json

_WS = " \t\n\r"


class _Ctx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name.replace("Infinity", "inf"))


_scan = _json.make_scanner(_Ctx())
_encode = _json.make_encoder(None, None, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True)


def loads(text: str | bytes) -> object:
    if isinstance(text, bytes):
        text = text.decode()
    i = len(text) - len(text.lstrip(_WS))
    try:
        obj, end = _scan(text, i)
    except StopIteration as e:
        raise ValueError(f"invalid JSON at offset {e.value}") from None
    if text[end:].strip(_WS):
        raise ValueError(f"extra data in JSON at offset {end}")
    return obj


def dumps(obj: object, indent: int | None = None) -> str:
    if indent is None:
        return "".join(_encode(obj, 0))
    return _pretty(obj, indent, 0)


def _pretty(obj: object, indent: int, level: int) -> str:
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if isinstance(obj, dict) and obj:
        items = [
            f"{pad}{_json.encode_basestring_ascii(str(k))}: {_pretty(v, indent, level + 1)}"
            for k, v in obj.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(obj, list) and obj:
        return "[\n" + ",\n".join(pad + _pretty(v, indent, level + 1) for v in obj) + "\n" + end + "]"
    return "".join(_encode(obj, 0))
