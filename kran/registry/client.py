"""OCI distribution client (distribution spec v1.0, Docker registry API v2), stdlib only.

Glossary: a *registry* is a host (``docker.io``, ``127.0.0.1:5000``); an *endpoint* one URL
that reaches it (kran.registry.config); a *repository* a path in it (``library/busybox``).

Lifecycle: ``Session.connect(domain, cfg)`` pings ``/v2/`` on each endpoint in turn and keeps
the first that answers like a registry (200 or 401).  Requests then go through ``request``, which
authenticates on a 401 (Basic, or a Bearer token from the challenge's realm) and retries once.

Trust boundary: every byte from the registry is verified against the digest that names it --
manifests here (``get_manifest``), blobs by ``BlobStore.ingest`` (digest and size, nothing
unverified is kept).  Redirects (blob storage backends) are followed without the Authorization
header when they lead to another host.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, BinaryIO

from kran.registry import credentials as credmod
from kran.registry.auth import AuthState, parse_challenge, parse_token_response
from kran.registry.config import Endpoint, RegistryConfig, auth_key, endpoints
from kran.registry.errors import (
    ManifestUnknown,
    RegistryDigestMismatch,
    RegistryError,
    Unauthorized,
    Unreachable,
    from_response,
)

if TYPE_CHECKING:
    from kran.storage.blobs import BlobStore

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MAX_MANIFEST = 4 << 20
TIMEOUT = 60.0
USER_AGENT = "kran/0.1 (distribution client)"
CHUNK = 1 << 20
#: blobs bigger than this are uploaded in PATCH chunks of this size (spec: "chunked upload")
UPLOAD_CHUNK = 64 << 20


class Response:
    """An HTTP response whose connection closes with it.  ``read`` streams the body."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, url: str) -> None:
        self.conn, self.resp, self.url = conn, resp, url
        self.status = resp.status

    def header(self, name: str, default: str = "") -> str:
        return self.resp.getheader(name, default) or default

    def read(self, n: int = -1) -> bytes:
        return self.resp.read(n) if n >= 0 else self.resp.read()

    def readinto(self, b: Any) -> int:
        return self.resp.readinto(b)

    def read_limited(self, limit: int) -> bytes:
        data = self.resp.read(limit + 1)
        if len(data) > limit:
            raise RegistryError(f"response from {self.url} is too large (over {limit} bytes)")
        return data

    def close(self) -> None:
        self.resp.close()
        self.conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Aborted(Exception):
    """A transfer was stopped because ``abort`` was set."""


class _Abortable:
    def __init__(self, r: Response, abort: threading.Event | None) -> None:
        self.r, self.abort = r, abort

    def read(self, n: int = -1) -> bytes:
        if self.abort is not None and self.abort.is_set():
            raise Aborted("aborted")
        return self.r.read(n)


def _ssl_context(ep: Endpoint) -> ssl.SSLContext:
    if not ep.verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context()
    if ep.cafile:
        ctx.load_verify_locations(cafile=ep.cafile)
    return ctx


