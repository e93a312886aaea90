"""The builder against a recording fake backend: no root, no containers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import pytest

from kran.build import dockerfile as df
from kran.build.builder import (
    Backend,
    Builder,
    BuildFailed,
    BuildOptions,
    Cache,
    RunResult,
    needed_stages,
    parse_kv_list,
)


class FakeBackend(Backend):
    def __init__(self, tmp: Path, fail: str = "") -> None:
        self.tmp = tmp
        self.images: dict[str, dict] = {"sha256:" + "b" * 64: {"architecture": "amd64", "os": "linux",
                                                              "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]}}}
        self.layers: dict[str, list[dict[str, str]]] = {"sha256:" + "b" * 64: []}
        self.runs: list[list[str]] = []
        self.removed: list[str] = []
        self.tags: dict[str, str] = {}
        self.fail = fail

    def resolve_image(self, name, *, pull, platform):
        assert name == "busybox"
        return "sha256:" + "b" * 64

    def image_config(self, image_id):
        return json.loads(json.dumps(self.images[image_id]))

    def image_exists(self, image_id):
        return image_id in self.images

    def new_image(self, base, layer_dir, *, config, history):
        files = {}
        if layer_dir:
            for dp, _dn, fn in os.walk(layer_dir):
                for n in fn:
                    p = os.path.join(dp, n)
                    files["/" + os.path.relpath(p, layer_dir)] = Path(p).read_text()
        cfg = dict(config, history=[*(self.images[base].get("history", []) if base else []), history])
        iid = "sha256:" + hashlib.sha256(json.dumps([cfg, files, len(self.images)]).encode()).hexdigest()
        self.images[iid] = cfg
        self.layers[iid] = [*(self.layers[base] if base else []), *([files] if layer_dir else [])]
        return iid

    def run(self, image_id, *, argv, env, workdir, user, network, config, history, on_start, output):
        self.runs.append(argv)
        on_start("c" * 64)
        output(b"output\n")
        if self.fail and self.fail in argv[-1]:
            return RunResult(container_id="c" * 64, exit_code=3, image_id=None)
        return RunResult(container_id="c" * 64, exit_code=0, image_id=self.new_image(image_id, None, config=config, history=history))

    @contextlib.contextmanager
    def rootfs(self, image_id):
        root = self.tmp / "rootfs"
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
        yield str(root)

    def remove_image(self, image_id):
        self.removed.append(image_id)
        self.images.pop(image_id, None)

    def tag(self, image_id, name):
        self.tags[name] = image_id

    def workdir(self):
        import tempfile

        return tempfile.mkdtemp(dir=self.tmp)


def _build(tmp_path, text, files=None, fail="", **kw):
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    for n, t in (files or {}).items():
        (ctx / n).write_text(t)
    be = kw.pop("backend", None) or FakeBackend(tmp_path, fail)
    out: list[str] = []
    cache = Cache(str(tmp_path / "cache.json"), be.image_exists)
    iid = Builder(be, cache, out.append).build(BuildOptions(context_dir=str(ctx), dockerfile=text, **kw))
    return be, iid, "".join(out)


def test_metadata_history_and_config(tmp_path):
    be, iid, out = _build(tmp_path, 'FROM busybox\nENV A=1 B="x y"\nLABEL l=$A\nEXPOSE 80 53/udp\nUSER app\n'
                                     'ENTRYPOINT ["/e"]\nCMD echo $A\nSTOPSIGNAL SIGINT\nVOLUME /v\nHEALTHCHECK NONE\n',
                          tags=["x:1"])
    cfg = be.images[iid]
    c = cfg["config"]
    assert c["Env"] == ["PATH=/bin", "A=1", "B=x y"] and c["Labels"] == {"l": "1"}
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}} and c["User"] == "app"
    assert c["Entrypoint"] == ["/e"] and c["Cmd"] == ["/bin/sh", "-c", "echo $A"] and c["StopSignal"] == "SIGINT"
    assert c["Volumes"] == {"/v": {}} and c["Healthcheck"] == {"Test": ["NONE"]}
    hist = [h["created_by"] for h in cfg["history"]]
    assert hist[0] == "/bin/sh -c #(nop)  ENV A=1 B=x y"
    assert hist[5] == '/bin/sh -c #(nop)  CMD ["/bin/sh" "-c" "echo $A"]'
    assert all(h.get("empty_layer") for h in cfg["history"])
    assert out.startswith("Step 1/10 : FROM busybox\n ---> bbbbbbbbbbbb\nStep 2/10 : ENV")
    assert out.endswith(f"Successfully built {iid[7:19]}\nSuccessfully tagged x:1\n") and be.tags == {"x:1": iid}


def test_cache_and_failure_cleanup(tmp_path):
    text = "FROM busybox\nCOPY f /f\nRUN echo $A\n"
    be, iid, out = _build(tmp_path, text, {"f": "1"})
    assert be.runs == [["/bin/sh", "-c", "echo $A"]] and " ---> Running in cccccccccccc" in out
    be2, iid2, out2 = _build(tmp_path, text, {"f": "1"}, backend=be)
    assert iid2 == iid and out2.count("Using cache") == 2 and len(be.runs) == 1
    _b, _i, out3 = _build(tmp_path, text, {"f": "2"}, backend=be)
    assert "Using cache" not in out3
    be4 = FakeBackend(tmp_path, fail="false")
    n = len(be4.images)
    with pytest.raises(BuildFailed, match=r"^The command '/bin/sh -c false' returned a non-zero code: 3$"):
        _build(tmp_path, "FROM busybox\nENV X=1\nRUN false\n", backend=be4)
    assert len(be4.images) == n and be4.removed  # the ENV step's image went again


@pytest.mark.skipif(os.geteuid() != 0, reason="--chown needs root")
def test_copy_chown_names_and_workdir(tmp_path):
    be, iid, _ = _build(tmp_path, "FROM busybox\nWORKDIR /app\nCOPY --chown=app a.txt b.txt ./\n", {"a.txt": "A", "b.txt": "B"})
    files = be.layers[iid][-1]
    assert files == {"/app/a.txt": "A", "/app/b.txt": "B"}
    assert be.images[iid]["history"][-1]["created_by"].startswith("/bin/sh -c #(nop) COPY multi:")


def test_env_same_line_uses_previous_values(tmp_path):
    be, iid, _ = _build(tmp_path, "FROM busybox\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n")
    env = be.images[iid]["config"]["Env"]
    assert "def=hello" in env and "ghi=bye" in env


def test_arg_and_run_env(tmp_path):
    be, iid, out = _build(tmp_path, "ARG V=1\nFROM busybox\nARG V\nARG W=w\nRUN echo $V$W\n",
                          build_args={"W": "x", "UNUSED": "u"})
    assert be.images[iid]["history"][-1]["created_by"] == "|2 V=1 W=x /bin/sh -c echo $V$W"
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in out


def test_target_and_needed_stages():
    d = df.parse("FROM busybox AS a\nFROM busybox AS b\nFROM a AS c\nCOPY --from=b /x /x\nFROM busybox AS d\n")
    names = ["busybox", "busybox", "a", "busybox"]
    assert needed_stages(d, 2, names) == [0, 1, 2] and needed_stages(d, 3, names) == [3]


def test_parse_kv_list():
    assert parse_kv_list(["A=1", "B", "C="], {"B": "env"}) == {"A": "1", "B": "env", "C": ""}
