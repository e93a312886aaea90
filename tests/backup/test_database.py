"""A database container backed up while it writes: sqlite3 inserting rows in transactions in a loop,
backed up twice (full, then incremental) while frozen, restored on a second root; the restored
database passes ``PRAGMA integrity_check`` and holds only whole transactions."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_CHANGES

SQLITE = "/usr/bin/sqlite3"
ROWS_PER_TX = 3
# every transaction inserts ROWS_PER_TX rows of one tx number; a copy that holds part of one is torn.
# `.timeout` makes a writer wait for a reader's lock (the checks below read while it writes)
SQL = "sqlite3 -cmd '.timeout 5000' /data/db.sqlite"
LOOP = (
    "mkdir -p /data; {sql} '{init}CREATE TABLE IF NOT EXISTS t (tx INTEGER, k INTEGER, v TEXT);'; i=0;"
    " while :; do i=$((i+1)); {sql} \"BEGIN; " + " ".join(
        f"INSERT INTO t VALUES ($i, {k}, hex(randomblob(64)));" for k in range(ROWS_PER_TX)) + ' COMMIT;"; done'
)


def _image_tar(busybox_tar: Path, out: Path) -> None:
    """busybox's rootfs plus the host's sqlite3 and every shared library `ldd` lists for it, each at
    the path the loader looks for it (the real file copied there, not a symlink)."""
    if not Path(SQLITE).exists():
        pytest.fail("sqlite3 is required (apt-get install sqlite3)")
    ldd = subprocess.run(["ldd", SQLITE], capture_output=True, text=True, check=True).stdout
    libs = sorted({m for m in re.findall(r"(/\S+) \(0x", ldd)})
    assert any("libsqlite3" in x for x in libs) and any("ld-linux" in x for x in libs), ldd
    with tarfile.open(busybox_tar) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        have = set()
        for m in src:
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
            have.add(m.name.lstrip("./").rstrip("/"))
        for path in [SQLITE, *libs]:
            rel = path.lstrip("/")
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in have:
                    ti = tarfile.TarInfo("./" + d)
                    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1704067200
                    dst.addfile(ti)
                    have.add(d)
            data = Path(path).read_bytes()  # follows the symlinks ldd names
            ti = tarfile.TarInfo("./" + rel)
            ti.size, ti.mode, ti.mtime = len(data), 0o755, 1704067200
            dst.addfile(ti, io.BytesIO(data))


@pytest.fixture(scope="module")
def sqlite_tar(busybox_tar: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sqlite") / "sqlite.tar"
    _image_tar(busybox_tar, out)
    return out


@pytest.fixture
def sqlite_image(kran, kran2, sqlite_tar: Path) -> str:
    """sqlite:latest on both roots (the same tar imported on each, as on two hosts)."""
    for k in (kran, kran2):
        k("import", *BUSYBOX_CHANGES, str(sqlite_tar), "sqlite:latest")
    return "sqlite:latest"


def _check_db(tmp: Path, files: dict[str, bytes]) -> int:
    """Write the database files (db, journal or WAL) to ``tmp`` and read them with the host's sqlite3
    as a crash would leave them: a hot journal is rolled back, a WAL replayed.  Returns the rows."""
    tmp.mkdir()
    for n, data in files.items():
        (tmp / n).write_bytes(data)
    db = tmp / "db.sqlite"

    def q(sql: str) -> str:
        p = subprocess.run([SQLITE, str(db), sql], capture_output=True, text=True)
        assert p.returncode == 0 and not p.stderr, p.stderr
        return p.stdout.strip()

    assert q("PRAGMA integrity_check;") == "ok"
    rows = int(q("SELECT count(*) FROM t;"))
    # whole transactions only: every tx number has all its rows, once each
    assert q(f"SELECT count(*) FROM (SELECT tx FROM t GROUP BY tx HAVING count(*) != {ROWS_PER_TX}"
             f" OR count(DISTINCT k) != {ROWS_PER_TX});") == "0"
    return rows


def _exported_db(k, name: str) -> dict[str, bytes]:
    """The container's /data/db.sqlite* files, read through `kran export` as a user would."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(k("export", name).stdout), mode="r:") as t:
        for m in t:
            n = m.name.lstrip("./")
            if m.isfile() and n.startswith("data/db.sqlite"):
                out[n.split("/", 1)[1]] = t.extractfile(m).read()
    assert "db.sqlite" in out, sorted(out)
    return out


def _volume_db(k, volume: str) -> dict[str, bytes]:
    import json

    mp = Path(json.loads(k("volume", "inspect", volume).out)[0]["Mountpoint"])
    out = {p.name: p.read_bytes() for p in mp.iterdir() if p.name.startswith("db.sqlite")}
    assert "db.sqlite" in out, sorted(out)
    return out


def _wait_rows(k, name: str, n: int) -> int:
    deadline = time.monotonic() + 20
    while True:
        p = k("exec", name, "sh", "-c", f"{SQL} 'SELECT count(*) FROM t;'", check=False)
        if p.returncode == 0 and p.out.strip() and int(p.out) >= n:
            return int(p.out)
        assert time.monotonic() < deadline, f"{name}: fewer than {n} rows: {p.out} {p.err}"
        time.sleep(0.1)


