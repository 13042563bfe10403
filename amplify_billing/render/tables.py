"""Consoles and generic rows: tables, JSON and Markdown, the building blocks of every report.

A console off a terminal (cron, a pipe) is made wide enough that tables do not fold in a log file; a
column of long identities folds onto more lines instead of being cut with "…". Free text passes
through the same redaction as log records, so a secret echoed back by an upstream is not printed.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeAlias

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from amplify_billing.render.diagnostics import redact

# Width used when stdout/stderr is not a terminal (cron, a pipe): rich would assume 80 and fold every
# table in the log file.
PLAIN_WIDTH = 120

JsonScalar: TypeAlias = str | int | float | bool | None

Cell: TypeAlias = str | int | float | Decimal | datetime | date | bool | None


def make_console(stderr: bool = False) -> Console:
    """A console on stdout (the report) or stderr. Off a terminal: no colour, no wrapping at 80."""
    stream = sys.stderr if stderr else sys.stdout
    isatty = getattr(stream, "isatty", None)
    terminal = bool(isatty()) if callable(isatty) else False
    # highlight/emoji off everywhere: an id like "8ac9…" or a name with ":smile:" is data, not decoration.
    if terminal:
        return Console(stderr=stderr, highlight=False, emoji=False)
    return Console(
        stderr=stderr,
        width=PLAIN_WIDTH,
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
    # Identities are long (32-hex ids): fold them onto more lines instead of cutting them with "…".
    fold: bool = True

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


def rows_table(columns: Sequence[str | Column], rows: Iterable[Sequence[Cell]], *, title: str | None = None) -> Table:
    """A rich Table of plain cells; no markup is interpreted in cell text."""
    specs = [_as_column(c) for c in columns]
    table = new_table(specs, title=title)
    for row in rows:
        table.add_row(*(Text(redact(cell_text(value))) for value in row))
    return table


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
            console.print(rows_table(specs, materialized))
        else:
            print_line(console, "(none)")
    else:
        raise ValueError(f"unknown output format {output!r}; use table, json or markdown")


def new_table(columns: Sequence[Column], *, title: str | None = None) -> Table:
    """An empty table with our layout and the given columns."""
    # MINIMAL: column rules and a header rule, no outer frame; reads well in a terminal and in a log file.
    table = Table(box=box.MINIMAL, title=title, title_justify="left", highlight=False, pad_edge=False)
    for column in columns:
        table.add_column(
            column.header,
            justify=column.justify,
            overflow="fold" if column.fold else "ellipsis",
            no_wrap=not column.fold,
        )
    return table


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
    "PLAIN_WIDTH",
    "Cell",
    "Column",
    "JsonScalar",
    "cell_text",
    "iso",
    "json_value",
    "make_console",
    "new_table",
    "print_json",
    "print_line",
    "redacted_json",
    "render_rows",
    "rows_markdown",
    "rows_table",
    "write_raw",
]
