"""The registry client's pure parts: challenges, endpoint planning, platform choice, errors, config.json."""

from __future__ import annotations

import base64
import json
import os

import pytest

from kran.registry import credentials
from kran.registry.client import parse_challenge, select_platform
from kran.registry.config import RegistryConfig, auth_key, endpoints, is_insecure
from kran.registry.errors import (
    BlobUnknown,
    ManifestUnknown,
    NameUnknown,
    RegistryError,
    Unauthorized,
    from_response,
)

pytestmark = pytest.mark.unit


def test_parse_challenge():
    kind, p = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push"')
    assert kind == "bearer"
    assert p == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/busybox:pull,push"}
    assert parse_challenge('Basic realm="kran-test"') == ("basic", {"realm": "kran-test"})
    assert parse_challenge('Bearer realm=http://x/t, service=s') == ("bearer", {"realm": "http://x/t", "service": "s"})
    assert parse_challenge('Bearer realm="a\\"b"')[1]["realm"] == 'a"b'


def test_endpoints():
    cfg = RegistryConfig(mirrors=("http://127.0.0.1:5001",), insecure=("myhost:5000", "10.1.0.0/16"), certs_dirs=())
    eps = endpoints(cfg, "docker.io")
    assert [(e.url, e.mirror) for e in eps] == [("http://127.0.0.1:5001", True), ("https://registry-1.docker.io", False)]
    assert [e.url for e in endpoints(cfg, "docker.io", pull=False)] == ["https://registry-1.docker.io"]
    assert [(e.url, e.verify) for e in endpoints(cfg, "myhost:5000")] == [("https://myhost:5000", False), ("http://myhost:5000", True)]
    assert [(e.url, e.verify) for e in endpoints(cfg, "10.1.2.3:5000")] == [("https://10.1.2.3:5000", False), ("http://10.1.2.3:5000", True)]
    # loopback: verified HTTPS, then plain HTTP
    assert [(e.url, e.verify) for e in endpoints(cfg, "127.0.0.1:5000")] == [("https://127.0.0.1:5000", True), ("http://127.0.0.1:5000", True)]
    assert [e.url for e in endpoints(cfg, "localhost:5000")] == ["https://localhost:5000", "http://localhost:5000"]
    assert [e.url for e in endpoints(cfg, "quay.io")] == ["https://quay.io"]
    assert not is_insecure(cfg, "quay.io")
    assert auth_key("docker.io") == "https://index.docker.io/v1/"
    assert auth_key("myhost:5000") == "myhost:5000"


def test_config_file_and_ca(tmp_path):
    conf = tmp_path / "config.toml"
    conf.write_text('registry-mirrors = ["http://127.0.0.1:5001/"]\ninsecure-registries = ["myhost:5000"]\n')
    certs = tmp_path / "certs.d"
    (certs / "reg.example:5000").mkdir(parents=True)
    (certs / "reg.example:5000" / "ca.crt").write_text("x")
    cfg = RegistryConfig.load({"KRAN_CONFIG": str(conf), "KRAN_CERTS_D": str(certs)})
    assert cfg.mirrors == ("http://127.0.0.1:5001",)
    assert cfg.insecure == ("myhost:5000",)
    assert endpoints(cfg, "reg.example:5000")[0].cafile == str(certs / "reg.example:5000" / "ca.crt")
    assert RegistryConfig.load({"KRAN_CONFIG": str(tmp_path / "missing.toml")}).mirrors == ()
    conf.write_text("registry-mirrors = 1\n")
    from kran.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        RegistryConfig.load({"KRAN_CONFIG": str(conf)})


def test_select_platform():
    idx = {"manifests": [
        {"digest": "a", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {"digest": "b", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"digest": "c", "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "d", "platform": {"os": "unknown", "architecture": "unknown"}},
    ]}
    assert select_platform(idx, "linux", "amd64")["digest"] == "c"
    assert select_platform(idx, "linux", "arm", "v7")["digest"] == "b"
    assert select_platform(idx, "linux", "arm64") is None
    assert select_platform(idx, "windows", "amd64") is None


def test_errors_from_codes():
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}).encode()
    e = from_response(404, body)
    assert isinstance(e, ManifestUnknown) and str(e) == "manifest unknown: manifest unknown"
    assert isinstance(from_response(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"x"}]}'), NameUnknown)
    e = from_response(401, b"")
    assert isinstance(e, Unauthorized) and str(e) == "unauthorized: authentication required"
    assert isinstance(from_response(403, b'{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}'), Unauthorized)
    assert isinstance(from_response(404, b"", "blob x"), BlobUnknown)
    e = from_response(500, b"oops")
    assert type(e) is RegistryError and "500" in str(e)


def test_credentials_roundtrip(tmp_path):
    path = str(tmp_path / "d" / "config.json")
    assert credentials.lookup("myhost:5000", path) is None
    os.makedirs(tmp_path / "d")
    (tmp_path / "d" / "config.json").write_text(json.dumps({"auths": {"https://other:1/v1/": {"auth": base64.b64encode(b"o:p").decode()}}, "x": 1}))
    assert credentials.lookup("other:1", path) == credentials.Credentials(username="o", password="p")
    credentials.store("myhost:5000", credentials.Credentials(username="u", password="p:w"), path)
    doc = json.loads(open(path).read())
    assert doc["x"] == 1 and "https://other:1/v1/" in doc["auths"]
    assert base64.b64decode(doc["auths"]["myhost:5000"]["auth"]) == b"u:p:w"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert credentials.lookup("myhost:5000", path) == credentials.Credentials(username="u", password="p:w")
    assert credentials.remove("myhost:5000", path) is True
    assert credentials.remove("myhost:5000", path) is False
    assert credentials.lookup("myhost:5000", path) is None
    assert json.loads(open(path).read())["x"] == 1
