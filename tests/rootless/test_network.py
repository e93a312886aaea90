"""Issue #12, deliverable 4: rootless networking as a user sees it — outbound to the host (its
127.0.0.1 is 10.0.2.2 through slirp4netns), a published port reachable from the host, a clear error
for a privileged port, a user network with names resolved by the embedded DNS, and
--network none / host."""

from __future__ import annotations

import os
import subprocess
import urllib.request

import pytest

from tests.registry.conftest import free_port
from tests.rootless.helpers import HostHTTP, Made, until


@pytest.fixture
def made(ruser):
    m = Made(ruser)
    yield m
    m.cleanup()


@pytest.fixture
def host_http(tmp_path):
    (tmp_path / "page.txt").write_text(f"served by root on the host ({os.getpid()})\n")
    server = HostHTTP(tmp_path)
    yield server
    server.stop()


def test_outbound_reaches_the_hosts_loopback(ruser, made, host_http):
    name = made.container("out")
    p = ruser.kran("run", "--name", name, "busybox", "wget", "-qO-", f"http://10.0.2.2:{host_http.port}/page.txt")
    assert p.out == f"served by root on the host ({os.getpid()})\n"


def test_published_port_reachable_from_the_host(ruser, made):
    name, port = made.container("web"), free_port()
    ruser.kran("run", "-d", "--name", name, "-p", f"{port}:80", "busybox", "httpd", "-f", "-h", "/etc")
    assert ruser.kran("port", name).out == f"80/tcp -> 0.0.0.0:{port}\n"

    def fetch():
        p = subprocess.run(["curl", "-sS", "--max-time", "3", f"http://127.0.0.1:{port}/passwd"],
                           capture_output=True, text=True)
        return p.stdout if p.returncode == 0 else None

    body = until(fetch, timeout=10, what=f"httpd on 127.0.0.1:{port}")
    assert body.startswith("root:x:0:0:root:/root:/bin/sh\n")
    # stopped, the port is free again: nothing of the user's stays bound on the host
    ruser.kran("stop", "-t", "1", name)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/passwd", timeout=3)


def test_privileged_port_names_the_sysctl(ruser, made):
    if int(open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read()) <= 80:
        pytest.fail("this host lets users bind port 80 (net.ipv4.ip_unprivileged_port_start <= 80)")
    name = made.container("priv")
    p = ruser.kran("run", "-d", "--name", name, "-p", "80:80", "busybox", "httpd", "-f", check=False)
    assert p.returncode == 125
    assert "net.ipv4.ip_unprivileged_port_start" in p.err
    assert "Traceback" not in p.err
    status = ruser.kran("inspect", "--format", "{{.State.Status}}", name).out.strip()
    assert status == "created"  # Docker's: created, never started


def test_user_network_resolves_names(ruser, made):
    net, server, client = made.network("usernet"), made.container("srv"), made.container("cli")
    ruser.kran("network", "create", net)
    ruser.kran("run", "-d", "--name", server, "--network", net, "busybox", "httpd", "-f", "-h", "/etc")

    def get():
        p = ruser.kran("run", "--rm", "--network", net, "busybox", "wget", "-qO-", f"http://{server}/passwd",
                       check=False)
        return p.out if p.returncode == 0 else None

    assert until(get, timeout=10, what=f"http://{server}/ from another container").startswith("root:x:0:0:")
    # the embedded DNS answers the name with the server's address on that network
    addr = ruser.kran("inspect", "--format",
                      "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", server).out.strip()
    assert addr
    p = ruser.kran("run", "--name", client, "--network", net, "busybox", "nslookup", server)
    assert f"Name:\t{server}\nAddress: {addr}\n" in p.out


def test_network_none_has_only_lo(ruser, made):
    name = made.container("none")
    p = ruser.kran("run", "--name", name, "--network", "none", "busybox", "ls", "/sys/class/net")
    assert p.out.split() == ["lo"]


def test_network_host_sees_the_hosts_interfaces(ruser, made, host_http):
    name = made.container("host")
    before = set(os.listdir("/sys/class/net"))
    p = ruser.kran("run", "--name", name, "--network", "host", "busybox", "sh", "-c",
                   f"ls /sys/class/net; wget -qO- http://127.0.0.1:{host_http.port}/page.txt")
    after = set(os.listdir("/sys/class/net"))
    *seen, page = p.out.splitlines()
    # the host's interfaces (others' veths may come and go meanwhile), not the rootless netns's
    assert before & after <= set(seen) <= before | after
    assert (before & after) - {"lo"}, "the host has no interface besides lo"
    # the host's own loopback, not slirp4netns's gateway
    assert page == f"served by root on the host ({os.getpid()})"
