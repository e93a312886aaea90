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


def _str_map(v: object, what: str) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise InvalidArgument(f"invalid {what}: expected a JSON object of strings")
    return dict(v)


def _opt_str(d: dict, key: str) -> str | None:
    v = d.get(key)
    if v is not None and not isinstance(v, str):
        raise InvalidArgument(f"invalid {key}: expected a string")
    return v or None


@route("POST", "/networks/create")
def create_network(req: Request) -> None:
    import ipaddress

    from kran.engine import networks

    body = req.body_json()
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON body: expected an object")
    name = body.get("Name") or ""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("network name is required")
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("invalid IPAM: expected a JSON object")
    configs = ipam.get("Config") or []
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise InvalidArgument("invalid IPAM Config: expected a list of JSON objects")
    # one pool per address family (docker's default IPAM takes more; kran's bridge one of each)
    v4: dict = {}
    v6: dict = {}
    for c in configs:
        sub = _opt_str(c, "Subnet") or ""
        try:
            fam = ipaddress.ip_network(sub, strict=False).version if sub else 4
        except ValueError:
            raise InvalidArgument(f"invalid CIDR address: {sub}") from None
        slot = v6 if fam == 6 else v4
        if slot:
            raise InvalidArgument(f"kran supports one IPv{fam} subnet per network")
        slot.update(c, _aux=_str_map(c.get("AuxiliaryAddresses"), "AuxiliaryAddresses"))
    for key in ("EnableIPv6", "Internal", "Attachable", "Ingress", "CheckDuplicate"):
        if body.get(key) is not None and not isinstance(body.get(key), bool):
            raise InvalidArgument(f"invalid {key}: expected a boolean")
    if body.get("Ingress"):
        raise InvalidArgument("ingress networks need swarm mode, which kran does not run")
    ipam_opts = ipam.get("Options")
    driver = _opt_str(body, "Driver") or "bridge"
    nid = networks.create(
        req.engine, name, driver=driver, subnet=_opt_str(v4, "Subnet"), gateway=_opt_str(v4, "Gateway"),
        ip_range=_opt_str(v4, "IPRange"), internal=bool(body.get("Internal")),
        labels=_str_map(body.get("Labels"), "Labels"), options=_str_map(body.get("Options"), "Options"),
        attachable=bool(body.get("Attachable")), ipv6=bool(body.get("EnableIPv6")),
        subnet6=_opt_str(v6, "Subnet"), gateway6=_opt_str(v6, "Gateway"), ip_range6=_opt_str(v6, "IPRange"),
        aux_addresses={**v4.get("_aux", {}), **v6.get("_aux", {})}, ipam_driver=_opt_str(ipam, "Driver") or "default",
        ipam_options=None if ipam_opts is None else _str_map(ipam_opts, "IPAM Options"))
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
    container = _opt_str(body, "Container") or ""
    if not container:
        raise InvalidArgument("container is required")
    aliases, ipv4, extra = networks.parse_endpoint(body.get("EndpointConfig"))
    networks.connect(req.engine, req.params["id"], container, aliases=aliases, ipv4=ipv4 or None, extra=extra)
    req.send_empty(200)


@route("POST", "/networks/{id}/disconnect")
def disconnect_network(req: Request) -> None:
    from kran.engine import networks

    body = req.body_json()
    container = _opt_str(body, "Container") or ""
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
