"""Dockerfile parser: text -> typed instructions (pure; BuildKit's ``parser`` + ``instructions``).

Two steps, like BuildKit:

1. :func:`parse_lines` reads parser directives (``# syntax=``, ``# escape=``), drops comments, joins
   line continuations (also across blank and comment lines), collects heredocs (``RUN <<EOF``) and
   yields one :class:`Node` per instruction (its line, keyword, flags and raw argument text).
2. :func:`parse` turns nodes into typed instructions grouped in :class:`Stage` s, with the global
   ``ARG`` s before the first ``FROM``.

Variables are *not* expanded here except where Docker does it at parse time (nowhere): the builder
expands with :mod:`kran.build.shell` per :data:`EXPANDS`, once the ``ARG``/``ENV`` values are known.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from kran.errors import InvalidArgument


class DockerfileError(InvalidArgument):
    from_daemon = False


#: instructions whose arguments go through the shell-word lexer (moby's ``replaceEnvAllowed``)
EXPANDS = frozenset({"add", "copy", "env", "expose", "from", "label", "stopsignal", "user", "volume", "workdir", "arg"})
KNOWN = ("add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck", "label",
         "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([a-zA-Z_][a-zA-Z0-9_]*)\2")
_FLAG_KINDS = {
    "from": {"platform"},
    "copy": {"chown", "chmod", "from", "link", "parents", "exclude"},
    "add": {"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"},
    "run": {"mount", "network", "security"},
    "healthcheck": {"interval", "timeout", "start-period", "start-interval", "retries"},
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Heredoc:
    name: str
    content: str
    expand: bool = True  # an unquoted terminator: the content is expanded by the shell
    chomp: bool = False  # <<-: leading tabs removed


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    line: int
    keyword: str  # lower case
    flags: dict[str, str]
    args: str  # the raw text after the flags
    original: str
    heredocs: tuple[Heredoc, ...] = ()


# -- typed instructions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    line: int
    original: str

    @property
    def keyword(self) -> str:
        return type(self).__name__.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class From(Instruction):
    image: str  # unexpanded (global ARGs are expanded by the builder)
    name: str = ""  # AS name, lower case
    platform: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Command(Instruction):
    """RUN, CMD, ENTRYPOINT: exec form (``json``) or shell form (one string)."""

    args: list[str]
    json: bool
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Run(Command):
    network: str = ""
    mounts: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cmd(Command):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Entrypoint(Command):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Copy(Instruction):
    sources: list[str]
    dest: str
    chown: str = ""
    chmod: str = ""
    source_stage: str = ""  # --from (COPY only)
    json: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Add(Copy):
    checksum: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyValues(Instruction):
    """ENV and LABEL: ordered (key, value) pairs, values still quoted/unexpanded."""

    pairs: list[tuple[str, str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Env(KeyValues):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Label(KeyValues):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Arg(Instruction):
    args: list[tuple[str, str | None]]  # (name, default or None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Workdir(Instruction):
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class User(Instruction):
    user: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Expose(Instruction):
    ports: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume(Instruction):
    paths: list[str]
    json: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Healthcheck(Instruction):
    test: list[str]  # ["NONE"] | ["CMD", ...] | ["CMD-SHELL", "..."]
    interval: float = 0.0  # seconds
    timeout: float = 0.0
    start_period: float = 0.0
    start_interval: float = 0.0
    retries: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Shell(Instruction):
    shell: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Stopsignal(Instruction):
    signal: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Onbuild(Instruction):
    expression: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Maintainer(Instruction):
    maintainer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    index: int
    base: From
    instructions: list[Instruction]

    @property
    def name(self) -> str:
        return self.base.name


@dataclass(frozen=True, slots=True, kw_only=True)
class Dockerfile:
    directives: dict[str, str]
    escape: str
    global_args: list[Arg]
    stages: list[Stage]

    def stage_index(self, name: str) -> int | None:
        """A stage by ``AS`` name (case-insensitive) or by number."""
        for s in self.stages:
            if s.name and s.name == name.lower():
                return s.index
        if name.isdigit() and int(name) < len(self.stages):
            return int(name)
        return None


# -- step 1: lines -> nodes ---------------------------------------------------------------------


def _directives(lines: list[str]) -> tuple[dict[str, str], int]:
    found: dict[str, str] = {}
    i = 0
    for i, line in enumerate(lines):  # noqa: B007
        m = _DIRECTIVE.match(line.strip()) if line.strip().startswith("#") else None
        if not m:
            return found, i
        key = m.group(1).lower()
        if key not in ("syntax", "escape", "check"):
            return found, i  # an unknown directive is a comment and ends the directives
        if key in found:
            raise DockerfileError(f"only one {key} parser directive can be used")
        found[key] = m.group(2)
    return found, len(lines)


def parse_lines(text: str) -> tuple[dict[str, str], str, list[Node]]:
    """(directives, escape character, nodes)."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    directives, _ = _directives(lines)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(f"invalid escape token '{escape}' does not match ` or \\")
    cont = re.compile(r"(?:" + re.escape(escape) + r")[ \t]*$")
    nodes: list[Node] = []
    i, n = 0, len(lines)
    while i < n:
        raw = lines[i]
        start = i + 1
        i += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts: list[str] = []
        cur = raw.lstrip()
        while True:
            m = cont.search(cur)
            if not m:
                parts.append(cur)
                break
            parts.append(cur[: m.start()])
            # the next line that is neither blank nor a comment continues this one
            while i < n and (not lines[i].strip() or lines[i].strip().startswith("#")):
                i += 1
            if i >= n:
                break
            cur = lines[i]
            i += 1
        full = "".join(parts)
        word, _, rest = full.strip().partition(" ") if " " in full.strip() else (full.strip(), "", "")
        if "\t" in word:
            word, _, more = word.partition("\t")
            rest = more + " " + rest if rest else more
        keyword = word.lower()
        if keyword not in KNOWN:
            raise DockerfileError(f"dockerfile parse error on line {start}: unknown instruction: {word.upper()}")
        rest = rest.strip()
        flags: dict[str, str] = {}
        allowed = _FLAG_KINDS.get(keyword, set())
        while rest.startswith("--"):
            tok, _, after = rest.partition(" ")
            name, eq, value = tok[2:].partition("=")
            if name not in allowed:
                raise DockerfileError(f"dockerfile parse error on line {start}: unknown flag: {name}")
            if name in flags and name not in ("mount", "exclude"):
                raise DockerfileError(f"dockerfile parse error on line {start}: duplicate flag specified: {name}")
            flags[name] = (flags[name] + "\n" + value) if name in flags else value if eq else "true"
            rest = after.lstrip()
        heredocs: list[Heredoc] = []
        if keyword in ("run", "copy", "add") and "<<" in rest and not rest.lstrip().startswith("["):
            for m in _HEREDOC.finditer(rest):
                chomp, quote, name = m.group(1) == "-", m.group(2), m.group(3)
                body: list[str] = []
                while True:
                    if i >= n:
                        raise DockerfileError(f"dockerfile parse error on line {start}: unterminated heredoc {name}")
                    line = lines[i]
                    i += 1
                    check = line.lstrip("\t") if chomp else line
                    if check == name:
                        break
                    body.append(check + "\n")
                heredocs.append(Heredoc(name=name, content="".join(body), expand=not quote, chomp=chomp))
        nodes.append(Node(line=start, keyword=keyword, flags=flags, args=rest, original=full.strip(),
                          heredocs=tuple(heredocs)))
    return directives, escape, nodes


# -- step 2: nodes -> instructions --------------------------------------------------------------


def _json_list(s: str) -> list[str] | None:
    s = s.strip()
    if not s.startswith("["):
        return None
    try:
        v = json.loads(s)
    except ValueError:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        return None
    return v


def split_words(s: str, escape: str = "\\") -> list[str]:
    """Whitespace-separated words, quotes and escapes kept (moby's ``parseWords``/``parseNameVal``)."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if not quote and c in " \t":
            if cur:
                words.append("".join(cur))
                cur = []
            i += 1
            continue
        if c == escape and i + 1 < n:
            cur.append(c + s[i + 1])
            i += 2
            continue
        if quote and c == quote:
            quote = ""
        elif not quote and c in "'\"":
            quote = c
        cur.append(c)
        i += 1
    if cur:
        words.append("".join(cur))
    return words


def _key_values(node: Node, escape: str, what: str) -> list[tuple[str, str]]:
    words = split_words(node.args, escape)
    if not words:
        raise DockerfileError(f"{what} requires at least one argument" if what == "LABEL" else f"{what} must have two arguments")
    if "=" not in words[0]:
        # the old form, "ENV key value with spaces"
        key, _, value = node.args.strip().partition(" ")
        if not value.strip() and not _:
            if what == "ENV":
                raise DockerfileError("ENV must have two arguments")
            raise DockerfileError(f"{what} must have two arguments")
        return [(key, value.strip())]
    pairs = []
    for w in words:
        if "=" not in w:
            raise DockerfileError(f'Syntax error - can\'t find = in "{w}". Must be of the form: name=value')
        k, _, v = w.partition("=")
        if not k:
            raise DockerfileError(f"{what} names can not be blank")
        pairs.append((k, v))
    return pairs


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(s: str) -> float:
    """Go's ``time.ParseDuration`` (``30s``, ``1m30s``, ``500ms``) in seconds."""
    if s in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise DockerfileError(f'time: invalid duration "{s}"')
    return total


def _command(node: Node, cls: type[Command], **extra: Any) -> Command:
    lst = _json_list(node.args)
    if lst is not None:
        return cls(line=node.line, original=node.original, args=lst, json=True, **extra)
    if not node.args.strip() and not node.heredocs:
        raise DockerfileError(f"{node.keyword.upper()} requires at least one argument")
    return cls(line=node.line, original=node.original, args=[node.args], json=False, heredocs=node.heredocs, **extra)


def _instruction(node: Node, escape: str) -> Instruction:  # noqa: C901 - a table would be no shorter
    k, a, f = node.keyword, node.args, node.flags
    base = {"line": node.line, "original": node.original}
    if k == "from":
        words = a.split()
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            raise DockerfileError(f"Dockerfile parse error line {node.line}: FROM requires either one or three arguments")
        name = words[2].lower() if len(words) == 3 else ""
        if name and not re.fullmatch(r"[a-z][a-z0-9\-_.]*", name):
            raise DockerfileError(f"invalid name for build stage: {words[2]!r}, name can't start with a number or contain symbols")
        return From(**base, image=words[0], name=name, platform=f.get("platform", ""))
    if k == "run":
        return _command(node, Run, network=f.get("network", ""), mounts=[m for m in f.get("mount", "").split("\n") if m])
    if k == "cmd":
        return _command(node, Cmd)
    if k == "entrypoint":
        return _command(node, Entrypoint)
    if k in ("copy", "add"):
        lst = _json_list(a)
        is_json = lst is not None
        words = lst if lst is not None else split_words(a, escape)
        if node.heredocs:
            words = [w for w in words if not w.startswith("<<")]
            words = ["<<" + h.name for h in node.heredocs] + words
        if len(words) < 2:
            raise DockerfileError(f"{k.upper()} requires at least two arguments, but only one was provided. Destination could not be determined.")
        extra: dict[str, Any] = {"chown": f.get("chown", ""), "chmod": f.get("chmod", ""), "json": is_json}
        if k == "copy":
            return Copy(**base, sources=words[:-1], dest=words[-1], source_stage=f.get("from", ""), **extra)
        return Add(**base, sources=words[:-1], dest=words[-1], checksum=f.get("checksum", ""), **extra)
    if k == "env":
        return Env(**base, pairs=_key_values(node, escape, "ENV"))
    if k == "label":
        return Label(**base, pairs=_key_values(node, escape, "LABEL"))
    if k == "maintainer":
        if not a.strip():
            raise DockerfileError("MAINTAINER requires exactly one argument")
        return Maintainer(**base, maintainer=a.strip())
    if k == "arg":
        words = split_words(a, escape)
        if not words:
            raise DockerfileError("ARG requires at least one argument")
        args: list[tuple[str, str | None]] = []
        for w in words:
            name, eq, default = w.partition("=")
            if not name:
                raise DockerfileError("ARG names can not be blank")
            args.append((name, default if eq else None))
        return Arg(**base, args=args)
    if k == "workdir":
        if not a.strip():
            raise DockerfileError("WORKDIR requires exactly one argument")
        return Workdir(**base, path=a.strip())
    if k == "user":
        if not a.strip():
            raise DockerfileError("USER requires exactly one argument")
        return User(**base, user=a.strip())
    if k == "expose":
        if not a.strip():
            raise DockerfileError("EXPOSE requires at least one argument")
        return Expose(**base, ports=split_words(a, escape))
    if k == "volume":
        lst = _json_list(a)
        paths = lst if lst is not None else split_words(a, escape)
        if not paths:
            raise DockerfileError("VOLUME requires at least one argument")
        if any(not p.strip() for p in paths):
            raise DockerfileError("VOLUME specified can not be an empty string")
        return Volume(**base, paths=paths, json=lst is not None)
    if k == "stopsignal":
        if len(a.split()) != 1:
            raise DockerfileError("STOPSIGNAL requires exactly one argument")
        return Stopsignal(**base, signal=a.strip())
    if k == "shell":
        lst = _json_list(a)
        if lst is None:
            raise DockerfileError("SHELL requires the arguments to be in JSON form")
        if not lst:
            raise DockerfileError("SHELL requires at least one argument")
        return Shell(**base, shell=lst)
    if k == "onbuild":
        expr = a.strip()
        first = expr.split(None, 1)[0].upper() if expr else ""
        if not first:
            raise DockerfileError("ONBUILD requires at least one argument")
        if first in ("ONBUILD",):
            raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if first in ("FROM", "MAINTAINER"):
            raise DockerfileError(f"{first} isn't allowed as an ONBUILD trigger")
        return Onbuild(**base, expression=expr)
    if k == "healthcheck":
        words = a.split(None, 1)
        if not words:
            raise DockerfileError("HEALTHCHECK requires at least one argument")
        typ = words[0].upper()
        if typ == "NONE":
            if len(words) > 1 or f:
                raise DockerfileError("HEALTHCHECK NONE takes no arguments")
            return Healthcheck(**base, test=["NONE"])
        if typ != "CMD":
            raise DockerfileError(f'Unknown type "{typ}" in HEALTHCHECK (try CMD)')
        rest = words[1] if len(words) > 1 else ""
        lst = _json_list(rest)
        if lst is not None:
            test = ["CMD", *lst]
        elif rest.strip():
            test = ["CMD-SHELL", rest.strip()]
        else:
            raise DockerfileError("Missing command after HEALTHCHECK CMD")
        durations = {}
        for key in ("interval", "timeout", "start-period", "start-interval"):
            d = parse_duration(f.get(key, "0"))
            if 0 < d < 0.001:
                raise DockerfileError(f"Interval {key} cannot be less than 1ms")
            if d < 0:
                raise DockerfileError(f"Interval {key} cannot be set to negative value")
            durations[key.replace("-", "_")] = d
        try:
            retries = int(f.get("retries", "0"))
        except ValueError as e:
            raise DockerfileError(f'strconv.ParseInt: parsing "{f.get("retries")}": invalid syntax') from e
        if retries < 0:
            raise DockerfileError("--retries cannot be negative")
        return Healthcheck(**base, test=test, retries=retries, **durations)
    raise DockerfileError(f"dockerfile parse error on line {node.line}: unknown instruction: {k.upper()}")  # pragma: no cover


def parse(text: str) -> Dockerfile:
    """The whole Dockerfile; raises :class:`DockerfileError` with Docker's wording."""
    directives, escape, nodes = parse_lines(text)
    if not nodes:
        raise DockerfileError("file with no instructions")
    global_args: list[Arg] = []
    stages: list[Stage] = []
    current: list[Instruction] | None = None
    for node in nodes:
        ins = _instruction(node, escape)
        if isinstance(ins, From):
            current = []
            stages.append(Stage(index=len(stages), base=ins, instructions=current))
        elif current is None:
            if not isinstance(ins, Arg):
                raise DockerfileError("no build stage in current context")
            global_args.append(ins)
        else:
            current.append(ins)
    if not stages:
        raise DockerfileError("no build stage in current context")
    names = [s.name for s in stages if s.name]
    for nm in names:
        if names.count(nm) > 1:
            raise DockerfileError(f"duplicate name {nm}")
    return Dockerfile(directives=directives, escape=escape, global_args=global_args, stages=stages)


def to_json(obj: Any) -> Any:
    """Instructions as plain JSON data (for golden files and debugging)."""
    from dataclasses import fields, is_dataclass

    if is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {"kind": type(obj).__name__} if isinstance(obj, Instruction) else {}
        for fl in fields(obj):
            v = getattr(obj, fl.name)
            if v in ("", None, [], (), {}, 0, 0.0, False) and fl.name not in ("line", "args", "index"):
                continue
            out[fl.name] = to_json(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_json(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj
