"""The network namespace where kran's bridges, veths and nft rules live.

For root that is the host's own.  For a rootless user it is the *rootless netns* the user's pause
process holds (:mod:`kran.rootless.pause`), reached through slirp4netns; kran's processes stay in
the host's namespace (so ``--network host`` and published ports are the host's), and every
operation on a bridge runs here, in a short-lived thread that joined that namespace.

Only kernel work goes through :func:`call`: a database connection must stay in its own thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def path() -> str:
    """The rootless netns ("" for root: the calling thread's own namespace)."""
    from kran import rootless

    return rootless.netns_path() if rootless.active() else ""


def call(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    p = path()
    if not p:
        return fn(*args, **kw)
    from kran.network.netlink import in_netns

    return in_netns(p, fn, *args, **kw)


def kernel_dnat() -> bool:
    """Whether published ports also get kernel DNAT entries (root): a rootless user's host ports
    are reached through the monitor's proxy alone, its nft rules being in the rootless netns."""
    from kran import rootless

    return not rootless.active()


def ensure_outbound() -> None:
    """Rootless: (re)start slirp4netns if it is not running (it could not start with the pause
    process, e.g. /dev/net/tun was not usable then); a warning line if it still cannot."""
    from kran import rootless

    pid = rootless.pause_pid() if rootless.active() else 0
    if not pid:
        return
    from kran.rootless import pause

    pause.ensure_slirp(rootless.run_base(), pid)
