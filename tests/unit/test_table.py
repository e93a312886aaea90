"""kran.cli.table: Go's text/tabwriter as docker configures it, and docker's --format handling."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from kran.cli.gotemplate import TemplateError
from kran.cli.table import format_rows, tabwrite, tabwrite_text, text_width
from kran.errors import InvalidArgument

pytestmark = pytest.mark.unit


def test_tabwrite_docker_images_default() -> None:
    rows = [["REPOSITORY", "TAG", "IMAGE ID"], ["busybox", "latest", "abc"]]
    assert tabwrite(rows) == "REPOSITORY   TAG       IMAGE ID\nbusybox      latest    abc\n"


def test_tabwrite_pads_to_widest_cell_plus_padding_or_minwidth() -> None:
    rows = [
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        ["docker.io/library/busybox", "1.36.1-musl", "3f57d9401f8d", "2 weeks ago", "4.26MB"],
        ["alpine", "3", "05455a08881e", "About an hour ago", "7.38MB"],
    ]
    assert tabwrite(rows) == (
        "REPOSITORY                  TAG           IMAGE ID       CREATED             SIZE\n"
        "docker.io/library/busybox   1.36.1-musl   3f57d9401f8d   2 weeks ago         4.26MB\n"
        "alpine                      3             05455a08881e   About an hour ago   7.38MB\n"
    )


def test_tabwrite_header_only() -> None:
    assert tabwrite([["CONTAINER ID", "IMAGE", "NAMES"]]) == "CONTAINER ID   IMAGE     NAMES\n"


def test_tabwrite_empty_cells_are_padded_too() -> None:
    assert (
        tabwrite([["A", "", "C"], ["", "bb", ""]])
        == "A" + " " * 19 + "C\n" + " " * 10 + "bb" + " " * 8 + "\n"
    )


def test_tabwrite_columns_are_blocks_of_contiguous_lines() -> None:
    # The example from Go's tabwriter documentation: b and c are in distinct columns because
    # the third line has no second cell; d and e are in no column at all.
    text = "aaaa\tbbb\td\naa\tb\tdd\na\t\naa\tcccc\teee\n"
    got = tabwrite_text(text, minwidth=0, tabwidth=8, padding=1)
    assert got == "aaaa bbb d\naa   b   dd\na    \naa   cccc eee\n"


def test_tabwrite_one_cell_lines_break_columns() -> None:
    text = "x\tlong-cell\tz\nno tabs here\nabc\tq\tr\n"
    assert tabwrite_text(text) == "x         long-cell   z\nno tabs here\nabc       q         r\n"


def test_tabwrite_without_trailing_newline_and_trailing_tab() -> None:
    assert tabwrite_text("a\tb") == "a         b"
    assert tabwrite_text("a\t\n") == "a         \n"
    assert tabwrite_text("") == ""


def test_tabwrite_formfeed_flushes() -> None:
    assert tabwrite_text("a\tb\n\fverylongcell\tc\n", minwidth=0, padding=1) == "a b\n\nverylongcell c\n"


def test_tabwrite_counts_display_width() -> None:
    # docker's tabwriter fork measures with go-runewidth: wide characters take two columns.
    assert text_width("日本") == 4
    assert text_width("e\u0301") == 1
    assert tabwrite([["日本", "x"], ["abc", "y"]]) == "日本      x\nabc       y\n"


ROWS = [
    {"Repository": "busybox", "Tag": "latest", "ID": "3f57d9401f8d", "Size": "4.26MB"},
    {"Repository": "alpine", "Tag": "3.19", "ID": "05455a08881e", "Size": "7.38MB"},
]
HEADER = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Size": "SIZE"}


def test_format_rows_table_with_typed_backslash_t() -> None:
    got = format_rows("table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}", ROWS, HEADER)
    assert got == (
        "REPOSITORY   TAG       IMAGE ID\nbusybox      latest    3f57d9401f8d\nalpine       3.19      05455a08881e\n"
    )


def test_format_rows_table_with_real_tab_and_no_rows() -> None:
    assert format_rows("table {{.ID}}\t{{.Size}}", [], HEADER) == "IMAGE ID   SIZE\n"


def test_format_rows_table_single_column() -> None:
    assert format_rows("table {{.Repository}}:{{.Tag}}", ROWS, HEADER) == (
        "REPOSITORY:TAG\nbusybox:latest\nalpine:3.19\n"
    )


def test_format_rows_table_header_functions_keep_titles() -> None:
    # docker's HeaderFunctions make lower/upper/truncate/json return the title unchanged; pad is
    # not among them, so the header is padded like the cells.
    got = format_rows("table {{lower .Repository}}\t{{truncate .ID 4}}\t{{pad .Tag 1 1}}", ROWS, HEADER)
    assert got == (
        "REPOSITORY   IMAGE ID    TAG \n"  # the header is padded too
        "busybox      3f57        latest \n"
        "alpine       0545        3.19 \n"
    )


def test_format_rows_table_header_error_leaves_empty_header_line() -> None:
    # json in the header wants a string; docker ignores the error and prints an empty header line.
    got = format_rows("table {{json .}}", ROWS[:1], HEADER)
    assert got == '\n{"Repository":"busybox","Tag":"latest","ID":"3f57d9401f8d","Size":"4.26MB"}\n'


def test_format_rows_table_without_header() -> None:
    assert (
        format_rows("table {{.Tag}}\t{{.ID}}", ROWS, None)
        == "latest    3f57d9401f8d\n3.19      05455a08881e\n"
    )


def test_format_rows_plain_template_is_not_aligned() -> None:
    assert format_rows("{{.Repository}}\\t{{.Tag}}", ROWS, HEADER) == "busybox\tlatest\nalpine\t3.19\n"
    assert format_rows("  {{.ID}}  ", ROWS, HEADER) == "3f57d9401f8d\n05455a08881e\n"  # docker trims spaces


def test_format_rows_json() -> None:
    got = format_rows("json", ROWS, HEADER)
    assert got == (
        '{"Repository":"busybox","Tag":"latest","ID":"3f57d9401f8d","Size":"4.26MB"}\n'
        '{"Repository":"alpine","Tag":"3.19","ID":"05455a08881e","Size":"7.38MB"}\n'
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRow:
    Repository: str
    Tag: str

    @property
    def ID(self) -> str:
        return "sha256:abc"


def test_format_rows_with_row_objects() -> None:
    rows = [ImageRow(Repository="busybox", Tag="latest")]
    assert format_rows("table {{.Repository}}\t{{.ID}}", rows, HEADER) == (
        "REPOSITORY   IMAGE ID\nbusybox      sha256:abc\n"
    )
    assert format_rows("json", rows, HEADER) == '{"ID":"sha256:abc","Repository":"busybox","Tag":"latest"}\n'


def test_format_rows_errors_are_template_parsing_errors() -> None:
    with pytest.raises(InvalidArgument) as e:
        format_rows("table {{.ID}", ROWS, HEADER)
    assert str(e.value) == "template parsing error: template: :1: bad character U+007D '}'"
    with pytest.raises(TemplateError) as e2:
        format_rows("{{.Repository.Name}}", ROWS, HEADER)
    assert str(e2.value) == (
        'template parsing error: template: :1:2: executing "" at <.Repository.Name>: '
        "can't evaluate field Name in type string"
    )
    assert e2.value.from_daemon is False
