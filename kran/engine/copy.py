"""``cp`` and the container archive (docker cp, the API's get/put/HEAD archive): files in and out of a
container's root filesystem and the volumes mounted in it, through the one path-safety helper.

A verb above containers and volumes: it mounts a stopped container's rootfs for the time of the copy
(``containers._mount_rootfs``) and releases it through the container's one cleanup path.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO

from kran.engine import volumes
from kran.errors import InvalidArgument, KranError, NotFound
from kran.volume.local import LocalVolumes

if TYPE_CHECKING:
    from kran.engine import Engine
    from kran.engine.record import Container

class CopyNotFound(NotFound):
    pass


@contextmanager
def _container_fs(engine: Engine, ref: str) -> Iterator[tuple[Container, str]]:
    """The container and its root filesystem on the host, mounted for the time of a copy when it
    is not running (the overlay of image layers + its upper dir, read-write)."""
    from kran.engine import containers
    from kran.sys.fsutil import is_mountpoint

    c = containers.get(engine, ref)
    merged = os.path.join(c.dir, "merged")
    with engine.store.writing():
        mounted = False
        if not is_mountpoint(merged):
            containers._mount_rootfs(engine, c)
            mounted = True
        try:
            lv = LocalVolumes(engine.root)
            for mp in c.host_config.get("_MountPoints") or []:
                if mp["Type"] == "volume":
                    v = volumes.get(engine, mp["Name"])
                    lv.mount(v.name, v.options)
            yield c, merged
        finally:
            if mounted and not containers.get(engine, c.id).running:
                containers._cleanup_after_exit(engine, c)


def _locate(engine: Engine, c: Container, rootfs: str, path: str) -> tuple[str, str]:
    """(host directory to resolve in, path relative to it) for a container path: the deepest mount
    whose destination contains it, else the root filesystem.  Lexical, like docker's mount lookup."""
    p = posixpath.normpath("/" + path.lstrip("/"))
    lv = LocalVolumes(engine.root)
    table: list[tuple[str, str]] = [
        ("/etc/resolv.conf", os.path.join(c.dir, "resolv.conf")),
        ("/etc/hostname", os.path.join(c.dir, "hostname")),
        ("/etc/hosts", os.path.join(c.dir, "hosts")),
    ]
    for mp in c.host_config.get("_MountPoints") or []:
        if mp["Type"] == "volume":
            table.append((mp["Destination"], lv.data(mp["Name"])))
        elif mp["Type"] == "bind":
            table.append((mp["Destination"], mp["Source"]))
        else:
            table.append((mp["Destination"], ""))
    best: tuple[str, str] | None = None
    for dest, src in table:
        if (p == dest or p.startswith(dest.rstrip("/") + "/")) and (best is None or len(dest) > len(best[0])):
            best = (dest, src)
    if best is None:
        return rootfs, p.lstrip("/")
    dest, src = best
    if not src:
        raise KranError(f"copying to or from the tmpfs mount at {dest} is not supported")
    rel = p[len(dest):].lstrip("/")
    if not os.path.isdir(src):  # a bind-mounted file
        if rel:
            raise CopyNotFound(f"Could not find the file {path} in container {c.name}")
        return os.path.dirname(src), os.path.basename(src)
    return src, rel


def _check_writable(c: Container, path: str) -> None:
    """docker refuses to copy into a read-only volume or bind, or a read-only root filesystem."""
    p = posixpath.normpath("/" + path.lstrip("/"))
    best: dict[str, Any] | None = None
    for mp in c.host_config.get("_MountPoints") or []:
        d = mp["Destination"]
        if (p == d or p.startswith(d.rstrip("/") + "/")) and (best is None or len(d) > len(best["Destination"])):
            best = mp
    if best is not None:
        if not best.get("RW", True):
            raise InvalidArgument("mounted volume is marked read-only")
    elif c.host_config.get("ReadonlyRootfs"):
        raise InvalidArgument("container rootfs is marked read-only")


def _kind(st: os.stat_result | None) -> str:
    if st is None:
        return ""
    return "dir" if stat.S_ISDIR(st.st_mode) else "file"


