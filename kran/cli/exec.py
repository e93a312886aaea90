"""``kran exec``: create an exec instance and start it with the user's terminal as its client, through
the engine's exec use cases (the same ones the API's ``/exec`` endpoints call)."""

from __future__ import annotations

from typing import Any


def cmd_exec(engine: Any, p: Any) -> int:
    import os
    import sys

    from kran.cli.attach import Terminal, parse_detach_keys
    from kran.cli.runopts import _env, _env_file
    from kran.engine import execs
    from kran.errors import InvalidArgument

    env: list[str] = []
    for f in p.env_file:
        env += _env_file(f)
    env += _env(p.env)
    tty, interactive, detach = bool(p.tty), bool(p.interactive), bool(p.detach)
    parse_detach_keys(p.detach_keys)
    if tty and interactive and not detach and not os.isatty(sys.stdin.fileno()):
        raise InvalidArgument("the input device is not a TTY")
    term = Terminal(stdin=interactive and not detach, tty=tty)
    size = term.size() if tty else None
    cfg = execs.ExecConfig(cmd=list(p.args[1:]), tty=tty, attach_stdin=interactive and not detach,
                           attach_stdout=not detach, attach_stderr=not detach, detach_keys=p.detach_keys or "",
                           env=env, user=p.user or "", working_dir=p.workdir or "", privileged=bool(p.privileged),
                           console_size=list(size) if size else None)
    x = execs.create(engine, p.args[0], cfg)
    if detach:
        r = execs.start(engine, x.id, None, orphan=True)
    else:
        term.on_resize = lambda h, w: execs.resize(engine, x.id, h, w)
        with term:
            r = execs.start(engine, x.id, term, watch=term.watch(), outlive=True)
    if r.error is not None:
        raise r.error
    if r.detached or r.exit_code is None:
        return 0
    return r.exit_code


cmd_exec.use_error_code = True  # type: ignore[attr-defined]
