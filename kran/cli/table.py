"""Docker's table output: Go's text/tabwriter and the ``--format`` handling around it.

``tabwrite_text`` follows the elastic-tabstop algorithm of docker/cli's copy of text/tabwriter
(cli/command/formatter/tabwriter), configured as docker configures it:
``tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)``.  Cells are *terminated* by tabs; the text after
the last tab of a line is not part of any column.  A column is a run of contiguous lines that all
have a tab-terminated cell at that index; its width is max(widest cell + padding, minwidth).

``format_rows`` is docker/cli's formatter.Context: ``table``, ``json`` or a raw Go template.
"""

from __future__ import annotations

__all__ = ["HEADER_FUNCS", "format_rows", "tabwrite", "tabwrite_text", "text_width"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from kran.cli.gotemplate import FuncSpec


def text_width(s: str) -> int:
    """Display width like go-runewidth's StringWidth (docker's tabwriter counts with it).

    East Asian wide/fullwidth characters count 2, combining marks and controls 0, the rest 1.
    """
    if s.isascii():
        return len(s)
    import unicodedata

    width = 0
    for ch in s:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf", "Cc"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


class _Cell:
    __slots__ = ("htab", "text", "width")

    def __init__(self, text: str, htab: bool) -> None:
        self.text = text
        self.width = text_width(text)
        self.htab = htab


class _Writer:
    def __init__(self, minwidth: int, tabwidth: int, padding: int, padchar: str) -> None:
        if minwidth < 0 or tabwidth < 0 or padding < 0:
            raise ValueError("negative minwidth, tabwidth, or padding")
        self.minwidth = minwidth
        self.tabwidth = tabwidth
        self.padding = padding
        self.padchar = padchar
        self.out: list[str] = []
        self.lines: list[list[_Cell]] = [[]]
        self.widths: list[int] = []
        self.cell = ""  # the incomplete cell at the end of the buffered text

    def write(self, text: str) -> None:
        start = 0
        for i, ch in enumerate(text):
            if ch in "\t\v\n\f":
                ncells = self._terminate_cell(self.cell + text[start:i], ch == "\t")
                self.cell = ""
                start = i + 1
                if ch in "\n\f":
                    self.lines.append([])
                    # A one-cell line cannot influence the lines after it (the last cell of a
                    # line belongs to no column), so Go flushes there; '\f' always flushes.
                    if ch == "\f" or ncells == 1:
                        self.flush()
        self.cell += text[start:]

    def _terminate_cell(self, text: str, htab: bool) -> int:
        line = self.lines[-1]
        line.append(_Cell(text, htab))
        return len(line)

    def flush(self) -> None:
        if self.cell:
            self._terminate_cell(self.cell, False)
            self.cell = ""
        self._format(0, len(self.lines))
        self.lines = [[]]
        self.widths = []

    def _pad(self, textw: int, cellw: int) -> None:
        if self.padchar == "\t":
            if self.tabwidth == 0:
                return
            cellw = (cellw + self.tabwidth - 1) // self.tabwidth * self.tabwidth
            n = cellw - textw
            self.out.append("\t" * ((n + self.tabwidth - 1) // self.tabwidth))
            return
        self.out.append(self.padchar * (cellw - textw))

    def _write_lines(self, line0: int, line1: int) -> None:
        for i in range(line0, line1):
            line = self.lines[i]
            for j, c in enumerate(line):
                if c.text:
                    self.out.append(c.text)
                if j < len(self.widths):
                    self._pad(c.width, self.widths[j])
            if i + 1 < len(self.lines):
                self.out.append("\n")
            # The last buffered line has no newline: its (already terminated) cells are all.

    def _format(self, line0: int, line1: int) -> None:
        column = len(self.widths)
        this = line0
        while this < line1:
            if column >= len(self.lines[this]) - 1:
                this += 1
                continue
            # A cell exists in this column: print the lines before the block, then find the
            # block (contiguous lines having this column) and its width.
            self._write_lines(line0, this)
            line0 = this
            width = self.minwidth
            while this < line1:
                line = self.lines[this]
                if column >= len(line) - 1:
                    break
                width = max(width, line[column].width + self.padding)
                this += 1
            self.widths.append(width)
            self._format(line0, this)
            self.widths.pop()
            line0 = this
        self._write_lines(line0, line1)


def tabwrite_text(
    text: str, minwidth: int = 10, tabwidth: int = 1, padding: int = 3, padchar: str = " "
) -> str:
    """Align tab-terminated cells of ``text`` like Go's tabwriter (Write(text) then Flush())."""
    w = _Writer(minwidth, tabwidth, padding, padchar)
    w.write(text)
    w.flush()
    return "".join(w.out)


def tabwrite(
    rows: Sequence[Sequence[str]], minwidth: int = 10, tabwidth: int = 1, padding: int = 3, padchar: str = " "
) -> str:
    """Docker's default tables: each row's cells joined by tabs, one row per line.

    >>> tabwrite([["REPOSITORY", "TAG"], ["busybox", "latest"]])
    'REPOSITORY   TAG\\nbusybox      latest\\n'
    """
    text = "".join("\t".join(row) + "\n" for row in rows)
    return tabwrite_text(text, minwidth, tabwidth, padding, padchar)


def _header_identity(nargs: int) -> FuncSpec:
    def identity(v: object, *_: object) -> str:
        if not isinstance(v, str):
            from kran.cli.gotemplate import type_error

            raise type_error("string", v)
        return v

    return (identity, nargs, nargs)


# docker/cli templates.HeaderFunctions: in the header line these return the column title unchanged
# (``pad`` is deliberately not among them, to keep the header aligned with the padded cells).
HEADER_FUNCS: dict[str, FuncSpec] = {
    "json": _header_identity(1),
    "split": _header_identity(2),
    "join": _header_identity(2),
    "title": _header_identity(1),
    "lower": _header_identity(1),
    "upper": _header_identity(1),
    "truncate": _header_identity(2),
}


def format_rows(template: str, rows: Sequence[object], header: Mapping[str, str] | None = None) -> str:
    """docker/cli's formatter.Context.Write for ``--format``.

    - ``json``: each row as ``{{json .}}``, one per line.
    - ``table [TEMPLATE]``: the header line (the template executed against ``header``, a mapping
      of field name to column title, with docker's header functions), then each row; all through
      the tabwriter.  ``header=None`` leaves the header line out.
    - anything else: each row rendered and printed on its own line, no alignment.

    A typed ``\\t`` or ``\\n`` in the template is a tab/newline, as in docker.  Parse and execution
    errors raise ``InvalidArgument("template parsing error: ...")`` (docker wraps both that way).
    """
    from kran.cli import gotemplate

    is_table = template.startswith("table")
    if is_table:
        template = template[len("table") :]
    elif template == "json":
        template = "{{json .}}"
    template = template.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    tmpl = gotemplate.compile(template)
    out: list[str] = []
    for row in rows:
        try:
            tmpl.write(out, row)
        except gotemplate.TemplateError as e:
            raise gotemplate.TemplateError(f"template parsing error: {e}") from e
        out.append("\n")
    if not is_table:
        return "".join(out)
    text = "".join(out)
    if header is not None:
        head: list[str] = []
        try:
            tmpl.write(head, dict(header), funcs=HEADER_FUNCS)
        except gotemplate.TemplateError:
            pass  # docker ignores the header's execution error and prints what was written
        text = "".join(head) + "\n" + text
    return tabwrite_text(text)
