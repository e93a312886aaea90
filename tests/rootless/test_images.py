"""Issue #12, deliverables 2 and 7: a rootless user's images keep their owners exactly inside the
user's id mapping — on the host (stat as root) a layer's root-owned files are the user's uid and
uid 1000 is the user's first subordinate id + 999 — through build (RUN), import, commit, save/load
(read back by skopeo), export, cp, and push/pull against a local registry."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.registry.conftest import Registry
from tests.rootless.helpers import Made, layer_dir


@pytest.fixture
def made(ruser):
    m = Made(ruser)
    yield m
    m.cleanup()


def _layers(ruser, image: str) -> list[str]:
    return json.loads(ruser.kran("inspect", "--format", "{{json .RootFS.Layers}}", image).out)


def _owner(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


def _tar(members: list[tuple[str, int, int, bytes | None]]) -> bytes:
    """A tar of (name, uid, mode, content or None for a directory); gid = uid."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, uid, mode, data in members:
            ti = tarfile.TarInfo(name)
            ti.uid = ti.gid = uid
            ti.mode = mode
            ti.mtime = 1700000000
            if data is None:
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _user_file(ruser, name: str, data: bytes) -> Path:
    """A file in the user's home, owned by the user."""
    path = ruser.home / name
    path.write_bytes(data)
    os.chown(path, ruser.uid, ruser.gid)
    return path


@pytest.fixture(scope="module")
def owned_image(ruser):
    """An image built as the user from a Dockerfile in a directory they own, whose RUN gives /f and
    /d to 1000:1000 (modes 0640 and 0750)."""
    ctx = ruser.home / "ctx-owned"
    ruser.run("mkdir", str(ctx))
    ruser.run("sh", "-c", f"cat > {ctx}/Dockerfile", input=(
        b"FROM busybox\n"
        b"RUN echo owned > /f && chown 1000:1000 /f && chmod 640 /f"
        b" && mkdir /d && chown 1000:1000 /d && chmod 750 /d\n"))
    tag = Made.unique("owned")
    try:
        p = ruser.kran("build", "-t", tag, str(ctx))
        assert f"Successfully tagged {tag}:latest" in p.out
        yield tag
    finally:
        ruser.kran("rmi", "-f", tag, check=False)
        ruser.run("rm", "-rf", str(ctx))


def test_build_with_run_maps_owners_on_the_host(ruser, owned_image):
    layers = _layers(ruser, owned_image)
    assert len(layers) == 2
    base, top = layer_dir(ruser, layers[:1]), layer_dir(ruser, layers)
    # root-owned in the image: the user's own uid on the host
    assert _owner(base / "bin" / "busybox")[:2] == (ruser.uid, ruser.gid)
    assert _owner(base / "root") == (ruser.uid, ruser.gid, 0o700)
    # uid 1000 in the image: the user's first subordinate id + 999
    mapped = ruser.subuid + 999
    assert _owner(top / "f") == (mapped, mapped, 0o640)
    assert _owner(top / "d") == (mapped, mapped, 0o750)
    p = ruser.kran("run", "--rm", owned_image, "sh", "-c", "stat -c '%u:%g %a %n' /f /d /bin/busybox; cat /f")
    assert p.out == "1000:1000 640 /f\n1000:1000 750 /d\n0:0 755 /bin/busybox\nowned\n"


def test_import_keeps_owners_inside_the_mapping(ruser, made):
    tag = made.image("imported")
    last = 65536  # the mapping's last id: subuid + 65535
    src = _user_file(ruser, made.unique("import") + ".tar", _tar([
        ("r", 0, 0o644, b"root"), ("u", 1000, 0o600, b"user"), ("hi", last, 0o755, None)]))
    try:
        ruser.kran("import", str(src), tag)
        top = layer_dir(ruser, _layers(ruser, tag))
        assert _owner(top / "r") == (ruser.uid, ruser.gid, 0o644)
        assert _owner(top / "u") == (ruser.subuid + 999, ruser.subuid + 999, 0o600)
        assert _owner(top / "hi") == (ruser.subuid + 65535, ruser.subuid + 65535, 0o755)
    finally:
        src.unlink()


