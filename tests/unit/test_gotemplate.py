"""kran.cli.gotemplate against Go's text/template + fmt and docker's template functions.

Expected strings are what ``docker ... --format`` prints for the same template and data (Go's
text/template over map[string]interface{} for dicts, over structs for objects).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from kran.cli import gotemplate
from kran.cli.gotemplate import TemplateError, compile, go_json, render, sprintf
from kran.errors import InvalidArgument

pytestmark = pytest.mark.unit

INSPECT = {
    "Id": "sha256:3f57d9401f8d",
    "RepoTags": ["busybox:latest", "busybox:1.36"],
    "Config": {
        "Env": ["PATH=/usr/bin", "A=1"],
        "Cmd": ["sh"],
        "Entrypoint": None,
        "Labels": {"b": "2", "a": "1"},
        "ExposedPorts": {},
        "Size": 1000000.0,
        "Count": 3,
    },
    "State": {"Running": True, "Pid": 42, "ExitCode": 0, "Error": ""},
    "Mounts": [{"Source": "/src", "Destination": "/dst"}, {"Source": "/a", "Destination": "/b"}],
    "Html": "<a&b>",
}


@pytest.mark.parametrize(
    "template, want",
    [
        # fields, printing
        ("{{.Id}}", "sha256:3f57d9401f8d"),
        ("{{ .Id }}", "sha256:3f57d9401f8d"),
        ("{{.Config.Cmd}}", "[sh]"),
        ("{{.RepoTags}}", "[busybox:latest busybox:1.36]"),
        ("{{.Config.Labels}}", "map[a:1 b:2]"),
        ("{{.Config.ExposedPorts}}", "map[]"),
        ("{{.State.Running}}", "true"),
        ("{{.State.Pid}}", "42"),
        ("{{.Config.Size}}", "1e+06"),
        ("{{.Config.Entrypoint}}", "<no value>"),
        ("{{.Missing}}", "<no value>"),
        ("{{.Missing.Deeper}}", "<no value>"),
        ("{{.State}}", "map[Error: ExitCode:0 Pid:42 Running:true]"),
        ("{{.Mounts}}", "[map[Destination:/dst Source:/src] map[Destination:/b Source:/a]]"),
        # json (docker's: compact, HTML left alone, dict order kept)
        ("{{json .Config.Labels}}", '{"b":"2","a":"1"}'),
        ("{{json .State}}", '{"Running":true,"Pid":42,"ExitCode":0,"Error":""}'),
        ("{{json .Config.Entrypoint}}", "null"),
        ("{{json .Config.Size}}", "1000000"),
        ("{{json .Html}}", '"<a&b>"'),
        ("{{.Config.Cmd | json}}", '["sh"]'),
        ("{{json .Missing}}", "null"),
        # index
        ('{{index .Config.Labels "a"}}', "1"),
        ('{{index .Config.Labels "zz"}}', "<no value>"),
        ("{{index .RepoTags 1}}", "busybox:1.36"),
        ("{{(index .Mounts 0).Source}}", "/src"),
        ('{{index "abc" 1}}', "98"),
        # range
        ("{{range .RepoTags}}[{{.}}]{{end}}", "[busybox:latest][busybox:1.36]"),
        ("{{range $i, $e := .RepoTags}}{{$i}}={{$e}} {{end}}", "0=busybox:latest 1=busybox:1.36 "),
        ("{{range $e := .RepoTags}}{{$e}};{{end}}", "busybox:latest;busybox:1.36;"),
        ("{{range $k, $v := .Config.Labels}}{{$k}}:{{$v}},{{end}}", "a:1,b:2,"),
        ("{{range .Config.Labels}}{{.}}{{end}}", "12"),
        ("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}", "/src:/dst /a:/b "),
        ("{{range .Config.Entrypoint}}x{{else}}none{{end}}", "none"),
        ("{{range .Missing}}x{{end}}", ""),
        ("{{range 3}}{{.}}{{end}}", "012"),
        ('{{range .RepoTags}}{{if eq . "busybox:1.36"}}{{break}}{{end}}{{.}}{{end}}', "busybox:latest"),
        ('{{range .RepoTags}}{{if eq . "busybox:latest"}}{{continue}}{{end}}{{.}}{{end}}', "busybox:1.36"),
        # if / else if / with
        ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
        ("{{if .State.ExitCode}}failed{{else}}ok{{end}}", "ok"),
        ("{{if .State.Error}}e{{else if .Config.Cmd}}cmd{{else}}none{{end}}", "cmd"),
        ("{{if eq .State.Pid 1}}one{{else if eq .State.Pid 42}}answer{{else}}other{{end}}", "answer"),
        ("{{if not .Config.Entrypoint}}no entrypoint{{end}}", "no entrypoint"),
        ("{{if and .State.Running (gt .State.Pid 0)}}running{{end}}", "running"),
        ("{{with .State}}{{.Pid}}{{end}}", "42"),
        ("{{with .Missing}}yes{{else}}no{{end}}", "no"),
        ("{{with .Missing}}a{{else with .State}}{{.Pid}}{{end}}", "42"),
        # variables
        ("{{$x := .State.Pid}}{{$x}}-{{$.Id}}", "42-sha256:3f57d9401f8d"),
        ("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
        ("{{with $s := .State}}{{$s.Pid}}{{end}}", "42"),
        ("{{range .Mounts}}{{$.Id}} {{end}}", "sha256:3f57d9401f8d sha256:3f57d9401f8d "),
        # functions
        ('{{join .RepoTags ", "}}', "busybox:latest, busybox:1.36"),
        ('{{split "a:b:c" ":"}}', "[a b c]"),
        ('{{index (split .Id ":") 1}}', "3f57d9401f8d"),
        ('{{lower "ABC"}} {{upper "abc"}} {{title "hello world-x y_z"}}', "abc ABC Hello World-X Y_z"),
        ("{{len .RepoTags}} {{len .Config.Labels}} {{len .Id}}", "2 2 19"),
        ("{{.RepoTags | len}}", "2"),
        ('{{truncate .Id 10}}|{{truncate "ab" 5}}', "sha256:3f5|ab"),
        ('{{pad "ab" 1 2}}|{{pad "" 3 3}}|', " ab  ||"),
        ('{{println "a" 1 true}}', "a 1 true\n"),
        ('{{print "a" 1 2 "b" 3}}', "a1 2b3"),
        ('{{printf "%s:%d" .Id .State.Pid}}', "sha256:3f57d9401f8d:42"),
        ('{{.Id | printf "<%s>"}}', "<sha256:3f57d9401f8d>"),
        (
            '{{eq .State.Pid 42}} {{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 2.5 2.5}}',
            "true true true true true true",
        ),
        ('{{eq .Id "x" "sha256:3f57d9401f8d"}}', "true"),
        ('{{and 1 0}} {{and 1 "x"}} {{or 0 ""}} {{or 0 "y"}} {{not 0}}', "0 x  y true"),
        ('{{or .Missing "default"}}', "default"),
        (
            '{{html "<a href=\'x\'>"}} {{urlquery "a b&c"}} {{js "it\'s <b>"}}',
            "&lt;a href=&#39;x&#39;&gt; a+b%26c it\\'s \\u003Cb\\u003E",
        ),
        ('{{slice "abcdef" 1 3}} {{slice .RepoTags 1}}', "bc [busybox:1.36]"),
        # literals
        (
            "{{1e6}} {{1.0}} {{1.5}} {{100000.0}} {{0.00001}} {{-0.5}} {{1e21}}",
            "1e+06 1 1.5 100000 1e-05 -0.5 1e+21",
        ),
        ("{{'a'}} {{0x10}} {{017}} {{0b11}} {{1_000}} {{-3}}", "97 16 15 3 1000 -3"),
        ('{{"tab\\there"}} {{`raw\\n`}} {{true}} {{false}}', "tab\there raw\\n true false"),
        # whitespace trimming and comments
        ("a  {{- .State.Pid -}}  b", "a42b"),
        ("{{- /* a comment */ -}}\n  {{.State.Pid}}", "42"),
        ("x{{/* c */}}y", "xy"),
        ("{{-3}}", "-3"),
        ("line1\n{{- range .RepoTags}}\n  {{.}}\n{{- end}}\n", "line1\n  busybox:latest\n  busybox:1.36\n"),
    ],
)
def test_render(template: str, want: str) -> None:
    assert render(template, INSPECT) == want


def test_render_dot_and_scalars() -> None:
    assert render("{{.}}", "hello") == "hello"
    assert render("{{.}}", None) == "<no value>"
    assert render("{{.}}", [1, 2.5, None, True, "s", {"z": 1}]) == "[1 2.5 <nil> true s map[z:1]]"
    assert render("{{.}}", {"k": [None]}) == "map[k:[<nil>]]"
    assert render("{{.}}", 123456789.0) == "1.23456789e+08"
    assert render("{{.}}", 0.0001) == "0.0001"
    assert render("{{.}}", float("inf")) == "+Inf"
    assert render("{{.}}", 10**20) == "100000000000000000000"
    assert render("text only", {}) == "text only"
    assert render("", {}) == ""


class Row:
    """A row object like the CLI's image/container rows: attributes, properties and methods."""

    def __init__(self) -> None:
        self.ID = "abc"
        self.Names = ["web", "db"]
        self._hidden = 1

    @property
    def Size(self) -> str:
        return "1kB"

    def Label(self, key: str) -> str:
        return {"com.example": "yes"}.get(key, "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Port:
    PrivatePort: int
    Type: str


def test_objects_are_structs() -> None:
    row = Row()
    assert render('{{.ID}} {{.Size}} {{.Names}} {{.Label "com.example"}}', row) == "abc 1kB [web db] yes"
    assert render("{{json .}}", row) == '{"ID":"abc","Names":["web","db"],"Size":"1kB"}'
    assert render("{{.}}", row) == "{abc [web db]}"
    port = Port(PrivatePort=80, Type="tcp")
    assert render("{{.}} {{.PrivatePort}}/{{.Type}}", port) == "{80 tcp} 80/tcp"
    assert render("{{json .}}", [port]) == '[{"PrivatePort":80,"Type":"tcp"}]'
    assert render("{{range .}}{{.Type}}{{end}}", [port, port]) == "tcptcp"


@pytest.mark.parametrize(
    "fmt, args, want",
    [
        ("%-10s|", ("ab",), "ab        |"),
        ("%10s|", ("ab",), "        ab|"),
        ("%5d|%-5d|%05d", (42, 42, -42), "   42|42   |-0042"),
        ("%+d % d", (5, 7), "+5  7"),
        ("%v %v %v %v", (True, None, [1, "a"], {"b": 2, "a": 1}), "true <nil> [1 a] map[a:1 b:2]"),
        ("%q %q", ('a"b\n', 65), '"a\\"b\\n" \'A\''),
        ("%t", (False,), "false"),
        ("%x %X %o %b %c %U", (255, 255, 8, 5, 65, 0x1F600), "ff FF 10 101 A U+1F600"),
        ("%#x %#o", (255, 8), "0xff 010"),
        ("%x", ("hi",), "6869"),
        ("%.2f %5.1f %08.3f", (3.14159, 3.14159, -3.14159), "3.14   3.1 -003.142"),
        ("%e %E %g %G", (1234.5, 1234.5, 0.000012, 1e20), "1.234500e+03 1.234500E+03 1.2e-05 1E+20"),
        ("%v %v %v", (1e6, 1e20, 1e-5), "1e+06 1e+20 1e-05"),
        ("%.3s|%.1q", ("abcdef", "xyz"), 'abc|"x"'),
        (
            "%T %T %T %T %T",
            (1, 1.5, "s", [1], {"a": 1}),
            "int float64 string []interface {} map[string]interface {}",
        ),
        ("%d%%", (50,), "50%"),
        ("%*d|%-*d|", (4, 1, 3, 2), "   1|2  |"),
        # Go's complaints, verbatim
        ("%d", ("x",), "%!d(string=x)"),
        ("%s", (3,), "%!s(int=3)"),
        ("%s", (None,), "%!s(<nil>)"),
        ("%d", ([1, "a"],), "[1 %!d(string=a)]"),
        ("%s %s", ("x",), "x %!s(MISSING)"),
        ("%s", ("x", 1, None), "x%!(EXTRA int=1, <nil>)"),
        ("100%", (), "100%!(NOVERB)"),
    ],
)
def test_sprintf(fmt: str, args: tuple[object, ...], want: str) -> None:
    assert sprintf(fmt, *args) == want


def test_go_json() -> None:
    assert go_json({"f": [1.0, 1e21, 1e-7, 123456789.0, 0.1, 1e20, -0.0]}) == (
        '{"f":[1,1e+21,1e-7,123456789,0.1,100000000000000000000,-0]}'
    )
    assert go_json('a\u2028\x01"\\\t\b<>&é') == '"a\\u2028\\u0001\\"\\\\\\t\\b<>&é"'
    assert go_json({"s": "<>&"}, escape_html=True) == '{"s":"\\u003c\\u003e\\u0026"}'
    assert go_json([None, True, 3, (1, 2)]) == "[null,true,3,[1,2]]"
    assert render("{{json .}}", float("nan")) == ""  # docker drops the encoder's error


@pytest.mark.parametrize(
    "template, message",
    [
        ("{{.ID}", "template: :1: bad character U+007D '}'"),
        ("{{.ID }", 'template: :1: unexpected "}" in operand'),
        ("{{.ID", "template: :1: unclosed action"),
        ("{{.ID\n\n", "template: :3: unclosed action started at :1"),
        ("{{if .X}}", "template: :1: unexpected EOF"),
        ("{{end}}", "template: :1: unexpected {{end}}"),
        ("{{else}}", "template: :1: unexpected {{else}}"),
        ("{{if .X}}{{else}}{{else}}{{end}}", "template: :1: expected end; found {{else}}"),
        ("{{nope .X}}", 'template: :1: function "nope" not defined'),
        ("{{table .X}}", 'template: :1: function "table" not defined'),
        ("{{$y}}", 'template: :1: undefined variable "$y"'),
        ("{{range $i, $e := .L}}{{end}}{{$i}}", 'template: :1: undefined variable "$i"'),
        ("{{}}", "template: :1: missing value for command"),
        ("{{if}}x{{end}}", "template: :1: missing value for if"),
        ("{{.N | 3}}", "template: :1: non executable command in pipeline stage 2"),
        ("{{break}}", "template: :1: {{break}} outside {{range}}"),
        ('{{"abc}}', "template: :1: unterminated quoted string"),
        ("{{'ab'}}", "template: :1: malformed character constant: 'ab'"),
        ("{{/* x", "template: :1: unclosed comment"),
        ("{{/* x */ .X}}", "template: :1: comment ends before closing delimiter"),
        ("{{(.X}}", "template: :1: unclosed left paren"),
        ("{{.X)}}", 'template: :1: unexpected ")" in command'),
        ("{{3x}}", 'template: :1: bad number syntax: "3x"'),
        ("{{.X €}}", "template: :1: unrecognized character in action: U+20AC '€'"),
        ("{{.X é}}", 'template: :1: function "é" not defined'),  # letters make identifiers
        ("{{true.X}}", 'template: :1: unexpected . after term "true"'),
        ("a\n{{.X }\n", 'template: :2: unexpected "}" in operand'),
    ],
)
def test_parse_errors(template: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        compile(template)
    assert str(e.value) == "template parsing error: " + message


@pytest.mark.parametrize(
    "template, data, message",
    [
        (
            "{{.Foo}}",
            "str",
            'template: :1:2: executing "" at <.Foo>: can\'t evaluate field Foo in type string',
        ),
        (
            "{{.Id.Foo}}",
            INSPECT,
            'template: :1:2: executing "" at <.Id.Foo>: can\'t evaluate field Foo in type string',
        ),
        (
            "x\n {{.A.B}}",
            {"A": 1},
            'template: :2:3: executing "" at <.A.B>: can\'t evaluate field B in type int',
        ),
        (
            "{{.Nope}}",
            Row(),
            'template: :1:2: executing "" at <.Nope>: can\'t evaluate field Nope in type Row',
        ),
        (
            "{{._hidden}}",
            Row(),
            'template: :1:2: executing "" at <._hidden>: can\'t evaluate field _hidden in type Row',
        ),
        (
            "{{.Config.Entrypoint.X}}",
            INSPECT,
            'template: :1:2: executing "" at <.Config.Entrypoint.X>: nil pointer evaluating interface {}.X',
        ),
        (
            "{{index .RepoTags 5}}",
            INSPECT,
            'template: :1:2: executing "" at <index .RepoTags 5>: error calling index: index out of range: 5',
        ),
        (
            "{{index .Missing 1}}",
            INSPECT,
            'template: :1:2: executing "" at <index .Missing 1>: error calling index: index of untyped nil',
        ),
        (
            '{{join .L ","}}',
            {"L": [1, 2]},
            'template: :1:7: executing "" at <.L>: wrong type for value; expected []string; got []interface {}',
        ),
        (
            "{{lower .Missing}}",
            {},
            'template: :1:8: executing "" at <.Missing>: invalid value; expected string',
        ),
        ("{{.Id 1}}", INSPECT, 'template: :1:2: executing "" at <.Id>: Id is not a method but has arguments'),
        ("{{nil}}", {}, 'template: :1:2: executing "" at <nil>: nil is not a command'),
        (
            "{{eq .State.Pid 42.0}}",
            INSPECT,
            'template: :1:2: executing "" at <eq .State.Pid 42.0>: error calling eq: incompatible types for comparison',
        ),
        (
            "{{lt .Missing 1}}",
            {},
            'template: :1:2: executing "" at <lt .Missing 1>: error calling lt: invalid type for comparison',
        ),
        (
            "{{range .Id}}{{end}}",
            INSPECT,
            'template: :1:8: executing "" at <.Id>: range can\'t iterate over sha256:3f57d9401f8d',
        ),
        ("{{len 3}}", {}, 'template: :1:2: executing "" at <len 3>: error calling len: len of type int'),
        (
            "{{join .RepoTags}}",
            INSPECT,
            'template: :1:2: executing "" at <join>: wrong number of args for join: want 2 got 1',
        ),
    ],
)
def test_exec_errors(template: str, data: object, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        render(template, data)
    assert str(e.value) == message
    assert isinstance(e.value, InvalidArgument)


def test_missingkey_error_option() -> None:
    t = compile("{{.Config.Nope}}")
    assert t.execute(INSPECT) == "<no value>"
    with pytest.raises(TemplateError) as e:
        t.execute(INSPECT, missingkey="error")
    assert str(e.value) == 'template: :1:2: executing "" at <.Config.Nope>: map has no entry for key "Nope"'


def test_partial_output_is_kept_on_error() -> None:
    out: list[str] = []
    with pytest.raises(TemplateError):
        compile("a{{.X}}b{{.X.Y.Z}}c").write(out, {"X": "x"})
    assert "".join(out) == "axb"


def test_funcs_override() -> None:
    identity = (lambda v, *_: v, 1, 1)
    assert compile("{{upper .A}}").execute({"A": "x"}, funcs={"upper": identity}) == "x"


def test_compile_caches() -> None:
    assert compile("{{.A}}-cache") is compile("{{.A}}-cache")
    assert isinstance(compile("{{.A}}"), gotemplate.Template)
