#!/usr/bin/env python3
"""Image benchmarks (issue: foundation).  Run as root from the repo: .venv/bin/python bench/images.py

1. Builds once (cached in bench/.cache) a Debian bookworm minbase rootfs with debootstrap and
   tars it with GNU tar (numeric owners, xattrs).
2. Layer unpack: kran's apply_layer vs `tar -xpf` of the same tar (median of N runs each).
3. `kran load` of a saved archive vs `docker load` / `podman load` when those work here.
4. `kran images` with 200 images in the store (median of N runs), through the venv's console script.
Prints one line per measurement and the ratios.
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / ".cache"
KRAN = str(Path(sys.executable).parent / "kran")
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")


def sh(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def rootfs_tar() -> Path:
    tar = CACHE / "bookworm-minbase.tar"
    if tar.exists():
        return tar
    if shutil.which("debootstrap") is None:
        sh("apt-get", "install", "-y", "-qq", "debootstrap")
    CACHE.mkdir(parents=True, exist_ok=True)
    d = CACHE / "rootfs"
    shutil.rmtree(d, ignore_errors=True)
    print(f"debootstrap --variant=minbase bookworm (once, cached in {CACHE}) ...", flush=True)
    sh("debootstrap", "--variant=minbase", "bookworm", str(d), MIRROR, stdout=subprocess.DEVNULL)
    sh("tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(d), "-cf", str(tar) + ".tmp", ".")
    os.rename(str(tar) + ".tmp", tar)
    shutil.rmtree(d, ignore_errors=True)
    return tar


def timed(fn, runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def work_dir() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="kran-bench-", dir=str(CACHE)))


def bench_unpack(tar: Path) -> None:
    bench_unpack_in(tar, work_dir(), "ext4 (disk)")
    shm = Path(tempfile.mkdtemp(prefix="kran-bench-", dir="/dev/shm"))
    bench_unpack_in(tar, shm, "tmpfs (CPU-bound)")


def bench_unpack_in(tar: Path, base: Path, where: str) -> None:
    from kran.storage.layertar import apply_layer

    try:
        n = [0]

        def fresh() -> Path:
            n[0] += 1
            p = base / f"d{n[0]}"
            p.mkdir()
            return p

        def gnu() -> None:
            sh("tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", str(tar), "-C", str(fresh()))

        def kran() -> None:
            with open(tar, "rb") as f:
                apply_layer(f, fresh())

        gnu()  # warm the page cache
        t_tar = timed(gnu)
        t_kran = timed(kran)
        files = sum(len(f) + len(d) for _, d, f in os.walk(base / "d1"))
        print(f"unpack on {where}, {tar.stat().st_size / 1e6:.0f} MB, {files} entries: GNU tar {t_tar:.3f}s, kran {t_kran:.3f}s, "
              f"ratio kran/tar {t_kran / t_tar:.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def bench_load(tar: Path) -> None:
    base = work_dir()
    try:
        root = base / "root"
        env = dict(os.environ, KRAN_NOSYNC="0")
        sh(KRAN, "--root", str(root), "import", str(tar), "debian:minbase", stdout=subprocess.DEVNULL, env=env)
        archive = base / "debian.tar"
        sh(KRAN, "--root", str(root), "save", "-o", str(archive), "debian:minbase", env=env)
        k = [0]

        def kran_load() -> None:
            k[0] += 1
            sh(KRAN, "--root", str(base / f"r{k[0]}"), "load", "-q", "-i", str(archive), env=env)

        t_kran = timed(kran_load, 3)
        line = f"load {archive.stat().st_size / 1e6:.0f} MB archive: kran {t_kran:.3f}s"
        runroot = tempfile.mkdtemp(prefix="kpr-", dir="/tmp")  # podman wants a short runroot path
        for tool in ("docker", "podman"):
            cmd = [tool]
            if tool == "podman":  # its own throwaway store: never the host's
                cmd += ["--root", str(base / "podman-root"), "--runroot", runroot, "--storage-driver", "overlay"]
            probe = subprocess.run([*cmd, "info"], capture_output=True, text=True) if shutil.which(tool) else None
            if probe is not None and probe.returncode == 0:
                def other(cmd=cmd) -> None:
                    sh(*cmd, "load", "-q", "-i", str(archive), stdout=subprocess.DEVNULL)
                    subprocess.run([*cmd, "rmi", "-f", "debian:minbase"], capture_output=True)

                t = timed(other, 3)
                line += f", {tool} {t:.3f}s (kran/{tool} {t_kran / t:.2f})"
            else:
                why = (probe.stderr.strip().splitlines() or ["?"])[-1][:80] if probe is not None else "not installed"
                line += f", {tool}: not available here ({why})"
        if (base / "podman-root").exists():
            subprocess.run(["podman", "--root", str(base / "podman-root"), "--runroot", runroot,
                            "system", "reset", "-f"], capture_output=True)
        shutil.rmtree(runroot, ignore_errors=True)
        print(line)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def bench_images_list() -> None:
    import io
    import tarfile

    base = work_dir()
    try:
        root = base / "root"
        sys.path.insert(0, str(REPO))
        from kran.engine import Engine
        from kran.engine.images import import_image

        os.environ["KRAN_NOSYNC"] = "1"
        eng = Engine(str(root))
        for i in range(200):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tf:
                data = f"image {i}\n".encode()
                ti = tarfile.TarInfo(f"file{i}")
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            buf.seek(0)
            import_image(eng, buf, repository=f"img{i}:v{i % 7}")
        out = subprocess.run([KRAN, "--root", str(root), "images"], capture_output=True, text=True, check=True).stdout
        assert out.count("\n") == 201, out[:200]
        t = timed(lambda: subprocess.run([KRAN, "--root", str(root), "images"], capture_output=True, check=True), 11)
        tq = timed(lambda: subprocess.run([KRAN, "--root", str(root), "images", "-q"], capture_output=True, check=True), 11)
        print(f"kran images with 200 images: {t * 1000:.0f} ms (target < 100 ms); images -q: {tq * 1000:.0f} ms")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root")
    sys.path.insert(0, str(REPO))
    which = sys.argv[1:] or ["unpack", "load", "images"]
    tar = rootfs_tar() if {"unpack", "load"} & set(which) else None
    if "unpack" in which:
        bench_unpack(tar)
    if "load" in which:
        bench_load(tar)
    if "images" in which:
        bench_images_list()


if __name__ == "__main__":
    main()
