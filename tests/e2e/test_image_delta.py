"""Image deltas: ``kran save --since BASE`` leaves out the layers BASE has; ``kran load`` of it gives the
full image on a host that has them, and refuses in one line, changing nothing, on a host that has not."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_CHANGES, _kran_fixture, store_snapshot


@pytest.fixture
def other_root(tmp_path: Path):
    """A second host: its own state root, cleaned up like the ``kran`` fixture's."""
    yield from _kran_fixture(tmp_path / "root2")


def _lone_tar(tmp_path: Path) -> Path:
    """A one-file filesystem tarball: an image that shares nothing with busybox."""
    lone = tmp_path / "lone.tar"
    with tarfile.open(lone, "w") as tf:
        ti = tarfile.TarInfo("hello")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"hi\n"))
    return lone


@pytest.fixture
def bare_root(tmp_path: Path):
    """A third host that has never seen busybox (it has one unrelated image)."""
    for k in _kran_fixture(tmp_path / "root3"):
        k("import", str(_lone_tar(tmp_path)), "lone:1")
        yield k


@pytest.fixture
def app(kran, busybox, tmp_path: Path) -> str:
    """app:1, FROM busybox with two RUN layers; returns its image ID."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo one > /one\nRUN echo two > /two && mkdir /data\n")
    kran("build", "-q", "-t", "app:1", str(ctx))
    return _image_id(kran, "app:1")


def _image_id(k, name: str) -> str:
    return json.loads(k("image", "inspect", name).out)[0]["Id"]


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tf:
        return {m.name: (tf.extractfile(m).read() if m.isfile() else b"") for m in tf.getmembers()}


def _skopeo(*args: str) -> dict:
    if shutil.which("skopeo") is None:
        pytest.fail("skopeo is required (apt-get install skopeo)")
    return json.loads(subprocess.run(["skopeo", *args], check=True, capture_output=True, text=True).stdout)


def _retar(members: dict[str, bytes], drop: set[str] = frozenset(), replace: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            if name in drop:
                continue
            data = (replace or {}).get(name, data)
            ti = tarfile.TarInfo(name)
            if name in ("blobs", "blobs/sha256"):
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
                continue
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_delta_leaves_out_the_base_and_loads_where_the_base_is(kran, busybox, app, tmp_path, other_root, bare_root,
                                                               busybox_tar):
    full, delta = tmp_path / "full.tar", tmp_path / "delta.tar"
    kran("save", "-o", str(full), "app:1")
    kran("save", "--since", "busybox", "-o", str(delta), "app:1")
    fm, dm = _members(full), _members(delta)

    # the delta has the manifests and configs, and only the two RUN layers' blobs
    entry = json.loads(fm["manifest.json"])[0]
    base_blob, *own_blobs = entry["Layers"]
    assert len(own_blobs) == 2
    assert base_blob in fm and base_blob not in dm
    assert all(b in dm for b in own_blobs)
    assert set(dm) == set(fm) - {base_blob}
    assert dm[entry["Config"]] == fm[entry["Config"]]
    assert delta.stat().st_size * 10 < full.stat().st_size, (delta.stat().st_size, full.stat().st_size)

    # ... and says what it left out and where that comes from, for both readers of the archive
    busybox_diff = json.loads(kran("image", "inspect", "busybox").out)[0]["RootFS"]["Layers"]
    dentry = json.loads(dm["manifest.json"])[0]
    assert dentry["Layers"] == entry["Layers"]
    assert dentry["KranDelta"] == {"Base": "busybox:latest", "BaseID": busybox, "OmittedLayers": busybox_diff}
    ann = json.loads(dm["index.json"])["manifests"][0]["annotations"]
    assert ann["io.kran.delta.base"] == "busybox:latest"
    assert ann["io.kran.delta.omitted-layers"] == ",".join(busybox_diff)
    assert ann["io.containerd.image.name"] == "docker.io/library/app:1"

    # a host with busybox (imported there on its own: another image ID, the same layer) gets the full image
    other_root("import", *BUSYBOX_CHANGES, str(busybox_tar), "busybox:latest")
    assert _image_id(other_root, "busybox") != busybox
    r = other_root("load", "-i", str(delta))
    assert r.out == "Loaded image: app:1\n"
    assert _image_id(other_root, "app:1") == app
    assert other_root("run", "--rm", "app:1", "cat", "/one", "/two").out == "one\ntwo\n"
    # and it saves back whole, the same bytes as the original host's full save
    again = tmp_path / "again.tar"
    other_root("save", "-o", str(again), "app:1")
    assert _members(again)[base_blob] == fm[base_blob]

    # a host without busybox: one line naming the missing layer and the base; nothing loaded
    images = bare_root("images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}} {{.Size}}").out
    before = store_snapshot(bare_root.root)
    r = bare_root("load", "-i", str(delta), check=False)
    assert r.returncode == 1
    assert r.out == ""
    assert r.err.count("\n") == 1 and busybox_diff[0] in r.err and "busybox:latest" in r.err, r.err
    assert "Traceback" not in r.err
    assert bare_root("images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}} {{.Size}}").out == images
    assert store_snapshot(bare_root.root) == before


def test_delta_read_as_an_oci_layout(kran, busybox, app, tmp_path, other_root, bare_root, busybox_tar):
    """Without manifest.json the index's annotations alone mark the delta (kran's OCI-layout reader)."""
    delta = tmp_path / "delta.tar"
    kran("save", "--since", "busybox:latest", "-o", str(delta), "app:1")
    oci = _retar(_members(delta), drop={"manifest.json"})
    other_root("import", *BUSYBOX_CHANGES, str(busybox_tar), "busybox:latest")
    assert other_root("load", input=oci).out == "Loaded image: app:1\n"
    assert _image_id(other_root, "app:1") == app
    assert other_root("run", "--rm", "app:1", "cat", "/two").out == "two\n"

    before = store_snapshot(bare_root.root)
    r = bare_root("load", input=oci, check=False)
    assert r.returncode == 1 and "busybox:latest" in r.err and r.err.count("\n") == 1, r.err
    assert store_snapshot(bare_root.root) == before


def test_a_delta_without_its_mark_is_a_corrupt_archive(kran, busybox, app, tmp_path, bare_root):
    """What tells a delta from a truncated archive is the mark: strip it and load says a blob is missing."""
    delta = tmp_path / "delta.tar"
    kran("save", "--since", "busybox", "-o", str(delta), "app:1")
    dm = _members(delta)
    entries = json.loads(dm["manifest.json"])
    del entries[0]["KranDelta"]
    stripped = _retar(dm, replace={"manifest.json": json.dumps(entries).encode()})
    r = bare_root("load", input=stripped, check=False)
    assert r.returncode == 1 and "invalid archive" in r.err and "is missing" in r.err, r.err
    assert "delta" not in r.err
    # a mark that does not match the image's own layers is refused too
    entries[0]["KranDelta"] = {"Base": "busybox:latest", "BaseID": busybox, "OmittedLayers": ["sha256:" + "0" * 64]}
    wrong = _retar(dm, replace={"manifest.json": json.dumps(entries).encode()})
    r = bare_root("load", input=wrong, check=False)
    assert r.returncode == 1 and "not the bottom layers" in r.err, r.err
    assert bare_root("images", "--format", "{{.Repository}}").out == "lone\n"


def test_since_an_unrelated_image_writes_everything(kran, busybox, app, tmp_path):
    kran("import", str(_lone_tar(tmp_path)), "lone:1")
    full, since = tmp_path / "full.tar", tmp_path / "since.tar"
    kran("save", "-o", str(full), "app:1")
    kran("save", "--since", "lone:1", "-o", str(since), "app:1")
    assert since.read_bytes() == full.read_bytes()  # nothing shared: a plain full save, unmarked
    assert "KranDelta" not in _members(since)["manifest.json"].decode()
    # skopeo reads the full archives as before, both ways
    layers = json.loads(kran("image", "inspect", "app:1").out)[0]["RootFS"]["Layers"]
    assert _skopeo("inspect", f"docker-archive:{since}")["Layers"] == layers
    assert _skopeo("inspect", "--config", f"oci-archive:{since}")["rootfs"]["diff_ids"] == layers
    # the image saved --since itself: only its config and manifest, which load on a host that has it
    self_delta = tmp_path / "self.tar"
    kran("save", "--since", "app:1", "-o", str(self_delta), "app:1")
    sm = _members(self_delta)
    assert not any(n in sm for n in json.loads(_members(full)["manifest.json"])[0]["Layers"])
    assert json.loads(sm["manifest.json"])[0]["KranDelta"]["OmittedLayers"] == layers
    assert kran("load", "-i", str(self_delta)).out == "Loaded image: app:1\n"


def test_since_a_missing_base(kran, busybox, app, tmp_path):
    out = tmp_path / "x.tar"
    r = kran("save", "--since", "nosuch", "-o", str(out), "app:1", check=False)
    assert r.returncode == 1 and r.err.endswith("No such image: nosuch:latest\n") and r.err.count("\n") == 1, r.err
    assert not out.exists() and list(tmp_path.glob(".kran-save-*")) == []
    r = kran("save", "--since", "nosuch", "app:1", check=False)
    assert r.returncode == 1 and r.stdout == b"" and "No such image: nosuch:latest" in r.err


def test_api_save_since(kran, busybox, app, tmp_path):
    """GET /images/get?since=BASE (kran's own parameter) writes what `kran save --since` writes."""
    from urllib.parse import quote

    from tests.api.conftest import UnixHTTP, start_service, stop_service

    sock = tmp_path / "api" / "kran.sock"
    sock.parent.mkdir()
    p = start_service(kran, sock, tmp_path / "api" / "service.log")
    try:
        c = UnixHTTP(sock)
        r, body = c.call("GET", "/v1.41/images/get?names=app:1&since=busybox")
        assert r.status == 200, body
        cli = tmp_path / "cli.tar"
        kran("save", "--since", "busybox", "-o", str(cli), "app:1")
        assert body == cli.read_bytes()
        r, body = c.call("GET", f"/v1.41/images/{quote('app:1')}/get?since=nosuch")
        assert r.status == 404 and json.loads(body)["message"] == "No such image: nosuch:latest", body
        c.close()
    finally:
        stop_service(p)
