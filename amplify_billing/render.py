"""What the operator sees: the report on stdout (table or JSON) and diagnostics on stderr (logging).

Everything renders on an injected rich ``Console``; nothing here writes to a system or decides an exit
code. Payloads of changes are never shown: they can hold raw Amplify resources. Free text that can
come from upstream (summaries, errors, notes) passes through the same redaction as log records, so a
secret echoed back in an error message is not printed either.

Logging state (the handler and the secrets it hides) lives on the ``amplify_billing`` logger itself,
in the one ``DiagnosticsHandler`` installed there, instead of in module globals: ``configure_logging``
and ``register_secret`` find that handler (or install it once) through ``_diagnostics_handler()``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeAlias

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from amplify_billing.errors import ExitCode
from amplify_billing.models import ChangeKind, ChangeResult, CommandReport, Outcome

LOGGER_NAME = "amplify_billing"

# Loggers of libraries under us. They get our handler (so a urllib3 warning is a JSON line like ours,
# and redacted), but only warnings unless --verbose: their INFO/DEBUG is per-connection noise.
THIRD_PARTY_LOGGERS = ("urllib3", "requests")

# Width used when stdout/stderr is not a terminal (cron, a pipe): rich would assume 80 and fold every
# table in the log file.
PLAIN_WIDTH = 120

# A usage run can post tens of thousands of records; the table shows this many per kind.
MAX_ROWS_PER_KIND = 50

# The order kinds appear in, in tables: writes in the order an operator reasons about them, then the
# report-only kinds.
KIND_ORDER: tuple[ChangeKind, ...] = (
    ChangeKind.CREATE,
    ChangeKind.UPDATE,
    ChangeKind.DEACTIVATE,
    ChangeKind.CANCEL,
    ChangeKind.TERMINATE,
    ChangeKind.APPROVE,
    ChangeKind.LINK,
    ChangeKind.POST,
    ChangeKind.RESTATE,
    ChangeKind.UNSUPPORTED,
    ChangeKind.WAITING,
    ChangeKind.FINDING,
)

# Heading and summary order: what happened first, then what was only shown.
OUTCOME_ORDER: tuple[Outcome, ...] = (
    Outcome.PLANNED,
    Outcome.APPLIED,
    Outcome.FAILED,
    Outcome.SKIPPED,
    Outcome.REPORTED,
)

# When a kind has more rows than fit, the ones an operator must act on come first.
_SEVERITY = {Outcome.FAILED: 0, Outcome.SKIPPED: 1}

_OUTCOME_STYLE = {
    Outcome.PLANNED: "cyan",
    Outcome.APPLIED: "green",
    Outcome.FAILED: "bold red",
    Outcome.SKIPPED: "yellow",
    Outcome.REPORTED: "magenta",
}

EXIT_MEANINGS: Mapping[int, str] = {
    ExitCode.OK: "done",
    ExitCode.PARTIAL_FAILURE: "some changes failed or were not attempted",
    ExitCode.CONFIG: "bad invocation or configuration",
    ExitCode.UPSTREAM: "an upstream system was unreachable or refused the credentials",
    ExitCode.REFUSED: "refused by the safety valve, or pending changes found",
    ExitCode.LOCKED: "another run holds the lock",
    ExitCode.INTERRUPTED: "interrupted",
}

HIDDEN = "<hidden>"

# ---------------------------------------------------------------------------------------------
# Consoles


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


# ---------------------------------------------------------------------------------------------
# Generic rows: tables, JSON and Markdown (building blocks for every report, status included)

Cell: TypeAlias = str | int | float | Decimal | datetime | date | bool | None


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


def json_value(value: Cell) -> str | int | float | bool | None:
    """A cell as a JSON scalar: Decimals as strings (no float rounding of money), times as ISO 8601."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return _iso(value)
    return value.isoformat()


