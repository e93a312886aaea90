#!/usr/bin/env python3
"""Network benchmarks (issue: networking).  Run as root from the repo: .venv/bin/python bench/network.py [--json]

Everything runs inside a private network namespace made for the run (like tests/network): kran's
bridge, veths, nft rules and published ports live there and vanish with it; the host's network is
never touched.  A veth pair in that namespace carries its "public" address 10.123.0.1.

1. Container start: `kran run -d busybox sleep 60` vs the same with `-p HOSTPORT:80` (a new host
   port each run), and `kran run --rm busybox true` vs `--network none` (the bridge's cost).
2. Throughput through a published port: curl a 200 MiB file from busybox httpd (on a tmpfs) via
   (a) the container's IP directly, (b) the namespace's public address 10.123.0.1:PORT (nftables
   DNAT, kernel path), (c) 127.0.0.1:PORT (kran's userland proxy in the container's monitor).
3. `docker run -p` as an anchor when a docker daemon is reachable.
Prints medians (BENCH_RUNS, default 15 for starts, 5 for transfers); --json also prints them as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent
KRAN = str(BIN / "kran")
RUNS = int(os.environ.get("BENCH_RUNS", "15"))
XFER_RUNS = int(os.environ.get("BENCH_XFER_RUNS", "5"))
FILE_MIB = int(os.environ.get("BENCH_FILE_MIB", "200"))
HOST_IP = "10.123.0.1"  # the namespace's "public" address
BUSYBOX_CHANGES = ("-c", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "-c", 'CMD ["sh"]')


def median_time(fn, runs: int = RUNS, between=None) -> float:
    """Median wall time of fn(); between() runs untimed after each call."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if between:
            between()
    return statistics.median(times)


