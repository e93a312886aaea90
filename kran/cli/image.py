"""Image commands: images, import, load, save, history, tag, rmi, inspect, image prune."""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC
from typing import Any

from kran.cli.flags import Command, Flag
from kran.cli.flags import Parsed as P

FORMAT_HELP = "Format output using a custom template:\n'table': Print output in table format with column headers (default)\n'table TEMPLATE': Print output in table format using the given Go template\n'json': Print in JSON format\n'TEMPLATE': Print output using the given Go template"

IMAGES = Command(
    "images", "[OPTIONS] [REPOSITORY[:TAG]]", "List images",
    (
        Flag("all", "a", help="Show all images (default hides intermediate images)"),
        Flag("digests", help="Show digests"),
        Flag("filter", "f", "list", "filter", "Filter output based on conditions provided"),
        Flag("format", "", "str", "string", FORMAT_HELP.split("\n")[0]),
        Flag("no-trunc", help="Don't truncate output"),
        Flag("quiet", "q", help="Only show image IDs"),
    ),
    aliases=("image ls", "image list", "images"), max_args=1, handler="cmd_images",
)
IMPORT = Command(
    "import", "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
    "Import the contents from a tarball to create a filesystem image",
    (
        Flag("change", "c", "list", "list", "Apply Dockerfile instruction to the created image"),
        Flag("message", "m", "str", "string", "Set commit message for imported image"),
        Flag("platform", "", "str", "string", "Set platform if server is multi-platform capable"),
    ),
    aliases=("image import", "import"), min_args=1, max_args=2, handler="cmd_import",
)
LOAD = Command(
    "load", "[OPTIONS]", "Load an image from a tar archive or STDIN",
    (
        Flag("input", "i", "str", "string", "Read from tar archive file, instead of STDIN"),
        Flag("platform", "", "str", "string", 'Load only the given platform variant. Formatted as "os[/arch[/variant]]" (e.g., "linux/amd64")'),
        Flag("quiet", "q", help="Suppress the load output"),
    ),
    aliases=("image load", "load"), max_args=0, handler="cmd_load",
)
SAVE = Command(
    "save", "[OPTIONS] IMAGE [IMAGE...]", "Save one or more images to a tar archive (streamed to STDOUT by default)",
    (
        Flag("output", "o", "str", "string", "Write to a file, instead of STDOUT"),
        Flag("platform", "", "str", "string", 'Save only the given platform variant. Formatted as "os[/arch[/variant]]" (e.g., "linux/amd64")'),
        Flag("since", "", "str", "image", "Write a delta: leave out the layers this image (name or ID) already has"),
    ),
    aliases=("image save", "save"), min_args=1, handler="cmd_save",
)
HISTORY = Command(
    "history", "[OPTIONS] IMAGE", "Show the history of an image",
    (
        Flag("format", "", "str", "string", "Format output using a custom template"),
        Flag("human", "H", default=True, help="Print sizes and dates in human readable format (default true)"),
        Flag("no-trunc", help="Don't truncate output"),
        Flag("quiet", "q", help="Only show image IDs"),
    ),
    aliases=("image history", "history"), min_args=1, max_args=1, handler="cmd_history",
)
TAG = Command(
    "tag", "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
    (), aliases=("image tag", "tag"), min_args=2, max_args=2, handler="cmd_tag",
)
RMI = Command(
    "rmi", "[OPTIONS] IMAGE [IMAGE...]", "Remove one or more images",
    (
        Flag("force", "f", help="Force removal of the image"),
        Flag("no-prune", help="Do not delete untagged parents"),
    ),
    aliases=("image rm", "image remove", "rmi"), min_args=1, handler="cmd_rmi",
)
INSPECT = Command(
    "inspect", "[OPTIONS] NAME|ID [NAME|ID...]", "Return low-level information on Docker objects",
    (
        Flag("format", "f", "str", "string", "Format output using a custom template"),
        Flag("size", "s", help="Display total file sizes if the type is container"),
        Flag("type", "", "str", "string", "Only inspect objects of the given type"),
    ),
    min_args=1, handler="cmd_inspect",
)
IMAGE_INSPECT = Command(
    "image inspect", "[OPTIONS] IMAGE [IMAGE...]", "Display detailed information on one or more images",
    (Flag("format", "f", "str", "string", "Format output using a custom template"),),
    min_args=1, handler="cmd_image_inspect",
)
PRUNE = Command(
    "image prune", "[OPTIONS]", "Remove unused images",
    (
        Flag("all", "a", help="Remove all unused images, not just dangling ones"),
        Flag("filter", "", "list", "filter", 'Provide filter values (e.g. "until=<timestamp>")'),
        Flag("force", "f", help="Do not prompt for confirmation"),
    ),
    max_args=0, handler="cmd_prune",
)

