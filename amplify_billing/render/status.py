"""The status report on a console: a headline, the summary and each section as a table, Markdown or JSON.

JSON is one document for the whole report, so that ``jq`` and scripts read it in one go. Tables and
Markdown leave out the wide id columns a section names (JSON keeps them).
"""

from __future__ import annotations

import json
from typing import Literal

from rich.console import Console
from rich.text import Text

from amplify_billing.reconcile.status import Section, SectionColumn, StatusReport, format_ts
from amplify_billing.render.diagnostics import redact
from amplify_billing.render.tables import Column, render_rows, write_raw

StatusOutput = Literal["table", "json", "markdown"]


def _column(column: SectionColumn) -> Column:
    return Column(column.header, key=column.key, justify="right" if column.figures else "left")


def _render_section(console: Console, section: Section, output: StatusOutput) -> None:
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


def _headline(report: StatusReport) -> str:
    when = format_ts(report.generated_at)
    checked = "Recurly read in full (--verify)" if report.verified else "journal trusted (use --verify to read Recurly)"
    if report.in_step:
        return f"Status at {when}: everything is in step; {checked}."
    parts = [f"{report.summary['drift']} drift item(s)"]
    if report.open_intents:
        parts.append(f"{report.open_intents} open intent(s)")
    return f"Status at {when}: NOT in step: {', '.join(parts)}; {checked}."


def render_status(console: Console, report: StatusReport, output: StatusOutput) -> None:
    if output == "json":
        # written raw: no wrapping, no markup; secrets redacted over the whole document
        write_raw(console, redact(json.dumps(report.to_json(), indent=2, ensure_ascii=False)))
        return
    headline = _headline(report)
    console.print(f"## {headline}\n" if output == "markdown" else headline, markup=False, highlight=False)
    for section in (report.summary_section(), *report.sections):
        _render_section(console, section, output)


__all__ = ["StatusOutput", "render_status"]
