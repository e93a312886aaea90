#!/usr/bin/env python3
"""Container benchmarks (issue: containers).  Run as root from the repo: .venv/bin/python bench/containers.py

1. `kran run --rm busybox true` vs `runc run` and `kran-runtime run` of the same bundle (kran's own
   spec over the same overlay rootfs), and `podman run --rm` / `docker run --rm` when they work here.
2. `kran ps -a` with 100 containers.
3. Memory of 50 idle containers: the sum of their monitors' RSS.
Prints medians and ratios.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
KRAN = str(BIN / "kran")
RUNS = int(os.environ.get("BENCH_RUNS", "15"))


def sh(*cmd: str, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdout", subprocess.DEVNULL)
    return subprocess.run(cmd, check=True, **kw)


def median_time(fn, runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root")
    base = Path(tempfile.mkdtemp(prefix="kran-bench-"))
    root = base / "root"
    env = dict(os.environ, KRAN_ROOT=str(root))
    k = lambda *a, **kw: sh(KRAN, *a, env=env, **kw)  # noqa: E731
    try:
        rootfs = subprocess.run(["sh", str(REPO / "scripts" / "busybox-rootfs.sh")], capture_output=True, check=True).stdout
        sh(KRAN, "import", "-", "busybox", input=rootfs, env=env)
        k("run", "--rm", "busybox", "true")  # warm up
        t_kran = median_time(lambda: k("run", "--rm", "busybox", "true"))

        # the same bundle for runc / kran-runtime: kran's spec for a created container, its overlay mounted
        cid = subprocess.run([KRAN, "create", "busybox", "true"], env=env, capture_output=True, text=True,
                             check=True).stdout.strip()
        sh(KRAN, "start", cid, env=env)
        sh(KRAN, "wait", cid, env=env)
        cdir = root / "containers" / cid
        spec = json.loads((cdir / "config.json").read_text())
        info = json.loads(subprocess.run([KRAN, "inspect", cid], env=env, capture_output=True, check=True).stdout)[0]
        bundle = base / "bundle"
        (bundle / "rootfs").mkdir(parents=True)
        lower = info["GraphDriver"]["Data"]["LowerDir"]
        (base / "up").mkdir()
        (base / "wk").mkdir()
        sh("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={base}/up,workdir={base}/wk",
           str(bundle / "rootfs"))
        try:
            spec["root"]["path"] = str(bundle / "rootfs")
            spec["process"]["terminal"] = False
            spec["linux"]["cgroupsPath"] = "/kran-bench/x"
            (bundle / "config.json").write_text(json.dumps(spec))
            results = {"kran run --rm": t_kran}
            n = [0]
            for name, binary in (("runc run", shutil.which("runc")), ("kran-runtime run", str(BIN / "kran-runtime"))):
                if not binary:
                    continue
                rr = base / f"rt-{name.split()[0]}"

                def once(binary=binary, rr=rr) -> None:
                    n[0] += 1
                    sh(binary, "--root", str(rr), "run", "--bundle", str(bundle), f"b{n[0]}", stdin=subprocess.DEVNULL)

                once()
                results[name] = median_time(once)
        finally:
            subprocess.run(["umount", str(bundle / "rootfs")])
        for tool in ("podman", "docker"):
            cmd = [tool]
            if tool == "podman":
                runroot = tempfile.mkdtemp(prefix="kpr-", dir="/tmp")  # podman wants a short runroot path
                cmd += ["--root", str(base / "podman-root"), "--runroot", runroot, "--storage-driver", "overlay"]
            if not shutil.which(tool) or subprocess.run([*cmd, "info"], capture_output=True).returncode != 0:
                print(f"{tool}: not available here")
                continue
            save = subprocess.run([KRAN, "save", "busybox"], env=env, capture_output=True, check=True).stdout
            sh(*cmd, "load", input=save)
            # podman raises RLIMIT_NOFILE by default, which this machine (no CAP_SYS_RESOURCE) refuses
            extra = ["--ulimit", "host"] if tool == "podman" else []
            run = [*cmd, "run", "--rm", "--network", "none", *extra, "busybox", "true"]
            if subprocess.run(run, capture_output=True).returncode != 0:
                print(f"{tool}: run failed here")
            else:
                results[f"{tool} run --rm"] = median_time(lambda run=run: sh(*run), 7)
            if tool == "podman":
                subprocess.run([*cmd, "system", "reset", "-f"], capture_output=True)
                shutil.rmtree(runroot, ignore_errors=True)
        runc = results.get("runc run")
        for name, t in results.items():
            ratio = f"  ({t / runc:.2f}x runc run)" if runc else ""
            print(f"{name:<22} {t * 1000:7.1f} ms{ratio}")
        # 50 idle containers: monitor RSS
        ids = []
        for _ in range(50):
            ids.append(subprocess.run([KRAN, "run", "-d", "busybox", "sleep", "3600"], env=env, capture_output=True,
                                      text=True, check=True).stdout.strip())
        rss = []
        for c in ids:
            st = json.loads((root / "containers" / c / "state.json").read_text())
            status = Path(f"/proc/{st['monitor_pid']}/status").read_text()
            rss.append(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))))
        print(f"50 idle containers: monitor RSS sum {sum(rss) / 1024:.1f} MiB, per monitor median "
              f"{statistics.median(rss) / 1024:.1f} MiB (max {max(rss) / 1024:.1f} MiB; target <= 12 MiB)")
        for _ in range(50):
            subprocess.run([KRAN, "create", "busybox", "true"], env=env, capture_output=True, check=True)
        t_ps = median_time(lambda: k("ps", "-a"), 11)
        print(f"kran ps -a with 100 containers: {t_ps * 1000:.0f} ms")
    finally:
        subprocess.run([KRAN, "rm", "-f", *subprocess.run([KRAN, "ps", "-aq"], env=env, capture_output=True,
                                                          text=True).stdout.split()], env=env, capture_output=True)
        for d in sorted(Path("/sys/fs/cgroup").glob("*/kran-bench"), reverse=True):
            for sub in d.glob("*"):
                if sub.is_dir():
                    os.rmdir(sub)
            os.rmdir(d)
        import hashlib

        shutil.rmtree(Path("/run/kran") / hashlib.sha256(str(root).encode()).hexdigest()[:12], ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