def cell_text(value: Cell) -> str:
    """A cell as table text."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


def rows_table(columns: Sequence[str | Column], rows: Iterable[Sequence[Cell]], *, title: str | None = None) -> Table:
    """A rich Table of plain cells; no markup is interpreted in cell text."""
    specs = [_as_column(c) for c in columns]
    table = _table(specs, title=title)
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
                {c.json_key: _json_text(json_value(v)) for c, v in zip(specs, row, strict=True)} for row in materialized
            ],
        }
        _print_json(console, document)
    elif output == "markdown":
        _write_raw(console, rows_markdown(specs, materialized, title=title))
    elif output == "table":
        _line(console, title, style="bold")
        if materialized:
            console.print(rows_table(specs, materialized))
        else:
            _line(console, "(none)")
    else:
        raise ValueError(f"unknown output format {output!r}; use table, json or markdown")


def _json_text(value: str | int | float | bool | None) -> str | int | float | bool | None:
    return redact(value) if isinstance(value, str) else value


def _table(columns: Sequence[Column], *, title: str | None = None) -> Table:
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


def _line(console: Console, text: str, *, style: str | None = None) -> None:
    # soft_wrap: one logical line stays one line in a log file, whatever the console width.
    console.print(Text(text, style=style or ""), soft_wrap=True)


def _print_json(console: Console, document: Mapping[str, Any]) -> None:
    _write_raw(console, json.dumps(document, indent=2, ensure_ascii=False))


def _write_raw(console: Console, text: str) -> None:
    """Exactly ``text``, for machines: no markup, wrapping or highlighting.

    Straight to the console's file: rich's text pipeline (even ``Console.out``) splits and measures
    every line, seconds for the JSON of a run that posted 20,000 usage records.
    """
    stream = console.file
    stream.write(text + "\n")
    stream.flush()


# ---------------------------------------------------------------------------------------------
# Command reports


def report_counts(report: CommandReport) -> dict[str, int]:
    """Results per outcome, every outcome present (zero included), in ``OUTCOME_ORDER``."""
    counts = dict.fromkeys(OUTCOME_ORDER, 0)
    for result in report.results:
        counts[result.outcome] += 1
    return {outcome.value: n for outcome, n in counts.items()}


def report_heading(report: CommandReport) -> str:
    """E.g. ``sync-plans: 3 applied, 1 failed, 2 reported`` or ``(dry run) sync-plans: 5 planned``."""
    counts = report_counts(report)
    parts = [f"{n:,} {outcome}" for outcome, n in counts.items() if n]
    prefix = "(dry run) " if report.dry_run else ""
    return f"{prefix}{report.command}: {', '.join(parts) or 'no changes'}"


def report_document(report: CommandReport) -> dict[str, Any]:
    """A report as plain JSON data (the ``--output json`` shape); never the payloads."""
    clean = current_redaction()  # looked up once: a usage run can carry tens of thousands of changes
    return {
        "command": report.command,
        "dry_run": report.dry_run,
        "exit_code": int(report.exit_code),
        "note": redact(report.note) if report.note is not None else None,
        "figures": {str(k): _figure_json(v) for k, v in report.figures.items()},
        "counts": report_counts(report),
        "changes": [_change_document(r, clean) for r in report.results],
    }


def _figure_json(value: object) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool | int | float | str | Decimal | datetime | date):
        return _json_text(json_value(value))
    return redact(str(value))


def _change_document(result: ChangeResult, clean: Callable[[str], str]) -> dict[str, str | bool | None]:
    change = result.change
    return {
        # a finding that held a money action back (exit 1): an operator filters on it
        "withholds": change.withholds,
        "kind": change.kind.value,
        "object": change.object,
        "amplify": clean(change.amplify),
        "recurly": clean(change.recurly),
        "summary": clean(change.summary),
        "outcome": result.outcome.value,
        "error": clean(result.error) if result.error is not None else None,
        "result_id": result.result_id,
    }


def _figures_line(figures: Mapping[str, object]) -> str:
    # logfmt-like: greppable in a log file and unambiguous (no thousands separators to misread).
    parts = []
    for key, value in figures.items():
        text = redact(str(value))
        if not text or re.search(r'[\s="]', text):
            text = json.dumps(text, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return "figures: " + " ".join(parts)


def _ordered_by_kind(results: Sequence[ChangeResult]) -> list[tuple[ChangeKind, list[ChangeResult]]]:
    groups: dict[ChangeKind, list[ChangeResult]] = {}
    for result in results:
        groups.setdefault(result.change.kind, []).append(result)
    order = [k for k in KIND_ORDER if k in groups] + [k for k in groups if k not in KIND_ORDER]
    return [(kind, groups[kind]) for kind in order]


def _what(result: ChangeResult) -> Text:
    """The summary, and under it why the change failed or was skipped (an error column would be empty
    for every other row and squeeze the identities)."""
    what = Text(("withheld: " if result.change.withholds else "") + redact(result.change.summary))
    if result.error:
        prefix = "error: " if result.outcome is Outcome.FAILED else ""
        what.append("\n" + prefix + redact(result.error), style=_OUTCOME_STYLE.get(result.outcome, ""))
    return what


def changes_table(
    results: Sequence[ChangeResult], *, max_rows_per_kind: int = MAX_ROWS_PER_KIND
) -> tuple[Table, list[str]]:
    """The changes grouped by kind, at most ``max_rows_per_kind`` each; and the "… and N more" lines."""
    columns = [
        Column("Kind", fold=False),
        Column("Object", fold=False),
        Column("Amplify"),
        Column("Recurly"),
        Column("What"),
        Column("Outcome", fold=False),
    ]
    table = _table(columns)
    more: list[str] = []
    groups = _ordered_by_kind(results)
    for index, (kind, group) in enumerate(groups):
        shown = group
        if len(group) > max_rows_per_kind:
            # failures first, so a truncated table never hides what the operator must act on
            shown = sorted(group, key=lambda r: _SEVERITY.get(r.outcome, 2))[:max_rows_per_kind]
            more.append(f"… and {len(group) - len(shown):,} more {kind.value} changes (use --output json for all)")
        for position, result in enumerate(shown):
            change = result.change
            last_of_group = position == len(shown) - 1 and index < len(groups) - 1
            table.add_row(
                Text(kind.value),
                Text(change.object),
                Text(redact(change.amplify)),
                Text(redact(change.recurly)),
                _what(result),
                Text(result.outcome.value, style=_OUTCOME_STYLE.get(result.outcome, "")),
                end_section=last_of_group,
            )
    return table, more


def render_report(
    console: Console, report: CommandReport, *, output: str, max_rows_per_kind: int = MAX_ROWS_PER_KIND
) -> None:
    """One command's report: heading, changes by kind, figures, note; or one JSON document."""
    if output == "json":
        _print_json(console, report_document(report))
        return
    if output != "table":
        raise ValueError(f"unknown output format {output!r}; use table or json")
    failed = report.count(Outcome.FAILED) > 0
    _line(console, report_heading(report), style="bold red" if failed else "bold")
    if report.results:
        table, more = changes_table(report.results, max_rows_per_kind=max_rows_per_kind)
        console.print(table)
        for line in more:
            _line(console, line)
    if report.figures:
        _line(console, _figures_line(report.figures))
    if report.note:
        _line(console, f"note: {redact(report.note)}", style="yellow")


