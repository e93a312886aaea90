"""What ``inspect`` and ``ps`` show of containers: docker's ContainerJSON, the list filters, sizes."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from kran.engine.live import get
from kran.engine.record import Container, exit_code_of
from kran.errors import InvalidArgument, KranError

if TYPE_CHECKING:
    from kran.engine import Engine


def filter_containers(engine: Engine, cs: list[Container], filters: list[str]) -> list[Container]:
    """docker's container filters (``kran ps --filter`` and the API's list): status, name, id,
    label, network, publish, expose, exited, ancestor, before, since; every filter must match."""
    import re

    from kran.engine import label_match, networks

    for f in filters:
        k, _, v = f.partition("=")
        if k == "status":
            if v not in ("created", "restarting", "running", "removing", "paused", "exited", "dead"):
                raise InvalidArgument(f"invalid filter 'status={v}'")
            cs = [c for c in cs if c.status == v]
        elif k == "name":
            cs = [c for c in cs if re.search(v.lstrip("/"), c.name)]
        elif k == "id":
            cs = [c for c in cs if c.id.startswith(v)]
        elif k == "label":
            cs = [c for c in cs if label_match(c.config.get("Labels") or {}, v)]
        elif k == "network":
            nets = networks.networks_of(engine)
            names = {n.name for n in networks.all_networks(engine) if n.name == v or n.id.startswith(v)}
            cs = [c for c in cs if names & set(nets.get(c.id, []))]
        elif k in ("publish", "expose"):
            port, _, proto = v.partition("/")
            key = "PublicPort" if k == "publish" else "PrivatePort"
            hits = {cid for cid, ps in networks.published_ports(engine).items()
                    for e in ps if str(e.get(key, "")) == port and e["Type"] == (proto or "tcp")}
            cs = [c for c in cs if c.id in hits]
        elif k == "health":  # docker: starting|healthy|unhealthy, or none (no check); values OR'ed
            if v not in ("starting", "healthy", "unhealthy", "none"):
                raise InvalidArgument(f"Unrecognised filter value for health: {v}")
            want = {x.partition("=")[2] for x in filters if x.startswith("health=")}
            cs = [c for c in cs if ((health_state(c) or {}).get("Status") or "none") in want]
        elif k == "exited":
            cs = [c for c in cs if c.status == "exited" and str(exit_code_of(c)) == v]
        elif k == "ancestor":
            try:
                iid = engine.images.resolve(v)
            except KranError:
                iid = None
            cs = [c for c in cs if c.image_id == iid or c.image_name == v]
        elif k in ("before", "since"):
            ref = get(engine, v)
            cs = [c for c in cs if (c.created < ref.created if k == "before" else c.created > ref.created)]
        else:
            raise InvalidArgument(f"invalid filter '{k}'")
    return cs



def _du(path: str) -> int:
    from kran.sys.fsutil import tree_size

    return tree_size(path)


def size_rw(c: Container) -> int:
    return _du(os.path.join(c.dir, "upper"))


ZERO_TIME = "0001-01-01T00:00:00Z"


def mounts_json(engine: Engine, c: Container) -> list[dict[str, Any]]:
    from kran.engine.volumes import mounts_json

    return mounts_json(engine, c)


def _network_settings(engine: Engine, c: Container) -> dict[str, Any]:
    from kran.engine.networks import settings

    return settings(engine, c)


def inspect(engine: Engine, ref: str, size: bool = False) -> dict[str, Any]:
    """Docker's ContainerJSON for one container."""
    from kran.engine.spec import process_args
    from kran.engine.timefmt import rfc3339

    c = get(engine, ref)
    st = c.state or {}
    status = c.status
    args = process_args(c.config)
    layers = [engine.store.layers.path(ch) for ch, *_ in engine.images.layers(c.image_id)]
    h = dict(c.host_config)
    for k in [k for k in h if k.startswith("_")]:
        del h[k]
    h.setdefault("Binds", None)
    h.setdefault("PortBindings", {})
    h.setdefault("Devices", [])
    for k in ("BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
              "BlkioDeviceWriteIOps"):
        h.setdefault(k, [])  # as docker's CLI sends them (inspect of a container made by it)
    h.setdefault("BlkioWeight", 0)
    # what docker always fills in (docker-py reads LogConfig.Type)
    if not (h.get("LogConfig") or {}).get("Type"):
        h["LogConfig"] = {"Type": "json-file", "Config": (h.get("LogConfig") or {}).get("Config") or {}}
    h.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
    h.setdefault("NetworkMode", "default")
    h["Runtime"] = h.get("Runtime") or "kran"  # the default runtime (docker info's DefaultRuntime)
    if not (h.get("RestartPolicy") or {}).get("Name"):
        h["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": int((h.get("RestartPolicy") or {}).get("MaximumRetryCount") or 0)}
    h.setdefault("Links", None)
    h.setdefault("GroupAdd", None)
    exit_code = st.get("exit_code")
    out: dict[str, Any] = {
        "Id": c.id,
        "Created": rfc3339(c.created),
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": {
            "Status": status,
            # docker counts a restarting container as running (moby's State.SetRestarting)
            "Running": status in ("running", "paused", "restarting"),
            "Paused": status == "paused",
            "Restarting": status == "restarting",
            "OOMKilled": bool(st.get("oom_killed")),
            "Dead": status == "dead",
            "Pid": int(st.get("pid") or 0) if c.running else 0,
            "ExitCode": int(exit_code if exit_code is not None else c.exit_code or 0),
            "Error": st.get("error") or c.error or "",
            "StartedAt": st.get("started_at") or c.started_at or ZERO_TIME,
            "FinishedAt": st.get("finished_at") or c.finished_at or ZERO_TIME,
        },
        "Image": c.image_id,
        "ResolvConfPath": os.path.join(c.dir, "resolv.conf"),
        "HostnamePath": os.path.join(c.dir, "hostname"),
        "HostsPath": os.path.join(c.dir, "hosts"),
        "LogPath": os.path.join(c.dir, f"{c.id}-json.log"),
        "Name": "/" + c.name,
        "RestartCount": int(st.get("restart_count") or 0),
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": h,
        "GraphDriver": {
            "Data": {
                "LowerDir": ":".join(reversed(layers)),
                "MergedDir": os.path.join(c.dir, "merged"),
                "UpperDir": os.path.join(c.dir, "upper"),
                "WorkDir": os.path.join(c.dir, "work"),
            },
            "Name": "overlay2",
        },
        "Mounts": mounts_json(engine, c),
        "Config": c.config,
        "NetworkSettings": _network_settings(engine, c),
    }
    health = health_state(c)
    if health is not None:
        out["State"]["Health"] = health
    if c.host_config.get("KranSchedule"):
        from kran.engine import schedule

        out["State"]["KranSchedule"] = schedule.state(c.host_config)  # {"InWindow", "NextChange"}
    if size:
        rw = size_rw(c)
        out["SizeRw"] = rw
        out["SizeRootFs"] = rw + engine.images.get(c.image_id).size
    return out


def health_state(c: Container) -> dict[str, Any] | None:
    """docker's State.Health, from the monitor's health.json; None when the container has no check."""
    import json

    test = (c.config.get("Healthcheck") or {}).get("Test") or []
    if not test or test[0] == "NONE":
        return None
    try:
        with open(os.path.join(c.dir, "health.json")) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        doc = {}
    status = doc.get("Status") or "starting"
    if doc and c.status not in ("running", "paused"):
        status = "unhealthy"  # moby's CloseMonitorChannel: a stopped container's checks are unhealthy
    return {"Status": status, "FailingStreak": int(doc.get("FailingStreak") or 0),
            "Log": doc.get("Log") or []}
