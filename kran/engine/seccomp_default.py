"""Docker's default seccomp profile and capability set, as runtime-spec data.

``default_profile(caps, arch)`` gives the ``linux.seccomp`` object moby's
``seccomp.GetDefaultProfile`` produces (``github.com/moby/profiles/seccomp`` v0.2.3, the version moby
master vendors: ``default_linux.go`` filtered by ``setupSeccomp`` in ``seccomp_linux.go``): deny with
EPERM by default, allow a long list of syscalls, allow some only for certain arguments, and allow
others only when the container's bounding set holds a capability (or lacks one: ``clone`` without
namespace flags, ``clone3`` answering ENOSYS so libcs fall back to ``clone``).

``normalize_caps(cap_add, cap_drop)`` gives the effective capability list of
``docker run --cap-add/--cap-drop`` (the CLI's ``EffectiveCapAddCapDrop`` followed by the
daemon's ``TweakCapabilities``).

The tables are plain constants; the rule list is built on first use.  Nothing heavy is imported.
"""

from __future__ import annotations

from typing import Any

from kran.errors import InvalidArgument

# -- capabilities ----------------------------------------------------------------------------------

#: Docker's default bounding set (moby ``daemon/pkg/oci/caps/defaults.go``), in moby's order.
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

#: Every capability the kernel knows, by number (capability(7)): index i is capability i, up to
#: CAP_CHECKPOINT_RESTORE = 40.
ALL_CAPS: tuple[str, ...] = tuple(
    "CAP_" + n
    for n in (
        "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
        "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
        "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
        "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
        "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE"
    ).split()
)

_ALL = "ALL"


def _normalize(names: list[str] | tuple[str, ...]) -> list[str]:
    """Upper-case, add the ``CAP_`` prefix, keep the magic ``ALL``; reject unknown names."""
    out: list[str] = []
    for name in names:
        c = name.upper()
        if c != _ALL:
            if not c.startswith("CAP_"):
                c = "CAP_" + c
            if c not in ALL_CAPS:
                raise InvalidArgument(f'unknown capability: "{c}"')
        if c not in out:
            out.append(c)
    return out


def normalize_caps(cap_add: list[str], cap_drop: list[str]) -> list[str]:
    """The effective capability set of a container run with ``--cap-add``/``--cap-drop``, sorted.

    Docker's rules: names are case-insensitive, with or without ``CAP_``; a name in both lists is
    added (add wins over drop); ``ALL`` in add means every capability except those dropped; ``ALL``
    in drop means only those added; otherwise the defaults minus the dropped plus the added.
    Unknown names raise :class:`InvalidArgument` (``unknown capability: "CAP_FOO"``).
    """
    add = _normalize(cap_add)
    drop = _normalize(cap_drop)
    if _ALL in add:
        add = [_ALL]
    if _ALL in drop:
        drop = [_ALL]
    drop = [c for c in drop if c not in add]
    if _ALL in add:
        caps = [c for c in ALL_CAPS if c not in drop]
    elif _ALL in drop:
        caps = add
    else:
        caps = [c for c in DEFAULT_CAPS if c not in drop] + add
    return sorted(set(caps))


# -- seccomp ---------------------------------------------------------------------------------------

_ALLOW = "SCMP_ACT_ALLOW"
_ERRNO = "SCMP_ACT_ERRNO"
_EPERM = 1
_ENOSYS = 38

_AF_ALG = 38
_AF_VSOCK = 40
#: CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
_CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

#: Allowed for everyone, on every architecture (names unknown to an architecture are ignored by
#: the runtime).
_ALWAYS = """
    accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
    clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
    clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat
    dup dup2 dup3
    epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
    epoll_wait_old eventfd eventfd2 execve execveat exit exit_group
    faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat
    fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork
    fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64
    futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
    getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups
    getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
    getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname
    getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr getxattrat
    inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy
    io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc
    kill
    landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link
    linkat listen listmount listxattr listxattrat llistxattr _llseek lremovexattr lseek lsetxattr
    lstat lstat64
    madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat
    mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
    mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget
    msgrcv msgsnd msync munlock munlockall munmap
    name_to_handle_at nanosleep newfstatat _newselect
    open openat openat2
    pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
    ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64
    pwrite64 pwritev pwritev2
    read readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
    remap_file_pages removexattr removexattrat rename renameat renameat2 restart_syscall
    riscv_hwprobe rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
    rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo
    sched_getaffinity sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min
    sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity
    sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop
    semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid
    setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid
    setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
    setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
    setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
    sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statmount statx
    symlink symlinkat sync sync_file_range syncfs sysinfo
    tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
    timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
    timerfd_settime64 times tkill truncate truncate64
    ugetrlimit umask uname unlink unlinkat uretprobe utime utimensat utimensat_time64 utimes
    vfork vmsplice
    wait4 waitid waitpid write writev
"""

