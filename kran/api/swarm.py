"""Swarm endpoints: kran is never a swarm node, and says so as dockerd does on a node outside a swarm.

Clients rely on the answer: docker-py and the docker CLI treat 503 "not a swarm manager" as "swarm is
off here" (``docker system prune``, ``docker info``, test suites tearing down with ``swarm leave``),
whereas a 404 reads as a broken daemon.
"""

from __future__ import annotations

from kran.api.http import Request, route
from kran.errors import Unavailable

_NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
                "to connect this node to swarm and try again.")
_NOT_PART = "This node is not part of a swarm"
_UNSUPPORTED = "kran does not run swarm mode: this node cannot join or create a swarm"


def _refuse(msg: str):
    def handler(req: Request) -> None:
        raise Unavailable(msg)

    return handler


for _method in ("GET", "POST", "DELETE", "PUT"):
    for _base in ("/services", "/tasks", "/nodes", "/secrets", "/configs"):
        route(_method, _base)(_refuse(_NOT_MANAGER))
        route(_method, _base + "/{rest:path}")(_refuse(_NOT_MANAGER))
route("GET", "/swarm")(_refuse(_NOT_MANAGER))
route("GET", "/swarm/unlockkey")(_refuse(_NOT_MANAGER))
route("POST", "/swarm/update")(_refuse(_NOT_MANAGER))
route("POST", "/swarm/unlock")(_refuse(_NOT_MANAGER))
route("POST", "/swarm/leave")(_refuse(_NOT_PART))
route("POST", "/swarm/init")(_refuse(_UNSUPPORTED))
route("POST", "/swarm/join")(_refuse(_UNSUPPORTED))
