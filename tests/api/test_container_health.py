"""Health checks: run by the container's monitor, shown as State.Health and in ps."""

from __future__ import annotations

import time

SECOND = 1_000_000_000


def _health(c, cid: str) -> dict:
    return c.api.inspect_container(cid)["State"].get("Health") or {}


def _until_status(c, cid: str, status: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        h = _health(c, cid)
        if h.get("Status") == status or time.monotonic() > deadline:
            return h
        time.sleep(0.1)


def test_passing_and_failing_checks(api, api_busybox):
    c = api.client()
    ok = c.api.create_container("busybox", "sleep 60", healthcheck={
        "test": "echo checked", "interval": SECOND // 2, "timeout": SECOND, "retries": 1})
    bad = c.api.create_container("busybox", "sleep 60", healthcheck={
        "test": ["CMD", "sh", "-c", "echo nope; exit 3"], "interval": SECOND // 2, "timeout": SECOND, "retries": 2})
    try:
        assert _health(c, ok["Id"]) == {"Status": "starting", "FailingStreak": 0, "Log": []}
        c.api.start(ok["Id"])
        c.api.start(bad["Id"])
        h = _until_status(c, ok["Id"], "healthy")
        assert h["Status"] == "healthy" and h["FailingStreak"] == 0
        assert h["Log"][-1]["ExitCode"] == 0 and h["Log"][-1]["Output"] == "checked\n"
        assert h["Log"][-1]["Start"] <= h["Log"][-1]["End"]
        h = _until_status(c, bad["Id"], "unhealthy")
        assert h["Status"] == "unhealthy" and h["FailingStreak"] >= 2
        assert h["Log"][-1]["ExitCode"] == 3 and h["Log"][-1]["Output"] == "nope\n"
        assert len(h["Log"]) <= 5
        (row,) = [x for x in c.api.containers() if x["Id"] == ok["Id"]]
        assert row["Status"].endswith("(healthy)")
    finally:
        c.api.remove_container(ok["Id"], force=True)
        c.api.remove_container(bad["Id"], force=True)


def test_timeout_and_start_period(api, api_busybox):
    c = api.client()
    slow = c.api.create_container("busybox", "sleep 60", healthcheck={
        "test": "sleep 5", "interval": SECOND // 2, "timeout": SECOND // 2, "retries": 1})
    # fails for its first checks, which the start period forgives
    warm = c.api.create_container("busybox", "sleep 60", healthcheck={
        "test": "echo x >> /n; test $(wc -l < /n) -ge 3", "interval": SECOND // 2, "timeout": SECOND,
        "retries": 1, "start_period": 30 * SECOND, "start_interval": SECOND // 2})
    try:
        c.api.start(slow["Id"])
        c.api.start(warm["Id"])
        h = _until_status(c, slow["Id"], "unhealthy")
        assert h["Status"] == "unhealthy"
        assert h["Log"][-1]["ExitCode"] == -1 and "exceeded timeout" in h["Log"][-1]["Output"]
        h = _until_status(c, warm["Id"], "healthy")
        assert h["Status"] == "healthy"
        assert [e["ExitCode"] for e in h["Log"]][-3:] == [1, 1, 0]
    finally:
        c.api.remove_container(slow["Id"], force=True)
        c.api.remove_container(warm["Id"], force=True)


def test_docker_cli_health_flags(api, api_busybox):
    cid = api.docker("run", "-d", "--health-cmd", "true", "--health-interval", "500ms", "--health-retries", "1",
                     "busybox", "sleep", "60").out.strip()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if api.docker("inspect", "-f", "{{.State.Health.Status}}", cid).out.strip() == "healthy":
                break
            time.sleep(0.2)
        assert api.docker("inspect", "-f", "{{.State.Health.Status}}", cid).out.strip() == "healthy"
        assert "(healthy)" in api.docker("ps", "--filter", f"id={cid}", "--format", "{{.Status}}").out
    finally:
        api.docker("rm", "-f", cid)
    # --no-healthcheck: no Health at all
    cid = api.docker("create", "--no-healthcheck", "busybox", "true").out.strip()
    assert api.docker("inspect", "-f", "{{json .State.Health}}", cid).out.strip() == "null"


def test_kran_cli_health_flags(api, api_busybox):
    cid = api.kran("run", "-d", "--health-cmd", "exit 1", "--health-interval", "300ms", "--health-retries", "2",
                   "busybox", "sleep", "60").out.strip()
    c = api.client()
    try:
        hc = c.api.inspect_container(cid)["Config"]["Healthcheck"]
        assert hc == {"Test": ["CMD-SHELL", "exit 1"], "Interval": 300_000_000, "Retries": 2}
        h = _until_status(c, cid, "unhealthy")
        assert h["Status"] == "unhealthy" and h["FailingStreak"] >= 2
        assert "(unhealthy)" in api.kran("ps").out
    finally:
        api.kran("rm", "-f", cid)
    p = api.kran("create", "--health-interval", "soon", "busybox", "true", check=False)
    assert p.returncode == 125 and 'time: invalid duration "soon"' in p.err
    # an image's HEALTHCHECK: kept unless --no-healthcheck, and completed by the flags given
    ctx = api.sock.parent / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text('FROM busybox\nHEALTHCHECK --interval=1s CMD ["true"]\n')
    api.kran("build", "-q", "-t", "checked:1", str(ctx))
    cid = api.kran("create", "--health-retries", "7", "checked:1", "sleep", "60").out.strip()
    hc = c.api.inspect_container(cid)["Config"]["Healthcheck"]
    assert hc["Test"] == ["CMD", "true"] and hc["Retries"] == 7 and hc["Interval"] == 10**9
    cid = api.kran("create", "--no-healthcheck", "checked:1", "sleep", "60").out.strip()
    assert c.api.inspect_container(cid)["Config"]["Healthcheck"]["Test"] == ["NONE"]
    assert "Health" not in c.api.inspect_container(cid)["State"]
