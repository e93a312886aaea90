"""Registry commands: pull, push, login, logout (docker's flags, output and messages)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from kran.cli.flags import Command, Flag
from kran.cli.flags import Parsed as P

PULL = Command(
    "pull", "[OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry",
    (
        Flag("all-tags", "a", help="Download all tagged images in the repository"),
        Flag("disable-content-trust", default=True, help="Skip image verification (default true)"),
        Flag("platform", "", "str", "string", "Set platform if server is multi-platform capable"),
        Flag("quiet", "q", help="Suppress verbose output"),
    ),
    aliases=("image pull", "pull"), min_args=1, max_args=1, handler="cmd_pull",
)
PUSH = Command(
    "push", "[OPTIONS] NAME[:TAG]", "Upload an image to a registry",
    (
        Flag("all-tags", "a", help="Push all tags of an image to the repository"),
        Flag("disable-content-trust", default=True, help="Skip image signing (default true)"),
        Flag("quiet", "q", help="Suppress verbose output"),
    ),
    aliases=("image push", "push"), min_args=1, max_args=1, handler="cmd_push",
)
LOGIN = Command(
    "login", "[OPTIONS] [SERVER]",
    "Log in to a registry.\nIf no server is specified, the default is defined by the daemon.",
    (
        Flag("password", "p", "str", "string", "Password"),
        Flag("password-stdin", help="Take the password from stdin"),
        Flag("username", "u", "str", "string", "Username"),
    ),
    max_args=1, handler="cmd_login",
)
LOGOUT = Command(
    "logout", "[SERVER]",
    "Log out from a registry.\nIf no server is specified, the default is defined by the daemon.",
    (), max_args=1, handler="cmd_logout",
)

_BY_NAME = {c.name: c for c in (PULL, PUSH, LOGIN, LOGOUT)}


def dispatch(name: str, argv: list[str]) -> tuple[Command, Any]:
    cmd = _BY_NAME[name]
    return cmd, globals()[cmd.handler]


def printer(out: TextIO) -> Any:
    """A progress callback printing Docker's non-terminal pull/push lines (``id: status``)."""

    def show(p: Any) -> None:
        out.write(f"{p.id}: {p.status}\n" if p.id else f"{p.status}\n")
        out.flush()

    return show


def pull_progress(engine: Any, name: str, out: TextIO, *, platform: str | None = None) -> str:
    """Pull ``name`` printing what ``docker pull`` prints (used by pull, and by run/create)."""
    from kran.engine.registry import pull
    from kran.image.reference import parse_normalized

    ref = parse_normalized(name)
    if ref.tag is None and ref.digest is None:
        out.write("Using default tag: latest\n")
    return pull(engine, name, platform=platform, progress=printer(out))


def cmd_pull(engine: Any, p: P) -> int:
    from kran.engine.registry import pull
    from kran.image.reference import parse_normalized

    name = p.args[0]
    ref = parse_normalized(name)
    if p.quiet:
        pull(engine, name, all_tags=p.all_tags, platform=p.platform)
    elif p.all_tags:
        pull(engine, name, all_tags=True, platform=p.platform, progress=printer(sys.stdout))
    else:
        pull_progress(engine, name, sys.stdout, platform=p.platform)
    print(ref.name if p.all_tags else str(ref.tagged_or_latest()))
    return 0


def cmd_push(engine: Any, p: P) -> int:
    from kran.engine.registry import push
    from kran.image.reference import parse_normalized

    name = p.args[0]
    ref = parse_normalized(name)
    if not p.all_tags and ref.tag is None and ref.digest is None and not p.quiet:
        print("Using default tag: latest")
    push(engine, name, all_tags=p.all_tags, progress=None if p.quiet else printer(sys.stdout))
    if p.quiet:
        print(str(ref.tagged_or_latest()) if not p.all_tags else ref.name)
    return 0


def cmd_login(engine: Any, p: P) -> int:
    from kran.engine.registry import login
    from kran.errors import InvalidArgument

    password = p.password
    if p.password_stdin:
        if password:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        if not p.username:
            raise InvalidArgument("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif password:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
    user = p.username
    if not user or not password:
        if not sys.stdin.isatty():
            raise InvalidArgument("Error: Cannot perform an interactive login from a non TTY device")
        import getpass

        if not user:
            user = input("Username: ").strip()
        if not password:
            password = getpass.getpass("Password: ")
    login(p.args[0] if p.args else None, user, password)
    print("Login Succeeded")
    return 0


def cmd_logout(engine: Any, p: P) -> int:
    from kran.engine.registry import logout

    server = p.args[0] if p.args else None
    key, had = logout(server)
    shown = server or key
    if had:
        print(f"Removing login credentials for {shown}")
    else:
        print(f"Not logged in to {shown}")
    return 0
