"""The shell-word lexer of Dockerfiles (BuildKit's ``frontend/dockerfile/shell/lex.go``): pure.

It expands ``$VAR``, ``${VAR}``, ``${VAR:-w}``, ``${VAR-w}``, ``${VAR:+w}``, ``${VAR+w}``,
``${VAR:?msg}`` and ``${VAR?msg}``, removes quotes (single quotes are literal, double quotes allow
expansion), and honours the Dockerfile's escape character (``\\`` or, with ``# escape=``, a backtick).
"""

from __future__ import annotations

from collections.abc import Mapping

from kran.errors import InvalidArgument


class Lexer:
    def __init__(self, escape: str = "\\") -> None:
        self.escape = escape

    def word(self, s: str, env: Mapping[str, str]) -> str:
        """One word: quotes removed, variables expanded (whitespace kept)."""
        words = self._process(s, env, split=False)
        return words[0] if words else ""

    def words(self, s: str, env: Mapping[str, str]) -> list[str]:
        """Whitespace-separated words (quotes group), each expanded (``EXPOSE``, ``VOLUME a b``)."""
        return self._process(s, env, split=True)

    # -- the scanner -----------------------------------------------------------------------------

    def _process(self, s: str, env: Mapping[str, str], *, split: bool) -> list[str]:
        esc = self.escape
        out: list[str] = []
        cur: list[str] = []
        have = False  # a word has started (so "" is kept as an empty word)
        i, n = 0, len(s)
        while i < n:
            c = s[i]
            if split and c in " \t\r\n":
                if have:
                    out.append("".join(cur))
                    cur, have = [], False
                i += 1
                continue
            have = True
            if c == esc:
                if i + 1 < n:
                    cur.append(s[i + 1])
                    i += 2
                else:
                    cur.append(c)  # a trailing escape stays (lex.go: "escape at end of word")
                    i += 1
            elif c == "'":
                j = s.find("'", i + 1)
                if j < 0:
                    raise InvalidArgument("unexpected end of statement while looking for matching single-quote")
                cur.append(s[i + 1 : j])
                i = j + 1
            elif c == '"':
                i += 1
                while True:
                    if i >= n:
                        raise InvalidArgument("unexpected end of statement while looking for matching double-quote")
                    c = s[i]
                    if c == '"':
                        i += 1
                        break
                    if c == esc and i + 1 < n and s[i + 1] in ('"', "$", esc):
                        cur.append(s[i + 1])
                        i += 2
                    elif c == "$":
                        v, i = self._dollar(s, i, env)
                        cur.append(v)
                    else:
                        cur.append(c)
                        i += 1
            elif c == "$":
                v, i = self._dollar(s, i, env)
                cur.append(v)
            else:
                cur.append(c)
                i += 1
        if have:
            out.append("".join(cur))
        return out

    def _dollar(self, s: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
        """Expand the ``$...`` at ``s[i]``: (value, index after it)."""
        n = len(s)
        i += 1
        if i >= n:
            return "$", i
        c = s[i]
        if c == "{":
            i += 1
            name, i = self._name(s, i)
            if not name:
                raise InvalidArgument(f"bad substitution: {s}")
            if i >= n:
                raise InvalidArgument(f"missing '}}' in {s}")
            c = s[i]
            if c == "}":
                return env.get(name, ""), i + 1
            colon = False
            if c == ":":
                colon = True
                i += 1
                if i >= n:
                    raise InvalidArgument(f"missing '}}' in {s}")
                c = s[i]
            if c not in "-+?":
                raise InvalidArgument(f"unsupported modifier ({c}) in substitution: {s}")
            i += 1
            word, i = self._until_brace(s, i, env)
            val = env.get(name)
            isset = val is not None and (val != "" or not colon)
            if c == "-":
                return (val if isset else word), i  # type: ignore[return-value]
            if c == "+":
                return (word if isset else ""), i
            if not isset:
                raise InvalidArgument(f"{name}: {word or 'is not allowed to be unset'}")
            return val, i  # type: ignore[return-value]
        if c.isalpha() or c == "_":
            name, i = self._name(s, i)
            return env.get(name, ""), i
        if c.isdigit() or c in "*#@!?$-":  # special parameters: empty, like lex.go
            return "", i + 1
        return "$", i

    @staticmethod
    def _name(s: str, i: int) -> tuple[str, int]:
        j = i
        while j < len(s) and (s[j].isalnum() or s[j] == "_"):
            j += 1
        return s[i:j], j

    def _until_brace(self, s: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
        """The word of a ``${x:-word}`` modifier, itself expanded, up to the matching ``}``."""
        out: list[str] = []
        n = len(s)
        while i < n:
            c = s[i]
            if c == "}":
                return "".join(out), i + 1
            if c == self.escape and i + 1 < n:
                out.append(s[i + 1])
                i += 2
            elif c == "$":
                v, i = self._dollar(s, i, env)
                out.append(v)
            elif c == "'":
                j = s.find("'", i + 1)
                if j < 0:
                    raise InvalidArgument("unexpected end of statement while looking for matching single-quote")
                out.append(s[i + 1 : j])
                i = j + 1
            elif c == '"':
                j = i + 1
                while j < n and s[j] != '"':
                    j += 1
                out.append(self.word(s[i : j + 1], env))
                i = j + 1
            else:
                out.append(c)
                i += 1
        raise InvalidArgument(f"missing '}}' in {s}")
