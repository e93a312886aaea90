"""The process model: ``create`` (bootstrap + container init) and ``exec`` (join a running container).

Nothing imported here starts a thread: the children below ``unshare``/``setns``, which a
multi-threaded process cannot do reliably (and never for CLONE_NEWUSER).

create::

  kran-runtime create (P)            bootstrap child (C1)                container init (C2, PID 1)
  -----------------------            --------------------                --------------------------
  read config.json, mkdir state dir
  mkfifo exec.fifo, mkdir cgroups,
  apply linux.resources
  fork() -------------------------> PR_SET_DUMPABLE 0 (CVE-2019-5736)
                                     with a cgroup ns: join the cgroup
                                     setns() into namespaces with a path
                                     unshare(CLONE_NEWUSER)?
     <------------ "usermap" ------
  write /proc/C1/{uid,gid}_map
     ------------- "go" ---------->  setresuid/setresgid(0)
                                     unshare(mnt|uts|ipc|net|cgroup|pid)
                                     fork() ------------------------> setsid, PR_SET_DUMPABLE 0
     <------------ "pid N" -------   _exit(0)                           rprivate /, bind rootfs, mounts,
  no cgroup ns: cgroup.procs <- N                                       /dev, devices, symlinks
  (in parallel with the rootfs setup)
  reap C1
     <------------------------------------------------ "hooks" ------  (only when there are
  prestart + createRuntime hooks                                        prestart/createRuntime
     ------------------------------------------------- "go" -------->   hooks)
                                                                       createContainer hooks,
                                                                       pivot_root + umount -l old root,
                                                                       console (SCM_RIGHTS), hostname,
                                                                       sysctl, ro/masked paths, rlimits,
                                                                       NNP, caps, user, cwd, PATH lookup
     <------------------------------------------------ "ready" ------
  state.json (created), pid file, exit 0                               read(exec.fifo) (opened O_RDWR
                                                                         by P, inherited) ... blocks ...
  kran-runtime start: open exec.fifo O_WRONLY|O_NONBLOCK ------------>  read "0", startContainer hooks,
  (ENXIO: no reader, the init died), write "0", unlink the fifo,       seccomp, CLOEXEC fds >= 3+N, execve
  poststart hooks

exec::

  kran-runtime exec (P)       C1                                   C2 (in the container's pid ns)
  fork() -----------------> join cgroup, open /proc/<init>/ns/*,
                            setns (user first)
                            fork() --------------------------->  setsid, console, rlimits, NNP, caps,
     <------ "pid N" -----  _exit(0)                             user, cwd, seccomp, execve
     <--------------------------------------- EOF (exec ok, the pipe is O_CLOEXEC) or "error msg"

The pid recorded in state.json is C2's pid as the host sees it: ``fork()`` in C1 returns the pid in
C1's own (host) pid namespace, even when the child lands in a new one.
``run`` and foreground ``exec`` make P a child subreaper (PR_SET_CHILD_SUBREAPER) so that C2,
orphaned when C1 exits, is reparented to P, which can then wait for its exit status.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import sys

from kran.errors import InvalidArgument, KranError
from kran.runtime import jsonc

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerError(KranError):
    """A failure while creating or exec'ing a container process (message as runc words it)."""

    exit_code = 1


# --- the parent <-> child channel ---------------------------------------------------------------


class Channel:
    """Line messages over two pipes: ``send`` goes the other way from ``recv``."""

    def __init__(self) -> None:
        self.up_r, self.up_w = os.pipe()  # child -> parent
        self.down_r, self.down_w = os.pipe()  # parent -> child
        self._buf = b""

    def parent_side(self) -> None:
        self._close("up_w", "down_r")

    def child_side(self) -> None:
        self._close("up_r", "down_w")

    def _close(self, *names: str) -> None:
        # Forget closed fds: their numbers get reused (closing twice would close someone else's).
        for name in names:
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)

    def recv_parent(self) -> tuple[str, str]:
        """The next (kind, payload) a child sent; ("eof", "") when every child closed the pipe."""
        while b"\n" not in self._buf:
            chunk = os.read(self.up_r, 4096)
            if not chunk:
                return "eof", ""
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        kind, _, payload = line.decode().partition(" ")
        return kind, payload

    def send_parent(self, kind: str, payload: str = "") -> None:
        os.write(self.up_w, f"{kind} {payload}\n".encode())

    def send_child(self, msg: str = "go") -> None:
        os.write(self.down_w, msg.encode() + b"\n")

    def recv_child(self) -> str:
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(self.down_r, 64)
            if not chunk:
                raise ContainerError("parent went away")
            data += chunk
        return data.decode().strip()

    def close(self) -> None:
        self._close("up_r", "up_w", "down_r", "down_w")


