"""Docker's legacy container links (``--link name:alias``).

A link is recorded in the linking container's HostConfig.Links as ``/<target>:/<self>/<alias>``
(docker's form, shown by inspect).  When the container starts, each target must be running; the
container then gets, per link, an ``/etc/hosts`` line for the alias and docker's link environment::

    ALIAS_NAME=/self/alias
    ALIAS_PORT=tcp://IP:PORT                    (the lowest exposed port)
    ALIAS_PORT_<port>_<PROTO>=tcp://IP:port     and _ADDR, _PORT, _PROTO for every exposed port
    ALIAS_ENV_<K>=<v>                           for every variable of the target's Config.Env
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kran.errors import Conflict, InvalidArgument, NotFound

if TYPE_CHECKING:
    from kran.engine import Engine
    from kran.engine.record import Container


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    target: str  # the linked container's name
    alias: str
    name: str  # /self/alias


def parse(links: list[str]) -> list[Link]:
    out = []
    for ln in links:
        target, _, full = ln.partition(":")
        out.append(Link(target=target.strip("/"), alias=full.rsplit("/", 1)[-1], name=full))
    return out


def resolve(engine: Engine, links: list[str]) -> list[str]:
    """``name[:alias]`` as the client sends it -> docker's recorded form, with ``{self}`` standing
    for this container's name until create has chosen it."""
    from kran.engine.live import get

    out = []
    for link in links:
        target, _, alias = link.partition(":")
        target = target.strip("/")
        alias = (alias or target).strip("/").rsplit("/", 1)[-1]
        if not target:
            raise InvalidArgument(f"invalid link: {link!r}")
        try:
            other = get(engine, target)
        except NotFound as e:
            # docker: invalid parameter, not "not found" (a 404 would send the CLI pulling the image)
            raise InvalidArgument(f"could not get container for {target}: {e}") from None
        out.append(f"/{other.name}:/{{self}}/{alias}")
    return out


def env(link: Link, ip: str, exposed: list[tuple[int, str]], target_env: list[str]) -> list[str]:
    """The link's environment variables (pure)."""
    prefix = re.sub(r"[^A-Za-z0-9]", "_", link.alias).upper()
    out = [f"{prefix}_NAME={link.name}"]
    ports = sorted(exposed)
    if ports:
        port, proto = ports[0]
        out.append(f"{prefix}_PORT={proto}://{ip}:{port}")
    for port, proto in ports:
        p = f"{prefix}_PORT_{port}_{proto.upper()}"
        out += [f"{p}={proto}://{ip}:{port}", f"{p}_ADDR={ip}", f"{p}_PORT={port}", f"{p}_PROTO={proto}"]
    for kv in target_env:
        k, eq, v = kv.partition("=")
        if eq and k not in ("HOME", "PATH"):  # set by every image: not the target's own
            out.append(f"{prefix}_ENV_{k}={v}")
    return out


def for_start(engine: Engine, c: Container) -> tuple[list[str], list[str]]:
    """(environment, hosts lines) for a starting container's links; each target must run."""
    from kran.engine.live import get

    envs: list[str] = []
    hosts: list[str] = []
    for link in parse(list(c.host_config.get("Links") or [])):
        try:
            other = get(engine, link.target)
        except NotFound as e:
            raise InvalidArgument(f"could not get container for {link.target}: {e}") from None
        if not other.running:
            raise Conflict(f"Cannot link to a non running container: /{other.name} AS {link.name}")
        row = engine.store.db.execute(
            "SELECT ip FROM endpoints WHERE container_id=? AND ip IS NOT NULL ORDER BY idx LIMIT 1", (other.id,)).fetchone()
        ip = row[0] if row else ""
        if not ip:
            continue  # no address (network none or host): nothing to point at
        exposed = []
        for key in other.config.get("ExposedPorts") or {}:
            port, _, proto = key.partition("/")
            if port.isdigit():
                exposed.append((int(port), proto or "tcp"))
        envs += env(link, ip, exposed, list(other.config.get("Env") or []))
        names = [link.alias, other.name] + ([other.config["Hostname"]] if other.config.get("Hostname") else [])
        hosts.append(f"{ip}\t{' '.join(dict.fromkeys(names))}")
    return envs, hosts


def remove(engine: Engine, ref: str) -> None:
    """``docker rm --link /parent/alias``: forget the link (the parent keeps running; its files
    are refreshed at its next start)."""
    import json

    from kran.engine.live import get
    from kran.storage.db import transaction

    full = "/" + ref.strip("/")
    parent, _, alias = full.rpartition("/")
    if not parent:
        raise Conflict("Conflict, cannot remove the default link name")
    try:
        c = get(engine, parent.lstrip("/"))  # a name or an ID
    except NotFound:
        raise NotFound(f"Cannot get parent {parent} for link name {full}") from None
    links = list(c.host_config.get("Links") or [])
    keep = [ln for ln in links if ln.partition(":")[2].rsplit("/", 1)[-1] != alias]
    if len(keep) == len(links):
        raise NotFound(f"No such container: {full}")
    h = dict(c.host_config, Links=keep or None)
    with transaction(engine.store.db):
        engine.store.db.execute("UPDATE containers SET host_config=? WHERE id=?", (json.dumps(h), c.id))
