"""The container's filesystem view (OCI runtime-spec config-linux "mounts", "devices", rootfs).

Runs in the container init, inside its new mount namespace:

1. ``prepare``: make every mount private (``rootfsPropagation``, default rprivate), bind the rootfs
   onto itself, perform ``mounts`` in order, build /dev (device nodes, ptmx, symlinks).
2. ``enter``: pivot_root into the rootfs and lazily unmount the old root (or MS_MOVE + chroot with
   ``--no-pivot``); no fd or cwd keeps pointing at the host afterwards.
3. ``finalize``: sysctls, ``readonlyPaths``, ``maskedPaths``, read-only root.

Every mount target is resolved with :func:`secure_join`, which follows symlinks *inside* the
rootfs only: a symlink in an image can never make us mount over a host path.
"""

from __future__ import annotations

import os
import stat

from kran.sys import mount as m

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs startup time
if TYPE_CHECKING:
    from typing import Protocol

    class Kernel(Protocol):
        """The mount syscalls used here: ``kran.sys.mount``, or a recording fake in tests."""

        def mount(
            self, source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
        ) -> None: ...
        def umount2(self, target: str, flags: int = 0) -> None: ...
        def pivot_root(self, new_root: str, put_old: str) -> None: ...


_FLAGS = {
    "ro": (m.MS_RDONLY, True),
    "rw": (m.MS_RDONLY, False),
    "nosuid": (m.MS_NOSUID, True),
    "suid": (m.MS_NOSUID, False),
    "nodev": (m.MS_NODEV, True),
    "dev": (m.MS_NODEV, False),
    "noexec": (m.MS_NOEXEC, True),
    "exec": (m.MS_NOEXEC, False),
    "sync": (m.MS_SYNCHRONOUS, True),
    "async": (m.MS_SYNCHRONOUS, False),
    "dirsync": (m.MS_DIRSYNC, True),
    "remount": (m.MS_REMOUNT, True),
    "mand": (m.MS_MANDLOCK, True),
    "nomand": (m.MS_MANDLOCK, False),
    "atime": (m.MS_NOATIME, False),
    "noatime": (m.MS_NOATIME, True),
    "diratime": (m.MS_NODIRATIME, False),
    "nodiratime": (m.MS_NODIRATIME, True),
    "bind": (m.MS_BIND, True),
    "rbind": (m.MS_BIND | m.MS_REC, True),
    "relatime": (m.MS_RELATIME, True),
    "norelatime": (m.MS_RELATIME, False),
    "strictatime": (m.MS_STRICTATIME, True),
    "nostrictatime": (m.MS_STRICTATIME, False),
    "nosymfollow": (m.MS_NOSYMFOLLOW, True),
}
_PROPAGATION = {
    "private": m.MS_PRIVATE,
    "rprivate": m.MS_PRIVATE | m.MS_REC,
    "shared": m.MS_SHARED,
    "rshared": m.MS_SHARED | m.MS_REC,
    "slave": m.MS_SLAVE,
    "rslave": m.MS_SLAVE | m.MS_REC,
    "unbindable": m.MS_UNBINDABLE,
    "runbindable": m.MS_UNBINDABLE | m.MS_REC,
}
#: statvfs f_flag bits -> MS_* flags the kernel locks on a bind mount (kept on remount).
_ST_LOCKED = (
    (1, m.MS_RDONLY),
    (2, m.MS_NOSUID),
    (4, m.MS_NODEV),
    (8, m.MS_NOEXEC),
    (1024, m.MS_NOATIME),
    (2048, m.MS_NODIRATIME),
    (4096, m.MS_RELATIME),
)

DEFAULT_DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)


