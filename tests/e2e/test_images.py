"""Images in and out without a registry: import, load, save, images, inspect, history, tag, rmi, prune."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.conftest import BUSYBOX_CHANGES


def test_import_lists_and_inspects(kran, busybox_tar):
    p = kran("import", *BUSYBOX_CHANGES, "-m", "my busybox", str(busybox_tar), "busybox:latest")
    image_id = p.out.strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id)
    out = kran("images").out.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert re.match(r"busybox\s+latest\s+" + image_id[7:19] + r"\s+(Less than a second|\d+ seconds?) ago\s+\d", out[1])
    info = json.loads(kran("image", "inspect", "busybox").out)
    assert info[0]["Id"] == image_id
    assert info[0]["RepoTags"] == ["busybox:latest"]
    assert info[0]["Config"]["Cmd"] == ["sh"]
    assert info[0]["Comment"] == "my busybox"
    assert info[0]["Os"] == "linux"
    assert len(info[0]["RootFS"]["Layers"]) == 1
    assert kran("inspect", "-f", "{{.Config.Cmd}} {{index .RepoTags 0}}", image_id[7:19]).out == "[sh] busybox:latest\n"
    # the layer is unpacked once, with the busybox binary and its applet links
    upper = Path(info[0]["GraphDriver"]["Data"]["UpperDir"])
    assert (upper / "bin" / "busybox").stat().st_size == Path("/bin/busybox").stat().st_size
    assert (upper / "bin" / "sh").readlink() == Path("busybox")
    assert oct((upper / "tmp").stat().st_mode & 0o7777) == "0o1777"


def test_import_from_stdin_and_history(kran, busybox_tar):
    image_id = kran("import", "-", "fromstdin", input=busybox_tar.read_bytes()).out.strip()
    h = kran("history", "fromstdin").out.splitlines()
    assert h[0].split()[:2] == ["IMAGE", "CREATED"]
    assert h[1].startswith(image_id[7:19])
    assert "Imported from -" in h[1]
    assert kran("history", "-q", "--no-trunc", "fromstdin").out.strip() == image_id
    assert kran("history", "--format", "{{.Comment}}", "fromstdin").out == "Imported from -\n"


def test_images_quiet_format_filters(kran, busybox):
    kran("tag", "busybox", "localhost:5000/team/app:1.2")
    assert kran("images", "-q").out == busybox[7:19] + "\n"
    assert kran("images", "-q", "--no-trunc").out == busybox + "\n"
    fmt = kran("images", "--format", "{{.Repository}}:{{.Tag}}").out.splitlines()
    assert sorted(fmt) == ["busybox:latest", "localhost:5000/team/app:1.2"]
    assert kran("images", "--filter", "reference=localhost:5000/*/*").out.count("\n") == 2
    assert kran("images", "busybox").out.count("\n") == 2
    assert kran("images", "--filter", "dangling=true", "-q").out == ""
    t = kran("images", "--format", "table {{.Repository}}\t{{.Tag}}").out.splitlines()
    assert t[0].split() == ["REPOSITORY", "TAG"]
    js = [json.loads(line) for line in kran("images", "--format", "json").out.splitlines()]
    assert {j["Repository"] for j in js} == {"busybox", "localhost:5000/team/app"}
    assert all(j["ID"] == busybox[7:19] for j in js)
    r = kran("images", "--filter", "bogus=1", check=False)
    assert r.returncode != 0 and "invalid filter 'bogus'" in r.err


def test_tag_and_rmi_like_docker(kran, busybox):
    kran("tag", "busybox", "other:v1")
    # untag only: the image keeps its other name
    r = kran("rmi", "other:v1")
    assert r.out == "Untagged: other:v1\n"
    assert kran("images", "-q").out.strip() == busybox[7:19]
    kran("tag", busybox[7:19], "other:v1")
    r = kran("rmi", busybox[7:19], check=False)
    assert r.returncode == 1
    assert r.err == (
        f"Error response from daemon: conflict: unable to delete {busybox[7:19]} (must be forced)"
        " - image is referenced in multiple repositories\n"
    )
    r = kran("rmi", "-f", busybox[7:19])
    lines = r.out.splitlines()
    assert "Untagged: busybox:latest" in lines and "Untagged: other:v1" in lines
    assert f"Deleted: {busybox}" in lines
    assert kran("images", "-q").out == ""
    r = kran("rmi", "nope", check=False)
    assert r.returncode == 1 and r.err == "Error response from daemon: No such image: nope:latest\n"
    # the layer directory went with the image
    assert list((kran.root / "layers").iterdir()) == []
    assert list((kran.root / "blobs" / "sha256").iterdir()) == []


def test_tag_errors(kran, busybox):
    r = kran("tag", "busybox", "UPPER:x", check=False)
    assert r.returncode == 1
    assert r.err == (
        'Error parsing reference: "UPPER:x" is not a valid repository/tag: '
        "invalid reference format: repository name (library/UPPER) must be lowercase\n"
    )
    r = kran("tag", "busybox", check=False)
    assert r.returncode == 1 and r.err.startswith('"kran tag" requires exactly 2 arguments.')
    r = kran("images", "--bogus", check=False)
    assert r.returncode == 125 and r.err.startswith("unknown flag: --bogus")


def test_save_load_roundtrip(kran, busybox, tmp_path):
    kran("tag", "busybox", "busybox:v2")
    archive = tmp_path / "bb.tar"
    kran("save", "-o", str(archive), "busybox")
    names = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True, check=True).stdout.split()
    assert {"manifest.json", "index.json", "oci-layout"} <= set(names)
    kran("rmi", "-f", "busybox:latest", "busybox:v2")
    r = kran("load", "-i", str(archive))
    assert sorted(r.out.splitlines()) == ["Loaded image: busybox:latest", "Loaded image: busybox:v2"]
    assert kran("images", "-q").out.strip() == busybox[7:19]
    # stdin, and the quiet flag
    r = kran("load", "-q", input=archive.read_bytes())
    assert r.out == ""
    # save to stdout
    out = kran("save", "busybox:v2").stdout
    assert out[:512].find(b"blobs") >= 0


def test_load_moves_tag_and_reports(kran, busybox, busybox_tar, tmp_path):
    second = kran("import", "-m", "second", str(busybox_tar), "busybox:latest").out.strip()
    assert second != busybox
    archive = tmp_path / "a.tar"
    kran("save", "-o", str(archive), "busybox:latest")
    kran("tag", busybox, "busybox:latest")
    r = kran("load", "-i", str(archive))
    assert r.out == (
        f"The image busybox:latest already exists, renaming the old one with ID {busybox} to empty string\n"
        "Loaded image: busybox:latest\n"
    )
    assert kran("images", "--filter", "dangling=true", "-q").out.strip() == busybox[7:19]


def test_prune_and_df(kran, busybox, busybox_tar):
    df = kran("system", "df").out.splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df[1].split()[:3] == ["Images", "1", "0"]
    assert "(100%)" in df[1]
    dangling = kran("import", "-m", "dangling", str(busybox_tar)).out.strip()
    r = kran("image", "prune", "-f")
    assert r.out.startswith("Deleted Images:\n")
    assert f"deleted: {dangling}" in r.out
    assert r.out.rstrip().splitlines()[-1].startswith("Total reclaimed space: ")
    assert kran("images", "-q", "-a").out.strip() == busybox[7:19]
    r = kran("image", "prune", "-a", "-f")
    assert "untagged: busybox:latest" in r.out
    assert kran("images", "-q").out == ""
    assert kran("image", "prune", "-f").out == "Total reclaimed space: 0B\n"


def test_help_everywhere(kran):
    top = kran("--help").out
    assert top.startswith("Usage:  kran [OPTIONS] COMMAND")
    for cmd in (["images"], ["import"], ["load"], ["save"], ["history"], ["tag"], ["rmi"], ["inspect"],
                ["image", "ls"], ["image", "prune"], ["image", "inspect"], ["system", "df"], ["system", "prune"]):
        out = kran(*cmd, "--help").out
        assert out.startswith(f"Usage:  kran {' '.join(cmd)}"), out
        assert "Options:" in out or cmd == ["tag"]


def test_group_help_lists_subcommands(kran):
    for group, some in (("image", ["ls", "rm", "prune", "inspect"]), ("container", ["ls", "run", "exec", "prune"]),
                        ("system", ["df", "prune"])):
        for args in ([group], [group, "--help"]):
            out = kran(*args).out
            assert out.startswith(f"Usage:  kran {group} COMMAND")
            listed = [line.split()[0] for line in out.split("Commands:\n", 1)[1].split("\n\n")[0].splitlines()]
            assert set(some) <= set(listed) and listed == sorted(listed)
    r = kran("image", "bogus", check=False)
    assert r.returncode == 125 and "'bogus' is not a kran command" in r.err
