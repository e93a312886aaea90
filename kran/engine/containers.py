"""Container use cases: start, restart, rm, rename, prune -- and, re-exported from the modules that
hold them, create (:mod:`kran.engine.create`), stop/kill/pause/wait (:mod:`kran.engine.lifecycle`),
inspect/filters (:mod:`kran.engine.inspect`) and the lookup with its cleanup (:mod:`kran.engine.live`),
so callers keep one entry point.

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
import shutil
import signal as _signal
from typing import TYPE_CHECKING, Any

from kran.engine.create import _merge_config, _random_name, _resolv_conf, create
from kran.engine.inspect import ZERO_TIME, _du, filter_containers, inspect, mounts_json, size_rw
from kran.engine.lifecycle import (
    _clear_paused,
    _request_stop,
    _stop,
    kill,
    pause,
    stop,
    unpause,
    wait,
    wait_exit,
)
from kran.engine.live import (
    _cleanup_after_exit,
    _event,
    _released,
    _runtime,
    _runtime_argv,
    _runtime_path,
    all_containers,
    get,
)
from kran.engine.record import (
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
from kran.errors import Conflict, InvalidArgument, KranError
from kran.storage.db import transaction

if TYPE_CHECKING:
    from kran.engine import Engine


# -- start ----------------------------------------------------------------------------------------

def _cgroup_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _mount_rootfs(engine: Engine, c: Container) -> str:
    from kran.sys.fsutil import is_mountpoint

    merged = os.path.join(c.dir, "merged")
    if is_mountpoint(merged):
        return merged
    from kran.engine.fresh import overlay_opts
    from kran.rootless.overlay import mount_overlay

    opts = overlay_opts(engine, c)

    try:
        mount_overlay(merged, opts)
    except OSError as e:
        raise KranError(f"error mounting the container's root filesystem: {e}") from e
    return merged


def _overlay_opts(engine: Engine, c: Container) -> str:
    from kran.engine.fresh import overlay_opts

    return overlay_opts(engine, c)


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


def _group_ids(rootfs: str, groups: list[str]) -> list[int]:
    """docker's --group-add: numeric IDs as they are, names looked up in the container's /etc/group."""
    from kran.storage.rootpath import read_in_root

    try:
        data = read_in_root(rootfs, "etc/group").decode(errors="replace")
    except OSError:
        data = ""
    by_name = {f[0]: f[2] for f in (ln.split(":") for ln in data.splitlines()) if len(f) >= 3 and f[2].isdigit()}
    out = []
    for g in groups:
        g = str(g)
        if g.isdigit():
            out.append(int(g))
        elif g in by_name:
            out.append(int(by_name[g]))
        else:
            raise KranError(f"Unable to find group {g}: no matching entries in group file")
    return out


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


def _bundle(engine: Engine, c: Container, rootfs: str, link_env: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    import dataclasses

    from kran.engine.spec import Paths, SpecInput, make_spec
    from kran.engine.volumes import start_mounts

    h = dict(c.host_config)
    config = c.config
    if link_env:  # docker: the links' variables first, the container's own win
        own = {e.split("=", 1)[0] for e in config.get("Env") or []}
        config = dict(config, Env=[e for e in link_env if e.split("=", 1)[0] not in own] + list(config.get("Env") or []))
    ns = _ensure_netns(engine, c)
    if ns:
        h["_NetNSPath"] = ns
    if any(h.get(k) for k in ("BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps",
                              "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps")):
        from kran.engine.blkio import block_io

        h["_BlockIO"] = block_io(h)  # device paths -> major:minor, as they are at this start
    mounts = start_mounts(engine, c, rootfs)  # volumes and binds (after copy-up into new volumes)
    if mounts:
        h["_Mounts"] = mounts
    caps, seccomp = _security(h)
    init = ""
    if h.get("Init"):
        init = shutil.which("tini-static") or ""  # static: it runs in the container's root
        if not init:
            raise KranError("--init needs tini-static on the host (apt-get install tini)")
    user = _lookup_user(rootfs, c.config.get("User") or "")
    if h.get("GroupAdd"):
        extra = tuple(g for g in _group_ids(rootfs, list(h["GroupAdd"])) if g not in user.additional_gids)
        user = dataclasses.replace(user, additional_gids=(*user.additional_gids, *extra))
    inp = SpecInput(
        id=c.id, config=config, host_config=h,
        paths=Paths(rootfs=rootfs, hostname=os.path.join(c.dir, "hostname"), hosts=os.path.join(c.dir, "hosts"),
                    resolv_conf=os.path.join(c.dir, "resolv.conf"), init=init),
        user=user,
        cgroup_parent=h.get("CgroupParent") or "/kran", cgroup_v2=_cgroup_v2(), seccomp=seccomp, caps=tuple(caps),
    )
    spec = make_spec(inp)
    from kran import rootless

    if rootless.single_id():
        # only the user's own ids are mapped: devpts' tty group (5) does not exist here
        for m in spec["mounts"]:
            if m.get("type") == "devpts":
                m["options"] = [o for o in m["options"] if not o.startswith("gid=")]
    return spec


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
    if c.host_config.get("KranSchedule"):
        from kran.engine import schedule

        schedule.check_start(c.name, c.host_config)  # outside its windows: refused, naming the next
    if os.path.exists(os.path.join(run_dir(engine), "runtime", c.id)):
        _runtime(engine, c, "delete", "--force", c.id, check=False)  # left by a monitor that was killed
    with engine.store.writing():
        try:
            os.unlink(os.path.join(c.dir, "stop-requested"))
        except FileNotFoundError:
            pass
        if c.host_config.get("KranRestartFresh"):
            from kran.engine import fresh

            fresh.before_start(c.dir, c.host_config, c.started_at)  # kran restart, stop + start
        rootfs = _mount_rootfs(engine, c)
        net = None
        try:
            from kran.engine import links

            link_env, link_hosts = links.for_start(engine, c)
            spec = _bundle(engine, c, rootfs, link_env)
            from kran.engine import networks

            netns_file = next((n.get("path") for n in (spec.get("linux") or {}).get("namespaces") or []
                               if n.get("type") == "network"), None)
            net = networks.setup(engine, c, netns_file)
            if link_hosts:
                with open(os.path.join(c.dir, "hosts"), "a") as f:
                    f.write("".join(line + "\n" for line in link_hosts))
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
            health = health_config(c.config)
            if health:
                mon["health"] = health
            if h.get("KranSchedule") or h.get("KranMaxLifetime") or h.get("KranRecreateEvery"):
                _policy_monitor_cfg(engine, c, mon)
            try:
                os.unlink(os.path.join(c.dir, "health.json"))  # each start begins "starting"
            except FileNotFoundError:
                pass
            if h.get("KranRestartFresh"):
                from kran.engine import fresh

                fresh.save_init_files(c.dir)  # as this start wrote them: what a restart by policy gets
                mon["fresh"] = fresh.monitor_argv(c.dir, fresh.overlay_opts(engine, c))
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


def reconcile_schedules(engine: Engine) -> list[str]:
    """Start the containers whose monitor died (killed, a host reboot) while they waited for their
    window (ROOT/schedule-waiting/ID, kept by the monitor), if the window is open now; the others stay
    listed for a later command.  The CLI calls this at every command's start: one listdir when
    nothing waits.  Returns the IDs started."""
    d = os.path.join(engine.root, "schedule-waiting")
    try:
        ids = os.listdir(d)
    except FileNotFoundError:
        return []
    started = []
    for cid in ids:
        try:
            c = get(engine, cid)  # a dead monitor's "restarting" reads as exited from here on
        except ContainerNotFound:
            c = None
        if c is not None and c.running:
            continue  # its monitor lives: it starts the container itself
        rp = ((c.host_config.get("RestartPolicy") or {}).get("Name") if c is not None else "") or "no"
        if rp not in ("always", "unless-stopped"):
            _unlink_quiet(os.path.join(d, cid))  # removed, or no longer under such a policy
            continue
        try:
            start(engine, c.id)
        except KranError:
            continue  # still outside its window (or a start failure): a later command tries again
        _unlink_quiet(os.path.join(d, cid))
        started.append(c.id)
    return started


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _policy_monitor_cfg(engine: Engine, c: Container, mon: dict[str, Any]) -> None:
    """monitor.json's "policy" (schedule windows, lifetime, recreate period: kran.engine.schedule)
    and, for --recreate-every, the fresh-layer helper its periodic restarts run."""
    from kran.engine import schedule

    mon["policy"] = schedule.monitor_cfg(c.host_config, c.config)
    if c.host_config.get("KranRecreateEvery"):
        from kran.engine import fresh

        if not c.host_config.get("KranRestartFresh"):
            fresh.save_init_files(c.dir)
        mon["policy"]["fresh"] = fresh.monitor_argv(c.dir, fresh.overlay_opts(engine, c))


def health_config(config: dict[str, Any]) -> dict[str, Any] | None:
    """The monitor's health check from docker's Config.Healthcheck (durations in ns -> s); None
    without one or with ``NONE``."""
    hc = config.get("Healthcheck") or {}
    test = list(hc.get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        argv = ["/bin/sh", "-c", " ".join(test[1:])]
    elif test[0] == "CMD":
        argv = test[1:]
    else:
        argv = test  # old clients: the command itself
    if not argv:
        return None
    from kran.engine.spec import parse_signal

    st = config.get("StopTimeout")
    return {"test": argv, "interval": (hc.get("Interval") or 0) / 1e9, "timeout": (hc.get("Timeout") or 0) / 1e9,
            "retries": int(hc.get("Retries") or 0), "start_period": (hc.get("StartPeriod") or 0) / 1e9,
            "start_interval": (hc.get("StartInterval") or 0) / 1e9,
            # Podman's --health-on-failure (kran.engine.healthcheck), with the stop it may make
            "on_failure": config.get("HealthcheckOnFailureAction") or "none",
            "stop_signal": parse_signal(config.get("StopSignal") or "SIGTERM"),
            "stop_timeout": 10 if st is None else int(st)}


def _size(s: str) -> int:
    from kran.engine.validate import log_size

    return log_size(s)


def _signame(n: int) -> str:
    try:
        return _signal.Signals(n).name[3:]
    except ValueError:
        return str(n)


# -- stop / kill / wait ---------------------------------------------------------------------------


def restart(engine: Engine, ref: str, timeout: int | None = None, sig: str | None = None) -> Container:
    stop(engine, ref, timeout, sig)
    return start(engine, ref)



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


def prune(engine: Engine, filters: list[str] = ()) -> tuple[list[str], int]:  # type: ignore[assignment]
    """Remove every stopped container that the filters keep (docker's ``until``, ``label``,
    ``label!``)."""
    from kran.engine import label_match
    from kran.engine.networks import until_time

    until, labels, not_labels = None, [], []
    for f in filters:
        k, sep, v = f.partition("=")
        if not sep:
            raise InvalidArgument("bad format of filter (expected name=value)")
        if k == "until":
            until = until_time(v)
        elif k == "label":
            labels.append(v)
        elif k == "label!":
            not_labels.append(v)
        else:
            raise InvalidArgument(f"invalid filter '{k}'")
    gone, space = [], 0
    for c in all_containers(engine):
        if c.running:
            continue
        lab = c.config.get("Labels") or {}
        if until is not None and c.created >= until:
            continue
        if not all(label_match(lab, x) for x in labels) or any(label_match(lab, x) for x in not_labels):
            continue
        space += _du(os.path.join(c.dir, "upper"))
        remove(engine, c.id)
        gone.append(c.id)
    return gone, space




__all__ = [  # what callers import from here, wherever it lives
    "ZERO_TIME", "NAME_RE", "Container", "ContainerNotFound", "_COLS", "_T", "_being_started", "_clear_paused",
    "_cleanup_after_exit", "_du", "_event", "_live_state", "_merge_config", "_now_rfc3339", "_pid_alive",
    "_random_name", "_released", "_request_stop", "_resolv_conf", "_row", "_runtime", "_runtime_argv",
    "_runtime_path", "_stop", "_write_state", "all_containers", "containers_using_image",
    "create", "exit_code_of", "filter_containers", "get", "inspect", "kill", "mounts_json", "netns_path", "pause",
    "prune", "remove", "rename", "restart", "run_dir", "size_rw", "start", "status_text", "stop", "unpause",
    "wait", "wait_exit", "will_remove",
]
