"""Commit through the API: the new image's parent, and a container that exits under the commit."""

from __future__ import annotations


def test_commit_records_parent(api, api_busybox):
    c = api.client()
    ct = c.containers.run("busybox", ["touch", "/made"], detach=True)
    ct.wait(timeout=30)
    img = c.api.inspect_image(c.api.commit(ct.id)["Id"])
    assert img["Parent"] == api_busybox
    out = c.containers.run(img["Id"], ["ls", "/made"], remove=True)
    assert out == b"/made\n"
    # the docker CLI's commit, while the container runs (paused for the read, then running again)
    cid = api.docker("run", "-d", "busybox", "sh", "-c", "echo x > /f; sleep 60").out.strip()
    try:
        new = api.docker("commit", cid, "snap:1").out.strip()
        assert api.docker("inspect", "-f", "{{.Parent}}", new).out.strip() == api_busybox
        assert api.docker("inspect", "-f", "{{.State.Status}}", cid).out.strip() == "running"
    finally:
        api.docker("rm", "-f", cid)


def test_commit_of_a_container_that_is_exiting(api, api_busybox):
    """A short-lived container may end between the commit's look and its pause: no 500."""
    c = api.client()
    for _ in range(5):
        ct = c.containers.run("busybox", ["touch", "/test"], detach=True)
        res = c.api.commit(ct.id, changes=["ENV FOO=bar"])  # pause=True, docker-py's default
        assert c.api.inspect_image(res["Id"])["Config"]["Env"][-1] == "FOO=bar"
        ct.remove(force=True)
