#!/usr/bin/env python3
"""Build benchmark (issue: build).  Run as root: .venv/bin/python bench/build.py

A 10-instruction Dockerfile on the busybox image: a cold build (--no-cache), a fully cached rebuild,
a rebuild after touching one copied file (content unchanged: still cached) and after changing it,
side by side with `podman build` (own throwaway store) and `docker build` (DOCKER_BUILDKIT=0) when
they work here.  Prints medians and ratios.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KRAN = str(Path(sys.executable).parent / "kran")
RUNS = int(os.environ.get("BENCH_RUNS", "5"))

DOCKERFILE = """FROM busybox
ENV APP=/app
WORKDIR /app
COPY config.txt /app/config.txt
RUN echo built > /app/built.txt
COPY data /app/data
RUN ls /app/data | wc -l > /app/count.txt
LABEL bench=yes
EXPOSE 8080
CMD ["cat", "/app/built.txt"]
"""


def timed(cmd: list[str], runs: int = RUNS, before=None, **kw) -> float:
    times = []
    for _ in range(runs):
        if before:
            before()
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root")
    base = Path(tempfile.mkdtemp(prefix="kran-bench-build-"))
    root = base / "root"
    env = dict(os.environ, KRAN_ROOT=str(root))
    try:
        ctx = base / "ctx"
        (ctx / "data").mkdir(parents=True)
        (ctx / "Dockerfile").write_text(DOCKERFILE)
        (ctx / "config.txt").write_text("v1\n")
        for i in range(50):
            (ctx / "data" / f"f{i}").write_text(f"{i}\n" * 100)
        rootfs = subprocess.run(["sh", str(REPO / "scripts" / "busybox-rootfs.sh")], capture_output=True, check=True).stdout
        subprocess.run([KRAN, "import", "-c", 'CMD ["sh"]', "-", "busybox"], input=rootfs, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        build = [KRAN, "build", "-q", "-t", "bench:1", str(ctx)]
        res: dict[str, dict[str, float]] = {"kran": {}}
        res["kran"]["cold"] = timed([KRAN, "build", "-q", "--no-cache", "-t", "bench:1", str(ctx)], env=env)
        subprocess.run(build, env=env, check=True, stdout=subprocess.DEVNULL)
        res["kran"]["cached"] = timed(build, env=env)
        res["kran"]["touched"] = timed(build, env=env, before=lambda: os.utime(ctx / "config.txt"))
        flip = [0]

        def change() -> None:
            flip[0] += 1
            (ctx / "config.txt").write_text(f"v{flip[0]}\n")

        res["kran"]["changed"] = timed(build, env=env, before=change)
        save = subprocess.run([KRAN, "save", "busybox"], env=env, capture_output=True, check=True).stdout
        for tool in ("podman", "docker"):
            cmd = [tool]
            runroot = None
            if tool == "podman":
                runroot = tempfile.mkdtemp(prefix="kpb-", dir="/tmp")
                cmd += ["--root", str(base / "podman-root"), "--runroot", runroot, "--storage-driver", "overlay"]
            if not shutil.which(tool) or subprocess.run([*cmd, "info"], capture_output=True).returncode != 0:
                print(f"{tool}: not available here")
                continue
            subprocess.run([*cmd, "load"], input=save, capture_output=True, check=True)
            tb = [*cmd, "build", "-q", "-t", "bench:1"]
            if tool == "podman":
                tb += ["--layers", "--ulimit", "nofile=1024:1024"]
            benv = dict(os.environ, DOCKER_BUILDKIT="0")
            if subprocess.run([*tb, "--no-cache", str(ctx)], capture_output=True, env=benv).returncode != 0:
                print(f"{tool}: build fails here")
                continue
            r = res.setdefault(tool, {})
            r["cold"] = timed([*tb, "--no-cache", str(ctx)], env=benv)
            subprocess.run([*tb, str(ctx)], env=benv, check=True, capture_output=True)
            r["cached"] = timed([*tb, str(ctx)], env=benv)
            r["touched"] = timed([*tb, str(ctx)], env=benv, before=lambda: os.utime(ctx / "config.txt"))
            r["changed"] = timed([*tb, str(ctx)], env=benv, before=change)
            if runroot:
                subprocess.run([*cmd, "system", "reset", "-f"], capture_output=True)
                shutil.rmtree(runroot, ignore_errors=True)
        for case in ("cold", "cached", "touched", "changed"):
            line = f"{case:<8} kran {res['kran'][case] * 1000:7.0f} ms"
            for tool in ("podman", "docker"):
                if tool in res:
                    t = res[tool][case]
                    line += f"   {tool} {t * 1000:7.0f} ms (kran/{tool} {res['kran'][case] / t:.2f})"
            print(line)
    finally:
        subprocess.run([KRAN, "rm", "-f", *subprocess.run([KRAN, "ps", "-aq"], env=env, capture_output=True,
                                                          text=True).stdout.split()], env=env, capture_output=True)
        import hashlib

        shutil.rmtree(Path("/run/kran") / hashlib.sha256(str(root).encode()).hexdigest()[:12], ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
