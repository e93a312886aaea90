"""`kran info` / `kran system info` as root: docker's text, --format, and GET /info from the same
engine function (read back by docker-py and the docker CLI)."""

from __future__ import annotations

import json
import os
import re
import subprocess

from kran.cli.units import bytes_size
from kran.engine.sysinfo import FS_NAMES

# what changes between two calls (only shown with -D, and in the JSON)
VOLATILE = ("NFd", "NGoroutines", "SystemTime")


def _field(text: str, label: str) -> str:
    """The value after ``label:`` on its line in the Server: part (its labels are unique at their
    indentation; the Client: part has its own "Debug Mode")."""
    server = text.split("\nServer:\n", 1)[1]
    m = re.search(rf"^{re.escape(label)}: ?(.*)$", server, re.M)
    assert m, f"no {label!r} line in:\n{text}"
    return m.group(1)


def _host(*cmd: str) -> str:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=True).stdout.strip()


def _mem_total() -> int:
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_info_text_counts_containers_and_describes_the_host(kran, busybox):
    kran("create", "--name", "made", "busybox", "true")
    kran("run", "-d", "--name", "up", "busybox", "sleep", "60")
    kran("run", "-d", "--name", "frozen", "busybox", "sleep", "60")
    kran("pause", "frozen")
    try:
        p = kran("info")
        system_info = kran("system", "info").out
    finally:
        kran("unpause", "frozen", check=False)
    out = p.out
    # docker's layout: a Client: block, then Server: with its sub-blocks indented one space more
    assert out.startswith("Client: kran\n Version:    ")
    assert "\nServer:\n Containers: 3\n  Running: 1\n  Paused: 1\n  Stopped: 1\n Images: 1\n" in out
    assert _field(out, " Storage Driver") == "overlay2"
    # the backing filesystem is the real one under the state root (stat(1) reads the same statfs)
    magic = int(_host("stat", "-f", "-c", "%t", str(kran.root)), 16)
    assert _field(out, "  Backing Filesystem") == FS_NAMES.get(magic, "<unknown>") != "<unknown>"
    assert _field(out, " Cgroup Driver") == "cgroupfs"
    assert _field(out, " Cgroup Version") == ("2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1")
    assert _field(out, "  Network") == "bridge host null"
    assert _field(out, " Default Runtime") == "kran"
    assert "kran" in _field(out, " Runtimes").split()
    assert "\n Security Options:\n  seccomp\n   Profile: builtin\n" in out
    assert "  rootless" not in out and "ID Mappings" not in out  # root's kran is not rootless
    assert _field(out, " Kernel Version") == os.uname().release
    assert _field(out, " OSType") == "linux"
    assert _field(out, " Architecture") == _host("uname", "-m")
    assert _field(out, " CPUs") == _host("nproc")
    assert _field(out, " Total Memory") == bytes_size(_mem_total())
    assert _field(out, " Name") == _host("hostname")
    assert _field(out, " Docker Root Dir") == str(kran.root)
    assert _field(out, " Debug Mode") == "false"
    assert _field(out, " Live Restore Enabled") == "true"
    assert "File Descriptors" not in out  # only with -D
    # warnings (none, or docker's "WARNING: ..." lines) go to stderr, never into the text
    assert all(w.startswith("WARNING: ") for w in p.err.splitlines()), p.err
    assert "WARNING" not in out

    # `system info` is the same command
    assert system_info == out


def test_info_on_a_fresh_root_creates_nothing(kran):
    assert not kran.root.exists()
    out = kran("info").out
    assert "\n Containers: 0\n" in out and "\n Images: 0\n" in out
    assert _field(out, " Docker Root Dir") == str(kran.root)
    assert not kran.root.exists(), "info must only read"


def test_info_debug_shows_the_counters(kran):
    out = kran("-D", "info").out
    assert _field(out, " Debug Mode") == "false"  # the engine's; the client's is on
    assert out.split("\n")[2] == " Debug Mode: true"
    assert int(_field(out, "  File Descriptors")) > 0
    assert int(_field(out, "  Goroutines")) >= 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", _field(out, "  System Time"))


