"""``network ls`` filters and fields (pure parts of kran.cli.network)."""

from __future__ import annotations

import pytest

from kran.cli.network import _go_time, row
from kran.engine.networks import filter_networks, parse_filters
from kran.errors import InvalidArgument

NETS = [
    {"Name": "bridge", "Id": "a" * 64, "Driver": "bridge", "Scope": "local", "Labels": {}},
    {"Name": "host", "Id": "b" * 64, "Driver": "host", "Scope": "local", "Labels": {}},
    {"Name": "front", "Id": "c" * 64, "Driver": "bridge", "Scope": "local", "Labels": {"env": "prod"}, "Containers": {"x": {}}},
    {"Name": "back", "Id": "d" * 64, "Driver": "bridge", "Scope": "local", "Labels": {"env": "dev"}},
]


def names(filters: list[str]) -> list[str]:
    return [n["Name"] for n in filter_networks(NETS, parse_filters(filters))]


def test_filters() -> None:
    assert names([]) == ["bridge", "host", "front", "back"]
    assert names(["type=custom"]) == ["front", "back"]
    assert names(["type=builtin"]) == ["bridge", "host"]
    assert names(["driver=bridge", "name=b"]) == ["bridge", "back"]
    assert names(["id=ccc"]) == ["front"]
    assert names(["label=env"]) == ["front", "back"]
    assert names(["label=env=dev"]) == ["back"]
    assert names(["dangling=true"]) == ["back"]


@pytest.mark.parametrize(("f", "msg"), [
    ("nope=1", "invalid filter 'nope'"),
    ("name", "bad format of filter (expected name=value)"),
    ("type=x", "invalid filter: 'type'='x'"),
])
def test_filter_errors(f: str, msg: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_filters([f])
    assert str(e.value) == msg


def test_row() -> None:
    r = row(dict(NETS[2], Created="2024-05-06T07:08:09.120000Z", EnableIPv6=False), no_trunc=False)
    assert r["ID"] == "c" * 12
    assert r["Labels"] == "env=prod"
    assert r["IPv6"] == "false"
    assert r["CreatedAt"] == "2024-05-06 07:08:09.12 +0000 UTC"
    assert _go_time("2024-05-06T07:08:09+02:00") == "2024-05-06 07:08:09 +0200 +0200"