_BY_NAME = {c.name: c for c in (IMAGES, IMPORT, LOAD, SAVE, HISTORY, TAG, RMI, INSPECT)}
_SUB = {
    "ls": IMAGES, "list": IMAGES, "import": IMPORT, "load": LOAD, "save": SAVE, "history": HISTORY,
    "tag": TAG, "rm": RMI, "remove": RMI, "inspect": IMAGE_INSPECT, "prune": PRUNE,
}

def dispatch(name: str, argv: list[str]) -> tuple[Command, Any]:
    if name == "image":
        from kran.cli.flags import group_dispatch

        return group_dispatch("image", "Manage images", _SUB, argv, globals())
    cmd = _BY_NAME[name]
    return cmd, globals()[cmd.handler]


# -- images ---------------------------------------------------------------------------------------


def _short_id(image_id: str, no_trunc: bool) -> str:
    return image_id if no_trunc else image_id.split(":", 1)[-1][:12]


def cmd_images(engine: Any, p: P) -> int:
    from kran.engine.images import list_images

    rows = list_images(engine, all=p.all, filters=p.filter, repository=p.args[0] if p.args else None)
    if p.quiet:
        seen = []
        for r in rows:
            s = _short_id(r.id, p.no_trunc)
            if s not in seen:
                seen.append(s)
        sys.stdout.write("".join(s + "\n" for s in seen))
        return 0
    from kran.cli.units import human_size, since

    now = time.time()
    if p.format is None or p.format == "table":
        head = ["REPOSITORY", "TAG"] + (["DIGEST"] if p.digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
        out = [head]
        for r in rows:
            line = [r.repository, r.tag] + ([r.digest] if p.digests else [])
            line += [_short_id(r.id, p.no_trunc), since(r.created, now) if r.created else "N/A", human_size(r.size)]
            out.append(line)
        from kran.cli.output import table

        sys.stdout.write(table(out))
        return 0
    from datetime import datetime

    from kran.cli.output import print_formatted

    ctx = [
        {
            "Containers": "N/A",
            "CreatedAt": datetime.fromtimestamp(r.created, tz=UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
            "CreatedSince": since(r.created, now) if r.created else "N/A",
            "Digest": r.digest,
            "ID": _short_id(r.id, p.no_trunc),
            "Repository": r.repository,
            "SharedSize": "N/A",
            "Size": human_size(r.size),
            "Tag": r.tag,
            "UniqueSize": "N/A",
            "VirtualSize": human_size(r.size),
        }
        for r in rows
    ]
    header = {"Containers": "CONTAINERS", "CreatedAt": "CREATED AT", "CreatedSince": "CREATED", "Digest": "DIGEST",
              "ID": "IMAGE ID", "Repository": "REPOSITORY", "SharedSize": "SHARED SIZE", "Size": "SIZE", "Tag": "TAG",
              "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE"}
    print_formatted(p.format, ctx, header)
    return 0


# -- import / load / save -------------------------------------------------------------------------


def cmd_import(engine: Any, p: P) -> int:
    from kran.engine.images import import_image

    src = p.args[0]
    repo = p.args[1] if len(p.args) > 1 else None
    if repo:
        from kran.errors import InvalidReference
        from kran.image.reference import parse_normalized

        try:
            parse_normalized(repo)
        except InvalidReference as e:
            raise InvalidReference(str(e)) from e
    if src == "-":
        f = sys.stdin.buffer
        close = False
    elif src.startswith(("http://", "https://")):
        import urllib.request

        f = urllib.request.urlopen(src)  # noqa: S310 - the user asked for this URL
        close = True
    else:
        try:
            f = open(src, "rb")  # noqa: SIM115
        except OSError as e:
            from kran.errors import InvalidArgument

            raise InvalidArgument(f"open {src}: {e.strerror.lower() if e.strerror else e}") from e
        close = True
    try:
        image_id = import_image(engine, f, source=src if src == "-" or "://" in src else src, repository=repo,
                                changes=p.change, message=p.message or "", platform=p.platform or "")
    finally:
        if close:
            f.close()
    print(image_id)
    return 0


def cmd_load(engine: Any, p: P) -> int:
    from kran.engine.images import load
    from kran.errors import InvalidArgument
    from kran.image.reference import parse_normalized

    if p.input:
        try:
            f = open(p.input, "rb")  # noqa: SIM115
        except OSError as e:
            raise InvalidArgument(f"open {p.input}: {(e.strerror or str(e)).lower()}") from e
    else:
        if sys.stdin is None or sys.stdin.isatty():
            raise InvalidArgument("requested load from stdin, but stdin is empty")
        f = sys.stdin.buffer
    try:
        loaded = load(engine, f)
    finally:
        if p.input:
            f.close()
    if not p.quiet:
        for item in loaded:
            for tag, prev in item.moved:
                print(f"The image {parse_normalized(tag).familiar()} already exists, renaming the old one with ID {prev} to empty string")
            if item.tags:
                for t in item.tags:
                    print(f"Loaded image: {parse_normalized(t).familiar()}")
            else:
                print(f"Loaded image ID: {item.image_id}")
    return 0


def cmd_save(engine: Any, p: P) -> int:
    from kran.engine.images import save
    from kran.errors import InvalidArgument

    if p.output:
        d = os.path.dirname(os.path.abspath(p.output))
        import tempfile

        try:
            fd, tmp = tempfile.mkstemp(prefix=".kran-save-", dir=d)
        except OSError as e:
            raise InvalidArgument(f"failed to save image: invalid output path: {e}") from e
        try:
            with os.fdopen(fd, "wb") as out:
                save(engine, p.args, out, since=p.since or "")
            os.chmod(tmp, 0o644)
            os.rename(tmp, p.output)
            tmp = ""
        finally:
            if tmp:
                os.unlink(tmp)
        return 0
    if sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    sys.stdout.flush()
    save(engine, p.args, sys.stdout.buffer, since=p.since or "")
    sys.stdout.buffer.flush()
    return 0


# -- history --------------------------------------------------------------------------------------


def _ellipsis(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def cmd_history(engine: Any, p: P) -> int:
    from kran.cli.units import human_size, since
    from kran.engine.images import history, rfc3339

    rows = history(engine, p.args[0])
    if p.quiet:
        sys.stdout.write("".join(_short_id(r.id, p.no_trunc) + "\n" for r in rows))
        return 0
    now = time.time()

    def created(r: Any) -> str:
        if not r.created:
            return "N/A"
        return since(r.created, now) if p.human else rfc3339(r.created)

    def ctx(r: Any) -> dict[str, Any]:
        by = r.created_by.replace("\t", " ")
        return {
            "Comment": r.comment,
            "CreatedAt": rfc3339(r.created) if r.created else "",
            "CreatedBy": by if p.no_trunc else _ellipsis(by, 45),
            "CreatedSince": created(r),
            "ID": r.id if r.id == "<missing>" else _short_id(r.id, p.no_trunc),
            "Size": human_size(r.size) if p.human else str(r.size),
        }

    items = [ctx(r) for r in rows]
    if p.format is None or p.format == "table":
        from kran.cli.output import table

        out = [["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]]
        out += [[c["ID"], c["CreatedSince"], c["CreatedBy"], c["Size"], c["Comment"]] for c in items]
        sys.stdout.write(table(out))
        return 0
    from kran.cli.output import print_formatted

    print_formatted(p.format, items, {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                                      "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"})
    return 0


# -- tag / rmi / prune ----------------------------------------------------------------------------


def cmd_tag(engine: Any, p: P) -> int:
    from kran.engine.images import tag
    from kran.errors import InvalidReference
    from kran.image.reference import parse_normalized

    try:
        parse_normalized(p.args[1])
    except InvalidReference as e:
        raise InvalidReference(f'Error parsing reference: "{p.args[1]}" is not a valid repository/tag: {e}') from e
    tag(engine, p.args[0], p.args[1])
    return 0


def cmd_rmi(engine: Any, p: P) -> int:
    from kran.engine.images import remove

    rep = remove(engine, p.args, force=p.force)
    sys.stdout.write("".join(line + "\n" for line in rep.lines))
    for e in rep.errors:
        sys.stderr.write(("Error response from daemon: " if e.from_daemon else "") + f"{e}\n")
    from kran.errors import NotFound

    # docker: with -f, a missing image is reported but is no failure
    failed = [e for e in rep.errors if not (p.force and isinstance(e, NotFound))]
    return 1 if failed else 0


def cmd_prune(engine: Any, p: P) -> int:
    from kran.cli.output import confirm
    from kran.cli.units import human_size
    from kran.engine.images import prune

    warning = (
        "WARNING! This will remove all images without at least one container associated to them."
        if p.all else "WARNING! This will remove all dangling images."
    )
    if not p.force:
        print(warning)
        if not confirm("Are you sure you want to continue?"):
            return 0
    rep = prune(engine, all=p.all, filters=p.filter)
    if rep.lines:
        print("Deleted Images:")
        sys.stdout.write("".join(line + "\n" for line in rep.lines))
        print()
    print(f"Total reclaimed space: {human_size(rep.reclaimed)}")
    return 0


# -- inspect --------------------------------------------------------------------------------------


def inspect_objects(engine: Any, names: list[str], fmt: str | None, kind: str, size: bool = False) -> int:
    """docker inspect: images and/or containers by name; JSON array or a template per object."""
    from kran.errors import KranError, NotFound

    found: list[Any] = []
    errors: list[str] = []
    for name in names:
        obj = None
        try:
            if kind in ("container", "object"):
                from kran.engine import containers

                try:
                    obj = containers.inspect(engine, name, size=size)
                except NotFound:
                    if kind == "container":
                        raise
            if obj is None and kind in ("image", "object"):
                from kran.engine.images import inspect

                try:
                    obj = inspect(engine, name)
                except NotFound:
                    if kind == "image":
                        raise
            if obj is None and kind in ("volume", "object"):
                from kran.engine import volumes

                try:
                    obj = volumes.get(engine, name).to_json()
                except NotFound:
                    if kind == "volume":
                        raise
            if obj is None:  # docker looks for a network last
                from kran.engine import networks

                obj = networks.inspect(engine, name)
            found.append(obj)
        except NotFound:
            errors.append(f"Error: No such {kind}: {name}")
        except KranError as e:
            errors.append(f"Error: {e}")
    from kran.cli.output import print_inspect

    return print_inspect(found, errors, fmt)


def cmd_inspect(engine: Any, p: P) -> int:
    kind = {None: "object", "": "object", "image": "image", "container": "container", "volume": "volume",
            "network": "network"}.get(p.type)
    if kind is None:
        from kran.errors import InvalidArgument

        raise InvalidArgument(f'"{p.type}" is not a valid value for --type')
    return inspect_objects(engine, p.args, p.format, kind, size=bool(p.size))


def cmd_image_inspect(engine: Any, p: P) -> int:
    return inspect_objects(engine, p.args, p.format, "image")
