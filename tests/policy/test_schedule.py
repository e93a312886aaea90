"""--schedule's pure part: parsing, normalising, in_window/next_change in local time, DST days
(Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST, 2026-10-25 03:00 CEST -> 02:00 CET), durations.
Each test sets TZ for this process (time.tzset) and puts it back."""

from __future__ import annotations

import math
import os
import time

import pytest

from kran.engine import schedule
from kran.errors import InvalidArgument
from kran.monitor import policy


@pytest.fixture
def tz():
    old = os.environ.get("TZ")

    def use(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()

    yield use
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def at(y, m, d, hh, mm, ss=0):
    """Local wall time -> instant (unambiguous times only)."""
    return time.mktime((y, m, d, hh, mm, ss, 0, 0, -1))


def local(t: float) -> str:
    return time.strftime("%a %Y-%m-%d %H:%M %Z", time.localtime(t))


@pytest.mark.parametrize("spec, norm", [
    ("Mon-Fri 12:00-13:00,17:00-23:00", "Mon-Fri 12:00-13:00,17:00-23:00"),
    ("mon-fri 17:00-23:00, 12:00-13:00", "Mon-Fri 12:00-13:00,17:00-23:00"),
    ("Mon-Fri 12:00-13:00,17:00-23:00; Sat,Sun 10:00-22:00", "Mon-Fri 12:00-13:00,17:00-23:00; Sat,Sun 10:00-22:00"),
    ("Fri-Mon 22:00-02:00", "Fri-Mon 22:00-02:00"),
    ("saturday,sunday 9:30-24:00", "Sat,Sun 09:30-24:00"),
    ("08:00-09:00", "Mon-Sun 08:00-09:00"),
    ("Tue,Mon,Wed 1:00-2:00", "Mon-Wed 01:00-02:00"),
])
def test_normalise(spec, norm):
    assert schedule.normalise(spec) == norm
    assert schedule.normalise(norm) == norm  # idempotent


@pytest.mark.parametrize("spec, why", [
    ("garbage", 'unknown day "garbage"'),
    ("Mon 12:00", '"12:00" is not a window'),
    ("Mon 25:00-26:00", '"25:00" is not a time of day'),
    ("Mon 12:60-13:00", '"12:60" is not a time of day'),
    ("Mon 12:00-12:00", 'window "12:00-12:00" is empty'),
    ("Mon 24:00-01:00", "24:00 only as an end"),
    ("Mon-Fri", "no time window"),
    ("Mon 12-13", '"12" is not a time HH:MM'),
    ("Mon 12:00-13:00;", "empty day group"),
    ("", "empty"),
    ("Mon,,Tue 1:00-2:00", "empty day"),
])
def test_malformed_is_one_line(spec, why):
    with pytest.raises(InvalidArgument) as e:
        schedule.parse(spec)
    msg = str(e.value)
    assert msg.startswith(f'invalid schedule "{spec}": ') and why in msg and "\n" not in msg


def test_windows_and_next_change(tz):
    tz("Europe/Berlin")
    w = schedule.windows("Mon-Fri 12:00-13:00,17:00-23:00; Sat,Sun 10:00-22:00")
    mon_1130 = at(2026, 12, 7, 11, 30)  # a Monday
    assert not policy.in_window(w, mon_1130)
    assert local(policy.next_change(w, mon_1130)) == "Mon 2026-12-07 12:00 CET"
    assert policy.in_window(w, at(2026, 12, 7, 12, 0))  # the start is inside
    assert not policy.in_window(w, at(2026, 12, 7, 13, 0))  # the end is not
    assert local(policy.next_change(w, at(2026, 12, 7, 12, 30))) == "Mon 2026-12-07 13:00 CET"
    assert local(policy.next_change(w, at(2026, 12, 7, 13, 0))) == "Mon 2026-12-07 17:00 CET"
    fri_late = at(2026, 12, 11, 23, 30)
    assert local(policy.next_change(w, fri_late)) == "Sat 2026-12-12 10:00 CET"
    assert local(policy.next_change(w, at(2026, 12, 13, 22, 0))) == "Mon 2026-12-14 12:00 CET"


def test_crossing_midnight_and_24h(tz):
    tz("UTC")
    w = schedule.windows("Fri 22:00-02:00")
    sat_0100 = at(2026, 12, 12, 1, 0)
    assert policy.in_window(w, sat_0100)
    assert local(policy.next_change(w, sat_0100)) == "Sat 2026-12-12 02:00 UTC"
    # touching windows merge: Mon 12:00-24:00 and Tue 00:00-06:00 are one stretch
    w = schedule.windows("Mon 12:00-24:00; Tue 00:00-06:00")
    assert local(policy.next_change(w, at(2026, 12, 7, 20, 0))) == "Tue 2026-12-08 06:00 UTC"
    # every minute of the week: never changes
    w = schedule.windows("Mon-Sun 00:00-24:00")
    assert policy.in_window(w, at(2026, 12, 7, 3, 0))
    assert policy.next_change(w, at(2026, 12, 7, 3, 0)) == math.inf


def test_timezone_is_honoured(tz):
    w = schedule.windows("Mon 12:00-13:00")
    tz("UTC")
    t = at(2026, 12, 7, 12, 30)
    assert policy.in_window(w, t)
    tz("America/New_York")
    assert not policy.in_window(w, t)  # 07:30 there
    assert local(policy.next_change(w, t)) == "Mon 2026-12-07 12:00 EST"


def test_spring_forward_day(tz):
    """2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST.  A 02:30 boundary does not exist that
    day: it is 03:00 CEST, when the wall clock passes 02:30; a 12:00-13:00 window is wall time."""
    tz("Europe/Berlin")
    w = schedule.windows("Sun 02:30-04:00")
    t = at(2026, 3, 29, 1, 0)
    start = policy.next_change(w, t)
    assert local(start) == "Sun 2026-03-29 03:00 CEST"
    assert local(policy.next_change(w, start)) == "Sun 2026-03-29 04:00 CEST"
    assert policy.next_change(w, start) - start == 3600  # an hour of window that day
    assert not policy.in_window(w, start - 1)  # 01:59:59 CET
    # a window ending in the gap ends at 03:00 CEST
    w = schedule.windows("Sun 01:00-02:30")
    assert local(policy.next_change(w, at(2026, 3, 29, 1, 30))) == "Sun 2026-03-29 03:00 CEST"
    # an ordinary window that day is wall time, 23 hours after the day's midnight's 12:00 - 11
    w = schedule.windows("Sun 12:00-13:00")
    s = policy.next_change(w, at(2026, 3, 29, 0, 0))
    assert local(s) == "Sun 2026-03-29 12:00 CEST"
    assert s - at(2026, 3, 29, 0, 0) == 11 * 3600  # not 12: the day is 23 hours long
    # the next week's window: the same wall time
    assert local(policy.next_change(w, s + 7200)) == "Sun 2026-04-05 12:00 CEST"


def test_fall_back_day(tz):
    """2026-10-25 in Berlin: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice, a boundary
    there is the first (CEST)."""
    tz("Europe/Berlin")
    w = schedule.windows("Sun 02:30-02:45")
    start = policy.next_change(w, at(2026, 10, 25, 0, 0))
    assert local(start) == "Sun 2026-10-25 02:30 CEST"
    end = policy.next_change(w, start)
    assert local(end) == "Sun 2026-10-25 02:45 CEST" and end - start == 900
    # after the first 02:45 the second 02:30 (CET) is not a window start again
    assert local(policy.next_change(w, end)) == "Sun 2026-11-01 02:30 CET"
    # a window across the change lasts an hour more by the clock on the wall: 01:00-04:00 is 4 h
    w = schedule.windows("Sun 01:00-04:00")
    s = policy.next_change(w, at(2026, 10, 25, 0, 0))
    assert policy.next_change(w, s) - s == 4 * 3600
    # and a daily window on either side keeps its wall time
    w = schedule.windows("12:00-13:00")
    assert local(policy.next_change(w, at(2026, 10, 24, 14, 0))) == "Sun 2026-10-25 12:00 CET"


def test_check_start_names_the_next_window(tz, tmp_path, monkeypatch):
    tz("Europe/Berlin")
    clock = tmp_path / "clock"
    clock.write_text(str(at(2026, 12, 5, 9, 0)))  # a Saturday
    monkeypatch.setenv("KRAN_CLOCK", str(clock))
    h = {"KranSchedule": "Mon-Fri 12:00-13:00"}
    with pytest.raises(Exception) as e:
        schedule.check_start("web", h)
    assert str(e.value) == ("container web is outside its schedule (Mon-Fri 12:00-13:00): "
                            "next window opens Mon 2026-12-07 12:00 CET")
    clock.write_text(str(at(2026, 12, 7, 12, 0, 1)))
    schedule.check_start("web", h)  # inside: no error
    st = schedule.state(h)
    assert st == {"InWindow": True, "NextChange": "2026-12-07T12:00:00Z"}  # 13:00 CET
    clock.write_text("garbage")
    with pytest.raises(InvalidArgument, match="KRAN_CLOCK=.*: cannot read a UNIX time"):
        schedule.check_start("web", h)


def test_host_config_check():
    h = {"KranSchedule": " mon-fri 12:00-13:00 ", "KranMaxLifetime": 7200 * 10**9, "KranRecreateEvery": 0}
    schedule.check_host_config(h)
    assert h == {"KranSchedule": "Mon-Fri 12:00-13:00", "KranMaxLifetime": 7200 * 10**9}
    h = {"KranSchedule": ""}
    schedule.check_host_config(h)
    assert h == {}
    for bad, msg in ((-1, "must be positive"), ("2h", "a duration in nanoseconds"), (5, "the minimum is 1s"),
                     (True, "a duration in nanoseconds")):
        with pytest.raises(InvalidArgument, match=msg):
            schedule.check_host_config({"KranMaxLifetime": bad})
    with pytest.raises(InvalidArgument, match="a schedule string"):
        schedule.check_host_config({"KranSchedule": 5})


def test_timer_due(tmp_path):
    now = [1000.0]
    t = policy.Timer({"max_lifetime": 60, "recreate_every": 30}, lambda: now[0])
    assert t.active() and t.timeout() == policy.TICK
    t.start()
    now[0] += 29
    assert t.due() == ""
    now[0] += 1
    assert t.due() == "recreate"
    t.load({"max_lifetime": 60})
    assert t.due() == ""
    now[0] += 30
    assert t.due() == "lifetime"
    t.load({})
    assert not t.active() and t.timeout() is None
