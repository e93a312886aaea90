"""kran.engine.seccomp_default against moby's default seccomp profile and capability rules.

Reference: ``github.com/moby/profiles/seccomp`` v0.2.3 as vendored by moby master
(``default_linux.go``, ``default.json``, ``seccomp_linux.go``) and moby's
``daemon/pkg/oci/caps`` (defaults.go, utils.go) plus the Docker CLI's ``EffectiveCapAddCapDrop``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kran.engine.seccomp_default import ALL_CAPS, DEFAULT_CAPS, default_profile, normalize_caps
from kran.errors import InvalidArgument

pytestmark = pytest.mark.unit

ALLOW = "SCMP_ACT_ALLOW"

#: Distinct names moby's default.json allows on amd64 with the default capabilities on a kernel
#: >= 4.8: the 361-name unconditional block, process_vm_readv/process_vm_writev/ptrace (minKernel
#: 4.8), socket, personality, arch_prctl, modify_ldt, clone (masked, no CAP_SYS_ADMIN) and chroot
#: (CAP_SYS_CHROOT) = 370.  Counted from moby/profiles seccomp v0.2.3 default.json.
MOBY_DEFAULT_AMD64_ALLOWED = 370


def rules_for(profile: dict, name: str) -> list[dict]:
    return [s for s in profile["syscalls"] if name in s["names"]]


def allowed(profile: dict) -> set[str]:
    return {n for s in profile["syscalls"] if s["action"] == ALLOW for n in s["names"]}


def unconditionally_allowed(profile: dict, name: str) -> bool:
    return any(s["action"] == ALLOW and not s["args"] for s in rules_for(profile, name))


@pytest.fixture
def default() -> dict:
    return default_profile(set(DEFAULT_CAPS))


@pytest.fixture
def admin() -> dict:
    return default_profile(set(DEFAULT_CAPS) | {"CAP_SYS_ADMIN"})


# -- shape ---------------------------------------------------------------------------------------


def test_shape_and_default_action(default):
    assert default["defaultAction"] == "SCMP_ACT_ERRNO"
    assert default["defaultErrnoRet"] == 1
    for s in default["syscalls"]:
        assert set(s) <= {"names", "action", "args", "errnoRet"}
        assert s["names"] and all(isinstance(n, str) for n in s["names"])
        assert isinstance(s["args"], list)
    # JSON-ready, and a fresh object each call
    assert json.loads(json.dumps(default)) == default
    default["syscalls"].clear()
    assert default_profile(set(DEFAULT_CAPS))["syscalls"]


def test_architectures():
    assert default_profile(set())["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert default_profile(set(), "arm64")["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert default_profile(set(), "aarch64") == default_profile(set(), "arm64")
    assert default_profile(set(), "s390x")["architectures"] == ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]
    with pytest.raises(InvalidArgument):
        default_profile(set(), "vax")


def test_arch_specific_names():
    amd64 = allowed(default_profile(set(DEFAULT_CAPS), "amd64"))
    arm64 = allowed(default_profile(set(DEFAULT_CAPS), "arm64"))
    assert {"arch_prctl", "modify_ldt"} <= amd64
    assert not {"arm_fadvise64_64", "cacheflush", "set_tls"} & amd64
    assert {"arm_fadvise64_64", "cacheflush", "set_tls", "sync_file_range2"} <= arm64
    assert not {"arch_prctl", "modify_ldt"} & arm64


def test_allowed_count_matches_moby(default):
    assert abs(len(allowed(default)) - MOBY_DEFAULT_AMD64_ALLOWED) <= 3


# -- what the default profile allows and denies ------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["read", "write", "openat", "execve", "futex", "exit_group", "mmap", "rt_sigaction", "chroot"]
)
def test_common_syscalls_allowed(default, name):
    assert unconditionally_allowed(default, name)


@pytest.mark.parametrize(
    "name",
    [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "kexec_load",
        "reboot",
        "init_module",
        "finit_module",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "open_by_handle_at",
        "swapon",
        "acct",
        "settimeofday",
        "io_uring_setup",
    ],
)
def test_dangerous_syscalls_denied(default, name):
    assert rules_for(default, name) == []


def test_clone_masks_namespace_flags(default):
    (rule,) = rules_for(default, "clone")
    assert rule["action"] == ALLOW
    (arg,) = rule["args"]
    assert arg["index"] == 0 and arg["op"] == "SCMP_CMP_MASKED_EQ"
    assert arg["value"] == 0x7E020000  # CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET}
    assert arg.get("valueTwo", 0) == 0


def test_clone_on_s390_checks_argument_1():
    (rule,) = rules_for(default_profile(set(DEFAULT_CAPS), "s390x"), "clone")
    assert rule["args"][0]["index"] == 1


def test_clone3_enosys_without_sys_admin(default):
    (rule,) = rules_for(default, "clone3")
    assert rule["action"] == "SCMP_ACT_ERRNO" and rule["errnoRet"] == 38


def test_socket_denies_vsock_and_alg(default):
    rules = rules_for(default, "socket")
    assert rules and all(r["action"] == ALLOW and len(r["args"]) == 1 for r in rules)

    def permitted(family: int) -> bool:
        ops = {"SCMP_CMP_LT": int.__lt__, "SCMP_CMP_EQ": int.__eq__, "SCMP_CMP_GT": int.__gt__}
        return any(ops[r["args"][0]["op"]](family, r["args"][0]["value"]) for r in rules)

    assert permitted(1) and permitted(2) and permitted(10) and permitted(16) and permitted(39)
    assert not permitted(40)  # AF_VSOCK
    assert not permitted(38)  # AF_ALG


def test_personality_values(default):
    values = {r["args"][0]["value"] for r in rules_for(default, "personality")}
    assert values == {0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF}
    assert all(r["args"][0]["op"] == "SCMP_CMP_EQ" for r in rules_for(default, "personality"))


def test_ptrace_follows_kernel_version(default):
    # moby allows ptrace/process_vm_* to everyone on kernels >= 4.8, CAP_SYS_PTRACE adds kcmp etc.
    assert unconditionally_allowed(default, "ptrace")
    assert unconditionally_allowed(default, "process_vm_readv")
    assert "kcmp" not in allowed(default)
    old = default_profile(set(DEFAULT_CAPS), kernel=(4, 4))
    assert "ptrace" not in allowed(old)
    old_ptrace = default_profile(set(DEFAULT_CAPS) | {"CAP_SYS_PTRACE"}, kernel=(4, 4))
    assert {"ptrace", "kcmp", "pidfd_getfd", "process_madvise"} <= allowed(old_ptrace)


# -- capability-gated groups -------------------------------------------------------------------------


def test_sys_admin_group(admin):
    for name in ("mount", "umount2", "unshare", "setns", "bpf", "perf_event_open", "sethostname", "fsopen"):
        assert unconditionally_allowed(admin, name), name
    # the plain clone/clone3 allow replaces the restricted rules
    assert [r["args"] for r in rules_for(admin, "clone")] == [[]]
    assert [r["action"] for r in rules_for(admin, "clone3")] == [ALLOW]


@pytest.mark.parametrize(
    ("cap", "names"),
    [
        ("CAP_SYS_BOOT", ["reboot"]),
        ("CAP_SYS_CHROOT", ["chroot"]),
        ("CAP_SYS_MODULE", ["init_module", "finit_module", "delete_module"]),
        ("CAP_SYS_PACCT", ["acct"]),
        ("CAP_SYS_PTRACE", ["kcmp", "pidfd_getfd", "process_madvise"]),
        ("CAP_SYS_RAWIO", ["iopl", "ioperm"]),
        ("CAP_SYS_TIME", ["settimeofday", "stime", "clock_settime"]),
        ("CAP_SYS_TTY_CONFIG", ["vhangup"]),
        ("CAP_SYS_NICE", ["mbind", "set_mempolicy", "get_mempolicy"]),
        ("CAP_SYSLOG", ["syslog"]),
        ("CAP_BPF", ["bpf"]),
        ("CAP_PERFMON", ["perf_event_open"]),
        ("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
    ],
)
def test_capability_groups(cap, names):
    without = allowed(default_profile(set()))
    with_cap = default_profile({cap})
    for name in names:
        assert name not in without
        assert unconditionally_allowed(with_cap, name), (cap, name)
    # the other groups stay closed
    assert "mount" not in allowed(with_cap)


def test_capabilities_never_unlock_kexec():
    assert "kexec_load" not in allowed(default_profile(set(ALL_CAPS)))


def test_import_is_light():
    # the rule list is built on first use, and the module itself imports no json
    code = "import kran.engine.seccomp_default as m; print(m._RULES is None, hasattr(m, 'json'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]


# -- capabilities ----------------------------------------------------------------------------------


def test_cap_lists():
    assert len(DEFAULT_CAPS) == 14 and set(DEFAULT_CAPS) <= set(ALL_CAPS)
    assert len(ALL_CAPS) == 41 and len(set(ALL_CAPS)) == 41
    assert ALL_CAPS[0] == "CAP_CHOWN"
    assert ALL_CAPS[21] == "CAP_SYS_ADMIN"
    assert ALL_CAPS[38:] == ("CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE")


def test_normalize_defaults():
    assert normalize_caps([], []) == sorted(DEFAULT_CAPS)


def test_normalize_add_drop_spellings():
    got = normalize_caps(["net_admin", "CAP_SYS_PTRACE", "Sys_Time"], ["cap_chown", "MKNOD"])
    assert "CAP_NET_ADMIN" in got and "CAP_SYS_PTRACE" in got and "CAP_SYS_TIME" in got
    assert "CAP_CHOWN" not in got and "CAP_MKNOD" not in got
    assert got == sorted(got) and len(got) == len(set(got))


def test_normalize_add_all():
    assert normalize_caps(["ALL"], []) == sorted(ALL_CAPS)
    assert normalize_caps(["all"], ["sys_admin", "NET_ADMIN"]) == sorted(
        set(ALL_CAPS) - {"CAP_SYS_ADMIN", "CAP_NET_ADMIN"}
    )
    assert normalize_caps(["ALL"], ["ALL"]) == sorted(ALL_CAPS)


def test_normalize_drop_all():
    assert normalize_caps([], ["ALL"]) == []
    assert normalize_caps(["chown", "NET_BIND_SERVICE"], ["ALL"]) == ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]


def test_normalize_add_wins_over_drop():
    assert "CAP_NET_ADMIN" in normalize_caps(["NET_ADMIN"], ["NET_ADMIN"])
    assert "CAP_CHOWN" in normalize_caps(["CHOWN"], ["CHOWN"])


def test_normalize_duplicates():
    assert normalize_caps(["CHOWN", "cap_chown"], []) == sorted(DEFAULT_CAPS)


@pytest.mark.parametrize(
    ("add", "drop", "bad"),
    [(["FOO"], [], "CAP_FOO"), ([], ["cap_bogus"], "CAP_BOGUS"), (["CAP_ALL"], [], "CAP_ALL")],
)
def test_normalize_unknown(add, drop, bad):
    with pytest.raises(InvalidArgument) as e:
        normalize_caps(add, drop)
    assert str(e.value) == f'unknown capability: "{bad}"'
