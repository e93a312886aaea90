#!/usr/bin/env python3
"""Rootless kran against rootful kran (issue #12).  Run as root from the repo:

    .venv/bin/python bench/rootless.py [RUNS]

Makes a throwaway user the way tests/rootless/conftest.py does (useradd, 65536 subordinate ids
from /etc/subuid, a private XDG_RUNTIME_DIR) and times whole processes -- from the start of the
command to its exit -- of the same kran, as that user (rootless) and as root (rootful), run in
turn (A B A B ...) so that a drift of the machine's speed hits both; the ratio is taken pair by
pair and its median printed:

1. ``kran run --rm --network none busybox true``
2. ``kran run --rm busybox true`` (the default bridge: rootless, its bridge and veths live in the
   user's rootless netns behind slirp4netns)
3. ``kran pull`` of Debian's minbase rootfs (bench/images.py's cached debootstrap tar without its
   /dev device nodes, as images on registries come: one uncompressed layer) from Debian's
   docker-registry on 127.0.0.1; each pull is followed, untimed, by ``kran rmi`` so that the
   next one downloads and unpacks again
4. rootless ``podman run --rm --network none busybox true`` as the same user against rootless
   kran, when podman is installed (the output says so when it is not)

RUNS pairs (default 15; pulls: a third of it, at least 3) after one warm-up of each command.
Rootful kran runs in a private network namespace made for the run (its bridge and nft rules
vanish with it); rootless kran needs none, its network lives in the user's namespace anyway.
Both sides use the same interpreter and kran, the default fsync behaviour and no config file.

The user, its subordinate-id lines, its processes (pause process, slirp4netns, monitors) and all
its files are removed at the end, also on Ctrl-C or SIGTERM; so are the registry, the rootful
state root and the network namespace.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

# what a killed earlier run left is found by this GECOS (the tests sweep their own mark, not ours)
MARK = "kran rootless bench user"
BUSYBOX_CHANGES = ("-c", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "-c", 'CMD ["sh"]')


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: unwind through the finally blocks like Ctrl-C does."""


_signalled: list[str] = []


def _on_signal(signum: int, _frame) -> None:
    _signalled.append(signal.Signals(signum).name)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(_signalled[-1])


def _failed(what: str, code: int, err: bytes) -> None:
    if _signalled:  # Ctrl-C reaches the timed kran too: its exit is the signal's, not a failure
        raise KeyboardInterrupt
    raise SystemExit(f"{what} failed ({code}):\n{err.decode(errors='replace')}")


# --- timing -----------------------------------------------------------------------------------

class Side:
    """One way to run a command: as root (in the bench's netns) or as the test user."""

    def __init__(self, name: str, env: dict[str, str], cwd: str, *, uid: int | None = None, gid: int | None = None,
                 netns: str = "") -> None:
        self.name, self.env, self.cwd, self.uid, self.gid, self.netns = name, env, cwd, uid, gid, netns

    def _preexec(self):
        if not self.netns:
            return None
        path = self.netns

        def enter() -> None:
            from kran.sys.ns import CLONE_NEWNET, setns

            fd = os.open(path, os.O_RDONLY)
            setns(fd, CLONE_NEWNET)
            os.close(fd)

        return enter

    def _popen(self, argv: list[str], stdin, stdout, stderr) -> subprocess.Popen:
        kw = {} if self.uid is None else {"user": self.uid, "group": self.gid, "extra_groups": []}
        return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, env=self.env, cwd=self.cwd,
                                preexec_fn=self._preexec(), **kw)

    def run(self, *argv: str, input: bytes | None = None, check: bool = True) -> str:
        """Untimed: set-up and clean-up steps; returns stdout."""
        p = self._popen(list(argv), subprocess.PIPE if input is not None else subprocess.DEVNULL,
                        subprocess.PIPE, subprocess.PIPE)
        out, err = p.communicate(input, timeout=600)
        if check and p.returncode != 0:
            _failed(f"{self.name}: {' '.join(argv)}", p.returncode, err)
        return out.decode(errors="replace")

    def timed(self, argv: list[str]) -> float:
        """Wall seconds of one run of argv, from just before the fork to just after the reap."""
        with tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            p = self._popen(argv, subprocess.DEVNULL, subprocess.DEVNULL, err)
            p.wait()
            t = time.perf_counter() - t0
            if p.returncode != 0:
                err.seek(0)
                _failed(f"{self.name}: {' '.join(argv)}", p.returncode, err.read())
        return t