def test_import_of_an_owner_outside_the_mapping_is_a_clear_error(ruser, made):
    tag = made.image("unmapped")
    src = _user_file(ruser, made.unique("unmapped") + ".tar", _tar([("far", 70000, 0o644, b"x")]))
    try:
        p = ruser.kran("import", str(src), tag, check=False)
    finally:
        src.unlink()
    assert p.returncode == 1  # Docker's status for a daemon error outside `run`
    assert "potentially insufficient UIDs or GIDs available in user namespace" in p.err
    assert "70000" in p.err and "/etc/subuid" in p.err
    assert "Traceback" not in p.err
    assert ruser.kran("images", "-q", tag).out == ""


def test_commit_keeps_owners(ruser, made):
    name, tag = made.container("commit"), made.image("committed")
    ruser.kran("run", "--name", name, "busybox", "sh", "-c",
               "echo c > /c && chown 1000:1000 /c && chmod 604 /c && rm /etc/group")
    ruser.kran("commit", name, tag)
    layers = _layers(ruser, tag)
    assert len(layers) == 2
    top = layer_dir(ruser, layers)
    assert _owner(top / "c") == (ruser.subuid + 999, ruser.subuid + 999, 0o604)
    # the removal is an OCI whiteout in the layer, and the file is gone in the image
    p = ruser.kran("run", "--rm", tag, "sh", "-c", "stat -c '%u:%g %a' /c; test -e /etc/group || echo gone")
    assert p.out == "1000:1000 604\ngone\n"


