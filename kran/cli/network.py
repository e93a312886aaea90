"""Network commands: ``network create/ls/inspect/rm/connect/disconnect/prune``."""

from __future__ import annotations

import sys
from typing import Any

from kran.cli.flags import Command, Flag, kv_pairs
from kran.cli.flags import Parsed as P

CREATE = Command("network create", "[OPTIONS] NETWORK", "Create a network", (
    Flag("attachable", help="Enable manual container attachment"),
    Flag("driver", "d", "str", "string", "Driver to manage the Network", default="bridge"),
    Flag("gateway", "", "list", "strings", "IPv4 or IPv6 Gateway for the master subnet"),
    Flag("internal", help="Restrict external access to the network"),
    Flag("ip-range", "", "list", "strings", "Allocate container ip from a sub-range"),
    Flag("ipv6", help="Enable or disable IPv6 networking"),
    Flag("label", "", "list", "list", "Set metadata on a network"),
    Flag("opt", "o", "list", "map", "Set driver specific options (default map[])"),
    Flag("subnet", "", "list", "strings", "Subnet in CIDR format that represents a network segment"),
), min_args=1, max_args=1, handler="cmd_create")
LS = Command("network ls", "[OPTIONS]", "List networks", (
    Flag("filter", "f", "list", "filter", 'Provide filter values (e.g. "driver=bridge")'),
    Flag("format", "", "str", "string", "Format output using a custom template:\n"
         "'table':            Print output in table format with column headers (default)\n"
         "'table TEMPLATE':   Print output in table format using the given Go template\n"
         "'json':             Print in JSON format\n"
         "'TEMPLATE':         Print output using the given Go template.\n"
         "Refer to https://docs.docker.com/go/formatting/ for more information about formatting output with templates"),
    Flag("no-trunc", help="Do not truncate the output"),
    Flag("quiet", "q", help="Only display network IDs"),
), aliases=("network ls", "network list"), max_args=0, handler="cmd_ls")
INSPECT = Command("network inspect", "[OPTIONS] NETWORK [NETWORK...]", "Display detailed information on one or more networks", (
    Flag("format", "f", "str", "string", "Format output using a custom template:\n"
         "'json':             Print in JSON format\n"
         "'TEMPLATE':         Print output using the given Go template.\n"
         "Refer to https://docs.docker.com/go/formatting/ for more information about formatting output with templates"),
    Flag("verbose", "v", help="Verbose output for diagnostics"),
), min_args=1, handler="cmd_inspect")
RM = Command("network rm", "NETWORK [NETWORK...]", "Remove one or more networks", (
    Flag("force", "f", help="Do not error if the network does not exist"),
), aliases=("network rm", "network remove"), min_args=1, handler="cmd_rm")
CONNECT = Command("network connect", "[OPTIONS] NETWORK CONTAINER", "Connect a container to a network", (
    Flag("alias", "", "list", "strings", "Add network-scoped alias for the container"),
    Flag("ip", "", "str", "string", 'IPv4 address (e.g., "172.30.100.104")'),
), min_args=2, max_args=2, handler="cmd_connect")
DISCONNECT = Command("network disconnect", "[OPTIONS] NETWORK CONTAINER", "Disconnect a container from a network", (
    Flag("force", "f", help="Force the container to disconnect from a network"),
), min_args=2, max_args=2, handler="cmd_disconnect")
PRUNE = Command("network prune", "[OPTIONS]", "Remove all unused networks", (
    Flag("filter", "", "list", "filter", 'Provide filter values (e.g. "until=<timestamp>")'),
    Flag("force", "f", help="Do not prompt for confirmation"),
), max_args=0, handler="cmd_prune")

_SUB = {"create": CREATE, "ls": LS, "list": LS, "inspect": INSPECT, "rm": RM, "remove": RM, "connect": CONNECT,
        "disconnect": DISCONNECT, "prune": PRUNE}

BUILTIN = ("bridge", "host", "none")


def dispatch(name: str, argv: list[str]) -> tuple[Command, Any]:
    from kran.cli.flags import group_dispatch

    return group_dispatch("network", "Manage networks", _SUB, argv, globals())


def _cli_error(msg: str) -> Exception:
    from kran.cli.runopts import CliError

    return CliError(msg)


def _one(values: list[str], what: str) -> str | None:
    if len(values) > 1:
        raise _cli_error(f"kran supports one {what} per network")
    return values[0] if values else None


def cmd_create(engine: Any, p: P) -> int:
    from kran.engine import networks

    if p.ipv6:
        raise _cli_error("IPv6 networks are not supported")
    subnet, gateway, ip_range = _one(p.subnet, "subnet"), _one(p.gateway, "gateway"), _one(p.ip_range, "ip-range")
    if (gateway or ip_range) and not subnet:
        raise _cli_error("every ip-range or gateway must have a corresponding subnet")
    print(networks.create(engine, p.args[0], driver=p.driver or "bridge", subnet=subnet, gateway=gateway,
                          ip_range=ip_range, internal=bool(p.internal), labels=kv_pairs(p.label), options=kv_pairs(p.opt),
                          attachable=bool(p.attachable)))
    return 0


