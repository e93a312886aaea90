"""The user's subordinate ids (/etc/subuid, /etc/subgid) and the message when there are none.

Format (subuid(5)): ``NAME_OR_UID:START:COUNT`` per line; a user may have several ranges.
"""

from __future__ import annotations

from typing import NamedTuple

SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"
#: Debian's useradd hands out 65536 ids per user from 100000 (SUB_UID_MIN, SUB_UID_COUNT)
COUNT = 65536
FIRST = 100000


class SubRange(NamedTuple):
    start: int
    count: int


def ranges(path: str, name: str, uid: int) -> list[SubRange]:
    out: list[SubRange] = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (name, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0 and start > 0:
            out.append(SubRange(start, count))
    return out


def free_start(paths: tuple[str, ...] = (SUBUID, SUBGID)) -> int:
    """The first multiple of 65536 from 100000 that no line of either file uses (for the hint)."""
    used: list[SubRange] = []
    for p in paths:
        try:
            with open(p) as f:
                for line in f:
                    parts = line.strip().split(":")
                    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                        used.append(SubRange(int(parts[1]), int(parts[2])))
        except OSError:
            pass
    start = FIRST
    while any(r.start < start + COUNT and start < r.start + r.count for r in used):
        start += COUNT
    return start


def missing_message(name: str, which: str, config_path: str) -> str:
    start = free_start()
    return (f"rootless mode needs subordinate ids for user {name}: none in {which}; "
            f"as root run: usermod --add-subuids {start}-{start + COUNT - 1} "
            f"--add-subgids {start}-{start + COUNT - 1} {name} "
            f"(or run with only your own id: set ignore_chown_errors = true under [storage] in {config_path})")
