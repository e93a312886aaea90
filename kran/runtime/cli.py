"""``kran-runtime``: runc's command line over :mod:`kran.runtime.ops`.

Parsing is a small table-driven parser instead of argparse: every runtime command pays its import
time, and containerd runs several per container.  Like runc (urfave/cli), flags come before the
positional arguments; ``--`` ends the flags.
"""

from __future__ import annotations

import os
import sys

USAGE = """usage: kran-runtime [global options] command [command options] [arguments...]

global options: --root DIR (default /run/kran-runtime), --log FILE, --log-format text|json,
                --debug, --systemd-cgroup (accepted, ignored)
commands: spec create start state kill delete run list features exec pause resume ps update
"""

_GLOBAL = {
    "--root": "root",
    "--log": "log",
    "--log-format": "log_format",
    "--criu": "criu",
    "--rootless": "rootless",
}
_GLOBAL_BOOL = {
    "--debug": "debug",
    "--systemd-cgroup": "systemd_cgroup",
    "--help": "help",
    "-h": "help",
    "--version": "version",
    "-v": "version",
}

# command -> (flags taking a value, boolean flags); each maps spelling -> destination
_BUNDLE = {"--bundle": "bundle", "-b": "bundle"}
_CREATE_V = {
    **_BUNDLE,
    "--pid-file": "pid_file",
    "--console-socket": "console_socket",
    "--preserve-fds": "preserve_fds",
}
_CREATE_B = {"--no-pivot": "no_pivot", "--no-new-keyring": "no_new_keyring"}
_COMMANDS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "spec": (_BUNDLE, {"--rootless": "rootless"}),
    "create": (_CREATE_V, _CREATE_B),
    "run": (_CREATE_V, {**_CREATE_B, "--detach": "detach", "-d": "detach", "--keep": "keep"}),
    "start": ({}, {}),
    "state": ({}, {}),
    "kill": ({}, {"--all": "all", "-a": "all"}),
    "delete": ({}, {"--force": "force", "-f": "force"}),
    "list": ({"--format": "format", "-f": "format"}, {"--quiet": "quiet", "-q": "quiet"}),
    "features": ({}, {}),
    "exec": (
        {
            "--process": "process",
            "-p": "process",
            "--console-socket": "console_socket",
            "--cwd": "cwd",
            "--env": "env",
            "-e": "env",
            "--user": "user",
            "-u": "user",
            "--pid-file": "pid_file",
            "--cap": "cap",
            "-c": "cap",
            "--preserve-fds": "preserve_fds",
            "--additional-gids": "additional_gids",
            "-g": "additional_gids",
            "--process-label": "label",
            "--apparmor": "apparmor",
            "--cgroup": "cgroup",
        },
        {
            "--tty": "tty",
            "-t": "tty",
            "--detach": "detach",
            "-d": "detach",
            "--no-new-privs": "no_new_privs",
            "--ignore-paused": "ignore_paused",
        },
    ),
    "pause": ({}, {}),
    "resume": ({}, {}),
    "ps": ({"--format": "format", "-f": "format"}, {}),
    "update": (
        {
            "--resources": "resources",
            "-r": "resources",
            "--memory": "memory",
            "--memory-swap": "memory_swap",
            "--memory-reservation": "memory_reservation",
            "--cpu-shares": "cpu_shares",
            "--cpu-quota": "cpu_quota",
            "--cpu-period": "cpu_period",
            "--cpuset-cpus": "cpuset_cpus",
            "--cpuset-mems": "cpuset_mems",
            "--pids-limit": "pids_limit",
            "--blkio-weight": "blkio_weight",
            "--kernel-memory": "kernel_memory",
            "--kernel-memory-tcp": "kernel_memory_tcp",
        },
        {},
    ),
}
_MULTI = {"env", "cap", "additional_gids"}


class UsageError(Exception):
    pass


def parse(
    argv: list[str], valued: dict[str, str], boolean: dict[str, str], stop_at_positional: bool = True
) -> tuple[dict, list[str]]:
    opts: dict = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest.extend(argv[i + 1 :])
            break
        if a.startswith("-") and len(a) > 1 and not rest:
            name, eq, val = a.partition("=")
            if name in boolean:
                opts[boolean[name]] = val.lower() not in ("false", "0") if eq else True
            elif name in valued:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: {name}")
                    val = argv[i]
                key = valued[name]
                if key in _MULTI:
                    opts.setdefault(key, []).append(val)
                else:
                    opts[key] = val
            else:
                raise UsageError(f"flag provided but not defined: {name}")
        else:
            rest.append(a)
            if stop_at_positional:
                rest.extend(argv[i + 1 :])
                break
        i += 1
    return opts, rest


def _need(args: list[str], n: int, usage: str) -> None:
    if len(args) < n:
        raise UsageError(
            f'"kran-runtime {usage}" requires at least {n} argument(s)'
            if n > 1
            else f"{usage}: container id cannot be empty"
        )


def _print_json(obj: object, indent: int | None = None) -> None:
    from kran.runtime import jsonc

    sys.stdout.write(jsonc.dumps(obj, indent) + "\n")


