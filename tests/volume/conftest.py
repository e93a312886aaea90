"""``kv``: ``kran volume ...`` and ``kran cp`` as a user types them (with stdout control)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture
def kv(kran):
    """Like the ``kran`` fixture, for the volume commands; removes every volume at the end."""

    def run(*args: str, input: bytes | None = None, check: bool = True, stdin=None, stdout=None):
        cmd = [sys.executable, "-m", "kran", "--root", str(kran.root), *args]
        p = subprocess.run(cmd, input=input, stdin=stdin, stdout=stdout if stdout is not None else subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120, env=kran.env)
        p.out = (p.stdout or b"").decode(errors="replace")
        p.err = p.stderr.decode(errors="replace")
        if check and p.returncode != 0:
            raise AssertionError(f"kran {' '.join(args)} failed ({p.returncode}):\n{p.err}\n{p.out}")
        return p

    yield run
    if (kran.root / "kran.db").exists():
        ids = kran("ps", "-aq", "--no-trunc", check=False).out.split()
        if ids:
            kran("rm", "-f", *ids, check=False)
        run("volume", "prune", "-a", "-f", check=False)
