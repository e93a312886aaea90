import pytest

from kran.errors import InvalidReference
from kran.image.reference import parse_normalized, parse_tagged

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "given, full, familiar",
    [
        ("nginx", "docker.io/library/nginx:latest", "nginx:latest"),
        ("nginx:1.25", "docker.io/library/nginx:1.25", "nginx:1.25"),
        ("library/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
        ("docker.io/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
        ("index.docker.io/library/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
        ("user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("localhost:5000/team/app:1.2", "localhost:5000/team/app:1.2", "localhost:5000/team/app:1.2"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000/a/b/c:v1"),
        ("quay.io/podman/hello", "quay.io/podman/hello:latest", "quay.io/podman/hello:latest"),
        ("a__b.c-d---e", "docker.io/library/a__b.c-d---e:latest", "a__b.c-d---e:latest"),
        ("Registry.Example.com/app", "Registry.Example.com/app:latest", "Registry.Example.com/app:latest"),
        ("[::1]:5000/app:x", "[::1]:5000/app:x", "[::1]:5000/app:x"),
    ],
)
def test_normalises_like_docker(given, full, familiar):
    r = parse_tagged(given)
    assert str(r) == full
    assert r.familiar() == familiar


def test_digest_reference():
    d = "sha256:" + "a" * 64
    r = parse_normalized(f"busybox@{d}")
    assert r.digest == d and r.tag is None
    assert str(r) == f"docker.io/library/busybox@{d}"
    r = parse_normalized(f"busybox:1@{d}")
    assert r.tag == "1" and r.digest == d


@pytest.mark.parametrize(
    "given, message",
    [
        ("UPPER", "invalid reference format: repository name (library/UPPER) must be lowercase"),
        ("user/UPPER:tag", "invalid reference format: repository name (user/UPPER) must be lowercase"),
        ("", "invalid reference format"),
        ("nginx:", "invalid reference format"),
        (":tag", "invalid reference format"),
        ("a/b/", "invalid reference format"),
        ("-abc", "invalid reference format"),
        ("a..b", "invalid reference format"),
        ("nginx:bad tag", "invalid reference format"),
        ("nginx:" + "t" * 129, "invalid reference format"),
        ("busybox@sha256:abc", "invalid reference format"),
        ("busybox@sha256:" + "g" * 64, "invalid reference format"),
        ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("a" * 64, "invalid repository name (" + "a" * 64 + "), cannot specify 64-byte hexadecimal strings"),
        ("example.com/" + "a" * 260, "repository name must not be more than 255 characters"),
    ],
)
def test_docker_errors(given, message):
    with pytest.raises(InvalidReference) as e:
        parse_normalized(given)
    assert str(e.value) == message
