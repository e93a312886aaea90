"""Fixtures for the OCI runtime tests: a busybox bundle per test, a state root per test, and the
runtime binary under test (kran-runtime, or runc to prove that the tests describe runc's behaviour).

Every container a test makes is force-deleted in the fixture teardown and its cgroup directories
removed, even when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APPLETS = (
    "sh ls cat id ps mount umount hostname sleep true false mknod grep echo env wc pwd mkdir seq "
    "head tail touch rm ln readlink stat dd test [ printf kill tty stty"
).split()
CGROUP_PARENT = "kran-test"


def make_rootfs(path: Path) -> None:
    (path / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", path / "bin" / "busybox")
    for a in APPLETS:
        os.symlink("busybox", path / "bin" / a)
    for d in ("proc", "sys", "dev", "tmp", "etc", "root", "mnt"):
        (path / d).mkdir(exist_ok=True)
    (path / "tmp").chmod(0o1777)
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (path / "etc" / "group").write_text("root:x:0:\n")


class Runtime:
    """``<binary> --root ROOT ...`` as containerd or the engine would run it."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        if name == "kran":
            self.argv = [sys.executable, "-m", "kran.runtime.cli"]
        else:
            self.argv = [shutil.which("runc") or "runc"]
        self.created: list[str] = []
        self.env = dict(os.environ, PYTHONPATH=str(REPO))

    def cmd(self, *args: str) -> list[str]:
        return [*self.argv, "--root", str(self.root), *args]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 60, **kw
    ) -> subprocess.CompletedProcess:
        if kw.pop("capture_output", True) and "stdout" not in kw:
            # Files, not pipes: a container started by create/run -d inherits its stdio and would
            # keep a pipe open long after the runtime command has exited.
            with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
                p = subprocess.run(
                    self.cmd(*args),
                    timeout=timeout,
                    env=self.env,
                    text=True,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    **kw,
                )
                out.seek(0)
                err.seek(0)
                p.stdout, p.stderr = out.read(), err.read()
        else:
            p = subprocess.run(self.cmd(*args), timeout=timeout, env=self.env, text=True, **kw)
        if check and p.returncode != 0:
            raise AssertionError(
                f"{self.name} {' '.join(args)} failed ({p.returncode}):\n{p.stderr}\n{p.stdout}"
            )
        return p

    def new_id(self) -> str:
        cid = f"kt-{uuid.uuid4().hex[:10]}"
        self.created.append(cid)
        return cid

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)

    def wait_status(self, cid: str, status: str, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if st["status"] == status or time.monotonic() > deadline:
                return st
            time.sleep(0.02)

    def cleanup(self) -> None:
        for cid in self.created:
            self("delete", "-f", cid, check=False)
        for ctrl in os.listdir("/sys/fs/cgroup"):
            base = Path("/sys/fs/cgroup") / ctrl / CGROUP_PARENT
            for cid in self.created:
                _rmdir_quiet(base / cid)
            _rmdir_quiet(base)


def _rmdir_quiet(p: Path) -> None:
    try:
        p.rmdir()
    except OSError:
        pass


class Bundle:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rootfs = path / "rootfs"

    @property
    def config(self) -> dict:
        return json.loads((self.path / "config.json").read_text())

    def write(self, config: dict) -> None:
        (self.path / "config.json").write_text(json.dumps(config, indent=2))

    def set(self, cid: str, args: list[str], **process) -> dict:
        """The spec from ``spec``, adjusted: no terminal, our args, a cgroup path per container."""
        c = self.config
        c["process"]["terminal"] = False
        c["process"]["args"] = args
        c["process"].update(process)
        c["root"]["readonly"] = False
        c["linux"]["cgroupsPath"] = f"/{CGROUP_PARENT}/{cid}"
        self.write(c)
        return c


def _spec(path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "kran.runtime.cli", "spec", "--bundle", str(path)],
        check=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:
    path = tmp_path / "bundle"
    path.mkdir()
    make_rootfs(path / "rootfs")
    _spec(path)
    return Bundle(path)


@pytest.fixture(params=["kran", "runc"])
def rt(request, tmp_path: Path):
    """Both runtimes: the test states runc-compatible behaviour."""
    if request.param == "runc" and not shutil.which("runc"):
        pytest.fail("runc is required for the compatibility tests")
    r = Runtime(request.param, tmp_path / f"state-{request.param}")
    try:
        yield r
    finally:
        r.cleanup()


@pytest.fixture
def kran(tmp_path: Path):
    """kran-runtime only (features runc 1.1 lacks, or kran-specific checks)."""
    r = Runtime("kran", tmp_path / "state-kran")
    try:
        yield r
    finally:
        r.cleanup()


def cgroup_dirs(cid: str) -> list[Path]:
    return [p for p in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}/{cid}") if p.exists()]
