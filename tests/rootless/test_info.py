"""`kran info` as a rootless user says so and shows the user namespace's id mapping; GET /info from
the user's own API service says the same (docker-py reads it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time

from kran.engine.sysinfo import NO_CGROUPS_V1, NO_CGROUPS_V2

V2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _expected_maps(ruser) -> dict:
    # what the pause process wrote with newuidmap/newgidmap: 0 -> the user, 1.. -> /etc/subuid's range
    def m(own: int) -> list[dict]:
        return [{"ContainerID": 0, "HostID": own, "Size": 1},
                {"ContainerID": 1, "HostID": ruser.subuid, "Size": 65536}]

    return {"UIDMap": m(ruser.uid), "GIDMap": m(ruser.gid)}


def _delegated(ruser) -> bool:
    """Whether the user has a cgroup v2 subtree of their own (never on cgroup v1)."""
    return V2 and ruser.kran("info", "-f", "{{.CgroupDriver}}").out.strip() != "none"


def test_info_says_rootless_and_shows_the_mapping(ruser):
    p = ruser.kran("info")
    out = p.out
    assert "\n Security Options:\n  seccomp\n   Profile: builtin\n  rootless\n" in out, out
    assert (
        "\n ID Mappings:\n  UIDMap:\n"
        f"   ContainerID: 0, HostID: {ruser.uid}, Size: 1\n"
        f"   ContainerID: 1, HostID: {ruser.subuid}, Size: 65536\n"
        "  GIDMap:\n"
        f"   ContainerID: 0, HostID: {ruser.gid}, Size: 1\n"
        f"   ContainerID: 1, HostID: {ruser.subuid}, Size: 65536\n"
    ) in out, out
    assert f"\n Docker Root Dir: {ruser.data}\n" in out
    if not _delegated(ruser):
        # Docker rootless without cgroups: driver "none" and its warning, on stderr after the text
        assert "\n Cgroup Driver: none\n" in out
        assert p.err.splitlines() == [NO_CGROUPS_V2 if V2 else NO_CGROUPS_V1], p.err
        assert "WARNING" not in out
    # the busybox the session imported, counted in the user's own store (other tests may add more)
    assert int(out.split("\n Images: ", 1)[1].split("\n", 1)[0]) >= 1


def test_info_format_rootless(ruser):
    assert ruser.kran("info", "--format", "{{.Rootless}}").out == "true\n"
    doc = json.loads(ruser.kran("info", "--format", "{{json .}}").out)
    assert doc["Rootless"] is True
    assert doc["IDMappings"] == _expected_maps(ruser)
    assert "name=rootless" in doc["SecurityOptions"] and "name=seccomp,profile=builtin" in doc["SecurityOptions"]
    assert doc["DockerRootDir"] == str(ruser.data)
    if not _delegated(ruser):
        assert doc["CgroupDriver"] == "none"
        assert [doc[k] for k in ("MemoryLimit", "SwapLimit", "CpuCfsQuota", "CPUShares", "PidsLimit")] == [False] * 5
        assert doc["Warnings"] == [NO_CGROUPS_V2 if V2 else NO_CGROUPS_V1]
    # a template reaches into the mapping like any other field
    assert ruser.kran("info", "-f", "{{range .IDMappings.UIDMap}}{{.HostID}} {{end}}").out == \
        f"{ruser.uid} {ruser.subuid} \n"


def test_api_info_as_the_user(ruser):
    import docker

    sock = ruser.run_dir / "info-test.sock"
    log = tempfile.TemporaryFile()
    # kran system service execs the API server: the PID stays the same, stopped by it below
    p = ruser.popen(*ruser.prefix, "system", "service", "-t", "120", f"unix://{sock}", stdin=subprocess.DEVNULL,
                    stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            if p.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise AssertionError(f"the user's service did not start: {log.read().decode(errors='replace')}")
            time.sleep(0.1)
        got = docker.DockerClient(base_url=f"unix://{sock}", timeout=60).info()
        assert got["Rootless"] is True
        assert got["IDMappings"] == _expected_maps(ruser)
        assert "name=rootless" in got["SecurityOptions"]
        assert got["DockerRootDir"] == str(ruser.data)
        cli = json.loads(ruser.kran("info", "-f", "{{json .}}").out)
        cli.pop("ClientInfo")
        for k in ("NFd", "NGoroutines", "SystemTime"):
            got.pop(k)
            cli.pop(k)
        assert got == cli  # one engine function behind both front ends
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        log.close()
    assert not sock.exists(), "the service left its socket behind"
