"""Command reports: an opening line, the changes grouped by kind, figures and notes, and one closing total; or
their JSON envelope, or Markdown.

The opening line says when (UTC), which tool version, which command, its run ids or that it was a dry run; the
closing total counts like terraform's plan (``Plan: 12 to create, 3 to update, 0 to end, …; 2 findings
(1 acknowledged)``) and ends with the exit code. ``quiet`` leaves out what needs no one: a run with nothing to
do is that one line. Payloads of changes are never shown: they can hold raw Amplify resources. The JSON shape of
command reports is decided in one place, ``render.envelope``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from rich.console import Console
from rich.text import Text

from amplify_billing import __version__
from amplify_billing.acknowledge import acknowledged as is_acknowledged
from amplify_billing.acknowledge import acknowledgement_of
from amplify_billing.changes import REPORT_ONLY, ChangeKind, ChangeResult, CommandReport, Outcome
from amplify_billing.errors import ExitCode
from amplify_billing.render.diagnostics import redact
from amplify_billing.render.envelope import envelope_json, report_envelope
from amplify_billing.render.tables import Column, iso, print_line, print_table, rows_markdown, write_raw

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

# Heading order: what happened first, then what was only shown.
OUTCOME_ORDER: tuple[Outcome, ...] = (
    Outcome.PLANNED,
    Outcome.APPLIED,
    Outcome.FAILED,
    Outcome.SKIPPED,
    Outcome.REPORTED,
)

# The closing total's groups, as terraform counts: what is created, changed, ended, and the usage posted.
TOTAL_GROUPS: tuple[tuple[str, str, frozenset[ChangeKind]], ...] = (
    ("to create", "created", frozenset({ChangeKind.CREATE})),
    ("to update", "updated", frozenset({ChangeKind.UPDATE, ChangeKind.LINK, ChangeKind.APPROVE})),
    ("to end", "ended", frozenset({ChangeKind.DEACTIVATE, ChangeKind.CANCEL, ChangeKind.TERMINATE})),
    ("usage records to post", "usage records posted", frozenset({ChangeKind.POST, ChangeKind.RESTATE})),
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

CHANGE_COLUMNS = (
    Column("Kind"),
    Column("Object"),
    Column("Amplify"),
    Column("Recurly"),
    Column("What"),
    Column("Outcome"),
)


def report_counts(report: CommandReport) -> dict[str, int]:
    """Results per outcome, every outcome present (zero included), in ``OUTCOME_ORDER``."""
    counts = dict.fromkeys(OUTCOME_ORDER, 0)
    for result in report.results:
        counts[result.outcome] += 1
    return {outcome.value: n for outcome, n in counts.items()}


def report_heading(report: CommandReport) -> str:
    """E.g. ``sync-plans: 3 applied, 1 failed, 2 reported (1 acknowledged)`` or ``(dry run) sync-plans: 5 planned``."""
    counts = report_counts(report)
    parts = [f"{n:,} {outcome}" for outcome, n in counts.items() if n]
    known = sum(1 for r in report.results if is_acknowledged(r))
    prefix = "(dry run) " if report.dry_run else ""
    return f"{prefix}{report.command}: {', '.join(parts) or 'no changes'}" + (
        f" ({known:,} acknowledged)" if known else ""
    )


def overall_exit_code(reports: Sequence[CommandReport]) -> int:
    return max((int(r.exit_code) for r in reports), default=int(ExitCode.OK))


# ---- the opening line and the closing total ---------------------------------------------------------------


def _run_ids(reports: Sequence[CommandReport]) -> str:
    ids = sorted({r.run_id for r in reports if r.run_id is not None})
    if not ids:
        return ""
    if len(ids) == 1:
        return f"run id {ids[0]}"
    if ids == list(range(ids[0], ids[-1] + 1)):
        return f"run ids {ids[0]}-{ids[-1]}"
    return "run ids " + ", ".join(str(i) for i in ids)


def opening_line(command: str, reports: Sequence[CommandReport], started_at: datetime | None = None) -> str:
    """``2026-12-05T19:05:45Z amplify-billing 0.1.0 run (run ids 5-8)``, or ``… sync-plans --dry-run (nothing
    written)``: when, which version, which command, and which runs of the journal's history (none on a dry run).
    ``started_at``: when the command started, for reports that carry no time (a step that never started)."""
    started = next((r.started_at for r in reports if r.started_at is not None), started_at)
    when = f"{iso(started.replace(microsecond=0))} " if started is not None else ""
    dry = any(r.dry_run for r in reports)
    ids = _run_ids(reports)
    said = " --dry-run (nothing written)" if dry else (f" ({ids})" if ids else "")
    return f"{when}amplify-billing {__version__} {command}{said}"


def closing_total(reports: Sequence[CommandReport]) -> str:
    """``Plan: 12 to create, 3 to update, 0 to end, 0 usage records to post; 2 findings (1 acknowledged); exit 0``
    on a dry run, ``Applied: 12 created, …`` otherwise; failed and skipped changes only when there are some."""
    results = [r for report in reports for r in report.results]
    dry = any(report.dry_run for report in reports)
    done = Outcome.PLANNED if dry else Outcome.APPLIED
    counted = [
        f"{sum(1 for r in results if r.outcome is done and r.change.kind in kinds):,} {planned if dry else applied}"
        for planned, applied, kinds in TOTAL_GROUPS
    ]
    parts = [("Plan: " if dry else "Applied: ") + ", ".join(counted)]
    for outcome in (Outcome.FAILED, Outcome.SKIPPED):
        n = sum(1 for r in results if r.outcome is outcome)
        if n:
            parts.append(f"{n:,} {outcome.value}")
    findings = [r for r in results if r.change.kind in REPORT_ONLY]
    known = sum(1 for r in findings if is_acknowledged(r))
    parts.append(f"{len(findings):,} finding{'' if len(findings) == 1 else 's'} ({known:,} acknowledged)")
    code = overall_exit_code(reports)
    parts.append(f"exit {code}" + ("" if code == 0 else f" ({EXIT_MEANINGS.get(code, 'see README, Exit codes')})"))
    return "; ".join(parts)


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
    """The summary, and under it why the change failed or was skipped, or the finding's acknowledgement (an
    error column would be empty for every other row and squeeze the identities)."""
    what = Text(("withheld: " if result.change.withholds else "") + redact(result.change.summary))
    if result.error:
        prefix = "error: " if result.outcome is Outcome.FAILED else ""
        what.append("\n" + prefix + redact(result.error), style=_OUTCOME_STYLE.get(result.outcome, ""))
    acknowledgement = acknowledgement_of(result)
    if acknowledgement is not None:
        what.append("\n" + redact(acknowledgement.describe()))
    return what


def _outcome(result: ChangeResult) -> Text:
    if is_acknowledged(result):
        return Text("acknowledged")
    return Text(result.outcome.value, style=_OUTCOME_STYLE.get(result.outcome, ""))


def shown_results(results: Sequence[ChangeResult], *, quiet: bool) -> list[ChangeResult]:
    """What a report lists: everything, or with ``quiet`` the changes and the findings that still count."""
    return [r for r in results if not quiet or not is_acknowledged(r) or r.change.kind not in REPORT_ONLY]


def change_rows(
    results: Sequence[ChangeResult], *, max_rows_per_kind: int = MAX_ROWS_PER_KIND
) -> tuple[list[list[Text]], frozenset[int], list[str]]:
    """The rows grouped by kind, at most ``max_rows_per_kind`` each; the last row of each group; and the
    "… and N more" lines."""
    rows: list[list[Text]] = []
    ends: set[int] = set()
    more: list[str] = []
    for kind, group in _ordered_by_kind(results):
        shown = group
        if len(group) > max_rows_per_kind:
            # failures first, so a truncated table never hides what the operator must act on
            shown = sorted(group, key=lambda r: _SEVERITY.get(r.outcome, 2))[:max_rows_per_kind]
            more.append(f"… and {len(group) - len(shown):,} more {kind.value} changes (use --output json for all)")
        for result in shown:
            change = result.change
            rows.append(
                [
                    Text(kind.value),
                    Text(change.object),
                    Text(redact(change.amplify)),
                    Text(redact(change.recurly)),
                    _what(result),
                    _outcome(result),
                ]
            )
        ends.add(len(rows) - 1)
    return rows, frozenset(ends), more


def _has_news(report: CommandReport) -> bool:
    """Whether ``quiet`` shows anything of the report: a change, a finding that counts, a note, a failed step."""
    return bool(shown_results(report.results, quiet=True)) or report.note is not None or report.exit_code != 0


def _render_body(console: Console, report: CommandReport, *, quiet: bool, max_rows_per_kind: int) -> None:
    failed = report.count(Outcome.FAILED) > 0
    print_line(console, report_heading(report), style="bold red" if failed else "bold")
    results = shown_results(report.results, quiet=quiet)
    if results:
        rows, ends, more = change_rows(results, max_rows_per_kind=max_rows_per_kind)
        print_table(console, CHANGE_COLUMNS, rows, section_ends=ends)
        for line in more:
            print_line(console, line)
    if report.figures and not quiet:
        print_line(console, _figures_line(report.figures))
    if report.note:
        print_line(console, f"note: {redact(report.note)}", style="yellow")


def _render_markdown(
    console: Console, command: str, reports: Sequence[CommandReport], *, quiet: bool, started_at: datetime | None
) -> None:
    lines = [f"## {opening_line(command, reports, started_at)}", ""]
    for report in reports:
        if quiet and not _has_news(report):
            continue
        lines += [f"### {report_heading(report)}", ""]
        results = shown_results(report.results, quiet=quiet)
        if results:
            rows, _, more = change_rows(results)
            lines += [rows_markdown(CHANGE_COLUMNS, [[cell.plain for cell in row] for row in rows]), ""]
            lines += [f"_{line}_" for line in more]
        if report.figures and not quiet:
            lines += [f"`{_figures_line(report.figures)}`", ""]
        if report.note:
            lines += [f"**note:** {redact(report.note)}", ""]
    lines.append(f"**{closing_total(reports)}**")
    write_raw(console, "\n".join(lines))


def render_command(
    console: Console,
    command: str,
    reports: Sequence[CommandReport],
    *,
    output: str,
    quiet: bool = False,
    max_rows_per_kind: int = MAX_ROWS_PER_KIND,
    started_at: datetime | None = None,
) -> None:
    """A command's reports (``run``: one per step): the opening line, each report, the closing total; one JSON
    document; or Markdown. ``quiet``: only changes, findings that count, notes and errors, and a run with
    nothing of these is one line: the opening line and the total."""
    if output == "json":
        write_raw(console, envelope_json(report_envelope(reports, command=command)))
        return
    if output == "markdown":
        _render_markdown(console, command, reports, quiet=quiet, started_at=started_at)
        return
    if output != "table":
        raise ValueError(f"unknown output format {output!r}; use table, json or markdown")
    opening, total = opening_line(command, reports, started_at), closing_total(reports)
    news = [r for r in reports if not quiet or _has_news(r)]
    if not news:
        print_line(console, f"{opening}: {total}")
        return
    print_line(console, opening, style="bold")
    for report in news:
        _render_body(console, report, quiet=quiet, max_rows_per_kind=max_rows_per_kind)
    code = overall_exit_code(reports)
    print_line(console, total, style="bold red" if code else "bold")


def render_report(
    console: Console,
    report: CommandReport,
    *,
    output: str,
    quiet: bool = False,
    max_rows_per_kind: int = MAX_ROWS_PER_KIND,
) -> None:
    """One command's report (see ``render_command``)."""
    render_command(console, report.command, [report], output=output, quiet=quiet, max_rows_per_kind=max_rows_per_kind)


def render_reports(
    console: Console,
    reports: Sequence[CommandReport],
    *,
    output: str,
    quiet: bool = False,
    max_rows_per_kind: int = MAX_ROWS_PER_KIND,
) -> None:
    """``run``'s steps (see ``render_command``)."""
    render_command(console, "run", reports, output=output, quiet=quiet, max_rows_per_kind=max_rows_per_kind)


__all__ = [
    "CHANGE_COLUMNS",
    "EXIT_MEANINGS",
    "KIND_ORDER",
    "MAX_ROWS_PER_KIND",
    "OUTCOME_ORDER",
    "change_rows",
    "closing_total",
    "opening_line",
    "overall_exit_code",
    "render_command",
    "render_report",
    "render_reports",
    "report_counts",
    "report_heading",
    "shown_results",
]
