"""Consoles and generic rows: tables, JSON and Markdown, the building blocks of every report.

Ids are never split across lines: a table whose columns cannot each hold their longest word (an id, a code) at
the console's width is printed as key/value lines instead (``print_table``). Off a terminal (cron, a pipe) the
width is ``COLUMNS`` when set, else unlimited: a log line is never wrapped. Free text passes through the same
redaction as log records, so a secret echoed back by an upstream is not printed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeAlias

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from amplify_billing.render.diagnostics import redact

# Width off a terminal (cron, a pipe) when COLUMNS is not set: no wrapping at all (rich would assume 80 and fold
# every table in the log file). The demo, which draws rules across the width, asks for PLAIN_WIDTH instead.
NO_WRAP_WIDTH = 1_000_000
PLAIN_WIDTH = 120

JsonScalar: TypeAlias = str | int | float | bool | None

Cell: TypeAlias = str | int | float | Decimal | datetime | date | bool | None


def plain_width(environ: Mapping[str, str], default: int = NO_WRAP_WIDTH) -> int:
    """The width off a terminal: ``COLUMNS`` when it is a positive number, else ``default``."""
    columns = environ.get("COLUMNS", "").strip()
    return int(columns) if columns.isdigit() and int(columns) > 0 else default


def make_console(stderr: bool = False, *, plain_default: int = NO_WRAP_WIDTH) -> Console:
    """A console on stdout (the report) or stderr. Off a terminal: no colour, ``COLUMNS`` wide or unwrapped."""
    stream = sys.stderr if stderr else sys.stdout
    isatty = getattr(stream, "isatty", None)
    terminal = bool(isatty()) if callable(isatty) else False
    # highlight/emoji off everywhere: an id like "8ac9…" or a name with ":smile:" is data, not decoration.
    if terminal:
        return Console(stderr=stderr, highlight=False, emoji=False)
    return Console(
        stderr=stderr,
        width=plain_width(os.environ, plain_default),
        color_system=None,
        force_terminal=False,
        force_interactive=False,
        highlight=False,
        emoji=False,
    )


@dataclass(frozen=True)
class Column:
    """One column of ``render_rows``: its header, its JSON key, and how it lays out in a table."""

    header: str
    key: str = ""  # JSON key; derived from the header when empty
    justify: Literal["left", "right", "center"] = "left"

    @property
    def json_key(self) -> str:
        return self.key or re.sub(r"[^a-z0-9]+", "_", self.header.lower()).strip("_")


def _as_column(column: str | Column) -> Column:
    return column if isinstance(column, Column) else Column(column)


def json_value(value: Cell) -> JsonScalar:
    """A cell as a JSON scalar: Decimals as strings (no float rounding of money), times as ISO 8601."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    return value.isoformat()


def redacted_json(value: JsonScalar) -> JsonScalar:
    """A JSON scalar with secrets hidden (only text can hold one)."""
    return redact(value) if isinstance(value, str) else value


def cell_text(value: Cell) -> str:
    """A cell as table text."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def iso(moment: datetime) -> str:
    """A moment in UTC as ISO 8601 with a ``Z``."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


def rows_table(columns: Sequence[str | Column], rows: Iterable[Sequence[Cell]]) -> list[list[Text]]:
    """Plain cells as table text (no markup is interpreted in cell text), for ``print_table``."""
    return [[Text(redact(cell_text(value))) for value in row] for row in rows]


def rows_markdown(columns: Sequence[str | Column], rows: Iterable[Sequence[Cell]], *, title: str | None = None) -> str:
    """A GitHub-flavoured Markdown table (for pasting into tickets and wikis)."""
    specs = [_as_column(c) for c in columns]
    align = {"left": "---", "right": "--:", "center": ":-:"}
    lines = [f"### {_md(title)}", ""] if title else []
    lines.append("| " + " | ".join(_md(c.header) for c in specs) + " |")
    lines.append("|" + "|".join(align[c.justify] for c in specs) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_md(redact(cell_text(v))) for v in row) + " |")
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def render_rows(
    console: Console,
    title: str,
    columns: Sequence[str | Column],
    rows: Iterable[Sequence[Cell]],
    *,
    output: str = "table",
) -> None:
    """Render rows as a titled table, one JSON document ``{"title", "rows": [{key: value}]}``, or Markdown."""
    specs = [_as_column(c) for c in columns]
    materialized = [tuple(row) for row in rows]
    for row in materialized:
        if len(row) != len(specs):
            raise ValueError(f"render_rows {title!r}: a row has {len(row)} cells for {len(specs)} columns")
    if output == "json":
        document = {
            "title": title,
            "rows": [
                {c.json_key: redacted_json(json_value(v)) for c, v in zip(specs, row, strict=True)}
                for row in materialized
            ],
        }
        print_json(console, document)
    elif output == "markdown":
        write_raw(console, rows_markdown(specs, materialized, title=title))
    elif output == "table":
        print_line(console, title, style="bold")
        if materialized:
            print_table(console, specs, rows_table(specs, materialized))
        else:
            print_line(console, "(none)")
    else:
        raise ValueError(f"unknown output format {output!r}; use table, json or markdown")


