"""Named and anonymous volumes, bind mounts, --mount, --volumes-from, volume ls/inspect/rm/prune."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

pytestmark = pytest.mark.e2e


def test_two_containers_share_one_volume(kran, kv, busybox):
    assert kv("volume", "create", "shared").out == "shared\n"
    kran("run", "-d", "--name", "ca", "-v", "shared:/s", "busybox", "sh", "-c",
         "i=0; while [ $i -lt 200 ]; do echo a$i >> /s/log; i=$((i+1)); sleep 0.01; done; sleep 300")
    kran("run", "-d", "--name", "cb", "-v", "shared:/s", "busybox", "sh", "-c",
         "i=0; while [ $i -lt 200 ]; do echo b$i >> /s/log; i=$((i+1)); sleep 0.01; done; sleep 300")
    kran("exec", "ca", "sh", "-c", "echo from-a > /s/note")
    assert kran("exec", "cb", "cat", "/s/note").out == "from-a\n"  # at once, no restart
    deadline = time.time() + 30
    while time.time() < deadline:
        lines = kran("exec", "cb", "cat", "/s/log").out.split()
        if len(lines) >= 400:
            break
        time.sleep(0.2)
    assert {x for x in lines if x.startswith("a")} == {f"a{i}" for i in range(200)}
    assert {x for x in lines if x.startswith("b")} == {f"b{i}" for i in range(200)}
    info = json.loads(kran("inspect", "ca").out)[0]["Mounts"]
    assert info == [{"Type": "volume", "Name": "shared", "Source": str(kran.root / "volumes/shared/_data"),
                     "Destination": "/s", "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""}]


def test_copy_up_from_image_keeps_owner_and_mode(kran, kv, busybox):
    out = kran("run", "--rm", "-v", "data:/etc", "busybox", "sh", "-c", "cat /etc/passwd; ls -ln /etc/passwd; cat /etc/hostname").out
    assert out.startswith("root:x:0:0:")
    assert re.search(r"-rw-r--r-- +1 0 +0 .*/etc/passwd", out)
    assert len(out.splitlines()[-1]) == 12  # /etc/hostname still mounted on top of the volume
    data = kran.root / "volumes" / "data" / "_data"
    st = (data / "passwd").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o644)
    # only the first time and only into an empty volume: a changed volume stays as it is
    kran("run", "--rm", "-v", "data:/etc", "busybox", "rm", "/etc/group")
    assert not (data / "group").exists()
    kran("run", "--rm", "-v", "data:/etc", "busybox", "true")
    assert not (data / "group").exists()
    # an image VOLUME-like anonymous volume gets the image's content too
    assert "root:x:0:0" in kran("run", "--rm", "-v", "/etc", "busybox", "cat", "/etc/passwd").out


def test_read_only_volume_and_bind(kran, kv, busybox, tmp_path):
    r = kran("run", "--rm", "-v", "ro-vol:/d:ro", "busybox", "touch", "/d/x", check=False)
    assert r.returncode == 1 and "Read-only file system" in r.err
    host = tmp_path / "hostdir"
    host.mkdir()
    r = kran("run", "--rm", "-v", f"{host}:/h:ro", "busybox", "touch", "/h/x", check=False)
    assert "Read-only file system" in r.err and not (host / "x").exists()
    kran("run", "--rm", "-v", f"{host}:/h:rw", "busybox", "sh", "-c", "echo hi > /h/x")
    assert (host / "x").read_text() == "hi\n"


def test_bind_host_file_and_dir(kran, kv, busybox, tmp_path):
    f = tmp_path / "conf.txt"
    f.write_text("from the host\n")
    assert kran("run", "--rm", "-v", f"{f}:/etc/conf.txt:ro", "busybox", "cat", "/etc/conf.txt").out == "from the host\n"
    missing = tmp_path / "made" / "by" / "v"
    kran("run", "--rm", "-v", f"{missing}:/m", "busybox", "sh", "-c", "echo x > /m/y")
    assert (missing / "y").read_text() == "x\n"  # -v creates a missing host dir
    cid = kran("create", "-v", f"{tmp_path}:/t", "busybox", "true").out.strip()
    m = json.loads(kran("inspect", cid).out)[0]["Mounts"]
    assert m == [{"Type": "bind", "Source": str(tmp_path), "Destination": "/t", "Mode": "", "RW": True,
                  "Propagation": "rprivate"}]


def test_volumes_from(kran, kv, busybox):
    kran("run", "-d", "--name", "src", "-v", "vf:/data", "-v", "/anon", "busybox", "sleep", "300")
    kran("exec", "src", "sh", "-c", "echo one > /data/f; echo two > /anon/g")
    out = kran("run", "--rm", "--volumes-from", "src", "busybox", "cat", "/data/f", "/anon/g").out
    assert out == "one\ntwo\n"
    r = kran("run", "--rm", "--volumes-from", "src:ro", "busybox", "touch", "/data/z", check=False)
    assert "Read-only file system" in r.err


def test_mount_flag_forms_and_errors(kran, kv, busybox, tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f").write_text("bound\n")
    assert kran("run", "--rm", "--mount", f"type=bind,source={tmp_path}/b,target=/b,readonly", "busybox",
                "cat", "/b/f").out == "bound\n"
    r = kran("run", "--rm", "--mount", f"type=bind,src={tmp_path}/b,dst=/b,ro", "busybox", "touch", "/b/n", check=False)
    assert "Read-only file system" in r.err
    kran("run", "--rm", "--mount", "type=volume,src=mvol,destination=/v", "busybox", "sh", "-c", "echo 1 > /v/x")
    assert (kran.root / "volumes" / "mvol" / "_data" / "x").read_text() == "1\n"
    out = kran("run", "--rm", "--mount", "type=tmpfs,dst=/t,tmpfs-size=1m", "busybox", "df", "-k", "/t").out
    assert "tmpfs" in out and " 1024 " in out
    r = kran("run", "--rm", "--mount", "type=bind,src=/x-does-not-exist,dst=/x", "busybox", "true", check=False)
    assert r.returncode == 125
    assert 'invalid mount config for type "bind": bind source path does not exist: /x-does-not-exist' in r.err
    r = kran("run", "--rm", "--mount", "type=bogus,dst=/x", "busybox", "true", check=False)
    assert r.returncode == 125 and "invalid mount type" in r.err
    r = kran("run", "--rm", "--mount", "type=volume,src=v", "busybox", "true", check=False)
    assert r.returncode == 125 and "target is required" in r.err
    r = kran("run", "--rm", "-v", "v:relative", "busybox", "true", check=False)
    assert r.returncode == 125 and "mount path must be absolute" in r.err
    r = kran("run", "--rm", "-v", "va:/same", "-v", "vb:/same", "--mount", "type=volume,src=vc,dst=/same", "busybox",
             "true", check=False)
    assert r.returncode == 125 and "Duplicate mount point: /same" in r.err


def test_anonymous_volumes_and_rm_v(kran, kv, busybox):
    cid = kran("create", "-v", "/anon", "-v", "named:/named", "busybox", "true").out.strip()
    mounts = json.loads(kran("inspect", cid).out)[0]["Mounts"]
    anon = next(m["Name"] for m in mounts if m["Destination"] == "/anon")
    assert re.fullmatch(r"[0-9a-f]{64}", anon)
    assert set(kv("volume", "ls", "-q").out.split()) == {anon, "named"}
    kran("rm", "-v", cid)
    assert kv("volume", "ls", "-q").out.split() == ["named"]  # a named volume stays
    assert not (kran.root / "volumes" / anon).exists()
    # rm without -v keeps the anonymous volume (dangling); --rm removes it
    cid = kran("create", "-v", "/keep", "busybox", "true").out.strip()
    kran("rm", cid)
    assert len(kv("volume", "ls", "-q", "--filter", "dangling=true").out.split()) == 2
    before = set(kv("volume", "ls", "-q").out.split())
    kran("run", "--rm", "-v", "/gone", "busybox", "true")
    deadline = time.time() + 10
    while set(kv("volume", "ls", "-q").out.split()) != before and time.time() < deadline:
        time.sleep(0.1)
    assert set(kv("volume", "ls", "-q").out.split()) == before


def test_volume_ls_inspect_rm_prune(kran, kv, busybox):
    anon = kv("volume", "create").out.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", anon)
    assert kv("volume", "create", "--label", "team=a", "v1").out == "v1\n"
    assert kv("volume", "create", "--name", "v2").out == "v2\n"
    ls = kv("volume", "ls").out.splitlines()
    assert ls[0] == "DRIVER    VOLUME NAME"
    assert ls[1:] == [f"local     {n}" for n in sorted([anon, "v1", "v2"])]
    assert kv("volume", "ls", "-q", "--filter", "label=team=a").out == "v1\n"
    assert kv("volume", "ls", "-q", "--filter", "name=v2").out == "v2\n"
    assert kv("volume", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}", "--filter", "name=v1").out == "v1 local local\n"
    info = json.loads(kv("volume", "inspect", "v1").out)
    assert info == [{"CreatedAt": info[0]["CreatedAt"], "Driver": "local", "Labels": {"team": "a"},
                     "Mountpoint": str(kran.root / "volumes/v1/_data"), "Name": "v1", "Options": None,
                     "Scope": "local"}]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info[0]["CreatedAt"])
    assert kv("volume", "inspect", "-f", "{{.Name}}:{{.Driver}}", "v2").out == "v2:local\n"
    r = kv("volume", "inspect", "nope", check=False)
    assert r.returncode == 1 and "get nope: no such volume" in r.err
    # in use by a STOPPED container: rm refuses, prune keeps it
    cid = kran("create", "-v", "v1:/d", "busybox", "true").out.strip()
    r = kv("volume", "rm", "v1", check=False)
    assert r.returncode == 1
    assert r.err == f"Error response from daemon: remove v1: volume is in use - [{cid}]\n"
    r = kv("volume", "rm", "-f", "v1", check=False)
    assert r.returncode == 1 and "volume is in use" in r.err
    assert kv("volume", "ls", "-q", "--filter", "dangling=true").out.split() == sorted([anon, "v2"])
    # without -a only anonymous volumes go
    out = kv("volume", "prune", "-f").out
    assert out == f"Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 0B\n"
    out = kv("volume", "prune", "-a", "-f").out
    assert out.startswith("Deleted Volumes:\nv2\n\n")
    assert kv("volume", "ls", "-q").out == "v1\n"
    kran("rm", cid)
    assert kv("volume", "rm", "v1").out == "v1\n"
    assert kv("volume", "ls", "-q").out == ""
    r = kv("volume", "rm", "v1", check=False)
    assert r.returncode == 1 and "no such volume" in r.err
    assert kv("volume", "rm", "-f", "v1").returncode == 0


def test_tmpfs_volume_option(kran, kv, busybox):
    kv("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=2m", "tv")
    assert json.loads(kv("volume", "inspect", "tv").out)[0]["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=2m"}
    out = kran("run", "--rm", "-v", "tv:/t", "busybox", "df", "-k", "/t").out
    assert " 2048 " in out
    kv("volume", "rm", "tv")


def test_volume_survives_sigkilled_cli_between_create_and_start(kran, kv, busybox):
    """moby#38883: usage is recorded with the container row, so prune never takes it."""
    p = kran.popen("run", "-d", "--name", "kk", "-v", "keepme:/d", "-v", "/anonkeep", "busybox", "sleep", "300")
    deadline = time.time() + 30
    while time.time() < deadline:
        if kran("ps", "-aq", "--filter", "name=kk", check=False).out.strip():
            break
        time.sleep(0.005)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert kran("ps", "-aq", "--filter", "name=kk").out.strip()
    kv("volume", "prune", "-a", "-f")
    names = kv("volume", "ls", "-q").out.split()
    assert "keepme" in names and len(names) == 2
    kran("rm", "-f", "-v", "kk")
    assert kv("volume", "ls", "-q").out == "keepme\n"


