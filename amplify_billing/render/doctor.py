"""The doctor report on a console: a headline, the checks, the literal census, the plan mapping preview and the
requests spent, as tables, one JSON document, or Markdown to paste into a ticket."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from rich.console import Console

from amplify_billing.reconcile.doctor_checks import DoctorReport, Verdict
from amplify_billing.render.diagnostics import redact
from amplify_billing.render.envelope import doctor_envelope, envelope_json
from amplify_billing.render.tables import Column, print_line, render_rows, write_raw

DoctorOutput = Literal["table", "json", "markdown"]
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
CENSUS_FIELDS = ("field", "value", "count", "example", "known")


def headline(report: DoctorReport) -> str:
    needing = sum(1 for c in report.checks if c.verdict is Verdict.ACTION)
    unknown = sum(1 for c in report.checks if c.verdict is Verdict.UNKNOWN)
    state = "READY: nothing needs action" if report.ready else f"ACTION NEEDED: {needing} check(s) need action"
    return f"amplify-billing doctor: {state} ({len(report.checks)} checks, {unknown} unknown)"


def requests_line(report: DoctorReport) -> str:
    """What doctor asked of each system; the only POSTs to Amplify are the token and Traceability searches."""
    parts = []
    for system in ("amplify", "recurly"):
        methods = report.requests.get(system, {})
        total = sum(methods.values())
        detail = ", ".join(f"{m} {n}" for m, n in sorted(methods.items()))
        parts.append(f"{system.capitalize()} {total}" + (f" ({detail})" if detail else ""))
    return "Requests: " + "; ".join(parts) + ". Nothing was written."


def document(report: DoctorReport) -> dict[str, Any]:
    return {
        "ready": report.ready,
        "exit_code": report.exit_code,
        "checks": [
            {"area": c.area, "check": c.name, "verdict": c.verdict.value, "evidence": c.evidence, "action": c.action}
            for c in report.checks
        ],
        "census": [
            {**{name: getattr(r, name) for name in CENSUS_FIELDS}, "holds_back": list(r.holds_back)}
            for r in report.census
        ],
        "preview": [
            {"outcome": r.outcome, "reason": r.reason, "plans": r.count, "examples": list(r.examples)}
            for r in report.preview
        ],
        "requests": {system: dict(methods) for system, methods in report.requests.items()},
    }


def render_doctor(
    console: Console, report: DoctorReport, output: DoctorOutput, *, started_at: datetime, finished_at: datetime
) -> None:
    if output == "json":
        # the versioned envelope every command prints (render/envelope.py), with the report in ``doctor``
        clean = json.loads(redact(json.dumps(document(report), ensure_ascii=False)))
        envelope = doctor_envelope(clean, exit_code=report.exit_code, started_at=started_at, finished_at=finished_at)
        write_raw(console, envelope_json(envelope))
        return
    markdown = output == "markdown"
    title = f"## {headline(report)}\n" if markdown else headline(report)
    print_line(console, title, style=None if markdown else "bold")
    sections = (
        (
            "Checks",
            [Column("area"), Column("check"), Column("verdict"), Column("evidence"), Column("action")],
            [(c.area, c.name, c.verdict.value, c.evidence, c.action) for c in report.checks],
        ),
        (
            "Literal census",
            [
                Column("field"),
                Column("value"),
                Column("count", justify="right"),
                Column("example"),
                Column("known"),
                Column("holds back"),
            ],
            [
                (r.field, r.value, r.count, r.example, "yes" if r.known else "NO", ", ".join(r.holds_back))
                for r in report.census
            ],
        ),
        (
            "Plan mapping preview",
            [Column("outcome"), Column("reason"), Column("plans", justify="right"), Column("examples")],
            [(r.outcome, r.reason, r.count, ", ".join(r.examples)) for r in report.preview],
        ),
    )
    for title, columns, rows in sections:
        render_rows(console, title, columns, rows, output=output)
        if markdown:
            console.print()
    print_line(console, requests_line(report))


__all__ = ["DoctorOutput", "document", "headline", "render_doctor", "requests_line"]