def new_table(columns: Sequence[Column], *, widths: Sequence[int | None] | None = None) -> Table:
    """An empty table with our layout and the given columns (``widths``: fixed content widths, else natural)."""
    # MINIMAL: column rules and a header rule, no outer frame; reads well in a terminal and in a log file.
    table = Table(box=box.MINIMAL, highlight=False, pad_edge=False)
    for index, column in enumerate(columns):
        width = widths[index] if widths is not None else None
        # wrapped at spaces only, at a width that holds the column's longest word: nothing is split or cut
        table.add_column(column.header, justify=column.justify, overflow="fold", no_wrap=width is None, width=width)
    return table


# ---- layout: a table whose words all fit, else key/value lines ---------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


def _natural(text: str) -> int:
    return max((cell_len(line) for line in text.splitlines()), default=0)


def _longest_word(text: str) -> int:
    return max((cell_len(word) for word in _words(text)), default=0)


def _overhead(console: Console, count: int) -> int:
    """What the layout adds to the columns' content: padding and rules (measured, not assumed)."""
    probe = new_table([Column("x")] * count, widths=[1] * count)
    probe.add_row(*(["x"] * count))
    return Measurement.get(console, console.options, probe).maximum - count


def table_widths(
    console: Console, columns: Sequence[Column], rows: Sequence[Sequence[Text]]
) -> list[int | None] | None:
    """Content widths that fit the console with no word split, ``[None…]`` when every column fits as it is, or None
    when not even the longest words fit side by side (then the rows are printed as key/value lines)."""
    cells = [[column.header, *(row[i].plain for row in rows)] for i, column in enumerate(columns)]
    natural = [max(_natural(text) for text in column) for column in cells]
    shortest = [max(_longest_word(text) for text in column) for column in cells]
    room = console.width - _overhead(console, len(columns))
    if sum(natural) <= room:
        return [None] * len(columns)
    if sum(shortest) > room:
        return None
    # each column gets its longest word, and the rest of the room in proportion to what it lacks of its full width
    spare, lacking = room - sum(shortest), [n - s for n, s in zip(natural, shortest, strict=True)]
    widths = [s + (spare * lack) // max(sum(lacking), 1) for s, lack in zip(shortest, lacking, strict=True)]
    return [max(w, 1) for w in widths]


def print_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Text]],
    *,
    section_ends: frozenset[int] = frozenset(),
) -> None:
    """Rows as a table when every column can hold its longest word at the console's width; else key/value lines.

    ``section_ends``: indexes of rows a rule follows (the end of a group)."""
    widths = table_widths(console, columns, rows)
    if widths is None:
        print_key_values(console, columns, rows)
        return
    table = new_table(columns, widths=widths)
    for index, row in enumerate(rows):
        table.add_row(*row, end_section=index in section_ends and index < len(rows) - 1)
    console.print(table)


def print_key_values(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[Text]]) -> None:
    """Each row as lines of ``header: value`` (the first flush, the others indented), a blank line between rows;
    never wrapped by us, so an id stays one token however narrow the terminal."""
    label = max((cell_len(c.header) for c in columns[1:]), default=0) + 2
    for index, row in enumerate(rows):
        if index:
            console.line()
        for position, (column, cell) in enumerate(zip(columns, row, strict=True)):
            lines = cell.split("\n") if cell.plain else [Text("-")]
            indent = "" if position == 0 else "  "
            head = f"{column.header}: " if position == 0 else f"{column.header}:".ljust(label)
            console.print(Text(indent + head).append_text(lines[0]), soft_wrap=True)
            for more in lines[1:]:
                console.print(Text(" " * (len(indent) + len(head))).append_text(more), soft_wrap=True)


def print_line(console: Console, text: str, *, style: str | None = None) -> None:
    """One line of plain text (no markup)."""
    # soft_wrap: one logical line stays one line in a log file, whatever the console width.
    console.print(Text(text, style=style or ""), soft_wrap=True)


def print_json(console: Console, document: Mapping[str, Any]) -> None:
    write_raw(console, json.dumps(document, indent=2, ensure_ascii=False))


def write_raw(console: Console, text: str) -> None:
    """Exactly ``text``, for machines: no markup, wrapping or highlighting.

    Straight to the console's file: rich's text pipeline (even ``Console.out``) splits and measures
    every line, seconds for the JSON of a run that posted 20,000 usage records.
    """
    stream = console.file
    stream.write(text + "\n")
    stream.flush()


__all__ = [
    "NO_WRAP_WIDTH",
    "PLAIN_WIDTH",
    "Cell",
    "Column",
    "JsonScalar",
    "cell_text",
    "iso",
    "json_value",
    "make_console",
    "new_table",
    "plain_width",
    "print_json",
    "print_key_values",
    "print_line",
    "print_table",
    "redacted_json",
    "render_rows",
    "rows_markdown",
    "rows_table",
    "table_widths",
    "write_raw",
]
