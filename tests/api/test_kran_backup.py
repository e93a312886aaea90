"""kran's own backup endpoints (/kran/backup, /kran/backups..., /kran/restore) over the service's
unix socket, with a plain HTTP client (what a tool driving backups would use), read back by the
kran CLI and skopeo, and the restored container checked through docker-py."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.api.conftest import UnixHTTP, open_fds
from tests.api.helpers import until

V = "/v1.45"


def call(conn: UnixHTTP, method: str, url: str, body: object = None, raw: bytes | None = None):
    """(status, decoded JSON) of one request on a kept-alive connection."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"} if data is not None else {}
    r, out = conn.call(method, url, body=data, headers=headers)
    assert r.getheader("Content-Type") == "application/json", (r.status, out)
    return r.status, json.loads(out)


def one_line_error(doc: dict) -> str:
    """docker's error body: one line, no Python exception name or traceback in it."""
    msg = doc["message"]
    assert "\n" not in msg and not re.search(r"\b\w+(Error|Exception)\b|Traceback", msg), msg
    return msg


def start_two(api) -> None:
    """Two running busybox containers, each with a file of its own in its read-write layer."""
    c = api.client()
    for name in ("web", "db"):
        c.containers.run("busybox", ["sh", "-c", f"echo {name}-data > /data.txt; echo ready; exec sleep 600"],
                         name=name, detach=True, network_mode="none")
    for name in ("web", "db"):
        assert until(lambda n=name: b"ready" in c.containers.get(n).logs()), f"{name} did not start"


