"""Container endpoints, through docker-py and the docker CLI, as their users see them."""

from __future__ import annotations

import pytest

from tests.api.helpers import until as _until


def test_run_detached_logs_stop_remove(api, api_busybox):
    import docker

    c = api.client()
    ct = c.containers.run("busybox", ["sh", "-c", "echo started; echo oops >&2; exec sleep 60"], detach=True,
                          name="web")
    assert _until(lambda: b"oops" in ct.logs())
    assert ct.logs(stderr=False) == b"started\n"
    assert ct.logs(stdout=False) == b"oops\n"
    ct.reload()
    assert ct.status == "running" and ct.name == "web"
    with pytest.raises(docker.errors.APIError) as ei:
        ct.remove()
    assert ei.value.status_code == 409
    assert "cannot remove container \"/web\": container is running" in ei.value.explanation
    ct.stop(timeout=1)
    ct.reload()
    assert ct.status == "exited"
    ct.remove()
    with pytest.raises(docker.errors.NotFound) as ei:
        c.containers.get("web")
    assert "No such container: web" in str(ei.value)


def test_run_returns_output(api, api_busybox):
    c = api.client()
    assert c.containers.run("busybox", "echo hi", remove=True) == b"hi\n"
    import docker

    with pytest.raises(docker.errors.ContainerError) as ei:
        c.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 3"])
    assert ei.value.exit_status == 3 and b"bad" in ei.value.stderr


def test_create_start_wait_exit_codes(api, api_busybox):
    c = api.client()
    ct = c.containers.create("busybox", ["sh", "-c", "exit 7"], labels={"app": "t"})
    assert ct.status == "created"
    ct.start()
    assert ct.wait(timeout=30) == {"StatusCode": 7, "Error": None}
    info = c.api.inspect_container(ct.id)
    assert info["State"]["ExitCode"] == 7 and info["State"]["Status"] == "exited"
    assert info["Config"]["Labels"]["app"] == "t" and info["Config"]["Cmd"] == ["sh", "-c", "exit 7"]
    assert info["Name"].startswith("/") and info["Image"] == api_busybox


def test_list_filters_and_all(api, api_busybox):
    c = api.client()
    run = c.containers.run("busybox", "sleep 60", detach=True, name="runner", labels={"role": "a"})
    done = c.containers.create("busybox", "true", name="idle", labels={"role": "b"})
    assert [x.name for x in c.containers.list()] == ["runner"]
    assert sorted(x.name for x in c.containers.list(all=True)) == ["idle", "runner"]
    assert [x.name for x in c.containers.list(all=True, filters={"label": "role=b"})] == ["idle"]
    assert [x.name for x in c.containers.list(all=True, filters={"status": "created"})] == ["idle"]
    assert [x.name for x in c.containers.list(all=True, filters={"name": "runn"})] == ["runner"]
    raw = c.api.containers(all=True, filters={"id": run.id[:12]})
    assert len(raw) == 1
    item = raw[0]
    assert item["Names"] == ["/runner"] and item["Image"] == "busybox" and item["Command"] == "sleep 60"
    assert item["State"] == "running" and item["Status"].startswith("Up ")
    assert item["ImageID"] == api_busybox and isinstance(item["Created"], int)
    assert item["HostConfig"]["NetworkMode"] in ("default", "bridge")
    assert "bridge" in item["NetworkSettings"]["Networks"]
    assert [x["Names"] for x in c.api.containers(all=True, filters={"id": done.id})] == [["/idle"]]
    run.kill()
    assert run.wait(timeout=30)["StatusCode"] == 137
    st = c.api.containers(all=True, filters={"name": "runner"})[0]["Status"]
    assert st.startswith("Exited (137) ") and st.endswith(" ago")