def parse_options(options: list[str]) -> tuple[int, int, str]:
    """OCI mount options -> (MS_* flags, propagation flags, data string)."""
    flags = prop = 0
    data = []
    for opt in options:
        if opt in _FLAGS:
            bit, on = _FLAGS[opt]
            flags = flags | bit if on else flags & ~bit
        elif opt in _PROPAGATION:
            prop |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def secure_join(root: str, unsafe: str) -> str:
    """``root``/``unsafe`` with every symlink resolved as if ``root`` were "/" (filepath-securejoin)."""
    parts = unsafe.split("/")
    parts.reverse()
    resolved = ""
    links = 0
    while parts:
        p = parts.pop()
        if p in ("", "."):
            continue
        if p == "..":
            resolved = resolved.rpartition("/")[0]
            continue
        cand = resolved + "/" + p
        try:
            st = os.lstat(root + cand)
        except (FileNotFoundError, NotADirectoryError):
            resolved = cand
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise OSError(40, "too many levels of symbolic links", unsafe)
            target = os.readlink(root + cand)
            if target.startswith("/"):
                resolved = ""
            rest = target.split("/")
            rest.reverse()
            parts.extend(rest)
            continue
        resolved = cand
    return root + resolved if resolved else root


def _mkdir_target(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _file_target(path: str) -> None:
    _mkdir_target(os.path.dirname(path))
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))


def _locked_flags(path: str) -> int:
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _ST_LOCKED if f & st)


def _remount_bind(dest: str, flags: int, k: Kernel = m) -> None:
    try:
        k.mount(None, dest, None, m.MS_REMOUNT | m.MS_BIND | flags)
    except PermissionError:
        # In a user namespace the flags of the source mount are locked: keep them.
        k.mount(None, dest, None, m.MS_REMOUNT | m.MS_BIND | flags | _locked_flags(dest))


def prepare(spec: dict, rootfs: str, cgroup: dict | None, in_userns: bool, k: Kernel = m) -> None:
    linux = spec.get("linux") or {}
    prop = _PROPAGATION.get(linux.get("rootfsPropagation") or "rprivate", m.MS_PRIVATE | m.MS_REC)
    k.mount(None, "/", None, prop)
    k.mount(rootfs, rootfs, None, m.MS_BIND | m.MS_REC)
    has_dev = False
    for mnt in spec.get("mounts") or []:
        mount_one(mnt, rootfs, cgroup, k)
        if os.path.normpath(mnt["destination"]) == "/dev":
            has_dev = True
    if has_dev:
        setup_dev(rootfs, linux.get("devices") or [], in_userns, k)


def mount_one(mnt: dict, rootfs: str, cgroup: dict | None, k: Kernel = m) -> None:
    dest = secure_join(rootfs, mnt["destination"])
    flags, prop, data = parse_options(mnt.get("options") or [])
    typ = mnt.get("type") or ""
    src = mnt.get("source") or ""
    if typ == "bind" or flags & m.MS_BIND:
        src = os.path.abspath(src)
        if os.path.isdir(src):
            _mkdir_target(dest)
        else:
            _file_target(dest)
        k.mount(src, dest, None, m.MS_BIND | (flags & m.MS_REC))
        rest = flags & ~(m.MS_BIND | m.MS_REC | m.MS_REMOUNT)
        if rest:
            _remount_bind(dest, rest, k=k)
    elif typ == "cgroup":
        _mkdir_target(dest)
        mount_cgroup(dest, flags, cgroup, k)
    else:
        _mkdir_target(dest)
        try:
            k.mount(src or typ, dest, typ, flags, data)
        except PermissionError:
            if typ != "sysfs":
                raise
            # sysfs needs a network namespace we own; like runc, fall back to a bind of /sys.
            k.mount("/sys", dest, None, m.MS_BIND | m.MS_REC)
            _remount_bind(dest, flags | m.MS_RDONLY, k=k)
    if prop:
        k.mount(None, dest, None, prop)


