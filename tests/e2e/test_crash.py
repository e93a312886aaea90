"""kill -9 at any moment and concurrent kran processes leave the store consistent."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


def _many_files_tar(path: Path, n: int, salt: str) -> None:
    with tarfile.open(path, "w") as tf:
        for i in range(n):
            data = f"{salt} file {i}\n".encode() * 40
            ti = tarfile.TarInfo(f"d{i % 50}/f{i}")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


def assert_consistent(root: Path) -> None:
    """Disk and database agree: no orphan layer dir or blob, no row without its files, tmp/ empty."""
    db = sqlite3.connect(root / "kran.db")
    layers = {r[0].split(":")[1] for r in db.execute("SELECT chain_id FROM layers")}
    assert {p.name for p in (root / "layers").iterdir()} == layers
    for h in layers:
        assert (root / "layers" / h / "diff").is_dir()
    used = {r[0] for r in db.execute("SELECT manifest FROM images UNION SELECT id FROM images UNION SELECT blob FROM image_layers")}
    assert {"sha256:" + p.name for p in (root / "blobs" / "sha256").iterdir()} == used
    assert not db.execute("SELECT chain_id FROM image_layers WHERE chain_id NOT IN (SELECT chain_id FROM layers)").fetchall()
    assert not db.execute("SELECT image_id FROM tags WHERE image_id NOT IN (SELECT id FROM images)").fetchall()
    assert list((root / "tmp").iterdir()) == []
    db.close()


@pytest.mark.parametrize("delay", [0.15, 0.3, 0.5, 0.8])
def test_kill_9_during_import_and_load(kran, busybox, tmp_path, delay):
    big = tmp_path / "big.tar"
    _many_files_tar(big, 4000, f"kill{delay}")
    archive = tmp_path / "bb.tar"
    kran("save", "-o", str(archive), "busybox")
    for args in (["import", str(big), "big:1"], ["load", "-i", str(archive)]):
        if args[0] == "load":
            kran("rmi", "busybox")
        p = kran.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        # reads work right away, whatever was left
        kran("images")
        # the next writer collects the leftovers
        small = tmp_path / "small.tar"
        _many_files_tar(small, 3, f"small{delay}{args[0]}")
        kran("import", str(small), "small:1")
        assert_consistent(kran.root)
        # and the interrupted operation succeeds when run again
        kran(*args)
        assert_consistent(kran.root)


def test_concurrent_writers(kran, busybox, tmp_path):
    archive = tmp_path / "bb.tar"
    kran("save", "-o", str(archive), "busybox")
    kran("rmi", "busybox")
    tars = []
    for i in range(3):
        t = tmp_path / f"t{i}.tar"
        _many_files_tar(t, 300, f"c{i}")
        tars.append(t)

    def job(i: int):
        if i < 4:
            return kran("load", "-i", str(archive), check=False)
        return kran("import", str(tars[i - 4]), f"conc:{i}", check=False)

    with ThreadPoolExecutor(7) as ex:
        results = list(ex.map(job, range(7)))
    for r in results:
        assert r.returncode == 0, r.err
    assert kran("images", "--format", "{{.Repository}}:{{.Tag}}").out.count("\n") == 4
    assert_consistent(kran.root)
    # rmi and load racing each other also end consistent
    with ThreadPoolExecutor(4) as ex:
        futs = [ex.submit(kran, "rmi", "conc:4", check=False), ex.submit(kran, "load", "-i", str(archive), check=False),
                ex.submit(kran, "rmi", "conc:5", check=False), ex.submit(kran, "image", "prune", "-af", check=False)]
        for f in futs:
            assert f.result().returncode in (0, 1)
    assert_consistent(kran.root)