def test_kill_rename_errors(api, api_busybox):
    import docker

    c = api.client()
    ct = c.containers.run("busybox", "sleep 60", detach=True, name="first")
    ct.rename("second")
    assert c.containers.get("second").id == ct.id
    c.containers.create("busybox", "true", name="taken")
    with pytest.raises(docker.errors.APIError) as ei:
        ct.rename("taken")
    assert ei.value.status_code == 409 and 'The container name "/taken" is already in use' in ei.value.explanation
    with pytest.raises(docker.errors.APIError) as ei:
        c.containers.create("busybox", "true", name="taken")
    assert ei.value.status_code == 409
    ct.kill(signal="KILL")
    assert ct.wait(timeout=30)["StatusCode"] == 137
    with pytest.raises(docker.errors.APIError) as ei:
        ct.kill()
    assert ei.value.status_code == 409 and "is not running" in ei.value.explanation
    with pytest.raises(docker.errors.NotFound) as ei:
        c.api.start("nothing-here")
    assert "No such container: nothing-here" in ei.value.explanation


def test_missing_image_is_404(api):
    import docker

    with pytest.raises(docker.errors.ImageNotFound) as ei:
        api.client().api.create_container("busybox", "true")
    assert "No such image: busybox:latest" in ei.value.explanation


def test_exec_run(api, api_busybox):
    c = api.client()
    ct = c.containers.run("busybox", "sleep 60", detach=True)
    assert ct.exec_run("echo hello") == (0, b"hello\n")
    code, out = ct.exec_run(["sh", "-c", "echo to-err >&2; exit 4"], environment={"X": "1"})
    assert code == 4 and out == b"to-err\n"
    code, out = ct.exec_run(["sh", "-c", "echo $X $(pwd)"], environment={"X": "yes"}, workdir="/tmp")
    assert (code, out) == (0, b"yes /tmp\n")
    code, out = ct.exec_run("no-such-command")
    assert code == 126 and b"executable file not found" in out
    ct.kill()


def test_top_changes_stats_export_prune(api, api_busybox):
    import io
    import tarfile

    c = api.client()
    ct = c.containers.run("busybox", ["sh", "-c", "touch /made; exec sleep 60"], detach=True)
    assert _until(lambda: any(d["Path"] == "/made" for d in (ct.diff() or [])))
    assert {"Path": "/made", "Kind": 1} in ct.diff()
    top = ct.top()
    assert "PID" in top["Titles"] and any("sleep 60" in " ".join(p) for p in top["Processes"])
    s = ct.stats(stream=False)
    assert s["name"] == "/" + ct.name and s["pids_stats"]["current"] >= 1
    data = b"".join(ct.export())
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert any(n.lstrip("./") == "made" for n in names) and any(n.lstrip("./") == "bin/busybox" for n in names)
    ct.kill()
    ct.wait(timeout=30)
    res = c.containers.prune()
    assert res["ContainersDeleted"] == [ct.id]
    assert c.containers.list(all=True) == []


def test_pause_unpause_restart(api, api_busybox):
    c = api.client()
    ct = c.containers.run("busybox", "sleep 60", detach=True)
    ct.pause()
    ct.reload()
    assert ct.status == "paused"
    ct.unpause()
    ct.reload()
    assert ct.status == "running"
    pid = ct.attrs["State"]["Pid"]
    ct.restart(timeout=0)
    ct.reload()
    assert ct.status == "running" and ct.attrs["State"]["Pid"] != pid
    ct.remove(force=True)


def test_attach_socket_streams_output(api, api_busybox):
    c = api.client()
    ct = c.containers.create("busybox", ["sh", "-c", "echo one; echo two >&2"])
    out = ct.attach(stdout=True, stderr=True, stream=True, logs=True)
    ct.start()
    assert b"".join(out) == b"one\ntwo\n"
    assert ct.wait(timeout=30)["StatusCode"] == 0


def test_logs_follow_and_tail(api, api_busybox):
    c = api.client()
    ct = c.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"], detach=True)
    assert b"".join(ct.logs(stream=True, follow=True)) == b"1\n2\n3\n"
    assert ct.logs(tail=1) == b"3\n"
    ts = ct.logs(timestamps=True).splitlines()
    assert len(ts) == 3 and ts[0].endswith(b" 1") and b"T" in ts[0].split()[0]


# -- the docker CLI --------------------------------------------------------------------------------


def test_docker_cli_run_attached(api, api_busybox):
    assert api.docker("run", "--rm", "busybox", "echo", "hi").out == "hi\n"
    p = api.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (p.returncode, p.out, p.err) == (3, "out\n", "err\n")
    assert api.docker("run", "-i", "--rm", "busybox", "cat", input=b"hi\n").out == "hi\n"
    assert api.docker("ps", "-a", "-q").out == ""  # --rm removed them all


