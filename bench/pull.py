#!/usr/bin/env python3
"""Pull benchmark (issue: registry).  Run as root from the repo: .venv/bin/python bench/pull.py

1. Imports the Debian bookworm minbase rootfs (bench/images.py's cached debootstrap tar) with kran,
   starts Debian's docker-registry on 127.0.0.1 (throwaway storage) and pushes it there twice:
   uncompressed (as kran pushes it) and gzip-compressed (``skopeo copy`` from a kran-saved archive,
   as images on Docker Hub are).
2. Times ``kran pull`` of each into fresh state roots, against the floor
   ``skopeo copy docker://... dir:`` + GNU ``tar -xpf`` of the layer, and ``podman pull`` (its own
   throwaway --root and a short --runroot) when podman works here.  Median of BENCH_RUNS (3) runs;
   each timed run includes removing what it created (rm -r of the root/dir, podman rmi).
   kran runs with fsync on (KRAN_NOSYNC=0); skopeo+tar does not sync.
Prints one line per case with the ratios.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import images as image_bench  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
PY = sys.executable
# pull/push through kran's CLI entry point, whether or not main.py registers them yet
SHIM = (
    "import sys\nfrom kran.cli import main as m\n"
    "for n in ('pull', 'push', 'login', 'logout'):\n    m.COMMANDS.setdefault(n, ('registry', n))\n"
    "sys.exit(m.main(sys.argv[1:]))\n"
)


def kran(root: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, KRAN_NOSYNC="0", KRAN_CONFIG="/nonexistent", KRAN_CERTS_D="/nonexistent")
    return subprocess.run([PY, "-c", SHIM, "--root", str(root), *args], check=True, env=env, **kw)


def start_registry(base: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = base / "config.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("docker-registry did not start")


def main() -> None:
    if shutil.which("docker-registry") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "docker-registry"], check=True)
    tar = image_bench.rootfs_tar()
    base = image_bench.work_dir()
    proc = None
    runroot = tempfile.mkdtemp(prefix="kpr-", dir="/tmp")  # podman wants a short runroot path
    try:
        proc, port = start_registry(base)
        host = f"127.0.0.1:{port}"
        src = base / "src"
        kran(src, "import", str(tar), f"{host}/debian:plain", stdout=subprocess.DEVNULL)
        t0 = time.perf_counter()
        kran(src, "push", "-q", f"{host}/debian:plain", stdout=subprocess.DEVNULL)
        t_push = time.perf_counter() - t0
        archive = base / "debian.tar"
        kran(src, "save", "-o", str(archive), f"{host}/debian:plain")
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"docker-archive:{archive}",
                        f"docker://{host}/debian:gzip"], check=True)
        archive.unlink()
        print(f"push of {tar.stat().st_size / 1e6:.0f} MB (1 uncompressed layer) to a local registry: kran {t_push:.3f}s")

        podman = ["podman", "--root", str(base / "podman-root"), "--runroot", runroot, "--storage-driver", "overlay"]
        probe = subprocess.run([*podman, "info"], capture_output=True, text=True) if shutil.which("podman") else None
        podman_ok = probe is not None and probe.returncode == 0
        n = [0]

        for tag in ("plain", "gzip"):
            ref = f"{host}/debian:{tag}"

            def kran_pull(ref: str = ref) -> None:
                n[0] += 1
                root = base / f"r{n[0]}"
                kran(root, "pull", "-q", ref, stdout=subprocess.DEVNULL)
                shutil.rmtree(root)

            def floor(ref: str = ref) -> None:
                n[0] += 1
                d = base / f"f{n[0]}"
                subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"dir:{d}"], check=True)
                out = d / "rootfs"
                out.mkdir()
                import json

                for layer in json.loads((d / "manifest.json").read_text())["layers"]:
                    blob = d / layer["digest"].split(":", 1)[1]
                    subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", str(blob), "-C", str(out)], check=True)
                shutil.rmtree(d)

            def podman_pull(ref: str = ref) -> None:
                subprocess.run([*podman, "pull", "-q", "--tls-verify=false", ref], check=True, stdout=subprocess.DEVNULL)
                subprocess.run([*podman, "rmi", "-f", ref], capture_output=True)

            floor()  # warm the registry's page cache
            t_floor = image_bench.timed(floor, RUNS)
            t_kran = image_bench.timed(kran_pull, RUNS)
            line = f"pull debian:{tag}: kran {t_kran:.3f}s, skopeo+tar floor {t_floor:.3f}s (kran/floor {t_kran / t_floor:.2f})"
            if podman_ok:
                t_podman = image_bench.timed(podman_pull, RUNS)
                line += f", podman {t_podman:.3f}s (kran/podman {t_kran / t_podman:.2f})"
            else:
                why = (probe.stderr.strip().splitlines() or ["?"])[-1][:80] if probe is not None else "not installed"
                line += f", podman: not available here ({why})"
            print(line, flush=True)
    finally:
        if proc is not None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait()
        if (base / "podman-root").exists():
            subprocess.run(["podman", "--root", str(base / "podman-root"), "--runroot", runroot, "system", "reset", "-f"],
                           capture_output=True)
        shutil.rmtree(runroot, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
