"""Go's text/template, as much as docker's ``--format`` flags need, with docker's functions.

The lexer, parser and evaluator follow Go's text/template (lex.go, parse.go, exec.go) closely so
that output and error messages match ``docker ... --format``.  Data is plain Python: dicts act as
Go maps (``map[string]interface{}``, e.g. decoded inspect JSON), other objects as structs whose
fields are attributes (bound methods are called, like Go methods).  Values print as Go's fmt
prints them: ``true``, ``[a b]``, ``map[a:1 b:2]``, ``1e+06``, and ``<no value>`` for a missing
map key or a JSON null.

A missing attribute on an object is an error (Go: "can't evaluate field X in type T"); a missing
dict key prints ``<no value>`` (or raises with ``missingkey="error"``, docker inspect's raw mode).
``json`` is docker's: compact, *no* HTML escaping (docker calls ``SetEscapeHTML(false)``), dict
keys in insertion order, objects as their fields and properties with sorted keys.

Not supported: ``define``/``template``/``block`` (a docker format is one template), ``call``,
complex numbers, ``%#v``/``%+v`` Go-syntax printing, and custom delimiters.

Stdlib only and cheap to import: ``kran images`` loads it.
"""

from __future__ import annotations

import math
import re

from kran.errors import InvalidArgument

