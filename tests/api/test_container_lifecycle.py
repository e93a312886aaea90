"""Update, kill, wait, legacy links and the list, through docker-py and the docker CLI."""

from __future__ import annotations

import time

import pytest

from tests.api.helpers import until as _until


def _cgroup_file(pid: int, controller: str, name: str) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _h, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller in ctrls.split(","):
                with open(f"/sys/fs/cgroup/{controller}{path}/{name}") as g:
                    return g.read().strip()
            if ctrls == "" and controller == "":
                with open(f"/sys/fs/cgroup{path}/{name}") as g:
                    return g.read().strip()
    raise AssertionError(f"no {controller} cgroup for {pid}")


def test_update_resources_reach_inspect_and_cgroups(api, api_busybox):
    import os

    c = api.client()
    ct = c.containers.run("busybox", "sleep 60", detach=True)
    try:
        assert c.api.update_container(ct.id, mem_limit="64m", cpu_shares=512, cpu_period=100000,
                                      cpu_quota=50000) == {"Warnings": []}
        hc = c.api.inspect_container(ct.id)["HostConfig"]
        assert hc["Memory"] == 64 * 1024 * 1024 and hc["CpuShares"] == 512 and hc["CpuQuota"] == 50000
        pid = c.api.inspect_container(ct.id)["State"]["Pid"]
        v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
        if v2:
            assert _cgroup_file(pid, "", "memory.max") == str(64 * 1024 * 1024)
            assert _cgroup_file(pid, "", "cpu.max") == "50000 100000"
        else:
            assert _cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(64 * 1024 * 1024)
            assert _cgroup_file(pid, "cpu", "cpu.shares") == "512"
            assert _cgroup_file(pid, "cpu", "cpu.cfs_quota_us") == "50000"
        # the docker CLI's update
        api.docker("update", "--memory", "96m", "--memory-swap", "200m", "--pids-limit", "50", ct.id)
        hc = c.api.inspect_container(ct.id)["HostConfig"]
        assert hc["Memory"] == 96 * 1024 * 1024 and hc["MemorySwap"] == 200 * 1024 * 1024 and hc["PidsLimit"] == 50
        assert _cgroup_file(pid, "" if v2 else "pids", "pids.max") == "50"
        # docker's checks
        import docker

        with pytest.raises(docker.errors.APIError) as ei:
            c.api.update_container(ct.id, mem_limit="1m")
        assert ei.value.status_code == 400 and "Minimum memory limit allowed is 6MB" in ei.value.explanation
    finally:
        ct.remove(force=True)


def test_update_restart_policy(api, api_busybox):
    c = api.client()
    ct = c.containers.run("busybox", "sleep 60", detach=True, restart_policy={"Name": "always"})
    try:
        ct.update(restart_policy={"Name": "on-failure", "MaximumRetryCount": 42})
        assert c.api.inspect_container(ct.id)["HostConfig"]["RestartPolicy"] == {
            "Name": "on-failure", "MaximumRetryCount": 42}
        # the monitor takes the new policy: "no", and the container stays down when its process ends
        ct.update(restart_policy={"Name": "no"})
        pid = c.api.inspect_container(ct.id)["State"]["Pid"]
        import os
        import signal

        os.kill(pid, signal.SIGKILL)
        assert _until(lambda: c.api.inspect_container(ct.id)["State"]["Status"] == "exited")
        time.sleep(0.5)
        assert c.api.inspect_container(ct.id)["State"]["Status"] == "exited"
        assert c.api.inspect_container(ct.id)["RestartCount"] == 0
    finally:
        ct.remove(force=True)
    p = api.docker("run", "-d", "--restart", "always", "busybox", "sleep", "60")
    cid = p.out.strip()
    api.docker("update", "--restart", "on-failure:3", cid)
    assert api.docker("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
                      cid).out.strip() == "on-failure:3"
    api.docker("rm", "-f", cid)


def test_kill_returns_when_down_so_rm_follows(api, api_busybox):
    c = api.client()
    for _ in range(3):
        ct = c.containers.run("busybox", "sleep 9999", detach=True)
        ct.kill()
        state = c.api.inspect_container(ct.id)["State"]
        assert state["Running"] is False and state["ExitCode"] == 137
        ct.remove()  # no 409: it is down already
    cid = api.docker("run", "-d", "busybox", "sleep", "9999").out.strip()
    api.docker("kill", cid)
    api.docker("rm", cid)


