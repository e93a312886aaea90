"""``kran backup CONTAINER... oci:DIR``, ``kran backup ls|inspect|prune`` and ``kran restore``."""

from __future__ import annotations

import sys
from typing import Any

from kran.cli.flags import Command, Flag
from kran.cli.flags import Parsed as P

BACKUP = Command("backup", "[OPTIONS] CONTAINER [CONTAINER...] oci:DIR|REGISTRY/REPO",
                 "Back up containers' read-write layers (never their images') to a directory or a registry", (
                     Flag("incremental", "i", help="Store only what changed since the container's last backup there"),
                     Flag("no-pause", "", help="Do not freeze running containers while their layer is read"),
                     Flag("verbose", "v", help="Print the frozen time and layer size of each container"),
                     Flag("volumes", "", help="Include the containers' named volumes"),
                 ), min_args=2, handler="cmd_backup",
                 examples="  kran backup web db oci:/srv/backups\n  kran backup -i web db localhost:5000/backups\n"
                          "  kran backup ls oci:/srv/backups")
LS = Command("backup ls", "oci:DIR|REGISTRY/REPO", "List the backups in a directory or under a registry repository", (
    Flag("quiet", "q", help="Only display NAME:TAG"),
), min_args=1, max_args=1, handler="cmd_ls")
INSPECT = Command("backup inspect", "oci:DIR:NAME[:TAG]|REGISTRY/REPO/NAME[:TAG]", "Display a backup's details as JSON", (),
                  min_args=1, max_args=1, handler="cmd_inspect")
PRUNE = Command("backup prune", "--keep N oci:DIR|REGISTRY/REPO", "Remove all but the newest N backups of each container", (
    Flag("keep", "", "int", "int", "Backups to keep per container name"),
), min_args=1, max_args=1, handler="cmd_prune")
RESTORE = Command("restore", "[OPTIONS] oci:DIR:NAME[:TAG]|REGISTRY/REPO/NAME[:TAG]", "Recreate a container from a backup", (
    Flag("name", "", "str", "string", "Name of the restored container (default: the backed-up one's)"),
    Flag("start", "", help="Start the restored container"),
), min_args=1, max_args=1, handler="cmd_restore")

_SUB = {"ls": LS, "list": LS, "inspect": INSPECT, "prune": PRUNE}


def dispatch(name: str, argv: list[str]) -> tuple[Command, Any]:
    if name == "restore":
        return RESTORE, cmd_restore
    if argv and argv[0] in _SUB:
        from kran.cli.flags import group_dispatch

        return group_dispatch("backup", "Manage backups", _SUB, argv, globals())
    return BACKUP, cmd_backup


def _usage(msg: str) -> Exception:
    """An error of the CLI itself (no "Error response from daemon:" prefix)."""
    from kran.errors import InvalidArgument

    class CliError(InvalidArgument):
        from_daemon = False

    return CliError(msg)


def _size(n: int) -> str:
    from kran.cli.units import human_size

    return human_size(n)


def cmd_backup(engine: Any, p: P) -> int:
    from kran.engine.backup import backup

    *refs, dest = p.args
    reports = backup(engine, refs, dest, pause=not p.no_pause, incremental=p.incremental, with_volumes=p.volumes)
    for r in reports:
        for w in r.warnings:
            sys.stderr.write(f"WARNING: {w}\n")
        if p.verbose:
            frozen = f"frozen {r.frozen_ms:.0f} ms" if r.frozen_ms is not None else "not frozen"
            kind = "incremental layer" if r.incremental else "layer"
            added = "new in the directory" if dest.startswith("oci:") else "sent to the registry"
            sys.stdout.write(f"{r.name}: {frozen}, {kind} {_size(r.layer_bytes)}, {_size(r.new_bytes)} {added} "
                             f"-> {r.name}:{r.tag}\n")
        else:
            sys.stdout.write(f"{r.name}:{r.tag}\n")
    return 0


def cmd_ls(engine: Any, p: P) -> int:
    from kran.cli.output import table
    from kran.engine.restore import list_backups

    rows = list_backups(engine, p.args[0])
    if p.quiet:
        sys.stdout.write("".join(f"{r.name}:{r.tag}\n" for r in rows))
        return 0
    sys.stdout.write(table([["NAME", "TAG", "CREATED", "SIZE", "BASE"]] +
                           [[r.name, r.tag, r.created, _size(r.size), r.base] for r in rows]))
    return 0


def cmd_inspect(engine: Any, p: P) -> int:
    from kran.cli.output import go_json
    from kran.engine.restore import inspect_backup

    sys.stdout.write(go_json([inspect_backup(engine, p.args[0])]) + "\n")
    return 0


def cmd_prune(engine: Any, p: P) -> int:
    from kran.engine.restore import prune

    if p.keep is None:
        raise _usage("required flag --keep not set")
    gone, freed = prune(engine, p.args[0], int(p.keep))
    if gone:
        sys.stdout.write("Deleted backups:\n" + "".join(f"{g}\n" for g in gone) + "\n")
    sys.stdout.write(f"Total reclaimed space: {_size(freed)}\n")
    return 0


def cmd_restore(engine: Any, p: P) -> int:
    from kran.engine.restore import restore

    print(restore(engine, p.args[0], name=p.name or None, start=p.start))
    return 0
