#!/usr/bin/env python3
"""Backups of containers' top layers against "the Docker way" (issue #13).  Run as root from the repo:

    .venv/bin/python bench/backup.py [RUNS]

The set-up, untimed: an image of about 200 MB (Debian's busybox-static rootfs, as
scripts/busybox-rootfs.sh makes it, plus 20 files of 10 MB of random bytes in four directories,
so nothing compresses), ``kran import``-ed into a private state root; 20 containers of it,
RUNNING (``sleep 3600``, ``--network none``: no bridge, so no network namespace is needed), each
given about 1 MB of its own by one ``kran exec``: three new files (1 MiB of random bytes), an
image file deleted (a whiteout) and an image file chmod-ed (a copy-up of 4 KiB).

Timed, as whole processes (each command from just before its fork to just after its reap; a
step that is a sequence of commands is the sum), A and B in turn (A B A B ...) so that a drift of
the machine's speed hits both, ratios taken pair by pair and their median printed.  Before each
side's step, untimed, a ``sync``: kran backup fsyncs what it writes, ``save -o`` (as docker's) does
not, and neither should wait for the other's writeback (B's ~4 GB of archives reach the disk
outside its figures, which favours B):

1. **Backup.**  A: ``kran backup bk01 ... bk20 oci:DIR`` (one command, a fresh DIR each run);
   B: the Docker way, ``kran commit`` + ``kran save -o`` of each container (what a docker user
   does to keep a container: the saved archive carries the whole image).  Bytes: what DIR holds
   after A, the sum of the archives after B.  dockerd is never started; podman's commit + save
   (private --root/--runroot, the same containers made there) when podman is installed.  Once,
   for reference: ``kran save -o`` of the 20 committed images into ONE archive (the base shared).
2. **Incremental.**  Each container rewrites a 4 KiB file (untimed ``kran exec``), then
   ``kran backup --incremental`` of all 20 into the last DIR of (1); RUNS times (a chain grows).
3. **Restore.**  On a second state root that has the base image (imported there from the same
   tar, so its image ID differs; restore finds it by its layers).  A: ``kran restore
   oci:DIR:bkNN`` of the 20 (their chains from 1 and 2); B: ``kran load -i`` of each archive of
   (1) + ``kran create``.  The 20 containers (and B's images) are removed, untimed, after each.
4. **Frozen time** of each running container, the ``FrozenMs`` each backup of 1 and 2 records in
   its config (from pause's return to resume's return, in the runtime): median and max.
5. **Registry.**  Debian's ``docker-registry`` on 127.0.0.1 (throwaway storage), two per pair so
   that neither side finds the other's layers there, each given the base image by ``kran push``
   first (untimed).  A: ``kran backup bk01 ... bk20 127.0.0.1:PORT/backups``, then ``kran restore
   127.0.0.1:PORT/backups/bkNN`` of the 20 on a fresh root WITHOUT the base (the first restore
   pulls it by its digest); B: ``kran commit`` + ``kran push`` of each, then ``kran pull`` +
   ``kran create`` of each on a fresh root.  Bytes: what the registry's storage grew by.

Targets (issue #13): backup bytes <= 2 % and time <= 10 % of the Docker way; frozen <= 50 ms.
RUNS pairs each (default 5) after one warm-up pair of 1.  Default fsync behaviour, no config file,
no credentials.  Every root, container, registry process (by PID) and file goes at the end, also
on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

N = 20
NAMES = [f"bk{i:02d}" for i in range(1, N + 1)]
IMAGE = "bench-backup:1"
CHANGES = ("-c", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "-c", 'CMD ["sh"]')
# ~1 MB per container: new files, a deleted image file (whiteout), a chmod (copy-up of 4 KiB)
WRITE = ("mkdir -p /srv/state && dd if=/dev/urandom of=/srv/state/a bs=64k count=8 2>/dev/null && "
         "dd if=/dev/urandom of=/srv/state/b bs=64k count=4 2>/dev/null && "
         "dd if=/dev/urandom of=/srv/state/c bs=64k count=4 2>/dev/null && "
         "rm /app/logs/old.log && chmod 600 /app/etc/app.conf")
SMALL = "dd if=/dev/urandom of=/srv/state/small bs=4k count=1 2>/dev/null"


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: unwind through the finally blocks like Ctrl-C does."""