def _child_fail(chan: Channel, e: BaseException) -> None:
    """Report a failure from a child to the parent and exit (never returns)."""
    if isinstance(e, OSError) and e.filename:
        msg = f"{e.strerror or e}: {e.filename}"
    else:
        msg = str(e)
    if os.environ.get("KRAN_RUNTIME_DEBUG"):  # where in the init it failed
        import traceback

        msg += " [" + " <- ".join(f"{f.name}:{f.lineno}" for f in reversed(traceback.extract_tb(e.__traceback__))) + "]"
    try:
        chan.send_parent("error", jsonc.dumps(msg))
    except OSError:  # the parent is gone (after "ready"): stderr is all we have
        try:
            os.write(2, f"kran-runtime init: {msg}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(1)


# --- creating a container -------------------------------------------------------------------------


class CreateRequest:
    __slots__ = (
        "spec",
        "bundle",
        "rootfs",
        "fifo",
        "fifo_fd",
        "cgroup",
        "console_fd",
        "preserve_fds",
        "no_pivot",
        "cid",
        "state_for_hooks",
    )

    def __init__(self, **kw: object) -> None:
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


def spawn_init(req: CreateRequest) -> int:
    """Fork the bootstrap child and drive the handshake; return the container init's host pid.

    On return the container is set up and blocked on the exec fifo.  Raises ContainerError with the
    child's message on failure (the child is gone by then).
    """
    from kran.runtime import hooks

    spec = req.spec
    linux = spec.get("linux") or {}
    chan = Channel()
    # The exec fifo, opened read-write by the parent (that never blocks, and needs no access to
    # the state dir from inside a user namespace); the init reads it after setup and `start`
    # writes one byte.  (runc reopens an O_PATH fd via /proc/self/fd after setuid, which a
    # non-dumpable process may not do.)  O_CLOEXEC and closed before exec: no host fd survives.
    req.fifo_fd = os.open(req.fifo, os.O_RDWR | os.O_CLOEXEC)
    # Open namespace paths in the parent so that a wrong path fails early with a clear message.
    ns_fds: list[tuple[str, int]] = []
    try:
        from kran.sys.ns import OCI_NAMESPACES

        for ns in linux.get("namespaces") or []:
            if ns.get("type") not in OCI_NAMESPACES:
                raise InvalidArgument(f"unknown namespace type {ns.get('type')!r}")
            if ns.get("path"):
                try:
                    ns_fds.append((ns["type"], os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)))
                except OSError as e:
                    raise ContainerError(f"open {ns['path']}: {e.strerror}") from e
        c1 = os.fork()
        if c1 == 0:
            try:
                _bootstrap(req, chan, ns_fds)
            except BaseException as e:  # noqa: BLE001 - report anything to the parent
                _child_fail(chan, e)
            os._exit(0)
        chan.parent_side()
        init_pid = 0
        try:
            while True:
                kind, payload = chan.recv_parent()
                if kind == "usermap":
                    _write_id_maps(c1, linux)
                    chan.send_child()
                elif kind == "pid":
                    init_pid = int(payload)
                    if req.cgroup and not _joins_cgroup_itself(spec):
                        # Joining a v1 cgroup waits for an RCU grace period (~10 ms): do it here,
                        # while the init sets up its rootfs, instead of before unshare in C1.
                        from kran.runtime.cgroups import CgroupManager

                        CgroupManager.from_state(req.cgroup).enter(init_pid)
                    os.waitpid(c1, 0)
                    c1 = 0
                elif kind == "hooks":
                    st = req.state_for_hooks(init_pid)
                    h = spec.get("hooks") or {}
                    hooks.run(h.get("prestart"), st, "prestart")
                    hooks.run(h.get("createRuntime"), st, "createRuntime")
                    chan.send_child()
                elif kind == "ready":
                    return init_pid
                elif kind == "error":
                    raise ContainerError(f"unable to start container process: {jsonc.loads(payload)}")
                else:  # eof
                    raise ContainerError(
                        "unable to start container process: container init exited unexpectedly"
                    )
        except BaseException:
            if init_pid:
                try:
                    os.kill(init_pid, 9)
                except OSError:
                    pass
            raise
        finally:
            if c1:
                try:
                    os.kill(c1, 9)
                except OSError:
                    pass
                os.waitpid(c1, 0)
    finally:
        chan.close()
        os.close(req.fifo_fd)
        for _, fd in ns_fds:
            os.close(fd)


