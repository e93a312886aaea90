"""The monitor's pure helpers: no root, no runtime."""

from __future__ import annotations

import json

import pytest

from kran.monitor import client, proto
from kran.monitor.monitor import LogWriter, clean_runtime_error, json_dumps, json_loads, now_rfc3339

pytestmark = pytest.mark.unit


def test_clean_runtime_error_strips_logrus():
    raw = (
        b"some warning\n"
        b'time="2026-11-27T21:51:33Z" level=error msg="runc create failed: unable to start container '
        b'process: exec: \\"nope\\": executable file not found in $PATH"\n'
    )
    assert clean_runtime_error(raw) == (
        'runc create failed: unable to start container process: exec: "nope": executable file not found in $PATH'
    )
    assert clean_runtime_error(b"plain message\n\n") == "plain message"
    assert clean_runtime_error(b"") == ""


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        ('exec: "nope": executable file not found in $PATH', 127),
        ('exec: "/nope": stat /nope: no such file or directory', 127),
        ('exec: "/bin/sh": permission denied', 126),
        ("rootfs (/x) does not exist: no such file or directory", 125),
        ("container with id exists", 125),
    ],
)
def test_exit_code_for(msg, code):
    assert proto.exit_code_for(msg) == code


def test_json_codec_round_trip():
    v = {"a": 'é"\n\x00', "b": None, "c": True, "d": -3, "e": ""}
    assert json.loads(json_dumps(v)) == v
    assert json_loads(' {"x": [1, 2.5, null, false], "y": {"z": "\\u00e9"}} \n') == {
        "x": [1, 2.5, None, False],
        "y": {"z": "é"},
    }
    with pytest.raises(ValueError):
        json_loads('{"a": 1} x')


def test_time_format_parses_back():
    ns = 1_700_000_000_123_456_789
    s = now_rfc3339(ns)
    assert s == "2023-11-14T22:13:20.123456789Z"
    assert client._parse_time(s) == ns
    assert client._parse_time("2023-11-14T23:13:20.5+01:00") == 1_700_000_000_500_000_000


def test_log_writer_rotation_and_reader(tmp_path):
    path = str(tmp_path / "log.json")
    w = LogWriter(path, 300, 3)
    for i in range(40):
        w.write("stdout" if i % 2 else "stderr", f"line {i}\n".encode())
    w.write("stdout", b"no newline")
    w.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["log.json", "log.json.1", "log.json.2"]
    assert all(p.stat().st_size <= 300 for p in tmp_path.iterdir())
    entries = list(client.read_logs(path))
    assert entries[-1][:2] == ("stdout", b"no newline")
    nums = [int(d.split()[1]) for _, d, _ in entries[:-1]]
    assert nums == list(range(nums[0], 40))
    assert all(s == ("stdout" if n % 2 else "stderr") for (s, _, _), n in zip(entries, nums, strict=False))


def test_log_writer_max_file_one_truncates(tmp_path):
    path = str(tmp_path / "log.json")
    w = LogWriter(path, 200, 1)
    for i in range(20):
        w.write("stdout", f"{i}\n".encode())
    w.close()
    assert [p.name for p in tmp_path.iterdir()] == ["log.json"]
    assert [int(d) for _, d, _ in client.read_logs(path)][-1] == 19


def test_log_writer_splits_long_lines(tmp_path):
    path = str(tmp_path / "log.json")
    w = LogWriter(path, 0, 1)
    w.write("stdout", b"a" * 20000)
    w.write("stdout", b"b\n" + b"c" * proto.MAX_LOG_LINE + b"\n")
    w.close()
    assert [len(d) for _, d, _ in client.read_logs(path)] == [16384, 3616 + 2, 16384, 1]
