"""`kill -9` of a backup or a restore at any point: the backup directory keeps what it had (every
earlier backup listed and restorable, no scratch files after the next writer), the container is
never left frozen behind the user's back (it shows as paused: `kran unpause`), and the restoring
root holds nothing half-made after its next command."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.backup.conftest import export_tree


def _kill_after(k, args: list[str], delay: float) -> int:
    p = k.popen(*args)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    return p.wait(30)


def test_kill_9_during_backups_and_restores(kran, kran2, busybox, tmp_path: Path):
    dest = tmp_path / "b"
    kran("run", "-d", "--network", "none", "--name", "big", "busybox", "sleep", "3600")
    kran("exec", "big", "sh", "-c", "echo first > /first")
    first = kran("backup", "big", f"oci:{dest}").out.strip()
    index_before = (dest / "index.json").read_bytes()
    want = export_tree(kran, "big")
    # a layer big enough that the backup is still copying, converting or hashing when killed
    kran("exec", "big", "sh", "-c", "for i in 1 2 3 4 5 6; do head -c 40000000 /dev/urandom > /f$i; done")
    for delay in (0.15, 0.4, 0.8, 1.5):
        _kill_after(kran, ["backup", "big", f"oci:{dest}"], delay)
        status = kran("inspect", "-f", "{{.State.Status}}", "big").out.strip()
        assert status in ("running", "paused"), status
        if status == "paused":  # killed while frozen: the user sees it and can thaw it
            kran("unpause", "big")
        kran("exec", "big", "true")  # not frozen
        # the directory still has its earlier backup, whole (index.json is renamed in or not at all)
        rows = kran("backup", "ls", "-q", f"oci:{dest}").out.split()
        assert first in rows and len(rows) <= 2, rows
        if (dest / "index.json").read_bytes() == index_before:
            kran2("restore", "--name", f"r{int(delay * 100)}", f"oci:{dest}:big")
            assert export_tree(kran2, f"r{int(delay * 100)}") == want
    # the next backup sweeps what the killed ones left and succeeds
    kran("backup", "big", f"oci:{dest}")
    assert not [p.name for p in dest.iterdir() if p.name.startswith(".")], list(dest.iterdir())

    # a restore killed mid-way: the restoring root has no half-made container once it runs again
    n = len(kran2("ps", "-aq").out.split())
    _kill_after(kran2, ["restore", "--name", "half", f"oci:{dest}:big"], 0.6)
    names = {json.loads(kran2("inspect", i).out)[0]["Name"] for i in kran2("ps", "-aq").out.split()}
    if "/half" in names:
        # it got as far as creating the container: the user removes it like any other
        kran2("rm", "-f", "half")
    assert len(kran2("ps", "-aq").out.split()) == n
    kran2("restore", "--name", "half", f"oci:{dest}:big")
    assert (kran2("export", "half").returncode == 0)