#: The capability-gated groups: (capability, names allowed when the bounding set holds it).
_BY_CAP: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CAP_DAC_READ_SEARCH", ("open_by_handle_at",)),
    (
        "CAP_SYS_ADMIN",
        (
            "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie "
            "lsm_get_self_attr lsm_list_modules lsm_set_self_attr mount mount_setattr move_mount "
            "open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog "
            "umount umount2 unshare"
        ).split(),
    ),
    # (here moby has the capability-less clone / clone3 rules; see _rules())
    ("CAP_SYS_BOOT", ("reboot",)),
    ("CAP_SYS_CHROOT", ("chroot",)),
    ("CAP_SYS_MODULE", ("delete_module", "init_module", "finit_module")),
    ("CAP_SYS_PACCT", ("acct",)),
    (
        "CAP_SYS_PTRACE",
        ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"),
    ),
    ("CAP_SYS_RAWIO", ("iopl", "ioperm")),
    ("CAP_SYS_TIME", ("settimeofday", "stime", "clock_settime", "clock_settime64")),
    ("CAP_SYS_TTY_CONFIG", ("vhangup",)),
    ("CAP_SYS_NICE", ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node")),
    ("CAP_SYSLOG", ("syslog",)),
    ("CAP_BPF", ("bpf",)),
    ("CAP_PERFMON", ("perf_event_open",)),
)

#: Architecture-specific names: (libseccomp arch names the rule applies to, names).
_BY_ARCH: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("ppc64le",), ("sync_file_range2", "swapcontext")),
    (
        ("arm", "arm64"),
        (
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ),
    ),
    (("amd64", "x32"), ("arch_prctl",)),
    (("amd64", "x32", "x86"), ("modify_ldt",)),
    (("s390", "s390x"), ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr")),
    (("riscv64",), ("riscv_flush_icache",)),
)

#: Values personality(2) may be called with: PER_LINUX, UNAME26, PER_LINUX32, UNAME26|PER_LINUX32,
#: and 0xffffffff (query).
_PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)

#: Go's GOARCH (plus ``uname -m`` spellings) -> libseccomp's name, as the rule filters use it.
_NATIVE = {
    "amd64": "amd64",
    "x86_64": "amd64",
    "arm64": "arm64",
    "aarch64": "arm64",
    "386": "x86",
    "arm": "arm",
    "loong64": "loong64",
    "mips64": "mips64",
    "mips64p32": "mips64n32",
    "mips64le": "mipsel64",
    "mips64p32le": "mips3l64n32",
    "mipsle": "mipsle",
    "ppc": "ppc",
    "ppc64": "ppc64",
    "ppc64le": "ppc64le",
    "riscv64": "riscv64",
    "s390": "s390",
    "s390x": "s390x",
}

#: libseccomp name -> the profile's ``architectures`` (native first, then the sub-architectures).
#: Architectures moby's profile has no entry for get an empty list, as in moby.
_ARCHES = {
    "amd64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "arm64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "mips64": ("SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"),
    "mips64n32": ("SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"),
    "mipsel64": ("SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"),
    "mips3l64n32": ("SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"),
    "s390x": ("SCMP_ARCH_S390X", "SCMP_ARCH_S390"),
    "riscv64": ("SCMP_ARCH_RISCV64",),
    "loong64": ("SCMP_ARCH_LOONGARCH64",),
}


