"""The runtime's operations (runc's verbs) over a state root.  Front-end free: raise, never print.

Lifecycle (runtime-spec runtime.md)::

    create -> created --start--> running --(init exits)--> stopped --delete--> (gone)
                  \\--kill/delete--^        \\--pause--> paused --resume--/
"""

from __future__ import annotations

import os

from kran.errors import Conflict, InvalidArgument, NotFound
from kran.runtime import jsonc
from kran.runtime.state import (
    CREATED,
    PAUSED,
    RUNNING,
    STOPPED,
    Container,
    list_ids,
    proc_start_time,
    rfc3339_now,
    validate_id,
)

DEFAULT_ROOT = "/run/kran-runtime"

SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8,
    "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
    "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
    "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
    "POLL": 29, "PWR": 30, "SYS": 31,
}  # fmt: skip


def parse_signal(s: str) -> int:
    if s.isdigit():
        return int(s)
    name = s.upper().removeprefix("SIG")
    if name in SIGNALS:
        return SIGNALS[name]
    if name.startswith("RTMIN") or name.startswith("RTMAX"):
        base = 34 if name.startswith("RTMIN") else 64
        off = name[5:]
        return base + int(off) if off else base
    raise InvalidArgument(f"unknown signal {s!r}")


def load_bundle(bundle: str) -> dict:
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound("JSON specification file config.json not found") from None
    try:
        spec = jsonc.loads(raw)
    except ValueError as e:
        raise InvalidArgument(f"config.json: {e}") from e
    if not isinstance(spec, dict):
        raise InvalidArgument("config.json: not a JSON object")
    return spec


def _write_atomic(path: str, text: str) -> None:
    path = os.path.abspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def create(
    root: str,
    cid: str,
    bundle: str,
    *,
    pid_file: str | None = None,
    console_socket: str | None = None,
    no_pivot: bool = False,
    preserve_fds: int = 0,
    console_fd: int | None = None,
) -> Container:
    """``console_fd``: an already connected console socket (``run`` with a terminal uses a
    socketpair); it is closed here."""
    from kran.runtime import process
    from kran.runtime.cgroups import CgroupManager, spec_cgroup_path
    from kran.runtime.spec import rootfs_path

    validate_id(cid)
    bundle = os.path.abspath(bundle)
    spec = load_bundle(bundle)
    rootfs = rootfs_path(spec, bundle)
    if not os.path.isdir(rootfs):
        raise NotFound(f"rootfs ({rootfs}) does not exist")
    linux = spec.get("linux") or {}
    if not any(ns.get("type") == "mount" for ns in linux.get("namespaces") or []):
        # Without one every mount (and pivot_root) would hit the host.
        raise InvalidArgument("a private mount namespace is required (linux.namespaces: mount)")
    proc = spec.get("process") or {}
    if proc.get("terminal") and not (console_socket or console_fd is not None):
        raise InvalidArgument("cannot allocate tty if runc will detach without setting console socket")
    if console_socket and not proc.get("terminal"):
        raise InvalidArgument("cannot use console socket if runc will not detach or allocate tty")
    os.makedirs(root, mode=0o700, exist_ok=True)
    c = Container(root, cid, {})
    try:
        os.mkdir(c.dir, 0o711)
    except FileExistsError:
        raise Conflict(f"container with id exists: {cid}") from None
    mgr = None
    try:
        mgr = CgroupManager.for_path(spec_cgroup_path(linux.get("cgroupsPath"), cid))
        os.mkfifo(c.fifo, 0o622)
        try:
            mgr.create(linux.get("resources"))
            mgr.apply(linux.get("resources"))
        except OSError as e:
            mgr = _rootless_without_cgroup(mgr, e, linux.get("resources") or {})
        c.data = {
            "id": cid,
            "bundle": bundle,
            "rootfs": rootfs,
            "created": rfc3339_now(),
            "owner": "",
            "annotations": spec.get("annotations") or {},
            "config": spec,
            "cgroup": mgr.to_state() if mgr else None,
            "init_pid": 0,
        }

        def state_for_hooks(pid: int, status: str = "creating") -> dict:
            c.data["init_pid"] = pid
            return c.oci_state(status)

        if console_socket:
            console_fd = process.connect_console(console_socket)
        req = process.CreateRequest(
            spec=spec,
            bundle=bundle,
            rootfs=rootfs,
            fifo=c.fifo,
            cgroup=mgr.to_state() if mgr else None,
            console_fd=console_fd,
            preserve_fds=preserve_fds,
            no_pivot=no_pivot,
            cid=cid,
            state_for_hooks=state_for_hooks,
        )
        pid = process.spawn_init(req)
        c.data["init_pid"] = pid
        st = proc_start_time(pid)
        c.data["init_start"] = st[0] if st else 0
        c.save()
        if pid_file:
            _write_atomic(pid_file, str(pid))
        return c
    except BaseException as e:
        try:
            if c.pid:
                _kill_quiet(c.pid, 9)
            if mgr is not None:
                mgr.destroy()
            _rmtree(c.dir)
        except OSError as cleanup:
            e.add_note(f"cleanup failed too: {cleanup}")
        raise
    finally:
        if console_fd is not None:
            os.close(console_fd)