def test_export_import_roundtrip(kran, kv, busybox, tmp_path):
    from tests.conftest import tree

    kran("run", "--rm", "-v", "src:/d", "busybox", "sh", "-c",
         "mkdir -p /d/a/b && echo hi > /d/a/b/f && ln -s ../b/f /d/a/l && ln /d/a/b/f /d/a/hard && "
         "chown 1000:2000 /d/a/b/f && chmod 4751 /d/a/b && mkfifo /d/fifo")
    out = tmp_path / "v.tar"
    kv("volume", "export", "src", "-o", str(out))
    assert kv("volume", "import", "copy", str(out)).out == "copy\n"
    assert tree(kran.root / "volumes/src/_data") == tree(kran.root / "volumes/copy/_data")
    # to stdout and from stdin
    data = kv("volume", "export", "src").stdout
    kv("volume", "import", "copy2", "-", input=data)
    assert tree(kran.root / "volumes/src/_data") == tree(kran.root / "volumes/copy2/_data")
    # traversal is refused like in layers, and a new volume that failed is not kept
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("../escape")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    r = kv("volume", "import", "bad", "-", input=buf.getvalue(), check=False)
    assert r.returncode != 0 and "'..'" in r.err
    assert not (kran.root / "volumes" / "escape").exists()
    assert "bad" not in kv("volume", "ls", "-q").out.split()


