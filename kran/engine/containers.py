"""Container use cases: create, start, stop, kill, rm, ps, inspect, wait, logs, rename, pause...

A container is a row in ``containers`` plus ``containers/<id>/``::

    upper/ work/ merged/   its read-write layer and the overlay mount of image layers + upper
    config.json            the OCI bundle's spec (made by kran.engine.spec.make_spec)
    monitor.json           what the monitor needs (runtime, stdio, logs, restart policy)
    state.json             written by the monitor: running/exited, pid, exit code, times
    hostname hosts resolv.conf  bind-mounted into the container
    <id>-json.log          docker's json-file log

Status comes from state.json (the monitor's) checked against live processes; whatever a dead monitor
left (mounts, runtime state) is cleaned up the next time kran looks at the container.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal as _signal
import time
from typing import TYPE_CHECKING, Any

from kran.engine import record
from kran.engine.record import (  # noqa: F401 - the record's names, re-exported for the verbs' callers
    _COLS,
    _T,
    NAME_RE,
    Container,
    ContainerNotFound,
    _being_started,
    _live_state,
    _now_rfc3339,
    _pid_alive,
    _row,
    _write_state,
    containers_using_image,
    exit_code_of,
    netns_path,
    run_dir,
    status_text,
)
from kran.errors import Conflict, InvalidArgument, KranError, NotFound
from kran.image import reference as refs
from kran.storage.db import transaction

if TYPE_CHECKING:
    from kran.engine import Engine

def filter_containers(engine: Engine, cs: list[Container], filters: list[str]) -> list[Container]:
    """docker's container filters (``kran ps --filter`` and the API's list): status, name, id,
    label, network, publish, expose, exited, ancestor, before, since; every filter must match."""
    import re

    from kran.engine import label_match, networks

    for f in filters:
        k, _, v = f.partition("=")
        if k == "status":
            if v not in ("created", "restarting", "running", "removing", "paused", "exited", "dead"):
                raise InvalidArgument(f"invalid filter 'status={v}'")
            cs = [c for c in cs if c.status == v]
        elif k == "name":
            cs = [c for c in cs if re.search(v.lstrip("/"), c.name)]
        elif k == "id":
            cs = [c for c in cs if c.id.startswith(v)]
        elif k == "label":
            cs = [c for c in cs if label_match(c.config.get("Labels") or {}, v)]
        elif k == "network":
            nets = networks.networks_of(engine)
            names = {n.name for n in networks.all_networks(engine) if n.name == v or n.id.startswith(v)}
            cs = [c for c in cs if names & set(nets.get(c.id, []))]
        elif k in ("publish", "expose"):
            port, _, proto = v.partition("/")
            key = "PublicPort" if k == "publish" else "PrivatePort"
            hits = {cid for cid, ps in networks.published_ports(engine).items()
                    for e in ps if str(e.get(key, "")) == port and e["Type"] == (proto or "tcp")}
            cs = [c for c in cs if c.id in hits]
        elif k == "exited":
            cs = [c for c in cs if c.status == "exited" and str(exit_code_of(c)) == v]
        elif k == "ancestor":
            try:
                iid = engine.images.resolve(v)
            except KranError:
                iid = None
            cs = [c for c in cs if c.image_id == iid or c.image_name == v]
        elif k in ("before", "since"):
            ref = get(engine, v)
            cs = [c for c in cs if (c.created < ref.created if k == "before" else c.created > ref.created)]
        else:
            raise InvalidArgument(f"invalid filter '{k}'")
    return cs


def get(engine: Engine, ref: str) -> Container:
    """By full ID, name (with or without "/"), or unique ID prefix (docker's lookup order); a
    container seen exited has what it held released (:func:`_cleanup_after_exit`)."""
    c = record.get(engine, ref)
    _released(engine, c)
    return c


def all_containers(engine: Engine) -> list[Container]:
    cs = record.all_containers(engine)
    for c in cs:
        _released(engine, c)
    return cs


def _released(engine: Engine, c: Container) -> None:
    if c.state is not None and c.state.get("status") == "exited":
        _cleanup_after_exit(engine, c)


def _cleanup_after_exit(engine: Engine, c: Container) -> None:
    """Unmount the rootfs and forget runtime state of a container that no longer runs."""
    if _being_started(c):
        return
    merged = os.path.join(c.dir, "merged")
    from kran.sys.fsutil import MNT_DETACH, is_mountpoint, umount

    if os.path.isdir(merged) and is_mountpoint(merged):
        try:
            umount(merged, MNT_DETACH)
        except OSError:
            pass
    from kran.engine.networks import teardown

    teardown(engine, c.id, links=not _T.removing)


def _event(engine: Engine, action: str, cid: str, **attrs: str) -> None:
    from kran.engine.events import emit

    if "name" not in attrs:
        row = engine.store.db.execute("SELECT name, image_name FROM containers WHERE id=?", (cid,)).fetchone()
        if row:
            attrs = {"image": row[1], "name": row[0], **attrs}
    emit(engine.root, "container", action, cid, attrs)


# -- create ---------------------------------------------------------------------------------------


def _merge_config(image_cfg: dict[str, Any], config: dict[str, Any], cid: str) -> dict[str, Any]:
    ic = image_cfg.get("config") or {}
    out = dict(config)
    env = list(ic.get("Env") or [])
    for e in config.get("Env") or []:
        k = e.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != k]
        env.append(e if "=" in e else e)
    out["Env"] = env
    if config.get("Entrypoint") is not None:
        out["Entrypoint"] = config["Entrypoint"] or None
        out["Cmd"] = config.get("Cmd") or None
    else:
        out["Entrypoint"] = ic.get("Entrypoint")
        out["Cmd"] = config.get("Cmd") or ic.get("Cmd")
    for k in ("WorkingDir", "User", "StopSignal"):
        if not out.get(k) and ic.get(k):
            out[k] = ic[k]
    labels = dict(ic.get("Labels") or {})
    labels.update(config.get("Labels") or {})
    out["Labels"] = labels
    exposed = dict(ic.get("ExposedPorts") or {})
    exposed.update(config.get("ExposedPorts") or {})
    if exposed:
        out["ExposedPorts"] = exposed
    vols = dict(ic.get("Volumes") or {})
    vols.update(config.get("Volumes") or {})
    if vols:
        out["Volumes"] = vols
    if not out.get("Hostname"):
        out["Hostname"] = cid[:12]
    for k in ("Domainname", "User", "WorkingDir"):
        out.setdefault(k, "")
    for k in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"):
        out[k] = bool(out.get(k))
    return out


def create(engine: Engine, config: dict[str, Any], host_config: dict[str, Any], name: str | None = None,
           networking_config: dict[str, Any] | None = None) -> str:
    """Create a container (docker's ContainerCreate): returns its ID."""
    image = config.get("Image") or ""
    if not image:
        raise InvalidArgument("No image specified")
    ist = engine.images
    try:
        image_id = ist.resolve(image)
    except NotFound:
        r = refs.parse_normalized(image)
        raise NotFound(f"No such image: {r.tagged_or_latest().familiar()}") from None
    rec = ist.get(image_id)
    cid = os.urandom(32).hex()
    cfg = _merge_config(json.loads(rec.config), config, cid)
    if not (cfg.get("Entrypoint") or cfg.get("Cmd")):
        raise InvalidArgument("No command specified")
    h = dict(host_config)
    _validate_host_config(h)
    if name is not None:
        if not NAME_RE.match(name):
            raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        name = name.lstrip("/")
    d = os.path.join(engine.root, "containers", cid)
    store = engine.store
    from kran.engine import volumes

    plan = volumes.plan_mounts(engine, cfg, h)
    from kran.engine import networks

    net_plan = networks.plan(engine, h, networking_config)
    if plan.mountpoints:
        h["_MountPoints"] = plan.mountpoints
    with store.writing():
        os.makedirs(d, 0o710)
        try:
            volumes.prepare(engine, plan)
            for sub in ("upper", "work", "merged"):
                os.mkdir(os.path.join(d, sub), 0o755)
            with open(os.path.join(d, "hostname"), "w") as f:
                f.write(cfg["Hostname"] + "\n")
            with open(os.path.join(d, "hosts"), "w") as f:
                f.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                        "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                        "ff02::2\tip6-allrouters\n")
            with open(os.path.join(d, "resolv.conf"), "w") as f:
                f.write(_resolv_conf())
            for attempt in range(20):
                n = name or _random_name(attempt)
                try:
                    with transaction(store.db):
                        row = store.db.execute("SELECT id FROM containers WHERE name=?", (n,)).fetchone()
                        if row:
                            raise Conflict(
                                f'Conflict. The container name "/{n}" is already in use by container "{row[0]}". '
                                "You have to remove (or rename) that container to be able to reuse that name."
                            )
                        store.db.execute(
                            "INSERT INTO containers(id, name, image_id, image_name, created, config, host_config)"
                            " VALUES (?,?,?,?,?,?,?)",
                            (cid, n, image_id, image, time.time(), json.dumps(cfg), json.dumps(h)),
                        )
                        volumes.record(store.db, cid, plan)  # with the row: usage survives a crash
                        networks.record(store.db, cid, net_plan)
                    break
                except Conflict:
                    if name:
                        raise
            _event(engine, "create", cid)
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            volumes.undo(engine, plan)
            raise
    return cid


def _random_name(attempt: int) -> str:
    from kran.engine.names import random_name

    return random_name(attempt)


def _resolv_conf() -> str:
    """The host's resolv.conf without loopback resolvers (docker's rule); Google's DNS if none is left."""
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    out, servers = [], 0
    for line in lines:
        w = line.split()
        if w and w[0] == "nameserver" and len(w) > 1:
            if w[1].startswith("127.") or w[1] == "::1":
                continue
            servers += 1
        out.append(line)
    if not servers:
        out += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(out) + "\n"


def _validate_host_config(h: dict[str, Any]) -> None:
    rp = h.get("RestartPolicy") or {}
    if rp.get("Name") and rp["Name"] not in ("no", "always", "on-failure", "unless-stopped"):
        raise InvalidArgument(f"invalid restart policy '{rp['Name']}'")
    if h.get("AutoRemove") and rp.get("Name") not in (None, "", "no"):
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    if h.get("Memory") and 0 < int(h["Memory"]) < 6 * 1024 * 1024:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if h.get("MemorySwap") and int(h["MemorySwap"]) > 0 and h.get("Memory") and int(h["MemorySwap"]) < int(h["Memory"]):
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if h.get("MemorySwap") and not h.get("Memory") and int(h["MemorySwap"]) > 0:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    if h.get("NanoCpus"):
        n = int(h["NanoCpus"])
        ncpu = os.cpu_count() or 1
        if n < 0 or n > ncpu * 1_000_000_000:
            raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
    if h.get("StopSignal"):
        from kran.engine.spec import parse_signal

        parse_signal(h["StopSignal"])


# -- start ----------------------------------------------------------------------------------------


def _runtime_argv(engine: Engine, name: str) -> list[str]:
    """How to run the OCI runtime: kran's own (started the fast way, without site-packages) or a
    runc-compatible binary by name or path."""
    import sys

    if (name or os.environ.get("KRAN_RUNTIME") or "kran") == "kran":
        import kran

        main = os.path.join(os.path.dirname(kran.__file__), "runtime", "__main__.py")
        return [sys.executable, "-I", "-S", main]
    return [_runtime_path(engine, name)]


def _runtime_path(engine: Engine, name: str) -> str:
    import sys

    name = name or os.environ.get("KRAN_RUNTIME") or "kran"
    if name == "kran":
        p = os.path.join(os.path.dirname(sys.executable), "kran-runtime")
        if os.path.exists(p):
            return p
        name = "runc"
    if os.sep in name:
        return name
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not found:
        raise InvalidArgument(f"unknown or invalid runtime name: {name}")
    return found


def _cgroup_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _mount_rootfs(engine: Engine, c: Container) -> str:
    from kran.sys.fsutil import is_mountpoint, mount

    merged = os.path.join(c.dir, "merged")
    if is_mountpoint(merged):
        return merged
    layers = [engine.store.layers.path(ch) for ch, *_ in engine.images.layers(c.image_id)]
    if not layers:
        empty = os.path.join(c.dir, "empty")
        os.makedirs(empty, exist_ok=True)
        layers = [empty]
    lower = ":".join(reversed(layers))
    opts = f"lowerdir={lower},upperdir={c.dir}/upper,workdir={c.dir}/work"
    try:
        mount("overlay", merged, "overlay", 0, opts)
    except OSError as e:
        raise KranError(f"error mounting the container's root filesystem: {e}") from e
    return merged


def _lookup_user(rootfs: str, spec: str) -> Any:
    """Resolve docker's ``--user name|uid[:group|gid]`` against the container's /etc/passwd and /etc/group."""
    from kran.engine.spec import User

    def read(rel: str) -> list[list[str]]:
        try:
            from kran.storage.rootpath import read_in_root

            data = read_in_root(rootfs, rel)
        except (OSError, ImportError):
            data = b""
        return [ln.split(":") for ln in data.decode(errors="replace").splitlines() if ln and not ln.startswith("#")]

    user, _, group = (spec or "").partition(":")
    passwd = read("etc/passwd")
    uid, gid, home, uname = 0, 0, "/", "root"
    if user:
        ent = next((p for p in passwd if len(p) >= 7 and p[0] == user), None)
        if ent is None and user.isdigit():
            ent = next((p for p in passwd if len(p) >= 7 and p[2] == user), None)
            uid, gid, home, uname = int(user), int(user) if not ent else int(ent[3]), ent[5] if ent else "/", ent[0] if ent else ""
            if ent is None:
                gid = 0
        elif ent is None:
            raise KranError(f"unable to find user {user}: no matching entries in passwd file")
        if ent is not None:
            uid, gid, home, uname = int(ent[2]), int(ent[3]), ent[5], ent[0]
    else:
        ent = next((p for p in passwd if len(p) >= 7 and p[2] == "0"), None)
        if ent:
            home, uname = ent[5], ent[0]
    groups = read("etc/group")
    if group:
        g = next((x for x in groups if len(x) >= 3 and x[0] == group), None)
        if g is not None:
            gid = int(g[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise KranError(f"unable to find group {group}: no matching entries in group file")
    # docker: the primary group, then every group that lists the user as a member
    member = sorted({int(x[2]) for x in groups if len(x) >= 4 and uname and uname in x[3].split(",") and x[2].isdigit()} - {gid})
    extra = (gid, *member)
    return User(uid=uid, gid=gid, additional_gids=extra, home=home or "/")


def _ensure_netns(engine: Engine, c: Container) -> str | None:
    """The container's own network namespace (lo up), kept from its first start to its removal."""
    mode = c.host_config.get("NetworkMode") or "default"
    if mode == "host":
        return None
    if mode.startswith("container:"):
        other = get(engine, mode.split(":", 1)[1])
        if not other.running:
            raise Conflict(f"cannot join network of a non running container: {other.name}")
        om = other.host_config.get("NetworkMode") or "default"
        if om.startswith("container:"):
            raise Conflict(f"cannot join network of container {other.name}: it shares another container's network")
        if om == "host":
            return None
        for f in ("hosts", "resolv.conf", "hostname"):
            try:
                shutil.copyfile(os.path.join(other.dir, f), os.path.join(c.dir, f))
            except OSError:
                pass
        return netns_path(engine, other.id)
    from kran.network import netns
    from kran.sys.fsutil import is_mountpoint

    path = netns_path(engine, c.id)
    if os.path.exists(path):
        if is_mountpoint(path):
            return path
        os.unlink(path)  # left by a crash between create and pin
    netns.create(path)
    return path


def _bundle(engine: Engine, c: Container, rootfs: str) -> dict[str, Any]:
    from kran.engine.spec import Paths, SpecInput, make_spec
    from kran.engine.volumes import start_mounts

    h = dict(c.host_config)
    ns = _ensure_netns(engine, c)
    if ns:
        h["_NetNSPath"] = ns
    mounts = start_mounts(engine, c, rootfs)  # volumes and binds (after copy-up into new volumes)
    if mounts:
        h["_Mounts"] = mounts
    caps, seccomp = _security(h)
    init = ""
    if h.get("Init"):
        init = shutil.which("tini-static") or ""  # static: it runs in the container's root
        if not init:
            raise KranError("--init needs tini-static on the host (apt-get install tini)")
    inp = SpecInput(
        id=c.id, config=c.config, host_config=h,
        paths=Paths(rootfs=rootfs, hostname=os.path.join(c.dir, "hostname"), hosts=os.path.join(c.dir, "hosts"),
                    resolv_conf=os.path.join(c.dir, "resolv.conf"), init=init),
        user=_lookup_user(rootfs, c.config.get("User") or ""),
        cgroup_parent=h.get("CgroupParent") or "/kran", cgroup_v2=_cgroup_v2(), seccomp=seccomp, caps=tuple(caps),
    )
    return make_spec(inp)


def _security(h: dict[str, Any]) -> tuple[list[str], dict[str, Any] | None]:
    from kran.engine import seccomp_default as sd

    if h.get("Privileged"):
        return sorted(sd.ALL_CAPS), None
    caps = sd.normalize_caps(list(h.get("CapAdd") or []), list(h.get("CapDrop") or []))
    profile: dict[str, Any] | None = sd.default_profile(set(caps), arch=os.uname().machine)
    for opt in h.get("SecurityOpt") or []:
        k, _, v = opt.replace(":", "=", 1).partition("=")
        if k == "seccomp":
            if v == "unconfined":
                profile = None
            else:
                try:
                    with open(v) as f:
                        profile = json.load(f)
                except (OSError, ValueError) as e:
                    raise InvalidArgument(f"opening seccomp profile ({v}) failed: {e}") from e
        elif k not in ("no-new-privileges", "apparmor", "label"):
            raise InvalidArgument(f"invalid --security-opt: {opt!r}")
    return caps, profile


def will_remove(engine: Engine, cid: str) -> None:
    """The caller stays attached and removes this --rm container when it ends (the monitor then
    leaves that to it, unless the caller is gone by then)."""
    from kran.monitor import proto

    with open(os.path.join(engine.root, "containers", cid, proto.CLI_REMOVES), "w"):
        pass


def start(engine: Engine, ref: str, wait_attach: bool = False) -> Container:
    """Start a created or exited container; a running one is left as it is."""
    c = get(engine, ref)
    if c.status == "paused":
        raise Conflict("cannot start a paused container, try unpause instead")
    if c.running:
        return c
    import fcntl

    lock = os.open(os.path.join(c.dir, "start.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    _T.starting.add(c.id)
    try:
        return _start_locked(engine, c, wait_attach)
    finally:
        _T.starting.discard(c.id)
        os.close(lock)


def _start_locked(engine: Engine, c: Container, wait_attach: bool) -> Container:
    from kran.monitor import client

    c = get(engine, c.id)
    if c.running:
        return c
    if os.path.exists(os.path.join(run_dir(engine), "runtime", c.id)):
        _runtime(engine, c, "delete", "--force", c.id, check=False)  # left by a monitor that was killed
    with engine.store.writing():
        try:
            os.unlink(os.path.join(c.dir, "stop-requested"))
        except FileNotFoundError:
            pass
        rootfs = _mount_rootfs(engine, c)
        net = None
        try:
            spec = _bundle(engine, c, rootfs)
            from kran.engine import networks

            netns_file = next((n.get("path") for n in (spec.get("linux") or {}).get("namespaces") or []
                               if n.get("type") == "network"), None)
            net = networks.setup(engine, c, netns_file)
            with open(os.path.join(c.dir, "config.json.tmp"), "w") as f:
                json.dump(spec, f, indent=1)
            os.rename(os.path.join(c.dir, "config.json.tmp"), os.path.join(c.dir, "config.json"))
            h = c.host_config
            rp = h.get("RestartPolicy") or {}
            log_cfg = (h.get("LogConfig") or {}).get("Config") or {}
            from kran.engine.spec import parse_signal

            mon = {
                "id": c.id,
                "bundle": c.dir,
                "runtime": _runtime_argv(engine, h.get("Runtime") or ""),
                "runtime_root": os.path.join(run_dir(engine), "runtime"),
                "tty": bool(c.config.get("Tty")),
                "stdin": bool(c.config.get("OpenStdin")),
                "log_path": os.path.join(c.dir, f"{c.id}-json.log"),
                "log_max_size": _size(log_cfg.get("max-size", "0")),
                "log_max_file": int(log_cfg.get("max-file", "1") or 1),
                "restart": {"name": rp.get("Name") or "no", "max_retries": int(rp.get("MaximumRetryCount") or 0)},
                "stop_signal": "SIG" + _signame(parse_signal(c.config.get("StopSignal") or "SIGTERM")),
                "wait_attach": wait_attach,
                "events_path": os.path.join(engine.root, "events.jsonl"),
                "event_attrs": {"image": c.image_name, "name": c.name},
            }
            if net.monitor_cfg:
                mon["net"] = net.monitor_cfg
                if net.monitor_cfg.get("proxies"):
                    import sys

                    # published ports: free them (DNAT entries, lease) as soon as the container ends
                    mon["on_exit"] = [sys.executable, "-m", "kran.engine.afterexit", engine.root, c.id]
            if h.get("AutoRemove"):
                import sys

                # docker's --rm when nobody waits for the container: its monitor removes it at the end
                mon["on_exit"] = [sys.executable, "-m", "kran", "--root", engine.root, "rm", "-f", "-v", c.id]
            os.makedirs(mon["runtime_root"], 0o700, exist_ok=True)
            with open(os.path.join(c.dir, "monitor.json"), "w") as f:
                json.dump(mon, f)
            try:
                os.unlink(os.path.join(c.dir, "state.json"))
            except FileNotFoundError:
                pass
            res = client.start(c.dir, pass_fds=tuple(net.fds))
        except KranError as e:
            _cleanup_after_exit(engine, c)
            try:
                os.unlink(os.path.join(c.dir, "state.json"))  # it never ran: docker keeps it "created"
            except FileNotFoundError:
                pass
            code = e.exit_code if e.exit_code in (126, 127) else 128
            with transaction(engine.store.db):
                engine.store.db.execute("UPDATE containers SET error=?, exit_code=? WHERE id=?", (str(e), code, c.id))
            raise
        except BaseException:
            _cleanup_after_exit(engine, c)
            raise
        finally:
            if net is not None:
                net.close()  # the monitor has its own copies now
    del res
    _event(engine, "start", c.id)
    with transaction(engine.store.db):
        engine.store.db.execute("UPDATE containers SET error='', started_at=? WHERE id=?", (_now_rfc3339(), c.id))
    return get(engine, c.id)


def _size(s: str) -> int:
    if not s or s == "0":
        return 0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", s.strip().lower())
    if not m:
        raise InvalidArgument(f"invalid max-size: {s}")
    return int(float(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2)])


def _signame(n: int) -> str:
    try:
        return _signal.Signals(n).name[3:]
    except ValueError:
        return str(n)


# -- stop / kill / wait ---------------------------------------------------------------------------


def _runtime(engine: Engine, c: Container, *args: str, check: bool = True) -> Any:
    import subprocess

    rt = _runtime_argv(engine, c.host_config.get("Runtime") or "")
    p = subprocess.run([*rt, "--root", os.path.join(run_dir(engine), "runtime"), *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        msg = (p.stderr.strip().splitlines() or ["runtime failed"])[-1]
        m = re.search(r'msg="?([^"]*)"?', msg)
        raise KranError(m.group(1) if m else msg)
    return p


def kill(engine: Engine, ref: str, sig: str = "KILL") -> Container:
    from kran.engine.spec import parse_signal

    c = get(engine, ref)
    try:
        n = parse_signal(sig)
    except ValueError as e:
        raise InvalidArgument(str(e)) from e
    if not c.running:
        raise Conflict(f"Cannot kill container: {ref}: container {c.id} is not running")
    if n in (9, 15) or True:
        _request_stop(c)
    pid = (c.state or {}).get("pid")
    if c.status == "paused" and n == 9:
        _runtime(engine, c, "resume", c.id, check=False)
    try:
        _runtime(engine, c, "kill", c.id, str(n))
    except KranError:
        if pid and _pid_alive(pid):
            os.kill(pid, n)
    _event(engine, "kill", c.id, signal=str(n))
    return c


def _request_stop(c: Container) -> None:
    with open(os.path.join(c.dir, "stop-requested"), "w"):
        pass


def wait_exit(engine: Engine, ref: str, timeout: float | None = None) -> int | None:
    """Block until the container is not running; its exit code, or None on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    c = get(engine, ref)
    delay = 0.005
    while True:
        try:
            c = get(engine, c.id)
        except ContainerNotFound:  # removed meanwhile (--rm): it has exited
            st = c.state or {}
            return int(st.get("exit_code") or 0) if st.get("status") == "exited" else 0
        if not c.running:
            return int((c.state or {}).get("exit_code") or 0) if c.state else c.exit_code
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def stop(engine: Engine, ref: str, timeout: int | None = None, sig: str | None = None) -> Container:
    c = _stop(engine, ref, timeout, sig)
    _event(engine, "stop", c.id)
    return c


def _stop(engine: Engine, ref: str, timeout: int | None = None, sig: str | None = None) -> Container:
    from kran.engine.spec import parse_signal

    c = get(engine, ref)
    if not c.running:
        return c
    _request_stop(c)
    stop_sig = sig or c.config.get("StopSignal") or "SIGTERM"
    try:
        n = parse_signal(stop_sig)
    except ValueError as e:
        raise InvalidArgument(str(e)) from e
    if timeout is None:
        timeout = c.host_config.get("StopTimeout") or c.config.get("StopTimeout")
        timeout = 10 if timeout is None else int(timeout)
    if c.status == "paused":
        _runtime(engine, c, "resume", c.id, check=False)
        _clear_paused(c)
    if timeout != 0:
        _runtime(engine, c, "kill", c.id, str(n), check=False)
        if wait_exit(engine, c.id, None if timeout < 0 else timeout) is not None:
            return c
    _runtime(engine, c, "kill", c.id, "9", check=False)
    if wait_exit(engine, c.id, 30) is None:
        raise KranError(f"cannot stop container: {ref}: tried to kill container, but did not receive an exit event")
    return c


def restart(engine: Engine, ref: str, timeout: int | None = None, sig: str | None = None) -> Container:
    stop(engine, ref, timeout, sig)
    return start(engine, ref)


def _clear_paused(c: Container) -> None:
    try:
        os.unlink(os.path.join(c.dir, "paused"))
    except FileNotFoundError:
        pass


def pause(engine: Engine, ref: str) -> None:
    c = get(engine, ref)
    if c.status == "paused":
        raise Conflict(f"Container {c.id} is already paused")
    if not c.running:
        raise Conflict(f"Container {c.id} is not running")
    _runtime(engine, c, "pause", c.id)
    with open(os.path.join(c.dir, "paused"), "w"):
        pass
    _event(engine, "pause", c.id)


def unpause(engine: Engine, ref: str) -> None:
    c = get(engine, ref)
    if c.status != "paused":
        raise Conflict(f"Container {c.id} is not paused")
    _runtime(engine, c, "resume", c.id)
    _clear_paused(c)
    _event(engine, "unpause", c.id)


# -- remove / rename / prune ----------------------------------------------------------------------


def remove(engine: Engine, ref: str, force: bool = False, volumes: bool = False) -> None:
    _T.removing = True
    try:
        _remove(engine, ref, force, volumes)
    finally:
        _T.removing = False


def _remove(engine: Engine, ref: str, force: bool, volumes: bool) -> None:
    c = get(engine, ref)
    if c.running:
        if not force:
            what = "paused" if c.status == "paused" else "running"
            raise Conflict(
                f"cannot remove container \"/{c.name}\": container is {what}: stop the container before removing or force remove"
            )
        if c.status == "paused":
            _runtime(engine, c, "resume", c.id, check=False)
        _request_stop(c)
        _runtime(engine, c, "kill", c.id, "9", check=False)
        wait_exit(engine, c.id, 30)
        c = get(engine, c.id)
    if os.path.exists(os.path.join(run_dir(engine), "runtime", c.id)):
        _runtime(engine, c, "delete", "--force", c.id, check=False)  # the monitor died before it could
    _cleanup_after_exit(engine, c)
    from kran.network import netns

    netns.remove(netns_path(engine, c.id))
    with engine.store.writing():
        with transaction(engine.store.db):
            engine.store.db.execute("DELETE FROM containers WHERE id=?", (c.id,))
        trash = engine.store.workdir("rm-")
        try:
            os.rename(c.dir, os.path.join(trash, "c"))
        except FileNotFoundError:
            pass
    from kran.sys.fsutil import unmount_under

    unmount_under(trash)  # never delete through a mount that is still there
    shutil.rmtree(trash, ignore_errors=True)
    if volumes or c.host_config.get("AutoRemove"):  # docker's --rm takes the anonymous volumes too
        from kran.engine.volumes import remove_anonymous

        remove_anonymous(engine, c)
    _event(engine, "destroy", c.id, image=c.image_name, name=c.name)


def rename(engine: Engine, ref: str, new: str) -> None:
    c = get(engine, ref)
    if not NAME_RE.match(new):
        raise InvalidArgument(f"Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    new = new.lstrip("/")
    if new == c.name:
        raise InvalidArgument("Renaming a container with the same name as its current name")
    with transaction(engine.store.db):
        row = engine.store.db.execute("SELECT id FROM containers WHERE name=?", (new,)).fetchone()
        if row:
            raise Conflict(
                f'Error when allocating new name: Conflict. The container name "/{new}" is already in use by container '
                f'"{row[0]}". You have to remove (or rename) that container to be able to reuse that name.'
            )
        engine.store.db.execute("UPDATE containers SET name=? WHERE id=?", (new, c.id))
    if c.running:
        from kran.engine.networks import refresh_dns

        refresh_dns(engine, [r[0] for r in engine.store.db.execute(
            "SELECT network_id FROM endpoints WHERE container_id=?", (c.id,))])
    _event(engine, "rename", c.id, oldName="/" + c.name)


def prune(engine: Engine) -> tuple[list[str], int]:
    gone, space = [], 0
    for c in all_containers(engine):
        if c.running:
            continue
        space += _du(os.path.join(c.dir, "upper"))
        remove(engine, c.id)
        gone.append(c.id)
    return gone, space


def _du(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def size_rw(c: Container) -> int:
    return _du(os.path.join(c.dir, "upper"))


ZERO_TIME = "0001-01-01T00:00:00Z"


def mounts_json(engine: Engine, c: Container) -> list[dict[str, Any]]:
    from kran.engine.volumes import mounts_json

    return mounts_json(engine, c)


def _network_settings(engine: Engine, c: Container) -> dict[str, Any]:
    from kran.engine.networks import settings

    return settings(engine, c)


def inspect(engine: Engine, ref: str, size: bool = False) -> dict[str, Any]:
    """Docker's ContainerJSON for one container."""
    from kran.engine.spec import process_args
    from kran.engine.timefmt import rfc3339

    c = get(engine, ref)
    st = c.state or {}
    status = c.status
    args = process_args(c.config)
    layers = [engine.store.layers.path(ch) for ch, *_ in engine.images.layers(c.image_id)]
    h = dict(c.host_config)
    for k in [k for k in h if k.startswith("_")]:
        del h[k]
    h.setdefault("Binds", None)
    h.setdefault("PortBindings", {})
    h.setdefault("Devices", [])
    # what docker always fills in (docker-py reads LogConfig.Type)
    if not (h.get("LogConfig") or {}).get("Type"):
        h["LogConfig"] = {"Type": "json-file", "Config": (h.get("LogConfig") or {}).get("Config") or {}}
    h.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
    h.setdefault("NetworkMode", "default")
    exit_code = st.get("exit_code")
    out: dict[str, Any] = {
        "Id": c.id,
        "Created": rfc3339(c.created),
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": {
            "Status": status,
            "Running": status in ("running", "paused", "restarting") and status != "restarting",
            "Paused": status == "paused",
            "Restarting": status == "restarting",
            "OOMKilled": bool(st.get("oom_killed")),
            "Dead": status == "dead",
            "Pid": int(st.get("pid") or 0) if c.running else 0,
            "ExitCode": int(exit_code if exit_code is not None else c.exit_code or 0),
            "Error": st.get("error") or c.error or "",
            "StartedAt": st.get("started_at") or c.started_at or ZERO_TIME,
            "FinishedAt": st.get("finished_at") or c.finished_at or ZERO_TIME,
        },
        "Image": c.image_id,
        "ResolvConfPath": os.path.join(c.dir, "resolv.conf"),
        "HostnamePath": os.path.join(c.dir, "hostname"),
        "HostsPath": os.path.join(c.dir, "hosts"),
        "LogPath": os.path.join(c.dir, f"{c.id}-json.log"),
        "Name": "/" + c.name,
        "RestartCount": int(st.get("restart_count") or 0),
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": h,
        "GraphDriver": {
            "Data": {
                "LowerDir": ":".join(reversed(layers)),
                "MergedDir": os.path.join(c.dir, "merged"),
                "UpperDir": os.path.join(c.dir, "upper"),
                "WorkDir": os.path.join(c.dir, "work"),
            },
            "Name": "overlay2",
        },
        "Mounts": mounts_json(engine, c),
        "Config": c.config,
        "NetworkSettings": _network_settings(engine, c),
    }
    if size:
        rw = size_rw(c)
        out["SizeRw"] = rw
        out["SizeRootFs"] = rw + engine.images.get(c.image_id).size
    return out
