"""``--restart-fresh`` (HostConfig.KranRestartFresh): every restart begins with an empty read-write
layer -- the image as it is, volumes and binds kept, the init files (hosts, resolv.conf, hostname)
as the last engine start wrote them.

Two restart paths, one function, :func:`reset_rw_layer`:

- the engine's (``kran restart``, ``kran stop`` + ``start``): :func:`before_start` empties the layer
  of a container that has run before, with its overlay unmounted, before the start mounts it again;
- the monitor's (the restart policy): the monitor stays stdlib-only and runs
  ``python -m kran.engine.fresh CONTAINER_DIR`` (``monitor.json``'s ``"fresh"`` argv, written by
  :func:`monitor_argv`) between the exit and the next create; the helper unmounts the overlay,
  empties the layer, puts the init files back and mounts it again with the options recorded in
  ``fresh/overlay``.  It runs in the monitor's namespaces, so rootless (the user's namespace, the
  kernel's overlayfs or fuse-overlayfs) works as rootful does.

Why unmounted: overlayfs' documentation calls changes to the upper dir under a live mount
undefined; a fresh pair of upper/work dirs under a fresh mount is not.  The old dirs are renamed
into ``fresh/trash`` first and deleted last, so a reset killed halfway leaves garbage that the next
reset removes, never a half-emptied layer under a mount.

``fresh/`` also holds the init files' pristine copies (:func:`save_init_files`, taken at every engine
start after the network has written them, before the container runs).
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kran.engine import Engine
    from kran.engine.record import Container

INIT_FILES = ("hosts", "resolv.conf", "hostname")
FRESH_DIR = "fresh"


def overlay_opts(engine: Engine, c: Container) -> str:
    """The overlayfs options of a container's root: image layers (lower) + its own upper dir."""
    layers = [engine.store.layers.path(ch) for ch, *_ in engine.images.layers(c.image_id)]
    if not layers:
        empty = os.path.join(c.dir, "empty")
        os.makedirs(empty, exist_ok=True)
        layers = [empty]
    lower = ":".join(reversed(layers))
    return f"lowerdir={lower},upperdir={c.dir}/upper,workdir={c.dir}/work"


def reset_rw_layer(cdir: str, remount_opts: str | None = None) -> None:
    """Empty container dir ``cdir``'s read-write layer (``upper/``, ``work/``) and put back the init
    files saved by :func:`save_init_files`.  A mounted ``merged/`` is unmounted first; it is mounted
    again with ``remount_opts`` (overlayfs options) when given, else left for the caller to mount.

    Raises OSError (the caller words it)."""
    from kran.sys.fsutil import MNT_DETACH, is_mountpoint, umount

    merged = os.path.join(cdir, "merged")
    if is_mountpoint(merged):
        try:
            umount(merged)
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            umount(merged, MNT_DETACH)  # a straggler holds it: it keeps the old tree, nobody else does
    state = os.path.join(cdir, FRESH_DIR)
    os.makedirs(state, 0o700, exist_ok=True)
    trash = os.path.join(state, "trash")
    shutil.rmtree(trash, ignore_errors=True)  # a reset killed halfway
    os.mkdir(trash, 0o700)
    for sub in ("upper", "work"):
        path = os.path.join(cdir, sub)
        try:
            st = os.stat(path)
            os.rename(path, os.path.join(trash, sub))
        except FileNotFoundError:
            st = None
        os.mkdir(path, 0o755)
        if st is not None:  # the upper dir's owner and mode are the container root's
            os.chown(path, st.st_uid, st.st_gid)
            os.chmod(path, st.st_mode & 0o7777)
    restore_init_files(cdir)
    if remount_opts:
        from kran.rootless.overlay import mount_overlay

        mount_overlay(merged, remount_opts)
    shutil.rmtree(trash, ignore_errors=True)


def save_init_files(cdir: str) -> None:
    """Keep the init files as the engine wrote them for this start: what each fresh restart gets."""
    state = os.path.join(cdir, FRESH_DIR)
    os.makedirs(state, 0o700, exist_ok=True)
    for name in INIT_FILES:
        src = os.path.join(cdir, name)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(state, name + ".tmp"))
            os.rename(os.path.join(state, name + ".tmp"), os.path.join(state, name))


