"""Rootless kran as a real unprivileged user: the tests make one (useradd, subuid/subgid lines)
and remove it afterwards with everything it left (its pause process, containers, files, lines).

``ruser`` (session): a user with 65536 subordinate ids, a private XDG_RUNTIME_DIR, and busybox
imported; ``ruser.kran(...)`` runs kran as that user the way they would at a shell (no --root:
the per-user defaults are under test).  ``new_user`` makes further users for one test (no subids,
a second user for isolation checks).

The user must be able to execute kran: the repository's .venv when every directory up to it is
reachable by others, else a copy of the package under /tmp (the CI clone may live under /root).
/dev/net/tun must be usable by the user for slirp4netns (Debian's udev makes it 0666; a VM
without udev may leave it 0600): the session makes it 0666 and puts the old mode back.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_CHANGES, REPO

MARK = "kran rootless test user"
BASE = Path("/tmp/kran-rootless-tests")


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stderr}{p.stdout}")
    return p


def _reachable_by_others(path: Path) -> bool:
    p = path.resolve()
    for d in [p, *p.parents]:
        if not os.stat(d).st_mode & 0o001:
            return False
    return True


def _kran_command() -> tuple[list[str], dict[str, str]]:
    """(argv prefix, extra env) that runs this checkout's kran as any user."""
    venv_py = Path(sys.executable)
    if _reachable_by_others(REPO) and _reachable_by_others(venv_py.parent):
        return [str(venv_py), "-m", "kran"], {}
    # a world-readable copy of the package and of zstandard, run by Debian's interpreter
    lib = BASE / "lib"
    if lib.exists():
        shutil.rmtree(lib)
    lib.mkdir(parents=True)
    shutil.copytree(REPO / "kran", lib / "kran", ignore=shutil.ignore_patterns("__pycache__"))
    import zstandard

    zdir = Path(zstandard.__file__).parent
    shutil.copytree(zdir, lib / zdir.name)
    bindir = BASE / "bin"
    bindir.mkdir(exist_ok=True)
    rt = bindir / "kran-runtime"
    rt.write_text(f"#!/bin/sh\nPYTHONPATH={lib} exec /usr/bin/python3 -m kran.runtime \"$@\"\n")
    rt.chmod(0o755)
    for p in [BASE, lib, bindir, *lib.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    rt.chmod(0o755)
    return ["/usr/bin/python3", "-m", "kran"], {"PYTHONPATH": str(lib), "KRAN_RUNTIME": str(rt)}


class User:
    """An unprivileged user made for the tests."""

    def __init__(self, subids: bool = True) -> None:
        self.name = "kranrt" + uuid.uuid4().hex[:6]
        self.home = BASE / self.name
        BASE.mkdir(mode=0o755, exist_ok=True)
        BASE.chmod(0o755)
        # the GECOS names the pytest process that owns the user (see _sweep_stale_users)
        _sh("useradd", "-M", "-d", str(self.home), "-s", "/bin/sh", "-c", f"{MARK} pid={os.getpid()}", "-U", self.name)
        pw = pwd.getpwnam(self.name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.home.mkdir(mode=0o700)
        os.chown(self.home, self.uid, self.gid)
        self.subuid = 0
        # Debian's useradd may already have added ranges (SUB_UID_COUNT): start from none
        self._del_subids()
        if subids:
            from kran.rootless.subids import free_start

            self.subuid = free_start()
            end = self.subuid + 65535
            _sh("usermod", "--add-subuids", f"{self.subuid}-{end}", "--add-subgids", f"{self.subuid}-{end}", self.name)
        self.xdg_runtime = BASE / f"{self.name}-run"
        self.xdg_runtime.mkdir(mode=0o700)
        os.chown(self.xdg_runtime, self.uid, self.gid)
        self.prefix, extra = _kran_command()
        self.env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
                    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "XDG_RUNTIME_DIR": str(self.xdg_runtime), "KRAN_NOSYNC": "1", "LANG": "C.UTF-8", **extra}

    @property
    def data(self) -> Path:
        return self.home / ".local/share/kran"

    @property
    def run_dir(self) -> Path:
        return self.xdg_runtime / "kran"

    @property
    def socket(self) -> Path:
        return self.run_dir / "kran.sock"

    def argv(self, *cmd: str) -> list[str]:
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--reset-env",
                "env", *[f"{k}={v}" for k, v in self.env.items()], *cmd]

    def run(self, *cmd: str, input: bytes | None = None, check: bool = True, timeout: float = 120,
            cwd: str | None = None) -> subprocess.CompletedProcess:
        """A command as the user (cwd: their home unless given)."""
        p = subprocess.run(self.argv(*cmd), input=input, capture_output=True, timeout=timeout,
                           cwd=cwd or str(self.home))
        p.out = p.stdout.decode(errors="replace")  # type: ignore[attr-defined]
        p.err = p.stderr.decode(errors="replace")  # type: ignore[attr-defined]
        if check and p.returncode != 0:
            raise AssertionError(f"{cmd} as {self.name} failed ({p.returncode}):\n{p.err}\n{p.out}")
        return p

    def kran(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(*self.prefix, *args, **kw)

    def popen(self, *cmd: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*cmd), cwd=str(self.home), **kw)

    def pause_pid(self) -> int:
        try:
            return int((self.run_dir / "pause.pid").read_text())
        except (OSError, ValueError):
            return 0

    def remove(self) -> None:
        if self.data.exists() and (self.data / "kran.db").exists() and self.pause_pid():
            ids = self.kran("ps", "-aq", "--no-trunc", check=False, timeout=60).out.split()
            if ids:
                self.kran("rm", "-f", "-v", *ids, check=False, timeout=120)
        _kill_user_processes(self.uid, self.subuid)
        _sh("userdel", self.name, check=False)
        self._del_subids()
        for p in (self.home, self.xdg_runtime):
            shutil.rmtree(p, ignore_errors=True)

    def _del_subids(self) -> None:
        _remove_lines(self.name, str(self.uid))


