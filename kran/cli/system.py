"""System commands: system df, system prune, version."""

from __future__ import annotations

import sys
from typing import Any

from kran.cli.flags import Command, Flag
from kran.cli.flags import Parsed as P

DF = Command(
    "system df", "[OPTIONS]", "Show docker disk usage",
    (
        Flag("format", "", "str", "string", "Format output using a custom template"),
        Flag("verbose", "v", help="Show detailed information on space usage"),
    ),
    max_args=0, handler="cmd_df",
)
PRUNE = Command(
    "system prune", "[OPTIONS]", "Remove unused data",
    (
        Flag("all", "a", help="Remove all unused images not just dangling ones"),
        Flag("filter", "", "list", "filter", 'Provide filter values (e.g. "label=<key>=<value>")'),
        Flag("force", "f", help="Do not prompt for confirmation"),
        Flag("volumes", help="Prune anonymous volumes"),
    ),
    max_args=0, handler="cmd_prune",
)
VERSION = Command(
    "version", "[OPTIONS]", "Show the kran version information",
    (Flag("format", "f", "str", "string", "Format output using a custom template"),),
    max_args=0, handler="cmd_version",
)

SERVICE = Command(
    "system service", "[OPTIONS] [URI]",
    "Run the Docker Engine API on a unix socket (default unix:///run/kran/kran.sock; rootless: $XDG_RUNTIME_DIR/kran/kran.sock)",
    (
        Flag("time", "t", "int", "int", "Seconds to serve before exiting (0 = forever)", default=0),
        Flag("verbose", "v", help="Log every request to stderr"),
    ),
    max_args=1, handler="cmd_service",
)


def dispatch(name: str, argv: list[str]) -> tuple[Command, Any]:
    if name == "version":
        return VERSION, cmd_version
    from kran.cli.flags import group_dispatch

    return group_dispatch("system", "Manage kran", {"df": DF, "prune": PRUNE, "service": SERVICE}, argv, globals())


def cmd_df(engine: Any, p: P) -> int:
    from kran.cli.units import human_size
    from kran.engine.images import disk_usage

    rows = disk_usage(engine)

    def reclaim(r: Any) -> str:
        if r.size <= 0:
            return human_size(r.reclaimable)
        return f"{human_size(r.reclaimable)} ({int(r.reclaimable * 100 / r.size)}%)"

    ctx = [{"Type": r.type, "TotalCount": r.total, "Active": r.active, "Size": human_size(r.size),
            "Reclaimable": reclaim(r)} for r in rows]
    if p.format and p.format != "table":
        from kran.cli.output import print_formatted

        print_formatted(p.format, ctx, {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
                                        "Reclaimable": "RECLAIMABLE"})
        return 0
    from kran.cli.output import table

    out = [["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]]
    out += [[c["Type"], str(c["TotalCount"]), str(c["Active"]), c["Size"], c["Reclaimable"]] for c in ctx]
    sys.stdout.write(table(out))
    return 0


def cmd_prune(engine: Any, p: P) -> int:
    from kran.cli.output import confirm
    from kran.cli.units import human_size
    from kran.engine.images import prune

    if not p.force:
        items = ["all stopped containers", "all networks not used by at least one container"]
        if p.volumes:
            items.append("all anonymous volumes not used by at least one container")
        items += ["all images without at least one container associated to them" if p.all else "all dangling images",
                  "unused build cache"]
        print("WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items))
        if not confirm("Are you sure you want to continue?"):
            return 0
    from kran.engine import containers

    gone, space = containers.prune(engine)
    if gone:
        print("Deleted Containers:")
        sys.stdout.write("".join(g + "\n" for g in gone))
        print()
    from kran.engine import networks

    nets = networks.prune(engine)
    if nets:
        print("Deleted Networks:")
        sys.stdout.write("".join(n + "\n" for n in nets))
        print()
    if p.volumes:
        from kran.engine import volumes

        vols, vspace = volumes.prune(engine)
        space += vspace
        if vols:
            print("Deleted Volumes:")
            sys.stdout.write("".join(n + "\n" for n in vols))
            print()
    rep = prune(engine, all=p.all, filters=p.filter)
    rep.reclaimed += space
    if rep.lines:
        print("Deleted Images:")
        sys.stdout.write("".join(line + "\n" for line in rep.lines))
        print()
    print(f"Total reclaimed space: {human_size(rep.reclaimed)}")
    return 0


def cmd_version(engine: Any, p: P) -> int:
    import platform

    from kran import API_VERSION, __version__

    info = {
        "Client": {"Version": __version__, "ApiVersion": API_VERSION, "GoVersion": "python" + platform.python_version(),
                   "Os": "linux", "Arch": platform.machine()},
    }
    if p.format:
        from kran.cli.gotemplate import render
        from kran.cli.output import unescape_format

        print(render(unescape_format(p.format), info))
        return 0
    c = info["Client"]
    print(f"Client: kran\n Version:           {c['Version']}\n API version:       {c['ApiVersion']}\n"
          f" Python version:    {platform.python_version()}\n OS/Arch:           linux/{c['Arch']}")
    return 0


def cmd_service(engine: Any, p: P) -> int:
    """Serve docker's API for this root until SIGTERM/SIGINT (or --time): ``python -m kran.api``
    (exec'd, so the CLI and the API server stay independent front ends)."""
    import os

    from kran.errors import InvalidArgument
    from kran.rootless import default_socket

    uri = p.args[0] if p.args else "unix://" + default_socket()
    if not uri.startswith("unix://"):
        raise InvalidArgument(f"only unix:// sockets are supported: {uri}")
    argv = [sys.executable, "-m", "kran.api", "--root", engine.root, "--time", str(p.time or 0)]
    if p.verbose:
        argv.append("--verbose")
    sys.stdout.flush()
    os.execv(sys.executable, [*argv, uri])
    return 0  # not reached
