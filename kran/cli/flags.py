"""A small flag parser with docker's (pflag's) behaviour and help layout.

- ``-a``, ``-aq`` (combined), ``-o FILE``, ``-oFILE``, ``-o=FILE``, ``--out FILE``, ``--out=FILE``
- booleans accept ``--all=false``; list flags repeat (``-c A -c B``)
- flags may follow arguments unless the command stops at its first argument (``run IMAGE CMD...``)
- errors say what docker says: ``unknown flag: --x`` / ``unknown shorthand flag: 'x' in -x``
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class UsageError(Exception):
    """Bad flags or arguments: exit status 125 like docker's flag errors (1 for arg count)."""

    def __init__(self, msg: str, status: int = 125, show_usage: bool = False) -> None:
        super().__init__(msg)
        self.status = status
        self.show_usage = show_usage


@dataclass(frozen=True, slots=True)
class Flag:
    long: str
    short: str = ""
    kind: str = "bool"  # bool | str | int | list
    metavar: str = ""
    help: str = ""
    default: Any = None
    hidden: bool = False

    @property
    def dest(self) -> str:
        return self.long.replace("-", "_")


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # "images"
    usage: str  # "[OPTIONS] [REPOSITORY[:TAG]]"
    description: str
    flags: tuple[Flag, ...] = ()
    aliases: tuple[str, ...] = ()
    min_args: int = 0
    max_args: int | None = None
    interspersed: bool = True
    args_error: str = ""  # docker's "requires at least 1 argument" wording override
    handler: str = ""  # function name in the command's module
    examples: str = ""


@dataclass
class Parsed:
    opts: dict[str, Any] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    given: set[str] = field(default_factory=set)  # the dests typed on the command line (not defaults)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.opts[name]
        except KeyError:
            raise AttributeError(name) from None


HELP = Flag("help", "", "bool", help="Print usage", hidden=True)


def _bool(v: str, flag: str) -> bool:
    lv = v.lower()
    if lv in ("1", "t", "true"):
        return True
    if lv in ("0", "f", "false"):
        return False
    raise UsageError(f'invalid argument "{v}" for "{flag}" flag: strconv.ParseBool: parsing "{v}": invalid syntax')


def parse(cmd: Command, argv: list[str]) -> Parsed:
    flags = cmd.flags + (HELP,)
    by_long = {f.long: f for f in flags}
    by_short = {f.short: f for f in flags if f.short}
    p = Parsed()
    for f in flags:
        p.opts[f.dest] = list(f.default or []) if f.kind == "list" else f.default if f.default is not None else (False if f.kind == "bool" else None)
    i = 0

    def setv(f: Flag, value: str, name: str) -> None:
        p.given.add(f.dest)
        if f.kind == "bool":
            p.opts[f.dest] = _bool(value, name)
        elif f.kind == "int":
            try:
                p.opts[f.dest] = int(value, 0)
            except ValueError:
                raise UsageError(f'invalid argument "{value}" for "{name}" flag: strconv.ParseInt: parsing "{value}": invalid syntax') from None
        elif f.kind == "list":
            p.opts[f.dest].append(value)
        else:
            p.opts[f.dest] = value

    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            p.args.extend(argv[i:])
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, value = a[2:].partition("=")
            f = by_long.get(name)
            if f is None:
                raise UsageError(f"unknown flag: --{name}")
            if f.kind == "bool":
                setv(f, value if eq else "true", "--" + name)
            else:
                if not eq:
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: --{name}")
                    value = argv[i]
                    i += 1
                setv(f, value, "--" + name)
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                c = a[j]
                f = by_short.get(c)
                if f is None:
                    if c == "h":
                        f = HELP
                    else:
                        raise UsageError(f"unknown shorthand flag: '{c}' in {a}")
                if f.kind == "bool":
                    if j + 1 < len(a) and a[j + 1] == "=":
                        setv(f, a[j + 2 :], "-" + c)
                        break
                    setv(f, "true", "-" + c)
                    j += 1
                    continue
                rest = a[j + 1 :]
                if rest.startswith("="):
                    rest = rest[1:]
                if not rest:
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: '{c}' in -{c}")
                    rest = argv[i]
                    i += 1
                setv(f, rest, "-" + c)
                break
        else:
            p.args.append(a)
            if not cmd.interspersed:
                p.args.extend(argv[i:])
                break
    if p.opts.get("help"):
        return p
    n = len(p.args)
    if n < cmd.min_args or (cmd.max_args is not None and n > cmd.max_args):
        if cmd.args_error:
            msg = cmd.args_error
        elif cmd.max_args == 0:
            msg = "accepts no arguments"  # cobra's NoArgs
        elif cmd.max_args == cmd.min_args:
            msg = f"requires exactly {cmd.min_args} argument{'s' if cmd.min_args != 1 else ''}"
        elif n < cmd.min_args:
            msg = f"requires at least {cmd.min_args} argument{'s' if cmd.min_args != 1 else ''}"
        else:
            msg = f"accepts at most {cmd.max_args} argument{'s' if cmd.max_args != 1 else ''}"
        raise UsageError(msg, status=1, show_usage=True)
    return p