# -- ls -------------------------------------------------------------------------------------------


def _natural_key(s: str) -> list[Any]:
    import re

    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.findall(r"\d+|\D+", s)]


def _go_time(created: str) -> str:
    """RFC 3339 (the API's ``Created``) -> Go's time.String(), as ``{{.CreatedAt}}`` prints it."""
    import re

    m = re.match(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", created or "")
    if not m:
        return created or ""
    frac = (m.group(3) or "").rstrip("0")
    frac = "" if frac == "." else frac
    tz = m.group(4)
    off = "+0000 UTC" if tz == "Z" else f"{tz.replace(':', '')} {tz.replace(':', '')}"  # Go names an unnamed zone by its offset
    return f"{m.group(1)} {m.group(2)}{frac} {off}"


def row(n: dict[str, Any], no_trunc: bool) -> dict[str, Any]:
    """docker's networkContext fields for ``--format``."""
    nid = n.get("Id", "")
    labels = n.get("Labels") or {}
    return {
        "ID": nid if no_trunc else nid[:12], "Name": n.get("Name", ""), "Driver": n.get("Driver", ""),
        "Scope": n.get("Scope", ""), "IPv6": str(bool(n.get("EnableIPv6"))).lower(),
        "Internal": str(bool(n.get("Internal"))).lower(),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "CreatedAt": _go_time(n.get("Created", "")),
    }


HEADER = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
          "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}


def cmd_ls(engine: Any, p: P) -> int:
    from kran.engine import networks

    filters = networks.parse_filters(p.filter)
    nets = networks.filter_networks(networks.list_all(engine), filters)
    nets.sort(key=lambda n: _natural_key(n.get("Name", "")))  # docker/cli sorts by name
    rows = [row(n, bool(p.no_trunc)) for n in nets]
    if p.quiet:
        sys.stdout.write("".join(r["ID"] + "\n" for r in rows))
        return 0
    if p.format is None or p.format == "table":
        from kran.cli.output import table

        sys.stdout.write(table([["NETWORK ID", "NAME", "DRIVER", "SCOPE"]]
                               + [[r["ID"], r["Name"], r["Driver"], r["Scope"]] for r in rows]))
        return 0
    from kran.cli.output import print_formatted

    print_formatted(p.format, rows, HEADER)
    return 0


# -- inspect / rm / connect / disconnect / prune --------------------------------------------------


def cmd_inspect(engine: Any, p: P) -> int:
    from kran.cli.output import print_inspect
    from kran.engine import networks
    from kran.errors import KranError

    found, errors = [], []
    for ref in p.args:
        try:
            found.append(networks.inspect(engine, ref))
        except KranError as e:
            errors.append(f"Error response from daemon: {e}" if e.from_daemon else str(e))
    return print_inspect(found, errors, p.format)


def cmd_rm(engine: Any, p: P) -> int:
    """docker goes on past a failure, reports each on stderr and exits 1."""
    from kran.engine import networks
    from kran.errors import KranError, NotFound

    rc = 0
    for ref in p.args:
        try:
            networks.remove(engine, ref)
        except KranError as e:
            if p.force and isinstance(e, NotFound):
                continue
            sys.stderr.write(("Error response from daemon: " if e.from_daemon else "") + f"{e}\n")
            rc = 1
            continue
        print(ref)
    return rc


def cmd_connect(engine: Any, p: P) -> int:
    from kran.engine import networks

    aliases: list[str] = []
    for a in p.alias:  # a pflag "strings" flag: comma-separated values
        aliases += [x for x in a.split(",") if x]
    networks.connect(engine, p.args[0], p.args[1], aliases=tuple(aliases), ipv4=p.ip or None)
    return 0


def cmd_disconnect(engine: Any, p: P) -> int:
    from kran.engine import networks

    networks.disconnect(engine, p.args[0], p.args[1], force=bool(p.force))
    return 0


def cmd_prune(engine: Any, p: P) -> int:
    from kran.cli.output import confirm
    from kran.engine import networks

    labels, until = networks.prune_filters(p.filter)
    if not p.force:
        print("WARNING! This will remove all custom networks not used by at least one container.")
        if not confirm("Are you sure you want to continue?"):
            return 0
    gone = networks.prune(engine, until=until, label_filters=labels) if labels or until is not None else networks.prune(engine)
    if gone:
        sys.stdout.write("Deleted Networks:\n" + "".join(n + "\n" for n in gone) + "\n")
    return 0