def _stat_in(root: str, rel: str, follow: bool) -> os.stat_result | None:
    from kran.storage.rootpath import open_in_root, open_parent_in_root

    try:
        if follow:
            fd = open_in_root(root, rel, os.O_PATH)
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)
        pfd, leaf = open_parent_in_root(root, rel)
        try:
            return os.fstat(pfd) if not leaf else os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _split_src(path: str) -> tuple[str, bool]:
    """(path, contents_only): ``dir/.`` copies the directory's contents."""
    contents = path.endswith("/.") or path == "."
    return (path[:-2] or "/") if path.endswith("/.") else path, contents


def plan_dest(src_kind: str, src_base: str, contents: bool, dest: str, dest_kind: str,
              dest_parent_is_dir: bool) -> tuple[str, str, bool]:
    """Docker's ``cp`` rules (``docker cp --help``) -> (directory to unpack in, top name, contents only)."""
    if src_kind == "dir":
        if dest_kind == "file":
            raise InvalidArgument("cannot copy a directory to a file")
        if dest_kind == "dir":
            return (dest, "", True) if contents else (dest, src_base, False)
        if not dest_parent_is_dir:
            raise NotFound("no such directory")
        return posixpath.dirname(dest.rstrip("/")) or "/", posixpath.basename(dest.rstrip("/")), False
    if dest_kind == "dir":
        return dest, src_base, False
    if dest.endswith("/"):
        raise NotFound("no such directory")
    if not dest_kind and not dest_parent_is_dir:
        raise NotFound("no such directory")
    return posixpath.dirname(dest) or "/", posixpath.basename(dest), False


def _tar_from(root: str, rel: str, follow: bool, arcname: str, out: BinaryIO, keep_ids: bool, contents: bool) -> None:
    from kran.storage.rootpath import open_in_root, open_parent_in_root
    from kran.volume.copy import write_tar

    if follow:
        fd, leaf = open_in_root(root, rel), ""
    else:
        fd, leaf = open_parent_in_root(root, rel)
    try:
        write_tar(fd, leaf, arcname, out, keep_ids=keep_ids, contents_only=contents)
    finally:
        os.close(fd)


def copy_from_container(engine: Engine, ref: str, src: str, dest: str, *, follow: bool = False,
                        archive: bool = False, out: BinaryIO | None = None) -> None:
    """``cp CONTAINER:SRC DEST`` (``out``: write the tar there instead, for ``DEST`` = ``-``)."""
    from kran.volume.copy import apply_tar, spool

    src_path, contents = _split_src(src)
    from kran.engine import containers
    from kran.engine.lockdown import refuse_files_out

    refuse_files_out(containers.get(engine, ref))  # --lockdown: nothing leaves it
    with _container_fs(engine, ref) as (c, rootfs):
        root, rel = _locate(engine, c, rootfs, src_path)
        st = _stat_in(root, rel, follow)
        if st is None:
            raise CopyNotFound(f"Could not find the file {src} in container {ref}")
        if src_path.endswith("/") and _kind(st) != "dir" and not (follow or stat.S_ISLNK(st.st_mode)):
            raise InvalidArgument(f"{src_path}: not a directory")
        base = posixpath.basename(posixpath.normpath("/" + src_path.lstrip("/"))) or "/"
        if out is not None:
            _tar_from(root, rel, follow, base if base != "/" else ".", out, True, False)
            return
        dkind = _kind(_host_stat(dest))
        parent = os.path.dirname(os.path.abspath(dest.rstrip("/"))) or "/"
        ddir, name, only = plan_dest(_kind(st), base if base != "/" else "", contents, dest, dkind, os.path.isdir(parent))
        if name and dkind == "dir" and _kind(_host_stat(os.path.join(ddir, name))) == "dir" and _kind(st) != "dir":
            raise InvalidArgument(f"cannot overwrite directory {os.path.join(ddir, name)!r} with non-directory")
        if not name and not only:
            only = True
        with spool() as tmp:
            _tar_from(root, rel, follow, name, tmp, archive, only)
            tmp.seek(0)
            apply_tar(tmp, ddir)


