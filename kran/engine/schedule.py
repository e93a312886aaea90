"""Time windows, lifetimes and periodic fresh restarts: kran's ``--schedule``, ``--max-lifetime`` and
``--recreate-every`` (HostConfig ``KranSchedule``, ``KranMaxLifetime``, ``KranRecreateEvery``).

A schedule is one or more day groups separated by ``;``, each days then windows::

    Mon-Fri 12:00-13:00,17:00-23:00; Sat,Sun 10:00-22:00

Days are names (Mon..Sun, or full names, any case), comma lists and ranges, a range may wrap
(``Fri-Mon`` is Fri, Sat, Sun, Mon); a group without days means every day.  A window is
``HH:MM-HH:MM`` in local time (``TZ`` honoured); the end may be ``24:00``, and an end before the
start crosses midnight (``Fri 22:00-02:00`` runs into Saturday).  The stored form is normalised
(``Mon-Fri 12:00-13:00,17:00-23:00; Sat,Sun 10:00-22:00``).  Evaluation -- DST rules included --
is :mod:`kran.monitor.policy`'s, shared with the monitor, which enforces the windows.

Pure, apart from reading the (injectable) clock for the start check.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from kran.errors import Conflict, InvalidArgument
from kran.monitor.policy import in_window, next_change, next_start  # noqa: F401 - the engine's entry points

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_EXAMPLE = 'e.g. "Mon-Fri 12:00-13:00,17:00-23:00; Sat,Sun 10:00-22:00"'
KEYS = ("KranSchedule", "KranMaxLifetime", "KranRecreateEvery")


def _day(name: str, spec: str) -> int:
    n = name.strip().lower()
    for i, (short, full) in enumerate(zip(DAYS, _FULL, strict=True)):
        if n in (short.lower(), full):
            return i
    raise InvalidArgument(f'invalid schedule "{spec}": unknown day "{name.strip()}" (Mon..Sun)')


def _days(text: str, spec: str) -> list[int]:
    out: set[int] = set()
    for part in text.split(","):
        if not part.strip():
            raise InvalidArgument(f'invalid schedule "{spec}": empty day in "{text}"')
        a, sep, b = part.partition("-")
        first = _day(a, spec)
        last = _day(b, spec) if sep else first
        k = first
        out.add(k)
        while k != last:  # a range may wrap past Sunday: Fri-Mon
            k = (k + 1) % 7
            out.add(k)
    return sorted(out)


def _minute(text: str, spec: str, end: bool) -> int:
    m = _TIME.fullmatch(text.strip())
    if not m:
        raise InvalidArgument(f'invalid schedule "{spec}": "{text.strip()}" is not a time HH:MM')
    hh, mm = int(m.group(1)), int(m.group(2))
    if mm > 59 or hh > 24 or (hh == 24 and (mm or not end)):
        raise InvalidArgument(f'invalid schedule "{spec}": "{text.strip()}" is not a time of day'
                              + (" (24:00 only as an end)" if hh == 24 and not end else ""))
    return hh * 60 + mm


def parse(spec: str) -> tuple[str, list[list[int]]]:
    """A schedule -> (its normalised text, the monitor's windows ``[weekday, start, end]``)."""
    if not spec.strip():
        raise InvalidArgument(f'invalid schedule "{spec}": empty ({_EXAMPLE})')
    groups: list[str] = []
    windows: list[list[int]] = []
    for group in spec.split(";"):
        g = group.strip()
        if not g:
            raise InvalidArgument(f'invalid schedule "{spec}": empty day group between ";"')
        if g[0].isdigit():
            days, rest = list(range(7)), g
        else:
            head, _, rest = g.partition(" ")
            days = _days(head, spec)
            if not rest.strip():
                raise InvalidArgument(f'invalid schedule "{spec}": no time window after "{head}" ({_EXAMPLE})')
        spans: set[tuple[int, int]] = set()
        for w in rest.split(","):
            a, sep, b = w.partition("-")
            if not sep:
                raise InvalidArgument(f'invalid schedule "{spec}": "{w.strip()}" is not a window HH:MM-HH:MM')
            s, e = _minute(a, spec, False), _minute(b, spec, True)
            if s == e:
                raise InvalidArgument(f'invalid schedule "{spec}": window "{w.strip()}" is empty')
            spans.add((s, e if e > s else e + 1440))  # an end before the start: past midnight
        for d in days:
            windows += [[d, s, e] for s, e in sorted(spans)]
        groups.append(f"{_days_text(days)} {','.join(_span_text(s, e) for s, e in sorted(spans))}")
    return "; ".join(groups), sorted(windows)


def _days_text(days: list[int]) -> str:
    runs: list[list[int]] = []
    for d in days:
        if runs and d == runs[-1][-1] + 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][-1] == 6:
        runs.append(runs.pop() + runs.pop(0))  # a wrapping range stays one: Fri-Mon
    parts = []
    for r in runs:
        if len(r) >= 3:
            parts.append(f"{DAYS[r[0]]}-{DAYS[r[-1]]}")
        else:
            parts += [DAYS[d] for d in r]
    return ",".join(parts)