def mount_cgroup(dest: str, flags: int, cgroup: dict | None, k: Kernel = m) -> None:
    """v1: a tmpfs with one read-only bind of the container's own cgroup dir per hierarchy;
    v2: cgroup2 itself (with a cgroup namespace) or a bind of the container's cgroup dir."""
    ro = flags & m.MS_RDONLY
    base = flags & ~m.MS_RDONLY
    if not cgroup:
        return
    if cgroup["version"] == 2:
        try:
            k.mount("cgroup2", dest, "cgroup2", flags)
        except PermissionError:
            k.mount(cgroup["paths"][""], dest, None, m.MS_BIND)
            _remount_bind(dest, flags, k=k)
        return
    k.mount("tmpfs", dest, "tmpfs", base & (m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC), "mode=755")
    hiers: dict[str, list[str]] = {}  # host hierarchy dir name ("cpu,cpuacct") -> controllers
    for ctrl, mnt in cgroup["mounts"].items():
        hiers.setdefault(os.path.basename(mnt), []).append(ctrl)
    for hier, ctrls in sorted(hiers.items()):
        target = os.path.join(dest, hier)
        os.mkdir(target, 0o755)
        k.mount(cgroup["paths"][ctrls[0]], target, None, m.MS_BIND)
        _remount_bind(target, base | m.MS_RDONLY if ro else base, k=k)
        for ctrl in ctrls:
            if ctrl != hier:
                os.symlink(hier, os.path.join(dest, ctrl))
    if ro:
        k.mount(
            None,
            dest,
            None,
            m.MS_REMOUNT | m.MS_RDONLY | (base & (m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC)),
            "mode=755",
        )


def setup_dev(rootfs: str, devices: list[dict], in_userns: bool, k: Kernel = m) -> None:
    dev = secure_join(rootfs, "/dev")
    spec_paths = {os.path.normpath(d["path"]) for d in devices}
    for name, _major, _minor in DEFAULT_DEVICES:
        if f"/dev/{name}" in spec_paths:
            continue
        # A bind of the host's node works in user namespaces too (runc does this when it cannot mknod).
        target = os.path.join(dev, name)
        if not os.path.lexists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666))
        k.mount(f"/dev/{name}", target, None, m.MS_BIND)
    for d in devices:
        target = secure_join(rootfs, d["path"])
        _mkdir_target(os.path.dirname(target))
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[
            d.get("type", "c")
        ]
        mode = int(d.get("fileMode", 0o666)) & 0o7777
        try:
            if in_userns:
                raise PermissionError
            if os.path.lexists(target):
                os.unlink(target)
            os.mknod(target, kind | mode, os.makedev(int(d.get("major", 0)), int(d.get("minor", 0))))
            os.chown(target, int(d.get("uid", 0)), int(d.get("gid", 0)))
            os.chmod(target, mode)
        except PermissionError:
            if not os.path.lexists(target):
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666))
            k.mount(d["path"], target, None, m.MS_BIND)
    links = [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ]
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "core"))
    for src, name in links:
        try:
            os.symlink(src, os.path.join(dev, name))
        except FileExistsError:
            pass
    ptmx = os.path.join(dev, "ptmx")
    if os.path.lexists(ptmx):
        os.unlink(ptmx)
    os.symlink("pts/ptmx", ptmx)


def enter(rootfs: str, no_pivot: bool, k: Kernel = m) -> None:
    if no_pivot:
        os.chdir(rootfs)
        k.mount(rootfs, "/", None, m.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        # pivot_root(".", "."): the old root ends up stacked under the new one; no put_old dir needed.
        k.pivot_root(".", ".")
        os.fchdir(old)
        k.mount(None, ".", None, m.MS_SLAVE | m.MS_REC)  # don't propagate the unmount to the host
        k.umount2(".", m.MNT_DETACH)
    finally:
        os.close(old)
        os.close(new)
    os.chdir("/")


def finalize(spec: dict, k: Kernel = m) -> None:
    linux = spec.get("linux") or {}
    for key, value in (linux.get("sysctl") or {}).items():
        path = "/proc/sys/" + key.replace(".", "/")
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
    for p in linux.get("readonlyPaths") or []:
        try:
            k.mount(p, p, None, m.MS_BIND | m.MS_REC)
        except FileNotFoundError:
            continue
        _remount_bind(p, m.MS_RDONLY | m.MS_REC, k=k)
    for p in linux.get("maskedPaths") or []:
        try:
            if os.path.isdir(p):
                k.mount("tmpfs", p, "tmpfs", m.MS_RDONLY)
            else:
                k.mount("/dev/null", p, None, m.MS_BIND)
        except FileNotFoundError:
            pass
    if (spec.get("root") or {}).get("readonly"):
        _remount_bind("/", m.MS_RDONLY, k=k)