def test_info_format(kran, busybox):
    kran("create", "busybox", "true")
    doc = json.loads(kran("info", "--format", "{{json .}}").out)
    assert doc["Containers"] == 1 and doc["ContainersStopped"] == 1 and doc["Images"] == 1
    assert doc["Driver"] == "overlay2" and doc["DockerRootDir"] == str(kran.root)
    assert doc["Rootless"] is False and "IDMappings" not in doc
    assert doc["SecurityOptions"] == ["name=seccomp,profile=builtin"] + (
        ["name=cgroupns"] if doc["CgroupVersion"] == "2" else [])
    assert doc["CgroupDriver"] == "cgroupfs" and doc["MemTotal"] == _mem_total()
    assert doc["ClientInfo"]["Version"] == doc["ServerVersion"]  # docker's dockerInfo: server fields + ClientInfo
    # docker info's 'json' shorthand
    short = json.loads(kran("info", "-f", "json").out)
    assert short.keys() == doc.keys()
    assert kran("info", "--format", "{{.Rootless}}").out == "false\n"
    assert kran("info", "-f", "{{.Containers}} {{.Driver}} {{index .DriverStatus 0}}").out.startswith(
        "1 overlay2 [Backing Filesystem ")
    assert kran("info", "-f", "{{range .SecurityOptions}}{{.}} {{end}}").out.startswith("name=seccomp,profile=builtin ")

    bad = kran("info", "--format", "{{.Containers", check=False)
    assert bad.returncode == 64 and bad.err.startswith("template parsing error: "), bad.err
    extra = kran("info", "something", check=False)
    assert extra.returncode == 1 and '"kran info" accepts no arguments' in extra.err, extra.err  # docker: 1


def test_api_info_is_the_same_document(kran, busybox, tmp_path):
    from tests.api.conftest import Api, start_service, stop_service

    kran("run", "-d", "busybox", "sleep", "60")
    sock = tmp_path / "api" / "kran.sock"
    sock.parent.mkdir()
    p = start_service(kran, sock, tmp_path / "api" / "service.log")
    try:
        api = Api(kran, sock, p)
        got = api.client().info()  # docker-py: GET /info
        cli = json.loads(kran("info", "-f", "{{json .}}").out)
        cli.pop("ClientInfo")
        for k in VOLATILE:
            got.pop(k)
            cli.pop(k)
        assert got == cli
        assert got["Containers"] == 1 and got["ContainersRunning"] == 1 and got["Rootless"] is False
        # the docker CLI reads it as it reads dockerd's
        d = api.docker("info", "--format", "{{.ContainersRunning}} {{.Driver}} {{.DockerRootDir}} {{.CgroupDriver}}")
        assert d.out.split() == ["1", "overlay2", str(kran.root), "cgroupfs"]
        text = api.docker("info").out
        assert "\n Storage Driver: overlay2\n" in text and f"\n Docker Root Dir: {kran.root}\n" in text
        assert "\n  seccomp\n   Profile: builtin\n" in text
    finally:
        stop_service(p)



def test_limits_follow_the_controllers_of_a_v2_tree(tmp_path):
    # this host is cgroup v1: the v2 reading (root's, and a rootless user's delegated subtree) is
    # checked on a directory laid out like /sys/fs/cgroup
    from kran.engine.sysinfo import cgroup_limits, limit_warnings

    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "system.slice").mkdir()
    (tmp_path / "system.slice" / "memory.swap.max").write_text("max\n")
    user = tmp_path / "user.slice" / "user-1000.slice" / "user@1000.service"
    user.mkdir(parents=True)
    (user / "cgroup.controllers").write_text("memory pids\n")  # systemd's default delegation

    root = cgroup_limits(True, base=str(tmp_path))
    assert (root.memory, root.swap, root.cpu_cfs, root.cpu_shares, root.cpuset, root.pids) == (True,) * 6
    assert limit_warnings(root, True) == []
    mine = cgroup_limits(True, "user.slice/user-1000.slice/user@1000.service", base=str(tmp_path))
    assert (mine.memory, mine.pids, mine.cpu_cfs, mine.cpuset, mine.swap) == (True, True, False, False, False)
    assert limit_warnings(mine, True) == ["WARNING: No swap limit support", "WARNING: No cpu cfs quota support",
                                          "WARNING: No cpu cfs period support", "WARNING: No cpu shares support",
                                          "WARNING: No cpuset support"]
