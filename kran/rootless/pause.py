"""Enter the rootless user's namespace: join the pause process that holds it, or start one.

The pause process (Podman's design) is the first member of the user's user namespace and of a
mount namespace owned by it; it sleeps, so both outlive any one kran command.  Every kran process
of the user joins them first thing, before any thread starts (``setns`` into a user namespace
needs a single-threaded caller), and is then root inside: it may mount overlayfs, make the
container's namespaces, chown inside the mapping.  Its mounts stay in that mount namespace
(the host's shared mounts arrive there as slaves, nothing of kran's leaks out).

The pause process also sits in a network namespace of its own, the *rootless netns*: kran's
bridges, veths and nft rules live there, and slirp4netns (started alongside, ended with the pause
process through its ``--exit-fd``, a pidfd of it) connects it to the host.  kran's own processes stay in the
host's network namespace, so ``--network host`` is the host's and published ports listen on it.

The ids: ``newuidmap``/``newgidmap`` (setuid helpers from the ``uidmap`` package) map 0 to the
user and 1..N to the ranges in /etc/subuid and /etc/subgid.  Without ranges kran stops with the
``usermod`` line that adds them -- or, when the config says ``ignore_chown_errors = true`` under
``[storage]``, maps only the user's own id (files of other owners then become the user's).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from kran.errors import KranError
from kran.rootless import subids

PAUSE_NAME = b"kran-pause"
#: slirp4netns' defaults: the tap gets 10.0.2.100, the host's loopback is reachable at 10.0.2.2,
#: a DNS forwarder at 10.0.2.3 (see docs/rootless.md)
SLIRP_MTU = "65520"


class RootlessError(KranError):
    pass


def _xdg(env: dict[str, str], key: str, fallback: str) -> str:
    v = env.get(key, "")
    return v if os.path.isabs(v) else os.path.join(env.get("HOME") or os.path.expanduser("~"), fallback)


def user_paths(env: dict[str, str], uid: int) -> tuple[str, str, str]:
    """(store, runtime state, config file) of a user, from the XDG variables."""
    data = os.path.join(_xdg(env, "XDG_DATA_HOME", ".local/share"), "kran")
    rt = env.get("XDG_RUNTIME_DIR", "")
    run = os.path.join(rt, "kran") if os.path.isabs(rt) else f"/tmp/kran-{uid}"
    config = os.path.join(_xdg(env, "XDG_CONFIG_HOME", ".config"), "kran", "config.toml")
    return data, run, config


def _private_dir(path: str, uid: int) -> None:
    """mkdir -p with mode 0700 for the last part; refuse one that another user owns or can enter."""
    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
        raise RootlessError(f"{path} is not a directory owned by you (uid {uid}): remove it or set XDG_RUNTIME_DIR")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def enter() -> None:
    """Make this process the user's rootless kran: per-user paths, then the user namespace.

    Does nothing for root and for a process already inside (a monitor, ``kran rm`` after --rm)."""
    from kran import rootless

    if os.getuid() == 0 or rootless.active():
        return
    env = os.environ
    uid, gid = os.getuid(), os.getgid()
    data, run, config = user_paths(dict(env), uid)
    env.setdefault("KRAN_ROOT", data)
    env.setdefault("KRAN_CONFIG", config)
    env.setdefault("KRAN_CERTS_D", os.path.join(os.path.dirname(config), "certs.d"))
    env["KRAN_RUN"] = run
    env["KRAN_ROOTLESS_ROOT"] = data  # the default store: its runtime state is ``run`` itself
    try:
        _private_dir(run, uid)
        if not os.path.isdir(os.path.dirname(data)):
            _private_dir(os.path.dirname(data), uid)
        _private_dir(data, uid)
    except OSError as e:
        raise RootlessError(f"mkdir {e.filename}: {(e.strerror or str(e)).lower()}: rootless kran keeps its store in"
                            " $XDG_DATA_HOME/kran (~/.local/share/kran) and its state in $XDG_RUNTIME_DIR/kran;"
                            " set HOME (or XDG_DATA_HOME) to a directory you can write") from None
    cwd = _cwd()
    import fcntl

    lock = os.open(os.path.join(run, "pause.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        pid = _running_pause(run, uid)
        if not pid:
            fcntl.flock(lock, fcntl.LOCK_EX)
            pid = _running_pause(run, uid) or _adopt(run, uid) or _start(run, uid, gid, env["KRAN_CONFIG"])
        _join(pid)
    finally:
        os.close(lock)
    rootless._active = None
    if cwd:
        try:
            os.chdir(cwd)  # setns(mnt) moved us to the namespace's root
        except OSError:
            pass


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return ""


def _running_pause(run: str, uid: int) -> int:
    try:
        with open(os.path.join(run, "pause.pid")) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
    if pid <= 0:
        return 0
    try:
        if not _is_pause(pid):
            return 0
        if os.stat(f"/proc/{pid}").st_uid != uid:
            return 0
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rpartition(b")")[2].split()[0] in (b"Z", b"X"):
                return 0  # ended, not yet reaped
        if not os.path.exists(f"/proc/{pid}/ns/user"):
            return 0
    except OSError:
        return 0
    return pid


def _adopt(run: str, uid: int) -> int:
    """Our namespace outlived its pid file or its pause process: find it again, so running
    containers stay ours (their mounts and namespaces live there, not in a new one).

    A pause process whose pid file went with $XDG_RUNTIME_DIR (logout) is taken back as it is; if
    the pause process itself was killed, a monitor still holds the namespaces: join it and start a
    new pause process there (with a new rootless netns: the old one went with the old process)."""
    try:
        own = os.stat("/proc/self/ns/user").st_ino
        entries = os.listdir("/proc")
    except OSError:
        return 0
    monitor = 0
    for d in entries:
        if not d.isdigit():
            continue
        pid = int(d)
        try:
            if os.stat(f"/proc/{d}").st_uid != uid or os.stat(f"/proc/{d}/ns/user").st_ino == own or _zombie(pid):
                continue
            if _is_pause(pid):
                _write_pid(run, pid)
                _adopt_slirp(run, uid, pid, entries)
                return pid
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
                if not monitor and (b"kran/monitor/" in cmd or b"kran.monitor" in cmd):
                    monitor = pid
        except OSError:
            continue
    if not monitor:
        return 0
    from kran import rootless

    _join(monitor)
    rootless._active = None
    return _started(run, _spawn_pause(None))


def _adopt_slirp(run: str, uid: int, pause: int, entries: list[str]) -> None:
    """The adopted pause process's slirp4netns, so a second one is not started on its netns."""
    needle = f"/proc/{pause}/ns/net".encode()
    for d in entries:
        if not d.isdigit():
            continue
        try:
            if os.stat(f"/proc/{d}").st_uid != uid:
                continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"slirp4netns") and needle in argv:
            with open(os.path.join(run, "slirp4netns.pid"), "w") as f:
                f.write(d)
            return


