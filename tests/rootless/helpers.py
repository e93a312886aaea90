"""Shared pieces of the rootless story tests: unique names for what a test makes (the session's user
is shared by every test, so names must not collide) and a teardown that removes it all; a host HTTP
server started by root; polling."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.registry.conftest import free_port


class Made:
    """What one test made as the user, removed by :meth:`cleanup` (also after a failure)."""

    def __init__(self, ruser) -> None:
        self.ruser = ruser
        self.containers: list[str] = []
        self.networks: list[str] = []
        self.volumes: list[str] = []
        self.images: list[str] = []

    @staticmethod
    def unique(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def container(self, prefix: str = "c") -> str:
        name = self.unique(prefix)
        self.containers.append(name)
        return name

    def network(self, prefix: str = "net") -> str:
        name = self.unique(prefix)
        self.networks.append(name)
        return name

    def volume(self, prefix: str = "vol") -> str:
        name = self.unique(prefix)
        self.volumes.append(name)
        return name

    def image(self, prefix: str = "img") -> str:
        name = self.unique(prefix)
        self.images.append(name)
        return name

    def cleanup(self) -> None:
        # containers first: they hold the volumes, networks and images
        errors = []
        for args in (["rm", "-f", "-v", *self.containers] if self.containers else None,
                     ["network", "rm", *self.networks] if self.networks else None,
                     ["volume", "rm", "-f", *self.volumes] if self.volumes else None,
                     ["rmi", "-f", *self.images] if self.images else None):
            if args is None:
                continue
            p = self.ruser.kran(*args, check=False, timeout=60)
            # "No such ..." is fine: the test removed it itself (or never got to make it)
            if p.returncode != 0 and "No such" not in p.err and "not found" not in p.err:
                errors.append(f"kran {' '.join(args)}: {p.err.strip()}")
        if errors:
            raise AssertionError("cleanup failed:\n" + "\n".join(errors))


def until(check: Callable[[], object], timeout: float = 10, what: str = "condition") -> object:
    """Poll ``check`` until it returns something true; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def layer_dir(ruser, diff_ids: list[str]) -> Path:
    """The unpacked directory of the top layer of ``diff_ids`` in the user's store: layers are
    stored by chain ID (OCI image spec, config.md "Layer ChainID")."""
    chain = diff_ids[0]
    for d in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {d}".encode()).hexdigest()
    return ruser.data / "layers" / chain.split(":", 1)[1] / "diff"


class HostHTTP:
    """``python3 -m http.server`` run by root on the host's 127.0.0.1, serving ``root``."""

    def __init__(self, root: Path) -> None:
        import socket

        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(self.port)],
                                     cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError("the host's http.server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
