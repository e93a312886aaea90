"""Pure parts of the runtime (no root needed): seccomp compiler, option and path planning, CLI parsing."""

from __future__ import annotations

import os
import struct

import pytest

from kran.runtime import cli, jsonc, ops, rootfs, seccomp
from kran.runtime.cgroups import spec_cgroup_path
from kran.sys import mount as m

pytestmark = pytest.mark.unit

X86 = seccomp.AUDIT_ARCH["x86_64"]


def bpf_run(prog, nr: int, args=(0,) * 6, arch: int = X86) -> int:
    """A tiny classic-BPF interpreter for the instructions the compiler emits."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, *[a & 0xFFFFFFFFFFFFFFFF for a in args])
    a = pc = 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == 0x20:
            a = struct.unpack_from("=I", data, k)[0]
        elif code == 0x54:
            a &= k
        elif code == 0x06:
            return k
        elif code in (0x15, 0x25, 0x35, 0x45):
            cond = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if cond else jf
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def test_seccomp_names_actions_and_default():
    prof = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [
            {"names": ["read", "write", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS"},
        ],
    }
    prog = seccomp.compile_profile(prof, "x86_64")
    assert bpf_run(prog, 0) == seccomp.RET_ALLOW  # read
    assert bpf_run(prog, 1) == seccomp.RET_ALLOW  # write
    assert bpf_run(prog, 83) == seccomp.RET_ERRNO | 13  # mkdir
    assert bpf_run(prog, 169) == seccomp.RET_KILL_PROCESS  # reboot
    assert bpf_run(prog, 2) == seccomp.RET_ERRNO | 38  # open: default
    assert bpf_run(prog, 0, arch=0x40000003) == seccomp.RET_ERRNO | 38  # i386: default action
    assert bpf_run(prog, 0x40000000 | 0) == seccomp.RET_ERRNO | seccomp.ENOSYS  # x32


@pytest.mark.parametrize(
    "op,value,two,cases",
    [
        ("SCMP_CMP_EQ", 5, 0, {5: True, 4: False, (1 << 32) | 5: False}),
        ("SCMP_CMP_NE", 5, 0, {5: False, 6: True, (1 << 32) | 5: True}),
        ("SCMP_CMP_GT", 5, 0, {6: True, 5: False, 4: False, 1 << 40: True}),
        ("SCMP_CMP_GE", 5, 0, {6: True, 5: True, 4: False}),
        ("SCMP_CMP_LT", 5, 0, {4: True, 5: False, 1 << 33: False}),
        ("SCMP_CMP_LE", 5, 0, {5: True, 6: False, 0: True}),
        ("SCMP_CMP_MASKED_EQ", 0x7E020000, 0, {0x10000: True, 0x20000: False, 0x10000000: False}),
        ("SCMP_CMP_GT", (1 << 32) + 1, 0, {(1 << 32) + 2: True, (1 << 32) + 1: False, 2: False}),
    ],
)
def test_seccomp_64bit_argument_comparisons(op, value, two, cases):
    prof = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 2, "value": value, "valueTwo": two, "op": op}],
            }
        ],
    }
    prog = seccomp.compile_profile(prof, "x86_64")
    for arg, match in cases.items():
        got = bpf_run(prog, 135, args=(0, 0, arg, 0, 0, 0))
        assert got == (seccomp.RET_ERRNO | 1 if match else seccomp.RET_ALLOW), (op, hex(arg))
    assert bpf_run(prog, 136, args=(0, 0, value, 0, 0, 0)) == seccomp.RET_ALLOW


def test_seccomp_rules_for_one_syscall_are_ored_args_anded():
    prof = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {
                "names": ["socket"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                    {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"},
                ],
            },
            {
                "names": ["socket"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_EQ"}],
            },
        ],
    }
    prog = seccomp.compile_profile(prof, "x86_64")
    allow, deny = seccomp.RET_ALLOW, seccomp.RET_ERRNO | 1
    assert bpf_run(prog, 41, (1, 2, 0, 0, 0, 0)) == allow
    assert bpf_run(prog, 41, (1, 3, 0, 0, 0, 0)) == deny
    assert bpf_run(prog, 41, (10, 9, 0, 0, 0, 0)) == allow
    assert bpf_run(prog, 41, (2, 2, 0, 0, 0, 0)) == deny


def test_seccomp_aarch64_table_and_errors():
    prog = seccomp.compile_profile(
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO"}]},
        "aarch64",
    )
    assert bpf_run(prog, 34, arch=seccomp.AUDIT_ARCH["aarch64"]) == seccomp.RET_ERRNO | 1
    with pytest.raises(seccomp.SeccompError):
        seccomp.compile_profile({"defaultAction": "SCMP_ACT_NOTIFY"}, "x86_64")


def test_cgroup_paths():
    assert spec_cgroup_path(None, "abc") == "kran-runtime/abc"
    assert spec_cgroup_path("/a/b/../c", "x") == "a/c"
    assert spec_cgroup_path("system.slice:docker:abc", "x") == "system.slice/docker-abc.scope"
    assert spec_cgroup_path("a-b.slice:kran:x1", "x") == "a.slice/a-b.slice/kran-x1.scope"


def test_mount_options():
    flags, prop, data = rootfs.parse_options(
        ["nosuid", "ro", "rw", "noexec", "mode=755", "size=1k", "rprivate"]
    )
    assert flags == m.MS_NOSUID | m.MS_NOEXEC
    assert prop == m.MS_PRIVATE | m.MS_REC
    assert data == "mode=755,size=1k"
    assert rootfs.parse_options(["rbind"])[0] == m.MS_BIND | m.MS_REC


def test_secure_join_never_leaves_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../etc", root / "a" / "rel")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    r = str(root)
    assert rootfs.secure_join(r, "/abs/passwd") == f"{r}/etc/passwd"
    assert rootfs.secure_join(r, "a/rel/x") == f"{r}/etc/x"
    assert rootfs.secure_join(r, "/../../x") == f"{r}/x"
    assert rootfs.secure_join(r, "/") == r
    with pytest.raises(OSError):
        rootfs.secure_join(r, "/loop1/x")


def test_signals():
    assert ops.parse_signal("KILL") == 9
    assert ops.parse_signal("SIGTERM") == 15
    assert ops.parse_signal("9") == 9
    assert ops.parse_signal("sigusr1") == 10
    assert ops.parse_signal("RTMIN+2") == 36
    with pytest.raises(Exception, match="unknown signal"):
        ops.parse_signal("NOPE")


def test_cli_flag_parsing():
    opts, rest = cli.parse(
        ["--bundle=/b", "-d", "--pid-file", "p", "id1", "--not-a-flag"], *cli._COMMANDS["run"]
    )
    assert opts == {"bundle": "/b", "detach": True, "pid_file": "p"}
    assert rest == ["id1", "--not-a-flag"]
    opts, rest = cli.parse(["-e", "A=1", "--env", "B=2", "--", "c", "ls"], *cli._COMMANDS["exec"])
    assert opts["env"] == ["A=1", "B=2"] and rest == ["c", "ls"]
    with pytest.raises(cli.UsageError):
        cli.parse(["--bogus"], *cli._COMMANDS["run"])


def test_exec_spec_overrides_the_container_process():
    cfg = {
        "process": {
            "args": ["sh"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL"]},
        }
    }
    p = ops.exec_spec(
        cfg, ["ls"], env=["A=1"], cwd="/tmp", user="5:6", tty=False, caps=["CAP_CHOWN"], no_new_privs=True
    )
    assert p["args"] == ["ls"] and p["env"] == ["PATH=/bin", "A=1"] and p["cwd"] == "/tmp"
    assert p["user"] == {"uid": 5, "gid": 6} and p["noNewPrivileges"] is True
    assert p["capabilities"]["bounding"] == ["CAP_KILL", "CAP_CHOWN"]
    assert cfg["process"]["args"] == ["sh"]  # not mutated


def test_jsonc_round_trip():
    doc = {"a": [1, 2.5, None, True], "b": {"c": 'é"\\'}, "e": {}, "f": []}
    assert jsonc.loads(jsonc.dumps(doc)) == doc
    assert jsonc.loads(jsonc.dumps(doc, 2)) == doc
    with pytest.raises(ValueError):
        jsonc.loads('{"a": 1} x')
    with pytest.raises(ValueError):
        jsonc.loads("{bad")


class RecordingKernel:
    """A fake of kran.sys.mount: records the calls instead of mounting."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.calls: list[tuple] = []

    def _rel(self, p):
        return p if p is None or not p.startswith(self.root) else "R" + p[len(self.root) :]

    def mount(self, source, target, fstype, flags=0, data=None):
        self.calls.append(("mount", self._rel(source), self._rel(target), fstype, flags, data or ""))

    def umount2(self, target, flags=0):
        self.calls.append(("umount2", self._rel(target), flags))

    def pivot_root(self, new_root, put_old):
        self.calls.append(("pivot_root", new_root, put_old))