_signalled: list[str] = []


def _on_signal(signum: int, _frame) -> None:
    _signalled.append(signal.Signals(signum).name)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(_signalled[-1])


def _failed(what: str, code: int, err: bytes) -> None:
    if _signalled:  # Ctrl-C reaches the timed kran too: its exit is the signal's, not a failure
        raise KeyboardInterrupt
    raise SystemExit(f"{what} failed ({code}):\n{err.decode(errors='replace')}")


# --- running kran -------------------------------------------------------------------------------

class Kran:
    """``kran --root ROOT ...`` as a user runs it, with no config file and no credentials."""

    def __init__(self, root: Path, base: Path) -> None:
        self.root = root
        self.env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": "/root",
                    "LANG": "C.UTF-8", "KRAN_CONFIG": "/nonexistent", "KRAN_CERTS_D": "/nonexistent",
                    "DOCKER_CONFIG": str(base / "docker-config")}
        self.cwd = str(base)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "kran", "--root", str(self.root), *args]

    def run(self, *args: str, check: bool = True) -> str:
        """Untimed (set-up, clean-up): stdout."""
        p = subprocess.run(self.argv(*args), capture_output=True, env=self.env, cwd=self.cwd, timeout=900)
        if check and p.returncode != 0:
            _failed(f"kran {' '.join(args)}", p.returncode, p.stderr)
        return p.stdout.decode(errors="replace")

    def timed(self, *args: str, out: list[str] | None = None) -> float:
        """Wall seconds of one command, from just before the fork to just after the reap."""
        with tempfile.TemporaryFile() as o, tempfile.TemporaryFile() as e:
            t0 = time.perf_counter()
            p = subprocess.Popen(self.argv(*args), stdin=subprocess.DEVNULL, stdout=o, stderr=e, env=self.env,
                                 cwd=self.cwd)
            p.wait()
            t = time.perf_counter() - t0
            if p.returncode != 0:
                e.seek(0)
                _failed(f"kran {' '.join(args)}", p.returncode, e.read())
            if out is not None:
                o.seek(0)
                out.append(o.read().decode(errors="replace"))
        return t

    def remove_all(self) -> None:
        ids = self.run("ps", "-aq", "--no-trunc", check=False).split()
        if ids:
            self.run("rm", "-f", *ids, check=False)


def settle() -> None:
    """Untimed, before each side's step: write back what is dirty, so that neither side pays for the
    other's writes (kran backup fsyncs its blobs; save -o, like docker's, does not -- B's writeback of
    its archives is therefore in no figure, which favours B)."""
    os.sync()


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) if path.exists() else 0


# --- the image and the containers ---------------------------------------------------------------

def build_image(base: Path) -> Path:
    """busybox rootfs + /app: 20 x 10 MB of random bytes, a config file, a log the containers delete."""
    bb = subprocess.run(["sh", str(REPO / "scripts" / "busybox-rootfs.sh")], capture_output=True, check=True).stdout
    out = base / "image.tar"
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t, tarfile.open(fileobj=io.BytesIO(bb)) as src:
        for m in src:
            t.addfile(m, src.extractfile(m) if m.isfile() else None)

        def add(name: str, data: bytes | None, mode: int = 0o644) -> None:
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.mode = 1704067200, mode
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))

        for d in ("app", "app/etc", "app/logs", *(f"app/data{i}" for i in range(4))):
            add(d, None)
        for i in range(20):
            add(f"app/data{i % 4}/blob{i:02d}.bin", os.urandom(10 << 20))
        add("app/etc/app.conf", b"# settings\n" * 372)
        add("app/logs/old.log", os.urandom(64 << 10))
    return out