def overall_exit_code(reports: Sequence[CommandReport]) -> int:
    return max((int(r.exit_code) for r in reports), default=int(ExitCode.OK))


def render_reports(
    console: Console,
    reports: Sequence[CommandReport],
    *,
    output: str,
    max_rows_per_kind: int = MAX_ROWS_PER_KIND,
) -> None:
    """Several commands (``run``): each report, then one summary table and the worst exit code."""
    code = overall_exit_code(reports)
    if output == "json":
        _print_json(console, {"reports": [report_document(r) for r in reports], "exit_code": code})
        return
    if output != "table":
        raise ValueError(f"unknown output format {output!r}; use table or json")
    for report in reports:
        render_report(console, report, output=output, max_rows_per_kind=max_rows_per_kind)
        console.line()
    columns = [
        Column("Command", fold=False),
        Column("Applied", justify="right", fold=False),
        Column("Failed", justify="right", fold=False),
        Column("Skipped", justify="right", fold=False),
        Column("Planned", justify="right", fold=False),
        Column("Reported", justify="right", fold=False),
        Column("Exit", justify="right", fold=False),
        Column("Note"),
    ]
    rows: list[Sequence[Cell]] = []
    for report in reports:
        rows.append(
            (
                ("(dry run) " if report.dry_run else "") + report.command,
                report.count(Outcome.APPLIED),
                report.count(Outcome.FAILED),
                report.count(Outcome.SKIPPED),
                report.count(Outcome.PLANNED),
                report.count(Outcome.REPORTED),
                int(report.exit_code),
                report.note or "",
            )
        )
    _line(console, "Summary", style="bold")
    console.print(rows_table(columns, rows))
    meaning = EXIT_MEANINGS.get(code, "see README, 'Exit codes'")
    _line(console, f"exit code {code}: {meaning}", style="bold red" if code else "bold")


# ---------------------------------------------------------------------------------------------
# Logging and secrets

# Credentials in headers or URLs, whether or not they were registered: an HTTP library's debug log or
# an exception message can carry them.
_Replacement: TypeAlias = str | Callable[[re.Match[str]], str]


def _header_value(match: re.Match[str]) -> str:
    return f"{match.group(1)}{match.group(2) or ''}{HIDDEN}"


