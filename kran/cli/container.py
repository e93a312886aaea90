"""Container commands: run, create, start, stop, restart, kill, rm, ps, logs, wait, rename, pause,
unpause, attach, exec, container prune/inspect/ls."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from kran.cli.flags import Command, Flag
from kran.cli.flags import Parsed as P
from kran.cli.runopts import CREATE_FLAGS, RUN_FLAGS

RUN = Command("run", "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create and run a new container from an image",
              RUN_FLAGS, aliases=("container run", "run"), min_args=1, interspersed=False, handler="cmd_run")
CREATE = Command("create", "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create a new container", CREATE_FLAGS,
                 aliases=("container create", "create"), min_args=1, interspersed=False, handler="cmd_create")
START = Command("start", "[OPTIONS] CONTAINER [CONTAINER...]", "Start one or more stopped containers", (
    Flag("attach", "a", help="Attach STDOUT/STDERR and forward signals"),
    Flag("detach-keys", "", "str", "string", "Override the key sequence for detaching a container"),
    Flag("interactive", "i", help="Attach container's STDIN"),
), aliases=("container start", "start"), min_args=1, handler="cmd_start")
STOP = Command("stop", "[OPTIONS] CONTAINER [CONTAINER...]", "Stop one or more running containers", (
    Flag("signal", "s", "str", "string", "Signal to send to the container"),
    Flag("timeout", "t", "int", "int", "Seconds to wait before killing the container"),
    Flag("time", "", "int", "int", "Seconds to wait before killing the container (deprecated: use --timeout)",
         hidden=True),  # docker 28 renamed --time to --timeout and kept the old name hidden
), aliases=("container stop", "stop"), min_args=1, handler="cmd_stop")
RESTART = Command("restart", "[OPTIONS] CONTAINER [CONTAINER...]", "Restart one or more containers", (
    Flag("signal", "s", "str", "string", "Signal to send to the container"),
    Flag("timeout", "t", "int", "int", "Seconds to wait before killing the container"),
    Flag("time", "", "int", "int", "Seconds to wait before killing the container (deprecated: use --timeout)",
         hidden=True),  # docker 28 renamed --time to --timeout and kept the old name hidden
), aliases=("container restart", "restart"), min_args=1, handler="cmd_restart")
KILL = Command("kill", "[OPTIONS] CONTAINER [CONTAINER...]", "Kill one or more running containers", (
    Flag("signal", "s", "str", "string", "Signal to send to the container", default="KILL"),
), aliases=("container kill", "kill"), min_args=1, handler="cmd_kill")
RM = Command("rm", "[OPTIONS] CONTAINER [CONTAINER...]", "Remove one or more containers", (
    Flag("force", "f", help="Force the removal of a running container (uses SIGKILL)"),
    Flag("link", "l", help="Remove the specified link"),
    Flag("volumes", "v", help="Remove anonymous volumes associated with the container"),
), aliases=("container rm", "container remove", "rm"), min_args=1, handler="cmd_rm")
PS = Command("ps", "[OPTIONS]", "List containers", (
    Flag("all", "a", help="Show all containers (default shows just running)"),
    Flag("filter", "f", "list", "filter", "Filter output based on conditions provided"),
    Flag("format", "", "str", "string", "Format output using a custom template"),
    Flag("last", "n", "int", "int", "Show n last created containers (includes all states)", default=-1),
    Flag("latest", "l", help="Show the latest created container (includes all states)"),
    Flag("no-trunc", help="Don't truncate output"),
    Flag("quiet", "q", help="Only display container IDs"),
    Flag("size", "s", help="Display total file sizes"),
), aliases=("container ls", "container list", "container ps", "ps"), max_args=0, handler="cmd_ps")
LOGS = Command("logs", "[OPTIONS] CONTAINER", "Fetch the logs of a container", (
    Flag("details", help="Show extra details provided to logs"),
    Flag("follow", "f", help="Follow log output"),
    Flag("since", "", "str", "string", 'Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)'),
    Flag("tail", "n", "str", "string", "Number of lines to show from the end of the logs", default="all"),
    Flag("timestamps", "t", help="Show timestamps"),
    Flag("until", "", "str", "string", 'Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)'),
), aliases=("container logs", "logs"), min_args=1, max_args=1, handler="cmd_logs")
WAIT = Command("wait", "CONTAINER [CONTAINER...]", "Block until one or more containers stop, then print their exit codes",
               (), aliases=("container wait", "wait"), min_args=1, handler="cmd_wait")
RENAME = Command("rename", "CONTAINER NEW_NAME", "Rename a container", (), aliases=("container rename", "rename"),
                 min_args=2, max_args=2, handler="cmd_rename")
PAUSE = Command("pause", "CONTAINER [CONTAINER...]", "Pause all processes within one or more containers", (),
                aliases=("container pause", "pause"), min_args=1, handler="cmd_pause")
UNPAUSE = Command("unpause", "CONTAINER [CONTAINER...]", "Unpause all processes within one or more containers", (),
                  aliases=("container unpause", "unpause"), min_args=1, handler="cmd_unpause")
ATTACH = Command("attach", "[OPTIONS] CONTAINER", "Attach local standard input, output, and error streams to a running container", (
    Flag("detach-keys", "", "str", "string", "Override the key sequence for detaching a container"),
    Flag("no-stdin", help="Do not attach STDIN"),
    Flag("sig-proxy", "", "bool", help="Proxy all received signals to the process", default=True),
), aliases=("container attach", "attach"), min_args=1, max_args=1, handler="cmd_attach")
EXEC = Command("exec", "[OPTIONS] CONTAINER COMMAND [ARG...]", "Execute a command in a running container", (
    Flag("detach", "d", help="Detached mode: run command in the background"),
    Flag("detach-keys", "", "str", "string", "Override the key sequence for detaching a container"),
    Flag("env", "e", "list", "list", "Set environment variables"),
    Flag("env-file", "", "list", "list", "Read in a file of environment variables"),
    Flag("interactive", "i", help="Keep STDIN open even if not attached"),
    Flag("privileged", help="Give extended privileges to the command"),
    Flag("tty", "t", help="Allocate a pseudo-TTY"),
    Flag("user", "u", "str", "string", "Username or UID (format: \"<name|uid>[:<group|gid>]\")"),
    Flag("workdir", "w", "str", "string", "Working directory inside the container"),
), aliases=("container exec", "exec"), min_args=2, interspersed=False, handler="cmd_exec")
PRUNE = Command("container prune", "[OPTIONS]", "Remove all stopped containers", (
    Flag("filter", "", "list", "filter", 'Provide filter values (e.g. "until=<timestamp>")'),
    Flag("force", "f", help="Do not prompt for confirmation"),
), max_args=0, handler="cmd_prune")
CINSPECT = Command("container inspect", "[OPTIONS] CONTAINER [CONTAINER...]", "Display detailed information on one or more containers", (
    Flag("format", "f", "str", "string", "Format output using a custom template"),
    Flag("size", "s", help="Display total file sizes"),
), min_args=1, handler="cmd_inspect")

_TOP = {c.name: c for c in (RUN, CREATE, START, STOP, RESTART, KILL, RM, PS, LOGS, WAIT, RENAME, PAUSE, UNPAUSE, ATTACH, EXEC)}
_SUB = {"run": RUN, "create": CREATE, "start": START, "stop": STOP, "restart": RESTART, "kill": KILL, "rm": RM,
        "remove": RM, "ls": PS, "list": PS, "ps": PS, "logs": LOGS, "wait": WAIT, "rename": RENAME, "pause": PAUSE,
        "unpause": UNPAUSE, "attach": ATTACH, "exec": EXEC, "prune": PRUNE, "inspect": CINSPECT}

def dispatch(name: str, argv: list[str]) -> tuple[Command, Any]:
    if name == "container":
        from kran.cli.flags import group_dispatch

        return group_dispatch("container", "Manage containers", _SUB, argv, globals())
    cmd = _TOP[name]
    return cmd, globals()[cmd.handler]


def _err(e: Exception, prefix: bool = True) -> None:
    from kran.errors import KranError

    daemon = isinstance(e, KranError) and e.from_daemon
    sys.stderr.write(("Error response from daemon: " if daemon and prefix else "") + f"{e}\n")


def _each(names: list[str], fn: Any, echo: bool = True, missing_ok: bool = False) -> int:
    """``fn`` on each name, its errors printed; exit 1 if any failed.  ``missing_ok`` (``rm -f``):
    a name that does not exist is printed as an error but is no failure, as in docker."""
    from kran.errors import KranError, NotFound

    rc = 0
    for n in names:
        try:
            fn(n)
            if echo:
                print(n)
        except KranError as e:
            _err(e)
            if not (missing_ok and isinstance(e, NotFound)):
                rc = 1
    return rc


# -- run / create ---------------------------------------------------------------------------------


class RunFailed(Exception):
    pass


def _create(engine: Any, p: P) -> str:
    from kran.cli.runopts import build_run
    from kran.engine import containers
    from kran.errors import ImageNotFound

    if p.profile:
        from kran.cli import profile

        profile.apply(p, RUN_FLAGS)  # --profile NAME: its flags below the typed ones
    config, host, networking, warnings = build_run(p, p.args[0], p.args[1:])
    try:
        if p.pull not in ("missing", "never"):
            raise ImageNotFound(p.args[0])
        engine.images.resolve(p.args[0])  # present: the registry code is not even imported
    except ImageNotFound:
        from kran.cli.registry import printer
        from kran.engine.registry import pull_if_missing

        # docker's --pull missing (default) | always | never: "Unable to find image" and the pull
        # progress go to stderr, so stdout keeps only the container's ID or output
        pull_if_missing(
            engine, p.args[0], policy=p.pull,
            on_missing=None if p.quiet else lambda name: sys.stderr.write(f"Unable to find image '{name}' locally\n"),
            progress=None if p.quiet else printer(sys.stderr),
        )
    # docker sends no endpoint settings for a single network without options; only then is
    # NetworkingConfig left out
    extra = {"networking_config": networking} if networking else {}
    cid = containers.create(engine, config, host, p.name, **extra)
    for w in warnings:  # the daemon's create warnings, which docker prints before the ID
        sys.stderr.write(f"WARNING: {w}\n")
    return cid


def _run_error(cmd: str, e: Exception) -> int:
    from kran.errors import KranError

    if getattr(e, "flag_error", False):  # a flag validator's error, printed as pflag's
        sys.stderr.write(f"{e}\nSee 'kran {cmd} --help'.\n")
        return 125
    prefix = "Error response from daemon: " if isinstance(e, KranError) and e.from_daemon else ""
    sys.stderr.write(f"kran: {prefix}{e}\n")
    if isinstance(e, KranError) and e.exit_code in (126, 127):
        return e.exit_code
    sys.stderr.write(f"\nRun 'kran {cmd} --help' for more information\n")
    return 125


def cmd_create(engine: Any, p: P) -> int:
    from kran.errors import KranError

    try:
        print(_create(engine, p))
    except KranError as e:
        return _run_error("create", e)
    return 0


def cmd_run(engine: Any, p: P) -> int:
    from kran.engine import containers
    from kran.errors import KranError

    try:
        cid = _create(engine, p)
    except KranError as e:
        return _run_error("run", e)
    if p.detach:
        print(cid, flush=True)  # docker prints the ID before starting: a failed start still shows it
        try:
            containers.start(engine, cid)
        except KranError as e:
            return _run_error("run", e)
        return 0
    from kran.cli.attach import attach_and_start

    if p.rm:
        containers.will_remove(engine, cid)
    try:
        code = attach_and_start(engine, cid, stdin=bool(p.interactive), tty=bool(p.tty),
                                detach_keys=p.detach_keys, sig_proxy=p.sig_proxy)
    except KranError as e:
        code = _run_error("run", e)
        if p.rm:
            _quiet_rm(engine, cid)
        return code
    if code is None:  # detached with the escape sequence
        return 0
    if p.rm:
        _quiet_rm(engine, cid)
    return code


def _schedule_text(c: Any) -> str:
    """ps's {{.Schedule}}: "in window until Fri 13:00", "waiting: opens Mon 12:00" (stopped by its
    schedule, started again then), "closed: opens ..." -- or "" without a schedule."""
    if not c.host_config.get("KranSchedule"):
        return ""
    from kran.engine import schedule

    return schedule.ps_text(c.host_config, c.running)


def _quiet_rm(engine: Any, cid: str) -> None:
    from kran.engine import containers
    from kran.errors import KranError

    try:
        containers.remove(engine, cid, force=True)
    except KranError:
        pass


# -- start / stop / kill / rm ---------------------------------------------------------------------


def cmd_start(engine: Any, p: P) -> int:
    from kran.engine import containers

    if p.attach or p.interactive:
        if len(p.args) > 1:
            from kran.errors import InvalidArgument

            raise InvalidArgument("you cannot start and attach multiple containers at once")
        from kran.cli.attach import attach_and_start

        c = containers.get(engine, p.args[0])
        code = attach_and_start(engine, c.id, stdin=bool(p.interactive), tty=bool(c.config.get("Tty")),
                                detach_keys=p.detach_keys, sig_proxy=True)
        return 0 if code is None else code
    return _each(p.args, lambda n: containers.start(engine, n))


def cmd_stop(engine: Any, p: P) -> int:
    from kran.engine import containers

    t = p.timeout if p.timeout is not None else p.time
    return _each(p.args, lambda n: containers.stop(engine, n, t, p.signal))


def cmd_restart(engine: Any, p: P) -> int:
    from kran.engine import containers

    t = p.timeout if p.timeout is not None else p.time
    return _each(p.args, lambda n: containers.restart(engine, n, t, p.signal))


def cmd_kill(engine: Any, p: P) -> int:
    from kran.engine import containers

    return _each(p.args, lambda n: containers.kill(engine, n, p.signal or "KILL"))


def cmd_rm(engine: Any, p: P) -> int:
    from kran.engine import containers

    if p.link:  # docker rm --link /parent/alias: only the link goes
        from kran.engine import links

        return _each(p.args, lambda n: links.remove(engine, n))
    return _each(p.args, lambda n: containers.remove(engine, n, force=p.force, volumes=p.volumes),
                 missing_ok=bool(p.force))


def cmd_pause(engine: Any, p: P) -> int:
    from kran.engine import containers

    return _each(p.args, lambda n: containers.pause(engine, n))


def cmd_unpause(engine: Any, p: P) -> int:
    from kran.engine import containers

    return _each(p.args, lambda n: containers.unpause(engine, n))


def cmd_rename(engine: Any, p: P) -> int:
    from kran.engine import containers

    containers.rename(engine, p.args[0], p.args[1])
    return 0


def cmd_wait(engine: Any, p: P) -> int:
    from kran.engine import containers
    from kran.errors import KranError

    rc = 0
    for n in p.args:
        try:
            print(containers.wait(engine, n))  # docker's: also the exit of a container that restarts
        except KranError as e:
            _err(e)
            rc = 1
    return rc


def cmd_prune(engine: Any, p: P) -> int:
    from kran.cli.output import confirm
    from kran.cli.units import human_size
    from kran.engine import containers

    if not p.force:
        print("WARNING! This will remove all stopped containers.")
        if not confirm("Are you sure you want to continue?"):
            return 0
    gone, space = containers.prune(engine, list(p.filter))
    if gone:
        print("Deleted Containers:")
        for g in gone:
            print(g)
        print()
    print(f"Total reclaimed space: {human_size(space)}")
    return 0


# -- ps -------------------------------------------------------------------------------------------


def _command(c: Any, no_trunc: bool) -> str:
    from kran.engine.spec import process_args

    cmd = " ".join(process_args(c.config))
    if not no_trunc and len(cmd) > 20:
        cmd = cmd[:19] + "…"
    return f'"{cmd}"'


def _ps_filter(engine: Any, cs: list[Any], filters: list[str]) -> list[Any]:
    from kran.engine.containers import filter_containers
    from kran.errors import InvalidArgument

    if any("=" not in f for f in filters):
        raise InvalidArgument("bad format of filter (expected name=value)")
    return filter_containers(engine, cs, filters)


def cmd_ps(engine: Any, p: P) -> int:
    from kran.cli.units import human_size
    from kran.engine import containers

    cs = containers.all_containers(engine)
    show_all = p.all or p.latest or (p.last is not None and p.last > 0)
    if not show_all:
        cs = [c for c in cs if c.running]
    cs = _ps_filter(engine, cs, p.filter)
    if p.latest:
        cs = cs[:1]
    elif p.last and p.last > 0:
        cs = cs[: p.last]
    if p.quiet:
        sys.stdout.write("".join((c.id if p.no_trunc else c.id[:12]) + "\n" for c in cs))
        return 0
    now = time.time()
    # the engine's port/network tables cost a scan of the network state: read them only when the
    # output shows them (the default table shows PORTS; a template or json may name either)
    fmt = p.format if p.format and p.format != "table" else None
    ports: dict[str, list[dict[str, Any]]] = {}
    nets: dict[str, list[str]] = {}
    if cs and (fmt is None or fmt == "json" or "Ports" in fmt):
        from kran.engine import networks

        ports = networks.published_ports(engine)
    if cs and fmt is not None and (fmt == "json" or "Networks" in fmt):
        from kran.engine import networks

        nets = networks.networks_of(engine)

    def ctx(c: Any) -> dict[str, Any]:
        from datetime import UTC, datetime

        from kran.cli.units import human_duration

        d = {
            "Command": _command(c, p.no_trunc),
            "CreatedAt": datetime.fromtimestamp(c.created, tz=UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
            "ID": c.id if p.no_trunc else c.id[:12],
            "Image": c.image_name,
            "Labels": ",".join(f"{k}={v}" for k, v in sorted((c.config.get("Labels") or {}).items())),
            "LocalVolumes": "0",
            "Mounts": "",
            "Names": c.name,
            "Networks": ",".join(nets.get(c.id, ())),
            "Ports": displayable_ports(ports.get(c.id, ())),
            "RunningFor": human_duration(now - c.created) + " ago",
            "Size": "",
            "State": c.status,
            "Status": containers.status_text(c, now),
            "Schedule": _schedule_text(c),
        }
        if p.size:
            virt = engine.images.get(c.image_id).size
            rw = containers.size_rw(c)
            d["Size"] = f"{human_size(rw)} (virtual {human_size(rw + virt)})"
        return d

    rows = [ctx(c) for c in cs]
    if p.format and p.format != "table":
        from kran.cli.output import print_formatted

        print_formatted(p.format, rows, {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
                                         "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
                                         "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
                                         "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
                                         "LocalVolumes": "LOCAL VOLUMES", "Schedule": "SCHEDULE"})
        return 0
    from kran.cli.output import table

    head = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"] + (["SIZE"] if p.size else [])
    out = [head] + [[r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], r["Ports"], r["Names"]]
                    + ([r["Size"]] if p.size else []) for r in rows]
    sys.stdout.write(table(out))
    return 0


def displayable_ports(ports: Any) -> str:
    """docker/cli's DisplayablePorts: API "Ports" entries -> ``0.0.0.0:8080->80/tcp, 443/tcp``.

    Ports published on the same number (or only exposed) group into consecutive ranges per IP and
    protocol (``0.0.0.0:80-82->80-82/tcp``); a port published on another number is listed alone,
    after the groups, as docker does.
    """
    groups: dict[str, list[int]] = {}
    order: list[str] = []
    result: list[str] = []
    mappings: list[str] = []
    items = sorted(ports, key=lambda q: (q.get("PrivatePort", 0), q.get("IP", ""), q.get("PublicPort", 0), q.get("Type", "")))
    for q in items:
        cur = q.get("PrivatePort", 0)
        key = q.get("Type", "")
        ip = q.get("IP", "")
        if ip:
            if q.get("PublicPort", 0) != cur:
                host = f"[{ip}]" if ":" in ip else ip
                mappings.append(f"{host}:{q.get('PublicPort', 0)}->{cur}/{q.get('Type', '')}")
                continue
            key = f"{ip}/{key}"
        g = groups.get(key)
        if g is None:
            groups[key] = [cur, cur]
            order.append(key)
            continue
        if cur == g[1] + 1:
            g[1] = cur
            continue
        result.append(_form_group(key, g[0], g[1]))
        groups[key] = [cur, cur]
    result += [_form_group(k, *groups[k]) for k in order]
    return ", ".join(result + mappings)


def _form_group(key: str, first: int, last: int) -> str:
    ip, _, typ = key.rpartition("/")
    group = str(first) if first == last else f"{first}-{last}"
    if ip:
        group = f"{ip}:{group}->{group}"
    return f"{group}/{typ}"


PORT = Command("port", "CONTAINER [PRIVATE_PORT[/PROTO]]", "List port mappings or a specific mapping for the container", (),
               aliases=("container port", "port"), min_args=1, max_args=2, handler="cmd_port")
_TOP["port"] = PORT
_SUB["port"] = PORT


def _join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _natural_key(s: str) -> list[Any]:
    import re

    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.findall(r"\d+|\D+", s)]


def cmd_port(engine: Any, p: P) -> int:
    from kran.cli.runopts import CliError
    from kran.engine import containers

    info = containers.inspect(engine, p.args[0])
    published = (info.get("NetworkSettings") or {}).get("Ports") or {}
    out: list[str] = []
    if len(p.args) > 1:
        want = p.args[1]
        port, _, proto = want.partition("/")
        proto = proto or "tcp"
        if not (port.isascii() and port.isdigit() and int(port) <= 65535):
            why = "value out of range" if port.isascii() and port.isdigit() else "invalid syntax"
            raise CliError(f'Error: invalid port ({port}): strconv.ParseUint: parsing "{port}": {why}')
        frontends = published.get(f"{port}/{proto}")
        if frontends is None:
            raise CliError(f"Error: No public port '{want}' published for {p.args[0]}")
        out = [_join_host_port(f.get("HostIp", ""), f.get("HostPort", "")) for f in frontends]
    else:
        for key, frontends in published.items():
            for f in frontends or ():
                out.append(f"{key} -> {_join_host_port(f.get('HostIp', ''), f.get('HostPort', ''))}")
    out.sort(key=_natural_key)
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    return 0


# -- logs -----------------------------------------------------------------------------------------


def _parse_time(s: str | None, now: float) -> float | None:
    if not s:
        return None
    import re

    from kran.errors import InvalidArgument
    from kran.image.store import parse_created

    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", s)
    if m:
        mult = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        return now - float(m.group(1)) * mult
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    t = parse_created(s if ("T" in s) else s + "T00:00:00Z")
    if not t:
        raise InvalidArgument(f'invalid value for "since": failed to parse value as time or duration: "{s}"')
    return t


def cmd_logs(engine: Any, p: P) -> int:
    from kran.engine import containers
    from kran.errors import InvalidArgument
    from kran.monitor.client import read_logs

    c = containers.get(engine, p.args[0])
    tail = None
    if p.tail not in (None, "", "all"):
        try:
            tail = int(p.tail)
        except ValueError:
            raise InvalidArgument(f'invalid value for "tail": "{p.tail}"') from None
        if tail < 0:
            tail = None
    now = time.time()
    log_path = os.path.join(c.dir, f"{c.id}-json.log")
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for stream, data, _ts in read_logs(log_path, follow=p.follow and c.running, tail=tail, since=_parse_time(p.since, now),
                                      until=_parse_time(p.until, now), timestamps=p.timestamps):
        f = err if stream == "stderr" else out
        f.write(data)  # with timestamps=True, read_logs already put "<time> " in front
        if p.follow:
            f.flush()
    out.flush()
    err.flush()
    return 0


# -- attach / exec / inspect ----------------------------------------------------------------------


def cmd_attach(engine: Any, p: P) -> int:
    from kran.cli.attach import attach_running
    from kran.engine import containers
    from kran.errors import Conflict

    c = containers.get(engine, p.args[0])
    if not c.running:
        raise Conflict("You cannot attach to a stopped container, start it first")
    code = attach_running(engine, c, stdin=not p.no_stdin and bool(c.config.get("OpenStdin")),
                          tty=bool(c.config.get("Tty")), detach_keys=p.detach_keys)
    return 0 if code is None else code


def cmd_exec(engine: Any, p: P) -> int:
    from kran.cli.exec import cmd_exec as run

    return run(engine, p)


cmd_exec.use_error_code = True  # type: ignore[attr-defined]


def cmd_inspect(engine: Any, p: P) -> int:
    from kran.cli.image import inspect_objects

    return inspect_objects(engine, p.args, p.format, kind="container", size=bool(p.size))


# -- top / stats / diff / export / update / events -----------------------------------------------

TOP = Command("top", "CONTAINER [ps OPTIONS]", "Display the running processes of a container", (),
              aliases=("container top", "top"), min_args=1, interspersed=False, handler="cmd_top")
STATS = Command("stats", "[OPTIONS] [CONTAINER...]", "Display a live stream of container(s) resource usage statistics", (
    Flag("all", "a", help="Show all containers (default shows just running)"),
    Flag("format", "", "str", "string", "Format output using a custom template"),
    Flag("no-stream", help="Disable streaming stats and only pull the first result"),
    Flag("no-trunc", help="Do not truncate output"),
), aliases=("container stats", "stats"), handler="cmd_stats")
DIFF = Command("diff", "CONTAINER", "Inspect changes to files or directories on a container's filesystem", (),
               aliases=("container diff", "diff"), min_args=1, max_args=1, handler="cmd_diff")
EXPORT = Command("export", "[OPTIONS] CONTAINER", "Export a container's filesystem as a tar archive", (
    Flag("output", "o", "str", "string", "Write to a file, instead of STDOUT"),
), aliases=("container export", "export"), min_args=1, max_args=1, handler="cmd_export")
UPDATE = Command("update", "[OPTIONS] CONTAINER [CONTAINER...]", "Update configuration of one or more containers", (
    Flag("blkio-weight", "", "int", "uint16", "Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)"),
    Flag("blkio-weight-device", "", "list", "list", "Block IO weight (relative device weight) (Podman's)"),
    Flag("device-read-bps", "", "list", "list", "Limit read rate (bytes per second) from a device (Podman's)"),
    Flag("device-read-iops", "", "list", "list", "Limit read rate (IO per second) from a device (Podman's)"),
    Flag("device-write-bps", "", "list", "list", "Limit write rate (bytes per second) to a device (Podman's)"),
    Flag("device-write-iops", "", "list", "list", "Limit write rate (IO per second) to a device (Podman's)"),
    Flag("cpu-shares", "c", "int", "int", "CPU shares (relative weight)"),
    Flag("cpus", "", "str", "decimal", "Number of CPUs"),
    Flag("cpuset-cpus", "", "str", "string", "CPUs in which to allow execution (0-3, 0,1)"),
    Flag("memory", "m", "str", "bytes", "Memory limit"),
    Flag("memory-swap", "", "str", "bytes", "Swap limit equal to memory plus swap: -1 to enable unlimited swap"),
    Flag("network-rate", "", "str", "rate", "Limit bandwidth, live: RATE or EGRESS/INGRESS ('unlimited' lifts it)"),
    Flag("pids-limit", "", "int", "int", "Tune container pids limit (set -1 for unlimited)"),
    Flag("restart", "", "str", "string", "Restart policy to apply when a container exits"),
    Flag("restart-fresh", help="Begin every restart with an empty read-write layer (--restart-fresh=false: no more)"),
    Flag("lockdown", help="Lock a stopped container down (--lockdown=false unlocks it)"),
    Flag("schedule", "", "str", "string", "Run only in these local time windows ('' for always)"),
    Flag("max-lifetime", "", "str", "duration", "Stop the container after it has run this long (0 for no limit)"),
    Flag("recreate-every", "", "str", "duration", "Restart the container fresh after every DURATION of running (0: never)"),
), aliases=("container update", "update"), min_args=1, handler="cmd_update")
EVENTS = Command("events", "[OPTIONS]", "Get real time events from the server", (
    Flag("filter", "f", "list", "filter", "Filter output based on conditions provided"),
    Flag("format", "", "str", "string", "Format output using a custom template"),
    Flag("since", "", "str", "string", "Show all events created since timestamp"),
    Flag("until", "", "str", "string", "Stream events until this timestamp"),
), aliases=("system events", "events"), max_args=0, handler="cmd_events")

_TOP.update({c.name: c for c in (TOP, STATS, DIFF, EXPORT, UPDATE, EVENTS)})
_SUB.update({"top": TOP, "stats": STATS, "diff": DIFF, "export": EXPORT, "update": UPDATE})


def cmd_top(engine: Any, p: P) -> int:
    from kran.cli.output import table
    from kran.engine.container_ops import top

    titles, rows = top(engine, p.args[0], p.args[1:])
    sys.stdout.write(table([titles] + rows))
    return 0


def cmd_stats(engine: Any, p: P) -> int:
    from kran.cli.output import table
    from kran.cli.units import bytes_size, human_size
    from kran.engine import containers
    from kran.engine.container_ops import stats

    if p.args:
        cs = [containers.get(engine, n) for n in p.args]
    else:
        cs = [c for c in containers.all_containers(engine) if p.all or c.running]
    while True:
        rows = []
        for c in cs:
            s = stats(engine, c.id, 0.2)
            mem_pct = (s.mem_usage / s.mem_limit * 100) if s.mem_limit else 0.0
            rows.append({
                "Container": c.id if p.no_trunc else c.id[:12], "ID": c.id if p.no_trunc else c.id[:12], "Name": c.name,
                "CPUPerc": f"{s.cpu_percent:.2f}%", "MemUsage": f"{bytes_size(s.mem_usage)} / {bytes_size(s.mem_limit)}",
                "MemPerc": f"{mem_pct:.2f}%", "NetIO": f"{human_size(s.net_rx)} / {human_size(s.net_tx)}",
                "BlockIO": f"{human_size(s.blk_read)} / {human_size(s.blk_write)}", "PIDs": str(s.pids),
            })
        if p.format and p.format != "table":
            from kran.cli.output import print_formatted

            print_formatted(p.format, rows, {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME",
                                             "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
                                             "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"})
        else:
            out = [["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]]
            out += [[r["ID"], r["Name"], r["CPUPerc"], r["MemUsage"], r["MemPerc"], r["NetIO"], r["BlockIO"], r["PIDs"]]
                    for r in rows]
            if not p.no_stream:
                sys.stdout.write("\033[2J\033[H")
            sys.stdout.write(table(out))
            sys.stdout.flush()
        if p.no_stream:
            return 0
        time.sleep(0.8)


def cmd_diff(engine: Any, p: P) -> int:
    from kran.engine.container_ops import diff

    sys.stdout.write("".join(f"{k} {path}\n" for k, path in diff(engine, p.args[0])))
    return 0


def cmd_export(engine: Any, p: P) -> int:
    from kran.engine.container_ops import export
    from kran.errors import InvalidArgument

    if p.output:
        tmp = p.output + ".kran-tmp"
        try:
            with open(tmp, "wb") as f:
                export(engine, p.args[0], f)
            os.rename(tmp, p.output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return 0
    if sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    sys.stdout.flush()
    export(engine, p.args[0], sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0


def cmd_update(engine: Any, p: P) -> int:
    from kran.cli.runopts import _bytes, go_duration, parse_restart
    from kran.engine.container_ops import update

    changes: dict[str, Any] = {
        "Memory": _bytes(p.memory, "--memory") if p.memory else None,
        "MemorySwap": _bytes(p.memory_swap, "--memory-swap") if p.memory_swap else None,
        "NanoCpus": int(round(float(p.cpus) * 1e9)) if p.cpus else None,
        "CpuShares": p.cpu_shares, "CpusetCpus": p.cpuset_cpus, "PidsLimit": p.pids_limit,
        "RestartPolicy": parse_restart(p.restart) if p.restart else None,
        "KranSchedule": p.schedule,
    }
    from kran.cli.runopts import blkio_flags

    changes.update(blkio_flags(p))
    for flag, key in (("restart_fresh", "KranRestartFresh"), ("lockdown", "KranLockdown")):
        if flag in p.given:
            changes[key] = bool(getattr(p, flag))
    for flag in ("max-lifetime", "recreate-every"):
        v = getattr(p, flag.replace("-", "_"))
        if v is not None:  # 0 lifts the limit
            changes["Kran" + flag.title().replace("-", "")] = go_duration(v, flag)
    if p.network_rate is not None:
        from kran.cli.runopts import parse_network_rate

        changes["KranNetworkRate"] = parse_network_rate(p.network_rate)
    return _each(p.args, lambda n: update(engine, n, changes))


def cmd_events(engine: Any, p: P) -> int:
    from datetime import UTC, datetime

    from kran.engine.events import matches, read

    now = time.time()
    since = _parse_time(p.since, now)
    until = _parse_time(p.until, now)
    filters: dict[str, list[str]] = {}
    for f in p.filter:
        k, _, v = f.partition("=")
        filters.setdefault(k, []).append(v)
    follow = until is None
    try:
        for ev in read(engine.root, since=since, until=until, follow=follow):
            actor = ev.get("Actor", {})
            attrs = actor.get("Attributes", {})
            if not matches(ev, filters):
                continue
            if p.format:
                from kran.cli.gotemplate import render
                from kran.cli.output import unescape_format

                ctx = dict(ev, Status=ev.get("Action"), ID=actor.get("ID"), From=attrs.get("image", ""))
                print(render(unescape_format(p.format), ctx), flush=True)
                continue
            t = ev.get("timeNano", 0)
            ts = datetime.fromtimestamp(t / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{t % 1_000_000_000:09d}Z"
            attr = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
            print(f"{ts} {ev.get('Type')} {ev.get('Action')} {actor.get('ID')} ({attr})", flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


COMMIT = Command("commit", "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]", "Create a new image from a container's changes", (
    Flag("author", "a", "str", "string", 'Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")'),
    Flag("change", "c", "list", "list", "Apply Dockerfile instruction to the created image"),
    Flag("message", "m", "str", "string", "Commit message"),
    Flag("pause", "p", "bool", help="Pause container during commit", default=True),
), aliases=("container commit", "commit"), min_args=1, max_args=2, handler="cmd_commit")
_TOP["commit"] = COMMIT
_SUB["commit"] = COMMIT


def cmd_commit(engine: Any, p: P) -> int:
    from kran.engine.commit import commit

    image_id = commit(engine, p.args[0], repository=p.args[1] if len(p.args) > 1 else None, changes=p.change,
                      message=p.message or "", author=p.author or "", pause=p.pause)
    print(image_id)
    return 0
