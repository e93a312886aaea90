"""Network and volume endpoints."""

from __future__ import annotations

from kran.api.http import Request, filter_args, route
from kran.errors import InvalidArgument

# -- networks ---------------------------------------------------------------------------------------

@route("GET", "/networks")
def list_networks(req: Request) -> None:
    from kran.engine import networks

    flt = networks.parse_filters(filter_args(req.qjson("filters")))
    req.send_json(networks.filter_networks(networks.list_all(req.engine), flt))


@route("GET", "/networks/{id}")
def inspect_network(req: Request) -> None:
    from kran.engine import networks

    req.send_json(networks.inspect(req.engine, req.params["id"]))


@route("POST", "/networks/create")
def create_network(req: Request) -> None:
    from kran.engine import networks

    body = req.body_json()
    name = body.get("Name") or ""
    if not name:
        raise InvalidArgument("network name is required")
    if body.get("EnableIPv6"):
        raise InvalidArgument("IPv6 networks are not supported")
    configs = ((body.get("IPAM") or {}).get("Config") or [])
    if len(configs) > 1:
        raise InvalidArgument("kran supports one subnet per network")
    ipam = configs[0] if configs else {}
    driver = body.get("Driver") or "bridge"
    nid = networks.create(req.engine, name, driver=driver, subnet=ipam.get("Subnet") or None,
                          gateway=ipam.get("Gateway") or None, ip_range=ipam.get("IPRange") or None,
                          internal=bool(body.get("Internal")), labels=body.get("Labels") or {},
                          options=body.get("Options") or {}, attachable=bool(body.get("Attachable")))
    req.send_json({"Id": nid, "Warning": ""}, 201)


@route("DELETE", "/networks/{id}")
def remove_network(req: Request) -> None:
    from kran.engine import networks

    networks.remove(req.engine, req.params["id"])
    req.send_empty(204)


@route("POST", "/networks/{id}/connect")
def connect_network(req: Request) -> None:
    from kran.engine import networks

    body = req.body_json()
    container = body.get("Container") or ""
    if not container:
        raise InvalidArgument("container is required")
    ep = body.get("EndpointConfig") or {}
    ipv4 = (ep.get("IPAMConfig") or {}).get("IPv4Address") or None
    networks.connect(req.engine, req.params["id"], container, aliases=tuple(ep.get("Aliases") or ()), ipv4=ipv4)
    req.send_empty(200)


@route("POST", "/networks/{id}/disconnect")
def disconnect_network(req: Request) -> None:
    from kran.engine import networks

    body = req.body_json()
    container = body.get("Container") or ""
    if not container:
        raise InvalidArgument("container is required")
    networks.disconnect(req.engine, req.params["id"], container, force=bool(body.get("Force")))
    req.send_empty(200)


@route("POST", "/networks/prune")
def prune_networks(req: Request) -> None:
    from kran.engine import networks

    labels, until = networks.prune_filters(filter_args(req.qjson("filters")))
    gone = networks.prune(req.engine, until=until, label_filters=labels or None)
    req.send_json({"NetworksDeleted": gone or None})


# -- volumes ----------------------------------------------------------------------------------------


@route("GET", "/volumes")
def list_volumes(req: Request) -> None:
    from kran.engine import volumes

    flt = filter_args(req.qjson("filters"))
    vols = volumes.filter_volumes(req.engine, flt) if flt else volumes.all_volumes(req.engine)
    req.send_json({"Volumes": [v.to_json() for v in vols], "Warnings": []})


@route("POST", "/volumes/create")
def create_volume(req: Request) -> None:
    from kran.engine import volumes

    body = req.body_json()
    name = volumes.create(req.engine, body.get("Name") or None, body.get("Driver") or "local",
                          body.get("Labels") or {}, body.get("DriverOpts") or {})
    req.send_json(volumes.get(req.engine, name).to_json(), 201)


@route("GET", "/volumes/{name}")
def inspect_volume(req: Request) -> None:
    from kran.engine import volumes

    req.send_json(volumes.get(req.engine, req.params["name"]).to_json())


@route("DELETE", "/volumes/{name}")
def remove_volume(req: Request) -> None:
    from kran.engine import volumes

    volumes.remove(req.engine, req.params["name"], force=req.qbool("force"))
    req.send_empty(204)


@route("POST", "/volumes/prune")
def prune_volumes(req: Request) -> None:
    from kran.engine import volumes

    labels: list[str] = []
    all_ = False
    for f in filter_args(req.qjson("filters")):
        k, _, v = f.partition("=")
        if k == "label":
            labels.append(v)
        elif k == "all":
            all_ = v.lower() in ("1", "true")
        else:
            raise InvalidArgument(f"invalid filter '{k}'")
    if req.version < "1.42":  # before API 1.42 prune removed named volumes too
        all_ = True
    gone, space = volumes.prune(req.engine, all_, labels or None)
    req.send_json({"VolumesDeleted": gone or None, "SpaceReclaimed": space})