def test_save_load_round_trip_read_by_skopeo(ruser, owned_image, made):
    archive = ruser.home / (made.unique("saved") + ".tar")
    try:
        ruser.kran("save", "-o", str(archive), owned_image)
        layers = _layers(ruser, owned_image)
        # an independent reader: skopeo sees the same image in the docker-archive
        p = ruser.run("skopeo", "inspect", f"docker-archive:{archive}")
        seen = json.loads(p.out)
        assert seen["Layers"] == layers
        assert seen["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        # the saved top layer carries the image's owners, not the host's
        with tarfile.open(archive) as outer:
            manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
            top_path = manifest[0]["Layers"][-1]
            with tarfile.open(fileobj=outer.extractfile(top_path)) as layer:
                f = layer.getmember("f")
                assert (f.uid, f.gid, f.mode) == (1000, 1000, 0o640)
        tag = made.image("loaded")
        ruser.kran("tag", owned_image, tag)
        image_id = ruser.kran("inspect", "--format", "{{.Id}}", tag).out.strip()
        ruser.kran("rmi", tag, owned_image)
        try:
            p = ruser.kran("load", "-i", str(archive))
            assert f"Loaded image: {owned_image}:latest" in p.out
        finally:
            # the module's image is back for the other tests, whatever happened
            ruser.kran("load", "-i", str(archive), check=False)
        assert ruser.kran("inspect", "--format", "{{.Id}}", owned_image).out.strip() == image_id
        top = layer_dir(ruser, layers)
        assert _owner(top / "f") == (ruser.subuid + 999, ruser.subuid + 999, 0o640)
        assert ruser.kran("run", "--rm", owned_image, "stat", "-c", "%u:%g", "/f").out == "1000:1000\n"
    finally:
        archive.unlink(missing_ok=True)


def test_export_keeps_owners(ruser, owned_image, made):
    name = made.container("export")
    ruser.kran("create", "--name", name, owned_image)
    archive = ruser.home / (made.unique("export") + ".tar")
    try:
        ruser.kran("export", "-o", str(archive), name)
        # GNU tar as the user would read it
        listing = ruser.run("tar", "--numeric-owner", "-tvf", str(archive)).out.splitlines()
        fields = [ln.split(maxsplit=5) for ln in listing]
        by_name = {f[5].split(" -> ")[0].removeprefix("./").rstrip("/"): f for f in fields}
        assert by_name["f"][:2] == ["-rw-r-----", "1000/1000"]
        assert by_name["d"][:2] == ["drwxr-x---", "1000/1000"]
        assert by_name["bin/busybox"][1] == "0/0"
    finally:
        archive.unlink(missing_ok=True)


def test_cp_in_and_out_keeps_owners_and_modes(ruser, owned_image, made):
    name = made.container("cp")
    ruser.kran("create", "--name", name, owned_image)
    # out as a tar stream: the image's owners and modes
    out = ruser.kran("cp", f"{name}:/f", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as t:
        m = t.getmember("f")
        assert (m.uid, m.gid, m.mode) == (1000, 1000, 0o640)
    # out to a directory: the user cannot own others' ids, so the user's files with the modes kept
    dest = ruser.home / made.unique("cp-out")
    src = _user_file(ruser, made.unique("cp-in"), b"from host\n")
    stream = _user_file(ruser, made.unique("cp-in") + ".tar", _tar([("t1000", 1000, 0o610, b"t\n")]))
    try:
        ruser.kran("cp", f"{name}:/d", str(dest))
        assert _owner(dest) == (ruser.uid, ruser.gid, 0o750)
        # in from a file: root's inside (Docker's rule), mode kept
        src.chmod(0o604)
        ruser.kran("cp", str(src), f"{name}:/in")
        # in from a tar stream: the tar's owners inside, mapped on the host
        ruser.run("sh", "-c", f"{' '.join(ruser.prefix)} cp - {name}:/ < {stream}")
    finally:
        ruser.run("rm", "-rf", str(dest), str(src), str(stream))
    tag = made.image("cp")
    ruser.kran("commit", name, tag)
    p = ruser.kran("run", "--rm", tag, "stat", "-c", "%u:%g %a %n", "/in", "/t1000")
    assert p.out == "0:0 604 /in\n1000:1000 610 /t1000\n"
    top = layer_dir(ruser, _layers(ruser, tag))
    assert _owner(top / "in") == (ruser.uid, ruser.gid, 0o604)
    assert _owner(top / "t1000") == (ruser.subuid + 999, ruser.subuid + 999, 0o610)


def test_push_and_pull_with_a_local_registry(ruser, made, tmp_path):
    registry = Registry(tmp_path / "registry")  # root's, on 127.0.0.1
    try:
        # busybox, as the user's README would have them do it
        remote = f"{registry.host}/rootless/busybox:v1"
        ruser.kran("tag", "busybox", remote)
        p = ruser.kran("push", remote)
        assert "v1: digest: sha256:" in p.out
        ruser.kran("rmi", remote)
        assert ruser.kran("images", "-q", remote).out == ""
        ruser.kran("pull", remote)
        made.images.append(remote)
        assert ruser.kran("run", "--rm", remote, "echo", "pulled").out == "pulled\n"

        # a layer of its own, so the pull really unpacks something in the user namespace
        name = made.container("push")
        ruser.kran("run", "--name", name, "busybox", "sh", "-c", "echo pushed > /p && chown 1000:1000 /p")
        own = f"{registry.host}/rootless/own:v1"
        ruser.kran("commit", name, own)
        layers = _layers(ruser, own)
        ruser.kran("push", own)
        ruser.kran("rm", name)
        ruser.kran("rmi", own)
        assert not layer_dir(ruser, layers).exists()
        p = ruser.kran("pull", own)
        made.images.append(own)
        assert "Pull complete" in p.out
        assert _owner(layer_dir(ruser, layers) / "p")[:2] == (ruser.subuid + 999, ruser.subuid + 999)
        p = ruser.kran("run", "--rm", own, "sh", "-c", "cat /p; stat -c %u:%g /p")
        assert p.out == "pushed\n1000:1000\n"
    finally:
        registry.stop()
