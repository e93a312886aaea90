"""Image endpoints through docker-py and the docker CLI: list, inspect, tag, remove, save/load,
pull/push against a local registry, build, commit, prune."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from tests.api.helpers import tar_of as _tar
from tests.registry.conftest import htpasswd_registry, registry  # noqa: F401 - fixtures used below


def test_list_get_tag_remove(api, api_busybox):
    import docker

    c = api.client()
    imgs = c.images.list()
    assert [i.id for i in imgs] == [api_busybox]
    assert imgs[0].tags == ["busybox:latest"]
    raw = c.api.images()[0]
    assert raw["SharedSize"] == -1 and raw["Containers"] == -1 and isinstance(raw["Created"], int)
    img = c.images.get("busybox")
    assert img.id == api_busybox and img.attrs["Config"]["Cmd"] == ["sh"]
    assert img.history()[0]["Id"] == api_busybox

    assert img.tag("example.com/me/bb", "v1") is True
    assert sorted(c.images.get(api_busybox).tags) == ["busybox:latest", "example.com/me/bb:v1"]
    assert [i.id for i in c.images.list(name="example.com/me/bb")] == [api_busybox]
    assert c.images.list(filters={"dangling": True}) == []
    assert len(c.images.list(filters={"reference": "busybox"})) == 1

    with pytest.raises(docker.errors.ImageNotFound) as e:
        c.images.get("nothere:1")
    assert "No such image: nothere:1" in str(e.value)

    assert c.api.remove_image("example.com/me/bb:v1") == [{"Untagged": "example.com/me/bb:v1"}]
    c.images.remove("busybox")
    assert c.images.list() == []
    with pytest.raises(docker.errors.ImageNotFound):
        c.images.remove("busybox")


def test_remove_conflict_with_container(api, api_busybox):
    import docker

    c = api.client()
    api.kran("create", "--name", "user1", "busybox", "true")
    with pytest.raises(docker.errors.APIError) as e:
        c.images.remove(api_busybox)
    assert e.value.status_code == 409
    assert "image is being used by stopped container" in str(e.value)
    api.kran("rm", "user1")


def test_save_load_round_trip(api, api_busybox):
    c = api.client()
    data = b"".join(c.images.get("busybox").save(named=True))
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        assert "manifest.json" in t.getnames()
    c.images.remove("busybox")
    loaded = c.images.load(data)
    assert [i.id for i in loaded] == [api_busybox]
    assert c.images.get("busybox:latest").id == api_busybox
    # the docker CLI: save to a file, load it back
    out = api.sock.parent / "bb.tar"
    api.docker("save", "-o", str(out), "busybox")
    api.docker("rmi", "busybox")
    assert "Loaded image: busybox:latest" in api.docker("load", "-i", str(out)).out


def test_import_and_history(api, busybox_tar):
    c = api.client()
    with open(busybox_tar, "rb") as f:
        out = c.api.import_image_from_data(f.read(), repository="imported", tag="1", changes=['CMD ["sh"]'])
    iid = json.loads(out.strip().splitlines()[-1])["status"]
    img = c.images.get("imported:1")
    assert img.id == iid and img.attrs["Config"]["Cmd"] == ["sh"]


def test_docker_cli_images(api, api_busybox):
    out = api.docker("images").out.splitlines()
    assert out[0].split()[:2] == ["REPOSITORY", "TAG"]
    assert out[1].split()[:3] == ["busybox", "latest", api_busybox.split(":")[1][:12]]
    assert api.docker("image", "inspect", "-f", "{{.Id}}", "busybox").out.strip() == api_busybox
    api.docker("tag", "busybox", "bb2:x")
    assert "Untagged: bb2:x" in api.docker("rmi", "bb2:x").out
    p = api.docker("rmi", "nothere", check=False)
    assert p.returncode != 0 and "No such image: nothere" in p.err
    hist = api.docker("history", "busybox").out.splitlines()
    assert hist[0].split()[:2] == ["IMAGE", "CREATED"] and hist[1].startswith(api_busybox.split(":")[1][:12])
    p = api.docker("save", "-o", str(api.sock.parent / "x.tar"), "nothere:1", check=False)
    assert p.returncode != 0 and "No such image: nothere:1" in p.err
    df = api.docker("system", "df").out.splitlines()
    assert df[1].split()[:3] == ["Images", "1", "0"]
    assert "Total reclaimed space: 0B" in api.docker("image", "prune", "-f").out


def test_pull_push_local_registry(api, api_busybox, registry):  # noqa: F811
    import docker

    c = api.client()
    name = f"{registry.host}/bb"
    c.images.get("busybox").tag(name, "1")
    lines = list(c.images.push(name, tag="1", stream=True, decode=True))
    assert lines[0]["status"] == f"The push refers to repository [{name}]"
    aux = [m["aux"] for m in lines if "aux" in m]
    assert aux and aux[0]["Tag"] == "1" and aux[0]["Digest"].startswith("sha256:")
    c.images.remove(api_busybox, force=True)  # its tags and the digest the push recorded
    assert c.images.list() == []

    img = c.images.pull(name, tag="1")
    assert img.id == api_busybox and f"{name}:1" in img.tags
    # the progress stream, as docker's
    msgs = [json.loads(x) for x in c.api.pull(name, tag="1", stream=True)]
    assert msgs[0] == {"status": "Pulling from bb", "id": "1"}
    assert msgs[-1]["status"] == f"Status: Image is up to date for {name}:1"
    assert any(m["status"].startswith("Digest: sha256:") for m in msgs)

    with pytest.raises(docker.errors.NotFound):
        c.images.pull(name, tag="nope")
    # a missing digest is the request's own 404 (nothing streamed before the manifest is found)
    missing = "sha256:" + "0" * 64
    with pytest.raises(docker.errors.NotFound) as e:
        c.api.pull(name, tag=missing)
    assert f"manifest for {name}@{missing} not found" in str(e.value)
    p = api.docker("pull", f"{name}@{missing}", check=False)
    assert p.returncode == 1 and "Pulling from" not in p.out
    assert f"Error response from daemon: manifest for {name}@{missing} not found" in p.err
    with pytest.raises(docker.errors.APIError) as e:
        list(c.images.push(f"{registry.host}/nothere", tag="1", stream=True))
    assert "An image does not exist locally" in str(e.value)

    c.images.remove(f"{name}:1")
    out = api.docker("pull", f"{name}:1").out
    assert f"Status: Downloaded newer image for {name}:1" in out
    assert api.docker("image", "inspect", "-f", "{{.Id}}", f"{name}:1").out.strip() == api_busybox
    api.docker("tag", f"{name}:1", f"{name}:2")
    out = api.docker("push", f"{name}:2").out
    assert "Layer already exists" in out and out.splitlines()[-1].startswith("2: digest: sha256:")


def test_build_docker_py(api, api_busybox):
    import docker

    c = api.client()
    ctx = _tar({"Dockerfile": "FROM busybox\nLABEL a=b\nCOPY hello /hello\nCMD [\"cat\", \"/hello\"]\n",
                "hello": "hi\n"})
    img, logs = c.images.build(fileobj=ctx, custom_context=True, tag="built:1", labels={"x": "y"})
    logs = list(logs)
    text = "".join(m.get("stream", "") for m in logs)
    assert "Step 1/4 : FROM busybox" in text
    assert any("aux" in m for m in logs)
    assert img.tags == ["built:1"] and img.labels == {"a": "b", "x": "y"}
    assert {i.id for i in c.images.list(filters={"label": "a=b"})} == {img.id}

    bad = _tar({"Dockerfile": "FROM busybox\nRUN exit 3\n"})
    with pytest.raises(docker.errors.BuildError) as e:
        c.images.build(fileobj=bad, custom_context=True)
    assert "returned a non-zero code: 3" in str(e.value)
    with pytest.raises(docker.errors.APIError) as e2:
        c.images.build(fileobj=_tar({"x": ""}), custom_context=True)
    assert "Cannot locate specified Dockerfile: Dockerfile" in str(e2.value)


def test_build_docker_cli(api, api_busybox, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nARG V=1\nENV V=$V\n")
    exe = __import__("shutil").which("docker")
    if not exe:
        pytest.skip("the docker CLI is not installed")
    import os
    import subprocess

    env = dict(os.environ, DOCKER_HOST=api.url, DOCKER_BUILDKIT="0", DOCKER_CONFIG=str(api.sock.parent / "docker-config"))
    p = subprocess.run([exe, "build", "-t", "cli-built", "--build-arg", "V=2", str(ctx)], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Step 1/3 : FROM busybox" in p.stdout and "Successfully tagged cli-built:latest" in p.stdout
    env_ = json.loads(api.docker("image", "inspect", "-f", "{{json .Config.Env}}", "cli-built").out)
    assert "V=2" in env_


def test_commit_and_prune(api, api_busybox):
    c = api.client()
    api.kran("create", "--name", "box", "busybox", "true")
    r = c.api.commit("box", repository="committed", tag="1", message="m", author="me", changes=['CMD ["ls"]'])
    img = c.images.get("committed:1")
    assert img.id == r["Id"] and img.attrs["Author"] == "me" and img.attrs["Config"]["Cmd"] == ["ls"]
    api.kran("rm", "box")
    c.images.get("committed:1").tag("spare", "2")
    c.api.remove_image("committed:1")
    assert c.images.prune() == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    out = c.images.prune(filters={"dangling": False})
    assert {"Untagged": "spare:2"} in out["ImagesDeleted"]
    assert out["SpaceReclaimed"] > 0
    assert [i.tags for i in c.images.list()] == []


def test_system_df(api, api_busybox):
    df = api.client().df()
    assert [i["Id"] for i in df["Images"]] == [api_busybox]
    assert df["LayersSize"] > 0


def test_registry_auth_header_is_used(api, api_busybox, htpasswd_registry, tmp_path, monkeypatch):  # noqa: F811
    """docker-py's auth_config travels in X-Registry-Auth; the service logs in with it."""
    import docker

    r = htpasswd_registry
    c = api.client()
    name = f"{r.host}/private"
    c.images.get("busybox").tag(name, "1")
    with pytest.raises(docker.errors.APIError):
        for m in c.api.push(name, tag="1", stream=True, decode=True):
            if "error" in m:
                raise docker.errors.APIError(m["error"])
    auth = {"username": r.user, "password": r.password}
    lines = list(c.api.push(name, tag="1", stream=True, decode=True, auth_config=auth))
    assert not [m for m in lines if "error" in m], lines
    assert any("aux" in m for m in lines)
    c.images.remove(f"{name}:1")
    img = c.images.pull(name, tag="1", auth_config=auth)
    assert img.id == api_busybox
