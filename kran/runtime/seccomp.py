"""Compile an OCI ``linux.seccomp`` profile into a classic BPF program (pure; no kernel access).

Program layout (struct seccomp_data: nr @0, arch @4, instruction_pointer @8, args[6] @16)::

    ld arch; jeq <native AUDIT_ARCH>, +1; ret <default action>   (foreign arch: default action)
    ld nr                                       (x86_64: nr >= 0x40000000 is x32 -> ERRNO(ENOSYS))
    per rule and syscall:  jeq nr ?  [argument tests] ret action  : next
    ret <default action>

Arguments are 64-bit and BPF is 32-bit: each comparison tests the high word, then the low word
(little-endian: the low word is at the lower offset).  Several rules for one syscall are OR-ed,
the conditions inside a rule AND-ed, as libseccomp does.  Unknown syscall names are ignored
(runc/libseccomp do the same for names the kernel does not know).
"""

from __future__ import annotations

# BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGT_K = 0x25
_JGE_K = 0x35
_JSET_K = 0x45
_ALU_AND_K = 0x54
_RET_K = 0x06

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_OCI_ARCH = {"SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_AARCH64": "aarch64"}
EPERM, ENOSYS = 1, 38


class SeccompError(ValueError):
    pass


def action_value(action: str, errno_ret: int | None) -> int:
    if action in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return RET_KILL_THREAD
    if action == "SCMP_ACT_KILL_PROCESS":
        return RET_KILL_PROCESS
    if action == "SCMP_ACT_TRAP":
        return RET_TRAP
    if action == "SCMP_ACT_ERRNO":
        return RET_ERRNO | ((EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if action == "SCMP_ACT_TRACE":
        return RET_TRACE | ((EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if action == "SCMP_ACT_LOG":
        return RET_LOG
    if action == "SCMP_ACT_ALLOW":
        return RET_ALLOW
    raise SeccompError(f"unsupported seccomp action {action!r}")


def syscall_table(machine: str) -> dict[str, int]:
    if machine == "x86_64":
        from kran.sys.syscalls_x86_64 import SYSCALLS
    elif machine == "aarch64":
        from kran.sys.syscalls_aarch64 import SYSCALLS
    else:
        raise SeccompError(f"seccomp: unsupported architecture {machine}")
    return SYSCALLS


class _Asm:
    """Instructions with symbolic forward jump targets, resolved by ``link``."""

    def __init__(self) -> None:
        self.code: list[list] = []  # [op, jt, jf, k]; jt/jf may be label names
        self.labels: dict[str, int] = {}
        self._n = 0

    def label(self) -> str:
        self._n += 1
        return f"L{self._n}"

    def here(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def emit(self, op: int, k: int, jt: object = 0, jf: object = 0) -> None:
        self.code.append([op, jt, jf, k & 0xFFFFFFFF])

    def link(self) -> list[tuple[int, int, int, int]]:
        out = []
        for i, (op, jt, jf, k) in enumerate(self.code):
            offs = []
            for j in (jt, jf):
                if isinstance(j, str):
                    j = self.labels[j] - i - 1
                if not 0 <= j <= 255:
                    raise SeccompError("seccomp: jump too long (rule too complex)")
                offs.append(j)
            out.append((op, offs[0], offs[1], k))
        if len(out) > 4096:
            raise SeccompError("seccomp: program longer than 4096 instructions")
        return out


def _arg_test(a: _Asm, arg: dict, true: str, false: str) -> None:
    """Jump to ``true`` when the 64-bit comparison holds, else to ``false``."""
    idx = int(arg["index"])
    value = int(arg.get("value", 0)) & 0xFFFFFFFFFFFFFFFF
    two = int(arg.get("valueTwo", 0)) & 0xFFFFFFFFFFFFFFFF
    op = arg["op"]
    lo_off, hi_off = 16 + 8 * idx, 16 + 8 * idx + 4
    vhi, vlo = value >> 32, value & 0xFFFFFFFF
    if op in ("SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_MASKED_EQ"):
        t, f = (true, false) if op != "SCMP_CMP_NE" else (false, true)
        if op == "SCMP_CMP_MASKED_EQ":  # (arg & value) == valueTwo
            a.emit(_LD_W_ABS, hi_off)
            a.emit(_ALU_AND_K, vhi)
            nxt = a.label()
            a.emit(_JEQ_K, two >> 32, nxt, f)
            a.here(nxt)
            a.emit(_LD_W_ABS, lo_off)
            a.emit(_ALU_AND_K, vlo)
            a.emit(_JEQ_K, two & 0xFFFFFFFF, t, f)
        else:
            a.emit(_LD_W_ABS, hi_off)
            nxt = a.label()
            a.emit(_JEQ_K, vhi, nxt, f)
            a.here(nxt)
            a.emit(_LD_W_ABS, lo_off)
            a.emit(_JEQ_K, vlo, t, f)
        return
    # ordered comparisons: GT/GE directly, LT/LE as their negation
    neg = op in ("SCMP_CMP_LT", "SCMP_CMP_LE")
    strict = op in ("SCMP_CMP_GT", "SCMP_CMP_LE")  # LE == not GT, LT == not GE
    if op not in ("SCMP_CMP_GT", "SCMP_CMP_GE", "SCMP_CMP_LT", "SCMP_CMP_LE"):
        raise SeccompError(f"unsupported seccomp operator {op!r}")
    t, f = (false, true) if neg else (true, false)
    a.emit(_LD_W_ABS, hi_off)
    eq = a.label()
    a.emit(_JGT_K, vhi, t, eq)
    a.here(eq)
    lo = a.label()
    a.emit(_JEQ_K, vhi, lo, f)
    a.here(lo)
    a.emit(_LD_W_ABS, lo_off)
    a.emit(_JGT_K if strict else _JGE_K, vlo, t, f)


def compile_profile(profile: dict, machine: str) -> list[tuple[int, int, int, int]]:
    archs = [_OCI_ARCH.get(x) for x in profile.get("architectures") or []]
    if archs and machine not in archs:
        # The profile does not cover this machine: libseccomp would still install the native filter.
        pass
    table = syscall_table(machine)
    default = action_value(profile.get("defaultAction", "SCMP_ACT_ALLOW"), profile.get("defaultErrnoRet"))
    a = _Asm()
    a.emit(_LD_W_ABS, 4)
    native = a.label()
    a.emit(_JEQ_K, AUDIT_ARCH[machine], native, 0)
    a.emit(_RET_K, default)
    a.here(native)
    a.emit(_LD_W_ABS, 0)
    if machine == "x86_64":
        nx = a.label()
        a.emit(_JGE_K, 0x40000000, 0, nx)  # x32 ABI syscall numbers
        a.emit(_RET_K, RET_ERRNO | ENOSYS)
        a.here(nx)
    for rule in profile.get("syscalls") or []:
        act = action_value(rule["action"], rule.get("errnoRet"))
        if act == default:
            continue
        args = rule.get("args") or []
        for name in rule.get("names") or ([rule["name"]] if rule.get("name") else []):
            nr = table.get(name)
            if nr is None:
                continue
            nxt = a.label()
            if not args:
                a.emit(_JEQ_K, nr, 0, 1)
                a.emit(_RET_K, act)
                continue
            body = a.label()
            a.emit(_JEQ_K, nr, body, nxt)
            a.here(body)
            fail = a.label()
            for i, arg in enumerate(args):
                ok = a.label()
                _arg_test(a, arg, ok, fail)
                a.here(ok)
                del i
            a.emit(_RET_K, act)
            a.here(fail)
            a.emit(_LD_W_ABS, 0)  # the argument tests clobbered A: reload nr
            a.here(nxt)
    a.emit(_RET_K, default)
    return a.link()