def start_containers(k: Kran) -> None:
    for n in NAMES:
        k.run("run", "-d", "--network", "none", "--name", n, IMAGE, "sleep", "3600")
        k.run("exec", n, "sh", "-c", WRITE)


def touch_small(k: Kran) -> None:
    for n in NAMES:
        k.run("exec", n, "sh", "-c", SMALL)


# --- reading what a backup directory holds ------------------------------------------------------

def frozen_ms(layout: Path, seen: set[str]) -> list[float]:
    """FrozenMs of each time-tagged backup in the layout's index.json not in ``seen`` (added to it)."""
    idx = json.loads((layout / "index.json").read_text())
    out = []
    for m in idx["manifests"]:
        ref = m.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
        if ref.endswith(":latest") or ref in seen:
            continue
        seen.add(ref)
        man = json.loads((layout / "blobs" / "sha256" / m["digest"].split(":")[1]).read_text())
        cfg = json.loads((layout / "blobs" / "sha256" / man["config"]["digest"].split(":")[1]).read_text())
        out.append(float(cfg["kran.backup"]["FrozenMs"]))
    return out


# --- reporting ----------------------------------------------------------------------------------

def _s(ts: list[float]) -> str:
    return f"{statistics.median(ts):7.2f} s ({min(ts):.2f}-{max(ts):.2f})"


def _mb(n: float) -> str:
    return f"{n / 1e6:9.1f} MB"


def pairs(what: str, a_name: str, ta: list[float], b_name: str, tb: list[float],
          a_bytes: int | None = None, b_bytes: int | None = None, target: str = "") -> None:
    ratios = [x / y for x, y in zip(ta, tb, strict=True)]
    print(f"{what}, median of {len(ta)} pairs (min-max):")
    print(f"  {a_name:<34} {_s(ta)}" + (f"  {_mb(a_bytes)}" if a_bytes is not None else ""))
    print(f"  {b_name:<34} {_s(tb)}" + (f"  {_mb(b_bytes)}" if b_bytes is not None else ""))
    line = f"  time A/B: median {statistics.median(ratios) * 100:.1f} % (min {min(ratios) * 100:.1f}, " \
           f"max {max(ratios) * 100:.1f})"
    if a_bytes is not None and b_bytes:
        line += f"; bytes A/B: {a_bytes / b_bytes * 100:.2f} %"
    print(line + (f"   [{target}]" if target else ""), flush=True)


def revision() -> str:
    """The commit measured, and whether kran/ differs from it."""
    git = ["git", "-C", str(REPO)]
    rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "kran"], capture_output=True, text=True).stdout.strip()
    return (rev or "?") + (" + uncommitted changes in kran/" if dirty else "")


def machine() -> str:
    cg = "cgroup v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "cgroup v1"
    try:
        distro = next(ln.split("=", 1)[1].strip().strip('"') for ln in open("/etc/os-release")
                      if ln.startswith("PRETTY_NAME="))
    except (OSError, StopIteration):
        distro = "?"
    fs = subprocess.run(["stat", "-f", "-c", "%T", tempfile.gettempdir()], capture_output=True, text=True).stdout.strip()
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, {cg}, {distro}, "
            f"kernel {platform.release()}, Python {platform.python_version()}, state roots on {fs or '?'}")


# --- 1, 2, 4: backup to a directory -------------------------------------------------------------

def docker_way_save(k: Kran, out: Path, tag: str) -> float:
    """commit + save -o of each container: the archives in ``out``; seconds."""
    out.mkdir()
    settle()
    t = 0.0
    for n in NAMES:
        t += k.timed("commit", n, f"{n}-commit:{tag}")
        t += k.timed("save", "-o", str(out / f"{n}.tar"), f"{n}-commit:{tag}")
    return t


def rmi_commits(k: Kran, tag: str) -> None:
    k.run("rmi", *[f"{n}-commit:{tag}" for n in NAMES])


