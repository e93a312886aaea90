"""POST /build through docker-py: the stream's order and shapes, the query parameters docker-py and
the docker CLI send (extrahosts, cachefrom, gzip), and contexts the client already filtered."""

from __future__ import annotations

import pytest

from tests.api.helpers import tar_of as _tar


def _build(c, files: dict[str, str], **kw) -> list[dict]:
    gz = kw.pop("gz", False)
    return list(c.api.build(fileobj=_tar(files, gz), custom_context=True, decode=True,
                            encoding="gzip" if gz else None, **kw))


def _logs(c, image: str, cmd: list[str]) -> str:
    ctr = c.containers.create(image, cmd)
    try:
        ctr.start()
        ctr.wait()
        return ctr.logs().decode()
    finally:
        ctr.remove(force=True)


def test_stream_order_stderr_and_error_code(api, api_busybox):
    c = api.client()
    msgs = _build(c, {"Dockerfile": "FROM busybox\nRUN echo out; echo err >&2\n"}, tag="order:1", nocache=True)
    kinds = [("aux" if "aux" in m else m.get("stream", "").split(" ")[0]) for m in msgs]
    # docker-py's models take the ID from aux, and the last message is "Successfully tagged"
    assert kinds.index("aux") < kinds.index("Successfully")
    assert msgs[-1]["stream"] == "Successfully tagged order:1\n"
    assert msgs[kinds.index("aux")]["aux"]["ID"] == c.images.get("order:1").id
    streams = [m.get("stream") for m in msgs]
    assert "\x1b[91merr\n\x1b[0m" in streams and "out\n" in streams

    bad = _build(c, {"Dockerfile": "FROM busybox\nRUN exit 7\n"})
    assert bad[-1]["errorDetail"] == {"code": 7, "message": "The command '/bin/sh -c exit 7' returned a non-zero code: 7"}


def test_extra_hosts_and_gzip(api, api_busybox):
    c = api.client()
    msgs = _build(c, {"Dockerfile": "FROM busybox\nRUN cp /etc/hosts /hosts-file\n"}, tag="eh", gz=True,
                  extra_hosts={"extra.test": "127.0.0.1", "other.test": "10.1.2.3"})
    assert not [m for m in msgs if "error" in m], msgs
    hosts = _logs(c, "eh", ["cat", "/hosts-file"])
    assert "127.0.0.1\textra.test" in hosts and "10.1.2.3\tother.test" in hosts


def test_cache_from(api, api_busybox):
    c = api.client()
    df = {"Dockerfile": "FROM busybox\nENV A=1\nRUN touch /x\n"}
    _build(c, df, tag="src1")

    def cached(**kw) -> int:
        return sum("Using cache" in m.get("stream", "") for m in _build(c, df, **kw))

    assert cached() == 2  # the local cache, as always
    assert cached(cache_from=["src1"]) == 2  # steps that lead to src1
    assert cached(cache_from=["nosuchimage"]) == 0  # only the named images' steps count
    c.images.get("busybox").tag("unrelated")
    assert cached(cache_from=["unrelated"]) == 0


def test_context_filtered_by_the_client(api, api_busybox, tmp_path):
    """docker-py applies .dockerignore itself (with ! exceptions); the server must not apply it again,
    but drops .dockerignore and the Dockerfile when the file names them (as dockerd)."""
    c = api.client()
    ctx = tmp_path / "ctx"
    (ctx / "ignored" / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM busybox\nADD . /test\n")
    (ctx / ".dockerignore").write_text("ignored\nDockerfile\n.dockerignore\n!ignored/sub/kept\n")
    (ctx / "ignored" / "sub" / "kept").write_text("k")
    (ctx / "ignored" / "sub" / "gone").write_text("g")
    (ctx / "plain").write_text("p")
    _, logs = c.images.build(path=str(ctx), tag="ign")
    list(logs)
    assert sorted(_logs(c, "ign", ["find", "/test", "-type", "f"]).split()) == ["/test/ignored/sub/kept", "/test/plain"]

    # a Dockerfile outside the context travels as a tar member of a random name: not in the image
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "Dockerfile").write_text("FROM busybox\nCOPY . /src\n")
    (ctx / ".dockerignore").unlink()
    _, logs = c.images.build(path=str(ctx), dockerfile=str(other / "Dockerfile"), tag="ooc")
    list(logs)
    assert sorted(_logs(c, "ooc", ["ls", "-a", "/src"]).split()) == [".", "..", "Dockerfile", "ignored", "plain"]


def test_bad_query_parameters(api, api_busybox):
    import docker

    c = api.client()
    with pytest.raises(docker.errors.APIError) as e:
        list(c.api.build(fileobj=_tar({"Dockerfile": "FROM busybox\n"}), custom_context=True,
                         cache_from='{"a": 1}'))
    assert e.value.status_code == 400
