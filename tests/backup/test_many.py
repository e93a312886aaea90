"""Many containers of one image in one backup directory, a chain of incremental backups with
renames, chmods and hardlinks, and the layout read by skopeo and umoci as independent readers.
(test_backup.py has the created-containers and unchanged-incremental variants of these.)"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.backup.conftest import blobs, dir_bytes, export_tree, manifest

N = 20
NAMES = [f"c{i:02d}" for i in range(N)]
# image files some containers delete: a file, a directory, a symlink of busybox's
DELETES = {0: "rm /bin/ls", 5: "rm -r /var/www", 10: "rm /bin/cat /etc/group", 15: "rm /etc/passwd"}


def _tool(name: str) -> str:
    p = shutil.which(name)
    if not p:
        pytest.fail(f"{name} is required (apt-get install {name})")
    return p


def _layers(dest: Path, ref: str) -> list[str]:
    return [d["digest"] for d in manifest(dest, ref)["layers"]]


def _pids(k, names: list[str]) -> dict[str, int]:
    out = k("inspect", "-f", "{{.Name}} {{.State.Pid}}", *names).out.split()
    return {out[i].lstrip("/"): int(out[i + 1]) for i in range(0, len(out), 2)}


def test_twenty_running_containers_in_one_command(kran, kran2, busybox, tmp_path: Path):
    dest = tmp_path / "backups"
    for i, n in enumerate(NAMES):
        # each writes its own file (a different size each, so no two layers are alike), some delete
        # image files; then sleeps, running while it is frozen and backed up
        script = f"head -c {1000 + 37 * i} /dev/urandom > /own-{n} && {DELETES.get(i, 'true')} && exec sleep 3600"
        kran("run", "-d", "--network", "none", "--name", n, "busybox", "sh", "-c", script)
    deadline = time.monotonic() + 10
    while not all(os.path.exists(f"/proc/{p}/root/own-{n}") and Path(f"/proc/{p}/comm").read_text() == "sleep\n"
                  for n, p in _pids(kran, NAMES).items()):
        assert time.monotonic() < deadline, "the containers did not write their files"
        time.sleep(0.05)
    p = kran("backup", "-v", *NAMES, f"oci:{dest}")
    lines = p.out.splitlines()
    assert [ln.split(":")[0] for ln in lines] == NAMES and all(" frozen " in ln for ln in lines), p.out
    assert p.err == ""
    image_layers = set(json.loads(kran("image", "inspect", "busybox").out)[0]["RootFS"]["Layers"])
    tops = [_layers(dest, f"{n}:latest") for n in NAMES]
    assert all(len(t) == 1 for t in tops) and len({t[0] for t in tops}) == N  # each its own top layer ...
    stored = blobs(dest)
    assert {t[0] for t in tops} <= stored and not image_layers & stored  # ... stored, and the base zero times
    # the layers are about the containers' own bytes: 20 files of ~1-2 kB, not busybox's ~2 MB
    assert dir_bytes(dest) < N * 40_000, dir_bytes(dest)
    want = {n: export_tree(kran, n) for n in NAMES}

    # changes in a few, then one incremental run of all 20
    for n in NAMES[:4]:
        kran("exec", n, "sh", "-c", f"echo second > /second-{n} && rm /own-{n}")
        want[n] = export_tree(kran, n)
    p = kran("backup", "-v", "--incremental", *NAMES, f"oci:{dest}")
    lines = p.out.splitlines()
    assert all(", incremental layer 0B," in ln for ln in lines[4:]), p.out
    assert not any(", incremental layer 0B," in ln for ln in lines[:4]), p.out
    rows = [ln.split() for ln in kran("backup", "ls", f"oci:{dest}").out.splitlines()[1:]]
    assert len(rows) == 2 * N and sorted({r[0] for r in rows}) == NAMES
    assert all(sum(r[0] == n for r in rows) == 2 for n in NAMES)  # 20 names x 2 tags
    assert all(r[-1] == "busybox" for r in rows)
    idx = json.loads((dest / "index.json").read_text())
    assert len(idx["manifests"]) == 3 * N  # each name: two time tags and latest
    assert len(_layers(dest, "c00:latest")) == 2 and _layers(dest, "c19:latest") == tops[19]

    # every one restored on the second root: the same tree as the original's
    for n in NAMES:
        kran2("restore", f"oci:{dest}:{n}")
    for n in NAMES:
        got = export_tree(kran2, n)
        assert got == want[n], f"{n} differs"
    assert "bin/ls" not in export_tree(kran2, "c00") and "var/www" not in export_tree(kran2, "c05")
    assert "own-c01" not in want["c01"] and "second-c01" in want["c01"]


# the chain: each step's commands, in the container, before its backup
STEPS = [
    # 1: a tree of its own, a hardlink, a file of the image changed
    "mkdir -p /app/conf/sub /app/logs && echo a > /app/conf/a && echo deep > /app/conf/sub/deep"
    " && echo v1 > /app/v && ln /app/v /app/v.hard && echo 1 > /app/logs/1 && echo extra >> /etc/passwd",
    # 2: a directory of backup 1 renamed, an image directory renamed (copied up: EXDEV), a chmod of
    #    an image directory and of a backup-1 file, a file deleted, a new hardlink to an older file
    "mv /app/conf /app/settings && mv /var/www /var/site && chmod 700 /var && chmod 600 /app/v"
    " && rm /app/logs/1 && echo 2 > /app/logs/2 && ln /app/settings/a /app/a.hard && chown 3:4 /app/logs",
    # 3: the hardlinked file rewritten (both names change), one name of a link removed, a file
    #    replaced by a directory, a renamed directory renamed back, an image file deleted
    "echo v3 > /app/v && rm /app/a.hard && rm /app/logs/2 && mkdir /app/logs/2 && echo x > /app/logs/2/x"
    " && mv /app/settings /app/conf && rm /bin/ls && chmod 4755 /app/conf/a",
]


def _linked(tree: dict[str, tuple], a: str, b: str) -> bool:
    """Whether the export holds ``a`` and ``b`` as one file: one of them a hardlink to the other."""
    def to(n: str) -> str:
        return tree[n][4].lstrip("./") if tree[n][0] == b"1" else ""

    return to(a) == b or to(b) == a


def test_chain_of_three_with_renames_restores_each_point(kran, kran2, busybox, tmp_path: Path):
    dest = tmp_path / "backups"
    kran("run", "-d", "--network", "none", "--name", "app", "busybox", "sleep", "3600")
    trees, refs = [], []
    for i, s in enumerate(STEPS):
        if i:
            time.sleep(1.05)  # a new second: the mtimes of rewritten files change as they would
        kran("exec", "app", "sh", "-c", s)
        refs.append(kran("backup", *(("--incremental",) if i else ()), "app", f"oci:{dest}").out.strip())
        trees.append(export_tree(kran, "app"))
    assert [len(_layers(dest, r)) for r in refs] == [1, 2, 3]
    assert trees[1] != trees[0] and trees[2] != trees[1]
    # the latest on the second root: the tree at the third backup
    kran2("restore", "--name", "last", f"oci:{dest}:app")
    last = export_tree(kran2, "last")
    assert last == trees[2]
    assert _linked(last, "app/v", "app/v.hard") and "app/settings" not in last and "bin/ls" not in last
    assert last["app/logs/2"][0] == b"5" and last["app/conf/a"][1] == 0o4755
    # the second tag: the tree at that time (chain of two of the three layers)
    kran2("restore", "--name", "second", f"oci:{dest}:{refs[1]}")
    second = export_tree(kran2, "second")
    assert second == trees[1]
    assert "app/conf" not in second and second["app/settings/sub/deep"][5][2] == hashlib.sha256(b"deep\n").hexdigest()
    assert "var/www" not in second and "var/site/index.html" in second and second["var"][1] == 0o700
    assert _linked(second, "app/settings/a", "app/a.hard") and second["app/v"][1] == 0o600


def test_skopeo_and_umoci_read_a_chain(kran, busybox, tmp_path: Path):
    """skopeo copies a backup out of the layout (verifying every digest) and umoci lists the tags and
    unpacks the chain of backup layers rootless: the stacked layers hold the container's own files
    as they were at the last backup, deletions applied -- read by tools that know nothing of kran."""
    skopeo, umoci = _tool("skopeo"), _tool("umoci")
    dest = tmp_path / "backups"
    kran("run", "-d", "--network", "none", "--name", "app", "busybox", "sleep", "3600")
    for i, s in enumerate(STEPS):
        kran("exec", "app", "sh", "-c", s)
        kran("backup", *(("--incremental",) if i else ()), "app", f"oci:{dest}")
    kran("create", "--network", "none", "--name", "other", "busybox", "sh")
    kran("backup", "other", f"oci:{dest}")
    want = {n: v for n, v in export_tree(kran, "app").items() if n == "app" or n.startswith("app/")}
    tags = kran("backup", "ls", "-q", f"oci:{dest}").out.split()
    assert len(tags) == 4

    listed = subprocess.run([umoci, "ls", "--layout", str(dest)], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.split()) == sorted(tags + ["app:latest", "other:latest"])

    out = tmp_path / "copied"
    p = subprocess.run([skopeo, "copy", "--quiet", f"oci:{dest}:app:latest", f"dir:{out}"], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert [d["digest"] for d in man["layers"]] == _layers(dest, "app:latest")
    for d in man["layers"] + [man["config"]]:
        data = (out / d["digest"].split(":")[1]).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == d["digest"] and len(data) == d["size"]
    cfg = json.loads((out / man["config"]["digest"].split(":")[1]).read_text())
    assert cfg["kran.backup"]["Name"] == "app" and cfg["kran.backup"]["Incremental"] is True

    bundle = tmp_path / "bundle"
    p = subprocess.run([umoci, "unpack", "--rootless", "--image", f"{dest}:app:latest", str(bundle)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rootfs = bundle / "rootfs"
    got = {}
    for dirpath, dirnames, filenames in os.walk(rootfs / "app"):
        for name in dirnames + filenames:
            q = Path(dirpath, name)
            st = q.lstat()
            got[str(q.relative_to(rootfs))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                               q.read_bytes() if stat.S_ISREG(st.st_mode) else None)
    got["app"] = (stat.S_IFDIR, stat.S_IMODE((rootfs / "app").lstat().st_mode), None)
    types = {b"0": stat.S_IFREG, b"1": stat.S_IFREG, b"5": stat.S_IFDIR}
    assert {n: (types[v[0]], v[1]) for n, v in want.items()} == {n: v[:2] for n, v in got.items()}
    assert got["app/v"][2] == b"v3\n" and (rootfs / "app/v").stat().st_ino == (rootfs / "app/v.hard").stat().st_ino
    assert not (rootfs / "app/settings").exists() and not (rootfs / "app/a.hard").exists()
    # the base was never in the backup: /bin only as the parent of the whiteout of ls
    assert list((rootfs / "bin").iterdir()) == [] and not (rootfs / "etc/group").exists()
