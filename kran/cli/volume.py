"""Volume commands (``volume create/ls/inspect/rm/prune/export/import``) and ``cp``."""

from __future__ import annotations

import sys
from typing import Any

from kran.cli.flags import Command, Flag, kv_pairs
from kran.cli.flags import Parsed as P

FORMAT_HELP = "Format output using a custom template:\n'table': Print output in table format with column headers (default)\n'table TEMPLATE': Print output in table format using the given Go template\n'json': Print in JSON format\n'TEMPLATE': Print output using the given Go template"

CREATE = Command("volume create", "[OPTIONS] [VOLUME]", "Create a volume", (
    Flag("driver", "d", "str", "string", 'Specify volume driver name', default="local"),
    Flag("label", "", "list", "list", "Set metadata for a volume"),
    Flag("name", "", "str", "string", "Specify volume name", hidden=True),
    Flag("opt", "o", "list", "map", "Set driver specific options"),
), max_args=1, handler="cmd_create")
LS = Command("volume ls", "[OPTIONS]", "List volumes", (
    Flag("filter", "f", "list", "filter", "Provide filter values (e.g. \"dangling=true\")"),
    Flag("format", "", "str", "string", FORMAT_HELP.split("\n")[0]),
    Flag("quiet", "q", help="Only display volume names"),
), max_args=0, handler="cmd_ls")
INSPECT = Command("volume inspect", "[OPTIONS] VOLUME [VOLUME...]", "Display detailed information on one or more volumes", (
    Flag("format", "f", "str", "string", "Format output using a custom template"),
), min_args=1, handler="cmd_inspect")
RM = Command("volume rm", "[OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes", (
    Flag("force", "f", help="Force the removal of one or more volumes"),
), min_args=1, handler="cmd_rm")
PRUNE = Command("volume prune", "[OPTIONS]", "Remove unused local volumes", (
    Flag("all", "a", help="Remove all unused volumes, not just anonymous ones"),
    Flag("filter", "", "list", "filter", "Provide filter values (e.g. \"label=<label>\")"),
    Flag("force", "f", help="Do not prompt for confirmation"),
), max_args=0, handler="cmd_prune")
EXPORT = Command("volume export", "[OPTIONS] VOLUME", "Export a volume's contents as a tar archive (to STDOUT by default)", (
    Flag("output", "o", "str", "string", "Write to a file, instead of STDOUT"),
), min_args=1, max_args=1, handler="cmd_export")
IMPORT = Command("volume import", "VOLUME file|-", "Import a tar archive into a volume (created if missing)", (),
                 min_args=2, max_args=2, handler="cmd_import")
CP = Command(
    "cp", "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tkran cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
    "Copy files/folders between a container and the local filesystem",
    (
        Flag("archive", "a", help="Archive mode (copy all uid/gid information)"),
        Flag("follow-link", "L", help="Always follow symbol link in SRC_PATH"),
        Flag("quiet", "q", help="Suppress progress output during copy. Progress output is automatically suppressed if no terminal is attached"),
    ),
    min_args=2, max_args=2, handler="cmd_cp",
)

_SUB = {"create": CREATE, "ls": LS, "list": LS, "inspect": INSPECT, "rm": RM, "remove": RM, "prune": PRUNE,
        "export": EXPORT, "import": IMPORT}


def dispatch(name: str, argv: list[str]) -> tuple[Command, Any]:
    if name == "cp":
        return CP, cmd_cp
    from kran.cli.flags import group_dispatch

    return group_dispatch("volume", "Manage volumes", _SUB, argv, globals())


def cmd_create(engine: Any, p: P) -> int:
    from kran.engine import volumes

    name = p.args[0] if p.args else (p.name or None)
    if p.args and p.name and p.name != p.args[0]:
        raise _usage("conflicting options: either specify --name or provide positional arg, not both")
    print(volumes.create(engine, name, p.driver or "local", kv_pairs(p.label), kv_pairs(p.opt)))
    return 0


def _row(v: Any, engine: Any) -> dict[str, Any]:
    return {"Driver": v.driver, "Name": v.name, "Mountpoint": v.mountpoint, "Scope": "local",
            "Labels": ",".join(f"{k}={val}" for k, val in sorted(v.labels.items())), "Links": "N/A", "Size": "N/A"}