def _two_backups(kran, name: str, dest: Path, *extra: str) -> tuple[str, str]:
    """A full and an incremental backup (frozen, the default) while it writes: no warning; the
    writer goes on between and after them."""
    tags = []
    for i, opts in enumerate(((), ("--incremental",))):
        _wait_rows(kran, name, 30 * (i + 1))
        p = kran("backup", "-v", *opts, *extra, name, f"oci:{dest}")
        assert p.err == "", p.err
        m = re.fullmatch(rf"{name}: frozen \d+ ms, (incremental )?layer .* -> {name}:(\S+)\n", p.out)
        assert m and bool(m.group(1)) == bool(opts), p.out
        tags.append(m.group(2))
        assert kran("inspect", "-f", "{{.State.Status}}", name).out.strip() == "running"
    return tags[0], tags[1]


def test_database_in_the_rw_layer(kran, kran2, sqlite_image, tmp_path: Path):
    dest = tmp_path / "backups"
    kran("run", "-d", "--network", "none", "--name", "db", sqlite_image, "sh", "-c",
         LOOP.format(sql=SQL, init=""))
    full, inc = _two_backups(kran, "db", dest)
    # each backup restored (not started) on the second root: a consistent database, the later one larger
    kran2("restore", "--name", "first", f"oci:{dest}:db:{full}")
    kran2("restore", "--name", "latest", f"oci:{dest}:db")
    n1 = _check_db(tmp_path / "first", _exported_db(kran2, "first"))
    n2 = _check_db(tmp_path / "latest", _exported_db(kran2, "latest"))
    assert 0 < n1 < n2, (n1, n2)
    # the incremental one is the latest and sits on the full one
    assert sorted(kran("backup", "ls", "-q", f"oci:{dest}").out.split()) == sorted([f"db:{inc}", f"db:{full}"])
    # started, the restored container goes on writing into its restored database, which checks ok inside
    kran2("restore", "--start", f"oci:{dest}:db")
    _wait_rows(kran2, "db", n2 + 3 * ROWS_PER_TX)
    p = kran2("exec", "db", "sh", "-c", f"{SQL} 'PRAGMA integrity_check;'")
    assert p.out.strip() == "ok", p.out + p.err


def test_database_in_a_named_volume(kran, kran2, sqlite_image, tmp_path: Path):
    dest = tmp_path / "backups"
    # a WAL database this time: the frozen copy holds db, -wal and -shm as they were at one instant
    kran("run", "-d", "--network", "none", "--name", "db", "-v", "dbvol:/data", sqlite_image, "sh", "-c",
         LOOP.format(sql=SQL, init="PRAGMA journal_mode=WAL; "))
    full, inc = _two_backups(kran, "db", dest, "--volumes")
    kran2("restore", f"oci:{dest}:db")  # the latest: the incremental one, with the volume as it was then
    assert kran2("inspect", "-f", "{{.State.Status}}", "db").out.strip() == "created"
    n = _check_db(tmp_path / "vol", _volume_db(kran2, "dbvol"))
    assert n > 0
    kran2("start", "db")
    _wait_rows(kran2, "db", n + 3 * ROWS_PER_TX)
    p = kran2("exec", "db", "sh", "-c", f"{SQL} 'PRAGMA integrity_check;'")
    assert p.out.strip() == "ok", p.out + p.err


def test_no_pause_backup_of_a_writing_database(kran, sqlite_image, tmp_path: Path):
    """--no-pause reads the layer while the database goes on writing and its journal and the spool
    files next to it come and go: each backup still completes, without a warning or an error."""
    dest = tmp_path / "backups"
    spool = ("mkdir -p /data/spool; i=0; while :; do i=$((i+1)); echo $i > /data/spool/$i.tmp;"
             " rm -f /data/spool/$((i-500)).tmp; done")
    kran("run", "-d", "--network", "none", "--name", "db", sqlite_image, "sh", "-c",
         f"({spool}) & " + LOOP.format(sql=SQL, init=""))
    _wait_rows(kran, "db", 30)
    deadline = time.monotonic() + 20
    while kran("exec", "db", "test", "-e", "/data/spool/1.tmp", check=False).returncode == 0:  # churning yet?
        assert time.monotonic() < deadline, "the spool loop never got going"
        time.sleep(0.1)
    n = 8
    errs = []
    for _ in range(n):  # a few times: each read races the writers somewhere else
        p = kran("backup", "-v", "--no-pause", "db", f"oci:{dest}", check=False)
        if p.returncode or p.err:
            errs.append(p.err.strip())
            continue
        assert re.fullmatch(r"db: not frozen, layer .* -> db:\S+\n", p.out), p.out
    assert not errs, f"{len(errs)} of {n}: {errs}"
    assert len(kran("backup", "ls", "-q", f"oci:{dest}").out.split()) == n
    assert kran("inspect", "-f", "{{.State.Status}}", "db").out.strip() == "running"
