"""System commands: info (system info), system df, system prune, version."""

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

INFO = Command(
    "info", "[OPTIONS]", "Display system-wide information",
    (Flag("format", "f", "str", "string", "Format output using a custom template ('json', or a Go template)"),),
    aliases=("system info", "info"), max_args=0, args_error="accepts no arguments", handler="cmd_info",
)

UNSHARE = Command(
    "unshare", "[COMMAND [ARG...]]",
    "Run a command in the rootless user namespace, as its root (default: your shell)",
    (), interspersed=False, handler="cmd_unshare",
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
    if name == "info":
        return INFO, cmd_info
    if name == "unshare":
        return UNSHARE, cmd_unshare
    from kran.cli.flags import group_dispatch

    return group_dispatch("system", "Manage kran", {"df": DF, "info": INFO, "prune": PRUNE, "service": SERVICE},
                          argv, globals())


def cmd_unshare(engine: Any, p: P) -> int:
    """Podman's ``unshare``: a shell (or command) as root of the user's namespace, where files of
    the store owned by subordinate ids are yours -- to inspect or remove them."""
    import os

    from kran import rootless
    from kran.errors import InvalidArgument

    if not rootless.active():
        raise InvalidArgument("kran unshare is for rootless mode: run it as the user who owns the store")
    argv = list(p.args) or [os.environ.get("SHELL") or "/bin/sh"]
    os.environ["KRAN_UNSHARE"] = "1"
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        raise InvalidArgument(f"exec {argv[0]}: {e.strerror}") from None
    return 0


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


def cmd_info(engine: Any, p: P) -> int:
    """docker info: the engine's document (kran.engine.sysinfo, the same one GET /info sends) as
    docker's Client:/Server: text, its warnings on stderr; or rendered through --format."""
    from kran.engine.sysinfo import info

    i = info(engine)
    client = _client_info()
    if p.format:
        from kran.cli.gotemplate import TemplateError
        from kran.cli.gotemplate import compile as compile_template
        from kran.cli.output import unescape_format

        fmt = "{{json .}}" if p.format == "json" else unescape_format(p.format)
        try:
            t = compile_template(fmt)
        except TemplateError as e:
            sys.stderr.write(f"{e}\n")
            return 64  # docker info's status for a template that does not parse
        # docker renders over its dockerInfo: the server's fields at the top, the client's inside
        sys.stdout.write(t.execute({**i.document(), "ClientInfo": client}) + "\n")
        return 0
    out, warnings = info_text(i, client)
    sys.stdout.write(out)
    sys.stdout.flush()
    if warnings:
        sys.stderr.write("".join(w + "\n" for w in warnings))
    return 0


def _client_info() -> dict[str, Any]:
    import platform

    from kran import API_VERSION, __version__

    return {"Debug": _client_debug(sys.argv[1:]), "Version": __version__, "ApiVersion": API_VERSION,
            "GoVersion": "python" + platform.python_version(), "Os": "linux", "Arch": platform.machine(),
            "Plugins": [], "Warnings": None}


def _client_debug(argv: list[str]) -> bool:
    """Whether kran's global options (before the command name) had -D/--debug: docker's client
    "Debug Mode", and the server's debug counters under it.  (main() keeps the flag to itself.)"""
    it = iter(argv)
    for a in it:
        if a in ("-D", "--debug"):
            return True
        if a == "--root":
            next(it, None)
        elif not a.startswith("-"):
            return False
    return False


def _b(v: bool) -> str:
    return "true" if v else "false"


def info_text(i: Any, client: dict[str, Any]) -> tuple[str, list[str]]:
    """docker info's text (docker/cli cli/command/system/info.go's order and labels) and the
    warnings it prints on stderr afterwards.  kran adds its user namespace's "ID Mappings"."""
    from kran.cli.units import bytes_size

    out: list[str] = []

    def line(label: str, value: object) -> None:
        out.append(f"{label} {_b(value) if isinstance(value, bool) else value}")

    def nonempty(label: str, value: str) -> None:
        if value:
            line(label, value)

    out.append("Client: kran")
    line(" Version:   ", client["Version"])
    line(" Debug Mode:", client["Debug"])
    out += ["", "Server:"]
    line(" Containers:", i.containers)
    line("  Running:", i.containers_running)
    line("  Paused:", i.containers_paused)
    line("  Stopped:", i.containers_stopped)
    line(" Images:", i.images)
    nonempty(" Server Version:", i.server_version)
    nonempty(" Storage Driver:", i.driver)
    out += [f"  {k}: {v}" for k, v in i.driver_status]
    nonempty(" Logging Driver:", i.logging_driver)
    nonempty(" Cgroup Driver:", i.cgroup_driver)
    nonempty(" Cgroup Version:", i.cgroup_version)
    out.append(" Plugins:")
    line("  Volume:", " ".join(i.plugins.volume))
    line("  Network:", " ".join(i.plugins.network))
    if i.plugins.authorization:
        line("  Authorization:", " ".join(i.plugins.authorization))
    line("  Log:", " ".join(i.plugins.log))
    line(" Swarm:", i.swarm.get("LocalNodeState", "inactive"))
    if i.runtimes:
        line(" Runtimes:", " ".join(i.runtimes))
        line(" Default Runtime:", i.default_runtime)
    line(" Init Binary:", i.init_binary)
    if i.security_options:
        out.append(" Security Options:")
        for opt in i.security_options:
            kv = dict(part.split("=", 1) for part in opt.split(",") if "=" in part)
            out.append("  " + kv.get("name", opt))
            if "profile" in kv:
                line("   Profile:", kv["profile"])
    if i.id_mappings is not None:
        out.append(" ID Mappings:")
        for label, ranges in (("UIDMap", i.id_mappings.uid_map), ("GIDMap", i.id_mappings.gid_map)):
            out.append(f"  {label}:")
            out += [f"   ContainerID: {r.container_id}, HostID: {r.host_id}, Size: {r.size}" for r in ranges]
    nonempty(" Kernel Version:", i.kernel_version)
    nonempty(" Operating System:", i.operating_system)
    nonempty(" OSType:", i.os_type)
    nonempty(" Architecture:", i.architecture)
    line(" CPUs:", i.ncpu)
    line(" Total Memory:", bytes_size(i.mem_total))
    nonempty(" Name:", i.name)
    nonempty(" ID:", i.id)
    line(" Docker Root Dir:", i.docker_root_dir)
    line(" Debug Mode:", i.debug)
    if i.debug or client["Debug"]:
        line("  File Descriptors:", i.nfd)
        line("  Goroutines:", i.ngoroutines)
        line("  System Time:", i.system_time)
        line("  EventsListeners:", i.nevents_listener)
    nonempty(" HTTP Proxy:", i.http_proxy)
    nonempty(" HTTPS Proxy:", i.https_proxy)
    nonempty(" No Proxy:", i.no_proxy)
    if i.labels:
        out.append(" Labels:")
        out += ["  " + lbl for lbl in i.labels]
    line(" Experimental:", i.experimental_build)
    rc = i.registry_config or {}
    insecure = [n for n, c in (rc.get("IndexConfigs") or {}).items() if not c.get("Secure")]
    insecure += rc.get("InsecureRegistryCIDRs") or []
    if insecure:
        out.append(" Insecure Registries:")
        out += ["  " + r for r in insecure]
    if rc.get("Mirrors"):
        out.append(" Registry Mirrors:")
        out += ["  " + m for m in rc["Mirrors"]]
    line(" Live Restore Enabled:", i.live_restore_enabled)
    out.append("")
    return "\n".join(out) + "\n", list(i.warnings or ())


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
