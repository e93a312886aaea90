"""OCI hooks (runtime-spec config.md#posix-platform-hooks): run each with the state JSON on stdin."""

from __future__ import annotations

import os
import time

from kran.errors import KranError
from kran.runtime import jsonc


class HookError(KranError):
    exit_code = 1


def run(hooks: list[dict] | None, state: dict | None, phase: str) -> None:
    """Run ``hooks`` in order; the first failure raises (callers decide whether it is fatal)."""
    data = jsonc.dumps(state).encode() if state is not None else b"{}"
    for h in hooks or []:
        _run_one(h, data, phase)


def _run_one(h: dict, data: bytes, phase: str) -> None:
    path = h["path"]
    args = h.get("args") or [path]
    env = dict(e.split("=", 1) for e in h.get("env") or [] if "=" in e)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(r, 0)
            os.execve(path, args, env)
        except OSError as e:
            os.write(2, f"{phase} hook {path}: {e.strerror}\n".encode())
        os._exit(127)
    os.close(r)
    try:
        try:
            os.write(w, data)
        except BrokenPipeError:
            pass
    finally:
        os.close(w)
    timeout = h.get("timeout")
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        wpid, status = os.waitpid(pid, os.WNOHANG if deadline else 0)
        if wpid:
            break
        if time.monotonic() > deadline:  # type: ignore[operator]
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise HookError(f"{phase} hook {path} timed out after {timeout}s")
        time.sleep(0.005)
    if status != 0:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        raise HookError(f"error running {phase} hook {path}: exit status {code}")
