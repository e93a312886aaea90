"""The build context: a directory (``.dockerignore`` applied), source resolution and COPY/ADD planning.

Everything here reads the context or a stage's root filesystem and writes into a fresh directory
laid out like an overlay upper dir (no whiteouts: COPY/ADD only add or replace).  Paths from the
Dockerfile are resolved inside their root; nothing is written outside the layer directory.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

from kran.build.dockerignore import Matcher
from kran.errors import InvalidArgument, NotFound, UnsafePath


class Context:
    """A context directory seen through its ``.dockerignore``."""

    def __init__(self, root: str, matcher: Matcher | None = None) -> None:
        self.root = os.path.abspath(root)
        if matcher is None:
            try:
                with open(os.path.join(self.root, ".dockerignore")) as f:
                    matcher = Matcher.from_text(f.read())
            except FileNotFoundError:
                matcher = Matcher([])
        self.matcher = matcher

    def excluded(self, rel: str) -> bool:
        return bool(rel) and rel != "." and self.matcher.excluded(rel)


def drop_control_files(root: str, dockerfile: str) -> None:
    """A context a client already filtered (the API): like dockerd, apply its ``.dockerignore``
    only to the ``.dockerignore`` file itself and the Dockerfile -- re-applying it to the rest
    would lose what the client's ``!`` exceptions kept."""
    try:
        with open(os.path.join(root, ".dockerignore")) as f:
            m = Matcher.from_text(f.read())
    except (FileNotFoundError, IsADirectoryError):
        return
    for rel in (".dockerignore", dockerfile.lstrip("/")):
        path = os.path.normpath(os.path.join(root, rel))
        if path.startswith(root.rstrip(os.sep) + os.sep) and m.excluded(os.path.relpath(path, root)):
            try:
                os.unlink(path)
            except (FileNotFoundError, IsADirectoryError):
                pass


def _inside(root: str, rel: str) -> str:
    """``rel`` (from a Dockerfile) under ``root``, symlinks in its parents resolved within root."""
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    cur = root
    depth: list[str] = []
    for i, p in enumerate(parts):
        if p == "..":
            if depth:
                depth.pop()
            cur = os.path.join(root, *depth)
            continue
        nxt = os.path.join(cur, p)
        if i < len(parts) - 1 and os.path.islink(nxt):
            target = os.readlink(nxt)
            base = "" if target.startswith("/") else "/".join(depth)
            resolved = _inside(root, base + "/" + target)
            depth = os.path.relpath(resolved, root).split("/") if resolved != root else []
            cur = resolved
            continue
        depth.append(p)
        cur = nxt
    real = os.path.realpath(os.path.dirname(cur)) if parts else root
    if real != root and not real.startswith(root.rstrip("/") + "/"):
        raise UnsafePath(f"path {rel!r} leads outside of its root")
    return cur


def _has_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def expand_sources(root: str, pattern: str, excluded: Callable[[str], bool]) -> list[str]:
    """Context-relative paths matching ``pattern`` (Go's filepath.Match per element, dot files too)."""
    parts = [p for p in pattern.replace("\\", "/").split("/") if p not in ("", ".")]
    if not _has_glob(pattern):
        rel = os.path.normpath("/".join(parts)) if parts else "."
        if rel.startswith(".."):
            raise UnsafePath(f"forbidden path outside the build context: {pattern}")
        full = _inside(root, rel)
        if not os.path.lexists(full) or excluded(rel):
            raise NotFound(f'COPY failed: file not found in build context or excluded by .dockerignore: stat {rel}: file does not exist')
        return [rel]
    found = [""]
    for p in parts:
        nxt = []
        for base in found:
            d = os.path.join(root, base)
            if not _has_glob(p):
                if os.path.lexists(os.path.join(d, p)):
                    nxt.append(os.path.join(base, p))
                continue
            try:
                names = sorted(os.listdir(d))
            except (NotADirectoryError, FileNotFoundError):
                continue
            nxt.extend(os.path.join(base, n) for n in names if fnmatch.fnmatchcase(n, p))
        found = nxt
    found = [f for f in found if not excluded(f)]
    if not found:
        raise NotFound(f"COPY failed: no source files were specified (pattern {pattern!r} matched nothing)")
    return found


