"""The ``local`` volume driver: one directory per volume, ``<root>/volumes/<name>/_data``.

Driver options (``volume create -o``) follow docker's local driver: ``type`` and ``device`` and
``o`` are what mount(8) would get; ``type=tmpfs,device=tmpfs,o=size=64m`` or
``type=none,o=bind,device=/srv/data``.  A volume with options is mounted on its ``_data`` the
first time a container uses it and unmounted when the volume is removed.
"""

from __future__ import annotations

import os
import re
import shutil

from kran.errors import InvalidArgument

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_OPTS = ("type", "device", "o", "size")


def validate_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'
        )


def validate_options(opts: dict[str, str]) -> None:
    for k in opts:
        if k not in _OPTS:
            raise InvalidArgument(f"create: invalid option key: {k!r}")
    if opts.get("type") and not opts.get("device") and opts.get("type") != "tmpfs":
        raise InvalidArgument("create: missing required option: \"device\"")
    if opts.get("device") and not opts.get("type"):
        raise InvalidArgument("create: missing required option: \"type\"")


class LocalVolumes:
    """Directories of the local driver under ``<root>/volumes``; knows nothing of containers."""

    def __init__(self, root: str) -> None:
        self.base = os.path.join(root, "volumes")

    def path(self, name: str) -> str:
        return os.path.join(self.base, name)

    def data(self, name: str) -> str:
        return os.path.join(self.base, name, "_data")

    def create(self, name: str) -> bool:
        """Make the volume's directories; False when they were there already."""
        os.makedirs(self.base, 0o701, exist_ok=True)
        try:
            os.mkdir(self.path(name), 0o701)
        except FileExistsError:
            os.makedirs(self.data(name), 0o755, exist_ok=True)
            return False
        os.mkdir(self.data(name), 0o755)
        return True

    def mount(self, name: str, opts: dict[str, str]) -> None:
        """Mount what the options ask for on ``_data`` (once); nothing for a plain volume."""
        from kran.sys import fsutil

        typ = opts.get("type") or ""
        if not typ:
            return
        data = self.data(name)
        if fsutil.is_mountpoint(data):
            return
        flags = 0
        rest = []
        for o in (opts.get("o") or "").split(","):
            if o == "bind":
                flags |= 0x1000  # MS_BIND
            elif o == "ro":
                flags |= 0x1  # MS_RDONLY
            elif o:
                rest.append(o)
        if opts.get("size"):
            rest.append(f"size={opts['size']}")
        device = opts.get("device") or typ
        if flags & 0x1000 and not os.path.isdir(device):
            raise InvalidArgument(f"error while mounting volume '{data}': failed to mount local volume: "
                                  f"mount {device}:{data}, flags: 0x1000: no such file or directory")
        try:
            fsutil.mount(device, data, "" if flags & 0x1000 else typ, flags, ",".join(rest))
        except OSError as e:
            raise InvalidArgument(f"error while mounting volume '{data}': failed to mount local volume: {e}") from e

    def unmount(self, name: str) -> None:
        from kran.sys import fsutil

        fsutil.unmount_under(self.data(name))

    def remove(self, name: str, trash: str) -> None:
        """Unmount and delete the volume's directory (moved into ``trash`` first, then deleted)."""
        from kran.sys import fsutil

        self.unmount(name)
        try:
            os.rename(self.path(name), os.path.join(trash, name))
        except FileNotFoundError:
            return
        fsutil.unmount_under(trash)  # never delete through a mount that is still there
        shutil.rmtree(os.path.join(trash, name), ignore_errors=True)

    def is_empty(self, name: str) -> bool:
        try:
            return not os.listdir(self.data(name))
        except FileNotFoundError:
            return True

    def size(self, name: str) -> int:
        from kran.sys.fsutil import tree_size

        return tree_size(self.data(name))
