"""Side-by-side timing of ``run`` for a busybox bundle executing ``true``: kran-runtime vs runc.

    sudo .venv/bin/python -m tests.runtime.bench_run [N] [PAUSE_SECONDS]

Interleaves the runtimes, pauses between runs (default 0.3 s, so each starts "cold"), and
prints the median of N (default 10).  Not collected by pytest.
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

from .conftest import REPO, make_rootfs


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3
    tmp = Path(tempfile.mkdtemp(prefix="kt-bench-"))
    roots = [Path(tempfile.mkdtemp(prefix="kt-bench-", dir="/run")) for _ in range(2)]
    try:
        make_rootfs(tmp / "rootfs")
        # Bytecode as an installed package has it (this dev environment sets PYTHONDONTWRITEBYTECODE),
        # cached outside the tree.
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONPYCACHEPREFIX=str(tmp / "pycache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([sys.executable, "-m", "kran.runtime", "spec", "-b", str(tmp)], check=True, env=env)
        spec = json.loads((tmp / "config.json").read_text())
        spec["process"].update(terminal=False, args=["true"])
        (tmp / "config.json").write_text(json.dumps(spec))
        script = tmp / "kran-runtime"  # what pip's console script does
        script.write_text(
            f"#!{sys.executable}\nimport sys\nfrom kran.runtime.cli import main\nsys.exit(main())\n"
        )
        script.chmod(0o755)
        cmds = {
            "runc": ["runc", "--root", str(roots[0]), "run", "-b", str(tmp)],
            "kran-runtime": [str(script), "--root", str(roots[1]), "run", "-b", str(tmp)],
            "kran-runtime (python -S)": [
                sys.executable,
                "-S",
                str(script),
                "--root",
                str(roots[1]),
                "run",
                "-b",
                str(tmp),
            ],
        }
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for c in cmds.values():
            subprocess.run([*c, "warmup"], check=True, env=env)
        for i in range(n):
            for k, c in cmds.items():
                time.sleep(pause)
                t = time.perf_counter()
                subprocess.run([*c, f"b{i}"], check=True, env=env)
                times[k].append(time.perf_counter() - t)
        ref = statistics.median(times["runc"])
        for k, v in times.items():
            med = statistics.median(v)
            print(f"{k:26s} median {med * 1000:6.1f} ms  min {min(v) * 1000:6.1f} ms  ratio {med / ref:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for r in roots:
            shutil.rmtree(r, ignore_errors=True)


if __name__ == "__main__":
    main()