def _joins_cgroup_itself(spec: dict) -> bool:
    """A new cgroup namespace is rooted at the cgroup of the process that unshares it, so C1 must
    be in the container's cgroup first; otherwise the parent moves the init in (in parallel)."""
    return any(
        ns.get("type") == "cgroup" and not ns.get("path")
        for ns in (spec.get("linux") or {}).get("namespaces") or []
    )


def _write_id_maps(pid: int, linux: dict) -> None:
    for kind, key in (("uid", "uidMappings"), ("gid", "gidMappings")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in linux.get(key) or [])
        if lines:
            with open(f"/proc/{pid}/{kind}_map", "w") as f:
                f.write(lines)


def _bootstrap(req: CreateRequest, chan: Channel, ns_fds: list[tuple[str, int]]) -> None:
    """C1: cgroup, namespaces, then fork the container's init."""
    from kran.runtime.cgroups import CgroupManager
    from kran.sys import ns as kns
    from kran.sys.prctl import PR_SET_DUMPABLE, prctl

    prctl(PR_SET_DUMPABLE, 0)
    chan.child_side()
    spec = req.spec
    if req.cgroup and _joins_cgroup_itself(spec):
        CgroupManager.from_state(req.cgroup).enter(0)
    # Join namespaces given by path: the user namespace first, it grants the rights for the rest.
    for kind, fd in sorted(ns_fds, key=lambda t: t[0] != "user"):
        kns.setns(fd, kns.OCI_NAMESPACES[kind][0])
        os.close(fd)
    wanted = [ns["type"] for ns in (spec.get("linux") or {}).get("namespaces") or [] if not ns.get("path")]
    if "user" in wanted:
        # In the new user namespace the host's root-owned 0700 directories (a checkout under
        # /root) are out of reach: import what the init needs while we still can read it.
        from kran import rootless  # noqa: F401
        from kran.runtime import hooks, rootfs  # noqa: F401

        _preload(spec)
        kns.unshare(kns.CLONE_NEWUSER)
        chan.send_parent("usermap")
        chan.recv_child()
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    flags = 0
    for kind in wanted:
        if kind != "user":
            flags |= kns.OCI_NAMESPACES[kind][0]
    if flags:
        kns.unshare(flags)
    c2 = os.fork()
    if c2 == 0:
        try:
            _init(req, chan)
        except BaseException as e:  # noqa: BLE001
            _child_fail(chan, e)
        os._exit(255)
    chan.send_parent("pid", str(c2))


def _setgroups_denied() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "deny"
    except OSError:
        return False