def bench_backup(k: Kran, base: Path, runs: int) -> tuple[Path, Path, dict[str, list[float]]]:
    """Parts 1, 2 and 4; returns the last backup DIR, the last archives and the frozen times."""
    ta, tb, a_bytes, b_bytes = [], [], [], []
    frozen: dict[str, list[float]] = {"full": [], "incremental": []}
    layout = archives = None
    for i in range(runs + 1):  # run 0: the warm-up pair, not counted
        if layout is not None:
            shutil.rmtree(layout.parent)
        layout = base / f"backup{i}" / "dir"
        layout.parent.mkdir()
        settle()
        t = k.timed("backup", "-v", *NAMES, f"oci:{layout}")
        fz = frozen_ms(layout, set())
        if i:
            ta.append(t)
            a_bytes.append(tree_bytes(layout))
            frozen["full"] += fz
        if archives is not None:
            shutil.rmtree(archives)
            rmi_commits(k, f"r{i - 1}")
        archives = base / f"archives{i}"
        t = docker_way_save(k, archives, f"r{i}")
        if i:
            tb.append(t)
            b_bytes.append(tree_bytes(archives))
    pairs(f"1. backup of {N} running containers (~1 MB each, image {_mb((base / 'image.tar').stat().st_size).strip()})",
          "A kran backup (1 command) -> oci:DIR", ta, "B commit + save -o of each", tb,
          int(statistics.median(a_bytes)), int(statistics.median(b_bytes)), "targets: time <= 10 %, bytes <= 2 %")
    one = base / "all.tar"
    settle()
    t = k.timed("save", "-o", str(one), *[f"{n}-commit:r{runs}" for n in NAMES])
    print(f"  for reference, once: save -o of the {N} committed images into ONE archive (base shared): "
          f"{t:.2f} s, {_mb(one.stat().st_size).strip()}")
    one.unlink()
    podman_way(k, base, statistics.median(ta), int(statistics.median(a_bytes)))

    ti, i_bytes = [], []
    seen: set[str] = set()
    frozen_ms(layout, seen)
    for _ in range(runs):
        touch_small(k)
        before = tree_bytes(layout)
        settle()
        ti.append(k.timed("backup", "-v", "--incremental", *NAMES, f"oci:{layout}"))
        i_bytes.append(tree_bytes(layout) - before)
        frozen["incremental"] += frozen_ms(layout, seen)
    tbm, bbm = statistics.median(tb), statistics.median(b_bytes)
    print(f"2. incremental backup after each container rewrote a 4 KiB file, median of {runs} runs (min-max):")
    print(f"  kran backup --incremental (1 command) {_s(ti)}  {_mb(statistics.median(i_bytes))} added to DIR "
          f"({statistics.median(ti) / tbm * 100:.1f} % of the Docker way's time, "
          f"{statistics.median(i_bytes) / bbm * 100:.3f} % of its bytes: it saves everything again)", flush=True)
    return layout, archives, frozen


def report_frozen(frozen: dict[str, list[float]]) -> None:
    print("4. frozen time per running container (FrozenMs in each backup's config)   [target: <= 50 ms]")
    for kind, fs in frozen.items():
        if fs:
            print(f"  {kind:<12} {len(fs):3d} backups: median {statistics.median(fs):6.2f} ms, max {max(fs):6.2f} ms, "
                  f"min {min(fs):.2f} ms")
    print(flush=True)


