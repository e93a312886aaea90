"""``kran exec``: another process in a running container, through the runtime's ``exec --process``.

The process inherits the container's spec (capabilities, env, seccomp via the container's filter,
no_new_privileges) with the user's args, env, user and workdir on top.  Without a tty it shares the
CLI's stdio; with one, the runtime hands us the pty master over a console socket (runc's protocol).
"""

from __future__ import annotations

import array
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
from typing import TYPE_CHECKING, Any

from kran.errors import CannotInvoke, CommandNotFound, Conflict, KranError

if TYPE_CHECKING:
    from kran.engine import Engine


def _process(engine: Engine, c: Any, args: list[str], *, tty: bool, user: str | None, workdir: str | None,
             env: list[str], privileged: bool) -> dict[str, Any]:
    from kran.engine.containers import _lookup_user

    with open(os.path.join(c.dir, "config.json")) as f:
        spec = json.load(f)
    proc = dict(spec["process"])
    proc["args"] = list(args)
    proc["terminal"] = tty
    if tty:
        proc["consoleSize"] = {"height": 24, "width": 80}
    base = list(proc.get("env") or [])
    for e in env:
        k = e.split("=", 1)[0]
        base = [x for x in base if x.split("=", 1)[0] != k] + [e]
    if tty and not any(x.startswith("TERM=") for x in base):
        base.append("TERM=xterm")
    proc["env"] = base
    if workdir:
        proc["cwd"] = workdir
    if user:
        u = _lookup_user(spec["root"]["path"], user)
        proc["user"] = {"uid": u.uid, "gid": u.gid}
        if u.additional_gids:
            proc["user"]["additionalGids"] = list(u.additional_gids)
    if privileged:
        from kran.engine.seccomp_default import ALL_CAPS

        caps = sorted(ALL_CAPS)
        proc["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    return proc


def _recv_fd(sock: socket.socket) -> int:
    fds = array.array("i")
    _msg, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not fds:
        raise KranError("runtime sent no terminal")
    return fds[0]


RUNTIME_LOG = re.compile(rb'^time="[^"]*" level=(error|fatal|warning)')


def map_error(text: str) -> KranError:
    msg = text.strip().splitlines()[-1] if text.strip() else "exec failed"
    m = re.search(r'msg="((?:[^"\\]|\\.)*)"', msg)
    if m:
        msg = m.group(1).replace('\\"', '"')
    msg += ": unknown"
    if "executable file not found" in msg or "no such file or directory" in msg:
        return CommandNotFound(f"OCI runtime exec failed: {msg}")
    if "permission denied" in msg:
        return CannotInvoke(f"OCI runtime exec failed: {msg}")
    return KranError(f"OCI runtime exec failed: {msg}")


def prepare(engine: Engine, ref: str, args: list[str], *, tty: bool, user: str | None, workdir: str | None,
            env: list[str], privileged: bool) -> tuple[list[str], str, str]:
    """The runtime's ``exec --process FILE`` command (without the container ID and the tty/detach
    options), the work directory holding FILE (the caller removes it), and the container ID."""
    from kran.engine import containers

    c = containers.get(engine, ref)
    if c.status == "paused":
        raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
    if not c.running:
        raise Conflict(f"container {c.id} is not running")
    proc = _process(engine, c, args, tty=tty, user=user, workdir=workdir, env=list(env), privileged=privileged)
    rt = containers._runtime_argv(engine, c.host_config.get("Runtime") or "")
    rd = containers.run_dir(engine)
    work = tempfile.mkdtemp(prefix="exec-", dir=rd if os.path.isdir(rd) else None)
    with open(os.path.join(work, "process.json"), "w") as f:
        json.dump(proc, f)
    return [*rt, "--root", os.path.join(rd, "runtime"), "exec", "--process", os.path.join(work, "process.json")], work, c.id


def run_exec(engine: Engine, ref: str, args: list[str], *, tty: bool = False, stdin: bool = False, detach: bool = False,
             user: str | None = None, workdir: str | None = None, env: list[str] = (),  # type: ignore[assignment]
             privileged: bool = False, detach_keys: str | None = None) -> int:
    cmd, work, cid = prepare(engine, ref, args, tty=tty, user=user, workdir=workdir, env=list(env),
                             privileged=privileged)
    c_id = cid
    try:
        if detach:
            cmd.append("--detach")
        if tty and not detach:
            return _exec_tty(cmd, work, c_id, stdin, detach_keys)
        if tty:
            cmd += ["--tty", "--console-socket", _console(work)[1]]
        cmd.append(c_id)
        p = subprocess.Popen(cmd, stdin=None if stdin else subprocess.DEVNULL, stderr=subprocess.PIPE)
        tail = bytearray()

        def pump() -> None:
            assert p.stderr is not None
            for line in iter(p.stderr.readline, b""):  # type: ignore[union-attr]
                tail.extend(line)
                del tail[:-4096]
                if RUNTIME_LOG.match(line):
                    continue  # the runtime's own error: reported once, below, in docker's words
                sys.stderr.buffer.write(line)
                sys.stderr.buffer.flush()

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        rc = p.wait()
        t.join()
        text = tail.decode(errors="replace")
        if rc != 0 and ("exec failed" in text or "unable to start container process" in text):
            raise map_error(text)
        return rc
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def _console(work: str) -> tuple[socket.socket, str]:
    path = os.path.join(work, "console.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    return s, path


def _exec_tty(cmd: list[str], work: str, cid: str, stdin: bool, detach_keys: str | None) -> int:
    """Foreground exec with a terminal: the runtime (runc's behaviour) puts our terminal in raw mode,
    allocates the container's pty, copies between them and forwards window size changes."""
    from kran.errors import InvalidArgument

    if not os.isatty(sys.stdin.fileno()):
        raise InvalidArgument("the input device is not a TTY")
    p = subprocess.Popen(cmd + ["--tty", cid], stderr=subprocess.PIPE)
    _out, err_b = p.communicate()
    err = err_b.decode(errors="replace")
    if p.returncode != 0 and ("exec failed" in err or "unable to start container process" in err):
        raise map_error(err)
    if err and not RUNTIME_LOG.match(err.encode()):
        sys.stderr.write(err)
    return p.returncode
