"""The user's story, end to end: a "browser" container from one profile -- locked down, scheduled,
restarting fresh at each window, bandwidth-limited -- driven across two windows with an injected
clock.  It runs only inside its windows, no file leaves it, the next window starts it with nothing
of the last session, and its veth carries the rate (the throughput itself is measured in
test_network_rate.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_CHANGES, _kran_fixture
from tests.network.conftest import netns  # noqa: F401 - a private network namespace per test
from tests.policy.test_schedule_run import utc, wait_for

PROFILE = """\
lockdown = true
restart-fresh = true
restart = "always"
schedule = "Mon-Fri 12:00-13:00,17:00-23:00"
network-rate = "2mbit/8mbit"
"""
SESSION = "trap 'exit 143' TERM; [ -e /tmp/session ] && echo LEFTOVER; echo hi > /root/secret; touch /tmp/session; " \
          "echo up; while :; do sleep 0.1; done"


@pytest.fixture
def kran(tmp_path: Path, netns):  # noqa: F811
    yield from _kran_fixture(tmp_path / "root", netns.path)


def test_the_browser_of_the_story(kran, busybox_tar: Path, tmp_path: Path, netns):  # noqa: F811
    kran("import", *BUSYBOX_CHANGES, str(busybox_tar), "busybox:latest")
    etc = tmp_path / "etc"
    (etc / "profiles").mkdir(parents=True)
    (etc / "profiles" / "browser.toml").write_text(PROFILE)
    clock = tmp_path / "clock"
    clock.write_text(repr(utc(2026, 12, 7, 12, 0, 10)))  # Mon 12:00:10, inside the lunch window
    kran.env.update(KRAN_CONFIG=str(etc / "config.toml"), KRAN_CLOCK=str(clock), TZ="UTC")

    def set_clock(t: float) -> None:
        clock.with_suffix(".tmp").write_text(repr(t))
        clock.with_suffix(".tmp").rename(clock)

    kran("run", "-d", "--name", "browser", "--profile", "browser", "busybox", "sh", "-c", SESSION)
    info = wait_for(kran, "browser", lambda s: s["Running"] and not s["Restarting"])
    h = info["HostConfig"]
    assert h["KranProfile"] == "browser" and h["KranLockdown"] and h["KranRestartFresh"] and h["ReadonlyRootfs"]
    assert h["KranNetworkRate"] == {"Egress": 2_000_000, "Ingress": 8_000_000}
    assert info["State"]["KranSchedule"]["InWindow"] is True

    # no way out for files
    for args in (["cp", "browser:/root/secret", str(tmp_path / "out")], ["export", "-o", str(tmp_path / "x.tar"),
                                                                          "browser"],
                 ["commit", "browser", "stolen"], ["diff", "browser"]):
        p = kran(*args, check=False)
        assert p.returncode != 0 and "is locked down: files cannot be copied out of it" in p.err, (args, p.err)
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.tar").exists()
    assert kran("images", "-q", "stolen").out.strip() == ""
    # nothing written outside the tmpfs home and /tmp
    assert kran("exec", "browser", "sh", "-c", "echo x > /etc/x", check=False).returncode != 0

    # the rate is on the container's side of its veth (its egress), set by kran, read back by tc
    pid = str(info["State"]["Pid"])
    qd = subprocess.run(["nsenter", "-t", pid, "-n", "tc", "qdisc", "show", "dev", "eth0"], capture_output=True,
                        text=True, check=True).stdout
    assert "tbf" in qd and "2Mbit" in qd, qd

    # the window ends: stopped, waiting for the next one (restart always)
    set_clock(utc(2026, 12, 7, 13, 0, 1))
    st = wait_for(kran, "browser", lambda s: s["Restarting"] or not s["Running"], timeout=10)["State"]
    assert st["KranSchedule"]["InWindow"] is False and st["Status"] == "restarting", st
    # the next window (17:00) starts it again, fresh: nothing of the lunch session survives
    set_clock(utc(2026, 12, 7, 17, 0, 5))
    wait_for(kran, "browser", lambda s: s["Running"] and not s["Restarting"], timeout=10)
    logs = kran("logs", "browser").out
    assert logs.count("up") >= 2 and "LEFTOVER" not in logs, logs
    assert json.loads(kran("inspect", "browser").out)[0]["HostConfig"]["KranNetworkRate"]["Ingress"] == 8_000_000
    kran("rm", "-f", "browser")
