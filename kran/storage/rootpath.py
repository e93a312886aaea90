"""Paths inside a container's root, resolved as the container would see them (chroot semantics).

Symlinks are followed *inside* the root: an absolute target restarts at the root, ``..`` stops at
the root.  Every component is opened with O_NOFOLLOW relative to its parent's fd, so a symlink can
never lead to the host's files.
"""

from __future__ import annotations

import errno
import os
import stat

MAX_LINKS = 40


def open_in_root(root: str, rel: str, flags: int = os.O_RDONLY) -> int:
    """An fd for ``rel`` (as the container sees it) under ``root``; the final component may not be a symlink
    to outside, and is followed inside the root like the others."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stack: list[int] = [root_fd]
    todo = [p for p in rel.split("/") if p not in ("", ".")]
    links = 0
    try:
        while todo:
            comp = todo.pop(0)
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            last = not todo
            try:
                st = os.stat(comp, dir_fd=stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                if last and flags & os.O_CREAT:
                    return os.open(comp, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=stack[-1])
                raise
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", rel)
                target = os.readlink(comp, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo = [p for p in target.split("/") if p not in ("", ".")] + todo
                continue
            if last:
                return os.open(comp, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            stack.append(os.open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1]))
        return os.dup(stack[-1])
    finally:
        for fd in stack:
            os.close(fd)


def read_in_root(root: str, rel: str, limit: int = 1 << 20) -> bytes:
    fd = open_in_root(root, rel)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def open_parent_in_root(root: str, rel: str) -> tuple[int, str]:
    """(fd of the directory that holds ``rel``'s last component, that component), resolved inside
    ``root`` like open_in_root; the component itself is not followed (``""`` for the root)."""
    import posixpath

    norm = posixpath.normpath("/" + rel.lstrip("/"))
    parent, leaf = posixpath.split(norm)
    fd = open_in_root(root, parent, os.O_RDONLY | os.O_DIRECTORY)
    return fd, leaf
