"""kran.cli.units against go-units' behaviour (size.go, duration.go and their tests)."""

from __future__ import annotations

import pytest

from kran.cli.units import (
    bytes_size,
    from_human_size,
    human_duration,
    human_size,
    human_size_with_precision,
    ram_in_bytes,
    since,
)

pytestmark = pytest.mark.unit

KiB, MiB, GiB, TiB, PiB = 1024, 1024**2, 1024**3, 1024**4, 1024**5


@pytest.mark.parametrize(
    "n, want",
    [
        (0, "0B"),
        (1, "1B"),
        (999, "999B"),
        (1000, "1kB"),
        (1024, "1.02kB"),
        (4261888, "4.26MB"),
        (77900000, "77.9MB"),
        (1234567890, "1.23GB"),
        (7_380_000, "7.38MB"),
        (999_999, "1e+03kB"),  # Go's %.3g rounds 999.999 up and switches to an exponent
        (1e24, "1YB"),
        (1e27, "1e+03YB"),
        (-5, "-5B"),
    ],
)
def test_human_size(n: float, want: str) -> None:
    assert human_size(n) == want


def test_human_size_with_precision_4_is_go_units_human_size() -> None:
    assert human_size_with_precision(2_746_000, 4) == "2.746MB"
    assert human_size_with_precision(796_000, 4) == "796kB"
    assert human_size_with_precision(float("inf"), 3) == "+InfYB"


@pytest.mark.parametrize(
    "n, want",
    [
        (0, "0B"),
        (1023, "1023B"),
        (1024, "1KiB"),
        (1536, "1.5KiB"),
        (MiB, "1MiB"),
        (1.5 * MiB, "1.5MiB"),
        (GiB, "1GiB"),
        (3.42 * GiB, "3.42GiB"),
        (5.372 * TiB, "5.372TiB"),
        (2.22 * PiB * 1024, "2.22EiB"),
    ],
)
def test_bytes_size(n: float, want: str) -> None:
    assert bytes_size(n) == want


@pytest.mark.parametrize(
    "s, want",
    [
        ("32", 32),
        ("32b", 32),
        ("32B", 32),
        ("32k", 32 * KiB),
        ("32K", 32 * KiB),
        ("32kb", 32 * KiB),
        ("32Kb", 32 * KiB),
        ("32KiB", 32 * KiB),
        ("32Mb", 32 * MiB),
        ("32Gb", 32 * GiB),
        ("32Tb", 32 * TiB),
        ("32Pb", 32 * PiB),
        ("32PB", 32 * PiB),
        ("32P", 32 * PiB),
        ("512m", 536870912),
        ("1g", 1073741824),
        ("1.5GB", 1610612736),
        ("32.3", 32),
        ("32.3 kb", 33075),  # 32.3 * 1024 = 33075.2, truncated like int64()
        ("0.3MB", 314572),
        ("1e3k", 1024000),
    ],
)
def test_ram_in_bytes(s: str, want: int) -> None:
    assert ram_in_bytes(s) == want


@pytest.mark.parametrize(
    "s, want",
    [
        ("32", 32),
        ("32kb", 32_000),
        ("32 KB", 32_000),
        ("1.5GB", 1_500_000_000),
        ("44kB", 44_000),
        ("17MB", 17_000_000),
        ("1TiB", 1_000_000_000_000),  # FromHumanSize takes the "i" but still multiplies by 1000
    ],
)
def test_from_human_size(s: str, want: int) -> None:
    assert from_human_size(s) == want


@pytest.mark.parametrize(
    "s, message",
    [
        ("", "invalid size: ''"),
        ("hello", "invalid size: 'hello'"),
        ("-32", "invalid size: '-32'"),
        ("32bm", "invalid suffix: 'bm'"),
        ("32x", "invalid suffix: 'x'"),
        ("32.3Jb", "invalid suffix: 'jb'"),
        ("32kbytes", "invalid suffix: 'kbytes'"),
        ("32 mb b", "invalid suffix: 'mb b'"),
        ("1.2.3", 'strconv.ParseFloat: parsing "1.2.3": invalid syntax'),
        (" 32", 'strconv.ParseFloat: parsing "": invalid syntax'),
        ("abc1", 'strconv.ParseFloat: parsing "abc1": invalid syntax'),
    ],
)
def test_parse_size_errors(s: str, message: str) -> None:
    with pytest.raises(ValueError) as e:
        ram_in_bytes(s)
    assert str(e.value) == message


MIN, HOUR, DAY = 60, 3600, 86400


@pytest.mark.parametrize(
    "secs, want",
    [
        (-5, "Less than a second"),
        (0, "Less than a second"),
        (0.999, "Less than a second"),
        (1, "1 second"),
        (2, "2 seconds"),
        (59.9, "59 seconds"),
        (MIN, "About a minute"),
        (119, "About a minute"),
        (2 * MIN, "2 minutes"),
        (59 * MIN, "59 minutes"),
        (HOUR - 1, "59 minutes"),
        (HOUR, "About an hour"),
        (HOUR + 29 * MIN, "About an hour"),
        (HOUR + 30 * MIN, "2 hours"),  # hours round half up
        (47 * HOUR, "47 hours"),
        (47 * HOUR + 30 * MIN, "2 days"),
        (3 * DAY, "3 days"),
        (13 * DAY, "13 days"),
        (14 * DAY, "2 weeks"),
        (59 * DAY, "8 weeks"),
        (60 * DAY, "2 months"),
        (364 * DAY, "12 months"),
        (729 * DAY, "24 months"),
        (730 * DAY, "2 years"),
        (3650 * DAY, "10 years"),
    ],
)
def test_human_duration(secs: float, want: str) -> None:
    assert human_duration(secs) == want


def test_since() -> None:
    assert since(1_700_000_000, now=1_700_000_000 + 3 * HOUR) == "3 hours ago"
    assert since(1_700_000_000, now=1_700_000_000) == "Less than a second ago"
    assert since(0).endswith(" years ago")
