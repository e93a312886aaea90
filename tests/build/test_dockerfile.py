"""The Dockerfile parser (golden files), the shell-word lexer and .dockerignore matching: pure."""

from __future__ import annotations

import json

import pytest

from kran.build.dockerfile import DockerfileError, parse, parse_duration
from kran.build.dockerignore import Matcher, clean
from kran.build.shell import Lexer
from kran.errors import InvalidArgument

from .golden_gen import GOLDEN, render

CASES = sorted(p.stem for p in GOLDEN.glob("*.Dockerfile"))


def test_enough_golden_cases():
    assert len(CASES) >= 20
    assert sum(c.startswith("err-") for c in CASES) >= 5


@pytest.mark.parametrize("name", CASES)
def test_golden(name):
    got = render((GOLDEN / f"{name}.Dockerfile").read_text())
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    assert got == want


def test_error_wording():
    with pytest.raises(DockerfileError, match=r"^dockerfile parse error on line 3: unknown instruction: BOGUS$"):
        parse("FROM a\n\nbogus x\n")
    with pytest.raises(DockerfileError, match=r"^Dockerfile parse error line 1: FROM requires either one or three arguments$"):
        parse("FROM a b\n")
    with pytest.raises(DockerfileError, match=r"^no build stage in current context$"):
        parse("ENV A=1\nFROM a\n")


def test_stage_lookup_and_global_args():
    d = parse("ARG V=1\nFROM busybox:${V} AS One\nFROM one\nCOPY --from=0 /a /b\n")
    assert d.stage_index("one") == 0 and d.stage_index("ONE") == 0 and d.stage_index("1") == 1
    assert d.stage_index("nope") is None
    assert d.global_args[0].args == [("V", "1")]


def test_directive_only_at_top():
    d = parse("FROM busybox\n# escape=`\nRUN echo \\\n  x\n")
    assert d.escape == "\\" and d.stages[0].instructions[0].args == ["echo   x"]


def test_duration():
    assert parse_duration("1m30s") == 90 and parse_duration("500ms") == 0.5 and parse_duration("0") == 0
    with pytest.raises(DockerfileError):
        parse_duration("5x")


ENV = {"A": "a", "E": "", "SP": "x y"}


@pytest.mark.parametrize(
    ("src", "want"),
    [
        ("$A", "a"), ("${A}", "a"), ("pre${A}post", "preapost"), ("$NOPE", ""),
        ("${NOPE:-def}", "def"), ("${E:-def}", "def"), ("${E-def}", ""), ("${NOPE-def}", "def"),
        ("${A:+alt}", "alt"), ("${E:+alt}", ""), ("${E+alt}", "alt"), ("${NOPE+alt}", ""),
        ("\\$A", "$A"), ("'$A'", "$A"), ('"$A b"', "a b"), ('"\\$A"', "$A"), ("a\\ b", "a b"),
        ("${NOPE:-${A}x}", "ax"), ("$", "$"), ("a$", "a$"), ("${SP}", "x y"),
    ],
)
def test_lexer_word(src, want):
    assert Lexer().word(src, ENV) == want


def test_lexer_words_and_backtick():
    assert Lexer().words('80 "$A b" ${SP}', ENV) == ["80", "a b", "x y"]
    assert Lexer("`").word("`$A\\x", ENV) == "$A\\x"


def test_lexer_errors():
    with pytest.raises(InvalidArgument):
        Lexer().word("${A", ENV)
    with pytest.raises(InvalidArgument, match="NOPE: must be set"):
        Lexer().word("${NOPE:?must be set}", ENV)


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["*.log"], "a.log", True),
        (["*.log"], "dir/a.log", False),
        (["**/*.log"], "dir/sub/a.log", True),
        (["**/*.log"], "a.log", True),
        (["dir"], "dir/sub/file", True),
        (["/dir/"], "dir/file", True),
        (["./dir"], "dir/file", True),
        (["*", "!keep"], "keep", False),
        (["*", "!keep"], "other", True),
        (["!keep", "*"], "keep", True),  # last match wins
        (["a/**/b"], "a/x/y/b", True),
        (["a/**/b"], "a/b", True),
        (["?.txt"], "ab.txt", False),
        (["[a-c].txt"], "b.txt", True),
        (["# comment", ""], "x", False),
        (["dir/*", "!dir/keep*"], "dir/keep.txt", False),
        (["foo/../bar"], "bar", True),
    ],
)
def test_dockerignore(patterns, path, excluded):
    assert Matcher.from_text("\n".join(patterns)).excluded(path) is excluded


def test_clean():
    assert clean("/a/./b/") == "a/b" and clean("./x") == "x" and clean("a/../../b") == "../b"
