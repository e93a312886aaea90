"""``--lockdown`` (HostConfig.KranLockdown): a container that keeps nothing and gives nothing out.

At create (:func:`apply`, CLI and API alike) lockdown writes its settings into the HostConfig, so
inspect shows what is enforced and the spec is made from them as from any others:

- ``ReadonlyRootfs`` true; ``Tmpfs`` on ``/tmp`` and on the home of the container's user (``HOME``
  from the image's and the request's Env, else the user's entry in the image's /etc/passwd, else
  ``/root``; no home tmpfs when that is ``/``), and on every ``VOLUME`` the image or ``-v /path``
  declares -- an anonymous volume would be a host directory that ``--volumes-from`` reads;
- ``CapDrop`` ``ALL`` (``/proc/self/status`` CapEff 0), ``SecurityOpt`` ``no-new-privileges``;
- no host paths and no volumes: ``-v /host:/x``, ``--mount type=bind``, named volumes and
  ``--volumes-from`` are refused.  Why volumes too: a named volume is a host directory that any
  other container can mount and copy out of (and root on the host reads it), which is a way out.

Conflicting requests (``--privileged``, ``--cap-add``, ``no-new-privileges=false``,
``seccomp=unconfined``, binds, volumes) are one-line errors before anything is created.

Files out: :func:`refuse_files_out` is called by ``cp`` from the container, ``export``, ``commit``,
``diff``, ``backup`` and the API's archive GET (403 Forbidden, the same line everywhere).  Copying
*into* a locked container is not refused here; its read-only root refuses it as for any
``--read-only`` container.

Unlocking (``kran update --lockdown=false``) and locking with ``update`` need a stopped container;
unlocking puts back the settings lockdown replaced (kept in the private ``_KranLockdownSaved``).
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

from kran.errors import Conflict, Forbidden, InvalidArgument

if TYPE_CHECKING:
    from kran.engine import Engine
    from kran.engine.record import Container

KEY = "KranLockdown"
SAVED = "_KranLockdownSaved"
ENFORCED = ("ReadonlyRootfs", "Tmpfs", "CapDrop", "SecurityOpt")


def refuse_files_out(c: Container) -> None:
    """The one error for every read of a locked container's files from outside."""
    if c.host_config.get(KEY):
        raise Forbidden(f"container {c.name} is locked down: files cannot be copied out of it")


def _conflicts(h: dict[str, Any]) -> None:
    def no(what: str) -> None:
        raise InvalidArgument(f"conflicting options: --lockdown and {what}")

    if h.get("Privileged"):
        no("--privileged")
    if h.get("CapAdd"):
        no("--cap-add")
    for opt in h.get("SecurityOpt") or []:
        k, _, v = str(opt).replace(":", "=", 1).partition("=")
        if k == "no-new-privileges" and v.lower() in ("false", "0"):
            no(f"--security-opt {opt}")
        if k == "seccomp" and v == "unconfined":
            no(f"--security-opt {opt}")
    for b in h.get("Binds") or []:
        src = str(b).split(":", 1)[0]
        no(f"a bind mount of the host path {src}" if src.startswith("/") else f"the volume {src}")
    for m in h.get("Mounts") or []:
        typ = (m or {}).get("Type") or "volume"
        if typ == "bind":
            no(f"a bind mount of the host path {m.get('Source') or ''}")
        if typ == "volume":
            no(f"the volume {m.get('Source') or '(anonymous)'} (a locked-down container has no volumes)")
    if h.get("VolumesFrom"):
        no("--volumes-from")


def _home(engine: Engine | None, cfg: dict[str, Any], image_id: str) -> str:
    for e in cfg.get("Env") or []:
        if e.startswith("HOME="):
            return e[5:] or "/"
    user = (cfg.get("User") or "").split(":", 1)[0]
    if user in ("", "root", "0"):
        return "/root"
    if engine is None:
        return "/"
    import os

    for ch, *_ in reversed(list(engine.images.layers(image_id))):  # the topmost passwd wins
        p = os.path.join(engine.store.layers.path(ch), "etc", "passwd")
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        with open(p, errors="replace") as f:
            for line in f:
                f7 = line.rstrip("\n").split(":")
                if len(f7) >= 7 and user in (f7[0], f7[2]):
                    return f7[5] or "/"
        break
    return "/"


def apply(engine: Engine | None, cfg: dict[str, Any], h: dict[str, Any], image_id: str = "") -> None:
    """Enforce lockdown on a create request's merged Config ``cfg`` and HostConfig ``h`` (in place);
    nothing when the request does not ask for it.  InvalidArgument for a conflicting request."""
    on = h.get(KEY)
    if on is None or on is False:
        h.pop(KEY, None)
        return
    if on is not True:
        raise InvalidArgument(f"invalid HostConfig.{KEY}: want a boolean, got {on!r}")
    _conflicts(h)
    h[SAVED] = {k: h.get(k) for k in ENFORCED}
    tmpfs = dict(h.get("Tmpfs") or {})
    home = posixpath.normpath(_home(engine, cfg, image_id))
    root_user = (cfg.get("User") or "").split(":", 1)[0] in ("", "root", "0")
    for p in ["/tmp", home, *sorted(cfg.pop("Volumes", None) or {})]:
        p = posixpath.normpath(p)
        if p != "/" and p not in tmpfs:
            # the home of root is root's own; any other user's must be writable by that user
            tmpfs[p] = "rw,mode=0700" if p == home and root_user else "rw,mode=1777"
    h["Tmpfs"] = tmpfs
    h["ReadonlyRootfs"] = True
    h["CapDrop"] = ["ALL"]
    h["SecurityOpt"] = [o for o in h.get("SecurityOpt") or [] if not str(o).startswith("no-new-privileges")] + [
        "no-new-privileges"]


def check_update(engine: Engine, c: Container, h: dict[str, Any], changes: dict[str, Any]) -> None:
    """``kran update --lockdown[=false]``: only on a stopped container; locking applies the same
    settings as at create (refused when the container has binds or volumes), unlocking puts back
    what they replaced.  Changes ``h`` (the HostConfig to record) in place."""
    if KEY not in changes or changes[KEY] is None:
        return
    want = changes[KEY]
    if not isinstance(want, bool):
        raise InvalidArgument(f"invalid {KEY}: want a boolean, got {want!r}")
    if want == bool(c.host_config.get(KEY)):
        return
    if c.running:
        if not want:
            raise Conflict(f"container {c.name} is locked down: it cannot be unlocked while it runs: stop it first")
        raise Conflict(f"cannot lock down container {c.name} while it runs: stop it first")
    if want:
        if c.host_config.get("_MountPoints"):
            raise InvalidArgument(f"cannot lock down container {c.name}: it has volumes or bind mounts")
        h[KEY] = True
        apply(engine, dict(c.config), h, c.image_id)
        return
    saved = h.pop(SAVED, None) or {}
    for k in ENFORCED:
        if saved.get(k) is None:
            h.pop(k, None)
        else:
            h[k] = saved[k]
    if "ReadonlyRootfs" in saved:
        h["ReadonlyRootfs"] = bool(saved["ReadonlyRootfs"])
    h[KEY] = False
