"""The status report on a console: an opening line, the summary and each section as a table or Markdown, and one
closing total; or the JSON envelope.

JSON is the report envelope of every command (``render.envelope``): the drift as ``changes`` and ``findings``
with typed ids, and the whole status document in ``status``. Tables and Markdown leave out the wide id columns a
section names (JSON keeps them). ``quiet`` shows only the drift that counts and the open intents; a status in
step is one line.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from rich.console import Console
from rich.text import Text

from amplify_billing import __version__
from amplify_billing.reconcile.status import Section, SectionColumn, StatusReport, format_ts
from amplify_billing.render.envelope import envelope_json, status_envelope
from amplify_billing.render.tables import Column, print_line, render_rows, write_raw


def _column(column: SectionColumn) -> Column:
    return Column(column.header, key=column.key, justify="right" if column.figures else "left")


def _render_section(console: Console, section: Section, output: str) -> None:
    """One section through ``render_rows``; an empty one as one line that says what "empty" means."""
    if section.rows:
        columns, rows = section.narrow()
        render_rows(console, section.title, [_column(c) for c in columns], rows, output=output)
        if output == "markdown":
            console.print()  # a blank line ends the Markdown table before the next heading
    elif output == "markdown":
        console.print(f"### {section.title}\n\n_{section.empty}_\n", markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(Text(f"{section.title}: {section.empty}", style="bold"), soft_wrap=True)


def opening_line(report: StatusReport) -> str:
    """``2026-12-05T19:05:45Z amplify-billing 0.1.0 status (read-only)``, with its filters and ``--offline``."""
    said = " --offline" if report.offline and not report.unavailable else ""
    said += f" {report.scope}" if report.scope else ""
    return f"{format_ts(report.generated_at)} amplify-billing {__version__} status{said} (read-only)"


def closing_total(report: StatusReport, exit_code: int) -> str:
    """One line: in step or not, with the drift that counts, the acknowledged, the open intents and the exit."""
    known = sum(1 for d in report.drift if not d.counts)
    figures = f"{len(report.counting)} drift item(s), {known} acknowledged, {report.open_intents} open intent(s)"
    if report.unavailable:
        state = "INCOMPLETE: could not read " + "; ".join(report.unavailable) + "; shown: the journal's view"
        state += "".join(f", {s.title}" for s in report.sections if s.name.endswith("_plans"))
        figures = f"{report.open_intents} open intent(s)"
    elif report.offline:
        state = "The journal's view only (--offline: Amplify and Recurly not read)"
        figures = f"{report.summary.get('subscriptions_linked', 0)} link(s), {report.open_intents} open intent(s)"
    elif report.in_step:
        state = "Everything is in step"
    else:
        state = "NOT in step"
    checked = "Recurly read in full (--verify)" if report.verified else "journal trusted (use --verify to read Recurly)"
    tail = "" if report.offline else f"; {checked}"
    return f"{state}: {figures}{tail}; exit {exit_code}"


def _quiet_sections(report: StatusReport) -> tuple[Section, ...]:
    """What ``quiet`` shows: the drift that counts, and the open intents, when there are any."""
    shown: list[Section] = []
    for section in report.sections:
        if section.name == "drift":
            rows = tuple(row for row, item in zip(section.rows, report.drift, strict=True) if item.counts)
            if rows:
                shown.append(replace(section, rows=rows))
        elif section.name == "open_intents" and section.rows:
            shown.append(section)
    return tuple(shown)


def render_status(
    console: Console,
    report: StatusReport,
    output: str,
    *,
    quiet: bool = False,
    started_at: datetime | None = None,
    exit_code: int | None = None,
) -> None:
    code = report.exit_code(False) if exit_code is None else exit_code
    if output == "json":
        started = started_at or report.generated_at
        write_raw(console, envelope_json(status_envelope(report, exit_code=code, started_at=started)))
        return
    if output not in ("table", "markdown"):
        raise ValueError(f"unknown output format {output!r}; use table, json or markdown")
    opening, total = opening_line(report), closing_total(report, code)
    sections = _quiet_sections(report) if quiet else (report.summary_section(), *report.sections)
    if quiet and not sections and not report.unavailable:
        print_line(console, f"{opening}: {total}")
        return
    if output == "markdown":
        write_raw(console, f"## {opening}\n")
    else:
        print_line(console, opening, style="bold")
    for section in sections:
        _render_section(console, section, output)
    if output == "markdown":
        write_raw(console, f"**{total}**")
    else:
        print_line(console, total, style="bold" if report.in_step else "bold red")


__all__ = ["closing_total", "opening_line", "render_status"]
