"""Time windows and lifetimes, evaluated by the monitor (so they hold with no kran running).

A schedule reaches the monitor already parsed (by :mod:`kran.engine.schedule`) as *windows*: lists
``[weekday, start, end]`` with Monday = 0 and minutes after local midnight; ``end`` may pass 1440
for a window that crosses midnight (22:00-02:00 is ``[d, 1320, 1560]``), 24:00 is 1440.

Times are wall-clock times in local time (``TZ`` honoured): each day's boundaries are made with
``time.mktime`` for that date, so a window is 12:00-13:00 on the day clocks change too.  Two DST
rules, fixed here:

- a wall time that does not exist (02:30 on a spring-forward day, Europe/Berlin 2026-03-29, when
  02:00 CET jumps to 03:00 CEST) is the first moment after the gap: the boundary is 03:00 CEST --
  the wall clock passes 02:30 at that instant (cron's rule for skipped times);
- a wall time that happens twice (02:30 on a fall-back day, 2026-10-25) is its first occurrence
  (02:30 CEST).

:class:`Timer` is the monitor's side: the loop asks it for a poll timeout (0.5 s while a schedule or
lifetime is set, none otherwise) and, on each tick, whether the running container is due to stop.
"Now" is :func:`kran.clock.now` (an injected clock in tests), re-read on every tick.

Stdlib only: the monitor imports this.
"""

from __future__ import annotations

import math
import time

TICK = 0.5  # seconds between checks while a policy is set
_HORIZON = 16  # days of windows looked at around "now" (a schedule repeats weekly)


def _date(y: int, m: int, d: int) -> tuple[int, int, int, int]:
    """The normalised date (y, m, d, weekday) of a possibly overflowing day number ``d``."""
    lt = time.localtime(time.mktime((y, m, d, 12, 0, 0, 0, 0, -1)))  # noon: exists on every day
    return lt.tm_year, lt.tm_mon, lt.tm_mday, lt.tm_wday


def wall(y: int, m: int, d: int, minute: int) -> float:
    """The instant of local wall time ``minute`` (minutes after midnight, may be >= 1440: a later
    day) on the date y-m-d, by the DST rules of the module docstring."""
    y, m, d, _ = _date(y, m, d + minute // 1440)
    hh, mm = divmod(minute % 1440, 60)
    target = (y, m, d, hh, mm)
    found = []
    for dst in (0, 1):
        try:
            t = time.mktime((y, m, d, hh, mm, 0, 0, 0, dst))
        except (OverflowError, ValueError):
            continue
        if tuple(time.localtime(t)[:5]) == target:
            found.append(t)
    if found:
        return min(found)  # twice on a fall-back day: the first
    # In a spring-forward gap: the first second whose wall time is at or after the target.
    lo = int(time.mktime((y, m, d, hh, mm, 0, 0, 0, -1))) - 3 * 3600
    hi = lo + 6 * 3600
    while lo < hi:
        mid = (lo + hi) // 2
        if tuple(time.localtime(mid)[:5]) >= target:
            hi = mid
        else:
            lo = mid + 1
    return float(lo)


def intervals(windows: list, t: float, before: int = 1, after: int = _HORIZON) -> list[tuple[float, float]]:
    """The windows' [start, end) instants on the days from ``before`` days before ``t``'s local date
    to ``after`` days after it, sorted and merged where they touch or overlap."""
    lt = time.localtime(t)
    raw = []
    for k in range(-before, after + 1):
        y, m, d, wd = _date(lt.tm_year, lt.tm_mon, lt.tm_mday + k)
        for w in windows:
            if int(w[0]) == wd:
                s, e = wall(y, m, d, int(w[1])), wall(y, m, d, int(w[2]))
                if e > s:
                    raw.append((s, e))
    raw.sort()
    merged: list[tuple[float, float]] = []
    for s, e in raw:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def in_window(windows: list, t: float) -> bool:
    """Whether instant ``t`` is inside one of the windows (start included, end excluded)."""
    return any(s <= t < e for s, e in intervals(windows, t, 1, 1))


def next_change(windows: list, t: float) -> float:
    """The next instant after ``t`` where in_window changes (a window's end if inside one, else the
    next start); ``math.inf`` if it never changes (no windows, or every minute of the week)."""
    for s, e in intervals(windows, t):
        if s <= t < e:
            # a run of windows longer than a week covers every minute of it: no end
            return e if e - t <= 8 * 86400 else math.inf
        if s > t:
            return s
    return math.inf


def next_start(windows: list, t: float) -> float:
    """The next window start after ``t`` (outside the current one, if ``t`` is inside); inf if none."""
    nc = next_change(windows, t)
    if nc == math.inf or not in_window(windows, t):
        return nc
    return next_change(windows, nc)


class Timer:
    """The monitor's policy clock.  ``cfg`` is monitor.json's ``"policy"``: ``windows``,
    ``max_lifetime`` and ``recreate_every`` (seconds, 0: none)."""

    def __init__(self, cfg: dict, now: object) -> None:
        self.now = now  # kran.clock.now
        self.started = 0.0  # clock time of the running container's start
        self.load(cfg)

    def load(self, cfg: dict) -> None:
        cfg = cfg or {}
        self.windows = [list(w) for w in cfg.get("windows") or []]
        self.schedule = str(cfg.get("schedule") or "")
        self.max_lifetime = float(cfg.get("max_lifetime") or 0)
        self.recreate_every = float(cfg.get("recreate_every") or 0)
        self.stop_timeout = float(cfg.get("stop_timeout") if cfg.get("stop_timeout") is not None else 10)
        self.fresh = list(cfg.get("fresh") or [])  # the engine's fresh-layer helper, for recreate

    def active(self) -> bool:
        return bool(self.windows or self.max_lifetime or self.recreate_every)

    def timeout(self) -> float | None:
        return TICK if self.active() else None

    def start(self) -> None:
        """The container (re)started now."""
        self.started = self.now()

    def due(self) -> str:
        """Why the running container must stop now: "schedule", "lifetime", "recreate" or ""."""
        t = self.now()
        if self.windows and not in_window(self.windows, t):
            return "schedule"
        ran = t - self.started
        if self.max_lifetime and ran >= self.max_lifetime:
            return "lifetime"
        if self.recreate_every and ran >= self.recreate_every:
            return "recreate"
        return ""

    def may_run(self) -> bool:
        return not self.windows or in_window(self.windows, self.now())

    def wait_until(self, after_lifetime: bool = False) -> float:
        """When a container stopped by the schedule (or, ``after_lifetime``, by its lifetime: a new
        window is a new life) may start again: a clock time, inf for never."""
        if not self.windows:
            return math.inf
        t = self.now()
        return next_start(self.windows, t) if after_lifetime or not in_window(self.windows, t) else t
