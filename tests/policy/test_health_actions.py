"""Health checks as Docker has them (HEALTHCHECK, --health-*, State.Health, ps, events, filters),
and Podman's --health-on-failure none|kill|restart|stop, run by the monitor.

Each check is ``test ! -e /tmp/bad``: healthy until the test creates the file, with 200 ms
intervals (Docker's minimum interval is 1 ms; kran takes the same).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.api.conftest import api, api_busybox  # noqa: F401 - fixtures

CHECK = ["--health-cmd", "test ! -e /tmp/bad", "--health-interval", "200ms", "--health-retries", "2"]
MS = 1_000_000


def _inspect(kran, ref: str) -> dict:
    return json.loads(kran("inspect", ref).out)[0]


def _until(fn, timeout: float = 20.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _health(kran, ref: str) -> str:
    return (_inspect(kran, ref)["State"].get("Health") or {}).get("Status", "")


def _names(kran, *filters: str) -> set[str]:
    args = [x for f in filters for x in ("--filter", f)]
    return set(kran("ps", "-a", *args, "--format", "{{.Names}}").out.split())


def test_docker_health_pieces(kran, busybox):
    cid = kran("run", "-d", "--name", "hc", *CHECK, "--health-timeout", "2s", "--health-start-period", "1s",
               "--health-start-interval", "100ms", "busybox", "sleep", "300").out.strip()
    kran("run", "-d", "--name", "plain", "busybox", "sleep", "300")
    kran("run", "-d", "--name", "slow", "--health-cmd", "true", "--health-interval", "1h", "busybox", "sleep", "300")
    hc = _inspect(kran, cid)["Config"]["Healthcheck"]
    assert hc == {"Test": ["CMD-SHELL", "test ! -e /tmp/bad"], "Interval": 200 * MS, "Timeout": 2000 * MS,
                  "StartPeriod": 1000 * MS, "StartInterval": 100 * MS, "Retries": 2}
    assert "(health: starting)" in kran("ps", "--filter", "name=slow", "--format", "{{.Status}}").out
    assert _names(kran, "health=starting") >= {"slow"}
    _until(lambda: _health(kran, cid) == "healthy", what="healthy")
    # within a start period the first probe comes after the start interval, not the (1 h) interval
    warm = kran("run", "-d", "--health-cmd", "true", "--health-interval", "1h", "--health-start-period", "30s",
                "--health-start-interval", "100ms", "busybox", "sleep", "300").out.strip()
    _until(lambda: _health(kran, warm) == "healthy", timeout=5, what="healthy within the start period")
    assert _health(kran, "slow") == "starting"
    kran("rm", "-f", "slow", warm)
    assert kran("ps", "--filter", "name=hc", "--format", "{{.Status}}").out.strip().endswith("(healthy)")
    assert _names(kran, "health=healthy") == {"hc"} and _names(kran, "health=none") == {"plain"}
    kran("exec", cid, "touch", "/tmp/bad")
    _until(lambda: _health(kran, cid) == "unhealthy", what="unhealthy")
    h = _inspect(kran, cid)["State"]["Health"]
    assert set(h) == {"Status", "FailingStreak", "Log"} and h["FailingStreak"] >= 2
    time.sleep(1.5)
    log = _inspect(kran, cid)["State"]["Health"]["Log"]
    assert len(log) == 5  # docker keeps the last five
    assert all(set(e) == {"Start", "End", "ExitCode", "Output"} and e["Start"] <= e["End"] for e in log)
    assert log[-1]["ExitCode"] == 1
    assert "(unhealthy)" in kran("ps", "--format", "{{.Names}} {{.Status}}").out
    assert _names(kran, "health=unhealthy") == {"hc"}
    assert _names(kran, "health=healthy", "health=unhealthy") == {"hc"}  # values of one key: either
    # --health-on-failure none (the default): unhealthy, and left running
    assert _inspect(kran, cid)["State"]["Status"] == "running"
    # moby: a stopped container's checks read unhealthy
    kran("stop", "-t", "0", cid)
    assert _health(kran, cid) == "unhealthy"
    events = kran("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter", "event=health_status",
                  "--filter", "container=hc", "--format", "{{.Action}}").out.split("\n")
    assert [e for e in events if e][:2] == ["health_status: healthy", "health_status: unhealthy"]
    p = kran("ps", "--filter", "health=sick", check=False)
    assert p.returncode != 0 and "Unrecognised filter value for health: sick" in p.err


def test_dockerfile_healthcheck_and_no_healthcheck(kran, busybox, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\n"
                                    'HEALTHCHECK --interval=200ms --timeout=1s --retries=1 CMD test ! -e /tmp/bad\n')
    kran("build", "-q", "-t", "checked:1", str(ctx))
    img = json.loads(kran("image", "inspect", "checked:1").out)[0]
    assert img["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "test ! -e /tmp/bad"], "Interval": 200 * MS,
                                            "Timeout": 1000 * MS, "Retries": 1}
    # the image's check, with an action on top (the image's check counts as "a health check")
    cid = kran("run", "-d", "--health-on-failure", "stop", "checked:1", "sleep", "300").out.strip()
    _until(lambda: _health(kran, cid) == "healthy", what="healthy")
    kran("exec", cid, "touch", "/tmp/bad")
    _until(lambda: _inspect(kran, cid)["State"]["Status"] == "exited", what="stopped by its health action")
    none = kran("run", "-d", "--no-healthcheck", "checked:1", "sleep", "300").out.strip()
    assert _inspect(kran, none)["Config"]["Healthcheck"]["Test"] == ["NONE"]
    assert "Health" not in _inspect(kran, none)["State"]
    assert none[:12] in kran("ps", "-q", "--filter", "health=none").out


def test_on_failure_actions(kran, busybox):
    """kill: SIGKILL, final; stop: the stop signal (trapped here: exit 7), final even under
    --restart always; restart: stopped and started again although the policy is "no"."""
    trap = "trap 'exit 7' TERM; while :; do sleep 0.1; done"
    kill = kran("run", "-d", "--name", "hkill", *CHECK, "--health-on-failure", "kill", "--restart", "on-failure",
                "busybox", "sleep", "300").out.strip()
    stop = kran("run", "-d", "--name", "hstop", *CHECK, "--health-on-failure", "stop", "--restart", "always",
                "busybox", "sh", "-c", trap).out.strip()
    restart = kran("run", "-d", "--name", "hrestart", *CHECK, "--health-on-failure", "restart", "--tmpfs", "/tmp",
                   "--stop-timeout", "1", "busybox", "sleep", "300").out.strip()
    keep = kran("run", "-d", "--name", "hnone", *CHECK, "--health-on-failure", "none", "busybox", "sleep",
                "300").out.strip()
    for c in (kill, stop, restart, keep):
        _until(lambda c=c: _health(kran, c) == "healthy", what="healthy")
        assert _inspect(kran, c)["Config"]["HealthcheckOnFailureAction"] in ("kill", "stop", "restart", "none")
        kran("exec", c, "touch", "/tmp/bad")
    _until(lambda: _inspect(kran, kill)["State"]["Status"] == "exited", what="killed")
    _until(lambda: _inspect(kran, stop)["State"]["Status"] == "exited", what="stopped")
    st = _inspect(kran, kill)
    assert st["State"]["ExitCode"] == 137 and st["RestartCount"] == 0 and st["State"]["Health"]["Status"] == "unhealthy"
    st = _inspect(kran, stop)
    assert st["State"]["ExitCode"] == 7 and st["RestartCount"] == 0
    # restart: a new run (the tmpfs /tmp is empty again), healthy again, policy "no" notwithstanding
    _until(lambda: _inspect(kran, restart)["RestartCount"] >= 1, what="restarted")
    _until(lambda: _health(kran, restart) == "healthy", what="healthy after the restart")
    st = _inspect(kran, restart)
    assert st["State"]["Status"] == "running" and st["HostConfig"]["RestartPolicy"]["Name"] == "no"
    time.sleep(1)
    assert _inspect(kran, keep)["State"]["Status"] == "running" and _health(kran, keep) == "unhealthy"
    time.sleep(2)  # the stopped ones stay stopped
    assert _inspect(kran, stop)["State"]["Status"] == "exited" and _inspect(kran, kill)["RestartCount"] == 0
    out = kran("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter", "event=kill",
               "--format", "{{.Actor.Attributes.name}} {{.Actor.Attributes.signal}} {{.Actor.Attributes.reason}}").out
    assert "hkill 9 health-on-failure=kill" in out and "hstop 15 health-on-failure=stop" in out
    assert "hrestart 15 health-on-failure=restart" in out


def test_bad_input(kran, busybox):
    cases = [
        (["--health-on-failure", "reboot", *CHECK],
         'invalid on-failure action "reboot" for health check: supported actions are none,kill,restart,stop'),
        (["--health-on-failure", "kill"], "cannot set on-failure action to kill without a health check"),
        (["--health-on-failure", "stop", "--no-healthcheck"], "cannot set on-failure action to stop without a health check"),
        (["--health-cmd", "true", "--health-interval", "500us"], "Interval in Healthcheck cannot be less than 1ms"),
        (["--health-interval", "soon"], 'time: invalid duration "soon"'),
        (["--no-healthcheck", "--health-cmd", "true"], "--no-healthcheck conflicts with --health-* options"),
    ]
    for flags, msg in cases:
        p = kran("create", *flags, "busybox", "true", check=False)
        assert p.returncode == 125 and msg in p.err.splitlines()[0], (flags, p.err)
        assert "Traceback" not in p.err
    assert kran("ps", "-aq").out.strip() == ""


def test_api_healthcheck_and_action(api, api_busybox):  # noqa: F811
    import docker

    c = api.client()
    config = {"Image": "busybox", "Cmd": ["sleep", "300"],
              "Healthcheck": {"Test": ["CMD-SHELL", "test ! -e /tmp/bad"], "Interval": 200 * MS, "Retries": 1},
              "HealthcheckOnFailureAction": "kill"}
    cid = c.api.create_container_from_config(config)["Id"]
    try:
        i = c.api.inspect_container(cid)
        assert i["Config"]["HealthcheckOnFailureAction"] == "kill"
        assert i["Config"]["Healthcheck"]["Interval"] == 200 * MS
        c.api.start(cid)
        _until(lambda: c.api.inspect_container(cid)["State"]["Health"]["Status"] == "healthy", what="healthy")
        assert [x["Id"] for x in c.api.containers(filters={"health": "healthy"})] == [cid]
        c.containers.get(cid).exec_run(["touch", "/tmp/bad"])
        _until(lambda: c.api.inspect_container(cid)["State"]["Status"] == "exited", what="killed")
        st = c.api.inspect_container(cid)["State"]
        assert st["ExitCode"] == 137 and st["Health"]["Status"] == "unhealthy" and st["Health"]["FailingStreak"] >= 1
        assert st["Health"]["Log"][-1]["ExitCode"] == 1
    finally:
        c.api.remove_container(cid, force=True)
    with pytest.raises(docker.errors.APIError) as e:
        c.api.create_container_from_config(dict(config, HealthcheckOnFailureAction="explode"))
    assert e.value.status_code == 400 and 'invalid on-failure action "explode"' in str(e.value)
    with pytest.raises(docker.errors.APIError) as e:
        c.api.containers(filters={"health": "sick"})
    assert e.value.status_code == 400 and "Unrecognised filter value for health: sick" in str(e.value)