def _rootless_without_cgroup(mgr: object, e: OSError, res: dict) -> None:
    """In a user namespace without a delegated cgroup (cgroup v1, or v2 not delegated to the user),
    a container runs without its own cgroup, as runc's rootless mode does -- unless it asks for
    limits, which would then silently not hold."""
    import errno

    from kran import rootless

    if not rootless.active() or e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise e
    try:
        mgr.destroy()  # type: ignore[attr-defined]
    except OSError:
        pass
    if any(v for k, v in res.items() if k != "devices"):
        raise InvalidArgument(f"resource limits need a cgroup delegated to this user (cgroup v2): {e}") from None
    return None


def start(root: str, cid: str) -> Container:
    c = Container.load(root, cid)
    c.require(CREATED, action="start")
    _consume_fifo(c)
    hooks = c.config.get("hooks") or {}
    if hooks.get("poststart"):
        from kran.runtime import hooks as h

        try:
            h.run(hooks["poststart"], c.oci_state(RUNNING), "poststart")
        except Exception as e:  # the spec: a poststart failure is only a warning
            import sys

            sys.stderr.write(f"kran-runtime: warning: {e}\n")
    return c


def _consume_fifo(c: Container) -> None:
    """Release the init blocked reading the fifo (see the diagram in kran.runtime.process)."""
    try:
        fd = os.open(c.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:  # ENXIO: nobody reads, the init is gone
        raise Conflict("cannot start a container that has stopped") from e
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)
    os.unlink(c.fifo)


def state(root: str, cid: str) -> dict:
    return Container.load(root, cid).oci_state()


def list_containers(root: str) -> list[dict]:
    out = []
    for cid in list_ids(root):
        try:
            out.append(Container.load(root, cid).oci_state())
        except (NotFound, ValueError, KeyError):
            continue
    return out


def kill(root: str, cid: str, sig: int, all_: bool = False) -> None:
    c = Container.load(root, cid)
    c.require(CREATED, RUNNING, PAUSED, action="kill")
    if all_ and c.data.get("cgroup"):
        from kran.runtime.cgroups import CgroupManager

        mgr = CgroupManager.from_state(c.data["cgroup"])
        mgr.signal_all(sig)
        if sig == 9 and mgr.frozen():
            mgr.freeze(False)
        return
    os.kill(c.pid, sig)


def delete(root: str, cid: str, force: bool = False) -> None:
    try:
        c = Container.load(root, cid)
    except NotFound:
        if force:
            return
        raise
    status = c.status()
    if status in (RUNNING, PAUSED) and not force:
        raise Conflict(f"cannot delete container {cid} that is not stopped: {status}")
    if status != STOPPED:
        _kill_and_wait(c)
    destroy(c)


def _kill_and_wait(c: Container, timeout: float = 10.0) -> None:
    import select

    try:
        pidfd = os.pidfd_open(c.pid)
    except OSError:
        return
    try:
        os.kill(c.pid, 9)
        if c.data.get("cgroup"):
            from kran.runtime.cgroups import CgroupManager

            mgr = CgroupManager.from_state(c.data["cgroup"])
            if mgr.frozen():
                mgr.freeze(False)
        p = select.poll()
        p.register(pidfd, select.POLLIN)
        p.poll(int(timeout * 1000))
    finally:
        os.close(pidfd)