def test_rootfs_mount_plan_for_the_default_spec(tmp_path):
    from kran.runtime.spec import default_spec

    root = tmp_path / "rootfs"
    for d in ("proc", "sys", "dev"):
        (root / d).mkdir(parents=True)
    k = RecordingKernel(str(root))
    cg = {"version": 1, "paths": {"memory": "/cg/memory/c1"}, "mounts": {"memory": "/sys/fs/cgroup/memory"}}
    rootfs.prepare(default_spec(), str(root), cg, False, k=k)
    B, REC, RO = m.MS_BIND, m.MS_REC, m.MS_RDONLY
    NS, ND, NE = m.MS_NOSUID, m.MS_NODEV, m.MS_NOEXEC
    assert k.calls == [
        ("mount", None, "/", None, m.MS_PRIVATE | REC, ""),
        ("mount", "R", "R", None, B | REC, ""),
        ("mount", "proc", "R/proc", "proc", 0, ""),
        ("mount", "tmpfs", "R/dev", "tmpfs", NS | m.MS_STRICTATIME, "mode=755,size=65536k"),
        ("mount", "devpts", "R/dev/pts", "devpts", NS | NE, "newinstance,ptmxmode=0666,mode=0620,gid=5"),
        ("mount", "shm", "R/dev/shm", "tmpfs", NS | NE | ND, "mode=1777,size=65536k"),
        ("mount", "mqueue", "R/dev/mqueue", "mqueue", NS | NE | ND, ""),
        ("mount", "sysfs", "R/sys", "sysfs", NS | NE | ND | RO, ""),
        ("mount", "tmpfs", "R/sys/fs/cgroup", "tmpfs", NS | NE | ND, "mode=755"),
        ("mount", "/cg/memory/c1", "R/sys/fs/cgroup/memory", None, B, ""),
        (
            "mount",
            None,
            "R/sys/fs/cgroup/memory",
            None,
            m.MS_REMOUNT | B | NS | NE | ND | m.MS_RELATIME | RO,
            "",
        ),
        ("mount", None, "R/sys/fs/cgroup", None, m.MS_REMOUNT | RO | NS | ND | NE, "mode=755"),
    ] + [
        ("mount", f"/dev/{n}", f"R/dev/{n}", None, B, "")
        for n in ("null", "zero", "full", "random", "urandom", "tty")
    ]
    assert os.readlink(root / "dev" / "ptmx") == "pts/ptmx"
    assert os.readlink(root / "dev" / "fd") == "/proc/self/fd"


def test_finalize_plan_masks_and_readonly_paths(tmp_path):
    spec = {
        "root": {"readonly": True},
        "linux": {"maskedPaths": ["/proc/acpi", "/nonexistent-kt"], "readonlyPaths": ["/proc/sys"]},
    }
    k = RecordingKernel("/nowhere")
    rootfs.finalize(spec, k=k)
    assert k.calls == [
        ("mount", "/proc/sys", "/proc/sys", None, m.MS_BIND | m.MS_REC, ""),
        ("mount", None, "/proc/sys", None, m.MS_REMOUNT | m.MS_BIND | m.MS_RDONLY | m.MS_REC, ""),
        ("mount", "tmpfs", "/proc/acpi", "tmpfs", m.MS_RDONLY, ""),
        ("mount", "/dev/null", "/nonexistent-kt", None, m.MS_BIND, ""),
        ("mount", None, "/", None, m.MS_REMOUNT | m.MS_BIND | m.MS_RDONLY, ""),
    ]