class _Rule:
    """One entry of the profile plus moby's ``includes``/``excludes`` filter."""

    __slots__ = ("names", "action", "args", "errno", "cap", "not_cap", "arches", "not_arches", "min_kernel")

    def __init__(
        self,
        names: tuple[str, ...] | list[str],
        *,
        action: str = _ALLOW,
        args: tuple[dict[str, Any], ...] = (),
        errno: int | None = None,
        cap: str | None = None,
        not_cap: str | None = None,
        arches: tuple[str, ...] = (),
        not_arches: tuple[str, ...] = (),
        min_kernel: tuple[int, int] | None = None,
    ) -> None:
        self.names = tuple(names)
        self.action = action
        self.args = args
        self.errno = errno
        self.cap = cap
        self.not_cap = not_cap
        self.arches = arches
        self.not_arches = not_arches
        self.min_kernel = min_kernel

    def applies(self, caps: set[str] | frozenset[str], arch: str, kernel: tuple[int, int] | None) -> bool:
        if arch in self.not_arches or (self.not_cap is not None and self.not_cap in caps):
            return False
        if self.arches and arch not in self.arches:
            return False
        if self.cap is not None and self.cap not in caps:
            return False
        return self.min_kernel is None or kernel is None or kernel >= self.min_kernel

    def entry(self) -> dict[str, Any]:
        e: dict[str, Any] = {
            "names": list(self.names),
            "action": self.action,
            "args": [dict(a) for a in self.args],
        }
        if self.errno is not None:
            e["errnoRet"] = self.errno
        return e


def _arg(index: int, op: str, value: int, value_two: int = 0) -> dict[str, Any]:
    a: dict[str, Any] = {"index": index, "value": value, "op": op}
    if value_two:
        a["valueTwo"] = value_two
    return a


_RULES: tuple[_Rule, ...] | None = None


def _rules() -> tuple[_Rule, ...]:
    """The profile's rules in moby's order (built once, on first use)."""
    global _RULES
    if _RULES is not None:
        return _RULES
    s390 = ("s390", "s390x")
    rules = [
        _Rule(_ALWAYS.split()),
        # Unprivileged ptrace is safe from kernel 4.8 on (seccomp can no longer be bypassed by it).
        _Rule(("process_vm_readv", "process_vm_writev", "ptrace"), min_kernel=(4, 8)),
        # socket(2) for every address family but AF_ALG (38) and AF_VSOCK (40).
        _Rule(("socket",), args=(_arg(0, "SCMP_CMP_LT", _AF_ALG),)),
        _Rule(("socket",), args=(_arg(0, "SCMP_CMP_EQ", _AF_ALG + 1),)),
        _Rule(("socket",), args=(_arg(0, "SCMP_CMP_GT", _AF_VSOCK),)),
        *(_Rule(("personality",), args=(_arg(0, "SCMP_CMP_EQ", p),)) for p in _PERSONALITIES),
        *(_Rule(names, arches=arches) for arches, names in _BY_ARCH),
        *(_Rule(names, cap=cap) for cap, names in _BY_CAP[:2]),
        # Without CAP_SYS_ADMIN: clone only without namespace flags (flags are argument 1 on s390),
        # and clone3 (whose flags seccomp cannot see) fails with ENOSYS so libc falls back to clone.
        _Rule(
            ("clone",),
            args=(_arg(0, "SCMP_CMP_MASKED_EQ", _CLONE_NS_FLAGS),),
            not_cap="CAP_SYS_ADMIN",
            not_arches=s390,
        ),
        _Rule(
            ("clone",),
            args=(_arg(1, "SCMP_CMP_MASKED_EQ", _CLONE_NS_FLAGS),),
            not_cap="CAP_SYS_ADMIN",
            arches=s390,
        ),
        _Rule(("clone3",), action=_ERRNO, errno=_ENOSYS, not_cap="CAP_SYS_ADMIN"),
        *(_Rule(names, cap=cap) for cap, names in _BY_CAP[2:]),
    ]
    _RULES = tuple(rules)
    return _RULES


def default_profile(
    caps: set[str] | frozenset[str] | list[str] | tuple[str, ...],
    arch: str = "amd64",
    *,
    kernel: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Docker's default ``linux.seccomp`` for a container whose bounding set is ``caps``.

    ``arch`` is a Go architecture name (``amd64``, ``arm64``, ...; ``x86_64``/``aarch64`` also
    work).  ``kernel`` is the host's (major, minor) for the one kernel-gated rule (unprivileged
    ptrace needs 4.8); None assumes a current kernel.  Each call returns a fresh dict.
    """
    native = _NATIVE.get(arch)
    if native is None:
        raise InvalidArgument(f"seccomp: unsupported architecture {arch!r}")
    capset = frozenset(caps)
    return {
        "defaultAction": _ERRNO,
        "defaultErrnoRet": _EPERM,
        "architectures": list(_ARCHES.get(native, ())),
        "syscalls": [r.entry() for r in _rules() if r.applies(capset, native, kernel)],
    }
