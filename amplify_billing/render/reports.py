"""Command reports: the heading, the changes grouped by kind, figures and note; or their JSON envelope.

Payloads of changes are never shown: they can hold raw Amplify resources. The JSON shape of command
reports is decided in one place, ``render.envelope``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from amplify_billing.changes import ChangeKind, ChangeResult, CommandReport, Outcome
from amplify_billing.errors import ExitCode
from amplify_billing.render.diagnostics import redact
from amplify_billing.render.envelope import envelope_json, report_envelope
from amplify_billing.render.tables import Cell, Column, new_table, print_line, rows_table, write_raw

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


def overall_exit_code(reports: Sequence[CommandReport]) -> int:
    return max((int(r.exit_code) for r in reports), default=int(ExitCode.OK))


# ---- tables -----------------------------------------------------------------------------------------


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
    table = new_table(columns)
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
        write_raw(console, envelope_json(report_envelope([report], command=report.command)))
        return
    if output != "table":
        raise ValueError(f"unknown output format {output!r}; use table or json")
    failed = report.count(Outcome.FAILED) > 0
    print_line(console, report_heading(report), style="bold red" if failed else "bold")
    if report.results:
        table, more = changes_table(report.results, max_rows_per_kind=max_rows_per_kind)
        console.print(table)
        for line in more:
            print_line(console, line)
    if report.figures:
        print_line(console, _figures_line(report.figures))
    if report.note:
        print_line(console, f"note: {redact(report.note)}", style="yellow")


def render_reports(
    console: Console,
    reports: Sequence[CommandReport],
    *,
    output: str,
    max_rows_per_kind: int = MAX_ROWS_PER_KIND,
) -> None:
    """Several commands (``run``): each report, then one summary table and the worst exit code."""
    if output == "json":
        write_raw(console, envelope_json(report_envelope(reports, command="run")))
        return
    if output != "table":
        raise ValueError(f"unknown output format {output!r}; use table or json")
    for report in reports:
        render_report(console, report, output=output, max_rows_per_kind=max_rows_per_kind)
        console.line()
    print_line(console, "Summary", style="bold")
    console.print(rows_table(_SUMMARY_COLUMNS, [_summary_row(r) for r in reports]))
    code = overall_exit_code(reports)
    meaning = EXIT_MEANINGS.get(code, "see README, 'Exit codes'")
    print_line(console, f"exit code {code}: {meaning}", style="bold red" if code else "bold")


_SUMMARY_COLUMNS = (
    Column("Command", fold=False),
    Column("Applied", justify="right", fold=False),
    Column("Failed", justify="right", fold=False),
    Column("Skipped", justify="right", fold=False),
    Column("Planned", justify="right", fold=False),
    Column("Reported", justify="right", fold=False),
    Column("Exit", justify="right", fold=False),
    Column("Note"),
)


def _summary_row(report: CommandReport) -> tuple[Cell, ...]:
    return (
        ("(dry run) " if report.dry_run else "") + report.command,
        report.count(Outcome.APPLIED),
        report.count(Outcome.FAILED),
        report.count(Outcome.SKIPPED),
        report.count(Outcome.PLANNED),
        report.count(Outcome.REPORTED),
        int(report.exit_code),
        report.note or "",
    )


__all__ = [
    "EXIT_MEANINGS",
    "KIND_ORDER",
    "MAX_ROWS_PER_KIND",
    "OUTCOME_ORDER",
    "changes_table",
    "overall_exit_code",
    "render_report",
    "render_reports",
    "report_counts",
    "report_heading",
]