def _write_pid(run: str, pid: int) -> None:
    tmp = os.path.join(run, f"pause.pid.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, os.path.join(run, "pause.pid"))


def _is_pause(pid: int) -> bool:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0", 1)[0] == PAUSE_NAME


def _join(pid: int) -> None:
    from kran.sys.ns import CLONE_NEWNS, CLONE_NEWUSER, setns

    fds = []
    try:
        fds = [os.open(f"/proc/{pid}/ns/{n}", os.O_RDONLY | os.O_CLOEXEC) for n in ("user", "mnt")]
        if os.fstat(fds[0]).st_ino != os.stat("/proc/self/ns/user").st_ino:  # (_adopt may have joined)
            setns(fds[0], CLONE_NEWUSER)
        setns(fds[1], CLONE_NEWNS)
    except OSError as e:
        raise RootlessError(f"cannot join the rootless namespace of pause process {pid}: {e.strerror}") from None
    finally:
        for fd in fds:
            os.close(fd)


def _id_args(own: int, name: str, path: str, uid: int | None = None) -> list[str]:
    """newuidmap's arguments: 0 -> our own id, then each subordinate range from 1 on ([] if none)."""
    rs = subids.ranges(path, name, own if uid is None else uid)
    args = ["0", str(own), "1"]
    nxt = 1
    for r in rs:
        args += [str(nxt), str(r.start), str(r.count)]
        nxt += r.count
    return args if rs else []


def _ignore_chown(config: str) -> bool:
    from kran import config as cfg

    try:
        storage = cfg.load({"KRAN_CONFIG": config}).get("storage") or {}
    except KranError:
        return False
    return storage.get("ignore_chown_errors") is True


def _start(run: str, uid: int, gid: int, config: str) -> int:
    """Start the pause process with its namespaces and id maps; returns its pid."""
    import pwd
    import shutil

    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    uargs = _id_args(uid, name, subids.SUBUID)
    gargs = _id_args(gid, name, subids.SUBGID, uid)
    single = False
    if not uargs or not gargs:
        if not _ignore_chown(config):
            which = subids.SUBUID if not uargs else subids.SUBGID
            raise RootlessError(subids.missing_message(name, which, config))
        single = True
    elif not (shutil.which("newuidmap") and shutil.which("newgidmap")):
        raise RootlessError("rootless mode needs newuidmap and newgidmap (as root: apt-get install uidmap)")

    def mapper(pid: int) -> None:
        if single:
            _write_single(pid, uid, gid)
        else:
            _newidmap("newuidmap", pid, uargs)
            _newidmap("newgidmap", pid, gargs)

    return _started(run, _spawn_pause(mapper))


def _started(run: str, pid: int) -> int:
    """A new pause process: its slirp4netns, then its pid file (last: others then find it whole)."""
    _slirp_or_warn(run, pid)  # (a new netns: whatever the pid file names served the old one)
    _write_pid(run, pid)
    return pid


def ensure_slirp(run: str, pid: int) -> None:
    """slirp4netns for pause process ``pid`` unless it runs."""
    if not slirp_running(run):
        _slirp_or_warn(run, pid)


def _slirp_or_warn(run: str, pid: int) -> None:
    """Start slirp4netns; a warning line when it cannot.  --network none|host and bridges between
    containers work without it: only outbound traffic needs it (docs/rootless.md says how to fix
    what the warning names)."""
    why = start_slirp(run, pid)
    if why:
        sys.stderr.write(f"kran: warning: rootless containers get no outbound network: {why}\n")


def _spawn_pause(mapper: Callable[[int], None] | None) -> int:
    """Fork the pause process and wait until it is ready.  ``mapper(pid)`` writes the id maps of
    its new user namespace; None: it stays in ours (which we joined) and makes only a netns."""
    go_r, go_w = os.pipe()  # parent -> pause: the maps are written (b"1") or not (b"")
    up_r, up_w = os.pipe()  # pause -> parent: b"u" after unshare, b"r" when ready, b"E..." on failure
    pid = _fork_pause(go_r, go_w, up_r, up_w, mapper is not None)
    os.close(go_r)
    os.close(up_w)
    try:
        msg = os.read(up_r, 256)
        if msg[:1] != b"u":
            raise RootlessError(f"cannot create the rootless user namespace: {msg[1:].decode(errors='replace') or 'failed'}")
        if mapper is not None:
            mapper(pid)
        os.write(go_w, b"1")
        msg = os.read(up_r, 256)
        if msg[:1] != b"r":
            raise RootlessError(f"cannot set up the rootless namespaces: {msg[1:].decode(errors='replace') or 'failed'}")
    except BaseException:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
        raise
    finally:
        for fd in (go_w, up_r):
            os.close(fd)
    return pid


def _newidmap(tool: str, pid: int, args: list[str]) -> None:
    import subprocess

    p = subprocess.run([tool, str(pid), *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RootlessError(f"{tool} {pid} {' '.join(args)} failed: {(p.stderr or p.stdout).strip()}")


def _write_single(pid: int, uid: int, gid: int) -> None:
    # an unprivileged process may map its own ids (and gids only after setgroups is denied)
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(f"0 {uid} 1\n")
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(f"0 {gid} 1\n")


def _fork_pause(go_r: int, go_w: int, up_r: int, up_w: int, new_userns: bool) -> int:
    """Fork twice (the pause process is nobody's child but init's) and return its pid."""
    pid_r, pid_w = os.pipe()
    mid = os.fork()
    if mid == 0:
        try:
            os.close(pid_r)
            os.setsid()
            pid = os.fork()
            if pid == 0:
                os.close(pid_w)
                _pause_main(go_r, go_w, up_r, up_w, new_userns)
            os.write(pid_w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(pid_w)
    data = b""
    while True:
        chunk = os.read(pid_r, 32)
        if not chunk:
            break
        data += chunk
    os.close(pid_r)
    os.waitpid(mid, 0)
    if not data:
        raise RootlessError("cannot start the rootless pause process")
    return int(data)


def _pause_main(go_r: int, go_w: int, up_r: int, up_w: int, new_userns: bool) -> None:
    """The pause process: never returns."""
    try:
        for fd in (go_w, up_r):
            os.close(fd)
        from kran.sys.ns import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER, unshare

        try:
            if new_userns:
                unshare(CLONE_NEWUSER | CLONE_NEWNS)
        except OSError as e:
            os.write(up_w, b"E" + f"unshare: {e.strerror} (are unprivileged user namespaces enabled? "
                     "sysctl kernel.unprivileged_userns_clone)".encode())
            os._exit(1)
        os.write(up_w, b"u")
        if os.read(go_r, 1) != b"1":
            os._exit(1)
        os.close(go_r)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        try:
            unshare(CLONE_NEWNET)
            _loopback_up()
        except OSError as e:
            os.write(up_w, b"E" + f"network namespace: {e.strerror}".encode())
            os._exit(1)
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        keep = {up_w, 0, 1, 2}
        for fd in _open_fds():
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        os.write(up_w, b"r")
        os.close(up_w)
        # From here it only has to exist: coreutils' sleep holds the namespaces for ~1 MiB
        # instead of a Python interpreter's ~10; argv[0] names it in ps (and for _is_pause).
        try:
            os.execv("/bin/sleep", [PAUSE_NAME.decode(), "infinity"])
        except OSError:
            import signal

            while True:
                signal.pause()
    except BaseException as e:
        try:
            os.write(up_w, b"E" + f"{type(e).__name__}: {e}".encode()[:200])
        except OSError:
            pass
        os._exit(1)


def _open_fds() -> list[int]:
    try:
        return [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        return []


def _loopback_up() -> None:
    # SIOCSIFFLAGS on lo (no netlink client here: kran.network sits above this package)
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", 0x1 | 0x8 | 0x40))  # IFF_UP|LOOPBACK|RUNNING


def slirp_running(run: str) -> bool:
    try:
        with open(os.path.join(run, "slirp4netns.pid")) as f:
            pid = int(f.read().strip() or 0)
        with open(f"/proc/{pid}/stat", "rb") as f:
            return pid > 0 and b"slirp4netns" in f.read(64) and not _zombie(pid)
    except (OSError, ValueError):
        return False


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rpartition(b")")[2].split()[0] in (b"Z", b"X")


def tun_problem() -> str:
    """Why slirp4netns cannot make its tap device ("" when it can)."""
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist (as root: modprobe tun)"
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        mode = oct(os.stat("/dev/net/tun").st_mode & 0o777)[2:]
        return (f"/dev/net/tun is mode {mode}, not usable by you (Debian's udev makes it 0666;"
                " as root: chmod 0666 /dev/net/tun)")
    return ""


def start_slirp(run: str, pid: int) -> str:
    """slirp4netns on the rootless netns of pause process ``pid``, detached; it ends when the pause
    process does (its ``--exit-fd`` is a pidfd of it).  Returns "" or why it could not start."""
    import select
    import shutil

    exe = shutil.which("slirp4netns")
    if not exe:
        return "slirp4netns is not installed (as root: apt-get install slirp4netns)"
    why = tun_problem()
    if why:
        return why
    exit_fd = os.pidfd_open(pid)
    ready_r, ready_w = os.pipe()
    pid_r, pid_w = os.pipe()
    logpath = os.path.join(run, "slirp4netns.log")
    log = os.open(logpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    argv = [exe, "--configure", f"--mtu={SLIRP_MTU}", f"--exit-fd={exit_fd}", f"--ready-fd={ready_w}",
            "--netns-type=path", f"/proc/{pid}/ns/net", "tap0"]
    from kran import rootless

    if not rootless.active():
        argv[1:1] = [f"--userns-path=/proc/{pid}/ns/user"]
    mid = os.fork()
    if mid == 0:
        try:
            os.setsid()
            child = os.fork()
            if child == 0:
                os.dup2(log, 1)
                os.dup2(log, 2)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.set_inheritable(exit_fd, True)
                os.set_inheritable(ready_w, True)
                os.execv(exe, argv)
            os.write(pid_w, str(child).encode())
        finally:
            os._exit(0)
    for fd in (ready_w, log, exit_fd, pid_w):
        os.close(fd)
    os.waitpid(mid, 0)
    try:
        spid = os.read(pid_r, 32).decode()
        r, _, _ = select.select([ready_r], [], [], 10)
        ok = bool(r) and os.read(ready_r, 1) == b"1"
    finally:
        os.close(ready_r)
        os.close(pid_r)
    if not ok:
        try:
            with open(logpath) as f:
                lines = f.read().strip().splitlines()
        except OSError:
            lines = []
        return "slirp4netns did not start" + (f": {lines[0]}" if lines else "")
    with open(os.path.join(run, "slirp4netns.pid"), "w") as f:
        f.write(spid)
    return ""