def _remove_lines(*owners: str) -> None:
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(path).read_text().splitlines(keepends=True)
        except FileNotFoundError:
            continue
        keep = [ln for ln in lines if ln.split(":", 1)[0] not in owners]
        if keep != lines:
            Path(path).write_text("".join(keep))


def _kill_user_processes(uid: int, subuid: int) -> None:
    """SIGKILL every process of the user (its pause process, slirp4netns, monitors) and of its
    subordinate ids (its containers' processes), by PID."""
    def mine() -> list[int]:
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                st = os.stat(f"/proc/{d}")
            except OSError:
                continue
            if st.st_uid == uid or (subuid and subuid <= st.st_uid < subuid + 65536):
                out.append(int(d))
        return out

    for _ in range(20):
        pids = mine()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)


def _sweep_stale_users() -> None:
    """Users a killed earlier session left behind (their GECOS says what they are, and which
    pytest made them: users of a session still running are left alone)."""
    for pw in pwd.getpwall():
        if not pw.pw_gecos.startswith(MARK):
            continue
        owner = pw.pw_gecos.rpartition("pid=")[2]
        if owner.isdigit() and Path(f"/proc/{owner}").exists():
            continue
        _kill_user_processes(pw.pw_uid, 0)
        _sh("userdel", pw.pw_name, check=False)
        _remove_lines(pw.pw_name, str(pw.pw_uid))
        shutil.rmtree(pw.pw_dir, ignore_errors=True)
        shutil.rmtree(BASE / f"{pw.pw_name}-run", ignore_errors=True)


@pytest.fixture(scope="session")
def _tun():
    """slirp4netns needs /dev/net/tun as Debian's udev sets it (0666)."""
    tun = Path("/dev/net/tun")
    if not tun.exists():
        pytest.fail("/dev/net/tun is missing (modprobe tun)")
    old = tun.stat().st_mode & 0o777
    if old != 0o666:
        tun.chmod(0o666)
    yield
    if old != 0o666:
        tun.chmod(old)


@pytest.fixture(scope="session")
def busybox_rootless_tar(busybox_tar: Path) -> Path:
    BASE.mkdir(mode=0o755, exist_ok=True)
    out = BASE / "busybox.tar"
    shutil.copyfile(busybox_tar, out)
    out.chmod(0o644)
    return out


@pytest.fixture(scope="session")
def ruser(_tun, busybox_rootless_tar: Path):
    for tool in ("newuidmap", "newgidmap", "slirp4netns", "setpriv"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is required (apt-get install uidmap slirp4netns util-linux)")
    _sweep_stale_users()
    u = User()
    try:
        u.kran("import", *BUSYBOX_CHANGES, str(busybox_rootless_tar), "busybox")
        yield u
    finally:
        u.remove()


@pytest.fixture
def new_user():
    made: list[User] = []

    def make(subids: bool = True) -> User:
        u = User(subids=subids)
        made.append(u)
        return u

    yield make
    for u in made:
        u.remove()