def test_wait_returns_at_exit_of_a_restarting_container(api, api_busybox):
    import docker

    c = api.client()
    ct = c.api.create_container("busybox", ["sleep", "1"], host_config=c.api.create_host_config(
        restart_policy={"Name": "always"}, network_mode="none"))
    c.api.start(ct["Id"])
    t0 = time.monotonic()
    assert c.api.wait(ct["Id"], timeout=30)["StatusCode"] == 0
    assert time.monotonic() - t0 < 15
    with pytest.raises(docker.errors.APIError) as ei:
        c.api.remove_container(ct["Id"])  # restarted: still up
    assert ei.value.status_code == 409 and "stop the container before" in ei.value.explanation
    c.api.remove_container(ct["Id"], force=True)


def test_links_env_hosts_and_remove_link(api, api_busybox):
    c = api.client()
    db = c.containers.run("busybox", "cat", stdin_open=True, detach=True, environment={"FOO": "1"}, name="db",
                          ports={"5432/tcp": None})
    try:
        out = c.containers.run("busybox", ["sh", "-c", "env; cat /etc/hosts"], links={"db": "mydb"},
                               network_mode="bridge", name="app")
        text = out.decode()
        ip = c.api.inspect_container(db.id)["NetworkSettings"]["IPAddress"]
        assert "MYDB_NAME=/app/mydb" in text
        assert "MYDB_ENV_FOO=1" in text
        assert f"MYDB_PORT=tcp://{ip}:5432" in text and "MYDB_PORT_5432_TCP_PORT=5432" in text
        assert f"{ip}\tmydb db" in text
        app = c.api.inspect_container("app")
        assert app["HostConfig"]["Links"] == ["/db:/app/mydb"]
        assert "/app/mydb" in next(x for x in c.api.containers(all=True) if x["Id"] == db.id)["Names"]
        c.api.remove_container("app/mydb", link=True)
        assert c.api.inspect_container("app")["HostConfig"]["Links"] is None
        names = next(x for x in c.api.containers(all=True) if x["Id"] == db.id)["Names"]
        assert names == ["/db"]
        assert {x["Id"] for x in c.api.containers(all=True)} == {db.id, app["Id"]}  # both are still there
        # through the docker CLI: --link, then rm --link
        api.docker("create", "--name", "app2", "--link", "db:other", "busybox", "true")
        api.docker("rm", "--link", "/app2/other")
        assert api.docker("inspect", "-f", "{{.HostConfig.Links}}", "app2").out.strip() == "[]"
        p = api.docker("create", "--link", "nosuch:x", "busybox", "true", check=False)
        assert p.returncode != 0 and "could not get container for nosuch" in p.err
    finally:
        for x in c.containers.list(all=True):
            x.remove(force=True)


def test_list_fields(api, api_busybox):
    c = api.client()
    ct = c.containers.run("busybox", "sleep 300", detach=True, labels={"a": "b"})
    try:
        (item,) = [x for x in c.api.containers(size=True) if x["Id"] == ct.id]
        assert item["Command"] == "sleep 300" and item["State"] == "running"
        assert item["Status"].startswith("Up") and item["Labels"] == {"a": "b"}
        assert item["HostConfig"] == {"NetworkMode": "default"}
        assert "bridge" in item["NetworkSettings"]["Networks"]
        assert isinstance(item["SizeRw"], int) and isinstance(item["Created"], int)
        (m,) = [x for x in c.containers.list(sparse=True) if x.id == ct.id]
        assert m.attrs["Image"] == "busybox" and m.status == "running"
        assert c.containers.list(filters={"label": "a=b"})[0].id == ct.id
    finally:
        ct.kill()
        ct.remove()
    assert ct.id not in [x.id for x in c.containers.list(all=True)]


def test_kran_cli_rm_link(api, api_busybox):
    """``kran rm --link`` removes a link made through the API, as docker's does."""
    c = api.client()
    c.containers.create("busybox", "true", name="db2")
    c.containers.create("busybox", "true", name="app3", links={"db2": "store"})
    api.kran("rm", "--link", "/app3/store")
    assert c.api.inspect_container("app3")["HostConfig"]["Links"] is None
    assert {x.name for x in c.containers.list(all=True)} == {"db2", "app3"}
    p = api.kran("rm", "--link", "/app3/store", check=False)
    assert p.returncode == 1 and "No such container: /app3/store" in p.err


