"""Cross-repository blob mounts on push (OCI distribution spec, "Mounting a blob from another
repository"), against a real docker-registry on 127.0.0.1.

What the user sees: ``Mounted from REPO`` instead of ``Pushed`` for a layer the registry already
holds in another repository that kran knows of, and the bytes that did not cross the wire (a
counting TCP proxy in front of the registry measures what kran sends).
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import _kran_fixture
from tests.registry.conftest import RegistryKran, free_port

pytestmark = pytest.mark.e2e

MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


class CountingProxy:
    """A TCP forwarder to the registry that counts the bytes clients send through it."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._sent = 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self._spawn(self._accept)

    @property
    def sent(self) -> int:
        with self._lock:
            return self._sent

    def _spawn(self, fn, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed by stop()
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._socks += [client, upstream]
            self._spawn(self._pump, client, upstream, True)
            self._spawn(self._pump, upstream, client, False)

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if count:
                    with self._lock:
                        self._sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self.listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            s.close()
        for t in self._threads:
            t.join(5)


@pytest.fixture
def proxy(registry):
    p = CountingProxy(registry.port)
    yield p
    p.stop()


@pytest.fixture
def kran2(kran, tmp_path: Path):
    """A second, empty kran root (another host), with the first one's registry settings."""
    gen = _kran_fixture(tmp_path / "root2")
    k = next(gen)
    k.__class__ = RegistryKran
    k.env.update({key: kran.env[key] for key in ("KRAN_CONFIG", "KRAN_CERTS_D", "DOCKER_CONFIG")})
    yield k
    next(gen, None)


def _manifest(host: str, repo: str, ref: str) -> dict:
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def _repo_dir(registry, repo: str) -> Path:
    return registry.storage / "docker/registry/v2/repositories" / repo


def _status(out: str, digest: str) -> list[str]:
    """The progress statuses printed for one blob (``<short id>: <status>`` lines)."""
    short = digest.split(":", 1)[1][:12]
    return [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith(short + ": ")]


def test_push_to_another_repository_mounts_the_layers(kran, kran2, busybox, registry, proxy, tmp_path):
    host = proxy.host  # everything goes through the counting proxy
    kran("tag", "busybox", f"{host}/a/busybox")
    before = proxy.sent
    p = kran("push", f"{host}/a/busybox")
    sent_first = proxy.sent - before
    layer = _manifest(registry.host, "a/busybox", "latest")["layers"][0]
    assert _status(p.out, layer["digest"])[-1] == "Pushed"
    assert sent_first > layer["size"]

    # the tag goes, and with it the image's repo digest for a/busybox (Docker's rmi): only kran's
    # record of the push still says where the layer is
    kran("rmi", f"{host}/a/busybox")
    assert not [d for d in json.loads(kran("image", "inspect", "busybox").out)[0]["RepoDigests"] if "/a/busybox@" in d]

    kran("tag", "busybox", f"{host}/b/busybox")
    before = proxy.sent
    p = kran("push", f"{host}/b/busybox")
    sent_second = proxy.sent - before
    assert _status(p.out, layer["digest"]) == ["Preparing", "Mounted from a/busybox"], p.out
    assert "Pushed" not in p.out and "Pushing" not in p.out
    assert p.out.splitlines()[-1].startswith("latest: digest: sha256:")
    # what crossed the wire: requests and the manifest, not the layer
    assert sent_second < layer["size"] / 20, (sent_second, layer["size"])
    print(f"push to a new repository: {sent_first} bytes sent; to a second one: {sent_second} (layer {layer['size']})")
    # the registry linked the blob into b without any upload session there, and holds its data once
    b = _repo_dir(registry, "b/busybox")
    assert (b / "_layers/sha256" / layer["digest"].split(":")[1] / "link").read_text() == layer["digest"]
    assert not (b / "_uploads").exists()
    hexes = [d.parent.name for d in (registry.storage / "docker/registry/v2/blobs").rglob("data")]
    assert hexes.count(layer["digest"].split(":")[1]) == 1
    assert len(hexes) == len(set(hexes)) == 3  # layer, config, manifest (the same bytes in a and b)

    # another host pulls from b and runs it
    p = kran2("pull", f"{host}/b/busybox")
    assert "Pull complete" in p.out
    assert kran2("run", "--rm", f"{host}/b/busybox", "echo", "mounted and pulled").out == "mounted and pulled\n"
    # ... and knows where it pulled the layer from: a push to a third repository mounts from b
    kran2("tag", f"{host}/b/busybox", f"{host}/c/pulled")
    p = kran2("push", f"{host}/c/pulled")
    assert _status(p.out, layer["digest"])[-1] == "Mounted from b/busybox", p.out

    # an image built on busybox: its base is mounted, only the new layer is uploaded
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo built on busybox > /hello\n")
    kran("build", "-q", "-t", f"{host}/c/app:1", str(ctx))
    before = proxy.sent
    p = kran("push", f"{host}/c/app:1")
    sent_app = proxy.sent - before
    layers = _manifest(registry.host, "c/app", "1")["layers"]
    assert len(layers) == 2 and layers[0]["digest"] == layer["digest"]
    assert _status(p.out, layers[0]["digest"])[-1] == "Mounted from b/busybox", p.out
    assert _status(p.out, layers[1]["digest"])[-1] == "Pushed", p.out
    assert sent_app < layer["size"] / 2, (sent_app, layer["size"])
    kran2("pull", f"{host}/c/app:1")
    assert kran2("run", "--rm", f"{host}/c/app:1", "cat", "/hello").out == "built on busybox\n"


def test_source_without_the_blob_falls_back_to_an_upload(kran, kran2, busybox, registry):
    host = registry.host
    kran("tag", "busybox", f"{host}/a/busybox")
    kran("push", f"{host}/a/busybox")
    layer = _manifest(host, "a/busybox", "latest")["layers"][0]["digest"]
    # the source repository loses the layer (the fixture's registry allows deletes)
    req = urllib.request.Request(f"http://{host}/v2/a/busybox/blobs/{layer}", method="DELETE")
    with urllib.request.urlopen(req) as r:
        assert r.status == 202
    kran("tag", "busybox", f"{host}/b/busybox")
    p = kran("push", f"{host}/b/busybox")
    assert _status(p.out, layer) == ["Preparing", "Pushing", "Pushed"], p.out
    assert "Mounted" not in p.out
    kran2("pull", f"{host}/b/busybox")
    assert kran2("run", "--rm", f"{host}/b/busybox", "echo", "uploaded again").out == "uploaded again\n"
    # the next repository mounts from the one that has it
    kran("tag", "busybox", f"{host}/c/busybox")
    p = kran("push", f"{host}/c/busybox")
    assert _status(p.out, layer)[-1] == "Mounted from b/busybox", p.out


def test_token_auth_mount_asks_for_both_repositories(kran, busybox, token_registry):
    reg = token_registry
    kran("login", "-u", reg.user, "-p", reg.password, reg.host)
    kran("tag", "busybox", f"{reg.host}/tok/a")
    kran("push", f"{reg.host}/tok/a")
    kran("rmi", f"{reg.host}/tok/a")
    kran("tag", "busybox", f"{reg.host}/tok/b")
    del reg.tokens.requests[:]
    p = kran("push", f"{reg.host}/tok/b")
    assert "Mounted from tok/a" in p.out, p.out
    assert "Pushed" not in p.out
    # one token for both: pull on the source, pull and push on the target
    asked = [set(r["scopes"]) for r in reg.tokens.requests]
    assert {"repository:tok/b:pull,push", "repository:tok/a:pull"} in asked, asked
    assert all(r["user"] == reg.user for r in reg.tokens.requests)


def test_token_cache_serves_supersets_and_drops_expired():
    """Pure: a token asked for a mount (both repositories) also serves the target's own requests;
    an expired one is never sent; a bad token answer is a one-line error."""
    import time

    from kran.registry import auth

    st = auth.AuthState()
    both = frozenset({"repository:b:pull,push", "repository:a:pull"})
    st.keep(both, "T1", 300)
    assert st.cached(frozenset({"repository:b:pull,push"})) == "T1"
    assert st.cached(frozenset({"repository:c:pull"})) == ""
    st.keep(frozenset({"repository:c:pull"}), "T2", 1)  # kept for at least 1 s
    assert st.cached(frozenset({"repository:c:pull"})) == "T2"
    time.sleep(1.1)
    assert st.cached(frozenset({"repository:c:pull"})) == ""
    assert list(st.tokens) == [both]
    assert auth.parse_token_response(b'{"access_token": "x"}') == ("x", auth.TOKEN_LIFETIME)
    assert auth.parse_token_response(b'{"token": "y", "expires_in": 120}') == ("y", 120.0)
    with pytest.raises(auth.Unauthorized, match="returned no token"):
        auth.parse_token_response(b"<html>")