def _init(req: CreateRequest, chan: Channel) -> None:
    """C2: the container's init.  Sets everything up, waits on the fifo, execs.  Never returns."""
    if os.environ.get("KRAN_RUNTIME_DEBUG"):
        import traceback  # noqa: F401 - for _child_fail, after pivot_root has hidden the host
    from kran.runtime import hooks, rootfs
    from kran.sys.prctl import PR_SET_DUMPABLE, prctl

    spec = req.spec
    proc = spec.get("process") or {}
    linux = spec.get("linux") or {}
    prctl(PR_SET_DUMPABLE, 0)
    os.setsid()
    _preload(spec)
    from kran import rootless

    # a user namespace of its own, or kran's rootless one: no mknod, sysfs only if we own the netns
    in_userns = rootless.active() or any(ns.get("type") == "user" for ns in linux.get("namespaces") or [])
    # The host's /proc still resolves "self" in the host pid namespace: our pid for hook states.
    host_pid = int(os.readlink("/proc/self"))
    fifo_fd = req.fifo_fd
    if proc.get("oomScoreAdj") is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(int(proc["oomScoreAdj"])))
    os.chdir(req.bundle)  # relative bind sources are relative to the bundle (runc)
    rootfs.prepare(spec, req.rootfs, req.cgroup, in_userns)
    h = spec.get("hooks") or {}
    if h.get("prestart") or h.get("createRuntime"):
        # The runtime-namespace hooks run now, before pivot_root (runtime-spec config.md).
        # Without them there is nothing to wait for: keep going while P joins us to the cgroup.
        chan.send_parent("hooks")
        chan.recv_child()
    if h.get("createContainer"):
        hooks.run(h["createContainer"], req.state_for_hooks(host_pid), "createContainer")
    rootfs.enter(req.rootfs, bool(req.no_pivot))
    if proc.get("terminal"):
        setup_console(req.console_fd, proc.get("consoleSize"))
    if spec.get("hostname") and _has_own(linux, "uts"):
        from kran.sys.uts import sethostname

        sethostname(spec["hostname"])
    if spec.get("domainname") and _has_own(linux, "uts"):
        from kran.sys.uts import setdomainname

        setdomainname(spec["domainname"])
    rootfs.finalize(spec)
    path, env = _prepare_process(proc, linux)
    start_state = req.state_for_hooks(host_pid) if h.get("startContainer") else None
    chan.send_parent("ready")
    chan.close()
    # Block until `start` writes to the fifo.
    os.read(fifo_fd, 1)
    os.close(fifo_fd)
    if h.get("startContainer"):
        hooks.run(h["startContainer"], start_state, "startContainer")
    _exec(path, proc, linux, env, req.preserve_fds or 0)


def _preload(spec: dict) -> None:
    """Import now everything needed after pivot_root: the host's files (and so our modules) are
    gone from the mount namespace after that.  Compile the seccomp filter now too."""
    import fcntl  # noqa: F401
    import resource  # noqa: F401
    import struct  # noqa: F401

    import kran.sys.caps  # noqa: F401
    import kran.sys.fs  # noqa: F401
    import kran.sys.uts  # noqa: F401

    if (spec.get("process") or {}).get("terminal"):
        import socket  # noqa: F401
    seccomp = (spec.get("linux") or {}).get("seccomp")
    if seccomp and id(seccomp) not in _SECCOMP_CACHE:
        import kran.sys.seccomp  # noqa: F401
        from kran.runtime.seccomp import compile_profile

        _SECCOMP_CACHE[id(seccomp)] = compile_profile(seccomp, os.uname().machine)


_SECCOMP_CACHE: dict[int, list] = {}


def _has_own(linux: dict, kind: str) -> bool:
    return any(ns.get("type") == kind for ns in linux.get("namespaces") or [])


# --- becoming the user process (shared by create and exec) ------------------------------------------


def _prepare_process(proc: dict, linux: dict) -> tuple[str, dict]:
    """Everything between setup and exec that may fail with a message for the caller:
    rlimits, NNP, early seccomp, capabilities, user, umask, cwd, PATH lookup.  Returns (path, env)."""
    _set_rlimits(proc.get("rlimits") or [])
    nnp = bool(proc.get("noNewPrivileges"))
    if nnp:
        from kran.sys.prctl import PR_SET_NO_NEW_PRIVS, prctl

        prctl(PR_SET_NO_NEW_PRIVS, 1)
    if linux.get("seccomp") and not nnp:
        # Without NNP, loading a filter needs CAP_SYS_ADMIN: load it before dropping capabilities.
        _load_seccomp(linux["seccomp"])
    _set_caps_and_user(proc)
    env = _env_dict(proc.get("env") or [])
    cwd = proc.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        raise ContainerError(f"chdir to cwd ({cwd!r}) set in config.json failed: {e.strerror}") from e
    args = proc.get("args") or []
    if not args:
        raise ContainerError("args must not be empty")
    return lookpath(args[0], env.get("PATH", DEFAULT_PATH)), env


