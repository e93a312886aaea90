"""kran backup / restore end to end: a running container frozen while captured and restored on a
second root, an incremental chain of three, 20 containers of one image in one directory, and the
layout read back by skopeo and umoci."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.backup.conftest import blobs, dir_bytes, export_tree, manifest

# the writer: a counter in /data/n and a log of every value, forever
LOOP = "mkdir -p /data; i=0; while true; do i=$((i+1)); echo $i >> /data/log; echo $i > /data/n; done"

CHANGES = (
    "echo hello > /etc/motd && chmod 640 /etc/motd && chown 12:34 /etc/motd"
    " && echo extra >> /etc/passwd"  # an image file changed (copied up)
    " && rm /bin/ls && rm -r /var/www"  # an image file and an image directory deleted
    " && ln -s /etc/motd /etc/motd.link && ln /etc/motd /etc/motd.hard"
    " && mkdir -m 1777 /scratch && touch /scratch/a && chmod 4755 /scratch/a"
    " && mkfifo /scratch/fifo"
)


def _tool(name: str) -> str:
    import shutil

    p = shutil.which(name)
    if not p:
        pytest.fail(f"{name} is required (apt-get install {name})")
    return p


def test_running_container_restored_on_another_root(kran, kran2, busybox, tmp_path: Path):
    dest = tmp_path / "backups"
    kran("run", "-d", "--network", "none", "--name", "web", "busybox", "sh", "-c", LOOP)
    kran("exec", "web", "sh", "-c", CHANGES)
    pid = kran("inspect", "-f", "{{.State.Pid}}", "web").out.strip()
    os.setxattr(f"/proc/{pid}/root/etc/motd", "user.backup", b"kept")  # an xattr, set from the host
    time.sleep(0.3)
    p = kran("backup", "-v", "web", f"oci:{dest}")
    m = re.fullmatch(r"web: frozen (\d+) ms, layer ([\d.]+\s?[kMG]?B), .* -> web:(\d{8}-\d{6})\n", p.out)
    assert m, p.out
    tag = m.group(3)
    assert kran("inspect", "-f", "{{.State.Status}}", "web").out.strip() == "running"  # thawed again
    # the backup holds the container's layer only: not one of the image's layers
    image_layers = set(json.loads(kran("image", "inspect", "busybox").out)[0]["RootFS"]["Layers"])
    man = manifest(dest, f"web:{tag}")
    assert len(man["layers"]) == 1 and not image_layers & {d["digest"] for d in man["layers"]}
    assert manifest(dest, "web:latest") == man

    out = kran2("restore", "--start", f"oci:{dest}:web").out.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", out)
    assert kran2("inspect", "-f", "{{.State.Status}}", "web").out.strip() == "running"
    # /data is what the writer changes (the original went on writing after the backup): elsewhere the
    # two trees are the same -- contents, modes, owners, links, deletions of image files
    kran("pause", "web")
    kran2("pause", "web")
    try:
        orig = export_tree(kran, "web", skip=("data",))
        back = export_tree(kran2, "web", skip=("data",))
    finally:
        kran("unpause", "web")
        kran2("unpause", "web")
    assert back == orig
    assert "bin/ls" not in back and "var/www" not in back and back["etc/motd"][1:4] == (0o640, 12, 34)
    assert back["etc/motd.link"][4] == "/etc/motd" and back["scratch"][1] == 0o1777
    assert back["scratch/a"][1] == 0o4755
    assert ("SCHILY.xattr.user.backup", "kept") in back["etc/motd"][6]
    # the frozen copy is consistent: the log holds 1..k in order, the counter k (or k-1, or empty, by where the
    # freeze fell in the loop).  Read from a second restore, never started (the first one's loop
    # started over and appends to the log)
    kran2("restore", "--name", "copy", f"oci:{dest}:web:{tag}")
    ar = kran2("export", "copy").stdout
    log = [int(x) for x in subprocess.run(["tar", "-xO", "data/log"], input=ar, capture_output=True,
                                          check=True).stdout.split()]
    n = subprocess.run(["tar", "-xO", "data/n"], input=ar, capture_output=True, check=True).stdout
    assert len(log) > 10 and log == list(range(1, len(log) + 1))
    # `echo > n` truncates, then writes: frozen in between, n is empty (as a crash there would leave it)
    assert n in (b"", b"%d\n" % log[-1], b"%d\n" % (log[-1] - 1))


def test_incremental_chain_of_three(kran, kran2, busybox, tmp_path: Path):
    dest = tmp_path / "backups"
    kran("run", "-d", "--network", "none", "--name", "db", "busybox", "sleep", "3600")
    kran("exec", "db", "sh", "-c", "mkdir -p /app/conf && echo 1 > /app/v && echo keep > /app/keep"
                                   " && echo a > /app/conf/a && echo gone > /app/gone")
    trees, tags = [], []
    kran("backup", "db", f"oci:{dest}")
    trees.append(export_tree(kran, "db"))
    steps = [
        # modify, add, delete a file of the first backup, delete an image file, a new hardlink
        "echo 2 > /app/v && echo new > /app/new && rm /app/gone && rm /etc/group && ln /app/keep /app/keep2",
        # a directory of an earlier backup replaced (opaque), a file replaced by a directory
        "rm -r /app/conf && mkdir /app/conf && echo b > /app/conf/b && rm /app/new && mkdir /app/new"
        " && echo x > /app/new/x && chmod 700 /app/conf && chown 5:6 /app/v",
    ]
    for s in steps:
        time.sleep(1.1)  # a new second: mtimes change as they would
        kran("exec", "db", "sh", "-c", s)
        p = kran("backup", "-v", "--incremental", "db", f"oci:{dest}")
        assert "incremental layer" in p.out, p.out
        trees.append(export_tree(kran, "db"))
    rows = [ln.split() for ln in kran("backup", "ls", f"oci:{dest}").out.splitlines()]
    assert rows[0][:5] == ["NAME", "TAG", "CREATED", "SIZE", "BASE"]
    tags = [r[1] for r in rows[1:]][::-1]  # listed newest first
    assert len(tags) == 3 and all(r[0] == "db" and r[-1] == "busybox" for r in rows[1:])
    layers = [manifest(dest, f"db:{t}")["layers"] for t in tags]
    assert [len(ls) for ls in layers] == [1, 2, 3]
    assert layers[1][:1] == layers[0] and layers[2][:2] == layers[1]  # one chain, each on the one before
    info = json.loads(kran("backup", "inspect", f"oci:{dest}:db:{tags[2]}").out)[0]
    assert info["Incremental"] and info["Previous"] == json.loads(
        kran("backup", "inspect", f"oci:{dest}:db:{tags[1]}").out)[0]["Digest"]
    for i, t in enumerate(tags):
        kran2("restore", "--name", f"db{i}", f"oci:{dest}:db:{t}")
        assert export_tree(kran2, f"db{i}") == trees[i], f"restore of backup {i + 1} differs"
    assert "etc/group" not in export_tree(kran2, "db2") and "etc/group" in export_tree(kran2, "db0")
    # nothing changed: no new layer, and next to nothing written
    before = dir_bytes(dest)
    p = kran("backup", "-v", "-i", "db", f"oci:{dest}")
    assert ", incremental layer 0B," in p.out, p.out
    assert manifest(dest, "db:latest")["layers"] == layers[2]
    assert dir_bytes(dest) - before < 4096


def test_twenty_containers_share_nothing_but_their_own_layers(kran, busybox, tmp_path: Path):
    dest = tmp_path / "backups"
    names = [f"c{i:02d}" for i in range(20)]
    for n in names:
        kran("create", "--network", "none", "--name", n, "busybox", "sh")
    # each container's own changes, written into its (stopped) container through cp
    src = tmp_path / "f"
    for n in names:
        src.write_text(f"data of {n}\n" * 100)
        kran("cp", str(src), f"{n}:/own")
    p = kran("backup", "-v", *names, f"oci:{dest}")
    assert len(p.out.splitlines()) == 20 and all("not frozen" in ln for ln in p.out.splitlines())
    image_layers = set(json.loads(kran("image", "inspect", "busybox").out)[0]["RootFS"]["Layers"])
    top = [manifest(dest, f"{n}:latest")["layers"] for n in names]
    assert all(len(t) == 1 for t in top)
    tops = {t[0]["digest"] for t in top}
    assert len(tops) == 20  # each top layer once ...
    stored = blobs(dest)
    assert tops <= stored and not image_layers & stored  # ... and the base zero times
    # per container: its layer, config, manifest and file index; nothing else
    assert len(stored) == 20 * 4
    size1 = dir_bytes(dest)
    assert size1 < 20 * 40_000
    # the second, incremental run of 20 unchanged containers moves nearly nothing
    p = kran("backup", "-v", "--incremental", *names, f"oci:{dest}")
    assert all(", incremental layer 0B," in ln for ln in p.out.splitlines()), p.out
    new = blobs(dest) - stored
    assert len(new) == 40  # a config and a manifest each; the file index is the same blob
    assert dir_bytes(dest) - size1 < 20 * 3000


def test_skopeo_and_umoci_read_the_layout(kran, busybox, tmp_path: Path):
    skopeo, umoci = _tool("skopeo"), _tool("umoci")
    dest = tmp_path / "backups"
    kran("create", "--network", "none", "--name", "web", "-e", "X=1", "busybox", "sh")
    src = tmp_path / "f"
    src.write_text("hello\n")
    kran("cp", str(src), "web:/hello")
    tag = kran("backup", "web", f"oci:{dest}").out.strip().split(":")[1]
    man = manifest(dest, f"web:{tag}")
    for ref in (f"web:{tag}", "web:latest"):
        info = json.loads(subprocess.run([skopeo, "inspect", f"oci:{dest}:{ref}"], capture_output=True, text=True,
                                         check=True).stdout)
        assert info["Layers"] == [d["digest"] for d in man["layers"]]
        assert "X=1" in info["Env"]
    cfg = json.loads(subprocess.run([skopeo, "inspect", "--config", "--raw", f"oci:{dest}:web:{tag}"], capture_output=True,
                                    text=True, check=True).stdout)
    assert cfg["rootfs"]["diff_ids"] == [d["digest"] for d in man["layers"]]
    assert cfg["kran.backup"]["Name"] == "web" and cfg["kran.backup"]["Container"]["Config"]["Env"]
    stat = subprocess.run([umoci, "stat", "--image", f"{dest}:web:{tag}", "--json"], capture_output=True, text=True)
    assert stat.returncode == 0, stat.stderr
    assert len(json.loads(stat.stdout)["history"]) == 1
    # umoci unpacks the backup layer alone (no base): it holds the container's own file
    bundle = tmp_path / "bundle"
    subprocess.run([umoci, "unpack", "--image", f"{dest}:web:latest", str(bundle)], capture_output=True, check=True)
    assert (bundle / "rootfs" / "hello").read_text() == "hello\n"
    assert not (bundle / "rootfs" / "bin").exists()
