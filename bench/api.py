"""The Engine API against the CLI: the same operations through `kran system service` (docker CLI and
docker-py as clients) and through `kran` itself.

    .venv/bin/python bench/api.py [RUNS]

Needs root (containers run on the default bridge of a private network namespace this script makes
and removes).  The docker CLI rows are skipped when docker is not installed.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KRAN = str(REPO / ".venv" / "bin" / "kran")


def main() -> int:
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
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp / "dc"))

    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, preexec_fn=enter)

    def timed(*cmd: str) -> float:
        t = time.perf_counter()
        run(*cmd)
        return time.perf_counter() - t

    svc = None
    try:
        tar = tmp / "bb.tar"
        with open(tar, "wb") as f:
            subprocess.run(["sh", str(REPO / "scripts" / "busybox-rootfs.sh")], stdout=f, check=True)
        run(KRAN, "--root", str(root), "import", "-c", 'CMD ["sh"]', str(tar), "busybox")
        svc = subprocess.Popen([KRAN, "--root", str(root), "system", "service", f"unix://{sock}"],
                               stderr=subprocess.DEVNULL, preexec_fn=enter)
        while not sock.exists():
            time.sleep(0.02)
        rows: list[tuple[str, list[float]]] = []
        cases = [("kran run --rm busybox true", [KRAN, "--root", str(root), "run", "--rm", "busybox", "true"]),
                 ("kran ps -a", [KRAN, "--root", str(root), "ps", "-a"])]
        docker = shutil.which("docker")
        if docker:
            cases += [("docker run --rm busybox true (kran API)", [docker, "run", "--rm", "busybox", "true"]),
                      ("docker ps -a (kran API)", [docker, "ps", "-a"])]
        py = str(REPO / ".venv" / "bin" / "python")
        code = f"import docker; docker.DockerClient(base_url='unix://{sock}').containers.run('busybox', 'true', remove=True)"
        cases.append(("docker-py containers.run (kran API)", [py, "-c", code]))
        for name, cmd in cases:
            timed(*cmd)  # warm
            rows.append((name, [timed(*cmd) for _ in range(runs)]))
        print(f"median of {runs} (2-core VM):")
        for name, ts in rows:
            print(f"  {name:<42} {statistics.median(ts) * 1000:7.1f} ms")
        if not docker:
            print("  (the docker CLI is not installed: its rows are skipped)")
    finally:
        if svc is not None:
            svc.terminate()
            svc.wait(10)
        ids = subprocess.run([KRAN, "--root", str(root), "ps", "-aq"], capture_output=True, text=True,
                             preexec_fn=enter).stdout.split()
        if ids:
            subprocess.run([KRAN, "--root", str(root), "rm", "-f", *ids], capture_output=True, preexec_fn=enter)
        nsmod.remove(ns)
        import hashlib

        shutil.rmtree(Path("/run/kran") / hashlib.sha256(str(root).encode()).hexdigest()[:12], ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