def cmd_ls(engine: Any, p: P) -> int:
    from kran.engine import volumes

    vols = volumes.filter_volumes(engine, p.filter) if p.filter else volumes.all_volumes(engine)
    if p.quiet:
        sys.stdout.write("".join(v.name + "\n" for v in vols))
        return 0
    if p.format is None or p.format == "table":
        from kran.cli.output import table

        sys.stdout.write(table([["DRIVER", "VOLUME NAME"]] + [[v.driver, v.name] for v in vols]))
        return 0
    from kran.cli.output import print_formatted

    header = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT", "Scope": "SCOPE",
              "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE"}
    print_formatted(p.format, [_row(v, engine) for v in vols], header)
    return 0


def cmd_inspect(engine: Any, p: P) -> int:
    from kran.engine import volumes
    from kran.errors import KranError

    found, errors = [], []
    for n in p.args:
        try:
            found.append(volumes.get(engine, n).to_json())
        except KranError as e:
            errors.append(f"Error response from daemon: {e}")
    from kran.cli.output import print_inspect

    return print_inspect(found, errors, p.format)


def cmd_rm(engine: Any, p: P) -> int:
    from kran.engine import volumes
    from kran.errors import KranError

    rc = 0
    for n in p.args:
        try:
            volumes.remove(engine, n, force=p.force)
            print(n)
        except KranError as e:
            sys.stderr.write(f"Error response from daemon: {e}\n")
            rc = 1
    return rc


def cmd_prune(engine: Any, p: P) -> int:
    from kran.cli.output import confirm
    from kran.cli.units import human_size
    from kran.engine import volumes
    from kran.errors import InvalidArgument

    labels = []
    for f in p.filter:
        k, _, v = f.partition("=")
        if k != "label":
            raise InvalidArgument(f"invalid filter '{k}'")
        labels.append(v)
    if not p.force:
        what = "all local volumes" if p.all else "anonymous local volumes"
        print(f"WARNING! This will remove {what} not used by at least one container.")
        if not confirm("Are you sure you want to continue?"):
            return 0
    gone, space = volumes.prune(engine, bool(p.all), labels)
    if gone:
        print("Deleted Volumes:")
        sys.stdout.write("".join(n + "\n" for n in gone))
        print()
    print(f"Total reclaimed space: {human_size(space)}")
    return 0


def cmd_export(engine: Any, p: P) -> int:
    import os

    from kran.engine import volumes

    if p.output:
        tmp = p.output + ".tmp"
        try:
            with open(tmp, "wb") as f:
                volumes.export(engine, p.args[0], f)
            os.rename(tmp, p.output)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return 0
    if sys.stdout.isatty():
        raise _usage("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    sys.stdout.flush()
    volumes.export(engine, p.args[0], sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0


def cmd_import(engine: Any, p: P) -> int:
    from kran.engine import volumes

    name, src = p.args
    if src == "-":
        volumes.import_(engine, name, sys.stdin.buffer)
    else:
        with open(src, "rb") as f:
            volumes.import_(engine, name, f)
    print(name)
    return 0


def _usage(msg: str) -> Exception:
    """An error of the docker CLI itself (no "Error response from daemon:" prefix)."""
    from kran.errors import InvalidArgument

    class CliError(InvalidArgument):
        from_daemon = False

    return CliError(msg)


def split_cp_arg(arg: str) -> tuple[str, str]:
    """docker's splitCpArg: ``CONTAINER:PATH`` -> (container, path); a local path -> ("", path)."""
    if arg.startswith("/") or arg.startswith("."):
        return "", arg  # an absolute or explicitly relative local path, even with a colon in it
    ctr, sep, path = arg.partition(":")
    if not sep:
        return "", arg
    return ctr, path


def cmd_cp(engine: Any, p: P) -> int:
    from kran.engine import copy

    src_c, src = split_cp_arg(p.args[0])
    dst_c, dst = split_cp_arg(p.args[1])
    if src_c and dst_c:
        raise _usage("copying between containers is not supported")
    if not src_c and not dst_c:
        raise _usage("must specify at least one container source")
    if src_c:
        if not src:
            raise _usage("source can not be empty")
        if dst == "-":
            sys.stdout.flush()
            copy.copy_from_container(engine, src_c, src, "", follow=p.follow_link, out=sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return 0
        copy.copy_from_container(engine, src_c, src, dst, follow=p.follow_link, archive=p.archive)
        return 0
    if not dst:
        raise _usage("destination can not be empty")
    if src == "-":
        copy.copy_to_container(engine, dst_c, None, dst, stream=sys.stdin.buffer)
        return 0
    copy.copy_to_container(engine, dst_c, src, dst, follow=p.follow_link, archive=p.archive)
    return 0
