"""doctor: the usage source as the tenant answers it. Pure.

For Traceability: one grouped count of the last settled window with an explicit limit (Lexus cuts a grouping at
``params.limit`` terms, default 100, and says nothing: reference §9.1), checked against the ungrouped total of the
same filters, and the oldest transaction still held ("Transactions data: 7 Days", DOCS network_traffic.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from amplify_billing.reconcile.doctor_checks import Check, Verdict

AREA = "usage source"


@dataclass(frozen=True)
class UsageEvidence:
    source: str  # traceability | file
    retention: timedelta
    detail: str = ""  # a file source: what was read
    start: datetime | None = None  # the last settled window
    end: datetime | None = None
    limit: int = 0
    terms: int | None = None  # subscription groups the grouped answer returned
    grouped: int | None = None  # units in the grouped answer
    total: int | None = None  # units in the ungrouped answer
    oldest: datetime | None = None
    now: datetime | None = None
    error: str = ""
    status: int | None = None


def _span(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M}–{end:%Y-%m-%d %H:%M} UTC"


def count_check(usage: UsageEvidence) -> Check:
    if usage.error:
        if usage.status in (401, 403):
            return Check(AREA, "traceability count", Verdict.UNKNOWN, f"refused (see credentials): {usage.error}")
        return Check(AREA, "traceability count", Verdict.ACTION, usage.error, "see the error; then run again")
    assert usage.start is not None and usage.end is not None and usage.total is not None
    whole = usage.grouped == usage.total and (usage.terms or 0) < usage.limit
    answer = (
        f"whole ({usage.grouped} units in groups)"
        if whole
        else f"cut ({usage.grouped} of {usage.total} units in groups; report-usage splits such an answer until whole)"
    )
    return Check(
        AREA,
        "traceability count",
        Verdict.OK,
        f"last settled window {_span(usage.start, usage.end)}: {usage.total} transaction(s); grouped by subscription "
        f"and quota with limit {usage.limit}: {usage.terms} subscription term(s), {answer}",
    )


def retention_check(usage: UsageEvidence) -> Check:
    if usage.error:
        return Check(AREA, "retention", Verdict.UNKNOWN, "not read (see the count)")
    if usage.oldest is None or usage.now is None:
        return Check(
            AREA,
            "retention",
            Verdict.UNKNOWN,
            "Traceability holds no transaction that names a subscription and a quota",
        )
    age = usage.now - usage.oldest
    days = age / timedelta(days=1)
    return Check(
        AREA,
        "retention",
        Verdict.OK,
        f"oldest transaction still held: {usage.oldest:%Y-%m-%d %H:%M} UTC ({days:.1f} days ago); usage.retention "
        f"is {usage.retention.days} days: a window older than that is reported as uncountable, never guessed",
    )


def usage_checks(usage: UsageEvidence) -> list[Check]:
    if usage.source == "file":
        if usage.error:
            return [Check(AREA, "file", Verdict.ACTION, usage.error, "fix the file; config check validates it")]
        return [Check(AREA, "file", Verdict.OK, f"{usage.detail}; the gateway's own counts: no sampling")]
    return [count_check(usage), retention_check(usage)]