class Bench:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.ns = f"/run/kran-bench-{uuid.uuid4().hex[:12]}"

    def _enter(self) -> None:
        from kran.sys.ns import CLONE_NEWNET, setns

        fd = os.open(self.ns, os.O_RDONLY)
        setns(fd, CLONE_NEWNET)
        os.close(fd)

    def run(self, *cmd: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        """cmd inside the benchmark's network namespace; stdout returned as text."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.run(list(cmd), timeout=timeout, preexec_fn=self._enter, **kw)
        if check and p.returncode != 0:
            err = (p.stderr or b"").decode(errors="replace")
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {err}")
        return p

    def kran(self, *args: str, **kw) -> str:
        return self.run(KRAN, "--root", str(self.root), *args, **kw).stdout.decode().strip()

    def setup_netns(self) -> None:
        from kran.network import netns

        netns.create(self.ns)
        self.run("ip", "link", "add", "kthost0", "type", "veth", "peer", "name", "kthost1")
        self.run("ip", "addr", "add", f"{HOST_IP}/24", "dev", "kthost0")
        self.run("ip", "link", "set", "kthost1", "up")
        self.run("ip", "link", "set", "kthost0", "up")
        self.run("ip", "route", "add", "default", "dev", "kthost0")

    def cleanup(self) -> None:
        from kran.network import netns

        if (self.root / "kran.db").exists() and os.path.exists(self.ns):
            ids = self.kran("ps", "-aq", "--no-trunc", check=False).split()
            if ids:
                self.kran("rm", "-f", *ids, check=False)
        run_dir = Path("/run/kran") / hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        leaked = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if str(self.base) in line or f" {run_dir}/" in line]
        for m in reversed(leaked):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(run_dir, ignore_errors=True)
        netns.remove(self.ns)
        shutil.rmtree(self.base, ignore_errors=True)
        left = [p for p in (str(run_dir), self.ns, str(self.base)) if os.path.exists(p)]
        left += [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                 if str(self.base) in line or str(run_dir) in line or self.ns in line]
        if left:
            print(f"warning: left behind: {left}", file=sys.stderr)

    def proxy_cpu(self, cid: str) -> float:
        """CPU seconds used so far by the container's monitor (which runs the userland proxy)."""
        full = self.kran("inspect", "-f", "{{.Id}}", cid)
        st = json.loads((self.root / "containers" / full / "state.json").read_text())
        fields = Path(f"/proc/{st['monitor_pid']}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def curl_speed(self, url: str) -> float:
        """Download speed in MB/s (10^6 bytes) of one GET of url, from inside the namespace."""
        out = self.run("curl", "-sS", "--max-time", "60", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}",
                       url).stdout.decode().split()
        if int(float(out[1])) != FILE_MIB << 20:
            raise RuntimeError(f"{url}: got {out[1]} bytes, not {FILE_MIB << 20}")
        return float(out[0]) / 1e6


def bench_start(b: Bench) -> dict[str, float]:
    """Each variant once per round, interleaved, so drift in the machine's load hits them alike."""
    port = [18000]

    def rm_all() -> None:
        ids = b.kran("ps", "-aq", "--no-trunc").split()
        if ids:
            b.kran("rm", "-f", *ids)

    def run_dp() -> None:
        port[0] += 1
        b.kran("run", "-d", "-p", f"{port[0]}:80", "busybox", "sleep", "60")

    variants = {
        "run -d": (lambda: b.kran("run", "-d", "busybox", "sleep", "60"), rm_all),
        "run -d -p PORT:80": (run_dp, rm_all),
        "run --rm true": (lambda: b.kran("run", "--rm", "busybox", "true"), None),
        "run --rm --network none true": (lambda: b.kran("run", "--rm", "--network", "none", "busybox", "true"), None),
    }
    b.kran("run", "--rm", "busybox", "true")  # warm up (bridge, nft table, caches)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(RUNS):
        for name, (fn, after) in variants.items():
            times[name].append(median_time(fn, 1, after))
    return {name: statistics.median(t) for name, t in times.items()}


def bench_throughput(b: Bench) -> dict[str, dict[str, float]]:
    port = 18888
    script = (f"dd if=/dev/zero of=/www/big bs=1M count={FILE_MIB} 2>/dev/null && touch /www/ready && "
              "exec httpd -f -p 80 -h /www")
    cid = b.kran("run", "-d", "--tmpfs", "/www", "-p", f"{port}:80", "busybox", "sh", "-c", script)
    ip = b.kran("inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid)
    deadline = time.monotonic() + 30
    while b.run("curl", "-sf", "-o", "/dev/null", f"http://{ip}/ready", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"httpd in {cid[:12]} did not come up at {ip}:80")
        time.sleep(0.2)
    paths = {
        f"direct {ip}:80": f"http://{ip}:80/big",
        f"DNAT {HOST_IP}:{port}": f"http://{HOST_IP}:{port}/big",
        f"proxy 127.0.0.1:{port}": f"http://127.0.0.1:{port}/big",
    }
    out = {}
    for name, url in paths.items():
        b.curl_speed(url)  # warm up
        cpu0 = b.proxy_cpu(cid)
        speeds = [b.curl_speed(url) for _ in range(XFER_RUNS)]
        out[name] = {"MB/s": statistics.median(speeds), "proxy_cpu_s": (b.proxy_cpu(cid) - cpu0) / XFER_RUNS}
    b.kran("rm", "-f", cid)
    return out


def bench_docker() -> dict[str, float] | None:
    if not shutil.which("docker"):
        return None
    if subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                      timeout=20).returncode != 0:
        return None
    if subprocess.run(["docker", "image", "inspect", "busybox"], capture_output=True).returncode != 0:
        return None  # no local busybox image; the benchmark pulls nothing
    port = [28000]
    ids: list[str] = []

    def run(publish: bool) -> None:
        extra = []
        if publish:
            port[0] += 1
            extra = ["-p", f"127.0.0.1:{port[0]}:80"]
        ids.append(subprocess.run(["docker", "run", "-d", *extra, "busybox", "sleep", "60"], capture_output=True,
                                  text=True, check=True).stdout.strip())

    def rm() -> None:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        ids.clear()

    try:
        return {"docker run -d": median_time(lambda: run(False), between=rm),
                "docker run -d -p PORT:80": median_time(lambda: run(True), between=rm)}
    finally:
        rm()


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root")
    as_json = "--json" in sys.argv[1:]
    b = Bench(Path(tempfile.mkdtemp(prefix="kran-bench-net-")))
    results: dict = {}
    t_total = time.perf_counter()
    try:
        b.setup_netns()
        bb = b.base / "bb.tar"
        with open(bb, "wb") as f:
            subprocess.run(["sh", str(REPO / "scripts" / "busybox-rootfs.sh")], stdout=f, check=True)
        b.kran("import", *BUSYBOX_CHANGES, str(bb), "busybox")

        start = bench_start(b)
        results["start_s"] = start
        print(f"container start (median of {RUNS}):")
        for name, t in start.items():
            print(f"  kran {name:<30} {t * 1000:7.1f} ms")
        print(f"  -p costs {(start['run -d -p PORT:80'] - start['run -d']) * 1000:+.1f} ms; "
              f"the bridge costs {(start['run --rm true'] - start['run --rm --network none true']) * 1000:+.1f} ms "
              "per run --rm")

        xfer = bench_throughput(b)
        results["throughput"] = xfer
        print(f"\nthroughput, curl GET of a {FILE_MIB} MiB file from busybox httpd (median of {XFER_RUNS}):")
        for name, r in xfer.items():
            print(f"  {name:<28} {r['MB/s']:8.0f} MB/s   (proxy CPU {r['proxy_cpu_s']:.2f} s per GET)")

        docker = bench_docker()
        if docker is None:
            print("\ndocker: not available here (no docker CLI, daemon, or local busybox image)")
        else:
            results["docker_start_s"] = docker
            print(f"\ndocker anchor (median of {RUNS}):")
            for name, t in docker.items():
                print(f"  {name:<35} {t * 1000:7.1f} ms")
    finally:
        b.cleanup()
    results["total_s"] = time.perf_counter() - t_total
    print(f"\ntotal {results['total_s']:.0f} s")
    if as_json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
