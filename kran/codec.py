"""The one JSON codec between kran's typed data and the outside world.

Structures are frozen dataclasses; each field names its JSON key with ``jf("key")`` (OCI uses
camelCase, Docker PascalCase, image configs a mix).  Empty values are omitted unless a field says
``keep=True``; keys a structure does not know are kept in its ``extra`` field, so decoding and
encoding again loses nothing.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

_HINTS: dict[type, dict[str, Any]] = {}


def jf(key: str, *, default: Any = None, keep: bool = False, factory: Any = None) -> Any:
    """A dataclass field stored under JSON ``key``."""
    meta = {"json": key, "keep": keep}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def extra() -> Any:
    """The field that keeps unknown JSON keys."""
    return dataclasses.field(default_factory=dict, metadata={"extra": True})


def _hints(cls: type) -> dict[str, Any]:
    h = _HINTS.get(cls)
    if h is None:
        h = _HINTS[cls] = typing.get_type_hints(cls)
    return h


def _empty(v: Any) -> bool:
    return v is None or v == "" or v == 0 and not isinstance(v, bool) or v is False or v in ([], {}, ())


def encode(obj: Any) -> Any:
    """Turn typed data into JSON-ready Python values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if f.metadata.get("extra"):
                for k, ev in v.items():
                    out.setdefault(k, ev)
                continue
            key = f.metadata.get("json", f.name)
            if not f.metadata.get("keep") and _empty(v):
                continue
            out[key] = encode(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    return obj


def decode(cls: type[T], data: Any) -> T:
    """Build ``cls`` from JSON data; unknown keys go to its ``extra`` field."""
    return _decode(cls, data)  # type: ignore[no-any-return]


def _decode(tp: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(args[0], data) if len(args) == 1 else data
    if origin in (list, tuple):
        (arg, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(data, list):
            raise ValueError(f"expected a list, got {type(data).__name__}")
        items = [_decode(arg, v) for v in data]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(data, dict):
            raise ValueError(f"expected an object, got {type(data).__name__}")
        _, varg = typing.get_args(tp) or (str, Any)
        return {k: _decode(varg, v) for k, v in data.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for {tp.__name__}, got {type(data).__name__}")
        hints = _hints(tp)
        kwargs: dict[str, Any] = {}
        known: set[str] = set()
        extra_field = None
        for f in dataclasses.fields(tp):
            if f.metadata.get("extra"):
                extra_field = f.name
                continue
            key = f.metadata.get("json", f.name)
            known.add(key)
            if key in data:
                kwargs[f.name] = _decode(hints[f.name], data[key])
        if extra_field is not None:
            kwargs[extra_field] = {k: v for k, v in data.items() if k not in known}
        return tp(**kwargs)
    if tp is int and isinstance(data, bool):
        raise ValueError("expected an integer")
    if tp in (int, str, bool, float) and not isinstance(data, tp):
        if tp is float and isinstance(data, int):
            return float(data)
        raise ValueError(f"expected {tp.__name__}, got {type(data).__name__}")
    return data


def dumps(obj: Any, *, indent: int | None = None) -> str:
    if indent is None:
        return json.dumps(encode(obj), separators=(",", ":"))
    return json.dumps(encode(obj), indent=indent)


def loads(cls: type[T], raw: bytes | str) -> T:
    return decode(cls, json.loads(raw))
