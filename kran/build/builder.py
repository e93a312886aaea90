"""The builder: runs a parsed Dockerfile, step by step, like Docker's classic builder.

It knows nothing of the engine: images, containers and mounts come through :class:`Backend`
(implemented in ``kran.engine.build``; tests pass a fake).  Glossary:

- *stage state*: the image ID so far (None = scratch) and its image config (a JSON object);
- *step*: one instruction; each makes an image (an empty-layer history entry for metadata, one
  layer for RUN/COPY/ADD) which is the parent of the next step;
- *cache key*: sha256 of (parent image ID, the instruction after substitution, and for COPY/ADD a
  checksum of the copied content: names, modes, contents, not mtimes) -> image ID.

Output follows Docker's classic builder (``Step 2/7 : RUN echo hi``, `` ---> Running in ...``).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from kran.build import dockerfile as df
from kran.build.backend import (  # noqa: F401 - re-exported: the builder's API
    Backend,
    BuildFailed,
    BuildOptions,
    Cache,
    RunResult,
    cache_key,
    leads_to,
)
from kran.build.context import (
    Checksum,
    Context,
    Owner,
    checksum_sources,
    copy_into_layer,
    expand_sources,
    extract_archive,
    is_archive,
    resolve_chown,
)
from kran.build.dockerignore import Matcher
from kran.build.shell import Lexer
from kran.errors import InvalidArgument, KranError

DEFAULT_SHELL = ["/bin/sh", "-c"]
NOP = "/bin/sh -c #(nop) "
#: build args Docker passes to RUN without declaring them (and leaves out of history)
BUILTIN_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


def _goq(items: list[str]) -> str:
    """Go's ``%q`` of a []string: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(x, ensure_ascii=False) for x in items) + "]"


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