def skopeo_digest(ref: str) -> str:
    exe = shutil.which("skopeo")
    if not exe:
        pytest.fail("skopeo is required (apt-get install skopeo)")
    p = subprocess.run([exe, "inspect", ref], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["Digest"]


def test_backup_list_inspect_restore_prune(api, api_busybox, tmp_path: Path):
    start_two(api)
    dest = tmp_path / "b"
    conn = UnixHTTP(api.sock, timeout=120)

    st, reports = call(conn, "POST", f"{V}/kran/backup", {"Containers": ["web", "db"], "Destination": f"oci:{dest}",
                                                         "Pause": True, "Incremental": False, "Volumes": False})
    assert st == 200, reports
    assert [r["Name"] for r in reports] == ["web", "db"]
    for r in reports:
        assert set(r) == {"Name", "Tag", "Manifest", "FrozenMs", "LayerBytes", "NewBytes", "Incremental", "Warnings"}
        assert re.fullmatch(r"\d{8}-\d{6}(\.\d+)?", r["Tag"]), r
        assert isinstance(r["FrozenMs"], float) and r["FrozenMs"] >= 0  # running: frozen while captured
        assert r["LayerBytes"] > 0 and r["NewBytes"] >= r["LayerBytes"] and r["Incremental"] is False
        assert r["Warnings"] == []
        # what another tool reads from the directory: the manifest the report names
        assert skopeo_digest(f"oci:{dest}:{r['Name']}:{r['Tag']}") == r["Manifest"]
        assert skopeo_digest(f"oci:{dest}:{r['Name']}:latest") == r["Manifest"]
    web = reports[0]

    # the CLI sees the same backups
    assert sorted(api.kran("backup", "ls", "-q", f"oci:{dest}").out.split()) == sorted(
        f"{r['Name']}:{r['Tag']}" for r in reports)

    # list (unversioned path too: every route is reachable with and without the /v1.xx prefix)
    for prefix in (V, ""):
        st, rows = call(conn, "GET", f"{prefix}/kran/backups?destination=oci:{dest}")
        assert st == 200, rows
        assert {(x["Name"], x["Tag"], x["Digest"]) for x in rows} == {(r["Name"], r["Tag"], r["Manifest"])
                                                                     for r in reports}
        for x in rows:
            assert set(x) == {"Name", "Tag", "Created", "Size", "Base", "Digest"}
            assert x["Base"] == "busybox" and x["Size"] > 0 and x["Created"].endswith("Z")

    st, info = call(conn, "GET", f"{V}/kran/backups/inspect?source=oci:{dest}:web")
    assert st == 200, info
    assert info["Name"] == "web" and info["Digest"] == web["Manifest"]
    assert sorted(info["Tags"]) == sorted([web["Tag"], "latest"])
    assert info["Container"]["Config"]["Cmd"][:2] == ["sh", "-c"] and info["Incremental"] is False
    st, info2 = call(conn, "GET", f"{V}/kran/backups/inspect?source=oci:{dest}:web:{web['Tag']}")
    assert st == 200 and info2["Digest"] == web["Manifest"]

    # restore web under a new name, started; the original keeps running beside it
    st, out = call(conn, "POST", f"{V}/kran/restore", {"Source": f"oci:{dest}:web", "Name": "web2", "Start": True})
    assert st == 201, out
    assert set(out) == {"Id"} and re.fullmatch(r"[0-9a-f]{64}", out["Id"])
    c = api.client()
    restored = c.containers.get("web2")
    assert restored.id == out["Id"] and restored.status == "running"
    code, text = restored.exec_run(["cat", "/data.txt"])
    assert (code, text) == (0, b"web-data\n")
    assert c.containers.get("web").status == "running"
    # without Start: created, not running
    st, out = call(conn, "POST", f"{V}/kran/restore", {"Source": f"oci:{dest}:db", "Name": "db2"})
    assert st == 201, out
    assert c.containers.get("db2").status == "created"

    # a second backup of web (a changed file), then keep 1: the first backup of web goes
    assert restored.exec_run(["sh", "-c", "echo more > /more.txt"])[0] == 0
    c.containers.get("web").exec_run(["sh", "-c", "echo v2 > /data.txt"])
    st, again = call(conn, "POST", f"{V}/kran/backup", {"Containers": ["web"], "Destination": f"oci:{dest}"})
    assert st == 200 and again[0]["Tag"] != web["Tag"], again
    before = sum(p.stat().st_size for p in (dest / "blobs" / "sha256").iterdir())
    st, pr = call(conn, "POST", f"{V}/kran/backups/prune?destination=oci:{dest}&keep=1")
    assert st == 200, pr
    assert pr["Deleted"] == [f"web:{web['Tag']}"]
    after = sum(p.stat().st_size for p in (dest / "blobs" / "sha256").iterdir())
    assert pr["SpaceReclaimed"] == before - after > 0
    st, rows = call(conn, "GET", f"{V}/kran/backups?destination=oci:{dest}")
    assert sorted((x["Name"], x["Tag"]) for x in rows) == sorted(
        [("web", again[0]["Tag"]), ("db", reports[1]["Tag"])])
    # nothing left to prune
    st, pr = call(conn, "POST", f"{V}/kran/backups/prune?destination=oci:{dest}&keep=1")
    assert (st, pr) == (200, {"Deleted": [], "SpaceReclaimed": 0})
    conn.close()


def test_bad_input_is_a_one_line_error_with_dockers_status(api, api_busybox, tmp_path: Path):
    start_two(api)
    dest = tmp_path / "b"
    conn = UnixHTTP(api.sock, timeout=120)

    def err(method: str, url: str, body: object = None, raw: bytes | None = None) -> tuple[int, str]:
        st, doc = call(conn, method, url, body, raw)
        return st, one_line_error(doc)

    ok = {"Containers": ["web"], "Destination": f"oci:{dest}"}
    bad = [
        ({**ok, "Containers": "web"}, "json: cannot unmarshal string into Go struct field BackupRequest.Containers "
                                      "of type []string"),
        ({**ok, "Containers": ["web", 1]}, "json: cannot unmarshal number into Go struct field "
                                           "BackupRequest.Containers of type string"),
        ({**ok, "Destination": 5}, "json: cannot unmarshal number into Go struct field BackupRequest.Destination "
                                   "of type string"),
        ({**ok, "Pause": "yes"}, "json: cannot unmarshal string into Go struct field BackupRequest.Pause of type bool"),
        ({**ok, "Incremental": 1}, "json: cannot unmarshal number into Go struct field BackupRequest.Incremental "
                                   "of type bool"),
        (["web"], "json: cannot unmarshal array into Go value of type kran.BackupRequest"),
        ({"Containers": ["web"]}, "Destination is required"),
        ({"Destination": f"oci:{dest}"}, "Containers is required"),
        ({**ok, "Containers": []}, "Containers is required"),
        ({**ok, "Destination": "oci:relative/dir"}, "an oci: directory must be an absolute path"),
        ({**ok, "Destination": "/srv/no-transport"}, "expected oci:DIR"),
    ]
    for body, want in bad:
        st, msg = err("POST", f"{V}/kran/backup", body)
        assert st == 400 and want in msg, (body, st, msg)
    st, msg = err("POST", f"{V}/kran/backup", raw=b"{not json")
    assert st == 400 and msg.startswith("invalid JSON"), msg

    # an unknown container: docker's 404, and nothing written (not even the directory)
    st, msg = err("POST", f"{V}/kran/backup", {"Containers": ["web", "nope"], "Destination": f"oci:{dest}"})
    assert (st, msg) == (404, "No such container: nope")
    assert not dest.exists()

    st, reports = call(conn, "POST", f"{V}/kran/backup", {**ok, "Pause": False})
    assert st == 200, reports
    assert reports[0]["FrozenMs"] is None  # not frozen: null, not 0

    # list / inspect / prune parameters
    assert err("GET", f"{V}/kran/backups") == (400, "destination is required")
    st, msg = err("GET", f"{V}/kran/backups?destination=oci:{tmp_path}/missing")
    assert st == 404 and "not found" in msg
    assert err("GET", f"{V}/kran/backups/inspect")[0] == 400
    st, msg = err("GET", f"{V}/kran/backups/inspect?source=oci:{dest}:nope")
    assert st == 404 and msg == f"backup nope:latest not found in {dest}"
    st, msg = err("GET", f"{V}/kran/backups/inspect?source=oci:{dest}")
    assert st == 400 and "expected oci:DIR:NAME[:TAG]" in msg
    st, msg = err("POST", f"{V}/kran/backups/prune?destination=oci:{dest}")
    assert st == 400 and msg.startswith("keep is required")
    st, msg = err("POST", f"{V}/kran/backups/prune?destination=oci:{dest}&keep=x")
    assert st == 400 and "keep" in msg
    st, msg = err("POST", f"{V}/kran/backups/prune?destination=oci:{dest}&keep=0")
    assert st == 400 and "must be at least 1" in msg

    # restore: bad bodies, a taken name (docker's 409), a missing and a corrupt backup
    st, msg = err("POST", f"{V}/kran/restore", {"Name": "x"})
    assert (st, msg) == (400, "Source is required")
    st, msg = err("POST", f"{V}/kran/restore", {"Source": f"oci:{dest}:web", "Start": "yes"})
    assert (st, msg) == (400, "json: cannot unmarshal string into Go struct field RestoreRequest.Start of type bool")
    st, msg = err("POST", f"{V}/kran/restore", {"Source": f"oci:{dest}:web", "Name": 3})
    assert (st, msg) == (400, "json: cannot unmarshal number into Go struct field RestoreRequest.Name of type string")
    st, msg = err("POST", f"{V}/kran/restore", {"Source": f"oci:{dest}:web"})
    assert st == 409 and msg.startswith('Conflict. The container name "/web" is already in use by container'), msg
    st, msg = err("POST", f"{V}/kran/restore", {"Source": f"oci:{dest}:nope", "Name": "n1"})
    assert st == 404 and "backup nope:latest not found" in msg

    corrupt = tmp_path / "corrupt"
    shutil.copytree(dest, corrupt)
    man = json.loads((corrupt / "blobs" / "sha256" / reports[0]["Manifest"].split(":")[1]).read_text())
    layer = corrupt / "blobs" / "sha256" / man["layers"][0]["digest"].split(":")[1]
    data = bytearray(layer.read_bytes())
    data[-1] ^= 0xFF  # in the end-of-archive blocks: the tar still reads, its digest does not match
    layer.write_bytes(bytes(data))
    st, msg = err("POST", f"{V}/kran/restore", {"Source": f"oci:{corrupt}:web", "Name": "n2", "Start": True})
    assert st == 400 and "does not match its digest" in msg, msg
    names = {x.name for x in api.client().containers.list(all=True)}
    assert names == {"web", "db"}  # nothing half-restored

    # the connection survived every error
    r, _ = conn.call("GET", "/_ping")
    assert r.status == 200
    conn.close()


def test_a_long_backup_does_not_block_other_requests(api, api_busybox, tmp_path: Path):
    """A backup waits for the directory's flock (another writer holds it, docs/backup.md); while it
    waits, the service answers others, including one that writes (a new container)."""
    start_two(api)
    dest = tmp_path / "b"
    conn = UnixHTTP(api.sock, timeout=120)
    assert call(conn, "POST", f"{V}/kran/backup", {"Containers": ["web"], "Destination": f"oci:{dest}"})[0] == 200
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    done: list = []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)

        def slow() -> None:
            done.append(call(conn, "POST", f"{V}/kran/backup", {"Containers": ["web", "db"],
                                                               "Destination": f"oci:{dest}", "Incremental": True}))

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.5)
        assert not done, "the backup did not wait for the directory's lock"
        other = UnixHTTP(api.sock, timeout=10)
        t0 = time.monotonic()
        assert other.call("GET", f"{V}/_ping")[0].status == 200
        assert call(other, "GET", f"{V}/containers/json")[0] == 200
        assert call(other, "GET", f"{V}/kran/backups?destination=oci:{dest}")[0] == 200  # readers take no lock
        c = api.client()
        c.containers.run("busybox", ["true"], name="meanwhile", network_mode="none")
        assert c.containers.get("meanwhile").attrs["State"]["ExitCode"] == 0
        assert time.monotonic() - t0 < 30 and not done
        other.close()
    finally:
        os.close(fd)  # releases the flock
    t.join(60)
    assert done and done[0][0] == 200, done
    assert [r["Name"] for r in done[0][1]] == ["web", "db"]
    assert [r["Incremental"] for r in done[0][1]] == [True, False]  # db had no earlier backup there
    conn.close()


