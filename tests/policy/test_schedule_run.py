"""--schedule, --max-lifetime, --recreate-every end to end, with an injected clock: the test writes
UNIX times to the file named by KRAN_CLOCK (read by the CLI and, on every tick, by the monitors),
TZ=UTC for the kran processes.  Mon 2026-12-07 is a Monday.  No networks (--network none): nothing
here needs one; kran runs in a private network namespace all the same."""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path

import pytest

from tests.conftest import _kran_fixture
from tests.network.conftest import netns  # noqa: F401 - a private network namespace per test

# a stop signal the container handles: its exit code says it got SIGTERM, not the grace period's SIGKILL
LOOP = "trap 'exit 143' TERM; echo run; while :; do sleep 0.1; done"
RECORD = "[ -e /trace ] && echo SEEN-TRACE; touch /trace; " + LOOP


def utc(y, m, d, hh, mm, ss=0) -> float:
    return float(calendar.timegm((y, m, d, hh, mm, ss)))


@pytest.fixture
def kran(tmp_path: Path, netns):  # noqa: F811
    """kran inside the test's own network namespace: the host's veth check in the shared fixture
    would see other tests' veths (nothing here makes one: --network none)."""
    yield from _kran_fixture(tmp_path / "root", netns.path)


@pytest.fixture
def clock(kran, tmp_path: Path):
    path = tmp_path / "clock"

    def set_to(t: float) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(repr(t))
        tmp.rename(path)  # atomic: a monitor never reads half a number

    set_to(utc(2026, 12, 7, 11, 0))
    kran.env.update(KRAN_CLOCK=str(path), TZ="UTC")
    return set_to


def state(kran, name: str) -> dict:
    return json.loads(kran("inspect", name).out)[0]