def test_docker_cli_ps_logs_exec(api, api_busybox):
    cid = api.docker("run", "-d", "--name", "svc", "busybox", "sh", "-c", "echo ready; exec sleep 60").out.strip()
    assert len(cid) == 64
    assert _until(lambda: api.docker("logs", "svc").out == "ready\n")
    lines = api.docker("ps", "-a").out.splitlines()
    assert lines[0].split()[:2] == ["CONTAINER", "ID"] and len(lines) == 2
    assert lines[1].startswith(cid[:12]) and "Up " in lines[1] and lines[1].rstrip().endswith("svc")
    assert api.docker("ps", "--format", "{{.Names}} {{.Status}} {{.Command}}").out.startswith('svc Up ')
    assert api.docker("exec", "svc", "echo", "inside").out == "inside\n"
    p = api.docker("exec", "svc", "sh", "-c", "exit 5", check=False)
    assert p.returncode == 5
    assert api.docker("exec", "-i", "svc", "cat", input=b"piped\n").out == "piped\n"
    api.docker("rm", "-f", "svc")
    assert api.docker("ps", "-a", "-q").out == ""


def test_exec_with_tty_and_detached(api, api_busybox):
    c = api.client()
    ct = c.containers.run("busybox", "sleep 60", detach=True)
    code, out = ct.exec_run(["sh", "-c", "test -t 1 && echo tty"], tty=True)
    assert (code, out.replace(b"\r\n", b"\n")) == (0, b"tty\n")
    ex = c.api.exec_create(ct.id, ["sh", "-c", "touch /detached; exit 2"])
    assert c.api.exec_start(ex["Id"], detach=True) in (b"", "")
    assert _until(lambda: c.api.exec_inspect(ex["Id"])["ExitCode"] == 2)
    assert ct.exec_run("ls /detached") == (0, b"/detached\n")
    ct.kill()


def test_docker_cli_start_attached(api, api_busybox):
    api.docker("create", "--name", "once", "busybox", "sh", "-c", "echo again; exit 4")
    p = api.docker("start", "-a", "once", check=False)
    assert (p.returncode, p.out) == (4, "again\n")
    p = api.docker("start", "-a", "once", check=False)
    assert (p.returncode, p.out) == (4, "again\n")
    assert api.docker("logs", "once").out == "again\nagain\n"
    p = api.docker("rm", "nothing-here", check=False)
    assert p.returncode == 1 and "No such container: nothing-here" in p.err


def test_archive_put_get_and_docker_cp(api, api_busybox, tmp_path):
    """docker cp and docker-py's put_archive/get_archive (what testcontainers uses to copy files)."""
    import io
    import tarfile

    import docker

    c = api.client()
    ctr = c.containers.run("busybox", "sleep 60", detach=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"hello through the API\n"
        ti = tarfile.TarInfo("greeting.txt")
        ti.size = len(data)
        ti.mode = 0o640
        tf.addfile(ti, io.BytesIO(data))
    assert ctr.put_archive("/tmp", buf.getvalue()) is True
    assert ctr.exec_run("cat /tmp/greeting.txt").output == b"hello through the API\n"
    chunks, st = ctr.get_archive("/tmp/greeting.txt")
    assert st["name"] == "greeting.txt" and st["size"] == 22 and st["mode"] & 0o777 == 0o640
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
        assert tf.extractfile("greeting.txt").read() == b"hello through the API\n"
    _, st = ctr.get_archive("/tmp")
    assert st["mode"] & (1 << 31)  # Go's ModeDir
    with pytest.raises(docker.errors.NotFound):
        ctr.get_archive("/nope")
    # the docker CLI's cp stats the destination with HEAD, then PUTs or GETs
    src = tmp_path / "host.txt"
    src.write_text("from the host\n")
    api.docker("cp", str(src), f"{ctr.id}:/tmp/copied.txt")
    assert ctr.exec_run("cat /tmp/copied.txt").output == b"from the host\n"
    out = tmp_path / "back.txt"
    api.docker("cp", f"{ctr.id}:/tmp/greeting.txt", str(out))
    assert out.read_text() == "hello through the API\n"
    ctr.remove(force=True)