def _exec(path: str, proc: dict, linux: dict, env: dict, preserve_fds: int) -> None:
    from kran.sys.fs import cloexec_from

    if linux.get("seccomp") and proc.get("noNewPrivileges"):
        _load_seccomp(linux["seccomp"])
    cloexec_from(3 + preserve_fds)
    # Python ignores SIGPIPE and SIGXFSZ at startup and exec keeps "ignored": give the container
    # the defaults a process expects (else `yes | head` never ends), and an empty signal mask.
    # (`signal` is imported at the top: after pivot_root the host's modules are out of reach.)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    try:
        os.execve(path, proc["args"], env)
    except OSError as e:
        # reported through the channel when it is still open (exec), else on stderr (_child_fail)
        raise ContainerError(f"exec {path}: {e.strerror}") from e


def _env_dict(env: list[str]) -> dict:
    out = {}
    for item in env:
        k, sep, v = item.partition("=")
        if sep:
            out[k] = v
    return out


def lookpath(name: str, path: str) -> str:
    """execvpe-like lookup inside the container, with runc's message when nothing matches."""
    if "/" in name:
        # like Go's exec.LookPath (what runc uses): the file must exist and be executable
        try:
            st = os.stat(name)
        except OSError as e:
            raise ContainerError(f'exec: "{name}": stat {name}: {(e.strerror or "").lower()}') from e
        if stat.S_ISDIR(st.st_mode) or not st.st_mode & 0o111:
            raise ContainerError(f'exec: "{name}": permission denied')
        return name
    for d in path.split(":"):
        cand = os.path.join(d or ".", name)
        try:
            st = os.stat(cand)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(cand, os.X_OK):
            return cand
    raise ContainerError(f'exec: "{name}": executable file not found in $PATH')


def _set_rlimits(rlimits: list[dict]) -> None:
    import resource

    for rl in rlimits:
        res = getattr(resource, rl["type"], None)
        if res is None:
            raise ContainerError(f"unknown rlimit type {rl['type']}")
        soft, hard = int(rl["soft"]), int(rl["hard"])
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, PermissionError):
            # No CAP_SYS_RESOURCE: the hard limit cannot be raised.  Clamp and warn (not fatal).
            cur_hard = resource.getrlimit(res)[1]
            nhard = min(hard, cur_hard) if cur_hard != resource.RLIM_INFINITY else hard
            nsoft = min(soft, nhard) if nhard != resource.RLIM_INFINITY else soft
            os.write(
                2,
                f"kran-runtime: warning: {rl['type']} {soft}/{hard} clamped to {nsoft}/{nhard} "
                f"(cannot raise the hard limit)\n".encode(),
            )
            resource.setrlimit(res, (nsoft, nhard))


def caps_mask(names: list[str] | None, last: int) -> int:
    from kran.sys.caps import NUMBERS

    mask = 0
    for n in names or []:
        num = NUMBERS.get(n if n.startswith("CAP_") else "CAP_" + n)
        if num is None:
            raise ContainerError(f"unknown capability {n!r}")
        if num <= last:
            mask |= 1 << num
    return mask


