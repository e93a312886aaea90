"""Real registries for the pull/push tests: Debian's ``docker-registry`` (distribution 2.8) on
127.0.0.1 with throwaway storage, optionally behind htpasswd, TLS (a test CA made with the
``openssl`` CLI) or token auth (a small token server here, RS256 JWTs signed with ``openssl``).

Every registry process is stopped by its PID and its files removed in the fixture teardown.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest

from tests.conftest import Kran

REGISTRY_BIN = "/usr/bin/docker-registry"

# The lead registers pull/push/login/logout in kran/cli/main.py; until then (and regardless) the
# subprocess registers them itself so these tests run the real CLI entry point.
_SHIM = (
    "import sys\n"
    "from kran.cli import main as m\n"
    "for n in ('pull', 'push', 'login', 'logout'):\n"
    "    m.COMMANDS.setdefault(n, ('registry', n))\n"
    "sys.exit(m.main(sys.argv[1:]))\n"
)


class RegistryKran(Kran):
    def __call__(self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 120, stdin=None):
        cmd = [sys.executable, "-c", _SHIM, "--root", str(self.root), *args]
        p = subprocess.run(cmd, input=input, stdin=stdin, capture_output=True, timeout=timeout, env=self.env)
        p.out = p.stdout.decode(errors="replace")  # type: ignore[attr-defined]
        p.err = p.stderr.decode(errors="replace")  # type: ignore[attr-defined]
        if check and p.returncode != 0:
            raise AssertionError(f"kran {' '.join(args)} failed ({p.returncode}):\n{p.err}\n{p.out}")
        return p


@pytest.fixture
def kran(kran: Kran, tmp_path: Path) -> Kran:
    kran.__class__ = RegistryKran
    # no stray config or credentials from the machine
    kran.env["KRAN_CONFIG"] = str(tmp_path / "no-config.toml")
    kran.env["KRAN_CERTS_D"] = str(tmp_path / "no-certs.d")
    kran.env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")
    return kran


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class Registry:
    def __init__(self, base: Path, *, auth: str = "", tls: bool = False, token_realm: str = "") -> None:
        if not Path(REGISTRY_BIN).exists():
            pytest.fail("docker-registry is required (apt-get install docker-registry)")
        self.base = base
        base.mkdir(parents=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.storage = base / "storage"
        self.user, self.password = "kranuser", "s3cret-pw"
        lines = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.host}",
            f"  secret: {uuid.uuid4().hex}",
        ]
        if tls:
            self.ca = base / "ca.crt"
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(base / "ca.key"), "-out", str(self.ca),
                     "-subj", "/CN=kran test CA", "-days", "2", "-addext", "basicConstraints=critical,CA:true",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign")
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(base / "srv.key"), "-out", str(base / "srv.csr"),
                     "-subj", "/CN=127.0.0.1")
            ext = base / "ext.cnf"
            ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:false\nextendedKeyUsage=serverAuth\n")
            _openssl("x509", "-req", "-in", str(base / "srv.csr"), "-CA", str(self.ca), "-CAkey", str(base / "ca.key"),
                     "-CAcreateserial", "-out", str(base / "srv.crt"), "-days", "2", "-extfile", str(ext))
            lines += ["  tls:", f"    certificate: {base / 'srv.crt'}", f"    key: {base / 'srv.key'}"]
        if auth == "htpasswd":
            htp = base / "htpasswd"
            out = subprocess.run(["htpasswd", "-Bbn", self.user, self.password], check=True, capture_output=True, text=True).stdout
            htp.write_text(out.strip() + "\n")
            lines += ["auth:", "  htpasswd:", "    realm: kran-test", f"    path: {htp}"]
        elif auth == "token":
            lines += [
                "auth:", "  token:", f"    realm: {token_realm}", "    service: kran-test-registry",
                "    issuer: kran-test-issuer", f"    rootcertbundle: {base.parent / 'token' / 'token.crt'}",
            ]
        cfg = base / "config.yml"
        cfg.write_text("\n".join(lines) + "\n")
        self.log = open(base / "registry.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"docker-registry did not start: {(base / 'registry.log').read_text()}")
                time.sleep(0.05)

    def blob_data(self, digest: str) -> Path:
        hexpart = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def registry(tmp_path: Path):
    r = Registry(tmp_path / "registry")
    yield r
    r.stop()


@pytest.fixture
def registry2(tmp_path: Path):
    r = Registry(tmp_path / "registry2")
    yield r
    r.stop()


@pytest.fixture
def htpasswd_registry(tmp_path: Path):
    r = Registry(tmp_path / "registry-htpasswd", auth="htpasswd")
    yield r
    r.stop()


@pytest.fixture
def tls_registry(tmp_path: Path):
    r = Registry(tmp_path / "registry-tls", tls=True)
    yield r
    r.stop()


# -- a token server (distribution's "Token Authentication Specification") ------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """GET /token?service=&scope=repository:x:pull,push -> {"token": JWT}; Basic auth required for access."""

    def __init__(self, base: Path, user: str, password: str) -> None:
        base.mkdir(parents=True)
        self.base, self.user, self.password = base, user, password
        self.key, self.crt = base / "token.key", base / "token.crt"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key), "-out", str(self.crt),
                 "-subj", "/CN=kran test token issuer", "-days", "2")
        der = subprocess.run(["openssl", "x509", "-in", str(self.crt), "-outform", "DER"], check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[dict[str, object]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query)
                auth = self.headers.get("Authorization", "")
                who = ""
                if auth.startswith("Basic "):
                    user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                    if (user, pw) != (server.user, server.password):
                        self.send_response(401)
                        self.send_header("Content-Type", "application/json")
                        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}'
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                    who = user
                scopes = q.get("scope", [])
                server.requests.append({"user": who, "scopes": scopes, "service": q.get("service", [""])[0]})
                access = []
                if who:  # anonymous callers get a token with no access (like Docker Hub for a private repo)
                    for s in scopes:
                        typ, _, rest = s.partition(":")
                        name, _, actions = rest.rpartition(":")
                        access.append({"type": typ, "name": name, "actions": actions.split(",")})
                body = json.dumps({"token": server.sign(who or "anonymous", access), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def sign(self, sub: str, access: list[dict[str, object]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {
            "iss": "kran-test-issuer", "sub": sub, "aud": "kran-test-registry", "exp": now + 300, "nbf": now - 10,
            "iat": now, "jti": uuid.uuid4().hex, "access": access,
        }
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                             check=True, capture_output=True).stdout
        return signing_input + "." + _b64url(sig)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def token_registry(tmp_path: Path):
    ts = TokenServer(tmp_path / "token", "kranuser", "s3cret-pw")
    try:
        r = Registry(tmp_path / "registry-token", auth="token", token_realm=ts.realm)
    except BaseException:
        ts.stop()
        raise
    r.tokens = ts  # type: ignore[attr-defined]
    yield r
    r.stop()
    ts.stop()
    shutil.rmtree(ts.base, ignore_errors=True)