def wait_for(kran, name: str, pred, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = state(kran, name)
        if pred(info["State"]):
            return info
        assert time.monotonic() < deadline, info["State"]
        time.sleep(0.05)


def events(kran, name: str) -> list[tuple[str, dict]]:
    out = kran("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter", f"container={name}",
               "--format", "{{json .}}").out
    evs = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [(e["Action"], e["Actor"]["Attributes"]) for e in evs]


def test_window_refuses_start_stops_at_end_and_restarts_at_next(kran, busybox, clock):
    p = kran("run", "-d", "--network", "none", "--name", "web", "--schedule", "mon 12:00-13:00", "--restart", "always",
             "busybox", "sh", "-c", LOOP, check=False)
    assert p.returncode == 125
    # docker run's shape: "docker: <error>" then the --help hint
    assert p.err.strip().splitlines()[0] == ("kran: Error response from daemon: container web is outside its "
                                             "schedule (Mon 12:00-13:00): next window opens Mon 2026-12-07 12:00 UTC")
    assert state(kran, "web")["State"]["Status"] == "created"
    p = kran("start", "web", check=False)
    assert p.returncode != 0 and "next window opens Mon 2026-12-07 12:00 UTC" in p.err

    clock(utc(2026, 12, 7, 12, 0, 30))
    kran("start", "web")
    info = state(kran, "web")
    assert info["HostConfig"]["KranSchedule"] == "Mon 12:00-13:00"
    assert info["State"]["Running"] is True
    assert info["State"]["KranSchedule"] == {"InWindow": True, "NextChange": "2026-12-07T13:00:00Z"}
    assert kran("ps", "--format", "{{.Names}}: {{.Schedule}}").out.strip() == "web: in window until Mon 13:00"

    clock(utc(2026, 12, 7, 13, 0, 1))  # the window closes: the monitor stops it within a tick
    t0 = time.monotonic()
    info = wait_for(kran, "web", lambda s: s["Restarting"])
    took = time.monotonic() - t0
    assert took < 2.0, took
    assert info["State"]["ExitCode"] == 143  # its stop signal, no SIGKILL
    assert info["State"]["KranSchedule"] == {"InWindow": False, "NextChange": "2026-12-14T12:00:00Z"}
    assert kran("ps", "--format", "{{.Names}}: {{.Schedule}}").out.strip() == "web: waiting: opens Mon 12:00"
    time.sleep(1.0)
    assert state(kran, "web")["State"]["Restarting"]  # it waits for its window, it is not restarted

    clock(utc(2026, 12, 14, 12, 0, 5))  # next Monday: started again
    info = wait_for(kran, "web", lambda s: s["Running"] and not s["Restarting"])
    assert info["RestartCount"] == 1
    assert kran("logs", "web").out.split() == ["run", "run"]
    acts = events(kran, "web")
    assert ("schedule-stop", {"image": "busybox", "name": "web", "signal": "15"}) in acts
    assert ("die", {"image": "busybox", "name": "web", "exitCode": "143", "reason": "schedule"}) in acts

    # waiting for its window, a `kran stop` ends the wait: it is not started at the next one
    clock(utc(2026, 12, 14, 13, 0, 0))
    wait_for(kran, "web", lambda s: s["Restarting"])
    kran("stop", "web")
    assert state(kran, "web")["State"]["Status"] == "exited"
    clock(utc(2026, 12, 21, 12, 0, 0))
    time.sleep(1.5)
    assert state(kran, "web")["State"]["Status"] == "exited"


def test_no_restart_policy_stays_stopped_and_on_failure_too(kran, busybox, clock):
    clock(utc(2026, 12, 7, 12, 30))
    kran("run", "-d", "--network", "none", "--name", "na", "--schedule", "Mon 12:00-13:00", "busybox", "sh", "-c", LOOP)
    kran("run", "-d", "--network", "none", "--name", "nb", "--schedule", "Mon 12:00-13:00", "--restart", "on-failure",
         "busybox", "sh", "-c", LOOP)
    clock(utc(2026, 12, 7, 13, 0))
    for name in ("na", "nb"):
        info = wait_for(kran, name, lambda s: s["Status"] == "exited")
        assert info["State"]["ExitCode"] == 143
    clock(utc(2026, 12, 14, 12, 0, 1))
    time.sleep(1.5)
    assert state(kran, "na")["State"]["Status"] == "exited" == state(kran, "nb")["State"]["Status"]


def test_grace_period_then_sigkill(kran, busybox, clock):
    clock(utc(2026, 12, 7, 12, 30))
    # sleep as PID 1 ignores SIGTERM: the stop timeout (1 s) runs out, SIGKILL follows
    kran("run", "-d", "--network", "none", "--name", "deaf", "--schedule", "Mon 12:00-13:00", "--stop-timeout", "1",
         "busybox", "sleep", "1000")
    clock(utc(2026, 12, 7, 13, 0))
    t0 = time.monotonic()
    info = wait_for(kran, "deaf", lambda s: s["Status"] == "exited", timeout=6)
    assert info["State"]["ExitCode"] == 137
    assert 0.9 < time.monotonic() - t0 < 3.5


def test_max_lifetime_stops_on_every_start(kran, busybox, clock):
    clock(utc(2026, 12, 7, 8, 0))
    kran("run", "-d", "--network", "none", "--name", "life", "--max-lifetime", "1h30m", "--restart", "always",
         "busybox", "sh", "-c", LOOP)
    assert state(kran, "life")["HostConfig"]["KranMaxLifetime"] == 5400 * 10**9
    clock(utc(2026, 12, 7, 9, 29))
    time.sleep(1.0)
    assert state(kran, "life")["State"]["Running"]
    clock(utc(2026, 12, 7, 9, 30))
    info = wait_for(kran, "life", lambda s: s["Status"] == "exited")
    assert info["State"]["ExitCode"] == 143 and info["RestartCount"] == 0  # not restarted, even with always
    assert ("die", {"image": "busybox", "name": "life", "exitCode": "143", "reason": "lifetime"}) in events(kran, "life")
    kran("start", "life")  # a new start: a new lifetime, counted from it
    clock(utc(2026, 12, 7, 10, 59))
    time.sleep(1.0)
    assert state(kran, "life")["State"]["Running"]
    clock(utc(2026, 12, 7, 11, 0))
    wait_for(kran, "life", lambda s: s["Status"] == "exited")


def test_lifetime_with_schedule_waits_for_the_next_window(kran, busybox, clock):
    clock(utc(2026, 12, 7, 12, 0))
    kran("run", "-d", "--network", "none", "--name", "lw", "--schedule", "12:00-13:00", "--max-lifetime", "10m",
         "--restart", "unless-stopped", "busybox", "sh", "-c", LOOP)
    clock(utc(2026, 12, 7, 12, 10))
    info = wait_for(kran, "lw", lambda s: s["Restarting"])
    assert info["State"]["KranSchedule"]["InWindow"] is True  # still inside, but its life is over
    clock(utc(2026, 12, 7, 12, 50))
    time.sleep(1.0)
    assert state(kran, "lw")["State"]["Restarting"]
    clock(utc(2026, 12, 8, 12, 0, 1))
    wait_for(kran, "lw", lambda s: s["Running"] and not s["Restarting"])


def test_update_schedule_on_a_running_container(kran, busybox, clock):
    clock(utc(2026, 12, 7, 14, 0))
    kran("run", "-d", "--network", "none", "--name", "up", "busybox", "sh", "-c", LOOP)
    kran("update", "--schedule", "mon-fri 12:00-13:00", "up")
    info = wait_for(kran, "up", lambda s: s["Status"] == "exited", timeout=3)
    assert info["HostConfig"]["KranSchedule"] == "Mon-Fri 12:00-13:00"
    assert info["State"]["ExitCode"] == 143
    p = kran("start", "up", check=False)
    assert "next window opens Tue 2026-12-08 12:00 UTC" in p.err
    kran("update", "--schedule", "", "up")
    assert "KranSchedule" not in state(kran, "up")["HostConfig"]
    kran("start", "up")
    # a lifetime added while it runs counts from its start
    kran("update", "--max-lifetime", "30m", "up")
    clock(utc(2026, 12, 7, 14, 30))
    wait_for(kran, "up", lambda s: s["Status"] == "exited", timeout=3)


def test_recreate_every_restarts_fresh(kran, busybox, clock):
    clock(utc(2026, 12, 7, 8, 0))
    kran("run", "-d", "--network", "none", "--name", "rec", "--recreate-every", "24h", "busybox", "sh", "-c", RECORD)
    clock(utc(2026, 12, 8, 8, 0))
    deadline = time.monotonic() + 5
    while kran("logs", "rec").out.split().count("run") < 2:
        assert time.monotonic() < deadline, kran("logs", "rec").out
        time.sleep(0.05)
    info = wait_for(kran, "rec", lambda s: s["Running"] and not s["Restarting"])
    assert "SEEN-TRACE" not in kran("logs", "rec").out  # the read-write layer was emptied
    assert info["RestartCount"] == 0  # kran's own restart, like `docker restart`
    acts = [a for a, _ in events(kran, "rec")]
    assert "recreate" in acts and acts.count("start") >= 2


@pytest.mark.parametrize("args, msg", [
    (["--schedule", "garbage"], 'invalid schedule "garbage": unknown day "garbage" (Mon..Sun)'),
    (["--schedule", "Mon 12:00-25:00"], '"25:00" is not a time of day'),
    (["--max-lifetime", "2x"], 'invalid argument "2x" for "--max-lifetime" flag: time: invalid duration "2x"'),
    (["--max-lifetime", "0"], 'invalid argument "0" for "--max-lifetime" flag: must be positive'),
    (["--recreate-every", "-1h"], 'invalid argument "-1h" for "--recreate-every" flag'),
])
def test_malformed_input_creates_nothing(kran, busybox, clock, args, msg):
    p = kran("run", "-d", "--network", "none", *args, "busybox", "true", check=False)
    assert p.returncode == 125, p.err
    lines = p.err.strip().splitlines()  # docker run's shape: the error, then "Run 'kran run --help' ..."
    assert msg in lines[0] and lines[1:] in ([], ["", "Run 'kran run --help' for more information"]), p.err
    assert kran("ps", "-aq").out.strip() == ""
    c = kran("create", "--network", "none", "--name", "ok", "busybox", "true")
    del c
    p = kran("update", *args, "ok", check=False) if args[0] != "--max-lifetime" or args[1] != "0" else None
    if p is not None:
        assert p.returncode != 0 and msg.split(":")[0] in p.err


def test_api_rejects_a_garbage_schedule(kran, busybox, clock, tmp_path):
    from tests.api.conftest import UnixHTTP, start_service, stop_service

    sock = tmp_path / "api" / "kran.sock"
    sock.parent.mkdir()
    svc = start_service(kran, sock, tmp_path / "api" / "service.log")
    try:
        conn = UnixHTTP(sock)
        for host, want in (({"KranSchedule": "garbage"}, 'invalid schedule "garbage"'),
                           ({"KranMaxLifetime": -5}, "must be positive"),
                           ({"KranRecreateEvery": "1h"}, "a duration in nanoseconds")):
            body = json.dumps({"Image": "busybox", "Cmd": ["true"], "HostConfig": host}).encode()
            r, data = conn.call("POST", "/v1.45/containers/create", body, {"Content-Type": "application/json"})
            assert r.status == 400, data
            assert want in json.loads(data)["message"]
        body = json.dumps({"Image": "busybox", "Cmd": ["true"],
                           "HostConfig": {"NetworkMode": "none", "KranSchedule": "sat,sun 10:00-22:00", "KranMaxLifetime": 7200 * 10**9}})
        r, data = conn.call("POST", "/v1.45/containers/create?name=viaapi", body.encode(),
                            {"Content-Type": "application/json"})
        assert r.status == 201, data
        r, data = conn.call("GET", "/v1.45/containers/viaapi/json")
        info = json.loads(data)
        assert info["HostConfig"]["KranSchedule"] == "Sat,Sun 10:00-22:00"
        assert info["HostConfig"]["KranMaxLifetime"] == 7200 * 10**9
        assert info["State"]["KranSchedule"] == {"InWindow": False, "NextChange": "2026-12-12T10:00:00Z"}
        r, data = conn.call("POST", "/v1.45/containers/viaapi/update", json.dumps({"KranSchedule": "Mon 1:00"}).encode(),
                            {"Content-Type": "application/json"})
        assert r.status == 400 and "is not a window" in json.loads(data)["message"]
        r, data = conn.call("POST", "/v1.45/containers/viaapi/start")
        assert r.status == 409 and "outside its schedule" in json.loads(data)["message"]
        conn.close()
    finally:
        stop_service(svc)
    assert kran("ps", "-a", "--format", "{{.Names}}").out.split() == ["viaapi"]


def test_waiting_container_is_started_by_the_next_command_after_its_monitor_died(kran, busybox, clock):
    import os
    import signal

    clock(utc(2026, 12, 7, 12, 0))
    kran("run", "-d", "--network", "none", "--name", "orphan", "--schedule", "Mon 12:00-13:00",
         "--restart", "always", "busybox", "sh", "-c", LOOP)
    clock(utc(2026, 12, 7, 13, 0))
    wait_for(kran, "orphan", lambda s: s["Restarting"])
    cdir = kran.root / "containers" / state(kran, "orphan")["Id"]
    mon = json.loads((cdir / "state.json").read_text())["monitor_pid"]
    os.kill(mon, signal.SIGKILL)  # as a reboot would: nobody left to start it at 12:00
    deadline = time.monotonic() + 5
    while Path(f"/proc/{mon}").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert state(kran, "orphan")["State"]["Status"] == "exited"
    clock(utc(2026, 12, 10, 9, 0))
    assert state(kran, "orphan")["State"]["Status"] == "exited"  # a command outside the window: not yet
    clock(utc(2026, 12, 14, 12, 0, 3))
    assert kran("ps", "--format", "{{.Names}} {{.State}}").out.split() == ["orphan", "running"]
    assert kran("logs", "orphan").out.split() == ["run", "run"]
    assert not (kran.root / "schedule-waiting" / state(kran, "orphan")["Id"]).exists()


def test_local_time_is_the_tz_of_the_kran_processes(kran, busybox, clock):
    kran.env["TZ"] = "Europe/Berlin"  # the monitor inherits it from the CLI that starts it
    clock(utc(2026, 12, 7, 11, 30))  # 12:30 CET
    kran("run", "-d", "--network", "none", "--name", "berlin", "--schedule", "Mon 12:00-13:00",
         "busybox", "sh", "-c", LOOP)
    assert state(kran, "berlin")["State"]["KranSchedule"]["NextChange"] == "2026-12-07T12:00:00Z"
    clock(utc(2026, 12, 7, 12, 0, 1))  # 13:00:01 CET
    wait_for(kran, "berlin", lambda s: s["Status"] == "exited", timeout=3)
    p = kran("start", "berlin", check=False)
    assert "next window opens Mon 2026-12-14 12:00 CET" in p.err
