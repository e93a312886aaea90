"""``kran build`` as a user types it, against the busybox image (root, real containers)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

HELLO_C = '#include <stdio.h>\nint main(void){puts("hello from a static binary");return 0;}\n'


def _ctx(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return ctx


def _no_leftovers(kran) -> None:
    assert kran("ps", "-aq").out.strip() == ""
    assert kran("images", "-f", "dangling=true", "-q").out.strip() == ""


def test_build_run_cache_history(kran, busybox, tmp_path):
    ctx = _ctx(tmp_path, 'FROM busybox\nRUN echo hi > /hello && echo ran\nENV A=1\nCMD ["cat", "/hello"]\n')
    p = kran("build", "-t", "t1:v1", str(ctx))
    lines = p.out.splitlines()
    assert lines[0] == "Step 1/4 : FROM busybox"
    assert lines[1] == f" ---> {busybox.split(':')[1][:12]}"
    assert "Step 2/4 : RUN echo hi > /hello && echo ran" in lines
    assert any(ln.startswith(" ---> Running in ") for ln in lines)
    assert "ran" in lines
    assert any(ln.startswith("Removing intermediate container ") for ln in lines)
    assert lines[-2].startswith("Successfully built ") and lines[-1] == "Successfully tagged t1:v1"
    iid = lines[-2].split()[-1]
    assert kran("run", "--rm", "t1:v1").out == "hi\n"
    assert kran("ps", "-aq").out.strip() == ""
    h = kran("history", "--no-trunc", "--format", "{{.CreatedBy}}", "t1:v1").out.splitlines()
    assert h[:3] == ['/bin/sh -c #(nop)  CMD ["cat" "/hello"]', "/bin/sh -c #(nop)  ENV A=1",
                     "/bin/sh -c echo hi > /hello && echo ran"]
    cfg = json.loads(kran("image", "inspect", "t1:v1").out)[0]["Config"]
    assert cfg["Cmd"] == ["cat", "/hello"] and "A=1" in cfg["Env"]
    again = kran("build", "-t", "t1:v1", str(ctx)).out
    assert again.count(" ---> Using cache") == 3 and f"Successfully built {iid}" in again
    assert "Running in" not in again
    q = kran("build", "-q", str(ctx)).out
    assert q.startswith("sha256:" + iid) and q.count("\n") == 1
    nc = kran("build", "--no-cache", str(ctx)).out
    assert "Using cache" not in nc and "Running in" in nc


def test_multistage_static_binary_from_scratch(kran, busybox, tmp_path):
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to compile the static test program")
    ctx = _ctx(tmp_path, (
        "FROM busybox AS build\n"
        "COPY hello /src/hello\n"
        "RUN cp /src/hello /out && chmod 755 /out && echo built\n"
        "FROM busybox AS unused\n"
        "RUN echo never-runs\n"
        "FROM scratch\n"
        "COPY --from=build /out /out\n"
        'CMD ["/out"]\n'
    ))
    (tmp_path / "hello.c").write_text(HELLO_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(ctx / "hello"), str(tmp_path / "hello.c")], check=True)
    p = kran("build", "-t", "static:1", str(ctx))
    assert "never-runs" not in p.out and "built" in p.out
    assert "Step 1/6 : FROM busybox AS build" in p.out and "Step 6/6 : CMD [\"/out\"]" in p.out
    assert kran("run", "--rm", "static:1").out == "hello from a static binary\n"
    # skopeo reads `kran save` of it: one layer (the COPY), scratch has none
    archive = tmp_path / "static.tar"
    kran("save", "-o", str(archive), "static:1")
    d = json.loads(subprocess.run(["skopeo", "inspect", f"docker-archive:{archive}"], capture_output=True,
                                  text=True, check=True).stdout)
    assert len(d["Layers"]) == 1
    # and umoci unpacks it: the rootfs is exactly the one static binary
    layout = tmp_path / "layout"
    layout.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(layout)], check=True)
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:1", str(tmp_path / "bundle")], check=True,
                   capture_output=True)
    rootfs = tmp_path / "bundle" / "rootfs"
    assert sorted(p.name for p in rootfs.iterdir()) == ["out"]
    assert (rootfs / "out").read_bytes() == (ctx / "hello").read_bytes()
    # --target builds only what that stage needs
    t = kran("build", "--target", "build", str(ctx)).out
    assert "Step 3/3 :" in t and "never-runs" not in t


def test_cache_touch_and_change(kran, busybox, tmp_path):
    ctx = _ctx(tmp_path, "FROM busybox\nCOPY a.txt /a.txt\nRUN cat /a.txt\nCOPY b.txt /b.txt\n",
               {"a.txt": "one\n", "b.txt": "bee\n"})
    kran("build", "-t", "c:1", str(ctx))
    later = time.time() + 100
    os.utime(ctx / "a.txt", (later, later))
    p = kran("build", "-t", "c:1", str(ctx)).out
    assert p.count("Using cache") == 3
    (ctx / "a.txt").write_text("two\n")
    p = kran("build", "-t", "c:1", str(ctx)).out
    assert "Using cache" not in p and "two" in p
    # the history names the copied content
    h = kran("history", "--no-trunc", "--format", "{{.CreatedBy}}", "c:1").out.splitlines()
    assert h[0].startswith("/bin/sh -c #(nop) COPY file:") and h[0].endswith(" in /b.txt ")


def test_dockerignore_and_copy_forms(kran, busybox, tmp_path):
    ctx = _ctx(tmp_path, (
        "FROM busybox\n"
        "COPY . /ctx\n"
        "COPY --chown=nobody --chmod=0640 keep.txt /owned/\n"
        "COPY sub/*.txt /glob/\n"
        "WORKDIR /w\n"
        "COPY keep.txt rel\n"
        'CMD ["sh", "-c", "ls -A /ctx /glob | tr \\"\\\\n\\" \\" \\"; echo; ls -R /ctx/sub | grep -c z.log; stat -c \\"%U %a\\" /owned/keep.txt; cat /w/rel"]\n'
    ), {"keep.txt": "k\n", "secret.log": "s\n", "sub/x.txt": "x\n", "sub/y.md": "y\n",
        "sub/deep/z.log": "z\n", ".dockerignore": "*.log\n**/*.log\n!keep.log\n"})
    kran("build", "-t", "ign", str(ctx))
    out = kran("run", "--rm", "ign").out
    first, zlogs, owner, rel = out.splitlines()[:4]
    assert zlogs == "0"
    assert "secret.log" not in first and "keep.txt" in first and "Dockerfile" in first
    assert "x.txt" in first and "y.md" not in first.split("/glob:")[1]
    assert owner == "nobody 640" and rel == "k"


def test_args_and_env_substitution(kran, busybox, tmp_path):
    ctx = _ctx(tmp_path, (
        "ARG BASE=busybox\n"
        "FROM ${BASE}\n"
        "ARG WHO=world\n"
        "ARG UNSET\n"
        "ENV GREETING=hello DIR=/data\n"
        "WORKDIR ${DIR}/sub\n"
        "RUN echo \"$GREETING $WHO ${UNSET:-dflt}\" > out\n"
        "LABEL who=$WHO\n"
        'CMD ["cat", "out"]\n'
    ))
    kran("build", "-t", "a:1", str(ctx))
    assert kran("run", "--rm", "a:1").out == "hello world dflt\n"
    kran("build", "-t", "a:2", "--build-arg", "WHO=kran", "--build-arg", "UNSET=set", "--label", "x=y", str(ctx))
    assert kran("run", "--rm", "a:2").out == "hello kran set\n"
    cfg = json.loads(kran("image", "inspect", "a:2").out)[0]["Config"]
    assert cfg["WorkingDir"] == "/data/sub" and cfg["Labels"] == {"who": "kran", "x": "y"}
    assert not any(e.startswith("WHO=") for e in cfg["Env"])  # ARGs stay out of the image
    h = kran("history", "--no-trunc", "--format", "{{.CreatedBy}}", "a:2").out
    assert '|2 WHO=kran UNSET=set /bin/sh -c echo "$GREETING $WHO ${UNSET:-dflt}" > out' in h


def test_failing_run(kran, busybox, tmp_path):
    ctx = _ctx(tmp_path, "FROM busybox\nENV X=1\nRUN echo before > /f\nRUN false\nCMD [\"sh\"]\n")
    p = kran("build", "-t", "bad", str(ctx), check=False)
    assert p.returncode == 1
    assert "The command '/bin/sh -c false' returned a non-zero code: 1" in p.err
    assert kran("images", "-q", "bad", check=False).out.strip() == ""
    _no_leftovers(kran)


def test_parse_error_and_stdin(kran, busybox, tmp_path):
    ctx = _ctx(tmp_path, "FROM busybox\nFOO bar\n")
    p = kran("build", str(ctx), check=False)
    assert p.returncode == 1 and "dockerfile parse error on line 2: unknown instruction: FOO" in p.err
    # a Dockerfile on stdin (no context)
    p = kran("build", "-t", "stdin:df", "-", input=b'FROM busybox\nRUN echo from-stdin > /s\nCMD ["cat", "/s"]\n')
    assert kran("run", "--rm", "stdin:df").out == "from-stdin\n"
    # a context tar on stdin
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in (("Dockerfile", b'FROM busybox\nCOPY f /f\nCMD ["cat", "/f"]\n'), ("f", b"tarred\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    kran("build", "-t", "stdin:tar", "-", input=buf.getvalue())
    assert kran("run", "--rm", "stdin:tar").out == "tarred\n"


def test_add_tar_and_iidfile(kran, busybox, tmp_path):
    ctx = _ctx(tmp_path, 'FROM busybox\nADD files.tar.gz /opt/\nCMD ["cat", "/opt/dir/inside"]\n')
    with tarfile.open(ctx / "files.tar.gz", "w:gz") as t:
        data = b"unpacked\n"
        ti = tarfile.TarInfo("dir/inside")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    iid = tmp_path / "iid"
    kran("build", "--iidfile", str(iid), "-t", "add:1", str(ctx))
    assert iid.read_text().startswith("sha256:")
    assert kran("run", "--rm", "add:1").out == "unpacked\n"


def test_intermediate_images_hidden_like_docker(kran, busybox, tmp_path):
    ctx = tmp_path / "ctxi"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo one > /one\nRUN echo two > /two\nCMD [\"cat\", \"/two\"]\n")
    kran("build", "-q", "-t", "steps:1", str(ctx))
    shown = kran("images", "--format", "{{.Repository}}:{{.Tag}}").out.split()
    assert sorted(shown) == ["busybox:latest", "steps:1"]
    assert kran("images", "-q", "--filter", "dangling=true").out == ""
    assert len(kran("images", "-a", "-q").out.split()) > 2
    assert kran("run", "--rm", "steps:1").out == "two\n"
