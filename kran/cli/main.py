"""``kran``: global options, the lazy command registry, and the one place errors become exit codes."""

from __future__ import annotations

import importlib
import os
import sys

# name -> (module under kran.cli, description).  Group commands ("image ls") map to the same
# functions as their short forms.  Only the module of the command being run is imported.
COMMANDS: dict[str, tuple[str, str]] = {
    "images": ("image", "List images"),
    "import": ("image", "Import the contents from a tarball to create a filesystem image"),
    "load": ("image", "Load an image from a tar archive or STDIN"),
    "save": ("image", "Save one or more images to a tar archive (streamed to STDOUT by default)"),
    "history": ("image", "Show the history of an image"),
    "tag": ("image", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "rmi": ("image", "Remove one or more images"),
    "inspect": ("image", "Return low-level information on Docker objects"),
    "image": ("image", "Manage images"),
    "run": ("container", "Create and run a new container from an image"),
    "create": ("container", "Create a new container"),
    "start": ("container", "Start one or more stopped containers"),
    "stop": ("container", "Stop one or more running containers"),
    "restart": ("container", "Restart one or more containers"),
    "kill": ("container", "Kill one or more running containers"),
    "rm": ("container", "Remove one or more containers"),
    "ps": ("container", "List containers"),
    "logs": ("container", "Fetch the logs of a container"),
    "wait": ("container", "Block until one or more containers stop, then print their exit codes"),
    "rename": ("container", "Rename a container"),
    "pause": ("container", "Pause all processes within one or more containers"),
    "unpause": ("container", "Unpause all processes within one or more containers"),
    "attach": ("container", "Attach local standard input, output, and error streams to a running container"),
    "exec": ("container", "Execute a command in a running container"),
    "container": ("container", "Manage containers"),
    "top": ("container", "Display the running processes of a container"),
    "port": ("container", "List port mappings or a specific mapping for the container"),
    "stats": ("container", "Display a live stream of container(s) resource usage statistics"),
    "diff": ("container", "Inspect changes to files or directories on a container's filesystem"),
    "export": ("container", "Export a container's filesystem as a tar archive"),
    "update": ("container", "Update configuration of one or more containers"),
    "events": ("container", "Get real time events from the server"),
    "system": ("system", "Manage kran"),
    "build": ("build", "Build an image from a Dockerfile"),
    "pull": ("registry", "Download an image from a registry"),
    "push": ("registry", "Upload an image to a registry"),
    "login": ("registry", "Log in to a registry"),
    "logout": ("registry", "Log out from a registry"),
    "commit": ("container", "Create a new image from a container's changes"),
    "backup": ("backup", "Back up containers' read-write layers to an OCI layout"),
    "restore": ("backup", "Recreate a container from a backup"),
    "volume": ("volume", "Manage volumes"),
    "network": ("network", "Manage networks"),
    "cp": ("volume", "Copy files/folders between a container and the local filesystem"),
    "version": ("system", "Show the kran version information"),
    "unshare": ("system", "Run a command in the rootless user namespace (rootless mode)"),
    "info": ("system", "Display system-wide information"),
}

MANAGEMENT = ("container", "image", "network", "system", "volume")
COMMON = ("run", "exec", "ps", "build", "pull", "push", "images", "login", "logout", "create", "start", "stop", "restart", "kill", "rm", "logs", "attach",
          "wait", "rename", "pause", "unpause", "top", "port", "stats", "diff", "cp", "commit", "backup", "restore", "export", "update", "events", "import", "load", "save", "history", "tag", "rmi", "inspect", "version", "info")

GLOBAL_HELP = """
Usage:  kran [OPTIONS] COMMAND

A container engine for Linux with Docker's commands

Common Commands:
{common}

Management Commands:
{management}

Global Options:
      --root string    Root of kran's state (default "/var/lib/kran", or $KRAN_ROOT;
                       rootless: $XDG_DATA_HOME/kran)
  -D, --debug          Enable debug mode
  -v, --version        Print version information and quit
  -h, --help           Print usage

Run 'kran COMMAND --help' for more information on a command.
"""


def _global_help() -> str:
    def block(names: tuple[str, ...]) -> str:
        return "\n".join(f"  {n:<11} {COMMANDS[n][1]}" for n in names)

    return GLOBAL_HELP.format(common=block(COMMON), management=block(MANAGEMENT)).lstrip("\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    root = None
    debug = False
    while argv and argv[0].startswith("-"):
        a = argv.pop(0)
        if a in ("-h", "--help"):
            sys.stdout.write(_global_help())
            return 0
        if a in ("-v", "--version"):
            from kran import __version__

            print(f"kran version {__version__}")
            return 0
        if a in ("-D", "--debug"):
            debug = True
        elif a == "--root" or a.startswith("--root="):
            if "=" in a:
                root = a.split("=", 1)[1]
            elif argv:
                root = argv.pop(0)
            else:
                return _usage_error("flag needs an argument: --root", "kran --help")
        else:
            return _usage_error(f"unknown flag: {a}" if a.startswith("--") else f"unknown shorthand flag: '{a[1:2]}' in {a}", "kran --help")
    if not argv:
        sys.stdout.write(_global_help())
        return 0
    name = argv.pop(0)
    entry = COMMANDS.get(name)
    if entry is None:
        sys.stderr.write(f"kran: '{name}' is not a kran command.\nSee 'kran --help'\n")
        return 1
    if os.getuid() != 0:
        # rootless: the user's own paths and user namespace, before anything starts a thread
        from kran.errors import KranError
        from kran.rootless.pause import enter

        try:
            enter()
        except KranError as e:
            sys.stderr.write(f"kran: {e}\n")
            return 125
    module = importlib.import_module(f"kran.cli.{entry[0]}")
    from kran.engine import Engine

    engine = Engine(root)
    _reconcile_schedules(engine)
    return run_command(module, name, argv, engine, debug)


def _reconcile_schedules(engine: object) -> None:
    """Containers waiting for their window whose monitor died (a reboot): started now if their window
    is open (kran.engine.containers.reconcile_schedules; one listdir when none waits)."""
    if not os.path.isdir(os.path.join(engine.root, "schedule-waiting")):  # type: ignore[attr-defined]
        return  # (the common case, before importing anything)
    from kran.engine.containers import reconcile_schedules
    from kran.errors import KranError

    try:
        reconcile_schedules(engine)  # type: ignore[arg-type]
    except KranError as e:
        sys.stderr.write(f"kran: starting scheduled containers: {e}\n")


def _usage_error(msg: str, helpcmd: str) -> int:
    sys.stderr.write(f"{msg}\nSee '{helpcmd}'.\n")
    return 125


def run_command(module: object, name: str, argv: list[str], engine: object, debug: bool = False) -> int:
    """Parse ``argv`` for command ``name`` of ``module`` and run it; errors -> messages + status."""
    from kran.cli.flags import UsageError, help_text, parse
    from kran.errors import KranError

    dispatch = module.dispatch
    try:
        cmd, handler = dispatch(name, argv)
    except UsageError as e:
        return _usage_error(str(e), f"kran {name} --help")
    try:
        p = parse(cmd, argv)
    except UsageError as e:
        if e.show_usage:
            sys.stderr.write(
                f'"kran {cmd.name}" {e}.\nSee \'kran {cmd.name} --help\'.\n\n'
                f"Usage:  kran {cmd.name} {cmd.usage}\n\n{cmd.description}\n"
            )
            return e.status
        return _usage_error(str(e), f"kran {cmd.name} --help")
    if p.help:
        sys.stdout.write(help_text(cmd))
        return 0
    try:
        rc = handler(engine, p)
        return int(rc or 0)
    except KranError as e:
        if debug:
            import traceback

            traceback.print_exc()
        prefix = "Error response from daemon: " if e.from_daemon else ""
        sys.stderr.write(f"{prefix}{e}\n")
        return int(getattr(handler, "exit_status", 0) or 1) if not getattr(handler, "use_error_code", False) else e.exit_code
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug or an unexpected OS error: one line, the traceback with -D
        if debug:
            raise
        sys.stderr.write(f"Error: {type(e).__name__}: {e} (run with -D for details)\n")
        return 125