def stat_path(engine: Engine, ref: str, path: str, *, follow: bool = False) -> dict[str, Any]:
    """docker's ``PathStat`` of a path inside a container (``HEAD /containers/{id}/archive``):
    name, size, Go's FileMode bits, mtime, and the link target."""
    from kran.engine.timefmt import rfc3339

    with _container_fs(engine, ref) as (c, rootfs):
        p = posixpath.normpath("/" + path.lstrip("/"))
        root, rel = _locate(engine, c, rootfs, p)
        st = _stat_in(root, rel, follow)
        if st is None:
            raise CopyNotFound(f"Could not find the file {path} in container {ref}")
        link = ""
        if stat.S_ISLNK(st.st_mode):
            from kran.storage.rootpath import open_parent_in_root

            pfd, leaf = open_parent_in_root(root, rel)
            try:
                link = os.readlink(leaf, dir_fd=pfd)
            finally:
                os.close(pfd)
    m = st.st_mode
    mode = stat.S_IMODE(m) & 0o777
    for flag, bit in ((stat.S_ISUID, 1 << 23), (stat.S_ISGID, 1 << 22), (stat.S_ISVTX, 1 << 20)):
        if m & flag:
            mode |= bit
    for test, bit in ((stat.S_ISDIR, 1 << 31), (stat.S_ISLNK, 1 << 27), (stat.S_ISFIFO, 1 << 25),
                      (stat.S_ISSOCK, 1 << 24), (stat.S_ISCHR, (1 << 26) | (1 << 21)), (stat.S_ISBLK, 1 << 26)):
        if test(m):
            mode |= bit
    return {"name": posixpath.basename(p) or "/", "size": st.st_size, "mode": mode,
            "mtime": rfc3339(st.st_mtime), "linkTarget": link}


def _host_stat(p: str) -> os.stat_result | None:
    try:
        return os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        return None


def copy_to_container(engine: Engine, ref: str, src: str | None, dest: str, *, follow: bool = False,
                      archive: bool = False, stream: BinaryIO | None = None) -> None:
    """``cp SRC CONTAINER:DEST`` (``stream``: a tar for ``SRC`` = ``-``, unpacked into the directory DEST)."""
    from kran.storage.rootpath import open_parent_in_root
    from kran.volume.copy import apply_tar, prefix_tar, spool, write_tar

    with _container_fs(engine, ref) as (c, rootfs):
        dpath = posixpath.normpath("/" + dest.lstrip("/"))
        _check_writable(c, dpath)
        root, rel = _locate(engine, c, rootfs, dpath)
        dst = _stat_in(root, rel, True)
        if stream is not None:
            if dst is None:
                raise CopyNotFound(f"Could not find the file {dest} in container {ref}")
            if _kind(dst) != "dir":
                raise InvalidArgument("extraction point is not a directory")
            with spool() as tmp:
                prefix_tar(stream, rel, tmp, keep_ids=True)
                tmp.seek(0)
                apply_tar(tmp, root)
            return
        assert src is not None
        src_path, contents = _split_src(src)
        hsrc = os.path.abspath(src_path)
        if follow:
            hsrc = os.path.realpath(hsrc)
        try:
            sst = os.lstat(hsrc)
        except FileNotFoundError:
            raise NotFound(f"lstat {hsrc}: no such file or directory") from None
        dparent_root, dparent_rel = _locate(engine, c, rootfs, posixpath.dirname(dpath))
        parent_st = _stat_in(dparent_root, dparent_rel, True)
        if dst is None and (parent_st is None or not stat.S_ISDIR(parent_st.st_mode)) and _kind(sst) != "dir":
            raise CopyNotFound(f"Could not find the file {posixpath.dirname(dpath)} in container {ref}")
        ddir, name, only = plan_dest(_kind(sst), os.path.basename(hsrc), contents, dest, _kind(dst),
                                     parent_st is not None and stat.S_ISDIR(parent_st.st_mode))
        droot, drel = _locate(engine, c, rootfs, ddir)
        if name and _kind(dst) == "dir" and _kind(sst) != "dir" and _kind(_stat_in(droot, posixpath.join(drel, name), False)) == "dir":
            raise InvalidArgument(f"cannot overwrite directory \"{posixpath.join(ddir, name)}\" with non-directory")
        arc = posixpath.join(drel, name) if name else drel
        pfd, leaf = open_parent_in_root("/", hsrc)
        try:
            with spool() as tmp:
                write_tar(pfd, leaf, arc, tmp, keep_ids=archive, contents_only=only or not name)
                tmp.seek(0)
                apply_tar(tmp, droot)
        finally:
            os.close(pfd)