def env_dict(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in env:
        k, _, v = e.partition("=")
        out[k] = v
    return out


def set_env(env: list[str], key: str, value: str) -> list[str]:
    out = [e for e in env if e.partition("=")[0] != key]
    out.append(f"{key}={value}")
    return out


def needed_stages(d: df.Dockerfile, target: int, base_names: list[str]) -> list[int]:
    """The stages ``target`` depends on (FROM another stage, COPY --from), in file order."""
    need: set[int] = set()

    def visit(i: int) -> None:
        if i in need:
            return
        need.add(i)
        st = d.stages[i]
        j = d.stage_index(base_names[i])
        if j is not None and j < i and d.stages[j].name == base_names[i].lower():
            visit(j)
        for ins in st.instructions:
            if isinstance(ins, df.Copy) and ins.source_stage:
                k = d.stage_index(ins.source_stage)
                if k is not None and k < i:
                    visit(k)

    visit(target)
    return sorted(need)


@dataclass
class _Stage:
    image_id: str | None
    config: dict[str, Any]
    args: dict[str, str | None] = field(default_factory=dict)  # declared ARGs -> value
    cmd_set: bool = False  # a CMD in this stage (an ENTRYPOINT after it keeps it)

    @property
    def cc(self) -> dict[str, Any]:
        c = self.config.setdefault("config", {})
        assert isinstance(c, dict)
        return c


class Builder:
    def __init__(self, backend: Backend, cache: Cache, out: Callable[[str], None],
                 raw_out: Callable[[bytes], None] | None = None,
                 on_built: Callable[[str], None] | None = None) -> None:
        self.backend = backend
        self.cache = cache
        self.out = out
        self.raw_out = raw_out or (lambda b: out(b.decode(errors="replace")))
        # the API's ``aux`` message with the image ID comes before "Successfully built"
        self.on_built = on_built
        self.created: list[str] = []  # images this build made (removed again if it fails)

    # -- the whole build --------------------------------------------------------------------

    def build(self, opts: BuildOptions) -> str:
        d = df.parse(opts.dockerfile)
        lex = Lexer(d.escape)
        self.opts = opts
        self.lex = lex
        self.context = Context(opts.context_dir, None if opts.apply_dockerignore else Matcher([]))
        self.cache_sources: list[dict[str, Any]] | None = None
        if opts.cache_from:
            self.cache_sources = [self.backend.image_config(i) for i in
                                  (self.backend.find_image(r) for r in opts.cache_from) if i]
        self.used_args: set[str] = set()
        global_env: dict[str, str] = {}
        for a in d.global_args:
            for name, default in a.args:
                val = opts.build_args.get(name) if name in opts.build_args else None
                if val is None and default is not None:
                    val = lex.word(default, global_env)
                if val is not None:
                    global_env[name] = val
        self.global_env = global_env
        base_names = [lex.word(s.base.image, global_env) for s in d.stages]
        if opts.target:
            t = next((s.index for s in d.stages if s.name == opts.target.lower()), None)
            if t is None:
                raise InvalidArgument(f"failed to reach build target {opts.target} in Dockerfile")
        else:
            t = len(d.stages) - 1
        order = needed_stages(d, t, base_names)
        total = sum(1 + len(d.stages[i].instructions) for i in order)
        self.total = total
        self.step = 0
        self.stage_images: dict[int, str | None] = {}
        self.dockerfile = d
        try:
            result: str | None = None
            for i in order:
                result = self._stage(d.stages[i], base_names[i], last=(i == t))
                self.stage_images[i] = result
            if result is None:
                # FROM scratch and nothing else: an empty image
                result = self._commit_meta(_Stage(None, _scratch_config()), "", "/bin/sh -c #(nop) FROM scratch")
        except BaseException:
            for iid in reversed(self.created):
                try:
                    self.backend.remove_image(iid)
                except KranError:
                    pass
            raise
        unused = sorted(k for k in opts.build_args if k not in self.used_args and k not in BUILTIN_ARGS)
        if unused:
            self.out(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        if self.on_built:
            self.on_built(result)
        self.out(f"Successfully built {_short(result)}\n")
        for tag in opts.tags:
            self.backend.tag(result, tag)
            self.out(f"Successfully tagged {tag}\n")
        return result

    def _header(self, text: str) -> None:
        self.step += 1
        self.out(f"Step {self.step}/{self.total} : {text}\n")

    # -- one stage ----------------------------------------------------------------------------

    def _stage(self, stage: df.Stage, base: str, last: bool) -> str | None:
        self._header(stage.base.original)
        j = self.dockerfile.stage_index(base)
        if base.lower() == "scratch":
            st = _Stage(None, _scratch_config())
        elif j is not None and j < stage.index and self.dockerfile.stages[j].name == base.lower():
            iid = self.stage_images.get(j)
            st = _Stage(iid, copy.deepcopy(self.backend.image_config(iid)) if iid else _scratch_config())
            self.out(f" ---> {_short(iid) if iid else ''}\n")
        else:
            iid = self.backend.resolve_image(base, pull=self.opts.pull, platform=stage.base.platform or self.opts.platform)
            st = _Stage(iid, copy.deepcopy(self.backend.image_config(iid)))
            self.out(f" ---> {_short(iid)}\n")
        triggers = list(st.cc.get("OnBuild") or [])
        _reset_for_child(st.config)
        if triggers:
            self.out(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            for trig in triggers:
                parsed = df.parse(f"FROM scratch\n{trig}\n").stages[0].instructions
                for ins in parsed:
                    self._instruction(st, ins)
        for ins in stage.instructions:
            self._header(ins.original)
            self._instruction(st, ins)
        if last and self.opts.labels:
            labels = dict(st.cc.get("Labels") or {})
            labels.update(self.opts.labels)
            st.cc["Labels"] = labels
            text = " ".join(f'"{k}"="{v}"' for k, v in self.opts.labels.items())
            self._meta(st, f"{NOP} LABEL {text}")
        return st.image_id

    def _env(self, st: _Stage) -> dict[str, str]:
        """Variables for substitution: the stage's ARGs, overridden by its ENV."""
        out = {k: v for k, v in st.args.items() if v is not None}
        out.update(env_dict(st.cc.get("Env") or []))
        return out

    def _word(self, st: _Stage, s: str) -> str:
        return self.lex.word(s, self._env(st))

    # -- instructions ------------------------------------------------------------------------

    def _instruction(self, st: _Stage, ins: df.Instruction) -> None:  # noqa: C901
        cc = st.cc
        if isinstance(ins, df.Run):
            self._run(st, ins)
        elif isinstance(ins, df.Copy):
            self._copy(st, ins)
        elif isinstance(ins, df.Env):
            env = list(cc.get("Env") or [])
            parts = []
            before = self._env(st)  # "ENV abc=bye def=$abc": def gets abc's value from before the line
            for k, v in ins.pairs:
                key, val = self.lex.word(k, before), self.lex.word(v, before)
                env = set_env(env, key, val)
                cc["Env"] = env
                parts.append(f"{key}={val}")
            self._meta(st, f"{NOP} ENV {' '.join(parts)}")
        elif isinstance(ins, df.Label):
            labels = dict(cc.get("Labels") or {})
            parts = []
            for k, v in ins.pairs:
                key, val = self._word(st, k), self._word(st, v)
                labels[key] = val
                parts.append(f"{key}={val}")
            cc["Labels"] = labels
            self._meta(st, f"{NOP} LABEL {' '.join(parts)}")
        elif isinstance(ins, df.Arg):
            parts = []
            for name, default in ins.args:
                if name in self.opts.build_args and self.opts.build_args[name] is not None:
                    val: str | None = self.opts.build_args[name]
                elif default is not None:
                    val = self._word(st, default)
                else:
                    val = self.global_env.get(name)
                st.args[name] = val
                self.used_args.add(name)
                parts.append(f"{name}={default}" if default is not None else name)
            self._meta(st, f"{NOP} ARG {' '.join(parts)}")
        elif isinstance(ins, (df.Cmd, df.Entrypoint)):
            argv = ins.args if ins.json else list(cc.get("Shell") or DEFAULT_SHELL) + ins.args
            key = "Cmd" if isinstance(ins, df.Cmd) else "Entrypoint"
            cc[key] = argv
            if key == "Entrypoint" and not st.cmd_set:
                cc["Cmd"] = None
            if key == "Cmd":
                st.cmd_set = True
            self._meta(st, f"{NOP} {key.upper()} {_goq(argv)}")
        elif isinstance(ins, df.Workdir):
            path = self._word(st, ins.path)
            if not path.startswith("/"):
                path = os.path.join(cc.get("WorkingDir") or "/", path)
            cc["WorkingDir"] = os.path.normpath(path)
            self._workdir(st, f"{NOP}WORKDIR {cc['WorkingDir']}")
        elif isinstance(ins, df.User):
            cc["User"] = self._word(st, ins.user)
            self._meta(st, f"{NOP} USER {cc['User']}")
        elif isinstance(ins, df.Expose):
            ports = dict(cc.get("ExposedPorts") or {})
            added = []
            for w in ins.ports:
                for p in self.lex.words(w, self._env(st)):
                    p = p if "/" in p else p + "/tcp"
                    ports[p] = {}
                    added.append(p)
            cc["ExposedPorts"] = ports
            self._meta(st, f"{NOP} EXPOSE {' '.join(sorted(added))}")
        elif isinstance(ins, df.Volume):
            vols = dict(cc.get("Volumes") or {})
            paths = [self._word(st, p) for p in ins.paths] if ins.json else [
                w for p in ins.paths for w in self.lex.words(p, self._env(st))]
            for p in paths:
                vols[p] = {}
            cc["Volumes"] = vols
            self._meta(st, f"{NOP} VOLUME [{' '.join(paths)}]")
        elif isinstance(ins, df.Stopsignal):
            cc["StopSignal"] = self._word(st, ins.signal)
            self._meta(st, f"{NOP} STOPSIGNAL {cc['StopSignal']}")
        elif isinstance(ins, df.Shell):
            cc["Shell"] = ins.shell
            self._meta(st, f"{NOP} SHELL {_goq(ins.shell)}")
        elif isinstance(ins, df.Healthcheck):
            hc: dict[str, Any] = {"Test": ins.test}
            for k, v in (("Interval", ins.interval), ("Timeout", ins.timeout), ("StartPeriod", ins.start_period),
                         ("StartInterval", ins.start_interval)):
                if v:
                    hc[k] = int(v * 1e9)
            if ins.retries:
                hc["Retries"] = ins.retries
            cc["Healthcheck"] = hc
            self._meta(st, f"{NOP} HEALTHCHECK &{{{_goq(ins.test)} {ins.interval}s {ins.timeout}s {ins.start_period}s {ins.retries}}}")
        elif isinstance(ins, df.Onbuild):
            cc["OnBuild"] = [*(cc.get("OnBuild") or []), ins.expression]
            self._meta(st, f"{NOP} ONBUILD {ins.expression}")
        elif isinstance(ins, df.Maintainer):
            st.config["author"] = ins.maintainer
            self._meta(st, f"{NOP} MAINTAINER {ins.maintainer}")
        else:  # pragma: no cover - the parser makes nothing else
            raise InvalidArgument(f"unsupported instruction {ins.keyword}")

    # -- committing ---------------------------------------------------------------------------

    def _cached(self, key: str) -> str | None:
        if self.opts.no_cache:
            return None
        iid = self.cache.get(key)
        if iid and self.cache_sources is not None and not any(
                leads_to(self.backend.image_config(iid), src) for src in self.cache_sources):
            iid = None
        if iid:
            self.out(" ---> Using cache\n")
            self.out(f" ---> {_short(iid)}\n")
        return iid

    def _commit_meta(self, st: _Stage, key: str, created_by: str) -> str:
        iid = self.backend.new_image(st.image_id, None, config=_image_config(st.config),
                                     history={"created_by": created_by, "empty_layer": True})
        self.created.append(iid)
        if key:
            self.cache.put(key, iid)
        return iid

    def _meta(self, st: _Stage, created_by: str) -> None:
        key = cache_key(st.image_id, created_by + "\n" + json.dumps(_image_config(st.config)["config"], sort_keys=True))
        iid = self._cached(key)
        if iid is None:
            iid = self._commit_meta(st, key, created_by)
            self.out(f" ---> {_short(iid)}\n")
        st.image_id = iid
        st.config = copy.deepcopy(self.backend.image_config(iid))

    def _workdir(self, st: _Stage, created_by: str) -> None:
        """WORKDIR: metadata, plus a layer with the directory when the image lacks it (like
        BuildKit; a RUN's working directory must exist)."""
        path = st.cc["WorkingDir"]
        with self._rootfs_ctx(st) as rootfs:
            exists = rootfs is not None and os.path.isdir(os.path.join(rootfs, path.lstrip("/")))
        if exists:
            self._meta(st, created_by)
            return
        key = cache_key(st.image_id, created_by + "\nmkdir\n" + json.dumps(st.cc, sort_keys=True))
        iid = self._cached(key)
        if iid is None:
            layer = self.backend.workdir()
            try:
                upper = os.path.join(layer, "upper")
                os.mkdir(upper, 0o755)
                from kran.build.context import mkdirs

                mkdirs(upper, path, None)
                iid = self.backend.new_image(st.image_id, upper, config=_image_config(st.config),
                                             history={"created_by": created_by})
            finally:
                shutil.rmtree(layer, ignore_errors=True)
            self.created.append(iid)
            self.cache.put(key, iid)
            self.out(f" ---> {_short(iid)}\n")
        st.image_id = iid
        st.config = copy.deepcopy(self.backend.image_config(iid))

    # -- RUN ----------------------------------------------------------------------------------

    def _run(self, st: _Stage, ins: df.Run) -> None:
        cc = st.cc
        shell = list(cc.get("Shell") or DEFAULT_SHELL)
        if ins.json:
            argv = list(ins.args)
        else:
            script = ins.args[0]
            if ins.heredocs:
                h = ins.heredocs[0]
                if script.strip() in (f"<<{h.name}", f"<<-{h.name}", f'<<"{h.name}"', f"<<'{h.name}'",
                                      f'<<-"{h.name}"', f"<<-'{h.name}'"):
                    script = h.content
                else:
                    script = script + "\n" + "".join(x.content + x.name + "\n" for x in ins.heredocs)
            argv = shell + [script]
        # declared ARGs reach the command's environment (not the image); ENV wins over ARG
        env = list(cc.get("Env") or [])
        names = env_dict(env)
        arg_env = [f"{k}={v}" for k, v in st.args.items() if v is not None and k not in names]
        arg_env += [f"{k}={v}" for k, v in self.opts.build_args.items()
                    if k in BUILTIN_ARGS and v is not None and k not in st.args]
        created_by = " ".join(argv)
        hist_args = [f"{k}={v}" for k, v in st.args.items() if v is not None]
        if hist_args:
            created_by = f"|{len(hist_args)} {' '.join(hist_args)} {created_by}"
        key = cache_key(st.image_id, "RUN\n" + created_by + "\n" + json.dumps(cc, sort_keys=True))
        iid = self._cached(key)
        if iid is None:
            def on_start(cid: str) -> None:
                self.out(f" ---> Running in {cid[:12]}\n")

            network = ins.network or self.opts.network
            res = self.backend.run(
                st.image_id, argv=argv, env=env + arg_env, workdir=cc.get("WorkingDir") or "",
                user=cc.get("User") or "", network={"default": "host"}.get(network, network),
                config=_image_config(st.config), history={"created_by": created_by},
                on_start=on_start, output=self.raw_out,
            )
            if res.exit_code != 0 or res.image_id is None:
                shown = _goq(argv) if ins.json else " ".join(argv)
                raise BuildFailed(f"The command '{shown}' returned a non-zero code: {res.exit_code}", res.exit_code)
            self.out(f"Removing intermediate container {res.container_id[:12]}\n")
            iid = res.image_id
            self.created.append(iid)
            self.cache.put(key, iid)
            self.out(f" ---> {_short(iid)}\n")
        st.image_id = iid
        st.config = copy.deepcopy(self.backend.image_config(iid))

    # -- COPY / ADD ---------------------------------------------------------------------------

    def _copy(self, st: _Stage, ins: df.Copy) -> None:
        is_add = isinstance(ins, df.Add)
        name = "ADD" if is_add else "COPY"
        env = self._env(st)
        srcs = [self.lex.word(s, env) for s in ins.sources]
        dest = self.lex.word(ins.dest, env)
        workdir = st.cc.get("WorkingDir") or "/"
        dest_abs = dest if dest.startswith("/") else os.path.join(workdir, dest)
        if dest.endswith("/") or dest in (".", "./"):
            dest_abs = dest_abs.rstrip("/") + "/"
        chmod = None
        if ins.chmod:
            try:
                chmod = int(self.lex.word(ins.chmod, env), 8)
            except ValueError as e:
                raise InvalidArgument(f"invalid chmod parameter: {ins.chmod}") from e
        with self._source_root(ins) as (src_root, from_stage):
            excluded = (lambda rel: False) if from_stage else self.context.excluded  # noqa: E731
            urls = [s for s in srcs if is_add and urllib.parse.urlsplit(s).scheme in ("http", "https")]
            local = [s for s in srcs if s not in urls]
            rels: list[str] = []
            for s in local:
                rels.extend(expand_sources(src_root, s, excluded))
            ck = Checksum()
            ck.add_bytes("sources", checksum_sources(src_root, rels, excluded).encode())
            for u in urls:
                ck.add_bytes("url", u.encode())
            digest = ck.hexdigest()
            dest_is_dir = dest_abs.endswith("/") or len(rels) + len(urls) > 1
            kind = "multi" if len(rels) + len(urls) > 1 else (
                "dir" if rels and os.path.isdir(os.path.join(src_root, rels[0])) and not os.path.islink(os.path.join(src_root, rels[0])) else "file")
            text = f"{name} {kind}:{digest} in {dest_abs.rstrip('/') or '/'} "
            created_by = f"{NOP}{text}"
            key = cache_key(st.image_id, f"{created_by}\n{ins.source_stage}\n{ins.chown}\n{chmod}\n" + json.dumps(st.cc, sort_keys=True), digest)
            iid = self._cached(key) if not urls else None
            if iid is None:
                with self._rootfs_ctx(st) as rootfs:
                    owner: Owner | None = resolve_chown(self.lex.word(ins.chown, env), rootfs) if ins.chown else None
                    if not dest_is_dir and rootfs is not None:
                        existing = os.path.join(rootfs, dest_abs.lstrip("/"))
                        if os.path.isdir(existing) and not os.path.islink(existing):
                            dest_is_dir = True
                layer = self.backend.workdir()
                try:
                    upper = os.path.join(layer, "upper")
                    os.mkdir(upper, 0o755)
                    for rel in rels:
                        full = os.path.join(src_root, rel)
                        if is_add and not from_stage and is_archive(full):
                            extract_archive(full, dest_abs, upper, owner)
                        else:
                            copy_into_layer(src_root, [rel], dest_abs, upper, dest_is_dir=dest_is_dir,
                                            owner=owner, chmod=chmod, excluded=excluded, keep_owner=from_stage)
                    for u in urls:
                        self._download(u, dest_abs, dest_is_dir, upper, owner, chmod)
                    iid = self.backend.new_image(st.image_id, upper, config=_image_config(st.config),
                                                 history={"created_by": created_by})
                finally:
                    shutil.rmtree(layer, ignore_errors=True)
                self.created.append(iid)
                if not urls:
                    self.cache.put(key, iid)
                self.out(f" ---> {_short(iid)}\n")
        st.image_id = iid
        st.config = copy.deepcopy(self.backend.image_config(iid))

    def _rootfs_ctx(self, st: _Stage) -> AbstractContextManager[str | None]:
        from contextlib import nullcontext

        if st.image_id is None:
            return nullcontext(None)
        return self.backend.rootfs(st.image_id)

    def _source_root(self, ins: df.Copy) -> AbstractContextManager[tuple[str, bool]]:
        from contextlib import contextmanager

        @contextmanager
        def cm() -> Iterator[tuple[str, bool]]:
            if not ins.source_stage:
                yield self.context.root, False
                return
            src = self.lex.word(ins.source_stage, self.global_env)
            j = self.dockerfile.stage_index(src)
            if j is not None and j in self.stage_images:
                iid = self.stage_images[j]
            elif j is not None:
                raise InvalidArgument(f"invalid from flag value {src}: stage not built")
            else:
                iid = self.backend.resolve_image(src, pull=self.opts.pull, platform=self.opts.platform)
            if iid is None:  # a scratch stage with nothing in it
                empty = self.backend.workdir()
                try:
                    yield empty, True
                finally:
                    shutil.rmtree(empty, ignore_errors=True)
                return
            with self.backend.rootfs(iid) as root:
                yield root, True

        return cm()

    def _download(self, url: str, dest: str, dest_is_dir: bool, upper: str, owner: Owner | None, chmod: int | None) -> None:
        name = os.path.basename(urllib.parse.urlsplit(url).path) or "index.html"
        target = dest.rstrip("/") + "/" + name if dest_is_dir or dest.endswith("/") else dest
        out = os.path.join(upper, target.lstrip("/"))
        os.makedirs(os.path.dirname(out), 0o755, exist_ok=True)
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(out, "wb") as f:  # noqa: S310 - ADD <url>
                shutil.copyfileobj(r, f)
        except OSError as e:
            raise InvalidArgument(f"failed to download {url}: {e}") from e
        os.chmod(out, chmod if chmod is not None else 0o600)
        if owner:
            os.lchown(out, owner.uid, owner.gid)


def _scratch_config() -> dict[str, Any]:
    import platform

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {"architecture": arch, "os": "linux", "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}}


def _reset_for_child(config: dict[str, Any]) -> None:
    """A new stage starts from its base's config; ONBUILD triggers are not inherited (run, not kept)."""
    config.setdefault("config", {})
    config["config"].pop("OnBuild", None)
    for k in ("rootfs", "history", "created", "container", "container_config", "docker_version"):
        config.pop(k, None)


def _image_config(config: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in config.items() if k not in ("rootfs", "history", "created")}
    out["config"] = {k: v for k, v in (config.get("config") or {}).items() if v not in (None, [], {}, "") or k == "Cmd" and v is not None}
    return out


def parse_kv_list(items: list[str], environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """``--build-arg K=V`` / ``--build-arg K`` (from the environment, or unset)."""
    env = os.environ if environ is None else environ
    out: dict[str, str | None] = {}
    for it in items:
        k, eq, v = it.partition("=")
        out[k] = v if eq else env.get(k)
    return out
