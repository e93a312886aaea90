"""``docker create``: a container's record from an image config plus the request's Config and
HostConfig, validated before anything is written; its directory, volumes and endpoints planned first
and undone together if any step fails.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import TYPE_CHECKING, Any

from kran.engine.live import _event
from kran.engine.record import NAME_RE
from kran.errors import Conflict, InvalidArgument, NotFound
from kran.image import reference as refs
from kran.storage.db import transaction

if TYPE_CHECKING:
    from kran.engine import Engine
    from kran.engine.networks import EndpointPlan
    from kran.engine.request import CreateRequest

# docker's json-file is the one log driver kran writes ("local" is its own format with the same
# reading side; "none" keeps no log)
LOG_DRIVERS = ("json-file", "local", "none")


def _merge_config(image_cfg: dict[str, Any], config: dict[str, Any], cid: str) -> dict[str, Any]:
    ic = image_cfg.get("config") or {}
    out = dict(config)
    env = list(ic.get("Env") or [])
    for e in config.get("Env") or []:
        k = e.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != k]
        env.append(e if "=" in e else e)
    out["Env"] = env
    if config.get("Entrypoint") is not None:
        out["Entrypoint"] = config["Entrypoint"] or None
        out["Cmd"] = config.get("Cmd") or None
    else:
        out["Entrypoint"] = ic.get("Entrypoint")
        out["Cmd"] = config.get("Cmd") or ic.get("Cmd")
    for k in ("WorkingDir", "User", "StopSignal", "Healthcheck"):
        if not out.get(k) and ic.get(k):
            out[k] = ic[k]
    if config.get("Healthcheck") and ic.get("Healthcheck"):
        # docker: what the request leaves unset (no test, zero durations) comes from the image's
        hc = dict(config["Healthcheck"])
        for k, v in ic["Healthcheck"].items():
            if not hc.get(k):
                hc[k] = v
        out["Healthcheck"] = hc
    labels = dict(ic.get("Labels") or {})
    labels.update(config.get("Labels") or {})
    out["Labels"] = labels
    exposed = dict(ic.get("ExposedPorts") or {})
    exposed.update(config.get("ExposedPorts") or {})
    if exposed:
        out["ExposedPorts"] = exposed
    vols = dict(ic.get("Volumes") or {})
    vols.update(config.get("Volumes") or {})
    if vols:
        out["Volumes"] = vols
    if not out.get("Hostname"):
        out["Hostname"] = cid[:12]
    for k in ("Domainname", "User", "WorkingDir"):
        out.setdefault(k, "")
    for k in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"):
        out[k] = bool(out.get(k))
    return out


def create(engine: Engine, config: dict[str, Any], host_config: dict[str, Any] | None = None, name: str | None = None,
           networking_config: dict[str, Any] | None = None) -> str:
    """Create a container (docker's ContainerCreate): returns its ID.  The CLI's flags and the API's
    body arrive as docker's JSON and become one typed :class:`~kran.engine.request.CreateRequest`
    (a wrong type is an InvalidArgument in dockerd's words)."""
    from kran.engine.request import decode_create

    return create_container(engine, decode_create(config, host_config, networking_config), name)


def create_container(engine: Engine, req: CreateRequest, name: str | None = None) -> str:
    image = req.config.image
    if not image:
        raise InvalidArgument("No image specified")
    ist = engine.images
    try:
        image_id = ist.resolve(image)
    except NotFound:
        r = refs.parse_normalized(image)
        raise NotFound(f"No such image: {r.tagged_or_latest().familiar()}") from None
    rec = ist.get(image_id)
    cid = os.urandom(32).hex()
    cfg = _merge_config(json.loads(rec.config), req.config_json, cid)
    if not (cfg.get("Entrypoint") or cfg.get("Cmd")):
        raise InvalidArgument("No command specified")
    h = dict(req.host_config_json)
    legacy_rt = cfg.pop("Runtime", None)
    if isinstance(legacy_rt, str) and legacy_rt and not h.get("Runtime"):
        h["Runtime"] = legacy_rt  # docker-py sends create(runtime=...) beside the Config, not in HostConfig
    from kran.engine import validate  # (only create needs it: `kran ps` must not pay for it)

    validate.check_create(req)
    validate.check_rootless_limits(h)
    from kran.engine import blkio, healthcheck

    blkio.check(h)  # --device-read-bps & co: devices resolve, this host can enforce them
    healthcheck.check_config(cfg)  # --health-on-failure
    from kran.network import shaping

    if (rate := shaping.check_mode(h.get("NetworkMode") or "", h.get(shaping.KEY))) is not None:
        h[shaping.KEY] = rate  # --network-rate, normalised: both directions, 0 for unlimited
    from kran.engine import schedule

    schedule.check_host_config(h)  # --schedule/--max-lifetime/--recreate-every: normalised in h
    _validate_request(engine, req)
    from kran.engine import lockdown

    lockdown.apply(engine, cfg, h, image_id)  # --lockdown: its settings into h, conflicts refused
    if name is not None:
        if not NAME_RE.match(name):
            raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        name = name.lstrip("/")
    if h.get("Links"):
        from kran.engine import links

        h["Links"] = links.resolve(engine, list(h["Links"]))
    d = os.path.join(engine.root, "containers", cid)
    store = engine.store
    from kran.engine import volumes

    plan = volumes.plan_mounts(engine, cfg, h)
    from kran.engine import networks

    networking = req.networking_json if req.networking_config.endpoints_config else None
    net_plan = networks.plan(engine, h, networking)
    _endpoint_extras(req, h, net_plan)
    if plan.mountpoints:
        h["_MountPoints"] = plan.mountpoints
    with store.writing():
        os.makedirs(d, 0o710)
        try:
            volumes.prepare(engine, plan)
            for sub in ("upper", "work", "merged"):
                os.mkdir(os.path.join(d, sub), 0o755)
            with open(os.path.join(d, "hostname"), "w") as f:
                f.write(cfg["Hostname"] + "\n")
            with open(os.path.join(d, "hosts"), "w") as f:
                f.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                        "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                        "ff02::2\tip6-allrouters\n")
            with open(os.path.join(d, "resolv.conf"), "w") as f:
                f.write(_resolv_conf())
            for attempt in range(20):
                n = name or _random_name(attempt)
                try:
                    with transaction(store.db):
                        row = store.db.execute("SELECT id FROM containers WHERE name=?", (n,)).fetchone()
                        if row:
                            raise Conflict(
                                f'Conflict. The container name "/{n}" is already in use by container "{row[0]}". '
                                "You have to remove (or rename) that container to be able to reuse that name."
                            )
                        store.db.execute(
                            "INSERT INTO containers(id, name, image_id, image_name, created, config, host_config)"
                            " VALUES (?,?,?,?,?,?,?)",
                            (cid, n, image_id, image, time.time(), json.dumps(cfg), json.dumps(_named(h, n))),
                        )
                        volumes.record(store.db, cid, plan)  # with the row: usage survives a crash
                        networks.record(store.db, cid, net_plan)
                    break
                except Conflict:
                    if name:
                        raise
            _event(engine, "create", cid)
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            volumes.undo(engine, plan)
            raise
    return cid


def _random_name(attempt: int) -> str:
    from kran.engine.names import random_name

    return random_name(attempt)


def _resolv_conf() -> str:
    """The host's resolv.conf without loopback resolvers (docker's rule); Google's DNS if none is left."""
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    out, servers = [], 0
    for line in lines:
        w = line.split()
        if w and w[0] == "nameserver" and len(w) > 1:
            if w[1].startswith("127.") or w[1] == "::1":
                continue
            servers += 1
        out.append(line)
    if not servers:
        out += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(out) + "\n"


def _validate_request(engine: Engine, req: CreateRequest) -> None:
    """What dockerd refuses at create that needs the host (the runtime's binary)."""
    h = req.host_config
    driver = h.log_config.type if h.log_config else ""
    if driver and driver not in LOG_DRIVERS:
        raise InvalidArgument(f"logger: no log driver named '{driver}' is registered")
    runtime = h.runtime or req.config.unknown.get("Runtime")
    if runtime and isinstance(runtime, str) and runtime != "kran":
        from kran.engine.live import _runtime_path

        _runtime_path(engine, runtime)  # docker's "unknown or invalid runtime name: X"


def _endpoint_extras(req: CreateRequest, h: dict[str, Any], plans: list[EndpointPlan]) -> None:
    """Config.MacAddress (docker's --mac-address before API 1.44) is the MAC of the container's
    first network; it is kept, by network ID, in the host config's private keys for the start (an
    endpoint's own MacAddress, kept with the endpoint, wins)."""
    if req.config.mac_address and plans:
        h["_MacAddresses"] = {plans[0].network_id: req.config.mac_address.lower()}


def _named(h: dict[str, Any], name: str) -> dict[str, Any]:
    if not h.get("Links"):
        return h
    return dict(h, Links=[ln.replace("{self}", name) for ln in h["Links"]])
