"""--profile NAME: run flags from NAME.toml in the config dir's profiles/, below the typed ones."""

from __future__ import annotations

import json

import pytest

from tests.conftest import _kran_fixture
from tests.network.conftest import netns  # noqa: F401 - the fixture

BROWSER = """\
lockdown = true
restart-fresh = true
restart = "always"
memory = "1g"
env = ["MOZ_NO_REMOTE=1"]
"""


@pytest.fixture
def kran(tmp_path, request):
    """kran in a private network namespace: its veths are out of the host's (and other tests') way."""
    yield from _kran_fixture(tmp_path / "root", request.getfixturevalue("netns").path)


@pytest.fixture
def profiles(kran, tmp_path):
    etc = tmp_path / "etc"
    (etc / "profiles").mkdir(parents=True)
    kran.env["KRAN_CONFIG"] = str(etc / "config.toml")
    return etc / "profiles"


def _host(kran, name: str) -> dict:
    return json.loads(kran("inspect", name).out)[0]


def test_browser_profile_applied(kran, busybox, profiles):
    (profiles / "browser.toml").write_text(BROWSER)
    kran("create", "--name", "br", "--profile", "browser", "busybox", "true")
    info = _host(kran, "br")
    h = info["HostConfig"]
    assert h["KranProfile"] == "browser"
    assert h["KranLockdown"] is True and h["ReadonlyRootfs"] is True and h["CapDrop"] == ["ALL"]
    assert h["KranRestartFresh"] is True
    assert h["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    assert h["Memory"] == 1 << 30
    assert "MOZ_NO_REMOTE=1" in info["Config"]["Env"]


def test_command_line_overrides_profile(kran, busybox, profiles):
    (profiles / "browser.toml").write_text(BROWSER)
    kran("create", "--name", "br", "--profile", "browser", "--restart", "no", "--lockdown=false", "-m", "64m",
         "-e", "A=1", "busybox", "true")
    h = _host(kran, "br")["HostConfig"]
    assert h["RestartPolicy"]["Name"] == "no" and h["Memory"] == 64 << 20
    assert not h.get("KranLockdown") and not h["ReadonlyRootfs"]
    assert h["KranRestartFresh"] is True  # not typed: the profile's
    env = _host(kran, "br")["Config"]["Env"]
    assert "A=1" in env and "MOZ_NO_REMOTE=1" not in env  # a typed list replaces the profile's


def test_policy_keys_of_the_other_parts(kran, busybox, profiles):
    # schedule and network-rate (other parts of issue 14) pass through as if typed
    (profiles / "work.toml").write_text('schedule = "Mon-Fri 12:00-13:00,17:00-23:00"\nnetwork-rate = "2mbit"\n'
                                        'max-lifetime = "2h"\n')
    kran("create", "--name", "wk", "--profile", "work", "busybox", "true")
    h = _host(kran, "wk")["HostConfig"]
    assert h["KranSchedule"] and h["KranMaxLifetime"] == 2 * 3600 * 10**9
    assert h["KranNetworkRate"]["Egress"] == 2_000_000


@pytest.mark.parametrize("text, error", [
    ("lockdown = 1\n", "key 'lockdown' wants a boolean (true or false), got an integer"),
    ("memroy = \"1g\"\n", "unknown key 'memroy'"),
    ("name = \"x\"\n", "unknown key 'name'"),
    ("env = [1]\n", "key 'env' wants a list of strings, got a list"),
    ("restart = true\n", "key 'restart' wants a string, got a boolean"),
    ("lockdown = \n", "invalid profile"),
])
def test_bad_profiles(kran, busybox, profiles, text, error):
    (profiles / "bad.toml").write_text(text)
    p = kran("create", "--name", "bd", "--profile", "bad", "busybox", "true", check=False)
    assert p.returncode == 125
    first = p.err.splitlines()[0]
    assert first.startswith(f"kran: invalid profile {profiles / 'bad.toml'}") and error in first, p.err
    assert "Traceback" not in p.err and kran("ps", "-aq").out == ""


def test_missing_profile(kran, busybox, profiles):
    p = kran("run", "--rm", "--profile", "nope", "busybox", "true", check=False)
    assert p.returncode == 125
    assert p.err.splitlines()[0] == f"kran: profile nope not found: no file {profiles / 'nope.toml'}"
    p = kran("run", "--rm", "--profile", "../x", "busybox", "true", check=False)
    assert p.returncode == 125 and "invalid profile name '../x'" in p.err.splitlines()[0]
