"""``kran build``: build an image from a Dockerfile (Docker's classic builder output)."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from kran.cli.flags import Command, Flag
from kran.cli.flags import Parsed as P

BUILD = Command(
    "build", "[OPTIONS] PATH | URL | -", "Build an image from a Dockerfile",
    (
        Flag("build-arg", "", "list", "list", "Set build-time variables"),
        Flag("file", "f", "str", "string", "Name of the Dockerfile (Default is 'PATH/Dockerfile')"),
        Flag("iidfile", "", "str", "string", "Write the image ID to the file"),
        Flag("label", "", "list", "list", "Set metadata for an image"),
        Flag("network", "", "str", "string", 'Set the networking mode for the RUN instructions during build (default "default")'),
        Flag("no-cache", help="Do not use cache when building the image"),
        Flag("platform", "", "str", "string", "Set platform if server is multi-platform capable"),
        Flag("pull", help="Always attempt to pull a newer version of the image"),
        Flag("quiet", "q", help="Suppress the build output and print image ID on success"),
        Flag("rm", default=True, help="Remove intermediate containers after a successful build (default true)"),
        Flag("force-rm", help="Always remove intermediate containers"),
        Flag("tag", "t", "list", "list", 'Name and optionally a tag in the "name:tag" format'),
        Flag("target", "", "str", "string", "Set the target build stage to build."),
    ),
    min_args=1, max_args=1,
    args_error='requires exactly 1 argument', handler="cmd_build",
)


def dispatch(name: str, argv: list[str]) -> tuple[Command, Any]:
    return BUILD, cmd_build


def _read_dockerfile(ctx: str, name: str | None, stdin_text: str | None) -> str:
    from kran.errors import NotFound

    if name == "-":
        return sys.stdin.read() if stdin_text is None else stdin_text
    path = name or "Dockerfile"
    if not os.path.isabs(path):
        # docker: -f is relative to the current directory, the default lives in the context
        path = path if name and os.path.exists(path) else os.path.join(ctx, path)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise NotFound(f"unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {os.path.abspath(path)}: no such file or directory") from None


def cmd_build(engine: Any, p: P) -> int:
    from kran.build.builder import BuildOptions, parse_kv_list
    from kran.engine.build import build, context_from_tar
    from kran.errors import InvalidArgument

    src = p.args[0]
    tmp_ctx = None
    if src == "-":
        tmp_ctx = context_from_tar(engine, sys.stdin.buffer)
        ctx = tmp_ctx
    elif "://" in src or src.startswith("git@"):
        raise InvalidArgument("unable to prepare context: remote contexts (URLs, git) are not supported by kran yet")
    else:
        ctx = src
        if not os.path.isdir(ctx):
            raise InvalidArgument(f'unable to prepare context: path "{src}" not found')
    try:
        text = _read_dockerfile(ctx, p.file, None)
        labels = {}
        for kv in p.label:
            k, _, v = kv.partition("=")
            labels[k] = v
        opts = BuildOptions(
            context_dir=ctx, dockerfile=text, tags=list(p.tag), build_args=parse_kv_list(p.build_arg),
            target=p.target or "", no_cache=p.no_cache, pull=p.pull, labels=labels,
            network=p.network or "host", platform=p.platform or "",
        )
        if p.quiet:
            iid = build(engine, opts, lambda s: None, lambda b: None)
            sys.stdout.write(iid + "\n")
        else:
            def out(s: str) -> None:
                sys.stdout.write(s)
                sys.stdout.flush()

            def raw(b: bytes) -> None:
                sys.stdout.buffer.write(b)
                sys.stdout.buffer.flush()

            iid = build(engine, opts, out, raw)
        if p.iidfile:
            with open(p.iidfile, "w") as f:
                f.write(iid)
        return 0
    finally:
        if tmp_ctx:
            shutil.rmtree(tmp_ctx, ignore_errors=True)


# every failure exits 1, like "docker build" (a failed RUN, a parse error, a missing image)
