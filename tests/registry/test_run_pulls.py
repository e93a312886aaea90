"""``kran run``/``create`` pull a missing image first, with docker's messages."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_run_pulls_a_missing_image(kran, busybox, registry):
    name = f"{registry.host}/auto"
    kran("tag", "busybox", name)
    kran("push", name)
    kran("rmi", "-f", busybox)
    r = kran("run", "--rm", name, "echo", "pulled and ran")
    assert r.out == "pulled and ran\n"
    err = r.err.splitlines()
    assert err[0] == f"Unable to find image '{name}:latest' locally"
    assert err[1] == "latest: Pulling from auto"
    assert err[-1] == f"Status: Downloaded newer image for {name}:latest"
    # present now: no pull
    r = kran("run", "--rm", name, "true")
    assert r.err == ""
    # --pull never with a missing image
    kran("rmi", "-f", busybox)
    r = kran("create", "--pull", "never", name, check=False)
    assert r.returncode == 125 and "No such image" in r.err
    # create -q pulls silently
    r = kran("create", "-q", name)
    assert r.err == "" and len(r.out.strip()) == 64


def test_run_of_an_unreachable_image(kran):
    r = kran("run", "--rm", "127.0.0.1:1/nothing", check=False)
    assert r.returncode == 125
    assert r.err.startswith("Unable to find image '127.0.0.1:1/nothing:latest' locally\n")
    assert "connection refused" in r.err


def test_rmi_of_a_pulled_image_drops_its_digest_and_deletes_it(kran, busybox, registry):
    name = f"{registry.host}/rmme"
    kran("tag", "busybox", name)
    kran("push", name)
    kran("rmi", "-f", busybox)
    kran("pull", "-q", name)
    digest = kran("images", "--digests", "--format", "{{.Digest}}").out.strip()
    assert digest.startswith("sha256:")
    out = kran("rmi", name).out.splitlines()
    assert out[0] == f"Untagged: {name}:latest"
    assert out[1] == f"Untagged: {name}@{digest}"
    assert out[2].startswith("Deleted: sha256:")
    assert kran("images", "-q").out == ""