def destroy(c: Container) -> None:
    """Remove every trace: leftover processes, cgroup dirs, state dir; then poststop hooks."""
    errors = []
    if c.data.get("cgroup"):
        from kran.runtime.cgroups import CgroupManager

        try:
            CgroupManager.from_state(c.data["cgroup"]).destroy()
        except OSError as e:
            errors.append(e)
    hooks = c.config.get("hooks") or {}
    if hooks.get("poststop"):
        from kran.runtime import hooks as h

        try:
            h.run(hooks["poststop"], c.oci_state(STOPPED), "poststop")
        except Exception as e:
            import sys

            sys.stderr.write(f"kran-runtime: warning: {e}\n")
    _rmtree(c.dir)
    if errors:
        raise errors[0]


def _rmtree(path: str) -> None:
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for n in names:
        os.unlink(os.path.join(path, n))
    os.rmdir(path)


def _kill_quiet(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def run(root: str, cid: str, bundle: str, *, detach: bool = False, **create_kw: object) -> int:
    from kran.runtime import process

    if not detach:
        process.set_subreaper()
    master = None
    if not detach and not create_kw.get("console_socket") and _wants_terminal(bundle):
        # Like `runc run`: allocate the container's pty ourselves and relay it to our stdio.
        import socket

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        create_kw["console_fd"] = theirs.detach()
    else:
        ours = None
    try:
        c = create(root, cid, bundle, **create_kw)  # type: ignore[arg-type]
        if ours is not None:
            import socket

            _msg, fds, _flags, _addr = socket.recv_fds(ours, 4096, 1)
            master = fds[0]
    finally:
        if ours is not None:
            ours.close()
    try:
        start(root, cid)
    except BaseException:
        delete(root, cid, force=True)
        raise
    if detach:
        return 0
    if master is not None:
        code = process.relay_pty(master, c.pid)
    else:
        code = process.wait_forwarding(c.pid)
    destroy(Container.load(root, cid))
    return code


def _wants_terminal(bundle: str) -> bool:
    return bool((load_bundle(os.path.abspath(bundle)).get("process") or {}).get("terminal"))


def exec_process(
    root: str,
    cid: str,
    proc: dict,
    *,
    detach: bool = False,
    pid_file: str | None = None,
    console_socket: str | None = None,
    preserve_fds: int = 0,
) -> int:
    from kran.runtime import process

    c = Container.load(root, cid)
    status = c.status()
    if status not in (CREATED, RUNNING):
        raise Conflict(f"cannot exec in a {status} container")
    ours = None
    if proc.get("terminal") and not console_socket:
        if detach:
            raise InvalidArgument("cannot allocate tty if runc will detach without setting console socket")
        # Like `runc exec -t` in the foreground: allocate the pty ourselves and relay it to our stdio.
        import socket

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        console_fd = theirs.detach()
    else:
        console_fd = process.connect_console(console_socket) if console_socket else None
    if not detach:
        process.set_subreaper()
    master = None
    try:
        pid = process.spawn_exec(
            c.pid, c.data.get("cgroup"), proc, c.config.get("linux") or {}, console_fd, preserve_fds
        )
        if ours is not None:
            import socket

            _msg, fds, _flags, _addr = socket.recv_fds(ours, 4096, 1)
            master = fds[0]
    finally:
        if console_fd is not None:
            os.close(console_fd)
        if ours is not None:
            ours.close()
    if pid_file:
        _write_atomic(pid_file, str(pid))
    if detach:
        return 0
    if master is not None:
        return process.relay_pty(master, pid)
    return process.wait_forwarding(pid)


def exec_spec(
    c_config: dict,
    args: list[str],
    *,
    env: list[str],
    cwd: str | None,
    user: str | None,
    tty: bool,
    caps: list[str],
    no_new_privs: bool,
) -> dict:
    """runc exec: start from the container's process, override what the flags give."""
    base = dict(c_config.get("process") or {})
    proc = dict(base)
    proc["args"] = args
    proc["terminal"] = tty
    proc["env"] = list(base.get("env") or []) + env
    if cwd:
        proc["cwd"] = cwd
    if user:
        uid, _, gid = user.partition(":")
        proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if caps:
        c = {k: list(v) for k, v in (base.get("capabilities") or {}).items()}
        for k in ("bounding", "effective", "permitted", "ambient"):
            c.setdefault(k, [])
            c[k] += [x for x in caps if x not in c[k]]
        proc["capabilities"] = c
    if no_new_privs:
        proc["noNewPrivileges"] = True
    return proc


def update(root: str, cid: str, resources: dict) -> None:
    """runc update: apply new ``linux.resources`` to a live container and remember them."""
    from kran.runtime.cgroups import CgroupManager

    c = Container.load(root, cid)
    c.require(CREATED, RUNNING, PAUSED, action="update")
    if not c.data.get("cgroup"):
        raise Conflict("container has no cgroup")
    mgr = CgroupManager.from_state(c.data["cgroup"])
    merged = dict((c.config.get("linux") or {}).get("resources") or {})
    for key, value in resources.items():
        merged[key] = dict(merged.get(key) or {}, **value) if isinstance(value, dict) else value
    mgr.apply({k: v for k, v in resources.items() if k != "devices"}, devices=False)
    c.config.setdefault("linux", {})["resources"] = merged
    c.save()


def update_from_flags(opts: dict) -> dict:
    """runc update's flags -> a linux.resources fragment (sizes accept k/m/g suffixes)."""

    def size(v: str) -> int:
        v = v.strip().lower()
        mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(v[-1:], 1)
        return int(v[:-1] if mult > 1 else v) * mult

    res: dict = {}
    table = (
        ("memory", "memory", "limit", size),
        ("memory_swap", "memory", "swap", size),
        ("memory_reservation", "memory", "reservation", size),
        ("cpu_shares", "cpu", "shares", int),
        ("cpu_quota", "cpu", "quota", int),
        ("cpu_period", "cpu", "period", int),
        ("cpuset_cpus", "cpu", "cpus", str),
        ("cpuset_mems", "cpu", "mems", str),
        ("pids_limit", "pids", "limit", int),
        ("blkio_weight", "blockIO", "weight", int),
    )
    for opt, group, key, conv in table:
        if opts.get(opt) is not None:
            res.setdefault(group, {})[key] = conv(opts[opt])
    return res


def pause(root: str, cid: str, on: bool) -> None:
    from kran.runtime.cgroups import CgroupManager

    c = Container.load(root, cid)
    if on:
        c.require(RUNNING, CREATED, action="pause")
    else:
        c.require(PAUSED, action="resume")
    if not c.data.get("cgroup"):
        raise Conflict("container has no cgroup to freeze")
    CgroupManager.from_state(c.data["cgroup"]).freeze(on)


def ps_pids(root: str, cid: str) -> list[int]:
    from kran.runtime.cgroups import CgroupManager

    c = Container.load(root, cid)
    if c.status() == STOPPED:
        raise Conflict("container not running")
    if c.data.get("cgroup"):
        return CgroupManager.from_state(c.data["cgroup"]).pids()
    from kran.sys.ns import pidns_members

    return pidns_members(c.pid)


FEATURES = {
    "ociVersionMin": "1.0.0",
    "ociVersionMax": "1.1.0",
    "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
    "mountOptions": [
        "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand", "noatime",
        "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid",
        "nosymfollow", "private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared",
        "rslave", "runbindable", "rw", "shared", "slave", "strictatime", "suid", "sync", "unbindable",
    ],
    "linux": {
        "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
        "capabilities": None,  # filled in by features()
        "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
        "seccomp": {
            "enabled": True,
            "actions": [
                "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP",
            ],
            "operators": [
                "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE",
            ],
            "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_X86_64"],
        },
        "apparmor": {"enabled": False},
        "selinux": {"enabled": False},
    },
    "annotations": {"io.github.kran.runtime.version": "0.1.0"},
}  # fmt: skip


def features() -> dict:
    from kran.sys.caps import NAMES

    out = dict(FEATURES)
    linux = dict(out["linux"])  # type: ignore[arg-type]
    linux["capabilities"] = list(NAMES)
    out["linux"] = linux
    return out
