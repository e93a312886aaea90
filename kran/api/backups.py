"""kran's own endpoints: container backups (``kran backup``/``restore`` over the API).

Routes (each also under a ``/v1.xx`` prefix, like docker's)::

    POST /kran/backup                         body BackupRequest  -> 200 [report, ...]
    GET  /kran/backups?destination=D          -> [{Name, Tag, Created, Size, Base, Digest}, ...]
    GET  /kran/backups/inspect?source=S       -> the backup's inspect object
    POST /kran/backups/prune?destination=D&keep=N  -> {"Deleted": [...], "SpaceReclaimed": N}
    POST /kran/restore                        body RestoreRequest -> 201 {"Id": ...}

Each handler checks its input and calls one engine function (kran.engine.backup.backup,
kran.engine.restore.restore / list_backups / inspect_backup / prune); their KranErrors map to HTTP
statuses in the server, as for every other route.  A body's JSON types are checked the way dockerd's
Go decoder reports them (``json: cannot unmarshal number into Go struct field
BackupRequest.Containers of type string``), so a client sees the same kind of 400 as from
``/containers/create``.

A backup of many containers takes a while but runs on its own connection's thread (the server has
one per connection) and borrows its own engine from the pool, so other requests are served
meanwhile.  It is answered with one JSON document at the end, not streamed: there is no progress to
show that the report does not hold, and a client that hangs up does not cancel it halfway (each
container's backup is written whole or not at all).

``X-Registry-Auth`` (as on push and pull) gives the credentials of a registry destination; without
it, the ones ``kran login`` stored apply.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from kran.api.http import Request, registry_auth, route
from kran.codec import decode, extra, jf
from kran.errors import InvalidArgument

_D = dataclass(frozen=True, slots=True, kw_only=True)


@_D
class BackupRequest:
    containers: list[str] | None = jf("Containers")
    destination: str = jf("Destination", default="")
    pause: bool | None = jf("Pause")  # absent or null: freeze (the CLI's default, like commit -p)
    incremental: bool = jf("Incremental", default=False)
    volumes: bool = jf("Volumes", default=False)
    unknown: dict[str, Any] = extra()


@_D
class RestoreRequest:
    source: str = jf("Source", default="")
    name: str = jf("Name", default="")
    start: bool = jf("Start", default=False)
    unknown: dict[str, Any] = extra()


# -- input ---------------------------------------------------------------------------------------

_GO = {str: "string", bool: "bool", int: "int"}


def _kind(v: Any) -> str:
    """The JSON type's name as Go's decoder says it."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def _unmarshal(v: Any, field: str, go: str) -> InvalidArgument:
    return InvalidArgument(f"json: cannot unmarshal {_kind(v)} into Go struct field {field} of type {go}")


def _body(req: Request, cls: type[Any]) -> Any:
    """The request body as ``cls``, each known field's JSON type checked first (a null is absent;
    unknown keys are kept and ignored, as dockerd ignores them)."""
    data = req.body_json()
    if not isinstance(data, dict):
        raise InvalidArgument(f"json: cannot unmarshal {_kind(data)} into Go value of type kran.{cls.__name__}")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f.metadata.get("json")
        v = data.get(key) if key else None
        if v is None:
            continue
        tp = hints[f.name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        where = f"{cls.__name__}.{key}"
        if typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp)
            if not isinstance(v, list):
                raise _unmarshal(v, where, "[]" + _GO[item])
            for x in v:
                if not isinstance(x, item) or isinstance(x, bool) and item is not bool:
                    raise _unmarshal(x, where, _GO[item])
        elif not isinstance(v, tp) or isinstance(v, bool) and tp is not bool:
            raise _unmarshal(v, where, _GO[tp])
    return decode(cls, {k: v for k, v in data.items() if v is not None})


def _location(value: str | None, what: str) -> str:
    """A destination or source as given, required; an ``oci:`` directory must be absolute (a
    relative one would land wherever the service was started)."""
    if not value:
        raise InvalidArgument(f"{what} is required")
    if value.startswith("oci:") and len(value) > 4 and not value[4:].startswith("/"):
        raise InvalidArgument(f"invalid {what.lower()} {value!r}: an oci: directory must be an absolute path "
                              "on the engine's host")
    return value


# -- handlers ------------------------------------------------------------------------------------


@route("POST", "/kran/backup")
def backup(req: Request) -> None:
    from kran.engine.backup import backup as run_backup

    body: BackupRequest = _body(req, BackupRequest)
    if not body.containers:
        raise InvalidArgument("Containers is required: the names or IDs of the containers to back up")
    dest = _location(body.destination, "Destination")
    reports = run_backup(req.engine, list(body.containers), dest, pause=body.pause is not False,
                         incremental=body.incremental, with_volumes=body.volumes, creds=registry_auth(req))
    req.send_json([{"Name": r.name, "Tag": r.tag, "Manifest": r.manifest,
                    "FrozenMs": None if r.frozen_ms is None else round(r.frozen_ms, 3),  # as inspect keeps it
                    "LayerBytes": r.layer_bytes, "NewBytes": r.new_bytes, "Incremental": r.incremental,
                    "Warnings": list(r.warnings)} for r in reports])


@route("GET", "/kran/backups")
def list_backups(req: Request) -> None:
    from kran.engine.restore import list_backups as rows

    dest = _location(req.q("destination"), "destination")
    req.send_json([{"Name": r.name, "Tag": r.tag, "Created": r.created, "Size": r.size, "Base": r.base,
                    "Digest": r.digest} for r in rows(req.engine, dest, registry_auth(req))])


@route("GET", "/kran/backups/inspect")
def inspect_backup(req: Request) -> None:
    from kran.engine.restore import inspect_backup as inspect

    req.send_json(inspect(req.engine, _location(req.q("source"), "source"), registry_auth(req)))


@route("POST", "/kran/backups/prune")
def prune_backups(req: Request) -> None:
    from kran.engine.restore import prune

    dest = _location(req.q("destination"), "destination")
    keep = req.qint("keep")
    if keep is None:
        raise InvalidArgument("keep is required: the number of backups to keep per container name")
    gone, freed = prune(req.engine, dest, keep, registry_auth(req))
    req.send_json({"Deleted": gone, "SpaceReclaimed": freed})


@route("POST", "/kran/restore")
def restore(req: Request) -> None:
    from kran.engine.restore import restore as run_restore

    body: RestoreRequest = _body(req, RestoreRequest)
    source = _location(body.source, "Source")
    cid = run_restore(req.engine, source, name=body.name or None, start=body.start, creds=registry_auth(req))
    req.send_json({"Id": cid}, 201)