def test_image_volume_becomes_anonymous_volume(kran, kv, busybox_tar):
    from tests.conftest import BUSYBOX_CHANGES

    kran("import", *BUSYBOX_CHANGES, "-c", "VOLUME /etc", str(busybox_tar), "withvol:latest")
    cid = kran("create", "withvol", "cat", "/etc/passwd").out.strip()
    mounts = json.loads(kran("inspect", cid).out)[0]["Mounts"]
    assert len(mounts) == 1 and mounts[0]["Destination"] == "/etc" and mounts[0]["Type"] == "volume"
    name = mounts[0]["Name"]
    assert kran("start", "-a", cid).out.startswith("root:x:0:0")  # copied up from the image
    assert (kran.root / "volumes" / name / "_data" / "passwd").exists()
    # -v on the same destination replaces the image's volume
    cid2 = kran("create", "-v", "mine:/etc", "withvol", "true").out.strip()
    assert [m["Name"] for m in json.loads(kran("inspect", cid2).out)[0]["Mounts"]] == ["mine"]
    kran("rm", "-v", cid, cid2)
    assert kv("volume", "ls", "-q").out == "mine\n"


def test_run_flags_parse_like_docker():
    from kran.cli.runopts import parse_mount, parse_volume
    from kran.errors import InvalidArgument

    assert parse_volume("/data") == ("", "/data", "")
    assert parse_volume("/data:ro") == ("", "/data", "ro")
    assert parse_volume("vol:/data") == ("vol", "/data", "")
    assert parse_volume("/h:/c:ro") == ("/h", "/c", "ro")
    for bad in ("a:b:c:d", "/h:/c:bogus", "bad name:/x"):
        with pytest.raises(InvalidArgument):
            parse_volume(bad)
    assert parse_mount("type=bind,source=/h,target=/c,readonly,bind-propagation=rslave") == {
        "Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": True, "BindOptions": {"Propagation": "rslave"}}
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m") == {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576}}
    assert parse_mount("src=v,dst=/d,ro=false") == {"Type": "volume", "Source": "v", "Target": "/d", "ReadOnly": False}
    with pytest.raises(InvalidArgument, match="unexpected key 'foo'"):
        parse_mount("type=volume,foo=bar,dst=/x")
    with pytest.raises(InvalidArgument, match="cannot mix"):
        parse_mount("type=volume,dst=/x,bind-propagation=shared")


