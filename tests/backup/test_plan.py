"""plan_incremental, the pure part of an incremental backup: which entries and whiteouts go in."""

from __future__ import annotations

from kran.engine.backup import plan_incremental


def e(typ: str = "0", size: int = 1, mtime: int = 100, mode: int = 0o644, link: str = "", h: str = "aa") -> list:
    return [typ, size, mtime, mode, 0, 0, link, 0, 0, "", h if typ == "0" else ""]


D = e("5", 0, 100, 0o755)


def test_unchanged_is_empty():
    idx = {"etc": D, "etc/motd": e()}
    assert plan_incremental(idx, dict(idx)) == (set(), [])


def test_changed_content_mode_and_new_entry_bring_their_parents():
    prev = {"a": D, "a/b": D, "a/b/f": e(), "a/g": e(), "x": D, "x/y": e()}
    cur = {"a": D, "a/b": D, "a/b/f": e(h="bb"), "a/g": e(mode=0o600), "x": D, "x/y": e(), "x/new": e()}
    emit, wh = plan_incremental(prev, cur)
    assert emit == {"a", "a/b", "a/b/f", "a/g", "x", "x/new"} and wh == []


def test_deleted_paths_get_one_whiteout_at_their_top():
    prev = {"a": D, "a/f": e(), "d": D, "d/sub": D, "d/sub/f": e(), "k": D, "k/f": e()}
    cur = {"a": D, "k": D, "k/.wh.f": e(mode=0o600, size=0)}  # k/f was an image file: its own whiteout
    emit, wh = plan_incremental(prev, cur)
    assert sorted(wh) == [".wh.d", "a/.wh.f"]
    assert "k/.wh.f" in emit


def test_opaque_dir_and_type_change_resend_everything_below():
    prev = {"d": D, "d/same": e(), "d/old": e(), "f": e()}
    cur = {"d": D, "d/.wh..wh..opq": e(mode=0o755, size=0), "d/same": e(), "f": D, "f/in": e()}
    emit, wh = plan_incremental(prev, cur)
    assert {"d/same", "d/.wh..wh..opq", "f", "f/in"} <= emit
    assert wh == ["d/.wh.old"]


def test_hardlink_follows_its_rewritten_target():
    prev = {"f": e(), "g": e("1", 0, link="f")}
    cur = {"f": e(h="cc"), "g": e("1", 0, link="f")}
    assert plan_incremental(prev, cur)[0] == {"f", "g"}