@dataclass(frozen=True, slots=True)
class Owner:
    uid: int
    gid: int


def resolve_chown(spec: str, rootfs: str | None) -> Owner:
    """``--chown=user[:group]``: numbers, or names from the stage's /etc/passwd and /etc/group."""
    user, _, group = spec.partition(":")

    def lookup(name: str, path: str, what: str) -> tuple[int, int]:
        if name.isdigit():
            return int(name), -1
        if rootfs:
            try:
                with open(_inside(rootfs, path), errors="replace") as f:
                    for line in f:
                        fields = line.rstrip("\n").split(":")
                        if len(fields) >= 4 and fields[0] == name:
                            return int(fields[2]), int(fields[3]) if what == "user" else -1
            except (OSError, ValueError):
                pass
        raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: can't find uid for user {name}: no such user: {name}"
                              if what == "user" else
                              f"unable to convert uid/gid chown string to host mapping: can't find gid for group {name}: no such group: {name}")

    uid, primary = lookup(user, "/etc/passwd", "user")
    if group:
        gid = lookup(group, "/etc/group", "group")[0]
    else:
        gid = primary if primary >= 0 else uid
    return Owner(uid, gid)


class Checksum:
    """A content checksum of copied files: names, types, modes, contents, link targets; no mtimes."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def add(self, rel: str, path: str) -> None:
        st = os.lstat(path)
        self.h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    self.h.update(chunk)
        elif stat.S_ISLNK(st.st_mode):
            self.h.update(os.readlink(path).encode())
        self.h.update(b"\1")

    def add_bytes(self, rel: str, data: bytes) -> None:
        self.h.update(rel.encode() + b"\0" + data + b"\1")

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def checksum_sources(root: str, rels: list[str], excluded: Callable[[str], bool]) -> str:
    """The checksum of everything ``rels`` would copy from ``root``."""
    ck = Checksum()
    for rel in rels:
        full = _inside(root, rel)
        if os.path.isdir(full) and not os.path.islink(full):
            for dirpath, dirs, files in os.walk(full):
                dirs.sort()
                for n in sorted(dirs) + sorted(files):
                    p = os.path.join(dirpath, n)
                    r = os.path.relpath(p, root)
                    if excluded(r):
                        continue
                    ck.add(os.path.relpath(p, full), p)
        else:
            ck.add(os.path.basename(rel), full)
    return ck.hexdigest()


def mkdirs(layer: str, rel_dir: str, owner: Owner | None) -> str:
    """Create ``rel_dir`` (absolute in the image) in the layer dir, parents 0755."""
    cur = layer
    for p in [x for x in rel_dir.split("/") if x]:
        cur = os.path.join(cur, p)
        if os.path.islink(cur):
            raise UnsafePath(f"refusing to write through a symlink: {cur}")
        if not os.path.isdir(cur):
            os.mkdir(cur, 0o755)
            os.chmod(cur, 0o755)
            if owner:
                os.lchown(cur, owner.uid, owner.gid)
    return cur


def _apply(path: str, owner: Owner | None, chmod: int | None) -> None:
    if owner is not None:
        os.lchown(path, owner.uid, owner.gid)
    if chmod is not None and not os.path.islink(path):
        os.chmod(path, chmod)


def copy_into_layer(src_root: str, rels: list[str], dest: str, layer: str, *, dest_is_dir: bool,
                    owner: Owner | None, chmod: int | None, excluded: Callable[[str], bool],
                    keep_owner: bool = False) -> None:
    """COPY: each source (a directory's *contents*, or a file) to ``dest`` (absolute) in ``layer``.

    Files from the context become root's (or ``owner``'s); from another stage (``keep_owner``)
    they keep their owners.
    """
    for rel in rels:
        full = _inside(src_root, rel)
        if os.path.isdir(full) and not os.path.islink(full):
            target = mkdirs(layer, dest, owner)
            _apply(target, owner, chmod)
            for dirpath, dirs, files in os.walk(full):
                dirs.sort()
                reldir = os.path.relpath(dirpath, full)
                outdir = target if reldir == "." else os.path.join(target, reldir)
                for n in list(dirs):
                    p = os.path.join(dirpath, n)
                    if excluded(os.path.relpath(p, src_root)):  # (a "!" re-include below it is not honoured)
                        dirs.remove(n)
                        continue
                    if os.path.islink(p):
                        dirs.remove(n)
                        _copy_entry(p, os.path.join(outdir, n), owner, chmod)
                        continue
                    o = os.path.join(outdir, n)
                    if not os.path.isdir(o):
                        os.mkdir(o)
                    shutil.copystat(p, o)
                    if owner is None:
                        st = os.lstat(p)
                        os.lchown(o, *((st.st_uid, st.st_gid) if keep_owner else (0, 0)))
                    _apply(o, owner, chmod)
                for n in files:
                    p = os.path.join(dirpath, n)
                    if excluded(os.path.relpath(p, src_root)):
                        continue
                    _copy_entry(p, os.path.join(outdir, n), owner, chmod, keep_owner=keep_owner)
        else:
            if dest_is_dir:
                d = mkdirs(layer, dest, owner)
                out = os.path.join(d, os.path.basename(full))
            else:
                d = mkdirs(layer, os.path.dirname(dest.rstrip("/")) or "/", owner)
                out = os.path.join(d, os.path.basename(dest.rstrip("/")))
            _copy_entry(full, out, owner, chmod, keep_owner=keep_owner)


def _copy_entry(src: str, dst: str, owner: Owner | None, chmod: int | None, keep_owner: bool = False) -> None:
    st = os.lstat(src)
    if os.path.lexists(dst) and not os.path.isdir(dst):
        os.unlink(dst)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
        shutil.copystat(src, dst, follow_symlinks=False)
    elif stat.S_ISDIR(st.st_mode):
        os.makedirs(dst, exist_ok=True)
        shutil.copystat(src, dst)
    else:
        os.mknod(dst, st.st_mode, st.st_rdev)
    if owner is None:
        os.lchown(dst, *(st.st_uid, st.st_gid) if keep_owner else (0, 0))
    _apply(dst, owner, chmod)


def is_archive(path: str) -> bool:
    if not os.path.isfile(path):
        return False
    try:
        with tarfile.open(path, "r:*") as t:
            return t.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False


def extract_archive(path: str, dest: str, layer: str, owner: Owner | None) -> None:
    """ADD's local-tar extraction into ``dest`` (absolute), refusing members that would escape."""
    target = mkdirs(layer, dest, None)
    real_target = os.path.realpath(target)
    with tarfile.open(path, "r:*") as t:
        for m in t:
            name = os.path.normpath(m.name.lstrip("/"))
            if name in (".", "") or name.startswith(".."):
                continue
            out = os.path.join(target, name)
            parent = os.path.realpath(os.path.dirname(out))
            if parent != real_target and not parent.startswith(real_target + "/"):
                raise UnsafePath(f"archive member {m.name!r} leads outside of {dest}")
            if m.isdir():
                os.makedirs(out, exist_ok=True)
                os.chmod(out, m.mode & 0o7777)
            elif m.isreg():
                os.makedirs(os.path.dirname(out), exist_ok=True)
                if os.path.lexists(out):
                    os.unlink(out)
                src = t.extractfile(m)
                assert src is not None
                with open(out, "wb") as f:
                    shutil.copyfileobj(src, f)
                os.chmod(out, m.mode & 0o7777)
            elif m.issym():
                os.makedirs(os.path.dirname(out), exist_ok=True)
                if os.path.lexists(out):
                    os.unlink(out)
                os.symlink(m.linkname, out)
            elif m.islnk():
                src_path = os.path.join(target, os.path.normpath(m.linkname.lstrip("/")))
                if os.path.realpath(src_path).startswith(real_target + "/") and os.path.exists(src_path):
                    if os.path.lexists(out):
                        os.unlink(out)
                    os.link(src_path, out)
                continue
            else:
                continue
            uid, gid = (owner.uid, owner.gid) if owner else (m.uid, m.gid)
            os.lchown(out, uid, gid)
            if not m.issym():
                os.utime(out, (m.mtime, m.mtime))