def _set_caps_and_user(proc: dict) -> None:
    """runc's finalizeNamespace order: bounding set, KEEPCAPS, groups/gid/uid, capset, ambient."""
    from kran.sys import caps
    from kran.sys.prctl import PR_SET_KEEPCAPS, prctl

    last = caps.last_cap()
    c = proc.get("capabilities")
    user = proc.get("user") or {}
    if c is not None:
        # Ask only for what this process holds (e.g. no CAP_SYS_RESOURCE on this host).
        have = caps.capget()[1]
        masks = {
            k: caps_mask(c.get(k), last) & have
            for k in ("bounding", "effective", "permitted", "inheritable", "ambient")
        }
        caps.drop_bounding(masks["bounding"], last)
    prctl(PR_SET_KEEPCAPS, 1)
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    try:
        os.setgroups([int(g) for g in user.get("additionalGids") or []])
    except PermissionError:
        # a user namespace mapping only its creator's ids has setgroups denied (rootless kran's
        # single-id mode): keep the groups we have, as crun does there
        if user.get("additionalGids") and not _setgroups_denied():
            raise
    try:
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        # an id the user namespace does not map (rootless kran with only the user's own id)
        raise ContainerError(f"uid {uid}/gid {gid} is not mapped in this user namespace (rootless mode without"
                             " subordinate ids maps only your own id: add them with usermod --add-subuids"
                             " --add-subgids)") from None
    prctl(PR_SET_KEEPCAPS, 0)
    if c is not None:
        caps.capset(masks["effective"], masks["permitted"], masks["inheritable"])
        caps.set_ambient(masks["ambient"] & masks["permitted"] & masks["inheritable"], last)
    if user.get("umask") is not None:
        os.umask(int(user["umask"]))
    else:
        os.umask(0o022)


def _load_seccomp(profile: dict) -> None:
    from kran.runtime.seccomp import compile_profile
    from kran.sys.seccomp import load_filter

    prog = _SECCOMP_CACHE.get(id(profile)) or compile_profile(profile, os.uname().machine)
    if prog:
        load_filter(prog)


# --- console -------------------------------------------------------------------------------------


def setup_console(sock_fd: int | None, size: dict | None = None) -> None:
    """Open a pty from the container's /dev/ptmx, send the master over the console socket
    (SCM_RIGHTS, as runc does), make the slave our controlling terminal and stdio."""
    import fcntl
    import struct

    if sock_fd is None:
        raise ContainerError("cannot allocate tty if runc will detach without setting console socket")
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, 0x40045431, struct.pack("i", 0))  # TIOCSPTLCK: unlock
    n = struct.unpack("I", fcntl.ioctl(master, 0x80045430, b"\0\0\0\0"))[0]  # TIOCGPTN
    slave = os.open(f"/dev/pts/{n}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    if size:
        rows, cols = int(size.get("height", 0)), int(size.get("width", 0))
        fcntl.ioctl(slave, 0x5414, struct.pack("HHHH", rows, cols, 0, 0))  # TIOCSWINSZ
    import socket

    s = socket.socket(fileno=sock_fd)
    try:
        socket.send_fds(s, [b"/dev/ptmx"], [master])
    finally:
        s.close()
        os.close(master)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)
    fcntl.ioctl(0, 0x540E, 0)  # TIOCSCTTY


def connect_console(path: str) -> int:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise ContainerError(f"failed to connect to console socket {path}: {e.strerror}") from e
    return s.detach()


# --- exec ----------------------------------------------------------------------------------------