def podman_way(k: Kran, base: Path, kran_t: float, kran_bytes: int) -> None:
    """podman commit + save of each of the same 20 containers made in a private podman store."""
    podman = shutil.which("podman")
    if not podman:
        print("  podman: not installed\n", flush=True)
        return
    runroot = Path(tempfile.mkdtemp(prefix="kpb-", dir="/tmp"))  # podman wants a short runroot path
    pm = [podman, "--root", str(base / "podman-root"), "--runroot", str(runroot), "--storage-driver", "overlay"]
    out = base / "podman-archives"
    try:
        img = base / "image-oci.tar"
        k.run("save", "-o", str(img), IMAGE)
        steps = [[*pm, "load", "-q", "-i", str(img)]]
        for n in NAMES:
            steps += [[*pm, "run", "-d", "--network", "none", "--name", n, IMAGE, "sleep", "3600"],
                      [*pm, "exec", n, "sh", "-c", WRITE]]
        for argv in steps:
            p = subprocess.run(argv, capture_output=True, text=True)
            if p.returncode != 0:
                print(f"  podman: {' '.join(argv[len(pm):len(pm) + 2])} failed here: "
                      f"{(p.stderr.strip().splitlines() or ['?'])[-1][:120]}\n")
                return
        out.mkdir()
        t = 0.0
        for n in NAMES:
            for argv in ([*pm, "commit", "-q", n, f"{n}-commit:1"],
                         [*pm, "save", "-q", "-o", str(out / f"{n}.tar"), f"{n}-commit:1"]):
                t0 = time.perf_counter()
                subprocess.run(argv, capture_output=True, check=True)
                t += time.perf_counter() - t0
        b = tree_bytes(out)
        print(f"  podman commit + save of each, once: {t:.2f} s, {_mb(b).strip()} "
              f"(kran backup: {kran_t / t * 100:.1f} % of the time, {kran_bytes / b * 100:.2f} % of the bytes)\n")
    finally:
        subprocess.run([*pm, "rm", "-f", "-t", "0", *NAMES], capture_output=True)
        subprocess.run([*pm, "system", "reset", "-f"], capture_output=True)
        shutil.rmtree(runroot, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


# --- 3: restore from a directory ----------------------------------------------------------------

def bench_restore(k2: Kran, layout: Path, archives: Path, tag: str, runs: int) -> None:
    ta, tb = [], []
    for i in range(runs):
        settle()
        t = sum(k2.timed("restore", f"oci:{layout}:{n}") for n in NAMES)
        ta.append(t)
        if i == 0:
            check_restored(k2)
        k2.remove_all()
        settle()
        t = 0.0
        for n in NAMES:
            t += k2.timed("load", "-q", "-i", str(archives / f"{n}.tar"))
            t += k2.timed("create", "--network", "none", "--name", n, f"{n}-commit:{tag}")
        tb.append(t)
        k2.remove_all()
        k2.run("rmi", *[f"{n}-commit:{tag}" for n in NAMES])
        if i == 0:
            chain = len(json.loads(k2_manifest(layout, f"{NAMES[0]}:latest"))["layers"])
    pairs(f"3. restore of the {N} on a second root that has the base image (chains of {chain} layers)",
          "A kran restore oci:DIR:NAME of each", ta, "B load -i + create of each", tb)
    print(flush=True)


def k2_manifest(layout: Path, ref: str) -> str:
    idx = json.loads((layout / "index.json").read_text())
    dg = next(m["digest"] for m in idx["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == ref)
    return (layout / "blobs" / "sha256" / dg.split(":")[1]).read_text()


# --- 5: a registry ------------------------------------------------------------------------------

class Registry:
    """Debian's docker-registry on 127.0.0.1 with throwaway storage (tests/registry/conftest.py's
    config without pytest), stopped by its PID."""

    BIN = "/usr/bin/docker-registry"

    def __init__(self, base: Path) -> None:
        import uuid

        base.mkdir(parents=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.host, self.base, self.storage = f"127.0.0.1:{self.port}", base, base / "storage"
        cfg = base / "config.yml"
        cfg.write_text(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
                       f"  filesystem:\n    rootdirectory: {self.storage}\n  delete:\n    enabled: true\n"
                       f"http:\n  addr: {self.host}\n  secret: {uuid.uuid4().hex}\n")
        self.log = open(base / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([self.BIN, "serve", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"docker-registry did not start: {(base / 'registry.log').read_text()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)


def bench_registry(k: Kran, base: Path, runs: int, registries: list[Registry], roots: list[Kran]) -> None:
    ra = Registry(base / "registry-probe")
    registries.append(ra)
    p = subprocess.run(k.argv("backup", NAMES[0], f"{ra.host}/probe"), capture_output=True, text=True, env=k.env)
    ra.stop()
    registries.remove(ra)
    if p.returncode != 0:
        print(f"5. registry: kran backup refused the destination: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
        return
    tab, tbb, tar_, tbr, a_bytes, b_bytes, sent = [], [], [], [], [], [], []
    first_a, rest_a, first_b, rest_b = [], [], [], []
    for i in range(runs):
        ra, rb = Registry(base / f"registry-a{i}"), Registry(base / f"registry-b{i}")
        registries += [ra, rb]
        bases = [f"{r.host}/base/bench-backup:1" for r in (ra, rb)]
        for ref in bases:  # the base in each registry first, as the story's plan does
            k.run("tag", IMAGE, ref)
            k.run("push", "-q", ref)
        a0, b0 = tree_bytes(ra.storage), tree_bytes(rb.storage)
        out: list[str] = []
        settle()
        tab.append(k.timed("backup", "-v", *NAMES, f"{ra.host}/backups", out=out))
        sent.append(sum(_sent(line) for line in out[0].splitlines()))
        a_bytes.append(tree_bytes(ra.storage) - a0)
        settle()
        t = 0.0
        for n in NAMES:
            t += k.timed("commit", n, f"{rb.host}/dockerway/{n}:1")
            t += k.timed("push", "-q", f"{rb.host}/dockerway/{n}:1")
        tbb.append(t)
        b_bytes.append(tree_bytes(rb.storage) - b0)
        settle()
        # restore on fresh roots that have never seen the base
        kx, ky = Kran(base / f"rootx{i}", base), Kran(base / f"rooty{i}", base)
        roots += [kx, ky]
        ts = [kx.timed("restore", f"{ra.host}/backups/{n}") for n in NAMES]
        tar_.append(sum(ts))
        first_a.append(ts[0])
        rest_a += ts[1:]
        settle()
        ts = [ky.timed("pull", "-q", f"{rb.host}/dockerway/{n}:1") +
              ky.timed("create", "--network", "none", "--name", n, f"{rb.host}/dockerway/{n}:1") for n in NAMES]
        tbr.append(sum(ts))
        first_b.append(ts[0])
        rest_b += ts[1:]
        if i == 0:
            check_restored(kx)
        for kk in (kx, ky):
            drop_root(kk)  # stays in roots: the final check looks at it again
        k.run("rmi", *bases, *[f"{rb.host}/dockerway/{n}:1" for n in NAMES])
        for r in (ra, rb):
            r.stop()
            registries.remove(r)
    pairs(f"5a. backup of the {N} to a registry on 127.0.0.1 that has the base",
          "A kran backup (1 command) -> REG/REPO", tab, "B commit + push of each", tbb,
          int(statistics.median(a_bytes)), int(statistics.median(b_bytes)))
    print(f"  kran backup -v says {_mb(statistics.median(sent)).strip()} sent to the registry (median); the Docker "
          f"way's push sends only the top layers too here (the base is in the registry: cross-repository mount)")
    pairs(f"5b. restore of the {N} on a fresh root WITHOUT the base (pulled by digest once)",
          "A kran restore REG/REPO/NAME of each", tar_, "B pull + create of each", tbr)
    print(f"  the first (it pulls the base): A {statistics.median(first_a):.2f} s, B {statistics.median(first_b):.2f} s"
          f"; each of the other {N - 1}: A {statistics.median(rest_a):.3f} s, B {statistics.median(rest_b):.3f} s "
          f"(medians)", flush=True)


def _sent(line: str) -> float:
    """Bytes of '..., 1.05MB sent to the registry -> ...' (kran's human sizes: kB, MB, GB as docker's)."""
    import re

    m = re.search(r", ([\d.]+)([kMG]?B) sent to the registry", line)
    if not m:
        return 0.0
    return float(m.group(1)) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[m.group(2)]


def check_restored(kx: Kran) -> None:
    """The restored containers are there and have their files (one checked by export, as a user would)."""
    names = set(kx.run("ps", "-a", "--format", "{{.Names}}").split())
    if names != set(NAMES):
        raise SystemExit(f"restore: containers {sorted(names)}")
    with tarfile.open(fileobj=io.BytesIO(subprocess.run(kx.argv("export", NAMES[0]), capture_output=True, env=kx.env,
                                                        check=True).stdout)) as t:
        files = {m.name.lstrip("./"): m for m in t}
    if "srv/state/a" not in files or "app/logs/old.log" in files or files["app/etc/app.conf"].mode != 0o600:
        raise SystemExit("restore: the restored container's files differ from the original's")


def drop_root(k: Kran) -> None:
    if (k.root / "kran.db").exists():
        k.remove_all()
    run_dir = Path("/run/kran") / hashlib.sha256(str(k.root).encode()).hexdigest()[:12]
    for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
        mp = line.split()[4]
        if mp.startswith((str(k.root) + "/", str(run_dir) + "/")):
            subprocess.run(["umount", "-l", mp], capture_output=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.rmtree(k.root, ignore_errors=True)


# --- main ---------------------------------------------------------------------------------------

def main() -> int:
    if os.geteuid() != 0:
        sys.exit("bench/backup.py: run as root (containers, mounts)")
    for tool in ("/bin/busybox", Registry.BIN):
        if not os.path.exists(tool):
            sys.exit(f"bench/backup.py: {tool} is required (scripts/setup.sh installs it)")
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_RUNS", "5"))
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    base = Path(tempfile.mkdtemp(prefix="kran-bench-backup-", dir="/var/tmp"))  # on disk, not a tmpfs
    k, k2 = Kran(base / "root", base), Kran(base / "root2", base)
    roots, registries = [k, k2], []
    t_start = time.monotonic()
    try:
        print(machine())
        print(f"kran {REPO} at {revision()}; {runs} pairs per comparison; "
              f"{'podman' if shutil.which('podman') else 'no podman'}; dockerd never started", flush=True)
        tar = build_image(base)
        for kk in (k, k2):
            kk.run("import", *CHANGES, str(tar), IMAGE)
        start_containers(k)
        print(f"{N} containers of {IMAGE} ({_mb(tar.stat().st_size).strip()} in 1 layer) running, "
              f"~1 MB written in each\n", flush=True)

        layout, archives, frozen = bench_backup(k, base, runs)
        print()
        bench_restore(k2, layout, archives, f"r{runs}", runs)
        report_frozen(frozen)
        shutil.rmtree(archives)
        rmi_commits(k, f"r{runs}")
        bench_registry(k, base, runs, registries, roots)
        print(f"\n(whole bench: {time.monotonic() - t_start:.0f} s)")
    except (KeyboardInterrupt, Interrupted):
        print(f"\n{_signalled[0] if _signalled else 'SIGINT'}: cleaning up", file=sys.stderr)
        return 130 if not _signalled or _signalled[0] == "SIGINT" else 143
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        for r in registries:
            r.stop()
        for kk in roots:
            drop_root(kk)
        shutil.rmtree(base, ignore_errors=True)
        left = leftovers(base, roots)
        if left:
            print(f"bench/backup.py: clean-up left {left}", file=sys.stderr)
    return 0


def leftovers(base: Path, roots: list[Kran]) -> list[str]:
    """What of this run is still there after the clean-up (mounts, runtime dirs, the work dir)."""
    runs = [str(Path("/run/kran") / hashlib.sha256(str(k.root).encode()).hexdigest()[:12]) for k in roots]
    out = [ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()
           if ln.split()[4].startswith((str(base), *runs))]
    return out + [p for p in [*runs, str(base)] if os.path.exists(p)]


if __name__ == "__main__":
    sys.exit(main())