def test_backup_and_list_calls_leave_the_servers_fds_flat(api, api_busybox, tmp_path: Path):
    start_two(api)
    pid = api.proc.pid
    dest = tmp_path / "b"
    conn = UnixHTTP(api.sock, timeout=120)

    def round_(i: int) -> None:
        if i % 2 == 0:
            st, out = call(conn, "POST", f"{V}/kran/backup", {"Containers": ["web", "db"],
                                                             "Destination": f"oci:{dest}", "Incremental": True})
        else:
            st, out = call(conn, "GET", f"{V}/kran/backups?destination=oci:{dest}")
        assert st == 200, out

    for i in range(4):  # warm up: the pool's engines, the first layout
        round_(i)
    time.sleep(1.5)  # the pool closes engines idle for a second
    base = open_fds(pid)
    for i in range(30):
        round_(i)
    deadline = time.monotonic() + 8
    n = open_fds(pid)
    while n > base and time.monotonic() < deadline:
        time.sleep(0.1)
        n = open_fds(pid)
    assert n <= base + 2, f"the server's open fds grew from {base} to {n} over 30 backup/list calls"
    st, rows = call(conn, "GET", f"{V}/kran/backups?destination=oci:{dest}")
    assert st == 200 and len(rows) == 2 * (2 + 15), len(rows)  # every backup kept, two containers
    conn.close()


