"""Registry configuration and endpoint planning (pure, apart from reading the files).

``/etc/kran/config.toml`` (or ``$KRAN_CONFIG``)::

    registry-mirrors = ["http://127.0.0.1:5001"]   # docker.io only, tried first, in order
    insecure-registries = ["myhost:5000", "10.0.0.0/8"]   # unverified TLS, then plain HTTP

    [mirrors]                                       # kran's: mirrors of any registry (pull only)
    "registry.lan:5000" = ["http://10.0.0.9:5000"]

CA certificates: ``/etc/kran/certs.d/<host:port>/ca.crt`` (``$KRAN_CERTS_D`` overrides the
directory), then Docker's ``/etc/docker/certs.d/<host:port>/ca.crt``.

Endpoint order for a registry host (see ``endpoints``):

- ``docker.io``: the mirrors (pull only), then ``https://registry-1.docker.io``.
- a registry with ``[mirrors]``: those (pull only), then its own endpoints as below.
- listed in ``insecure-registries``: HTTPS without verification, then HTTP (Docker's behaviour).
- loopback (127.0.0.0/8, ::1, ``localhost``), insecure by default as in Docker: HTTPS *verified*
  (with the host's CA if one is installed), then plain HTTP.  Docker would skip verification
  here; kran keeps it so a TLS registry on loopback with an unknown certificate is an error, not
  silently trusted.  List the host in ``insecure-registries`` for Docker's behaviour.
- anything else: HTTPS, verified.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

DOCKER_IO = "docker.io"
DOCKER_IO_ENDPOINT = "registry-1.docker.io"
DOCKER_IO_AUTH_KEY = "https://index.docker.io/v1/"
DEFAULT_CERTS_D = "/etc/kran/certs.d"
DOCKER_CERTS_D = "/etc/docker/certs.d"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryConfig:
    mirrors: tuple[str, ...] = ()
    insecure: tuple[str, ...] = ()
    mirrors_of: dict[str, tuple[str, ...]] = field(default_factory=dict)  # registry host -> its mirrors
    certs_dirs: tuple[str, ...] = (DEFAULT_CERTS_D, DOCKER_CERTS_D)

    @classmethod
    def load(cls, env: dict[str, str] | None = None) -> RegistryConfig:
        """Read the config file named by ``KRAN_CONFIG`` (default /etc/kran/config.toml) if present."""
        from kran import config
        from kran.errors import InvalidArgument

        env = dict(os.environ) if env is None else env
        path = config.path(env)
        doc = config.load(env)
        mirrors = doc.get("registry-mirrors", [])
        insecure = doc.get("insecure-registries", [])
        if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
            raise InvalidArgument(f"invalid config file {path}: registry-mirrors must be a list of URLs")
        if not isinstance(insecure, list) or not all(isinstance(m, str) for m in insecure):
            raise InvalidArgument(f"invalid config file {path}: insecure-registries must be a list of hosts")
        table = doc.get("mirrors", {})
        if not isinstance(table, dict) or not all(
                isinstance(v, list) and all(isinstance(m, str) for m in v) for v in table.values()):
            raise InvalidArgument(f"invalid config file {path}: [mirrors] must map registry hosts to lists of URLs")
        mirrors_of = {k: tuple(m.rstrip("/") for m in v) for k, v in table.items() if k != DOCKER_IO}
        mirrors = [*mirrors, *table.get(DOCKER_IO, [])]
        certs = (env["KRAN_CERTS_D"],) if env.get("KRAN_CERTS_D") else (DEFAULT_CERTS_D,)
        return cls(
            mirrors_of=mirrors_of,
            mirrors=tuple(m.rstrip("/") for m in mirrors),
            insecure=tuple(insecure),
            certs_dirs=certs + (DOCKER_CERTS_D,),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One way to reach a registry: ``scheme://host[:port]``, how to check its certificate."""

    url: str
    verify: bool = True
    cafile: str | None = None
    mirror: bool = False

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0]

    @property
    def netloc(self) -> str:
        return self.url.split("://", 1)[1].split("/", 1)[0]


def _host_only(hostport: str) -> str:
    if hostport.startswith("["):
        return hostport[1 : hostport.index("]")]
    return hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport


def is_loopback(hostport: str) -> bool:
    host = _host_only(hostport)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_insecure(cfg: RegistryConfig, hostport: str) -> bool:
    """Listed in insecure-registries, by ``host:port``, bare host, or a CIDR holding its IP."""
    host = _host_only(hostport)
    for entry in cfg.insecure:
        e = entry.split("://", 1)[-1].rstrip("/")
        if e in (hostport, host):
            return True
        if "/" in e:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(e, strict=False):
                    return True
            except ValueError:
                continue
    return False


def ca_file(cfg: RegistryConfig, hostport: str) -> str | None:
    for d in cfg.certs_dirs:
        for name in (hostport, _host_only(hostport)):
            p = os.path.join(d, name, "ca.crt")
            if os.path.isfile(p):
                return p
    return None


def _mirror_endpoints(cfg: RegistryConfig, mirrors: tuple[str, ...]) -> list[Endpoint]:
    out = []
    for m in mirrors:
        url = m if "://" in m else "https://" + m
        netloc = url.split("://", 1)[1].split("/", 1)[0]
        insecure = is_insecure(cfg, netloc)
        out.append(Endpoint(url=url.split("/v2", 1)[0], verify=not insecure, cafile=ca_file(cfg, netloc), mirror=True))
    return out


def endpoints(cfg: RegistryConfig, domain: str, *, pull: bool = True) -> list[Endpoint]:
    """The endpoints to try, in order, for registry ``domain`` (a reference's domain)."""
    if domain == DOCKER_IO:
        out = _mirror_endpoints(cfg, cfg.mirrors) if pull else []
        out.append(Endpoint(url="https://" + DOCKER_IO_ENDPOINT, cafile=ca_file(cfg, DOCKER_IO_ENDPOINT)))
        return out
    out = _mirror_endpoints(cfg, cfg.mirrors_of.get(domain, ())) if pull else []
    ca = ca_file(cfg, domain)
    if is_insecure(cfg, domain):
        return [*out, Endpoint(url="https://" + domain, verify=False), Endpoint(url="http://" + domain)]
    if is_loopback(domain):
        return [*out, Endpoint(url="https://" + domain, cafile=ca), Endpoint(url="http://" + domain)]
    return [*out, Endpoint(url="https://" + domain, cafile=ca)]


def auth_key(domain: str) -> str:
    """The key of a registry in Docker's config.json ``auths``."""
    return DOCKER_IO_AUTH_KEY if domain in (DOCKER_IO, "index.docker.io", DOCKER_IO_ENDPOINT) else domain