def dispatch(cmd: str, g: dict, opts: dict, args: list[str]) -> int:
    from kran.runtime import ops

    root = g.get("root") or ops.DEFAULT_ROOT
    if cmd == "spec":
        from kran.runtime.spec import default_spec

        path = os.path.join(opts.get("bundle") or ".", "config.json")
        if os.path.exists(path):
            raise UsageError("File config.json exists. Remove it first")
        with open(path, "w") as f:
            from kran.runtime import jsonc

            f.write(jsonc.dumps(default_spec(bool(opts.get("rootless"))), 2) + "\n")
        return 0
    if cmd == "features":
        _print_json(ops.features(), 2)
        return 0
    if cmd == "list":
        states = ops.list_containers(root)
        if opts.get("quiet"):
            for s in states:
                print(s["id"])
        elif opts.get("format") == "json":
            _print_json(states)
        else:
            rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
            rows += [
                [s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s.get("owner", "")]
                for s in states
            ]
            widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(6)]
            for r in rows:
                print("".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + r[-1])
        return 0
    _need(args, 1, cmd)
    cid = args[0]
    if cmd in ("create", "run"):
        kw = {
            "pid_file": opts.get("pid_file"),
            "console_socket": opts.get("console_socket"),
            "no_pivot": bool(opts.get("no_pivot")),
            "preserve_fds": int(opts.get("preserve_fds") or 0),
        }
        bundle = opts.get("bundle") or os.getcwd()
        if cmd == "create":
            ops.create(root, cid, bundle, **kw)
            return 0
        return ops.run(root, cid, bundle, detach=bool(opts.get("detach")), **kw)
    if cmd == "start":
        ops.start(root, cid)
    elif cmd == "state":
        _print_json(ops.state(root, cid), 2)
    elif cmd == "kill":
        ops.kill(root, cid, ops.parse_signal(args[1] if len(args) > 1 else "SIGTERM"), bool(opts.get("all")))
    elif cmd == "delete":
        ops.delete(root, cid, bool(opts.get("force")))
    elif cmd in ("pause", "resume"):
        ops.pause(root, cid, cmd == "pause")
    elif cmd == "update":
        if opts.get("resources"):
            from kran.runtime import jsonc

            raw = sys.stdin.read() if opts["resources"] == "-" else open(opts["resources"]).read()
            res = jsonc.loads(raw)
            if not isinstance(res, dict):
                raise UsageError("update: --resources must hold a JSON object (linux.resources)")
        else:
            res = ops.update_from_flags(opts)
        ops.update(root, cid, res)  # type: ignore[arg-type]
    elif cmd == "ps":
        return _ps(root, cid, opts, args[1:])
    elif cmd == "exec":
        return _exec(root, cid, opts, args[1:])
    return 0


def _exec(root: str, cid: str, opts: dict, args: list[str]) -> int:
    from kran.runtime import jsonc, ops
    from kran.runtime.state import Container

    if opts.get("process"):
        with open(opts["process"], "rb") as f:
            proc = jsonc.loads(f.read())
    else:
        if not args:
            raise UsageError("exec: arguments required (or --process)")
        c = Container.load(root, cid)
        proc = ops.exec_spec(
            c.config,
            args,
            env=opts.get("env") or [],
            cwd=opts.get("cwd"),
            user=opts.get("user"),
            tty=bool(opts.get("tty")),
            caps=opts.get("cap") or [],
            no_new_privs=bool(opts.get("no_new_privs")),
        )
        if opts.get("additional_gids"):
            proc["user"] = dict(
                proc.get("user") or {}, additionalGids=[int(g) for g in opts["additional_gids"]]
            )
    return ops.exec_process(
        root,
        cid,
        proc,  # type: ignore[arg-type]
        detach=bool(opts.get("detach")),
        pid_file=opts.get("pid_file"),
        console_socket=opts.get("console_socket"),
        preserve_fds=int(opts.get("preserve_fds") or 0),
    )


def _ps(root: str, cid: str, opts: dict, ps_args: list[str]) -> int:
    from kran.runtime import ops

    pids = ops.ps_pids(root, cid)
    if opts.get("format") == "json":
        _print_json(pids)
        return 0
    import subprocess

    out = subprocess.run(["ps"] + (ps_args or ["-ef"]), capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    col = header.index("PID")
    print(lines[0])
    wanted = set(pids)
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            print(line)
    return 0


def _log_error(g: dict, msg: str) -> None:
    sys.stderr.write(msg + "\n")
    if g.get("log"):
        import time

        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            with open(g["log"], "a") as f:
                if g.get("log_format") == "json":
                    from kran.runtime import jsonc

                    f.write(jsonc.dumps({"level": "error", "msg": msg, "time": now}) + "\n")
                else:
                    f.write(f'time="{now}" level=error msg="{msg}"\n')
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    g: dict = {}
    try:
        g, rest = parse(argv, _GLOBAL, _GLOBAL_BOOL)
        if g.get("version"):
            print("kran-runtime version 0.1.0\nspec: 1.0.2-dev")
            return 0
        if g.get("help") or not rest or rest[0] in ("help", "h"):
            sys.stdout.write(USAGE)
            return 0
        cmd, rest = rest[0], rest[1:]
        if cmd not in _COMMANDS:
            raise UsageError(f"No help topic for '{cmd}'")
        valued, boolean = _COMMANDS[cmd]
        opts, args = parse(rest, valued, boolean)
        return dispatch(cmd, g, opts, args)
    except UsageError as e:
        _log_error(g, str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the one place that turns errors into exit codes
        from kran.errors import KranError

        if isinstance(e, OSError) and e.filename:
            msg = f"{e.strerror}: {e.filename}"
        else:
            msg = str(e)
        _log_error(g, msg)
        if os.environ.get("KRAN_RUNTIME_DEBUG") or g.get("debug"):
            import traceback

            traceback.print_exc()
        return e.exit_code if isinstance(e, KranError) and e.exit_code != 125 else 1


if __name__ == "__main__":
    raise SystemExit(main())