__all__ = ["BUILTINS", "MISSING", "Template", "TemplateError", "compile", "go_json", "render", "sprintf"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    FuncSpec = tuple[Callable[..., object], int, int | None]


class TemplateError(InvalidArgument):
    """A --format template failed to parse or execute (docker reports these itself, not the daemon)."""

    from_daemon = False


class _Missing:
    """Go's invalid reflect.Value: what a missing map key evaluates to."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: object = _Missing()
_NOFINAL = object()  # "no value piped in" (Go's missingVal), distinct from MISSING


class _FuncError(Exception):
    """Raised by a template function; reported as ``error calling NAME: ...``."""


class _ArgError(Exception):
    """A wrong argument type; reported as is (Go: ``wrong type for value; ...``), at that argument."""

    def __init__(self, msg: str, value: object) -> None:
        super().__init__(msg)
        self.value = value


def go_type(v: object) -> str:
    """The Go type name a value of this Python type would have (for error messages)."""
    if v is None or v is MISSING:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bytes):
        return "[]uint8"
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(e, str) for e in v):
            return "[]string"
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return type(v).__name__


def type_error(want: str, v: object) -> _ArgError:
    if v is MISSING:
        return _ArgError(f"invalid value; expected {want}", v)
    got = "interface {}" if v is None else go_type(v)
    return _ArgError(f"wrong type for value; expected {want}; got {got}", v)


# -- printing like Go's fmt -----------------------------------------------------------------------


def _shortest_digits(f: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of a positive finite float and the decimal point position.

    Python's repr and Go's strconv both produce the shortest digit string that round-trips.
    """
    mant, _, exp = repr(f).partition("e")
    ip, _, fp = mant.partition(".")
    digits = ip + fp
    dp = len(ip) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    dp -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    return (digits, dp) if digits else ("0", 1)


def _fmt_e(digits: str, dp: int, upper: bool = False) -> str:
    exp = dp - 1
    s = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exp < 0 else "+"
    return s + ("E" if upper else "e") + sign + f"{abs(exp):02d}"


def _fmt_f(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * -dp + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def _nonfinite(f: float) -> str:
    return "NaN" if math.isnan(f) else ("+Inf" if f > 0 else "-Inf")


def format_float(f: float, upper: bool = False) -> str:
    """Go's ``strconv.FormatFloat(f, 'g', -1, 64)``, which is also fmt's ``%v``: 1e+06, 0.0001, 1.5."""
    if not math.isfinite(f):
        return _nonfinite(f)
    neg = math.copysign(1.0, f) < 0
    if f == 0:
        return "-0" if neg else "0"
    digits, dp = _shortest_digits(abs(f))
    exp = dp - 1
    # strconv's 'g' in shortest mode switches to %e below 1e-4 and from 1e+06 on (eprec = 6).
    s = _fmt_e(digits, dp, upper) if exp < -4 or exp >= 6 else _fmt_f(digits, dp)
    return ("-" if neg else "") + s


def _sorted_items(d: Mapping[object, object]) -> list[tuple[object, object]]:
    try:
        return sorted(d.items(), key=lambda kv: kv[0])  # type: ignore[arg-type,return-value]
    except TypeError:
        return sorted(d.items(), key=lambda kv: (go_type(kv[0]), str(kv[0])))


def _struct_fields(obj: object) -> dict[str, object]:
    """The "fields" of a struct-like object: dataclass fields, else public instance attributes."""
    dc = getattr(type(obj), "__dataclass_fields__", None)
    if dc is not None:
        return {n: getattr(obj, n) for n in dc if not n.startswith("_")}
    names: list[str] = list(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    return {n: getattr(obj, n) for n in dict.fromkeys(names) if not n.startswith("_") and hasattr(obj, n)}


def _has_str(obj: object) -> bool:
    return type(obj).__str__ is not object.__str__ and not hasattr(type(obj), "__dataclass_fields__")


def format_value(v: object) -> str:
    """fmt's ``%v`` of one value (inside collections a nil prints ``<nil>``)."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_float(v)
    if v is None or v is MISSING:
        return "<nil>"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(format_value(e) for e in v) + "]"
    if isinstance(v, bytes):
        return "[" + " ".join(str(b) for b in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{format_value(k)}:{format_value(x)}" for k, x in _sorted_items(v)) + "]"
    if _has_str(v):
        return str(v)
    return "{" + " ".join(format_value(x) for x in _struct_fields(v).values()) + "}"


def print_value(v: object) -> str:
    """What ``{{pipeline}}`` writes: ``<no value>`` for a missing key or nil, else ``%v``."""
    if v is None or v is MISSING:
        return "<no value>"
    return format_value(v)


def _pad(s: str, flags: str, width: int | None) -> str:
    if width is None or len(s) >= width:
        return s
    return s.ljust(width) if "-" in flags else s.rjust(width)


def _pad_number(sign: str, body: str, flags: str, width: int | None, zero_ok: bool = True) -> str:
    if width is not None and "0" in flags and "-" not in flags and zero_ok:
        return sign + body.rjust(width - len(sign), "0")
    return _pad(sign + body, flags, width)


_QUOTE_ESC = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _quote_char(c: str, quote: str) -> str:
    if c == quote or c == "\\":
        return "\\" + c
    if c.isprintable():
        return c
    if c in _QUOTE_ESC:
        return _QUOTE_ESC[c]
    o = ord(c)
    if o < 0x20 or o == 0x7F:
        return f"\\x{o:02x}"
    if 0xD800 <= o <= 0xDFFF:
        return "\\ufffd"
    return f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def go_quote(s: str) -> str:
    """strconv.Quote: a double-quoted Go string literal."""
    return '"' + "".join(_quote_char(c, '"') for c in s) + '"'


def _bad_verb(verb: str, v: object) -> str:
    if v is None or v is MISSING:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(v)}={format_value(v)})"


def _fmt_int(v: int, verb: str, flags: str, width: int | None, prec: int | None) -> str:
    if verb == "c":
        return _pad(chr(v) if 0 <= v <= 0x10FFFF else "\ufffd", flags, width)
    if verb == "q":
        c = chr(v) if 0 <= v <= 0x10FFFF else "\ufffd"
        return _pad("'" + _quote_char(c, "'") + "'", flags, width)
    if verb == "U":
        s = f"U+{v:04X}"
        if "#" in flags and 0 <= v <= 0x10FFFF and chr(v).isprintable():
            s += f" '{chr(v)}'"
        return _pad(s, flags, width)
    base = {"v": "d", "d": "d", "b": "b", "o": "o", "O": "o", "x": "x", "X": "X"}.get(verb)
    if base is None:
        return _bad_verb(verb, v)
    digits = format(abs(v), base)
    if prec is not None:
        digits = "" if prec == 0 and v == 0 else digits.rjust(prec, "0")
    prefix = ""
    if verb == "O":
        prefix = "0o"
    elif "#" in flags:
        prefix = {"b": "0b", "o": "0", "x": "0x", "X": "0X"}.get(verb, "")
        if verb == "o" and digits.startswith("0"):
            prefix = ""
    sign = "-" if v < 0 else ("+" if "+" in flags else (" " if " " in flags else ""))
    return _pad_number(sign + prefix, digits, flags, width, prec is None)


def _hex_float(a: float, prec: int | None, upper: bool) -> str:
    """Go's %x for floats: 0x1.cp+01 (shortest mantissa unless a precision is given)."""
    mant, _, exp = a.hex()[2:].partition("p")
    ip, _, fp = mant.partition(".")
    if a == 0:
        ip, fp, exp = "0", "", "0"
    fp = fp.rstrip("0") if prec is None else fp[:prec].ljust(prec, "0")
    e = int(exp)
    s = "0x" + ip + ("." + fp if fp else "") + "p" + ("-" if e < 0 else "+") + f"{abs(e):02d}"
    return s.upper() if upper else s


def _fmt_float(v: float, verb: str, flags: str, width: int | None, prec: int | None) -> str:
    if verb not in "veEfFgGxX":
        return _bad_verb(verb, v)
    if not math.isfinite(v):
        s = _nonfinite(v)
        if s == "NaN" and ("+" in flags or " " in flags):
            s = ("+" if "+" in flags else " ") + s
        elif s == "+Inf" and "+" not in flags:
            s = (" " if " " in flags else "+") + "Inf"
        return _pad(s, flags, width)
    neg = math.copysign(1.0, v) < 0
    a = abs(v)
    if verb in "xX":
        body = _hex_float(a, prec, verb == "X")
    elif verb in "vgG" and prec is None:
        body = format_float(a, upper=verb == "G")
    else:
        spec = {"v": "g", "F": "f"}.get(verb, verb)
        if prec is None:
            prec = 6
        body = format(a, f".{prec}{spec}")
    sign = "-" if neg else ("+" if "+" in flags else (" " if " " in flags else ""))
    return _pad_number(sign, body, flags, width)


def _fmt_str(v: str, verb: str, flags: str, width: int | None, prec: int | None) -> str:
    if verb in "vs":
        return _pad(v if prec is None else v[:prec], flags, width)
    if verb == "q":
        return _pad(go_quote(v if prec is None else v[:prec]), flags, width)
    if verb in "xX":
        data = v.encode()
        if prec is not None:
            data = data[:prec]
        h = data.hex()
        if " " in flags:
            h = " ".join(h[i : i + 2] for i in range(0, len(h), 2))
        return _pad(h.upper() if verb == "X" else h, flags, width)
    return _bad_verb(verb, v)


def _fmt_arg(v: object, verb: str, flags: str, width: int | None, prec: int | None, depth: int = 0) -> str:
    if v is None or v is MISSING:
        if verb in "vT" or depth > 0:
            return _pad("<nil>", flags, width)
        return _bad_verb(verb, None)
    if verb == "T":
        return _pad(go_type(v), flags, width)
    if isinstance(v, bool):
        return _pad("true" if v else "false", flags, width) if verb in "vt" else _bad_verb(verb, v)
    if isinstance(v, int):
        return _fmt_int(v, verb, flags, width, prec)
    if isinstance(v, float):
        return _fmt_float(v, verb, flags, width, prec)
    if isinstance(v, str):
        return _fmt_str(v, verb, flags, width, prec)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_fmt_arg(e, verb, flags, width, prec, depth + 1) for e in v) + "]"
    if isinstance(v, dict):
        items = (
            _fmt_arg(k, verb, flags, width, prec, depth + 1)
            + ":"
            + _fmt_arg(x, verb, flags, width, prec, depth + 1)
            for k, x in _sorted_items(v)
        )
        return "map[" + " ".join(items) + "]"
    if _has_str(v):
        return _fmt_str(str(v), verb, flags, width, prec)
    return (
        "{"
        + " ".join(_fmt_arg(x, verb, flags, width, prec, depth + 1) for x in _struct_fields(v).values())
        + "}"
    )


def sprintf(fmt: str, *args: object) -> str:
    """Go's fmt.Sprintf for the common verbs (%v %s %d %q %t %x %f %e %g %c %T ...), flags and widths."""
    out: list[str] = []
    argi = 0
    i, n = 0, len(fmt)
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        flags = ""
        while i < n and fmt[i] in "+-# 0":
            flags += fmt[i]
            i += 1
        width: int | None = None
        prec: int | None = None
        if i < n and fmt[i] == "*":
            i += 1
            w = args[argi] if argi < len(args) else None
            argi += 1
            if isinstance(w, int) and not isinstance(w, bool):
                width = abs(w)
                if w < 0:
                    flags += "-"
            else:
                out.append("%!(BADWIDTH)")
        else:
            k = i
            while i < n and fmt[i].isdigit():
                i += 1
            if i > k:
                width = int(fmt[k:i])
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                i += 1
                p = args[argi] if argi < len(args) else None
                argi += 1
                if isinstance(p, int) and not isinstance(p, bool) and p >= 0:
                    prec = p
                else:
                    out.append("%!(BADPREC)")
            else:
                k = i
                while i < n and fmt[i].isdigit():
                    i += 1
                prec = int(fmt[k:i]) if i > k else 0
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(_fmt_arg(args[argi], verb, flags, width, prec))
        argi += 1
    if argi < len(args):
        extra = ", ".join(
            "<nil>" if a is None or a is MISSING else f"{go_type(a)}={format_value(a)}" for a in args[argi:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _sprint(args: tuple[object, ...]) -> str:
    """fmt.Sprint: a space between operands when neither is a string."""
    out: list[str] = []
    prev_str = False
    for i, a in enumerate(args):
        is_str = isinstance(a, str)
        if i > 0 and not is_str and not prev_str:
            out.append(" ")
        out.append(format_value(a))
        prev_str = is_str
    return "".join(out)


# -- JSON like Go's encoding/json -----------------------------------------------------------------

_JSON_ESC_RE = '["\\\\\x00-\x1f\u2028\u2029]'
_JSON_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _json_str(s: str) -> str:
    return (
        '"' + re.sub(_JSON_ESC_RE, lambda m: _JSON_ESC.get(m.group()) or f"\\u{ord(m.group()):04x}", s) + '"'
    )


def _json_float(f: float) -> str:
    if not math.isfinite(f):
        raise ValueError(f"json: unsupported value: {_nonfinite(f)}")
    neg = math.copysign(1.0, f) < 0
    if f == 0:
        return "-0" if neg else "0"
    a = abs(f)
    digits, dp = _shortest_digits(a)
    if a < 1e-6 or a >= 1e21:
        s = _fmt_e(digits, dp)
        if s[-4:-1] == "e-0":  # Go cleans up e-07 to e-7
            s = s[:-2] + s[-1]
    else:
        s = _fmt_f(digits, dp)
    return ("-" if neg else "") + s


def _json_obj(obj: object) -> object:
    """A struct-like object as JSON: its ``__json__()`` if any, else its fields and public properties.

    Keys are sorted, as docker's row contexts marshal (formatter.MarshalJSON builds a map).
    """
    hook = getattr(obj, "__json__", None)
    if callable(hook):
        return hook()
    fields = _struct_fields(obj)
    for name in dir(type(obj)):
        if not name.startswith("_") and isinstance(getattr(type(obj), name, None), property):
            fields[name] = getattr(obj, name)
    return dict(sorted(fields.items()))


def _json_encode(v: object, out: list[str]) -> None:
    if v is None or v is MISSING:
        out.append("null")
    elif isinstance(v, bool):
        out.append("true" if v else "false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        out.append(_json_float(v))
    elif isinstance(v, str):
        out.append(_json_str(v))
    elif isinstance(v, dict):
        out.append("{")
        for i, (k, x) in enumerate(v.items()):
            if i:
                out.append(",")
            out.append(_json_str(k if isinstance(k, str) else format_value(k)))
            out.append(":")
            _json_encode(x, out)
        out.append("}")
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _json_encode(x, out)
        out.append("]")
    elif isinstance(v, bytes):
        import base64

        out.append('"' + base64.b64encode(v).decode() + '"')
    else:
        _json_encode(_json_obj(v), out)


def go_json(v: object, escape_html: bool = False) -> str:
    """Compact JSON as Go's encoder writes it: no spaces, floats in Go's notation, U+2028/9 escaped.

    Dict keys keep their order (kran builds inspect dicts in Docker's struct order; Go sorts only
    real maps).  ``escape_html`` gives json.Marshal's ``\\u003c`` escaping; docker's ``json``
    template function turns it off (templates.go: ``enc.SetEscapeHTML(false)``).
    """
    out: list[str] = []
    _json_encode(v, out)
    s = "".join(out)
    if escape_html:
        s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return s


# -- the template functions -----------------------------------------------------------------------


def _want_str(v: object) -> str:
    if not isinstance(v, str):
        raise type_error("string", v)
    return v


def _want_int(v: object) -> int:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise type_error("int", v)
    return v


def _truth(v: object) -> bool:
    """Go's isTrue: false for missing/nil, false, 0, and empty strings/slices/maps; structs are true."""
    if v is None or v is MISSING:
        return False
    if isinstance(v, (bool, int, float, str, bytes, list, tuple, dict)):
        return bool(v)
    return True


def _kind(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "other"


def _f_eq(a: object, *bs: object) -> bool:
    if not bs:
        raise _FuncError("missing argument for comparison")
    a = None if a is MISSING else a
    ka = _kind(a)
    for b in bs:
        b = None if b is MISSING else b
        kb = _kind(b)
        if ka != kb:
            if a is not None and b is not None:
                raise _FuncError("incompatible types for comparison")
            continue
        if ka == "other" and isinstance(a, (list, dict)) and isinstance(b, (list, dict)):
            raise _FuncError(f"non-comparable type {format_value(b)}: {go_type(b)}")
        if a == b:
            return True
    return False


def _f_ne(a: object, b: object) -> bool:
    return not _f_eq(a, b)


def _f_lt(a: object, b: object) -> bool:
    a = None if a is MISSING else a
    b = None if b is MISSING else b
    ka, kb = _kind(a), _kind(b)
    if ka in ("other", "bool") or kb in ("other", "bool"):
        raise _FuncError("invalid type for comparison")
    if ka != kb:
        raise _FuncError("incompatible types for comparison")
    return bool(a < b)  # type: ignore[operator]


def _f_le(a: object, b: object) -> bool:
    return _f_lt(a, b) or _f_eq(a, b)


def _f_gt(a: object, b: object) -> bool:
    return not _f_le(a, b)


def _f_ge(a: object, b: object) -> bool:
    return not _f_lt(a, b)


def _f_not(a: object) -> bool:
    return not _truth(a)


def _f_len(v: object) -> int:
    if v is None or v is MISSING:
        raise _FuncError("len of nil pointer")
    if isinstance(v, str):
        return len(v.encode())  # Go's len counts bytes
    if isinstance(v, (bytes, list, tuple, dict)):
        return len(v)
    raise _FuncError(f"len of type {go_type(v)}")


def _index_one(item: object, idx: object) -> object:
    idx = None if idx is MISSING else idx
    if isinstance(item, dict):
        if not isinstance(idx, str):
            raise _FuncError(f"value has type {go_type(idx)}; should be string")
        return item.get(idx)  # a missing key gives the element type's zero value: nil
    if isinstance(item, (list, tuple, str, bytes)):
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise _FuncError(f"cannot index slice/array with type {go_type(idx)}")
        seq = item.encode() if isinstance(item, str) else item
        if not 0 <= idx < len(seq):
            raise _FuncError(f"index out of range: {idx}")
        return seq[idx]
    if item is None or item is MISSING:
        raise _FuncError("index of untyped nil")
    raise _FuncError(f"can't index item of type {go_type(item)}")


def _f_index(item: object, *indexes: object) -> object:
    if item is None or item is MISSING:
        raise _FuncError("index of untyped nil")
    for idx in indexes:
        if item is None or item is MISSING:
            raise _FuncError("index of nil pointer")
        item = _index_one(item, idx)
    return item


def _f_slice(item: object, *idx: object) -> object:
    if item is None or item is MISSING:
        raise _FuncError("slice of untyped nil")
    if len(idx) > 3:
        raise _FuncError(f"too many slice indexes: {len(idx)}")
    if not isinstance(item, (str, list, tuple)):
        raise _FuncError(f"can't slice item of type {go_type(item)}")
    if isinstance(item, str) and len(idx) == 3:
        raise _FuncError("cannot 3-index slice a string")
    seq = item.encode() if isinstance(item, str) else item
    bounds = [0, len(seq)]
    for i, x in enumerate(idx[:2]):
        if not isinstance(x, int) or isinstance(x, bool):
            raise _FuncError(f"cannot index slice/array with type {go_type(x)}")
        if not 0 <= x <= len(seq):
            raise _FuncError(f"index out of range: {x}")
        bounds[i] = x
    if bounds[0] > bounds[1]:
        raise _FuncError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    out = seq[bounds[0] : bounds[1]]
    return out.decode(errors="replace") if isinstance(out, bytes) else list(out)


def _f_print(*args: object) -> str:
    return _sprint(args)


def _f_println(*args: object) -> str:
    return " ".join(format_value(a) for a in args) + "\n"


def _f_printf(fmt: object, *args: object) -> str:
    return sprintf(_want_str(fmt), *args)


_HTML_ESC = {"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;"}


def _f_html(*args: object) -> str:
    s = args[0] if len(args) == 1 and isinstance(args[0], str) else _sprint(args)
    return re.sub("[\0\"'&<>]", lambda m: _HTML_ESC[m.group()], s)


def _f_js(*args: object) -> str:
    s = args[0] if len(args) == 1 and isinstance(args[0], str) else _sprint(args)
    out = []
    for c in s:
        if c in "\\'\"":
            out.append("\\" + c)
        elif c in "<>&=`":
            out.append(f"\\u{ord(c):04X}")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif not c.isprintable():
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def _f_urlquery(*args: object) -> str:
    from urllib.parse import quote_plus

    s = args[0] if len(args) == 1 and isinstance(args[0], str) else _sprint(args)
    return quote_plus(s, safe="")


def _f_json(v: object) -> str:
    try:
        return go_json(v)
    except ValueError:
        return ""  # docker ignores the encoder's error and prints nothing


def _f_split(s: object, sep: object) -> list[str]:
    s, sep = _want_str(s), _want_str(sep)
    if sep == "":
        return list(s)
    return s.split(sep)


def _f_join(items: object, sep: object) -> str:
    sep = _want_str(sep)
    if not isinstance(items, (list, tuple)) or not all(isinstance(e, str) for e in items):
        raise type_error("[]string", items)
    return sep.join(items)


def _go_case(s: str, upper: bool) -> str:
    # Go maps rune by rune (no "ß" -> "SS").
    out = []
    for c in s:
        m = c.upper() if upper else c.lower()
        out.append(m if len(m) == 1 else c)
    return "".join(out)


def _f_lower(s: object) -> str:
    return _go_case(_want_str(s), False)


def _f_upper(s: object) -> str:
    return _go_case(_want_str(s), True)


def _is_separator(c: str) -> bool:
    # strings.Title's word boundaries.
    if c.isascii():
        return not (c.isalnum() or c == "_")
    if c.isalpha() or c.isdecimal():
        return False
    return c.isspace()


def _f_title(s: object) -> str:
    s = _want_str(s)
    out = []
    prev = " "
    for c in s:
        t = c.title() if _is_separator(prev) else c
        out.append(t if len(t) == 1 else c)
        prev = c
    return "".join(out)


def _f_pad(s: object, left: object, right: object) -> str:
    s = _want_str(s)
    if s == "":
        return s
    return " " * _want_int(left) + s + " " * _want_int(right)


def _f_truncate(s: object, n: object) -> str:
    s, length = _want_str(s), _want_int(n)
    data = s.encode()
    if len(data) < length:
        return s
    if length < 0:
        raise _FuncError(f"slice bounds out of range [:{length}]")
    return data[:length].decode(errors="ignore")  # Go slices bytes


BUILTINS: dict[str, FuncSpec] = {
    "and": (_f_not, 1, None),  # placeholders: the executor evaluates and/or lazily itself
    "or": (_f_not, 1, None),
    "not": (_f_not, 1, 1),
    "len": (_f_len, 1, 1),
    "index": (_f_index, 1, None),
    "slice": (_f_slice, 1, None),
    "print": (_f_print, 0, None),
    "println": (_f_println, 0, None),
    "printf": (_f_printf, 1, None),
    "html": (_f_html, 0, None),
    "js": (_f_js, 0, None),
    "urlquery": (_f_urlquery, 0, None),
    "eq": (_f_eq, 1, None),
    "ne": (_f_ne, 2, 2),
    "lt": (_f_lt, 2, 2),
    "le": (_f_le, 2, 2),
    "gt": (_f_gt, 2, 2),
    "ge": (_f_ge, 2, 2),
    # docker/cli templates.basicFunctions
    "json": (_f_json, 1, 1),
    "split": (_f_split, 2, 2),
    "join": (_f_join, 2, 2),
    "title": (_f_title, 1, 1),
    "lower": (_f_lower, 1, 1),
    "upper": (_f_upper, 1, 1),
    "pad": (_f_pad, 3, 3),
    "truncate": (_f_truncate, 2, 2),
}

# -- lexer ----------------------------------------------------------------------------------------

_SPACE = " \t\r\n"
_KEYWORDS = frozenset(
    ("if", "else", "end", "range", "with", "define", "template", "block", "break", "continue")
)


class _Tok:
    __slots__ = ("line", "pos", "typ", "val")

    def __init__(self, typ: str, val: str, pos: int, line: int) -> None:
        self.typ = typ
        self.val = val
        self.pos = pos
        self.line = line

    def __str__(self) -> str:  # Go's item.String, for "unexpected X in Y"
        if self.typ == "eof":
            return "EOF"
        if self.typ == "error":
            return self.val
        if self.typ in _KEYWORDS:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return go_quote(self.val[:10]) + "..."
        return go_quote(self.val)


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalpha() or c.isdecimal()


def _unicode_desc(c: str) -> str:
    """Go's %#U."""
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"


class _LexError(Exception):
    pass


def _lex(src: str) -> list[_Tok]:
    toks: list[_Tok] = []
    n = len(src)

    def emit(typ: str, start: int, end: int) -> None:
        toks.append(_Tok(typ, src[start:end], start, 1 + src.count("\n", 0, start)))

    def fail(msg: str, at: int) -> None:
        toks.append(_Tok("error", msg, at, 1 + src.count("\n", 0, at)))
        raise _LexError

    def at_right_delim(p: int) -> tuple[bool, bool]:
        if p + 1 < n and src[p] in _SPACE and src[p + 1] == "-" and src.startswith("}}", p + 2):
            return True, True
        return src.startswith("}}", p), False

    def at_terminator(p: int) -> bool:
        if p >= n:
            return True
        return src[p] in _SPACE or src[p] in ".,|:()" or src.startswith("}}", p)

    def scan_number(p: int) -> tuple[int, bool]:
        if p < n and src[p] in "+-":
            p += 1
        digits = "0123456789_"
        if p < n and src[p] == "0":
            p += 1
            if p < n and src[p] in "xX":
                p += 1
                digits = "0123456789abcdefABCDEF_"
            elif p < n and src[p] in "oO":
                p += 1
                digits = "01234567_"
            elif p < n and src[p] in "bB":
                p += 1
                digits = "01_"
        while p < n and src[p] in digits:
            p += 1
        if p < n and src[p] == ".":
            p += 1
            while p < n and src[p] in digits:
                p += 1
        if (len(digits) == 11 and p < n and src[p] in "eE") or (
            len(digits) == 23 and p < n and src[p] in "pP"
        ):
            p += 1
            if p < n and src[p] in "+-":
                p += 1
            while p < n and src[p] in "0123456789_":
                p += 1
        if p < n and src[p] == "i":
            p += 1
        if p < n and _is_alnum(src[p]):
            return p + 1, False
        return p, True

    pos = 0
    try:
        while True:
            # text, up to the next action
            i = src.find("{{", pos)
            if i < 0:
                if pos < n:
                    emit("text", pos, n)
                toks.append(_Tok("eof", "", n, 1 + src.count("\n")))
                return toks
            trim = i + 3 < n and src[i + 2] == "-" and src[i + 3] in _SPACE
            text_end = pos + len(src[pos:i].rstrip(_SPACE)) if trim else i
            if text_end > pos:
                emit("text", pos, text_end)
            after = i + 2 + (2 if trim else 0)
            if src.startswith("/*", after):
                x = src.find("*/", after + 2)
                if x < 0:
                    fail("unclosed comment", after)
                pos = x + 2
                delim, rtrim = at_right_delim(pos)
                if not delim:
                    fail("comment ends before closing delimiter", pos)
                pos += 4 if rtrim else 2
                if rtrim:
                    while pos < n and src[pos] in _SPACE:
                        pos += 1
                continue
            emit("left", i, i + 2)
            pos = after
            paren = 0
            # inside the action
            while True:
                delim, rtrim = at_right_delim(pos)
                if delim:
                    if paren:
                        fail("unclosed left paren", pos)
                    if rtrim:
                        pos += 2
                    emit("right", pos, pos + 2)
                    pos += 2
                    if rtrim:
                        while pos < n and src[pos] in _SPACE:
                            pos += 1
                    break
                if pos >= n:
                    fail("unclosed action", pos)
                c = src[pos]
                start = pos
                if c in _SPACE:
                    while pos < n and src[pos] in _SPACE:
                        pos += 1
                    if src.startswith("-}}", pos):  # " -}}": leave its space to the delimiter
                        pos -= 1
                        if pos == start:
                            continue
                    emit("space", start, pos)
                elif c == "=":
                    pos += 1
                    emit("assign", start, pos)
                elif c == ":":
                    if not src.startswith(":=", pos):
                        fail("expected :=", pos)
                    pos += 2
                    emit("declare", start, pos)
                elif c == "|":
                    pos += 1
                    emit("pipe", start, pos)
                elif c == '"' or c == "'":
                    pos += 1
                    while True:
                        if pos >= n or src[pos] == "\n":
                            fail(
                                "unterminated quoted string"
                                if c == '"'
                                else "unterminated character constant",
                                pos,
                            )
                        if src[pos] == "\\":
                            pos += 1
                            if pos >= n or src[pos] == "\n":
                                fail(
                                    "unterminated quoted string"
                                    if c == '"'
                                    else "unterminated character constant",
                                    pos,
                                )
                        elif src[pos] == c:
                            pos += 1
                            break
                        pos += 1
                    emit("string" if c == '"' else "charconst", start, pos)
                elif c == "`":
                    x = src.find("`", pos + 1)
                    if x < 0:
                        fail("unterminated raw quoted string", pos)
                    pos = x + 1
                    emit("rawstring", start, pos)
                elif c == "$" or (c == "." and not (pos + 1 < n and src[pos + 1] in "0123456789")):
                    pos += 1
                    if at_terminator(pos):
                        emit("variable" if c == "$" else "dot", start, pos)
                        continue
                    while pos < n and _is_alnum(src[pos]):
                        pos += 1
                    if not at_terminator(pos):
                        fail(f"bad character {_unicode_desc(src[pos])}", pos)
                    emit("variable" if c == "$" else "field", start, pos)
                elif c in "+-." or c in "0123456789":
                    pos, ok = scan_number(pos)
                    if not ok:
                        fail(f"bad number syntax: {go_quote(src[start:pos])}", start)
                    if pos < n and src[pos] in "+-":
                        fail("complex numbers are not supported", start)
                    emit("number", start, pos)
                elif _is_alnum(c):
                    while pos < n and _is_alnum(src[pos]):
                        pos += 1
                    if not at_terminator(pos):
                        fail(f"bad character {_unicode_desc(src[pos])}", pos)
                    word = src[start:pos]
                    if word in _KEYWORDS:
                        emit(word, start, pos)
                    elif word in ("true", "false"):
                        emit("bool", start, pos)
                    elif word == "nil":
                        emit("nil", start, pos)
                    else:
                        emit("identifier", start, pos)
                elif c == "(":
                    pos += 1
                    paren += 1
                    emit("lparen", start, pos)
                elif c == ")":
                    pos += 1
                    paren -= 1
                    emit("rparen", start, pos)
                    if paren < 0:
                        fail("unexpected right paren", start)
                elif c.isascii() and c.isprintable():
                    pos += 1
                    emit("char", start, pos)
                else:
                    fail(f"unrecognized character in action: {_unicode_desc(c)}", pos)
    except _LexError:
        return toks


# -- parse tree -----------------------------------------------------------------------------------


class _Node:
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos


class _List(_Node):
    __slots__ = ("nodes",)

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.nodes: list[_Node] = []

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


class _Text(_Node):
    __slots__ = ("text",)

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text

    def __str__(self) -> str:
        return go_quote(self.text)


class _Pipe(_Node):
    __slots__ = ("cmds", "decl", "is_assign")

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.decl: list[str] = []
        self.is_assign = False
        self.cmds: list[_Command] = []

    def __str__(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(self.decl) + (" = " if self.is_assign else " := ")
        return s + " | ".join(str(c) for c in self.cmds)


class _Command(_Node):
    __slots__ = ("args",)

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.args: list[_Node] = []

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, _Pipe) else str(a) for a in self.args)


class _Action(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pos: int, pipe: _Pipe) -> None:
        super().__init__(pos)
        self.pipe = pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


class _Field(_Node):
    __slots__ = ("idents",)

    def __init__(self, pos: int, idents: list[str]) -> None:
        super().__init__(pos)
        self.idents = idents

    def __str__(self) -> str:
        return "".join("." + i for i in self.idents)


class _Variable(_Node):
    __slots__ = ("idents",)

    def __init__(self, pos: int, idents: list[str]) -> None:
        super().__init__(pos)
        self.idents = idents

    def __str__(self) -> str:
        return ".".join(self.idents)


class _Chain(_Node):
    __slots__ = ("fields", "node")

    def __init__(self, pos: int, node: _Node, fields: list[str]) -> None:
        super().__init__(pos)
        self.node = node
        self.fields = fields

    def __str__(self) -> str:
        s = f"({self.node})" if isinstance(self.node, _Pipe) else str(self.node)
        return s + "".join("." + f for f in self.fields)


class _Identifier(_Node):
    __slots__ = ("name",)

    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.name = name

    def __str__(self) -> str:
        return self.name


class _Literal(_Node):
    """Dot, nil, bool, number and string nodes: ``value`` is what they evaluate to."""

    __slots__ = ("kind", "text", "value")

    def __init__(self, pos: int, kind: str, text: str, value: object) -> None:
        super().__init__(pos)
        self.kind = kind
        self.text = text
        self.value = value

    def __str__(self) -> str:
        return self.text


class _Branch(_Node):
    __slots__ = ("else_list", "kind", "list", "pipe")

    def __init__(self, pos: int, kind: str, pipe: _Pipe, list_: _List, else_list: _List | None) -> None:
        super().__init__(pos)
        self.kind = kind
        self.pipe = pipe
        self.list = list_
        self.else_list = else_list

    def __str__(self) -> str:
        s = "{{" + self.kind + " " + str(self.pipe) + "}}" + str(self.list)
        if self.else_list is not None:
            s += "{{else}}" + str(self.else_list)
        return s + "{{end}}"


class _Marker(_Node):
    """``{{end}}``, ``{{else}}`` (parse only), ``{{break}}`` and ``{{continue}}``."""

    __slots__ = ("kind",)

    def __init__(self, pos: int, kind: str) -> None:
        super().__init__(pos)
        self.kind = kind

    def __str__(self) -> str:
        return "{{" + self.kind + "}}"


# -- parser ---------------------------------------------------------------------------------------


_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _unquote(text: str) -> str:
    """strconv.Unquote for "..." and `...` literals (and the body of '...' rune literals)."""
    if text[0] == "`":
        return text[1:-1].replace("\r", "")
    quote, body = text[0], text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            if c == quote:
                raise ValueError("invalid syntax")
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError("invalid syntax")
        e = body[i + 1]
        if e in _GO_ESCAPES:
            out.append(_GO_ESCAPES[e])
            i += 2
        elif e == quote:
            out.append(e)
            i += 2
        elif e in "xuU":
            size = {"x": 2, "u": 4, "U": 8}[e]
            hexd = body[i + 2 : i + 2 + size]
            if len(hexd) != size or not all(h in "0123456789abcdefABCDEF" for h in hexd):
                raise ValueError("invalid syntax")
            v = int(hexd, 16)
            if e == "x":
                out.append(chr(v))  # a byte; fine for ASCII, approximate above 0x7f
            elif v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
                raise ValueError("invalid syntax")
            else:
                out.append(chr(v))
            i += 2 + size
        elif e in "01234567":
            octd = body[i + 1 : i + 4]
            if len(octd) != 3 or not all(h in "01234567" for h in octd) or int(octd, 8) > 255:
                raise ValueError("invalid syntax")
            out.append(chr(int(octd, 8)))
            i += 4
        else:
            raise ValueError("invalid syntax")
    return "".join(out)


def _parse_number(text: str) -> object:
    """A number literal's value as Go's idealConstant gives it: an int when it is one, else a float.

    Go syntax: 0x/0o/0b prefixes, a leading 0 for octal, underscores between digits, hex floats.
    """
    neg = text.startswith("-")
    body = text.lstrip("+-")
    prefix = body[:2].lower()
    try:
        if prefix == "0x" and re.search(r"[.pP]", body):
            f = float.fromhex(body.replace("_", ""))
            return -f if neg else f
        if prefix in ("0x", "0o", "0b"):
            v = int(body, 0)
        elif re.fullmatch(r"0[0-7_]+", body):
            v = int(body, 8)
        elif re.fullmatch(r"\d[\d_]*", body):
            v = int(body, 10)
        else:
            f = float(body)
            return -f if neg else f
    except ValueError:
        raise _ParseError(f"illegal number syntax: {go_quote(text)}") from None
    if v > 2**63 - 1 + neg:
        raise _ParseError(f"integer overflow: {go_quote(text)}")
    return -v if neg else v


class _ParseError(Exception):
    pass


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = _lex(src)
        self.i = 0
        self.line = 1
        self.vars = ["$"]
        self.range_depth = 0
        self.action_line = 0

    # token stream (Go's next/peek/backup; peek_non_space consumes the spaces like Go's)
    def next(self) -> _Tok:
        t = self.toks[min(self.i, len(self.toks) - 1)]
        self.i += 1
        self.line = t.line
        if t.typ == "error":
            extra = ""
            if self.action_line and self.action_line != t.line:
                extra = f" in action started at :{self.action_line}"
                if t.val.endswith(" action"):
                    extra = extra[len(" in action") :]
            raise _ParseError(t.val + extra)
        return t

    def peek(self) -> _Tok:
        t = self.toks[min(self.i, len(self.toks) - 1)]
        self.line = t.line  # Go reports the line of the last token read from the lexer
        return t

    def next_non_space(self) -> _Tok:
        t = self.next()
        while t.typ == "space":
            t = self.next()
        return t

    def peek_non_space(self) -> _Tok:
        while self.peek().typ == "space":
            self.i += 1
        return self.peek()

    def unexpected(self, t: _Tok, context: str) -> _ParseError:
        return _ParseError(f"unexpected {t} in {context}")

    def expect(self, typ: str, context: str) -> _Tok:
        t = self.next_non_space()
        if t.typ != typ:
            raise self.unexpected(t, context)
        return t

    # grammar
    def parse(self) -> _List:
        root = _List(0)
        while self.peek().typ != "eof":
            n = self.text_or_action()
            if isinstance(n, _Marker) and n.kind in ("end", "else"):
                raise _ParseError(f"unexpected {n}")
            if n is not None:
                root.nodes.append(n)
        return root

    def item_list(self) -> tuple[_List, _Marker]:
        lst = _List(self.peek_non_space().pos)
        while self.peek_non_space().typ != "eof":
            n = self.text_or_action()
            if isinstance(n, _Marker) and n.kind in ("end", "else"):
                return lst, n
            if n is not None:
                lst.nodes.append(n)
        raise _ParseError("unexpected EOF")

    def text_or_action(self) -> _Node | None:
        t = self.next_non_space()
        if t.typ == "text":
            return _Text(t.pos, t.val)
        if t.typ == "left":
            self.action_line = t.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        raise self.unexpected(t, "input")

    def action(self) -> _Node:
        t = self.next_non_space()
        if t.typ in ("if", "range", "with"):
            return self.control(t.typ)
        if t.typ == "else":
            p = self.peek_non_space()
            if p.typ in ("if", "with"):
                return _Marker(p.pos, "else")
            return _Marker(self.expect("right", "else").pos, "else")
        if t.typ == "end":
            return _Marker(self.expect("right", "end").pos, "end")
        if t.typ in ("break", "continue"):
            nt = self.next_non_space()
            if nt.typ != "right":
                raise self.unexpected(nt, "{{" + t.typ + "}}")
            if self.range_depth == 0:
                raise _ParseError(f"{{{{{t.typ}}}}} outside {{{{range}}}}")
            return _Marker(t.pos, t.typ)
        if t.typ in ("define", "template", "block"):
            raise _ParseError(f"{{{{{t.typ}}}}} is not supported")
        self.i -= 1
        p = self.peek()
        return _Action(p.pos, self.pipeline("command", "right"))

    def control(self, kind: str) -> _Branch:
        mark = len(self.vars)
        try:
            pipe = self.pipeline(kind, "right")
            if kind == "range":
                self.range_depth += 1
            lst, nxt = self.item_list()
            if kind == "range":
                self.range_depth -= 1
            else_list = None
            if nxt.kind == "else":
                # {{else if X}} / {{else with X}} are {{else}}{{if X}}...{{end}} with the end implied.
                if kind in ("if", "with") and self.peek().typ == kind:
                    self.next()
                    else_list = _List(nxt.pos)
                    else_list.nodes.append(self.control(kind))
                else:
                    else_list, nxt = self.item_list()
                    if nxt.kind != "end":
                        raise _ParseError(f"expected end; found {nxt}")
            return _Branch(pipe.pos, kind, pipe, lst, else_list)
        finally:
            del self.vars[mark:]

    def pipeline(self, context: str, end: str) -> _Pipe:
        pipe = _Pipe(self.peek_non_space().pos)
        while True:  # declarations: "$x :=", "$x =", "$i, $e :="
            v = self.peek_non_space()
            if v.typ != "variable":
                break
            save = self.i
            self.next()
            nxt = self.peek_non_space()
            if nxt.typ in ("assign", "declare"):
                pipe.is_assign = nxt.typ == "assign"
                self.next_non_space()
                pipe.decl.append(v.val)
                self.vars.append(v.val)
                break
            if nxt.typ == "char" and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(v.val)
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in ("variable", "right", "rparen"):
                        continue
                    raise _ParseError("range can only initialize variables")
                raise _ParseError(f"too many declarations in {context}")
            self.i = save
            break
        while True:
            t = self.next_non_space()
            if t.typ == end:
                if not pipe.cmds:
                    raise _ParseError(f"missing value for {context}")
                for k, c in enumerate(pipe.cmds[1:]):
                    if isinstance(c.args[0], _Literal):
                        raise _ParseError(f"non executable command in pipeline stage {k + 2}")
                return pipe
            if t.typ in (
                "bool",
                "charconst",
                "dot",
                "field",
                "identifier",
                "number",
                "nil",
                "rawstring",
                "string",
                "variable",
                "lparen",
            ):
                self.i -= 1
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(t, context)

    def command(self) -> _Command:
        cmd = _Command(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            t = self.next()
            if t.typ == "space":
                continue
            if t.typ in ("right", "rparen"):
                self.i -= 1
            elif t.typ != "pipe":
                raise self.unexpected(t, "operand")
            break
        if not cmd.args:
            raise _ParseError("empty command")
        return cmd

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == "field":
            fields: list[str] = []
            pos = self.peek().pos
            while self.peek().typ == "field":
                fields.append(self.next().val[1:])
            if isinstance(node, _Field):
                return _Field(node.pos, node.idents + fields)
            if isinstance(node, _Variable):
                return _Variable(node.pos, node.idents + fields)
            if isinstance(node, _Literal):
                raise _ParseError(f"unexpected . after term {go_quote(str(node))}")
            return _Chain(pos, node, fields)
        return node

    def term(self) -> _Node | None:
        t = self.next_non_space()
        typ = t.typ
        if typ == "identifier":
            if t.val not in BUILTINS:
                raise _ParseError(f"function {go_quote(t.val)} not defined")
            return _Identifier(t.pos, t.val)
        if typ == "dot":
            return _Literal(t.pos, "dot", ".", None)
        if typ == "nil":
            return _Literal(t.pos, "nil", "nil", None)
        if typ == "variable":
            idents = t.val.split(".")
            if idents[0] not in self.vars:
                raise _ParseError(f"undefined variable {go_quote(idents[0])}")
            return _Variable(t.pos, idents)
        if typ == "field":
            return _Field(t.pos, [t.val[1:]])
        if typ == "bool":
            return _Literal(t.pos, "bool", t.val, t.val == "true")
        if typ == "number":
            return _Literal(t.pos, "number", t.val, _parse_number(t.val))
        if typ == "charconst":
            try:
                s = _unquote(t.val)
            except ValueError as e:
                raise _ParseError(str(e)) from None
            if len(s) != 1:
                raise _ParseError(f"malformed character constant: {t.val}")
            return _Literal(t.pos, "number", t.val, ord(s))
        if typ == "lparen":
            return self.pipeline("parenthesized pipeline", "rparen")
        if typ in ("string", "rawstring"):
            try:
                return _Literal(t.pos, "string", t.val, _unquote(t.val))
            except ValueError as e:
                raise _ParseError(str(e)) from None
        self.i -= 1
        return None


# -- execution ------------------------------------------------------------------------------------


class _ExecError(Exception):
    pass


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _State:
    def __init__(self, src: str, funcs: Mapping[str, FuncSpec], missingkey: str, out: list[str]) -> None:
        self.src = src
        self.funcs = funcs
        self.missing_error = missingkey == "error"
        self.out = out
        self.vars: list[list[object]] = []  # [name, value] pairs, innermost last
        self.node: _Node | None = None

    def errorf(self, msg: str) -> _ExecError:
        node = self.node
        if node is None:
            return _ExecError(f"template: : {msg}")
        line_start = self.src.rfind("\n", 0, node.pos) + 1
        line = 1 + self.src.count("\n", 0, node.pos)
        col = len(self.src[line_start : node.pos].encode())  # Go counts bytes
        context = str(node)
        if len(context) > 20:
            context = context[:20] + "..."
        return _ExecError(f'template: :{line}:{col}: executing "" at <{context}>: {msg}')

    # variables
    def var_value(self, name: str) -> object:
        for k in range(len(self.vars) - 1, -1, -1):
            if self.vars[k][0] == name:
                return self.vars[k][1]
        raise self.errorf(f"undefined variable: {name}")

    def set_var(self, name: str, value: object) -> None:
        for k in range(len(self.vars) - 1, -1, -1):
            if self.vars[k][0] == name:
                self.vars[k][1] = value
                return
        raise self.errorf(f"undefined variable: {name}")

    # walking
    def walk(self, dot: object, node: _Node) -> None:
        if isinstance(node, _Text):
            self.out.append(node.text)
        elif isinstance(node, _Action):
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.node = node
                self.out.append(print_value(val))
        elif isinstance(node, _List):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, _Branch):
            if node.kind == "range":
                self.walk_range(dot, node)
            else:
                mark = len(self.vars)
                try:
                    val = self.eval_pipeline(dot, node.pipe)
                    if _truth(val):
                        self.walk(val if node.kind == "with" else dot, node.list)
                    elif node.else_list is not None:
                        self.walk(dot, node.else_list)
                finally:
                    del self.vars[mark:]
        elif isinstance(node, _Marker):
            raise _Break if node.kind == "break" else _Continue
        else:  # pragma: no cover - the parser builds no other nodes here
            raise self.errorf(f"unknown node: {node}")

    def walk_range(self, dot: object, r: _Branch) -> None:
        self.node = r
        outer = len(self.vars)
        try:
            val = self.eval_pipeline(dot, r.pipe)
            mark = len(self.vars)
            decl = r.pipe.decl
            if isinstance(val, dict):
                items: list[tuple[object, object]] = _sorted_items(val)
            elif isinstance(val, (list, tuple)):
                items = list(enumerate(val))
            elif isinstance(val, int) and not isinstance(val, bool):
                items = [(i, i) for i in range(val)]
            elif val is MISSING or val is None:
                items = []
            else:
                raise self.errorf(f"range can't iterate over {format_value(val)}")
            try:
                for key, elem in items:
                    if len(decl) == 1:
                        self.set_var(decl[0], elem)
                    elif len(decl) == 2:
                        self.set_var(decl[0], key)
                        self.set_var(decl[1], elem)
                    try:
                        self.walk(elem, r.list)
                    except _Continue:
                        pass
                    finally:
                        del self.vars[mark:]
            except _Break:
                return
            if not items and r.else_list is not None:
                self.walk(dot, r.else_list)
        finally:
            del self.vars[outer:]

    # evaluation
    def eval_pipeline(self, dot: object, pipe: _Pipe) -> object:
        self.node = pipe
        value: object = _NOFINAL
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
            if value is None:  # a nil interface{} becomes Go's invalid value between commands
                value = MISSING
        for name in pipe.decl:
            if pipe.is_assign:
                self.set_var(name, value)
            else:
                self.vars.append([name, value])
        return value

    def not_a_function(self, args: list[_Node], final: object) -> None:
        if len(args) > 1 or final is not _NOFINAL:
            raise self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: object, cmd: _Command, final: object) -> object:
        first = cmd.args[0]
        if isinstance(first, _Field):
            self.node = first
            return self.eval_field_chain(dot, dot, first, first.idents, cmd.args, final)
        if isinstance(first, _Chain):
            self.node = first
            if isinstance(first.node, _Literal) and first.node.kind == "nil":
                raise self.errorf(f"indirection through explicit nil in {first}")
            recv = self.eval_arg(dot, first.node)
            return self.eval_field_chain(dot, recv, first, first.fields, cmd.args, final)
        if isinstance(first, _Identifier):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, _Pipe):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, _Variable):
            return self.eval_variable(dot, first, cmd.args, final)
        self.node = first
        self.not_a_function(cmd.args, final)
        assert isinstance(first, _Literal)
        if first.kind == "dot":
            return dot
        if first.kind == "nil":
            raise self.errorf("nil is not a command")
        return first.value

    def eval_variable(self, dot: object, v: _Variable, args: list[_Node] | None, final: object) -> object:
        self.node = v
        value = self.var_value(v.idents[0])
        if len(v.idents) == 1:
            if args is not None:
                self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, v, v.idents[1:], args, final)

    def eval_field_chain(
        self,
        dot: object,
        recv: object,
        node: _Node,
        idents: list[str],
        args: list[_Node] | None,
        final: object,
    ) -> object:
        for name in idents[:-1]:
            recv = self.eval_field(dot, name, node, None, _NOFINAL, recv)
        return self.eval_field(dot, idents[-1], node, args, final, recv)

    def eval_field(
        self, dot: object, name: str, node: _Node, args: list[_Node] | None, final: object, recv: object
    ) -> object:
        self.node = node
        if recv is MISSING:
            if self.missing_error:
                raise self.errorf(f"nil data; no entry for key {go_quote(name)}")
            return MISSING
        if recv is None:
            raise self.errorf(f"nil pointer evaluating interface {{}}.{name}")
        has_args = (args is not None and len(args) > 1) or final is not _NOFINAL
        if isinstance(recv, dict):
            if has_args:
                raise self.errorf(f"{name} is not a method but has arguments")
            if name in recv:
                return recv[name]
            if self.missing_error:
                raise self.errorf(f"map has no entry for key {go_quote(name)}")
            return MISSING
        if isinstance(recv, (str, int, float, bool, bytes, list, tuple)) or name.startswith("_"):
            raise self.errorf(f"can't evaluate field {name} in type {go_type(recv)}")
        try:
            attr = getattr(recv, name)
        except AttributeError:
            raise self.errorf(f"can't evaluate field {name} in type {go_type(recv)}") from None
        if callable(attr) and getattr(attr, "__self__", None) is recv:  # a bound method: call it
            return self.call(dot, attr, name, node, args[1:] if args else [], final, 0, None)
        if has_args:
            raise self.errorf(f"{name} has arguments but cannot be invoked as function")
        return attr

    def eval_function(
        self, dot: object, ident: _Identifier, cmd: _Node, args: list[_Node], final: object
    ) -> object:
        self.node = ident
        name = ident.name
        spec = self.funcs.get(name) or BUILTINS[name]
        fn, lo, hi = spec
        argn = args[1:]
        if name in ("and", "or") and spec is BUILTINS[name]:
            if len(argn) + (final is not _NOFINAL) < 1:
                raise self.errorf(f"wrong number of args for {name}: want at least 1 got 0")
            v: object = MISSING
            for a in argn:
                v = self.eval_arg(dot, a)
                if _truth(v) == (name == "or"):
                    return v
            if final is not _NOFINAL:
                v = final
            return v
        return self.call(dot, fn, name, cmd, argn, final, lo, hi)

    def call(
        self,
        dot: object,
        fn: Callable[..., object],
        name: str,
        node: _Node,
        args: list[_Node],
        final: object,
        lo: int,
        hi: int | None,
    ) -> object:
        n = len(args) + (final is not _NOFINAL)
        if n < lo or (hi is not None and n > hi):
            want = f"at least {lo}" if hi is None else str(lo)
            raise self.errorf(f"wrong number of args for {name}: want {want} got {n}")
        vals = [self.eval_arg(dot, a) for a in args]
        if final is not _NOFINAL:
            vals.append(final)
        try:
            return fn(*vals)
        except _ArgError as e:
            # Go checks each argument as it evaluates it, so the error points at that argument.
            for a, v in zip(args, vals, strict=False):  # vals may end with the piped value
                if v is e.value:
                    self.node = a
                    break
            raise self.errorf(str(e)) from None
        except (_FuncError, ValueError, TypeError, KeyError, IndexError) as e:
            self.node = node
            raise self.errorf(f"error calling {name}: {e}") from None

    def eval_arg(self, dot: object, n: _Node) -> object:
        self.node = n
        if isinstance(n, _Literal):
            return dot if n.kind == "dot" else n.value
        if isinstance(n, _Field):
            return self.eval_field_chain(dot, dot, n, n.idents, None, _NOFINAL)
        if isinstance(n, _Variable):
            return self.eval_variable(dot, n, None, _NOFINAL)
        if isinstance(n, _Pipe):
            return self.eval_pipeline(dot, n)
        if isinstance(n, _Identifier):
            return self.eval_function(dot, n, n, [n], _NOFINAL)
        if isinstance(n, _Chain):
            recv = self.eval_arg(dot, n.node)
            return self.eval_field_chain(dot, recv, n, n.fields, None, _NOFINAL)
        raise self.errorf(f"can't handle {n} as an argument")


class Template:
    """A parsed template.  Execute it as often as you like; it holds no execution state."""

    __slots__ = ("_root", "source")

    def __init__(self, source: str, root: _List) -> None:
        self.source = source
        self._root = root

    def write(
        self,
        out: list[str],
        data: object,
        *,
        funcs: Mapping[str, FuncSpec] | None = None,
        missingkey: str = "default",
    ) -> None:
        """Execute against ``data``, appending the output to ``out``.

        On an error ``out`` keeps what was written before it, as Go's writer would.
        ``funcs`` replaces functions by name (docker's header functions for table headers);
        ``missingkey="error"`` is Go's ``Option("missingkey=error")`` (docker inspect's raw mode).
        """
        st = _State(self.source, funcs or {}, missingkey, out)
        st.vars.append(["$", data])
        try:
            st.walk(data, self._root)
        except _ExecError as e:
            raise TemplateError(str(e)) from None
        except RecursionError:
            raise TemplateError("template: : exceeded maximum template depth") from None

    def execute(
        self, data: object, *, funcs: Mapping[str, FuncSpec] | None = None, missingkey: str = "default"
    ) -> str:
        out: list[str] = []
        self.write(out, data, funcs=funcs, missingkey=missingkey)
        return "".join(out)


_CACHE: dict[str, Template] = {}


def compile(template: str) -> Template:
    """Parse ``template`` (cached).  A syntax error raises TemplateError (an InvalidArgument):
    ``template parsing error: template: :1: unexpected "}" in operand``."""
    t = _CACHE.get(template)
    if t is not None:
        return t
    p = _Parser(template)
    try:
        root = p.parse()
    except _ParseError as e:
        raise TemplateError(f"template parsing error: template: :{p.line}: {e}") from None
    except RecursionError:
        raise TemplateError("template parsing error: template: : nesting too deep") from None
    t = Template(template, root)
    if len(_CACHE) > 256:
        _CACHE.clear()
    _CACHE[template] = t
    return t


def render(template: str, data: object) -> str:
    """Parse (cached) and execute ``template`` against ``data``."""
    return compile(template).execute(data)
