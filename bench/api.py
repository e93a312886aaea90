"""The Engine API server: request throughput, and `docker run` through it against `kran run`.

    .venv/bin/python bench/api.py [RUNS]

1. Requests per second of ``GET /_ping`` and ``GET /containers/json`` (20 containers in the store)
   from 4 concurrent clients, each a thread with one kept-alive connection over the unix socket
   (as the docker CLI and docker-py keep theirs).
2. ``docker run --rm busybox true`` through kran's socket against ``kran run --rm busybox true``,
   run in turn (A B A B ...) so a drift of the machine's speed hits both; the ratio is taken pair
   by pair and its median printed.  docker-py's ``containers.run`` joins when docker is missing.

Needs root.  It starts its own server on a temporary root with busybox imported (from Debian's
busybox-static, scripts/busybox-rootfs.sh), in a private network namespace it makes and removes.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = str(REPO / ".venv" / "bin" / "python")
KRAN = str(REPO / ".venv" / "bin" / "kran")
CLIENTS = 4
SECONDS = 3.0


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self._path)


def throughput(sock: str, url: str, clients: int = CLIENTS, seconds: float = SECONDS) -> float:
    """Requests per second answered 200 to ``clients`` threads, each on one kept-alive connection."""
    counts = [0] * clients
    start = threading.Barrier(clients + 1)
    stop = time.monotonic() + 3600.0

    def client(i: int) -> None:
        c = _UnixHTTP(sock)
        c.request("GET", url)  # connected and warm before the clock starts
        c.getresponse().read()
        start.wait()
        while time.monotonic() < stop:
            c.request("GET", url)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise SystemExit(f"GET {url}: {r.status}")
            counts[i] += 1
        c.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    stop = t0 + seconds
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def main() -> int:
    if os.geteuid() != 0:
        sys.exit("bench/api.py: run as root")
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    sys.path.insert(0, str(REPO))
    from kran.network import netns as nsmod
    from kran.sys.ns import CLONE_NEWNET, setns

    ns = f"/run/kran-bench-api-{uuid.uuid4().hex[:8]}"
    nsmod.create(ns)

    def enter() -> None:
        fd = os.open(ns, os.O_RDONLY)
        setns(fd, CLONE_NEWNET)
        os.close(fd)

    tmp = Path(tempfile.mkdtemp(prefix="kran-bench-api-"))
    root, sock = tmp / "root", tmp / "kran.sock"
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp / "dc"), KRAN_ROOT=str(root))
    env.pop("DOCKER_API_VERSION", None)

    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, preexec_fn=enter)

    def timed(cmd: list[str]) -> float:
        t = time.perf_counter()
        run(*cmd)
        return time.perf_counter() - t

    svc = None
    try:
        tar = tmp / "bb.tar"
        with open(tar, "wb") as f:
            subprocess.run(["sh", str(REPO / "scripts" / "busybox-rootfs.sh")], stdout=f, check=True)
        run(KRAN, "import", "-c", 'CMD ["sh"]', str(tar), "busybox")
        for i in range(20):
            run(KRAN, "create", "--name", f"bench{i}", "busybox", "true")
        svc = subprocess.Popen([KRAN, "system", "service", f"unix://{sock}"], env=env, stderr=subprocess.DEVNULL,
                               preexec_fn=enter)
        while not sock.exists():
            time.sleep(0.02)

        print(f"requests per second, {CLIENTS} clients with kept-alive connections, {SECONDS:.0f} s each:")
        for url in ("/_ping", "/v1.45/containers/json?all=1"):
            print(f"  GET {url:<34} {throughput(str(sock), url):8.0f} req/s")

        kran_run = [KRAN, "run", "--rm", "busybox", "true"]
        docker = shutil.which("docker")
        if docker:
            name, via_api = "docker run --rm busybox true (kran's API)", [docker, "run", "--rm", "busybox", "true"]
        else:
            code = f"import docker; docker.DockerClient(base_url='unix://{sock}').containers.run('busybox', 'true', remove=True)"
            name, via_api = "docker-py containers.run (kran's API)", [PY, "-c", code]
        timed(kran_run), timed(via_api)  # warm: page cache, the server's lazy imports
        a, b = [], []
        for _ in range(runs):
            a.append(timed(via_api))
            b.append(timed(kran_run))
        ratios = [x / y for x, y in zip(a, b, strict=True)]
        print(f"\nrun, median of {runs} alternating pairs (min-max):")
        print(f"  {name:<44} {statistics.median(a) * 1000:7.1f} ms ({min(a) * 1000:.0f}-{max(a) * 1000:.0f})")
        print(f"  {'kran run --rm busybox true':<44} {statistics.median(b) * 1000:7.1f} ms ({min(b) * 1000:.0f}-{max(b) * 1000:.0f})")
        print(f"  ratio API/CLI, pair by pair: median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")
    finally:
        if svc is not None:
            svc.terminate()
            svc.wait(10)
        ids = subprocess.run([KRAN, "ps", "-aq"], capture_output=True, text=True, env=env, preexec_fn=enter).stdout.split()
        if ids:
            subprocess.run([KRAN, "rm", "-f", *ids], capture_output=True, env=env, preexec_fn=enter)
        nsmod.remove(ns)
        import hashlib

        shutil.rmtree(Path("/run/kran") / hashlib.sha256(str(root).encode()).hexdigest()[:12], ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
