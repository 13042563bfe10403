"""status in marketplace mode: Amplify's metered units next to Traceability's count of the same traffic. Pure.

An invoice's per-quota units (``spec.quotas[]``) are Amplify's complete count of the period; Traceability's
transaction summaries may be sampled (reference §9.1). Side by side, for each subscription's latest period invoice,
they show sampling at a glance (docs/architecture.md, "Where each rule lives"). Traceability keeps 7 days of
transactions, so a period that began earlier has no complete second count: the row says so rather than show a part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from amplify_billing.reconcile.status_report import Row, Section, columns, format_ts

METERED_COLUMNS = columns(
    ("subscription", "subscription"),
    ("invoice", "invoice"),
    ("quota", "quota"),
    ("period", "period"),
    ("metered_units", "Amplify metered"),
    ("traced_units", "Traceability"),
    ("traced_share", "traced / metered"),
)


@dataclass(frozen=True)
class MeteredQuota:
    """One quota of one period invoice: Amplify's units, and Traceability's count over the same period (None:
    not countable, ``why`` says why)."""

    subscription: str
    invoice: str
    quota: str
    start: datetime
    end: datetime
    metered: int
    traced: int | None
    why: str = ""
    # what ``--subscription``, ``--plan`` and ``--account`` match (status_scope.keeps_metered): its Amplify
    # subscription id, its plan's resource name and Amplify id, its owner's Recurly account code
    subscription_id: str = ""
    plan: str = ""
    plan_id: str = ""
    account: str | None = None


def _share(m: MeteredQuota) -> str:
    if m.traced is None:
        return m.why
    if m.metered == 0:
        return "nothing metered" if m.traced == 0 else "traced but not metered"
    return f"{m.traced / m.metered:.1%}"


def metered_row(m: MeteredQuota) -> Row:
    period = f"{format_ts(m.start)} to {format_ts(m.end)}"
    return (m.subscription, m.invoice, m.quota, period, m.metered, m.traced, _share(m))


def metered_section(quotas: Sequence[MeteredQuota]) -> Section:
    return Section(
        "metered",
        "Amplify's metered units next to Traceability's count (each subscription's latest period invoice)",
        METERED_COLUMNS,
        tuple(metered_row(m) for m in sorted(quotas, key=lambda m: (m.subscription, m.quota))),
        empty="no period invoice with metered units yet",
    )