def paired(a: Callable[[], float], b: Callable[[], float], runs: int) -> tuple[list[float], list[float]]:
    a(), b()  # warm-up: page cache, bytecode, the bridge and the pause process made once
    ta, tb = [], []
    for _ in range(runs):
        ta.append(a())
        tb.append(b())
    return ta, tb


def _ms(ts: list[float]) -> str:
    return f"{statistics.median(ts) * 1000:8.1f} ms ({min(ts) * 1000:.0f}-{max(ts) * 1000:.0f})"


def report(what: str, a_name: str, ta: list[float], b_name: str, tb: list[float]) -> None:
    ratios = [x / y for x, y in zip(ta, tb, strict=True)]
    print(f"{what}, median of {len(ta)} pairs (min-max):")
    print(f"  {a_name:<10} {_ms(ta)}")
    print(f"  {b_name:<10} {_ms(tb)}")
    print(f"  {a_name}/{b_name}: median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})",
          flush=True)


# --- the test user ----------------------------------------------------------------------------

def make_user():
    """tests/rootless/conftest.py's User, under this bench's own mark so that a test session
    starting meanwhile (it sweeps users with its mark) leaves it alone."""
    from tests.rootless.conftest import User

    u = User()
    subprocess.run(["usermod", "-c", MARK, u.name], check=True, capture_output=True)
    u.env.pop("KRAN_NOSYNC", None)  # the default, as on the rootful side
    return u


def sweep_stale_users() -> None:
    import pwd

    from tests.rootless.conftest import _kill_user_processes, _remove_lines

    for pw in pwd.getpwall():
        if pw.pw_gecos == MARK:
            _kill_user_processes(pw.pw_uid, 0)
            subprocess.run(["userdel", pw.pw_name], capture_output=True)
            _remove_lines(pw.pw_name, str(pw.pw_uid))
            shutil.rmtree(pw.pw_dir, ignore_errors=True)
            shutil.rmtree(f"{pw.pw_dir}-run", ignore_errors=True)


def without_devices(tar: Path) -> Path:
    """The tar without its character and block devices (cached next to it).  debootstrap makes
    /dev/null and friends; images on registries have an empty /dev (the runtime mounts one), and
    no process in a user namespace may mknod a device, so Docker and Podman rootless skip them."""
    import tarfile

    out = tar.with_name(tar.stem + "-nodev.tar")
    if out.exists():
        return out
    with tarfile.open(tar) as t:
        devices = [m.name for m in t if m.ischr() or m.isblk()]
    tmp = out.with_suffix(".tmp")
    shutil.copyfile(tar, tmp)
    if devices:
        subprocess.run(["tar", "--delete", "-f", str(tmp), *devices], check=True)
    os.rename(tmp, out)
    return out


# --- the machine ------------------------------------------------------------------------------

def machine() -> str:
    cg = "cgroup v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "cgroup v1"
    try:
        distro = next(ln.split("=", 1)[1].strip().strip('"') for ln in open("/etc/os-release")
                      if ln.startswith("PRETTY_NAME="))
    except (OSError, StopIteration):
        distro = "?"
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, {cg}, "
            f"{distro}, kernel {platform.release()}, Python {platform.python_version()}")


def tool_version(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True)
    except OSError:
        return "?"
    return ((p.stdout or p.stderr).strip().splitlines() or ["?"])[0]


