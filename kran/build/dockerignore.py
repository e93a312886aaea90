"""``.dockerignore``: Docker's patternmatcher (moby/patternmatcher), pure.

- one pattern a line; ``#`` lines and blank lines are skipped; patterns are cleaned like Go's
  ``filepath.Clean`` and a leading ``/`` (or ``./``) is dropped;
- ``*`` matches within one path element, ``?`` one character, ``**`` any number of elements,
  ``[a-z]`` classes, ``\\`` escapes;
- a pattern that matches a directory matches everything below it;
- ``!pattern`` re-includes; the last pattern that matches a path decides.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]


def clean(p: str) -> str:
    """Go's filepath.Clean, then the leading ``/`` removed (``./a`` -> ``a``, ``/a/../b`` -> ``b``)."""
    c = posixpath.normpath(p) if p else "."
    if c.startswith("//"):
        c = "/" + c.lstrip("/")
    return c.lstrip("/") or "."


def _regex(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 1
                # "**/" at a boundary matches zero or more directories
                if i + 1 < n and pattern[i + 1] == "/":
                    i += 1
                    out.append("(.*/)?")
                else:
                    out.append(".*")
            else:
                out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


def compile_patterns(lines: list[str]) -> list[Pattern]:
    pats: list[Pattern] = []
    for raw in lines:
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        excl = s.startswith("!")
        if excl:
            s = s[1:].strip()
            if not s:
                continue
        s = clean(s)
        pats.append(Pattern(s, excl, _regex(s)))
    return pats


def read(text: str) -> list[Pattern]:
    """The patterns of a ``.dockerignore`` file's text."""
    return compile_patterns(text.replace("\r\n", "\n").split("\n"))


class Matcher:
    def __init__(self, patterns: list[Pattern]) -> None:
        self.patterns = patterns

    @classmethod
    def from_text(cls, text: str) -> Matcher:
        return cls(read(text))

    def excluded(self, path: str) -> bool:
        """Is ``path`` (relative to the context, ``/``-separated) left out of the context?"""
        path = clean(path)
        parents = path.split("/")
        candidates = ["/".join(parents[: i + 1]) for i in range(len(parents))]
        matched = False
        for p in self.patterns:
            if any(p.regex.match(c) for c in candidates):
                matched = not p.exclusion
        return matched

    def may_contain_included(self, dirpath: str) -> bool:
        """Whether an excluded directory might still hold a re-included path (so walk into it)."""
        d = clean(dirpath)
        for p in self.patterns:
            if p.exclusion and (p.text.startswith(d + "/") or "*" in p.text or "?" in p.text or "[" in p.text):
                return True
        return False