def _why(e: BaseException, host: str = "") -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"tls: failed to verify certificate: {e.verify_message or e.reason}"
    if isinstance(e, ssl.SSLError):
        return f"tls: {e.reason or e}"
    if isinstance(e, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(e, socket.gaierror):
        return f"dial tcp: lookup {host or '?'}: {(e.strerror or str(e)).lower()}"
    if isinstance(e, TimeoutError | socket.timeout):
        return "i/o timeout"
    return str(e) or type(e).__name__


class Session:
    """One registry endpoint, with its authentication state.  Safe to share between threads."""

    def __init__(self, domain: str, endpoint: Endpoint, creds: credmod.Credentials | None) -> None:
        self.domain = domain
        self.endpoint = endpoint
        self.creds = creds
        self._ctx = _ssl_context(endpoint) if endpoint.scheme == "https" else None
        self._auth = AuthState()

    # -- connecting ------------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        domain: str,
        cfg: RegistryConfig,
        *,
        pull: bool = True,
        creds: credmod.Credentials | None = None,
        use_mirrors: bool = True,
    ) -> list[Session]:
        """Sessions for the endpoints of ``domain`` that answer ``/v2/``, best first.

        Raises Unreachable (with the first endpoint's error, usually the most telling: a
        certificate problem rather than "HTTP to an HTTPS server") if none answers.
        """
        if creds is None:
            creds = credmod.lookup(auth_key(domain))
        eps = endpoints(cfg, domain, pull=pull and use_mirrors)
        out: list[Session] = []
        errors: list[str] = []
        for ep in eps:
            s = cls(domain, ep, creds)
            if out and not ep.mirror:
                # a mirror answered: the upstream is only a fallback, reached (and its auth
                # challenge learnt from the first 401) if the mirror fails -- each of its
                # endpoints in turn (HTTPS, then plain HTTP for an insecure registry), unpinged
                out += [cls(domain, e, creds) for e in eps[eps.index(ep):]]
                break
            try:
                s.ping()
            except (OSError, http.client.HTTPException, RegistryError) as e:
                errors.append(f'Get "{ep.url}/v2/": {_why(e, ep.netloc.rsplit(":", 1)[0])}')
                continue
            out.append(s)
            if not ep.mirror:
                break
        if not out:
            raise Unreachable(errors[0] if errors else f"no endpoint for registry {domain}")
        return out

    def ping(self) -> None:
        """GET /v2/: 200 (open) or 401 (auth needed) means a registry is there."""
        r = self._send("GET", self.endpoint.url + "/v2/", {})
        with r:
            r.read_limited(1 << 16)
            if r.status == 401:
                self._note_challenge(r.header("WWW-Authenticate"))
            elif r.status != 200:
                raise RegistryError(f"unexpected status {r.status} (not a registry v2 endpoint)", status=r.status)

    # -- HTTP ------------------------------------------------------------------------------------

    def _send(self, method: str, url: str, headers: dict[str, str], body: Any = None) -> Response:
        u = urllib.parse.urlsplit(url)
        if u.scheme == "https":
            ctx = self._ctx if u.netloc == self.endpoint.netloc and self._ctx else ssl.create_default_context()
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                u.netloc, timeout=TIMEOUT, context=ctx, blocksize=CHUNK
            )
        else:
            conn = http.client.HTTPConnection(u.netloc, timeout=TIMEOUT, blocksize=CHUNK)
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        hdrs = {"User-Agent": USER_AGENT, **headers}
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        return Response(conn, resp, url)

    def _send_follow(self, method: str, url: str, headers: dict[str, str], body: Any = None) -> Response:
        origin = urllib.parse.urlsplit(url).netloc
        for _ in range(10):
            r = self._send(method, url, headers, body)
            if r.status not in (301, 302, 303, 307, 308) or method not in ("GET", "HEAD"):
                return r
            loc = r.header("Location")
            r.close()
            if not loc:
                raise RegistryError(f"redirect without Location from {url}")
            url = urllib.parse.urljoin(url, loc)
            if urllib.parse.urlsplit(url).netloc != origin:
                # never hand our registry credentials to another host (e.g. a blob CDN)
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        raise RegistryError(f"too many redirects from {url}")

    def url(self, path: str) -> str:
        return path if "://" in path else self.endpoint.url + path

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        scopes: Iterable[str] = (),
    ) -> Response:
        """Send a request, authenticating and retrying once on 401.  The caller closes the response.

        Transport failures (connection reset, TLS, a malformed response) raise Unreachable.
        """
        try:
            return self._request(method, path, headers=headers, body=body, scopes=frozenset(scopes))
        except (OSError, http.client.HTTPException) as e:
            raise Unreachable(f'{method.capitalize()} "{self.url(path)}": {_why(e, self.endpoint.netloc.rsplit(":", 1)[0])}') from e

    def _request(
        self, method: str, path: str, *, headers: dict[str, str] | None, body: Any, scopes: frozenset[str]
    ) -> Response:
        url = self.url(path)
        hdrs = dict(headers or {})
        auth = self._authorization(scopes)
        if auth:
            hdrs["Authorization"] = auth
        r = self._send_follow(method, url, hdrs, body)
        if r.status != 401:
            return r
        challenge = r.header("WWW-Authenticate")
        err_body = r.read_limited(1 << 16)
        r.close()
        self._note_challenge(challenge)
        new = self._authenticate(scopes, challenge)
        if not new or new == auth:
            raise from_response(401, err_body, url)
        if body is not None and hasattr(body, "seek"):
            body.seek(0)
        hdrs["Authorization"] = new
        return self._send_follow(method, url, hdrs, body)

    # -- auth ------------------------------------------------------------------------------------

    def _note_challenge(self, header: str) -> None:
        if not header:
            return
        kind, params = parse_challenge(header)
        with self._auth.lock:
            if kind == "bearer":
                self._auth.kind, self._auth.realm, self._auth.service = "bearer", params.get("realm", ""), params.get("service", "")
            elif kind == "basic":
                self._auth.kind = "basic"

    def _authorization(self, scopes: frozenset[str]) -> str:
        a = self._auth
        with a.lock:
            if a.kind == "basic" and self.creds:
                return self.creds.basic()
            if a.kind != "bearer":
                return ""
            token = a.cached(scopes)
            realm = a.realm
        if token:
            return "Bearer " + token
        if realm and scopes:
            # the challenge is known: get the token first rather than have the request refused,
            # which saves a round trip and never sends an upload body only to have it rejected
            return "Bearer " + self._new_token(scopes)
        return ""

    def _authenticate(self, scopes: frozenset[str], challenge: str) -> str:
        a = self._auth
        if a.kind == "basic":
            return self.creds.basic() if self.creds else ""
        if a.kind != "bearer":
            return ""
        _, params = parse_challenge(challenge) if challenge else ("", {})
        want = set(scopes)
        if params.get("scope"):
            # the registry names every access the request needs (for a mount: both repositories)
            want.update(params["scope"].split(" "))
        return "Bearer " + self._new_token(frozenset(want))

    def _new_token(self, scopes: frozenset[str]) -> str:
        token, expires_in = self._token_response(scopes)
        with self._auth.lock:
            self._auth.keep(scopes, token, expires_in)
        return token

    def fetch_token(self, scopes: frozenset[str]) -> str:
        """Token auth (distribution docs, "Token Authentication Specification"): GET realm?service&scope."""
        return self._token_response(scopes)[0]

    def _token_response(self, scopes: frozenset[str]) -> tuple[str, float]:
        """(token, lifetime in seconds).  Each scope is its own ``scope`` parameter, as the spec
        asks for a request needing several (``repository:b:pull,push`` and ``repository:a:pull``)."""
        a = self._auth
        if not a.realm:
            raise Unauthorized("unauthorized: bearer challenge without a realm", status=401)
        q = [("service", a.service)] if a.service else []
        q += [("scope", s) for s in sorted(scopes)]
        url = a.realm + ("&" if "?" in a.realm else "?") + urllib.parse.urlencode(q)
        hdrs = {"Authorization": self.creds.basic()} if self.creds else {}
        try:
            r = self._send_follow("GET", url, hdrs)
        except (OSError, http.client.HTTPException) as e:
            raise Unreachable(f'Get "{a.realm}": {_why(e)}') from e
        with r:
            body = r.read_limited(1 << 20)
            if r.status != 200:
                err = from_response(r.status, body, a.realm)
                raise Unauthorized(str(err) if isinstance(err, Unauthorized) else f"unauthorized: {err}", status=401) from None
        return parse_token_response(body)

    def check_login(self) -> None:
        """Verify ``self.creds`` (``docker login``): /v2/ with Basic, or a token from the realm."""
        r = self.request("GET", "/v2/")
        with r:
            body = r.read_limited(1 << 16)
            if r.status != 200:
                raise from_response(r.status, body, self.url("/v2/"))
        if self._auth.kind == "bearer" and not self._auth.tokens:
            self.fetch_token(frozenset())

    # -- pull ------------------------------------------------------------------------------------

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of the manifest of ``repo`` at tag or digest ``ref``; verified."""
        r = self.request(
            "GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT}, scopes=(f"repository:{repo}:pull",)
        )
        with r:
            body = r.read_limited(MAX_MANIFEST)
            if r.status != 200:
                raise from_response(r.status, body, f"manifest {repo}:{ref}")
            mt = r.header("Content-Type").split(";")[0].strip()
            header_digest = r.header("Docker-Content-Digest")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.startswith("sha256:") and digest != ref:
            raise RegistryDigestMismatch(f"manifest digest mismatch: expected {ref}, got {digest}")
        if header_digest.startswith("sha256:") and header_digest != digest:
            raise RegistryDigestMismatch(f"manifest digest mismatch: registry says {header_digest}, content is {digest}")
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise RegistryError(f"invalid manifest for {repo}:{ref}: {e}") from e
        if isinstance(doc, dict) and isinstance(doc.get("mediaType"), str):
            mt = doc["mediaType"]
        return body, mt, digest

    def fetch_blob_bytes(self, repo: str, digest: str, size: int, limit: int = 64 << 20) -> bytes:
        """A small blob (a config) in memory, verified."""
        if size > limit:
            raise RegistryError(f"blob {digest} is too large ({size} bytes)")
        with self._blob(repo, digest) as r:
            data = r.read_limited(limit)
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != digest or len(data) != size:
            raise RegistryDigestMismatch(f"digest mismatch for blob {digest}: got {got} ({len(data)} bytes, expected {size})")
        return data

    def fetch_blob(
        self, repo: str, digest: str, size: int, blobs: BlobStore, abort: threading.Event | None = None
    ) -> None:
        """Stream a blob into the content store; ingest verifies digest and size (nothing else is kept).

        Setting ``abort`` (another download failed, or Ctrl-C) stops the transfer at the next chunk.
        """
        from kran.errors import DigestMismatch

        with self._blob(repo, digest) as r:
            try:
                blobs.ingest(_Abortable(r, abort), expected=digest, size=size)  # type: ignore[arg-type]
            except DigestMismatch as e:
                raise RegistryDigestMismatch(f"failed to verify blob {digest} from {self.domain}/{repo}: {e}") from e
            except (OSError, http.client.HTTPException) as e:
                raise Unreachable(f"download of {digest} from {self.domain} failed: {_why(e)}") from e

    def open_blob(self, repo: str, digest: str) -> Response:
        """The blob's body as a stream; the caller verifies it (and closes the response)."""
        return self._blob(repo, digest)

    def _blob(self, repo: str, digest: str) -> Response:
        r = self.request("GET", f"/v2/{repo}/blobs/{digest}", scopes=(f"repository:{repo}:pull",))
        if r.status != 200:
            body = r.read_limited(1 << 16)
            r.close()
            raise from_response(r.status, body, f"blob {digest}")
        return r

    def list_tags(self, repo: str) -> list[str]:
        tags: list[str] = []
        path = f"/v2/{repo}/tags/list"
        while path:
            with self.request("GET", path, scopes=(f"repository:{repo}:pull",)) as r:
                body = r.read_limited(MAX_MANIFEST)
                if r.status != 200:
                    raise from_response(r.status, body, f"tags of {repo}")
                link = r.header("Link")
            tags += json.loads(body).get("tags") or []
            path = link[link.index("<") + 1 : link.index(">")] if link.startswith("<") else ""
        return tags

    # -- push ------------------------------------------------------------------------------------

    def blob_exists(self, repo: str, digest: str) -> bool:
        with self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=(f"repository:{repo}:pull,push",)) as r:
            r.read()
            if r.status == 200:
                return True
            if r.status == 404:
                return False
            raise from_response(r.status, b"", f"blob {digest}")

    def start_upload(self, repo: str, digest: str | None = None, mount_from: str | None = None) -> str | None:
        """POST an upload; with ``mount_from``, ask for a cross-repository mount first.

        Returns None when the blob was mounted (201 Created: nothing to send), else the upload
        URL (202 Accepted: the registry could not mount -- the source lacks the blob, or the
        registry does not mount -- and opened an ordinary upload session instead).  A mount needs
        ``pull`` on the source as well as ``push`` here (distribution spec, "Mounting a blob
        from another repository"): both scopes go into one token request.
        """
        scopes = [f"repository:{repo}:pull,push"]
        path = f"/v2/{repo}/blobs/uploads/"
        if mount_from and digest:
            path += "?" + urllib.parse.urlencode({"mount": digest, "from": mount_from}, safe="/:")
            scopes.append(f"repository:{mount_from}:pull")
        with self.request("POST", path, headers={"Content-Length": "0"}, body=b"", scopes=scopes) as r:
            body = r.read_limited(1 << 16)
            if r.status == 201 and mount_from:
                return None
            if r.status != 202:
                raise from_response(r.status, body, f"upload to {repo}")
            return urllib.parse.urljoin(self.url(path), r.header("Location"))

    def cancel_upload(self, repo: str, location: str) -> None:
        """DELETE an upload session not needed after all.  Best effort: the registry purges
        abandoned sessions by itself, so a failure here is no reason to fail a push."""
        try:
            with self.request("DELETE", location, scopes=(f"repository:{repo}:pull,push",)) as r:
                r.read_limited(1 << 16)
        except (RegistryError, Unreachable):
            pass

    def upload(self, repo: str, location: str, digest: str, size: int, src: BinaryIO) -> None:
        """Monolithic PUT, or PATCH chunks then PUT for blobs over UPLOAD_CHUNK (spec: pushing blobs)."""
        scopes = (f"repository:{repo}:pull,push",)
        if size > UPLOAD_CHUNK:
            offset = 0
            while offset < size:
                chunk = src.read(UPLOAD_CHUNK)
                hdrs = {
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(chunk)),
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                }
                with self.request("PATCH", location, headers=hdrs, body=chunk, scopes=scopes) as r:
                    body = r.read_limited(1 << 16)
                    if r.status != 202:
                        raise from_response(r.status, body, f"upload of {digest}")
                    location = urllib.parse.urljoin(location, r.header("Location") or location)
                offset += len(chunk)
            body_src: Any = b""
            length = 0
        else:
            body_src, length = src, size
        sep = "&" if "?" in location else "?"
        hdrs = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        with self.request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", headers=hdrs, body=body_src, scopes=scopes) as r:
            body = r.read_limited(1 << 16)
            if r.status != 201:
                raise from_response(r.status, body, f"upload of {digest}")

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        with self.request(
            "PUT", f"/v2/{repo}/manifests/{ref}",
            headers={"Content-Type": media_type, "Content-Length": str(len(data))}, body=data,
            scopes=(f"repository:{repo}:pull,push",),
        ) as r:
            body = r.read_limited(1 << 16)
            if r.status not in (200, 201):
                raise from_response(r.status, body, f"manifest {repo}:{ref}")
            return r.header("Docker-Content-Digest") or "sha256:" + hashlib.sha256(data).hexdigest()


