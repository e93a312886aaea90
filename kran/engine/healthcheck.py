"""Podman's ``--health-on-failure``: what the monitor does when a container turns unhealthy.

Kept in docker's Config beside Healthcheck, under Podman's key ``HealthcheckOnFailureAction``
("none", "kill", "restart" or "stop"), so the Engine API's create and inspect carry it as they
are.  The monitor acts (kran/monitor/health.py): ``kill`` sends SIGKILL (the restart policy then
decides, as after ``kran kill``: no restart), ``stop`` stops it with its stop signal and timeout,
``restart`` stops it the same way and starts it again whatever the restart policy says.
"""

from __future__ import annotations

from typing import Any

from kran.errors import InvalidArgument

KEY = "HealthcheckOnFailureAction"
ACTIONS = ("none", "kill", "restart", "stop")


def check_config(config: dict[str, Any]) -> None:
    """create: a known action (Podman's error otherwise), and only with a health check that runs."""
    action = config.get(KEY)
    if action in (None, ""):
        return
    if not isinstance(action, str) or action not in ACTIONS:
        raise InvalidArgument(f'invalid on-failure action "{action}" for health check: supported actions are '
                              + ",".join(ACTIONS))
    test = (config.get("Healthcheck") or {}).get("Test") or []
    if action != "none" and (not test or test[0] == "NONE"):
        raise InvalidArgument(f"cannot set on-failure action to {action} without a health check")