@pytest.fixture
def registry(tmp_path: Path):
    from tests.registry.conftest import Registry

    r = Registry(tmp_path / "registry")
    yield r
    r.stop()


def test_registry_destination_through_the_api(api, api_busybox, registry, tmp_path: Path):
    """The same endpoints with a REGISTRY/REPO destination: each container pushed as REPO/NAME,
    read back from the registry's own API, listed, inspected, restored and pruned."""
    import urllib.request

    def reg_get(path: str) -> dict:
        rq = urllib.request.Request(f"http://{registry.host}{path}",
                                    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        with urllib.request.urlopen(rq, timeout=10) as r:
            return json.loads(r.read())

    start_two(api)
    dest = f"{registry.host}/bk"
    conn = UnixHTTP(api.sock, timeout=120)
    st, reports = call(conn, "POST", f"{V}/kran/backup", {"Containers": ["web", "db"], "Destination": dest})
    assert st == 200, reports
    assert [r["Name"] for r in reports] == ["web", "db"]
    for r in reports:
        assert sorted(reg_get(f"/v2/bk/{r['Name']}/tags/list")["tags"]) == sorted([r["Tag"], "latest"])
        man = reg_get(f"/v2/bk/{r['Name']}/manifests/latest")
        assert len(man["layers"]) == 1 and man["layers"][0]["size"] == r["LayerBytes"]  # the top layer only

    st, rows = call(conn, "GET", f"{V}/kran/backups?destination={dest}")
    assert st == 200, rows
    assert {(x["Name"], x["Tag"]) for x in rows} == {(r["Name"], r["Tag"]) for r in reports}
    st, info = call(conn, "GET", f"{V}/kran/backups/inspect?source={dest}/web")
    assert st == 200 and info["Name"] == "web", info

    st, out = call(conn, "POST", f"{V}/kran/restore", {"Source": f"{dest}/web", "Name": "web3", "Start": True})
    assert st == 201, out
    restored = api.client().containers.get("web3")
    assert restored.status == "running" and restored.exec_run(["cat", "/data.txt"]) == (0, b"web-data\n")

    st, again = call(conn, "POST", f"{V}/kran/backup", {"Containers": ["web"], "Destination": dest})
    assert st == 200, again
    st, pr = call(conn, "POST", f"{V}/kran/backups/prune?destination={dest}&keep=1")
    assert st == 200 and pr["Deleted"] == [f"web:{reports[0]['Tag']}"], pr
    assert sorted(reg_get("/v2/bk/web/tags/list")["tags"]) == sorted([again[0]["Tag"], "latest"])

    # a missing backup: 404 (the wording is the engine's: the registry's "manifest unknown" for inspect)
    st, doc = call(conn, "GET", f"{V}/kran/backups/inspect?source={dest}/nothing")
    assert st == 404 and one_line_error(doc), doc
    st, doc = call(conn, "POST", f"{V}/kran/restore", {"Source": f"{dest}/nothing"})
    assert st == 404 and one_line_error(doc), doc
    conn.close()


def test_registry_credentials_come_from_x_registry_auth(api, api_busybox, tmp_path: Path):
    """A registry that wants a password: without X-Registry-Auth the backup is refused (nothing
    stored by `kran login` here), with it the backup is pushed and restored."""
    import base64

    from tests.registry.conftest import Registry

    reg = Registry(tmp_path / "registry-auth", auth="htpasswd")
    try:
        start_two(api)
        dest = f"{reg.host}/secure"
        conn = UnixHTTP(api.sock, timeout=120)
        st, doc = call(conn, "POST", f"{V}/kran/backup", {"Containers": ["web"], "Destination": dest})
        assert st in (401, 403, 500) and "unauthorized" in one_line_error(doc).lower(), (st, doc)
        auth = base64.urlsafe_b64encode(json.dumps({"username": reg.user, "password": reg.password,
                                                    "serveraddress": reg.host}).encode()).decode()
        hdrs = {"Content-Type": "application/json", "X-Registry-Auth": auth}
        r, out = conn.call("POST", f"{V}/kran/backup", body=json.dumps({"Containers": ["web"], "Destination": dest})
                           .encode(), headers=hdrs)
        assert r.status == 200, out
        r, out = conn.call("POST", f"{V}/kran/restore", body=json.dumps({"Source": f"{dest}/web", "Name": "w2",
                                                                        "Start": True}).encode(), headers=hdrs)
        assert r.status == 201, out
        assert api.client().containers.get("w2").exec_run(["cat", "/data.txt"]) == (0, b"web-data\n")
        conn.close()
    finally:
        reg.stop()
