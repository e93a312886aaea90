"""System endpoints: ping, version, info, events, df."""

from __future__ import annotations

import os
import platform

from kran.api.http import API_VERSION, MIN_API_VERSION, Request, route


@route("GET", "/_ping")
def ping(req: Request) -> None:
    req.extra_headers += [("Builder-Version", "1"), ("Cache-Control", "no-cache, no-store, must-revalidate"),
                          ("Pragma", "no-cache")]
    req.send_text("OK")


def _version() -> dict:
    from kran import __version__

    kernel = os.uname().release
    return {
        "Platform": {"Name": "kran"},
        "Components": [{"Name": "Engine", "Version": __version__,
                        "Details": {"ApiVersion": API_VERSION, "Arch": _arch(), "KernelVersion": kernel,
                                    "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
                                    "PythonVersion": platform.python_version()}}],
        "Version": __version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "", "GoVersion": "python" + platform.python_version(), "Os": "linux", "Arch": _arch(),
        "KernelVersion": kernel, "BuildTime": "",
    }


def _arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


@route("GET", "/version")
def version(req: Request) -> None:
    req.send_json(_version())


@route("GET", "/info")
def info(req: Request) -> None:
    from kran.engine.sysinfo import info

    req.send_json(info(req.engine).document())


@route("GET", "/events")
def events(req: Request) -> None:
    """docker's event stream: JSON objects, following new ones unless ``until`` is given."""
    import json
    import time

    from kran.api.http import filter_args
    from kran.engine.events import matches, read

    def ts(name: str) -> float | None:
        v = req.q(name)
        if not v:
            return None
        try:
            return float(v)
        except ValueError:
            from kran.errors import InvalidArgument

            raise InvalidArgument(f"invalid {name} value: {v}") from None

    since, until = ts("since"), ts("until")
    filters: dict[str, list[str]] = {}
    for f in filter_args(req.qjson("filters")):
        k, _, v = f.partition("=")
        filters.setdefault(k, []).append(v)
    root = req.engine.root
    conn = req._h.connection

    def gone() -> bool:  # the client hung up (readable with nothing to read)
        import socket

        try:
            return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False  # nothing to read: still there
        except OSError:
            return True

    def gen():  # type: ignore[no-untyped-def]
        for ev in read(root, since=since if since is not None else time.time(), until=until, follow=True,
                       stop=gone):
            if not matches(ev, filters):
                continue
            actor = ev.get("Actor", {})
            out = dict(ev)
            if ev.get("Type") == "container":  # the legacy fields docker still sends
                out.update(status=ev.get("Action"), id=actor.get("ID"), **{"from": actor.get("Attributes", {}).get("image", "")})
            yield (json.dumps(out) + "\n").encode()

    req.send_stream(gen(), "application/json")
