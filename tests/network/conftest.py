"""Network e2e tests run kran inside a network namespace the test creates (its "host").

Bridges, veths, nft rules and published ports then live in that namespace and vanish with it, the
host's own ports (80, 8080...) are never involved, and traffic goes only to the namespace's
127.0.0.1, its own dummy "host address", and the test's containers.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX_CHANGES, Kran, _kran_fixture

HOST_IP = "10.123.0.1"  # the test namespace's "public" address (a dummy interface)


class NetNS:
    """The test's network namespace: run commands and open sockets inside it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _enter(self) -> None:
        from kran.sys.ns import CLONE_NEWNET, setns

        fd = os.open(self.path, os.O_RDONLY)
        setns(fd, CLONE_NEWNET)
        os.close(fd)

    def run(self, *cmd: str, check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        p = subprocess.run(list(cmd), capture_output=True, timeout=timeout, preexec_fn=self._enter, **kw)
        p.out = p.stdout.decode(errors="replace")  # type: ignore[attr-defined]
        p.err = p.stderr.decode(errors="replace")  # type: ignore[attr-defined]
        if check and p.returncode != 0:
            raise AssertionError(f"{cmd} failed ({p.returncode}): {p.err}{p.out}")
        return p

    def call(self, fn, *args, **kw):
        """fn(*args) in a thread inside the namespace (sockets it makes stay there)."""
        from kran.network import netlink

        return netlink.in_netns(self.path, fn, *args, **kw)

    def curl(self, url: str, **kw) -> subprocess.CompletedProcess:
        return self.run("curl", "-sS", "--max-time", "5", url, **kw)


@pytest.fixture
def netns(tmp_path: Path):
    from kran.network import netns as nsmod

    path = f"/run/kran-test-{uuid.uuid4().hex[:12]}"
    nsmod.create(path)
    ns = NetNS(path)

    try:
        # the kernel may have no dummy driver: a veth pair, both ends up, serves as the "NIC"
        ns.run("ip", "link", "add", "kthost0", "type", "veth", "peer", "name", "kthost1")
        ns.run("ip", "addr", "add", f"{HOST_IP}/24", "dev", "kthost0")
        ns.run("ip", "link", "set", "kthost1", "up")
        ns.run("ip", "link", "set", "kthost0", "up")
        ns.run("ip", "route", "add", "default", "dev", "kthost0")
        yield ns
    finally:
        nsmod.remove(path)


@pytest.fixture
def nkran(tmp_path: Path, netns: NetNS):
    """kran with its own root, run inside the test's namespace."""
    yield from _kran_fixture(tmp_path / "root", netns.path)


WEB_DOCKERFILE = """\
FROM busybox
RUN mkdir -p /www && echo 'Welcome to kran-nginx!' > /www/index.html
EXPOSE 80
CMD ["httpd", "-f", "-v", "-p", "80", "-h", "/www"]
"""


@pytest.fixture
def web_image(nkran: Kran, busybox_tar: Path, tmp_path: Path) -> str:
    """busybox, and "nginx": a busybox httpd serving a welcome page (built with kran build)."""
    nkran("import", *BUSYBOX_CHANGES, str(busybox_tar), "busybox:latest")
    ctx = tmp_path / "webctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(WEB_DOCKERFILE)
    nkran("build", "-q", "-t", "nginx", str(ctx))
    return "nginx"


UDP_ECHO_C = r"""
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 9999;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(port); a.sin_addr.s_addr = INADDR_ANY;
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
    printf("listening %d\n", port); fflush(stdout);
    for (;;) {
        char buf[2048]; struct sockaddr_in from; socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf - 6, 0, (struct sockaddr *)&from, &fl);
        if (n < 0) continue;
        memmove(buf + 5, buf, n); memcpy(buf, "echo:", 5);
        sendto(s, buf, n + 5, 0, (struct sockaddr *)&from, fl);
    }
}
"""


@pytest.fixture
def udpecho_image(nkran: Kran, busybox_tar: Path, tmp_path: Path) -> str:
    import shutil

    if not shutil.which("gcc"):
        pytest.fail("gcc is required for the UDP echo test program (apt-get install gcc libc6-dev)")
    ctx = tmp_path / "udpctx"
    ctx.mkdir()
    (tmp_path / "udpecho.c").write_text(UDP_ECHO_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(ctx / "udpecho"), str(tmp_path / "udpecho.c")], check=True)
    (ctx / "Dockerfile").write_text('FROM scratch\nCOPY udpecho /udpecho\nEXPOSE 9999/udp\nCMD ["/udpecho", "9999"]\n')
    nkran("build", "-q", "-t", "udpecho", str(ctx))
    return "udpecho"

