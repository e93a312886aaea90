"""The client in-process: redirects drop credentials for another host; chunked uploads."""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import threading

import pytest

from kran.registry.client import Session
from kran.registry.config import Endpoint
from kran.registry.credentials import Credentials
from kran.storage.blobs import BlobStore

pytestmark = pytest.mark.e2e

DATA = b"layer bytes " * 1000
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


def _serve(handler_cls):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    return httpd


def test_redirect_to_another_host_drops_authorization(tmp_path):
    seen: dict[str, list] = {"registry": [], "storage": []}

    class Storage(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):  # noqa: N802
            seen["storage"].append(self.headers.get("Authorization"))
            body = DATA if self.path == "/good" else DATA[:-1] + b"X"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    storage = _serve(Storage)

    class Registry(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):  # noqa: N802
            auth = self.headers.get("Authorization")
            seen["registry"].append(auth)
            if auth != Credentials(username="u", password="p").basic():
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path == "/v2/":
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            # "localhost" is another host than "127.0.0.1" for the client
            target = "/good" if "good" in self.path else "/bad"
            self.send_response(307)
            self.send_header("Location", f"http://localhost:{storage.server_address[1]}{target}")
            self.send_header("Content-Length", "0")
            self.end_headers()

    reg = _serve(Registry)
    try:
        s = Session(f"127.0.0.1:{reg.server_address[1]}", Endpoint(url=f"http://127.0.0.1:{reg.server_address[1]}"),
                    Credentials(username="u", password="p"))
        s.ping()
        (tmp_path / "tmp").mkdir()
        blobs = BlobStore(str(tmp_path), str(tmp_path / "tmp"))
        s.fetch_blob("good/repo", DIGEST, len(DATA), blobs)
        assert blobs.read(DIGEST) == DATA
        assert seen["storage"] == [None]
        assert seen["registry"][-1] is not None
        from kran.errors import DigestMismatch

        with pytest.raises(DigestMismatch):
            s.fetch_blob("bad/repo", DIGEST, len(DATA), BlobStore(str(tmp_path / "b"), str(tmp_path / "tmp")))
        assert list((tmp_path / "tmp").iterdir()) == []
        assert not (tmp_path / "b" / "blobs" / "sha256" / DIGEST[7:]).exists()
    finally:
        for srv in (reg, storage):
            srv.shutdown()
            srv.server_close()


def test_chunked_upload(kran, busybox, registry, monkeypatch):
    from kran.engine import Engine
    from kran.engine.registry import pull, push
    from kran.registry import client

    monkeypatch.setattr(client, "UPLOAD_CHUNK", 64 * 1024)  # busybox's layer is ~2 MB: ~30 PATCHes
    for k in ("KRAN_CONFIG", "KRAN_CERTS_D", "DOCKER_CONFIG"):
        monkeypatch.setenv(k, kran.env[k])
    name = f"{registry.host}/chunked:1"
    kran("tag", "busybox", name)
    engine = Engine(str(kran.root))
    digest = push(engine, name)
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{name}"],
                         check=True, capture_output=True).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    assert json.loads(raw)["config"]["digest"] == busybox
    kran("rmi", "-f", busybox)
    engine = Engine(str(kran.root))
    assert pull(engine, name) == busybox


def test_pull_if_missing(kran, busybox, registry, monkeypatch):
    """What run/create use: pull only when the image is not here (Docker's --pull missing)."""
    from kran.engine import Engine
    from kran.engine.registry import pull_if_missing, push
    from kran.errors import ImageNotFound

    for k in ("KRAN_CONFIG", "KRAN_CERTS_D", "DOCKER_CONFIG"):
        monkeypatch.setenv(k, kran.env[k])
    name = f"{registry.host}/runme"
    kran("tag", "busybox", name)
    push(Engine(str(kran.root)), name)
    kran("rmi", "-f", busybox)
    engine = Engine(str(kran.root))
    missing: list[str] = []
    lines: list[str] = []
    with pytest.raises(ImageNotFound):
        pull_if_missing(engine, name, policy="never")
    iid = pull_if_missing(engine, name, on_missing=missing.append, progress=lambda p: lines.append(p.status))
    assert iid == busybox
    assert missing == [f"{name}:latest"]
    assert lines[0] == "Pulling from runme" and lines[-1] == f"Status: Downloaded newer image for {name}:latest"
    lines.clear()
    assert pull_if_missing(engine, name, on_missing=missing.append, progress=lambda p: lines.append(p.status)) == iid
    assert lines == [] and len(missing) == 1
    pull_if_missing(engine, name, policy="always", progress=lambda p: lines.append(p.status))
    assert lines[-1] == f"Status: Image is up to date for {name}:latest"
