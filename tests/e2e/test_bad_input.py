"""Bad input gets a one-line error, a non-zero exit, and leaves the store and the host unchanged."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import store_snapshot


def _tar(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            if isinstance(e, tuple):
                tf.addfile(e[0], io.BytesIO(e[1]))
            else:
                tf.addfile(e)
    return buf.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    return ti, data


def _link(name: str, target: str, hard: bool = False) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    ti.linkname = target
    return ti


def _sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def docker_archive(layers: list[bytes], *, tag: str = "evil:latest", config_override: bytes | None = None,
                   layer_names: list[str] | None = None, skip_members: set[str] = frozenset()) -> bytes:
    config = config_override or json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {},
         "rootfs": {"type": "layers", "diff_ids": [_sha(lb) for lb in layers]}}
    ).encode()
    cfg_name = _sha(config)[7:] + ".json"
    names = layer_names or [f"{_sha(lb)[7:]}/layer.tar" for lb in layers]
    members = [_file(cfg_name, config)]
    members += [_file(n, lb) for n, lb in zip(names, layers, strict=True)]
    manifest = [{"Config": cfg_name, "RepoTags": [tag], "Layers": names}]
    members.append(_file("manifest.json", json.dumps(manifest).encode()))
    return _tar([m for m in members if m[0].name not in skip_members])


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "file").write_text("precious")
    return d


def _assert_refused(kran, args, data, before, outside, *, expect: str):
    r = kran(*args, input=data, check=False)
    assert r.returncode != 0, r.out
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert expect in lines[0], lines[0]
    assert store_snapshot(kran.root) == before
    assert sorted(p.name for p in outside.iterdir()) == ["file"]
    assert (outside / "file").read_text() == "precious"
    assert (outside / "file").stat().st_nlink == 1


def _depth(kran) -> str:
    # enough ../ to climb from a layer's temp dir to / and into the test's tmp dir
    return "../" * (len(kran.root.parts) + 4)


def _evil_layers(kran, outside: Path) -> dict[str, bytes]:
    rel_out = _depth(kran) + str(outside).lstrip("/")
    return {
        "dotdot": _tar([_file("../escape")]),
        "dotdot-nested": _tar([_file("a/../../escape")]),
        "absolute": _tar([_file(str(outside / "abs"))]),
        "symlink-then-write": _tar([_link("evil", rel_out), _file("evil/pwned")]),
        "symlink-climb": _tar([_link("evil", _depth(kran)), _file("evil" + str(outside) + "/pwned")]),
        "hardlink-out": _tar([_link("hl", rel_out + "/file", hard=True)]),
        "hardlink-abs": _tar([_link("hl", str(outside / "file"), hard=True)]),
        "duplicate": _tar([_file("a", b"1"), _file("a", b"2")]),
    }


EXPECT = {
    "dotdot": "escape",
    "dotdot-nested": "escape",
    "absolute": "abs",
    "symlink-then-write": "pwned",
    "symlink-climb": "pwned",
    "hardlink-out": "hl",
    "hardlink-abs": "hl",
    "duplicate": "duplicate",
}


@pytest.mark.parametrize("case", sorted(EXPECT))
def test_import_refuses_evil_layers(kran, busybox, outside, case):
    before = store_snapshot(kran.root)
    data = _evil_layers(kran, outside)[case]
    _assert_refused(kran, ["import", "-", "evil:1"], data, before, outside, expect=EXPECT[case])


@pytest.mark.parametrize("case", sorted(EXPECT))
def test_load_refuses_evil_layers(kran, busybox, outside, case):
    before = store_snapshot(kran.root)
    data = docker_archive([_evil_layers(kran, outside)[case]])
    _assert_refused(kran, ["load"], data, before, outside, expect=EXPECT[case])


def test_symlink_with_absolute_target_stays_inside(kran, outside):
    """`a -> /<outside>` then `a/new`: the absolute target resolves inside the layer root."""
    data = _tar([_link("a", str(outside)), _file("a/new", b"inside")])
    image_id = kran("import", "-", "abs:1", input=data).out.strip()
    assert sorted(p.name for p in outside.iterdir()) == ["file"]
    info = json.loads(kran("image", "inspect", image_id).out)[0]
    upper = Path(info["GraphDriver"]["Data"]["UpperDir"])
    assert (upper / str(outside).lstrip("/") / "new").read_bytes() == b"inside"


def test_archive_problems(kran, busybox, outside, busybox_tar, tmp_path):
    before = store_snapshot(kran.root)
    good_layer = _tar([_file("hello", b"hi")])
    good = docker_archive([good_layer])

    # truncated in the middle of the layer
    _assert_refused(kran, ["load"], good[: len(good) // 2], before, outside, expect="invalid archive")
    # not a tar at all
    _assert_refused(kran, ["load"], b"this is not a tar archive" * 40, before, outside, expect="invalid archive")
    # a config whose content does not match its digest-named file
    tampered = docker_archive([good_layer])
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [_sha(good_layer)]}}).encode()
    wrong = _tar([_file("0" * 64 + ".json", cfg), _file("l/layer.tar", good_layer),
                  _file("manifest.json", json.dumps([{"Config": "0" * 64 + ".json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]).encode())])
    _assert_refused(kran, ["load"], wrong, before, outside, expect="does not match")
    assert tampered  # the untampered archive is fine (checked below)
    # a layer whose content does not match the config's diff ID
    other = _tar([_file("hello", b"HI")])
    cfg2 = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [_sha(good_layer)]}}).encode()
    mismatch = docker_archive([other], config_override=cfg2)
    _assert_refused(kran, ["load"], mismatch, before, outside, expect="diff ID")
    # a manifest that references a layer missing from the archive
    missing = docker_archive([good_layer], skip_members={f"{_sha(good_layer)[7:]}/layer.tar"})
    _assert_refused(kran, ["load"], missing, before, outside, expect="missing")
    # member names that climb out of the archive
    climbing = _tar([_file("../manifest.json", b"[]")])
    _assert_refused(kran, ["load"], climbing, before, outside, expect="unsafe path")
    # an OCI layout whose blob does not match its digest
    oci = _oci_layout(good_layer, corrupt=True)
    _assert_refused(kran, ["load"], oci, before, outside, expect="digest mismatch")
    # an OCI index that points at a blob that is not there
    _assert_refused(kran, ["load"], _oci_layout(good_layer, drop_layer=True), before, outside, expect="missing")
    # and a broken import source
    _assert_refused(kran, ["import", "-"], busybox_tar.read_bytes()[:3000], before, outside, expect="")
    # the good ones load
    assert kran("load", input=good).out == "Loaded image: evil:latest\n"
    assert kran("load", input=_oci_layout(good_layer)).out == "Loaded image: oci:v1\n"


def _oci_layout(layer: bytes, *, corrupt: bool = False, drop_layer: bool = False) -> bytes:
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [_sha(layer)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _sha(cfg), "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _sha(layer), "size": len(layer)}],
    }).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _sha(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "docker.io/library/oci:v1"}}]}).encode()
    blobs = {_sha(cfg): cfg, _sha(manifest): manifest, _sha(layer): layer}
    if corrupt:
        blobs[_sha(layer)] = layer[:-1] + b"!"
    if drop_layer:
        del blobs[_sha(layer)]
    members = [_file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), _file("index.json", index)]
    members += [_file("blobs/sha256/" + d[7:], b) for d, b in blobs.items()]
    return _tar(members)
