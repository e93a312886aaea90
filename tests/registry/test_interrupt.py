"""An interrupted pull (Ctrl-C or kill -9) leaves no partial blob in the store."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.registry.conftest import _SHIM

pytestmark = pytest.mark.e2e

LAYER = os.urandom(8 << 20)
LAYER_DIGEST = "sha256:" + hashlib.sha256(LAYER).hexdigest()
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [LAYER_DIGEST]}}).encode()
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG_DIGEST, "size": len(CONFIG)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": LAYER_DIGEST, "size": len(LAYER)}],
}).encode()


@pytest.fixture
def slow_registry():
    """A registry that serves its one layer slowly (64 KiB every 50 ms), so a pull can be interrupted."""
    started = threading.Event()

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, body: bytes, ctype: str = "application/octet-stream", slow: bool = False):
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not slow:
                self.wfile.write(body)
                return
            started.set()
            try:
                for i in range(0, len(body), 64 << 10):
                    self.wfile.write(body[i : i + (64 << 10)])
                    time.sleep(0.05)
            except OSError:
                pass

        def do_GET(self):  # noqa: N802
            if self.path == "/v2/":
                self._send(b"{}", "application/json")
            elif "/manifests/" in self.path:
                self._send(MANIFEST, "application/vnd.oci.image.manifest.v1+json")
            elif self.path.endswith(CONFIG_DIGEST):
                self._send(CONFIG)
            elif self.path.endswith(LAYER_DIGEST):
                self._send(LAYER, slow=True)
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    httpd.started = started  # type: ignore[attr-defined]
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_pull_keeps_nothing(kran, slow_registry, sig):
    host = f"127.0.0.1:{slow_registry.server_address[1]}"
    cmd = [sys.executable, "-c", _SHIM, "--root", str(kran.root), "pull", f"{host}/slow:1"]
    proc = subprocess.Popen(cmd, env=kran.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert slow_registry.started.wait(20)
        time.sleep(0.3)
        tmp = Path(kran.root) / "tmp"
        assert any(p.name.startswith("blob-") for p in tmp.iterdir())  # a download is in progress
        os.kill(proc.pid, sig)
        t0 = time.monotonic()
        rc = proc.wait(20)
        assert time.monotonic() - t0 < 5  # Ctrl-C stops the transfer, it does not wait for it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    blobs = Path(kran.root) / "blobs" / "sha256"
    assert LAYER_DIGEST[7:] not in {p.name for p in blobs.iterdir()}
    if sig == signal.SIGINT:
        assert not [p for p in tmp.iterdir() if p.name.startswith("blob-")]
    # whatever kill -9 left in tmp/ is collected by the next writer
    kran("import", "-", "scratch", input=b"\0" * 1024)  # an empty tar: any writer recovers tmp/
    assert not [p for p in tmp.iterdir() if p.name.startswith("blob-")]
