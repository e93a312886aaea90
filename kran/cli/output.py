"""Helpers the command modules share: JSON like Go's encoder, --format handling, confirmations."""

from __future__ import annotations

import sys
from typing import Any


def go_json(obj: Any, indent: int | None = 4) -> str:
    """JSON as Go's json.MarshalIndent writes it (4 spaces, <>& escaped, UTF-8 kept)."""
    import json

    s = json.dumps(obj, indent=indent, ensure_ascii=False, separators=(",", ": ") if indent else (",", ":"))
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def unescape_format(fmt: str) -> str:
    """docker turns a typed ``\\t`` / ``\\n`` in --format into the real character."""
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def print_formatted(fmt: str, rows: list[dict[str, Any]], header: dict[str, str]) -> None:
    """--format: ``table [TEMPLATE]``, ``json`` or a Go template, one row per line."""
    from kran.cli.table import format_rows

    sys.stdout.write(format_rows(unescape_format(fmt), rows, header))


def table(rows: list[list[str]]) -> str:
    from kran.cli.table import tabwrite

    return tabwrite(rows)


def confirm(question: str) -> bool:
    sys.stdout.write(question + " [y/N] ")
    sys.stdout.flush()
    line = sys.stdin.readline() if sys.stdin else ""
    return line.strip().lower() in ("y", "yes")


def print_inspect(found: list[Any], errors: list[str], fmt: str | None) -> int:
    """docker inspect's output: a JSON array (or ``-f`` per object), then the errors; status 1 if any."""
    if fmt:
        from kran.cli.gotemplate import compile as compile_template

        t = compile_template(unescape_format(fmt))
        for obj in found:
            sys.stdout.write(t.execute(obj) + "\n")
    else:
        sys.stdout.write(go_json(found) + "\n")
    for e in errors:
        sys.stderr.write(e + "\n")
    return 1 if errors else 0
