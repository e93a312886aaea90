"""Image endpoints' edges, as dockerd answers them: rmi -f of an image a container uses, a bad
archive to load, the build cache's prune, distribution inspect and pull errors, commit of a
container that has just exited."""

from __future__ import annotations

import pytest

from tests.registry.conftest import registry  # noqa: F401 - fixture used below


def test_force_remove_image_used_by_containers(api, api_busybox):
    import docker

    c = api.client()
    c.images.get("busybox").tag("other", "1")
    stopped = c.containers.create("other:1", ["echo", "still here"])
    running = c.containers.run("busybox", ["sleep", "60"], detach=True)
    try:
        with pytest.raises(docker.errors.APIError) as e:
            c.api.remove_image(api_busybox, force=True)
        assert e.value.status_code == 409
        assert f"image is being used by running container {running.id[:12]}" in str(e.value)
        running.remove(force=True)

        # forced, with only a stopped user: the names go, the image stays (dangling) for the container
        out = c.api.remove_image(api_busybox, force=True)
        assert {"Untagged": "busybox:latest"} in out and {"Untagged": "other:1"} in out
        assert not [m for m in out if "Deleted" in m]
        assert [i.tags for i in c.images.list(all=True)] == [[]]
        assert [i.id for i in c.images.list(filters={"dangling": True})] == [api_busybox]
        stopped.start()
        assert stopped.wait()["StatusCode"] == 0 and stopped.logs() == b"still here\n"
    finally:
        stopped.remove(force=True)
    # with no container left, the dangling image can go
    assert {"Deleted": api_busybox} in c.api.remove_image(api_busybox)


def test_load_bad_archive_answers_in_the_stream(api, api_busybox, tmp_path):
    import docker

    c = api.client()
    with pytest.raises(docker.errors.ImageLoadError) as e:
        c.images.load(b"abc")
    assert "invalid archive" in str(e.value)
    # dockerd: 200, and the error as the stream's message
    resp = c.api._post(c.api._url("/images/load"), data=b"not a tar at all, long enough" * 40)
    assert resp.status_code == 200 and "errorDetail" in resp.json()
    (tmp_path / "bad.tar").write_bytes(b"abc")
    p = api.docker("load", "-i", str(tmp_path / "bad.tar"), check=False)
    assert p.returncode != 0 and "invalid archive" in p.err


def test_build_cache_prune_through_the_cli(api, api_busybox, tmp_path):
    c = api.client()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo a > /a\nRUN echo b > /b\n")
    api.docker("build", "-t", "cached", str(ctx), extra_env={"DOCKER_BUILDKIT": "0"})
    assert len(c.images.list(all=True)) == 3  # busybox, cached and the intermediate RUN step
    out = c.api.prune_builds()
    assert len(out["CachesDeleted"]) == 1 and out["SpaceReclaimed"] == 0  # its layer is still cached:latest's
    assert len(c.images.list(all=True)) == 2  # named images stay
    p = api.docker("build", "-t", "cached", str(ctx), extra_env={"DOCKER_BUILDKIT": "0"})
    assert "Using cache" not in p.out
    assert "Total reclaimed space" in api.docker("builder", "prune", "-f").out
    c.images.get("busybox").tag("keep")
    assert "Total reclaimed space" in api.docker("system", "prune", "-af").out
    assert c.images.list(all=True) == []


def test_distribution_inspect_and_pull_errors(api, api_busybox, registry):  # noqa: F811
    import docker

    c = api.client()
    name = f"{registry.host}/dist"
    c.images.get("busybox").tag(name, "1")
    digest = [m for m in c.images.push(name, tag="1", stream=True, decode=True) if "aux" in m][0]["aux"]["Digest"]
    d = c.api.inspect_distribution(f"{name}:1")
    assert d["Descriptor"]["digest"] == digest and d["Descriptor"]["size"] > 0
    assert d["Platforms"] == [{"architecture": "amd64", "os": "linux"}] or d["Platforms"][0]["os"] == "linux"

    with pytest.raises(docker.errors.NotFound):
        c.api.inspect_distribution(f"{registry.host}/nosuchrepo:1")
    with pytest.raises(docker.errors.NotFound):
        c.images.pull(f"{registry.host}/nosuchrepo", tag="1")
    # nothing listens on port 1: dockerd's 500 with the dial error
    with pytest.raises(docker.errors.APIError) as e:
        c.images.pull("127.0.0.1:1/x", tag="1")
    assert e.value.status_code == 500 and "127.0.0.1:1" in str(e.value)
    with pytest.raises(docker.errors.APIError) as e:
        c.api.inspect_distribution("127.0.0.1:1/x:1")
    assert e.value.status_code == 500


def test_commit_a_container_that_just_exited(api, api_busybox):
    c = api.client()
    for _ in range(3):
        ctr = c.containers.create("busybox", ["touch", "/test"])
        ctr.start()
        img = c.api.commit(ctr.id)  # pause=True while it may be exiting
        assert img["Id"].startswith("sha256:")
        ctr.remove(force=True)
