"""Shared fixtures: a per-test kran state root, the kran CLI as a user runs it, a busybox rootfs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in ("unit", "e2e", "privileged"):
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


class Kran:
    """Runs ``kran --root ROOT ...`` as a subprocess, like a user at a shell."""

    def __init__(self, root: Path, netns: str | None = None) -> None:
        self.root = root
        self.env = dict(os.environ, KRAN_NOSYNC="1")
        self.netns = netns  # run kran inside this network namespace (a pinned file), not the host's

    def preexec(self):
        if not self.netns:
            return None
        path = self.netns

        def enter() -> None:
            from kran.sys.ns import CLONE_NEWNET, setns

            fd = os.open(path, os.O_RDONLY)
            setns(fd, CLONE_NEWNET)
            os.close(fd)

        return enter

    def __call__(self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 120, stdin=None):
        cmd = [sys.executable, "-m", "kran", "--root", str(self.root), *args]
        p = subprocess.run(cmd, input=input, stdin=stdin, capture_output=True, timeout=timeout, env=self.env,
                           preexec_fn=self.preexec())
        p.out = p.stdout.decode(errors="replace")  # type: ignore[attr-defined]
        p.err = p.stderr.decode(errors="replace")  # type: ignore[attr-defined]
        if check and p.returncode != 0:
            raise AssertionError(f"kran {' '.join(args)} failed ({p.returncode}):\n{p.err}\n{p.out}")
        return p

    def popen(self, *args: str, **kw):
        cmd = [sys.executable, "-m", "kran", "--root", str(self.root), *args]
        return subprocess.Popen(cmd, env=self.env, preexec_fn=self.preexec(), **kw)


def _run_dir(root: Path) -> Path:
    import hashlib

    return Path("/run/kran") / hashlib.sha256(str(root).encode()).hexdigest()[:12]


def _host_net_state() -> tuple[set[str], bool]:
    from kran.network import netlink, nft

    return set(netlink.link_names()), "table ip kran" in nft.list_table()


def _remove_new_net_state(before: tuple[set[str], bool]) -> list[str]:
    """Delete the bridges and the nft table a test's kran made in the host's namespace."""
    import time

    from kran.network import netlink, nft

    links, had_table = before

    def new() -> list[str]:
        return [n for n in netlink.link_names() if n not in links and (n == "kran0" or n.startswith(("kr-", "veth")))]

    deadline = time.monotonic() + 3  # a removed container's veths go with its namespace, in the background
    while any(n.startswith("veth") for n in new()) and time.monotonic() < deadline:
        time.sleep(0.02)
    made = new()
    for n in made:
        netlink.del_link(n)
    if not had_table:
        nft.delete_table()
    return [n for n in made if n.startswith("veth")]


def _kran_fixture(root: Path, netns: str | None = None):
    k = Kran(root, netns)
    before = None if netns else _host_net_state()
    yield k
    # remove every container the test left (stops them, unmounts their rootfs, deletes runtime state)
    if (root / "kran.db").exists():
        ids = k("ps", "-aq", "--no-trunc", check=False).out.split()
        if ids:
            k("rm", "-f", *ids, check=False)
    leaked = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if str(root) in line or f" {_run_dir(root)}/" in line]
    for line in reversed(leaked):
        subprocess.run(["umount", "-l", line.split()[4]], check=False)
    shutil.rmtree(_run_dir(root), ignore_errors=True)
    # layer dirs may hold char-device whiteouts and odd modes: rmtree handles them as root
    shutil.rmtree(root, ignore_errors=True)
    veths = _remove_new_net_state(before) if before is not None else []
    assert not leaked, f"the test leaked mounts: {leaked}"
    assert not veths, f"the test leaked veth pairs: {veths}"


@pytest.fixture
def kran(tmp_path: Path) -> Kran:
    yield from _kran_fixture(tmp_path / "root")


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory) -> Path:
    if not Path("/bin/busybox").exists():
        pytest.fail("busybox-static is required (apt-get install busybox-static)")
    out = tmp_path_factory.mktemp("busybox") / "busybox.tar"
    with open(out, "wb") as f:
        subprocess.run(["sh", str(REPO / "scripts" / "busybox-rootfs.sh")], stdout=f, check=True)
    return out


BUSYBOX_CHANGES = ("-c", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "-c", 'CMD ["sh"]')


@pytest.fixture
def busybox(kran: Kran, busybox_tar: Path) -> str:
    """busybox:latest imported into the test's store; returns the image ID."""
    p = kran("import", *BUSYBOX_CHANGES, str(busybox_tar), "busybox:latest")
    return p.out.strip()


def tree(root: Path) -> dict[str, tuple]:
    """A comparable description of a directory tree: type, mode, owner, size, link target, content."""
    import stat

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                extra = (st.st_size, p.read_bytes()[:64], int(st.st_mtime))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            else:
                extra = None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)
    return out


def store_snapshot(root: Path) -> dict[str, object]:
    """Everything a failed operation must leave unchanged: files under the root and the db rows."""
    import sqlite3

    files = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if not p.name.startswith("kran.db") and p.name != "lock"
    ) if root.exists() else []
    rows = {}
    db = root / "kran.db"
    if db.exists():
        c = sqlite3.connect(db)
        for t in ("images", "tags", "layers", "image_layers"):
            rows[t] = sorted(c.execute(f"SELECT * FROM {t}").fetchall())
        c.close()
    return {"files": files, "rows": rows}


@pytest.fixture(scope="session", autouse=True)
def _remove_empty_kran_cgroups():
    """At the end, remove the (empty) parent cgroups kran's containers used; a non-empty one is a leak."""
    yield
    import glob

    for d in sorted(glob.glob("/sys/fs/cgroup/*/kran") + glob.glob("/sys/fs/cgroup/kran"), key=len, reverse=True):
        try:
            os.rmdir(d)
        except OSError:
            pass