def help_text(cmd: Command, prog: str = "kran") -> str:
    lines = [f"Usage:  {prog} {cmd.name} {cmd.usage}".rstrip(), "", cmd.description, ""]
    if cmd.aliases:
        lines += ["Aliases:", "  " + ", ".join(f"{prog} {a}" for a in cmd.aliases), ""]
    visible = [f for f in cmd.flags if not f.hidden]
    if visible:
        lines.append("Options:")
        left = []
        for f in visible:
            s = f"  -{f.short}, " if f.short else "      "
            s += f"--{f.long}"
            if f.kind != "bool":
                s += " " + (f.metavar or ("list" if f.kind == "list" else f.kind if f.kind != "str" else "string"))
            left.append(s)
        width = max(len(s) for s in left) + 3
        for s, f in zip(left, visible, strict=True):
            desc = f.help
            if f.kind not in ("bool", "list") and f.default not in (None, ""):
                desc += f' (default "{f.default}")' if f.kind == "str" else f" (default {f.default})"
            lines.append(s.ljust(width) + desc)
        lines.append("")
    if cmd.examples:
        lines += ["Examples:", cmd.examples, ""]
    return "\n".join(lines)


def group_dispatch(group: str, description: str, subs: dict[str, Command], argv: list[str],
                   namespace: dict[str, Any]) -> tuple[Command, Any]:
    """``kran GROUP SUB ...``: the subcommand's spec (named "GROUP SUB" in its help) and handler.

    Without a subcommand (or with --help) the handler prints the group's command list, made from
    the subcommands' own descriptions.
    """
    import sys
    from dataclasses import replace

    if not argv or argv[0] in ("-h", "--help"):
        argv.clear()

        def show(_engine: Any, _p: Parsed) -> int:
            primary: dict[str, str] = {}
            for sub, cmd in subs.items():
                primary.setdefault(cmd.description, sub)  # the first name listed is the primary one
            names = sorted(primary.values())
            lines = [f"Usage:  kran {group} COMMAND", "", description, "", "Commands:"]
            lines += [f"  {n:<11} {subs[n].description}" for n in names]
            lines += ["", f"Run 'kran {group} COMMAND --help' for more information on a command.", ""]
            sys.stdout.write("\n".join(lines))
            return 0

        return Command(group, "COMMAND", description, max_args=99), show
    sub = argv.pop(0)
    cmd = subs.get(sub)
    if cmd is None:
        raise UsageError(f"kran {group}: '{sub}' is not a kran command")
    return replace(cmd, name=f"{group} {sub}"), namespace[cmd.handler]


def kv_pairs(items: list[str]) -> dict[str, str]:
    """``--label k=v`` / ``--opt k=v`` values as a dict (a bare ``k`` maps to "")."""
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        out[k] = v
    return out
