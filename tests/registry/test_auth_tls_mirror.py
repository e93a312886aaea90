"""Login (htpasswd and token auth), TLS with a CA in certs.d, and a docker.io mirror."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from tests.registry.conftest import RegistryKran

pytestmark = pytest.mark.e2e


def _config_json(kran) -> dict:
    return json.loads((Path(kran.env["DOCKER_CONFIG"]) / "config.json").read_text())


def test_htpasswd_login_pull_logout(kran, busybox, htpasswd_registry, tmp_path):
    reg = htpasswd_registry
    name = f"{reg.host}/private/bb:1"
    kran("tag", "busybox", name)
    # without credentials: Docker's words
    p = kran("push", name, check=False)
    assert p.returncode == 1 and "unauthorized" in p.err.lower()
    p = kran("pull", name, check=False)
    assert p.returncode == 1
    assert f"pull access denied for {reg.host}/private/bb, repository does not exist or may require 'docker login'" in p.err
    # a wrong password is refused and nothing is stored
    p = kran("login", "-u", reg.user, "-p", "wrong", reg.host, check=False)
    assert p.returncode == 1
    assert f'Get "http://{reg.host}/v2/": unauthorized: ' in p.err
    assert not (Path(kran.env["DOCKER_CONFIG"]) / "config.json").exists()
    # other keys of config.json survive a login
    Path(kran.env["DOCKER_CONFIG"]).mkdir(parents=True)
    (Path(kran.env["DOCKER_CONFIG"]) / "config.json").write_text('{"psFormat": "table {{.ID}}", "auths": {}}')
    p = kran("login", "-u", reg.user, "--password-stdin", reg.host, input=reg.password.encode() + b"\n")
    assert p.out.strip().splitlines()[-1] == "Login Succeeded"
    cfg = _config_json(kran)
    assert cfg["psFormat"] == "table {{.ID}}"
    assert base64.b64decode(cfg["auths"][reg.host]["auth"]).decode() == f"{reg.user}:{reg.password}"
    kran("push", name)
    kran("rmi", "-f", busybox)
    p = kran("pull", name)
    assert p.out.splitlines()[-1] == name and "Pull complete" in p.out
    assert kran("logout", reg.host).out == f"Removing login credentials for {reg.host}\n"
    assert reg.host not in _config_json(kran)["auths"]
    assert kran("logout", reg.host).out == f"Not logged in to {reg.host}\n"
    kran("rmi", "-f", busybox)
    assert kran("pull", name, check=False).returncode == 1


def test_login_with_p_flag(kran, htpasswd_registry):
    reg = htpasswd_registry
    p = kran("login", "-u", reg.user, "-p", reg.password, reg.host)
    assert "Login Succeeded" in p.out
    assert reg.host in _config_json(kran)["auths"]


def test_tls_registry_with_and_without_ca(kran, busybox, tls_registry, tmp_path):
    reg = tls_registry
    name = f"{reg.host}/tls/bb:1"
    kran("tag", "busybox", name)
    p = kran("push", name, check=False)
    assert p.returncode == 1
    assert f'Get "https://{reg.host}/v2/": tls: failed to verify certificate' in p.err, p.err
    certs = tmp_path / "certs.d"
    (certs / reg.host).mkdir(parents=True)
    shutil.copy(reg.ca, certs / reg.host / "ca.crt")
    kran.env["KRAN_CERTS_D"] = str(certs)
    kran("push", name)
    kran("rmi", "-f", busybox)
    p = kran("pull", name)
    assert p.out.splitlines()[-1] == name and "Pull complete" in p.out
    # listed as insecure: TLS without verification, as Docker does
    kran.env["KRAN_CERTS_D"] = str(tmp_path / "none")
    conf = tmp_path / "insecure.toml"
    conf.write_text(f'insecure-registries = ["{reg.host}"]\n')
    kran.env["KRAN_CONFIG"] = str(conf)
    kran("rmi", "-f", busybox)
    p = kran("pull", name)
    assert p.out.splitlines()[-1] == name and "Pull complete" in p.out


def test_token_auth(kran, busybox, token_registry):
    reg = token_registry
    name = f"{reg.host}/tok/bb:1"
    kran("tag", "busybox", name)
    p = kran("pull", name, check=False)
    assert p.returncode == 1
    assert f"pull access denied for {reg.host}/tok/bb" in p.err
    p = kran("login", "-u", "kranuser", "-p", "nope", reg.host, check=False)
    assert p.returncode == 1 and "unauthorized" in p.err
    kran("login", "-u", "kranuser", "-p", "s3cret-pw", reg.host)
    kran("push", name)
    other = f"{reg.host}/tok/other:1"
    kran("tag", "busybox", other)
    assert "Mounted from tok/bb" in kran("push", other).out
    kran("rmi", "-f", busybox)
    p = kran("pull", name)
    assert p.out.splitlines()[-1] == name and "Pull complete" in p.out
    scopes = [s for r in reg.tokens.requests for s in r["scopes"]]
    assert "repository:tok/bb:pull" in scopes
    assert "repository:tok/bb:pull,push" in scopes
    assert all(r["service"] == "kran-test-registry" for r in reg.tokens.requests)


def test_mirror_for_docker_io(kran, busybox, registry, registry2, tmp_path):
    from tests.registry.conftest import free_port

    mirrored = f"{registry.host}/library/busybox:latest"
    kran("tag", "busybox", mirrored)
    kran("push", mirrored)
    conf = tmp_path / "config.toml"
    # a dead mirror and one without the image come first: both are passed over
    mirrors = [f"http://127.0.0.1:{free_port()}", f"http://{registry2.host}", f"http://{registry.host}"]
    conf.write_text(f"registry-mirrors = {json.dumps(mirrors)}\n")
    k2 = RegistryKran(tmp_path / "root2")
    k2.env.update({k: kran.env[k] for k in ("DOCKER_CONFIG", "KRAN_CERTS_D")})
    k2.env["KRAN_CONFIG"] = str(conf)
    try:
        p = k2("pull", "busybox")
        lines = p.out.splitlines()
        assert lines[:2] == ["Using default tag: latest", "latest: Pulling from library/busybox"]
        assert lines[-2] == "Status: Downloaded newer image for busybox:latest"
        assert lines[-1] == "docker.io/library/busybox:latest"
        info = json.loads(k2("image", "inspect", "busybox").out)[0]
        assert info["Id"] == busybox
        assert info["RepoDigests"][0].startswith("busybox@sha256:")
        # with no mirror holding it, the upstream (unreachable here) is the last resort
        conf.write_text(f'registry-mirrors = ["http://{registry2.host}"]\n')
        p = k2("pull", "busybox:nope", check=False)
        assert p.returncode == 1
        assert "registry-1.docker.io" in p.err
    finally:
        shutil.rmtree(k2.root, ignore_errors=True)
