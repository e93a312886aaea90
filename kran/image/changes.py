"""``--change`` instructions for ``import`` and ``commit`` (Dockerfile syntax, a few instructions)."""

from __future__ import annotations

import json
import shlex
from typing import Any

from kran.errors import InvalidArgument

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")


def _json_or_shell(rest: str) -> list[str]:
    s = rest.strip()
    if s.startswith("["):
        try:
            v = json.loads(s)
            if isinstance(v, list) and all(isinstance(x, str) for x in v):
                return v
        except ValueError:
            pass
    return ["/bin/sh", "-c", s]


def _pairs(rest: str, instr: str) -> list[tuple[str, str]]:
    words = shlex.split(rest, posix=True)
    if not words:
        raise InvalidArgument(f"{instr} requires at least one argument")
    if "=" not in words[0]:
        # legacy form: ENV key value...
        key, _, value = rest.strip().partition(" ")
        return [(key, value.strip())]
    out = []
    for w in words:
        k, sep, v = w.partition("=")
        if not sep:
            raise InvalidArgument(f"{instr} names can not be blank" if not k else f"Syntax error - can't find = in \"{w}\". Must be of the form: name=value")
        out.append((k, v))
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Apply Dockerfile-style change lines to an image's ``config`` object (a new dict)."""
    cfg = dict(config)
    for line in changes:
        line = line.strip()
        if not line:
            continue
        instr, _, rest = line.partition(" ")
        if "\t" in instr:
            instr, _, more = instr.partition("\t")
            rest = more + " " + rest
        up = instr.upper()
        if up not in ALLOWED:
            raise InvalidArgument(f"{instr} is not a valid change command")
        if up == "CMD":
            cfg["Cmd"] = _json_or_shell(rest)
        elif up == "ENTRYPOINT":
            cfg["Entrypoint"] = _json_or_shell(rest)
        elif up == "ENV":
            env = list(cfg.get("Env") or [])
            for k, v in _pairs(rest, "ENV"):
                env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            cfg["Env"] = env
        elif up == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(_pairs(rest, "LABEL"))
            cfg["Labels"] = labels
        elif up == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in rest.split():
                ports[p if "/" in p else p + "/tcp"] = {}
            cfg["ExposedPorts"] = ports
        elif up == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            for v in _json_or_shell(rest) if rest.strip().startswith("[") else rest.split():
                vols[v] = {}
            cfg["Volumes"] = vols
        elif up == "USER":
            cfg["User"] = rest.strip()
        elif up == "WORKDIR":
            cfg["WorkingDir"] = rest.strip()
        elif up == "STOPSIGNAL":
            cfg["StopSignal"] = rest.strip()
        elif up == "ONBUILD":
            cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [rest.strip()]
    return cfg