def test_cli_wait_on_a_restarting_container(api, api_busybox):
    """``kran wait`` and ``docker wait`` return at the exit of a container that restarts (docker's)."""
    cid = api.kran("run", "-d", "--restart", "always", "--network", "none", "busybox", "sh", "-c",
                   "sleep 1; exit 3").out.strip()
    try:
        t0 = time.monotonic()
        assert api.kran("wait", cid, timeout=30).out.strip() == "3"
        assert time.monotonic() - t0 < 15
        assert api.docker("wait", cid, timeout=30).out.strip() == "3"
    finally:
        api.kran("rm", "-f", cid)
    # next-exit through the API: a created container's first exit
    c = api.client()
    ct = c.containers.create("busybox", ["sh", "-c", "exit 4"])
    import threading

    out: list = []
    t = threading.Thread(target=lambda: out.append(c.api.wait(ct.id, timeout=30, condition="next-exit")))
    t.start()
    time.sleep(0.3)
    ct.start()
    t.join(30)
    assert out == [{"StatusCode": 4, "Error": None}]
    import docker

    with pytest.raises(docker.errors.APIError) as ei:
        c.api.wait(ct.id, condition="whenever")
    assert ei.value.status_code == 400 and "invalid condition" in ei.value.explanation


def test_update_refusals_and_unlimited_pids(api, api_busybox):
    import docker

    c = api.client()
    ct = c.containers.run("busybox", "sleep 60", detach=True, pids_limit=20)
    try:
        with pytest.raises(docker.errors.APIError) as ei:
            ct.update(cpuset_cpus="0-99")
        assert ei.value.status_code == 400 and "Requested CPUs are not available" in ei.value.explanation
        with pytest.raises(docker.errors.NotFound):
            c.api.update_container("nosuch", mem_limit="64m")
        pid = c.api.inspect_container(ct.id)["State"]["Pid"]
        api.docker("update", "--pids-limit", "-1", ct.id)
        import os

        v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
        assert _cgroup_file(pid, "" if v2 else "pids", "pids.max") == "max"
    finally:
        ct.remove(force=True)


def test_prune_filters(api, api_busybox):
    """container prune's until/label/label! filters (they were ignored: prune took every stopped one)."""
    c = api.client()
    old = c.containers.create("busybox", "true", labels={"keep": "no"})
    time.sleep(2.5)
    new = c.containers.create("busybox", "true", labels={"keep": "yes"})
    res = c.containers.prune(filters={"until": "2s"})
    assert res["ContainersDeleted"] == [old.id]
    assert {x.id for x in c.containers.list(all=True)} == {new.id}
    other = c.containers.create("busybox", "true", labels={"keep": "no"})
    res = c.containers.prune(filters={"label!": "keep=yes"})
    assert res["ContainersDeleted"] == [other.id]
    p = api.docker("container", "prune", "-f", "--filter", "label=keep=yes")
    assert new.id in p.out
    assert c.containers.list(all=True) == []
    api.kran("create", "--label", "x=1", "busybox", "true")
    assert "Total reclaimed space" in api.kran("container", "prune", "-f", "--filter", "label=x=2").out
    assert len(c.containers.list(all=True)) == 1
    p = api.kran("container", "prune", "-f", "--filter", "colour=red", check=False)
    assert p.returncode != 0 and "invalid filter 'colour'" in p.err


def test_kill_signal_and_restart_policy(api, api_busybox):
    """docker's rule: a kill turns the restart policy off for that exit, except a signal other than
    the container's own StopSignal (and SIGKILL)."""
    c = api.client()
    script = 'trap "exit 3" HUP; while true; do sleep 0.1; done'
    named = c.containers.run("busybox", ["sh", "-c", script], detach=True, restart_policy={"Name": "always"},
                             stop_signal="SIGUSR1", network_mode="none")
    plain = c.containers.run("busybox", ["sh", "-c", script], detach=True, restart_policy={"Name": "always"},
                             network_mode="none")
    try:
        time.sleep(0.5)
        named.kill("SIGHUP")
        plain.kill("SIGHUP")
        assert _until(lambda: c.api.inspect_container(named.id)["RestartCount"] >= 1, 15)
        assert _until(lambda: c.api.inspect_container(plain.id)["State"]["Status"] == "exited", 15)
        st = c.api.inspect_container(plain.id)
        assert st["State"]["ExitCode"] == 3 and st["RestartCount"] == 0
    finally:
        named.remove(force=True)
        plain.remove(force=True)


def test_restarting_counts_as_running(api, api_busybox):
    """docker's State while a restart policy waits to start the container again: Running and Restarting."""
    c = api.client()
    ct = c.containers.run("busybox", ["sh", "-c", "exit 1"], detach=True, restart_policy={"Name": "always"},
                          network_mode="none")
    try:
        st = _until(lambda: (lambda s: s if s["Status"] == "restarting" else None)(
            c.api.inspect_container(ct.id)["State"]), 20)
        assert st and st["Running"] is True and st["Restarting"] is True and st["ExitCode"] == 1
    finally:
        ct.remove(force=True)