def spawn_exec(
    init_pid: int, cgroup: dict | None, proc: dict, linux: dict, console_fd: int | None, preserve_fds: int
) -> int:
    """Start ``proc`` inside the container of ``init_pid``; return its host pid once it exec'd."""
    from kran.sys.ns import OCI_NAMESPACES

    chan = Channel()
    # Namespaces that differ from ours, opened before any setns (after setns(mnt) /proc changes).
    ns_fds: list[tuple[str, int]] = []
    try:
        for kind, (_flag, name) in OCI_NAMESPACES.items():
            try:
                theirs = os.stat(f"/proc/{init_pid}/ns/{name}")
                ours = os.stat(f"/proc/self/ns/{name}")
            except FileNotFoundError:
                continue
            if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino):
                ns_fds.append((kind, os.open(f"/proc/{init_pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)))
        c1 = os.fork()
        if c1 == 0:
            try:
                _exec_bootstrap(chan, cgroup, ns_fds, proc, linux, console_fd, preserve_fds)
            except BaseException as e:  # noqa: BLE001
                _child_fail(chan, e)
            os._exit(0)
        chan.parent_side()
        pid = 0
        try:
            while True:
                kind, payload = chan.recv_parent()
                if kind == "pid":
                    pid = int(payload)
                    os.waitpid(c1, 0)
                    c1 = 0
                elif kind == "error":
                    raise ContainerError(
                        f"exec failed: unable to start container process: {jsonc.loads(payload)}"
                    )
                else:  # eof: C2 exec'd (its pipe end was O_CLOEXEC)
                    if not pid:
                        raise ContainerError("exec process exited unexpectedly")
                    return pid
        finally:
            if c1:
                os.waitpid(c1, 0)
    finally:
        chan.close()
        for _, fd in ns_fds:
            os.close(fd)


def _exec_bootstrap(
    chan: Channel,
    cgroup: dict | None,
    ns_fds: list,
    proc: dict,
    linux: dict,
    console_fd: int | None,
    preserve_fds: int,
) -> None:
    from kran.runtime.cgroups import CgroupManager
    from kran.sys import ns as kns
    from kran.sys.prctl import PR_SET_DUMPABLE, prctl

    prctl(PR_SET_DUMPABLE, 0)
    chan.child_side()
    _preload({"process": proc, "linux": linux})  # setns(mnt) hides the host's files
    if cgroup:
        CgroupManager.from_state(cgroup).enter(0)
    for kind, fd in sorted(ns_fds, key=lambda t: t[0] != "user"):
        kns.setns(fd, kns.OCI_NAMESPACES[kind][0])
        os.close(fd)
    c2 = os.fork()
    if c2 == 0:
        try:
            prctl(PR_SET_DUMPABLE, 0)
            os.setsid()
            if proc.get("terminal"):
                setup_console(console_fd, proc.get("consoleSize"))
            path, env = _prepare_process(proc, linux)
            chan._close("down_r")
            _exec(path, proc, linux, env, preserve_fds)
        except BaseException as e:  # noqa: BLE001
            _child_fail(chan, e)
        os._exit(255)
    chan.send_parent("pid", str(c2))
    os._exit(0)


def exit_status(status: int) -> int:
    """waitpid status -> shell-style exit code (128+N for a signal)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def wait_forwarding(pid: int) -> int:
    """Wait for ``pid`` (our child, as subreaper) forwarding signals to it; reap other orphans."""
    import _signal

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    for sig in (1, 2, 3, 10, 12, 15, 28):  # HUP INT QUIT USR1 USR2 TERM WINCH
        _signal.signal(sig, forward)
    while True:
        try:
            wpid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if wpid == pid:
            return exit_status(status)


def relay_pty(master: int, pid: int) -> int:
    """``run`` with a terminal: copy our stdin to the pty master and the master to our stdout
    (stdin in raw mode when it is a terminal) until ``pid`` exits; return its exit status."""
    import select
    import termios
    import tty

    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        try:
            import fcntl

            fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
        except OSError:
            pass
    fds = [master, 0]
    status = None
    try:
        while True:
            r, _, _ = select.select(fds, [], [], 0.05)
            if master in r:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave fd is closed
                    data = b""
                if not data:
                    fds.remove(master)
                else:
                    os.write(1, data)
            if 0 in r:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    fds.remove(0)
                    os.write(master, b"\x04")  # EOF on our stdin: send ^D to the terminal
            if status is None:
                while True:
                    try:
                        wpid, st = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        st, wpid = 0, pid
                    if wpid == 0:
                        break
                    if wpid == pid:
                        status = exit_status(st)
                        break
            if status is not None and master not in fds:
                return status
            if status is not None and master not in r:
                return status
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)


def set_subreaper() -> None:
    from kran.sys.prctl import PR_SET_CHILD_SUBREAPER, prctl

    prctl(PR_SET_CHILD_SUBREAPER, 1)


def log_warning(msg: str) -> None:
    sys.stderr.write(f"kran-runtime: warning: {msg}\n")