def _hm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _span_text(s: int, e: int) -> str:
    return f"{_hm(s)}-{_hm(e if e <= 1440 else e - 1440)}"


def normalise(spec: str) -> str:
    return parse(spec)[0]


def windows(spec: str) -> list[list[int]]:
    return parse(spec)[1] if spec else []


def duration(v: Any, key: str) -> int:
    """A KranMaxLifetime/KranRecreateEvery value (ns, docker's durations): an int >= 0 (0: none)."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidArgument(f"invalid {key}: {v!r}: a duration in nanoseconds")
    if v < 0:
        raise InvalidArgument(f"invalid {key}: {v}: a duration must be positive")
    if 0 < v < 1_000_000_000:
        raise InvalidArgument(f"invalid {key}: {v}ns: the minimum is 1s")
    return v


def check_host_config(h: dict[str, Any]) -> None:
    """Validate and normalise the policy keys of a HostConfig dict, in place (create and update)."""
    sched = h.get("KranSchedule")
    if sched is not None:
        if not isinstance(sched, str):
            raise InvalidArgument(f"invalid KranSchedule: {sched!r}: a schedule string ({_EXAMPLE})")
        if sched.strip():
            h["KranSchedule"] = normalise(sched)
        else:
            h.pop("KranSchedule")
    for key in ("KranMaxLifetime", "KranRecreateEvery"):
        if h.get(key) is not None:
            if duration(h[key], key) == 0:
                h.pop(key)


def monitor_cfg(h: dict[str, Any], config: dict[str, Any]) -> dict[str, Any] | None:
    """monitor.json's ``"policy"`` (seconds; the stop grace period docker's StopTimeout), or None."""
    sched = h.get("KranSchedule") or ""
    life = int(h.get("KranMaxLifetime") or 0)
    every = int(h.get("KranRecreateEvery") or 0)
    if not (sched or life or every):
        return None
    timeout = h.get("StopTimeout") if h.get("StopTimeout") is not None else config.get("StopTimeout")
    return {"schedule": sched, "windows": windows(sched), "max_lifetime": life / 1e9,
            "recreate_every": every / 1e9, "stop_timeout": 10 if timeout is None else int(timeout)}


def local_text(t: float, with_day: bool = True) -> str:
    """``Mon 2026-12-07 12:00 CET`` (local time), as start's refusal names the next window."""
    return time.strftime("%a %Y-%m-%d %H:%M %Z" if with_day else "%H:%M", time.localtime(t))


def check_start(name: str, h: dict[str, Any]) -> None:
    """Refuse to start a container outside its windows (Conflict, naming the next window)."""
    sched = h.get("KranSchedule") or ""
    if not sched:
        return
    from kran import clock

    w, t = windows(sched), clock.now()
    if in_window(w, t):
        return
    nxt = next_change(w, t)
    when = f"next window opens {local_text(nxt)}" if nxt != math.inf else "it has no window"
    raise Conflict(f"container {name} is outside its schedule ({sched}): {when}")


def state(h: dict[str, Any], t: float | None = None) -> dict[str, Any] | None:
    """inspect's State.KranSchedule: {"InWindow": bool, "NextChange": RFC 3339 or None}."""
    sched = h.get("KranSchedule") or ""
    if not sched:
        return None
    if t is None:
        from kran import clock

        t = clock.now()
    w = windows(sched)
    nc = next_change(w, t)
    return {"InWindow": in_window(w, t),
            "NextChange": None if nc == math.inf else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(nc))}


def ps_text(h: dict[str, Any], running: bool, t: float | None = None) -> str:
    """``ps --format {{.Schedule}}``: "" without a schedule, else e.g. "in window until 13:00",
    "waiting: opens Mon 12:00" or "closed: opens Mon 12:00"."""
    sched = h.get("KranSchedule") or ""
    if not sched:
        return ""
    if t is None:
        from kran import clock

        t = clock.now()
    w = windows(sched)
    nc = next_change(w, t)
    if in_window(w, t):
        return "in window" + ("" if nc == math.inf else f" until {time.strftime('%a %H:%M', time.localtime(nc))}")
    return ("waiting" if running else "closed") + (
        "" if nc == math.inf else f": opens {time.strftime('%a %H:%M', time.localtime(nc))}")