# --- main -------------------------------------------------------------------------------------

def main() -> int:
    if os.geteuid() != 0:
        sys.exit("bench/rootless.py: run as root (it makes and removes a test user)")
    for tool in ("newuidmap", "newgidmap", "slirp4netns", "useradd", "docker-registry"):
        if not shutil.which(tool):
            sys.exit(f"bench/rootless.py: {tool} is required (scripts/setup.sh installs it)")
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_RUNS", "15"))
    pull_runs = max(3, runs // 3)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)

    import images as image_bench

    from kran.network import netns as nsmod

    sweep_stale_users()
    tun = Path("/dev/net/tun")
    tun_mode = tun.stat().st_mode & 0o777 if tun.exists() else None
    base = Path(tempfile.mkdtemp(prefix="kran-bench-rootless-"))
    base.chmod(0o755)  # the user reads the busybox tar from here
    root = base / "root"
    ns = f"/run/kran-bench-rootless-{uuid.uuid4().hex[:8]}"
    user = registry = None
    made_ns = False
    try:
        if tun_mode is not None and tun_mode != 0o666:
            tun.chmod(0o666)  # as Debian's udev sets it; put back at the end
        nsmod.create(ns)
        made_ns = True
        user = make_user()
        prefix = user.prefix  # the same interpreter and kran for both sides
        extra = {k: v for k, v in user.env.items() if k in ("PYTHONPATH", "KRAN_RUNTIME")}
        rootful = Side("rootful", {"PATH": user.env["PATH"], "HOME": "/root", "LANG": "C.UTF-8",
                                   "KRAN_ROOT": str(root), "KRAN_CONFIG": "/nonexistent",
                                   "KRAN_CERTS_D": "/nonexistent", **extra}, str(base), netns=ns)
        rootless = Side("rootless", dict(user.env), str(user.home), uid=user.uid, gid=user.gid)

        print(machine())
        print(f"kran {REPO}, user {user.name} (uid {user.uid}, subuids {user.subuid}-{user.subuid + 65535}); "
              f"{tool_version(['slirp4netns', '--version'])}; {RUNS_NOTE.format(runs=runs, pull_runs=pull_runs)}\n",
              flush=True)

        bb = base / "busybox.tar"
        with open(bb, "wb") as f:
            subprocess.run(["sh", str(REPO / "scripts" / "busybox-rootfs.sh")], stdout=f, check=True)
        bb.chmod(0o644)
        for side in (rootful, rootless):
            side.run(*prefix, "import", *BUSYBOX_CHANGES, str(bb), "busybox")

        for what, net in (("kran run --rm --network none busybox true", ["--network", "none"]),
                          ("kran run --rm busybox true (default bridge)", [])):
            argv = [*prefix, "run", "--rm", *net, "busybox", "true"]
            ta, tb = paired(lambda argv=argv: rootless.timed(argv), lambda argv=argv: rootful.timed(argv), runs)
            report(what, "rootless", ta, "rootful", tb)

        # pull: a source store pushes the image; rootful and rootless pull it into their own
        from tests.registry.conftest import Registry

        tar = without_devices(image_bench.rootfs_tar())
        registry = Registry(base / "registry")
        ref = f"{registry.host}/debian:bench"
        src = Side("source", {**rootful.env, "KRAN_ROOT": str(base / "src")}, str(base), netns="")
        src.run(*prefix, "import", str(tar), ref)
        src.run(*prefix, "push", "-q", ref)
        shutil.rmtree(base / "src")

        def pull(side: Side) -> float:
            layers = Path(side.env.get("KRAN_ROOT") or user.data) / "layers"
            before = set(os.listdir(layers)) if layers.exists() else set()
            t = side.timed([*prefix, "pull", "-q", ref])
            side.run(*prefix, "rmi", ref)  # layer and blobs go with the last image using them
            if set(os.listdir(layers)) - before:
                raise SystemExit(f"{side.name}: rmi {ref} left its layer: the next pull would not unpack it")
            return t

        # the registry runs in the host's namespace: rootful pulls from there too (kran's
        # rootless processes stay in the host's network namespace, so both reach 127.0.0.1)
        host_rootful = Side("rootful", rootful.env, rootful.cwd)
        ta, tb = paired(lambda: pull(rootless), lambda: pull(host_rootful), pull_runs)
        size = tar.stat().st_size / 1e6
        report(f"kran pull of Debian minbase ({size:.0f} MB, 1 uncompressed layer) from 127.0.0.1", "rootless", ta,
               "rootful", tb)

        podman_bench(rootless, prefix, runs)
    except (KeyboardInterrupt, Interrupted):
        print(f"\n{_signalled[0] if _signalled else 'SIGINT'}: cleaning up", file=sys.stderr)
        return 130 if not _signalled or _signalled[0] == "SIGINT" else 143
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        cleanup(user, registry, root, ns if made_ns else "", base, tun, tun_mode)
    return 0


RUNS_NOTE = "{runs} pairs per run comparison, {pull_runs} per pull"


def podman_bench(rootless: Side, prefix: list[str], runs: int) -> None:
    podman = shutil.which("podman")
    if not podman:
        print("\npodman run --rm (rootless): podman is not installed here, not measured")
        return
    archive = Path(rootless.cwd) / "busybox-save.tar"
    rootless.run(*prefix, "save", "-o", str(archive), "busybox")
    load = subprocess.run([*_as(rootless), podman, "load", "-i", str(archive)], capture_output=True, text=True)
    if load.returncode != 0:
        print(f"\npodman run --rm (rootless): podman load failed here: {_last(load.stderr)}")
        return
    argv = [podman, "run", "--rm", "--network", "none", "busybox", "true"]
    probe = subprocess.run([*_as(rootless), *argv], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"\npodman run --rm (rootless): failed here: {_last(probe.stderr)}")
        return
    kran_argv = [*prefix, "run", "--rm", "--network", "none", "busybox", "true"]
    ta, tb = paired(lambda: rootless.timed(kran_argv), lambda: rootless.timed(argv), runs)
    print()
    report(f"rootless run --rm --network none busybox true ({tool_version([podman, '--version'])})", "kran", ta,
           "podman", tb)


def _as(side: Side) -> list[str]:
    return ["setpriv", f"--reuid={side.uid}", f"--regid={side.gid}", "--init-groups", "--reset-env", "env",
            *[f"{k}={v}" for k, v in side.env.items()]]


def _last(text: str) -> str:
    return (text.strip().splitlines() or ["?"])[-1][:120]


def cleanup(user, registry, root: Path, ns: str, base: Path, tun: Path, tun_mode: int | None) -> None:
    errors = []
    if user is not None:
        try:
            user.remove()  # its containers, processes, subuid/subgid lines, home and runtime dir
        except Exception as e:  # keep going: the rest must go too
            errors.append(f"removing user {user.name}: {e}")
    if registry is not None:
        registry.stop()
    if root.exists():
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KRAN_ROOT": str(root), "KRAN_CONFIG": "/nonexistent"}
        ids = subprocess.run([sys.executable, "-m", "kran", "ps", "-aq"], capture_output=True, text=True,
                             env=env).stdout.split()
        if ids:
            subprocess.run([sys.executable, "-m", "kran", "rm", "-f", *ids], capture_output=True, env=env)
    if ns:
        from kran.network import netns as nsmod

        nsmod.remove(ns)
    shutil.rmtree(Path("/run/kran") / hashlib.sha256(str(root).encode()).hexdigest()[:12], ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)
    if tun_mode is not None and tun_mode != 0o666:
        tun.chmod(tun_mode)
    for e in errors:
        print(f"bench/rootless.py: clean-up: {e}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