def select_platform(index: dict[str, Any], os_name: str, arch: str, variant: str = "") -> dict[str, Any] | None:
    """The descriptor of ``os/arch[/variant]`` in an image index (pure).  None if absent."""
    best = None
    for d in index.get("manifests") or []:
        if not isinstance(d, dict):
            continue
        p = d.get("platform") or {}
        if p.get("os") != os_name or p.get("architecture") != arch:
            continue
        if variant and p.get("variant") and p.get("variant") != variant:
            continue
        if best is None or (variant and p.get("variant") == variant):
            best = d
    return best


def resolve_manifest(
    sessions: list[Session], repo: str, ref: str, platform: tuple[str, str, str]
) -> tuple[Session, bytes, str, str]:
    """Try each session (mirrors first) for ``repo:ref``; an index is resolved to ``platform``.

    Returns (session, manifest bytes, media type, digest of what ``ref`` names -- the index's
    digest for a multi-platform image, as Docker records it in RepoDigests).
    """
    last: Exception | None = None
    for i, s in enumerate(sessions):
        try:
            data, mt, digest = s.get_manifest(repo, ref)
        except (RegistryError, Unreachable, OSError, http.client.HTTPException) as e:
            # a mirror that fails falls back to the next endpoint; so does an unpinged upstream
            # endpoint that cannot be reached (HTTPS of a plain-HTTP registry) when another follows
            unreached = isinstance(e, Unreachable | OSError | http.client.HTTPException)
            if i == len(sessions) - 1 or not (s.endpoint.mirror or unreached):
                if isinstance(e, OSError | http.client.HTTPException):
                    raise Unreachable(f"{s.endpoint.url}: {_why(e)}") from e
                raise
            last = e
            continue
        if mt in INDEX_TYPES:
            doc = json.loads(data)
            d = select_platform(doc, *platform)
            if d is None:
                want = "/".join(p for p in platform if p)
                raise ManifestUnknown(f"no matching manifest for {want} in the manifest list entries")
            data, mt, _ = s.get_manifest(repo, str(d["digest"]))
        return s, data, mt, digest
    raise last if last else Unreachable("no registry endpoint")