def test_cp_destination_rules():
    from kran.engine.copy import plan_dest
    from kran.errors import KranError

    assert plan_dest("file", "f", False, "/d", "dir", True) == ("/d", "f", False)
    assert plan_dest("file", "f", False, "/d/new", "", True) == ("/d", "new", False)
    assert plan_dest("file", "f", False, "/d/old", "file", True) == ("/d", "old", False)
    assert plan_dest("dir", "src", False, "/d", "dir", True) == ("/d", "src", False)
    assert plan_dest("dir", "src", True, "/d", "dir", True) == ("/d", "", True)
    assert plan_dest("dir", "src", False, "/d/new", "", True) == ("/d", "new", False)
    for args in (("file", "f", False, "/nope/", "", False), ("dir", "s", False, "/f", "file", True),
                 ("file", "f", False, "/a/b", "", False)):
        with pytest.raises(KranError):
            plan_dest(*args)


def test_old_store_schema_upgrades(tmp_path):
    """A store made before volumes (schema 2) gets the new tables when opened."""
    import sqlite3

    from kran.storage import db as kdb

    path = tmp_path / "kran.db"
    c = sqlite3.connect(path)
    c.executescript(kdb._SCHEMA.split("CREATE TABLE IF NOT EXISTS volumes")[0])  # schema 2's tables
    c.execute("PRAGMA user_version=2")
    c.commit()
    c.close()
    conn = kdb.connect(str(path))
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"volumes", "volume_refs", "containers"} <= tables
    assert conn.execute("PRAGMA user_version").fetchone()[0] == kdb.SCHEMA_VERSION
    conn.close()