def restore_init_files(cdir: str) -> None:
    for name in INIT_FILES:
        src = os.path.join(cdir, FRESH_DIR, name)
        if not os.path.exists(src):
            continue
        # in place: the runtime binds the file by path at the next create, but a container that
        # shares this one's network (--network container:) may hold it bound right now
        with open(src, "rb") as f, open(os.path.join(cdir, name), "wb") as out:
            out.write(f.read())


def has_run(started_at: str) -> bool:
    """A container that has started before (its record's StartedAt): its next start is a restart."""
    return bool(started_at) and not started_at.startswith("0001-")


def before_start(cdir: str, host_config: dict[str, object], started_at: str) -> None:
    """The engine's start of a fresh-restarting container that has run before: empty its layer
    (the start mounts the overlay right after)."""
    if host_config.get("KranRestartFresh") and has_run(started_at):
        from kran.errors import KranError

        try:
            reset_rw_layer(cdir)
        except OSError as e:
            raise KranError(f"cannot restart fresh: emptying the read-write layer: {e.strerror or e}") from e


def monitor_argv(cdir: str, overlay_opts: str) -> list[str]:
    """What the monitor runs before each restart by policy; records the overlay's options for it."""
    state = os.path.join(cdir, FRESH_DIR)
    os.makedirs(state, 0o700, exist_ok=True)
    with open(os.path.join(state, "overlay.tmp"), "w") as f:
        f.write(overlay_opts)
    os.rename(os.path.join(state, "overlay.tmp"), os.path.join(state, "overlay"))
    return [sys.executable, "-m", "kran.engine.fresh", cdir]


def check_update(c: Container, h: dict[str, object], changes: dict[str, object]) -> None:
    """``kran update --restart-fresh[=false]``: recorded in ``h``; a running container's monitor
    gets (or loses) its helper in monitor.json, read again at the container's next exit."""
    want = changes.get("KranRestartFresh")
    if want is None:
        return
    if not isinstance(want, bool):
        from kran.errors import InvalidArgument

        raise InvalidArgument(f"invalid KranRestartFresh: want a boolean, got {want!r}")
    h["KranRestartFresh"] = want
    if not c.running:
        return
    import json

    path = os.path.join(c.dir, "monitor.json")
    try:
        with open(path) as f:
            mon = json.load(f)
    except (OSError, ValueError):
        return
    if want:
        save_init_files(c.dir)
        overlay = os.path.join(c.dir, FRESH_DIR, "overlay")
        if not os.path.exists(overlay):  # started without it: the options of the live mount
            opts = _mounted_overlay_opts(os.path.join(c.dir, "merged"))
            if not opts:
                return
            mon["fresh"] = monitor_argv(c.dir, opts)
        else:
            mon["fresh"] = [sys.executable, "-m", "kran.engine.fresh", c.dir]
    else:
        mon.pop("fresh", None)
    with open(path + ".tmp", "w") as f:
        json.dump(mon, f)
    os.rename(path + ".tmp", path)


def _mounted_overlay_opts(merged: str) -> str:
    """lowerdir/upperdir/workdir of the overlay mounted at ``merged`` (/proc/self/mountinfo)."""
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    for line in lines:
        pre, _, post = line.partition(" - ")
        if pre.split()[4:5] == [merged]:
            keep = [o for o in post.split()[2].split(",") if o.split("=", 1)[0] in ("lowerdir", "upperdir", "workdir")]
            return ",".join(keep) if len(keep) == 3 else ""
    return ""


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m kran.engine.fresh CONTAINER_DIR\n")
        return 2
    cdir = argv[0]
    try:
        with open(os.path.join(cdir, FRESH_DIR, "overlay")) as f:
            opts = f.read()
        reset_rw_layer(cdir, opts)
    except OSError as e:
        sys.stderr.write(f"cannot restart fresh: {e.strerror or e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
