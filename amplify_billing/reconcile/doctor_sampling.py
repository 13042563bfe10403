"""doctor: are Traceability's transaction summaries sampled? Pure.

An unsampled transaction leaves no summary in Traceability (agent-sdk pkg/transaction/eventgenerator.go), so nothing
in Traceability can show that it is missing: the only evidence is a second count of the same traffic. Amplify's
SubscriptionInvoices carry its own metered units per quota and interval (agent-sdk
models/catalog/v1/model_subscription_invoice_spec_intervals.go), and the journal keeps the daily Traceability counts
this tool reported. Where both cover the same whole days inside the retention window, their ratio says whether the
summaries are sampled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from amplify_billing.reconcile.doctor_checks import Check, Verdict

# Below this share of the invoiced units, the summaries are sampled (or counts are lost): the source under-bills.
SAMPLED_BELOW = Decimal("0.99")
DAY = timedelta(days=1)
AREA, NAME = "usage source", "sampling"
FIX = "use the Marketplace billing mode, or usage.source: file fed by the gateway's own counts"
# sampling percentage default 0, at most 10 (agent-sdk pkg/traceability/sampling/definitions.go; DOCS trace_sampling.md)
BY_DEFAULT = (
    "agents sample transaction summaries by default (an unsampled transaction leaves no trace in Traceability), "
    "so counts may under-bill"
)


@dataclass(frozen=True)
class InvoicedUnits:
    """Units Amplify metered for one quota of one subscription over [start, end) (one invoice interval)."""

    subscription_id: str
    quota_id: str
    start: datetime
    end: datetime
    units: int


@dataclass(frozen=True)
class JournalCounts:
    """What the journal holds: units reported per (subscription, quota, UTC day), and per pair the span its counts
    cover (first window start, watermark)."""

    daily: Mapping[tuple[str, str, date], Decimal]
    covered: Mapping[tuple[str, str], tuple[datetime, datetime]]


def _comparable(item: InvoicedUnits, journal: JournalCounts, oldest_held: datetime) -> bool:
    whole_days = item.start.time() == item.end.time() == datetime.min.time() and item.end > item.start
    span = journal.covered.get((item.subscription_id, item.quota_id))
    covered = span is not None and span[0] <= item.start and item.end <= span[1]
    return whole_days and covered and item.units > 0 and item.start >= oldest_held


def _counted(item: InvoicedUnits, journal: JournalCounts) -> Decimal:
    total = Decimal(0)
    day = item.start
    while day < item.end:
        total += journal.daily.get((item.subscription_id, item.quota_id, day.date()), Decimal(0))
        day += DAY
    return total


def sampling_check(
    invoiced: Sequence[InvoicedUnits] | None,
    journal: JournalCounts | None,
    *,
    now: datetime,
    retention: timedelta,
    why_none: str = "",
) -> Check:
    """The verdict on sampling: the invoices' units against the journal's counts of the same days.

    ``invoiced`` None: no invoices could be read (``why_none`` says why); ``journal`` None: no journal yet."""
    if invoiced is None or not invoiced or journal is None:
        missing = why_none or (
            "no SubscriptionInvoice holds metered units"
            if journal is not None
            else "no journal yet (report-usage keeps the daily counts)"
        )
        return Check(
            AREA,
            NAME,
            Verdict.UNKNOWN,
            f"no second count of the same traffic: {missing}; {BY_DEFAULT}",
            "after a few days of report-usage, where the Marketplace bills with vendor Custom, run doctor again",
        )
    oldest_held = now - retention
    compared = [item for item in invoiced if _comparable(item, journal, oldest_held)]
    if not compared:
        return Check(
            AREA,
            NAME,
            Verdict.UNKNOWN,
            f"no second count of the same traffic: none of {len(invoiced)} invoiced interval(s) covers whole days "
            f"inside the {retention.days}-day retention that the journal counted; {BY_DEFAULT}",
            "run doctor again after report-usage has counted the days of an invoice interval",
        )
    billed = sum(item.units for item in compared)
    counted = sum((_counted(item, journal) for item in compared), Decimal(0))
    ratio = counted / billed
    evidence = (
        f"Traceability counted {counted} of {billed} units Amplify invoiced over {len(compared)} "
        f"interval(s) ({ratio:.1%})"
    )
    if ratio < SAMPLED_BELOW:
        return Check(AREA, NAME, Verdict.ACTION, f"summaries are sampled: this source under-bills; {evidence}", FIX)
    return Check(AREA, NAME, Verdict.OK, f"{evidence}: not sampled")