_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], _Replacement], ...] = (
    # "Authorization: Bearer x", "'Authorization': 'Basic x'", "authorization=x"
    (
        re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?\s*)((?:basic|bearer|token)\s+)?[^\s'\",;}]+"),
        _header_value,
    ),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*"), r"\1 " + HIDDEN),
    # "Basic" alone is a common word ("Basic plan"); only a long base64 run after it is a credential.
    (re.compile(r"(?i)\b(basic)\s+[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])"), r"\1 " + HIDDEN),
    (
        re.compile(r"(?i)\b(client_secret|api_key|password|access_token|refresh_token|client_assertion)=[^&\s'\"]+"),
        r"\1=" + HIDDEN,
    ),
    # https://user:password@host
    (re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@"), HIDDEN + "@"),
)

# Secrets shorter than this are not searched for alone (every "a" would become <hidden>); the
# header and URL patterns above still apply.
_MIN_SECRET_LENGTH = 4


def _redact_patterns(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class SecretRedactor(logging.Filter):
    """A logging filter that hides registered secrets and credential patterns in every record.

    It rewrites the record itself (message, string extras, exception and stack text), so every
    handler after ours, pytest's caplog included, sees the redacted record too.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: list[str] = []
        self._exception_formatter = logging.Formatter()

    def add(self, value: str) -> None:
        candidates = {value, value.strip()}
        # A PEM key may surface a line at a time (e.g. in a parse error): hide each body line as well.
        candidates.update(line.strip() for line in value.splitlines() if not line.strip().startswith("-----"))
        for secret in candidates:
            if len(secret) >= _MIN_SECRET_LENGTH and secret not in self._secrets:
                self._secrets.append(secret)
        # longest first, so a secret that contains another is hidden whole
        self._secrets.sort(key=len, reverse=True)

    @property
    def count(self) -> int:
        return len(self._secrets)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, HIDDEN)
        return _redact_patterns(text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for the formatter, which reports it as such
            return True
        record.msg = self.redact(message)
        record.args = None
        for key, value in _extras(record).items():
            if isinstance(value, str):
                setattr(record, key, self.redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exception_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class DiagnosticsHandler(logging.Handler):
    """Writes formatted records to the *current* ``sys.stderr`` (tests swap it between CLI calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.redactor = SecretRedactor()
        self.addFilter(self.redactor)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # a second pass over the finished line catches what a formatter added (e.g. a str() of a dict extra)
            line = self.redactor.redact(self.format(record))
            stream = sys.stderr
            stream.write(line + "\n")
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


_RESERVED_ATTRIBUTES = frozenset(
    (*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime", "taskName")
)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record (identities such as action and key)."""
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED_ATTRIBUTES and not k.startswith("_")}


def _record_time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``2026-11-01T12:00:00.123Z WARNING message`` (plus the traceback, if any, on the lines after)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_record_time(record)} {record.levelname} {record.getMessage()}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, event, then the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "timestamp": _record_time(record),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in _extras(record).items():
            if key not in document:
                document[key] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def _diagnostics_handler() -> DiagnosticsHandler:
    """The handler on the ``amplify_billing`` logger, installed on first use (one per process)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in logger.handlers:
        if isinstance(handler, DiagnosticsHandler):
            return handler
    handler = DiagnosticsHandler()
    handler.setFormatter(TextFormatter())
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return handler


def configure_logging(*, fmt: str, verbose: bool, quiet: bool = False) -> None:
    """Diagnostics on stderr as text or JSON lines; INFO, DEBUG with ``verbose``, WARNING with ``quiet``
    (the demo, whose report already says what was written). Safe to call again."""
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}; use text or json")
    handler = _diagnostics_handler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.getLogger(LOGGER_NAME).setLevel(level)
    for name in THIRD_PARTY_LOGGERS:
        third_party = logging.getLogger(name)
        third_party.setLevel(logging.DEBUG if verbose else logging.WARNING)
        if handler not in third_party.handlers:
            third_party.addHandler(handler)


def register_secret(value: str) -> None:
    """Hide ``value`` from every log record from now on, and from rendered reports."""
    if value:
        _diagnostics_handler().redactor.add(value)


def current_redaction() -> Callable[[str], str]:
    """The redaction in force: the installed handler's (registered secrets and patterns), else patterns only."""
    for handler in logging.getLogger(LOGGER_NAME).handlers:
        if isinstance(handler, DiagnosticsHandler):
            return handler.redactor.redact
    return _redact_patterns


def redact(text: str) -> str:
    """``text`` with registered secrets and credential patterns replaced by ``<hidden>``."""
    return current_redaction()(text)


__all__ = [
    "EXIT_MEANINGS",
    "KIND_ORDER",
    "MAX_ROWS_PER_KIND",
    "Column",
    "DiagnosticsHandler",
    "JsonFormatter",
    "SecretRedactor",
    "TextFormatter",
    "cell_text",
    "changes_table",
    "configure_logging",
    "current_redaction",
    "json_value",
    "make_console",
    "overall_exit_code",
    "redact",
    "register_secret",
    "render_report",
    "render_reports",
    "render_rows",
    "report_counts",
    "report_document",
    "report_heading",
    "rows_markdown",
    "rows_table",
]
