"""doctor's reads of the usage side: one Traceability count of the last settled window and the oldest transaction
held, SubscriptionInvoices' metered units, and the journal's daily counts. Reads only; no journal is created.

The invoice listing goes through one function (``InvoiceReader``), so a fuller SubscriptionInvoice reader can take
its place without touching the comparison (``reconcile/doctor_sampling.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.collaborators import AmplifyAccess, OpensJournal, Settled
from amplify_billing.errors import AmplifyBillingError, UpstreamError
from amplify_billing.reconcile.doctor_sampling import InvoicedUnits, JournalCounts
from amplify_billing.reconcile.doctor_usage import UsageEvidence
from amplify_billing.usage.sources import FileSource
from amplify_billing.usage.windows import WINDOW_SIZES, window_floor

Raw = Mapping[str, Any]


class InvoicePages(Protocol):
    def pages(
        self,
        plural: str,
        *,
        query: str | None = None,
        scope: str | None = None,
        group: str = "catalog",
        proof: Any = None,
        sort: str | None = None,
    ) -> Any: ...


InvoiceReader = Callable[[InvoicePages], list[dict[str, Any]]]


class AmplifyReads(Settled, AmplifyAccess, Protocol):
    """The settings and Amplify's clients: the catalog, the owners' details, Traceability (or the usage file)."""


class JournalReads(Settled, OpensJournal, Protocol):
    """What the journal's daily counts read: the journal, only if its file exists."""


def newest_invoices(resources: InvoicePages) -> list[dict[str, Any]]:
    """The newest page of SubscriptionInvoices of every subscription: one request, also the kind's version probe
    (reference §3.6: listable across all subscriptions at /catalog/v1/subscriptioninvoices)."""
    pages = resources.pages("subscriptioninvoices", sort="metadata.audit.createTimestamp,DESC")
    return list(next(iter(pages), []))


def traceability_evidence(rt: AmplifyReads, now: datetime) -> UsageEvidence:
    """The last settled window counted grouped (with the configured explicit limit) and ungrouped, and the oldest
    transaction held; or the file source's rows."""
    usage = rt.settings.usage
    size = WINDOW_SIZES[usage.window]
    if usage.source == "file":
        try:
            assert usage.file_path is not None
            rows = FileSource(usage.file_path, size).rows
        except (AmplifyBillingError, AssertionError) as error:
            return UsageEvidence("file", usage.retention, error=str(error) or "usage.file_path is not set")
        return UsageEvidence("file", usage.retention, detail=f"usage file {usage.file_path}: {rows} valid row(s)")
    end = window_floor(now - usage.settle_delay, size)
    start = end - size
    traceability = rt.amplify().traceability
    try:
        grouped = traceability.grouped_count(start, end, limit=usage.group_limit, statuses=usage.statuses)
        total = traceability.total_count(start, end, statuses=usage.statuses)
        oldest = traceability.oldest(statuses=usage.statuses)
    except UpstreamError as error:
        return UsageEvidence(
            "traceability",
            usage.retention,
            start=start,
            end=end,
            limit=usage.group_limit,
            error=str(error),
            status=error.status,
        )
    return UsageEvidence(
        "traceability",
        usage.retention,
        start=start,
        end=end,
        limit=usage.group_limit,
        terms=grouped.subscription_terms,
        grouped=grouped.units,
        total=total,
        oldest=oldest,
        now=now,
    )


def _intervals(invoice: Raw) -> list[tuple[str, datetime, datetime, int]]:
    """(quota name, start, end, units) of each metered interval of an invoice: an interval ends where the next
    begins, the last at the invoice period's end (agent-sdk model_subscription_invoice_spec_intervals.go)."""
    spec = invoice.get("spec") if isinstance(invoice.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    period_end = parse_timestamp((spec.get("period") or {}).get("to"))
    found: list[tuple[str, datetime, datetime, int]] = []
    for quota in spec.get("quotas") or ():
        if not isinstance(quota, Mapping):
            continue
        starts: list[tuple[datetime, int]] = []
        for interval in quota.get("intervals") or ():
            begin = parse_timestamp(interval.get("from")) if isinstance(interval, Mapping) else None
            units = interval.get("units") if isinstance(interval, Mapping) else None
            if begin is not None and isinstance(units, int) and not isinstance(units, bool):
                starts.append((begin, units))
        starts.sort()
        ends = [s for s, _ in starts[1:]] + [period_end]
        for (begin, units), end in zip(starts, ends, strict=True):
            if end is not None:
                found.append((str(quota.get("name")), begin, end, units))
    return found


def invoiced_units(invoices: Sequence[Raw], subscriptions: Sequence[Raw], quotas: Sequence[Raw]) -> list[InvoicedUnits]:
    """The metered units of the invoices of known subscriptions, by subscription id and quota id (an invoice names
    its quota by name, unique within the subscription's plan)."""
    by_name = {str(s.get("name")): s for s in subscriptions}
    quota_ids = {
        (str((q.get("metadata") or {}).get("scope", {}).get("name")), str(q.get("name"))): str(q["metadata"]["id"])
        for q in quotas
        if isinstance(q.get("metadata"), Mapping) and (q.get("metadata") or {}).get("id")
    }
    found: list[InvoicedUnits] = []
    for invoice in invoices:
        metadata = invoice.get("metadata") if isinstance(invoice.get("metadata"), Mapping) else {}
        subscription = by_name.get(str(((metadata or {}).get("scope") or {}).get("name")))
        if subscription is None:
            continue
        plan = str(((subscription.get("spec") or {}).get("plan") or {}).get("name"))
        subscription_id = str((subscription.get("metadata") or {}).get("id"))
        for quota_name, start, end, units in _intervals(invoice):
            quota_id = quota_ids.get((plan, quota_name))
            if quota_id is not None:
                found.append(InvoicedUnits(subscription_id, quota_id, start, end, units))
    return found


def journal_counts(rt: JournalReads) -> tuple[JournalCounts | None, str]:
    """The daily counts the journal keeps, and the span each pair's counts cover; (None, why) without a journal.
    An absent journal is never created (doctor is read-only)."""
    if not rt.settings.state.path.exists():
        return None, f"no journal yet at {rt.settings.state.path} (report-usage keeps the daily counts there)"
    try:
        journal = rt.journal()
        entries = journal.usage_entries()
        daily: dict[tuple[str, str, date], Decimal] = {}
        first: dict[tuple[str, str], datetime] = {}
        for entry in entries:
            pair = (entry.subscription_id, entry.quota_id)
            day = (*pair, entry.window_start.date())
            daily[day] = daily.get(day, Decimal(0)) + Decimal(entry.amount)
            first[pair] = min(first.get(pair, entry.window_start), entry.window_start)
        covered = {}
        for pair, begin in first.items():
            mark = journal.usage_watermark(*pair)
            if mark is not None:
                covered[pair] = (begin, mark)
    except AmplifyBillingError as error:
        return None, f"the journal could not be read: {error}"
    return JournalCounts(daily, covered), ""
