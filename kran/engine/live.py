"""What every container verb stands on: the lookup that releases what an exited container held
(the one cleanup path), the OCI runtime's command line, and container events.

``get``/``all_containers`` are :mod:`kran.engine.record`'s lookups plus that release: a container
seen exited has its rootfs unmounted and its network endpoints torn down, whoever looks first.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import TYPE_CHECKING, Any

from kran.engine import record
from kran.engine.record import _T, Container, _being_started, run_dir
from kran.errors import InvalidArgument, KranError

if TYPE_CHECKING:
    from kran.engine import Engine


def get(engine: Engine, ref: str) -> Container:
    """By full ID, name (with or without "/"), or unique ID prefix (docker's lookup order); a
    container seen exited has what it held released (:func:`_cleanup_after_exit`)."""
    c = record.get(engine, ref)
    _released(engine, c)
    return c


def all_containers(engine: Engine) -> list[Container]:
    cs = record.all_containers(engine)
    for c in cs:
        _released(engine, c)
    return cs


def _released(engine: Engine, c: Container) -> None:
    if c.state is not None and c.state.get("status") == "exited":
        _cleanup_after_exit(engine, c)


def _cleanup_after_exit(engine: Engine, c: Container) -> None:
    """Unmount the rootfs and forget runtime state of a container that no longer runs."""
    if _being_started(c):
        return
    merged = os.path.join(c.dir, "merged")
    from kran.sys.fsutil import MNT_DETACH, is_mountpoint, umount

    if os.path.isdir(merged) and is_mountpoint(merged):
        try:
            umount(merged, MNT_DETACH)
        except OSError:
            pass
    from kran.engine.networks import teardown

    teardown(engine, c.id, links=not _T.removing)


def _event(engine: Engine, action: str, cid: str, **attrs: str) -> None:
    from kran.engine.events import emit

    if "name" not in attrs:
        row = engine.store.db.execute("SELECT name, image_name FROM containers WHERE id=?", (cid,)).fetchone()
        if row:
            attrs = {"image": row[1], "name": row[0], **attrs}
    emit(engine.root, "container", action, cid, attrs)



# -- the OCI runtime's command line ---------------------------------------------------------------


def _runtime_argv(engine: Engine, name: str) -> list[str]:
    """How to run the OCI runtime: kran's own (started the fast way, without site-packages) or a
    runc-compatible binary by name or path."""
    import sys

    if (name or os.environ.get("KRAN_RUNTIME") or "kran") == "kran":
        import kran

        main = os.path.join(os.path.dirname(kran.__file__), "runtime", "__main__.py")
        return [sys.executable, "-I", "-S", main]
    return [_runtime_path(engine, name)]


def _runtime_path(engine: Engine, name: str) -> str:
    import sys

    name = name or os.environ.get("KRAN_RUNTIME") or "kran"
    if name == "kran":
        p = os.path.join(os.path.dirname(sys.executable), "kran-runtime")
        if os.path.exists(p):
            return p
        name = "runc"
    if os.sep in name:
        return name
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not found:
        raise InvalidArgument(f"unknown or invalid runtime name: {name}")
    return found



def _runtime(engine: Engine, c: Container, *args: str, check: bool = True) -> Any:
    import subprocess

    rt = _runtime_argv(engine, c.host_config.get("Runtime") or "")
    p = subprocess.run([*rt, "--root", os.path.join(run_dir(engine), "runtime"), *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        msg = (p.stderr.strip().splitlines() or ["runtime failed"])[-1]
        m = re.search(r'msg="?([^"]*)"?', msg)
        raise KranError(m.group(1) if m else msg)
    return p

