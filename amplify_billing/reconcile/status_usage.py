"""Usage in the status report: which (subscription, quota) pairs are billed, and how the three counts compare.

Amplify's count, the journal's reported total and (``--verify`` only) Recurly's records are compared over
the same range: from the window holding Recurly's current period start to the journal's watermark of the
pair.

Pure: no I/O, no clock; the journal's record type is used for typing only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.changes import ChangeKind
from amplify_billing.reconcile.status_report import DriftItem, StatusCell, format_ts
from amplify_billing.reconcile.subscriptions import SubscriptionInputs
from amplify_billing.recurly.parse import money
from amplify_billing.usage.windows import parse_merchant_tag, window_floor

if TYPE_CHECKING:
    from amplify_billing.journal import UsageLedgerEntry


@dataclass(frozen=True)
class UsageTarget:
    """One billed (subscription, quota) and the range its usage is compared over.

    ``start`` is the aligned start of the window holding the Recurly period start; ``end`` is the
    journal's watermark of the pair (None: nothing reported in this period yet, so nothing to compare).
    """

    subscription_id: str
    subscription_name: str
    quota_id: str
    recurly_uuid: str
    add_on_code: str
    period_start: datetime
    start: datetime
    end: datetime | None
    activated_at: datetime

    @property
    def pair(self) -> tuple[str, str]:
        return (self.subscription_id, self.quota_id)

    def holds(self, window_start: datetime) -> bool:
        """Whether a window starting then is inside the compared range."""
        return window_start >= self.start and (self.end is None or window_start < self.end)


@dataclass(frozen=True)
class UsageFacts:
    """What each side says about one target. ``recurly_records`` is None unless ``--verify``."""

    target: UsageTarget
    amplify_count: int | None  # None: no range to count (nothing reported yet)
    journal_entries: tuple[UsageLedgerEntry, ...] = ()
    recurly_records: tuple[Mapping[str, Any], ...] | None = None


def usage_targets(
    subscriptions: SubscriptionInputs,
    matches: Mapping[str, str],
    period_starts: Mapping[str, datetime | None],
    watermarks: Mapping[tuple[str, str], datetime | None],
    size: timedelta,
) -> tuple[list[UsageTarget], list[DriftItem]]:
    """The billed pairs of every linked, started Recurly subscription, and add-ons missing from one.

    The range starts at the window holding Recurly's current period start (aligned, so whole journal
    windows are compared) and ends at the pair's watermark.
    """
    by_uuid = {r.uuid: r for r in subscriptions.recurly}
    targets: list[UsageTarget] = []
    gaps: list[DriftItem] = []
    for s in sorted(subscriptions.amplify, key=lambda s: s.id):
        plan = subscriptions.plans.get(s.plan_name)
        current = by_uuid.get(matches.get(s.id, ""))
        if plan is None or current is None or current.activated_at is None:
            continue  # the subscription drift says why it is not billed
        period_start = period_starts.get(current.uuid) or current.activated_at
        start = window_floor(period_start, size)
        for quota_id, add_on in sorted(plan.quota_add_ons.items()):
            if add_on not in current.add_on_codes:
                gaps.append(
                    DriftItem(
                        "usage",
                        ChangeKind.FINDING.value,
                        f"subscription {s.name} ({s.id}) quota {quota_id}",
                        f"subscription {current.uuid}",
                        f"usage add-on {add_on} is not on the Recurly subscription, so its usage cannot be "
                        "reported; add the add-on to the subscription in Recurly",
                        "by hand",
                        amplify_id=s.id,
                        recurly_id=current.uuid,
                        key=f"{ChangeKind.FINDING.value}:{s.id}:{quota_id}:add-on",
                    )
                )
                continue
            mark = watermarks.get((s.id, quota_id))
            targets.append(
                UsageTarget(
                    subscription_id=s.id,
                    subscription_name=s.name,
                    quota_id=quota_id,
                    recurly_uuid=current.uuid,
                    add_on_code=add_on,
                    period_start=period_start,
                    start=start,
                    end=mark if mark is not None and mark > start else None,
                    activated_at=current.activated_at,
                )
            )
    return targets, gaps


# ---- one target compared --------------------------------------------------------------------------


def _units(value: Decimal) -> int | str:
    # usage amounts are whole units in practice; keep anything else exact as text
    return int(value) if value == value.to_integral_value() else str(value)


def _signed(value: Decimal) -> str:
    return f"+{_units(value)}" if value > 0 else str(_units(value))


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} h"


@dataclass(frozen=True)
class UsageLine:
    """One target's row of the usage section and the drift it found."""

    row: tuple[StatusCell, ...]
    drift: tuple[DriftItem, ...]


@dataclass
class _RecurlySide:
    """Recurly's records in the compared range: ours (by merchant_tag) and the ones nobody tagged."""

    total: Decimal = Decimal(0)
    tags: set[str] = field(default_factory=set)
    foreign_records: int = 0
    foreign_units: Decimal = Decimal(0)


def _recurly_side(t: UsageTarget, records: tuple[Mapping[str, Any], ...]) -> _RecurlySide:
    side = _RecurlySide()
    for record in records:
        amount = money(record.get("amount")) or Decimal(0)
        text = str(record.get("merchant_tag") or "")
        tag = parse_merchant_tag(text)
        if tag is not None and tag.subscription_id == t.subscription_id and tag.quota_id == t.quota_id:
            if t.holds(tag.window_start):
                side.total += amount
                side.tags.add(text)
            continue
        stamp = parse_timestamp(record.get("usage_timestamp"))
        if stamp is None or t.holds(stamp):
            side.foreign_records += 1
            side.foreign_units += amount
    return side


def _count_drift(
    facts: UsageFacts, journal_total: Decimal, lookback: timedelta, add: Callable[[str, str], None]
) -> None:
    """Amplify's count against the journal's total, over a range that has a watermark."""
    t = facts.target
    assert facts.amplify_count is not None
    difference = Decimal(facts.amplify_count) - journal_total
    if difference > 0:
        before = (
            f" (the count includes traffic before the subscription started at {format_ts(t.activated_at)})"
            if t.activated_at > t.start
            else ""
        )
        add(
            f"Amplify counted {_signed(difference)} unit(s) more than were reported{before}; report-usage "
            f"restates windows inside usage.lookback ({_hours(lookback)}), older ones need "
            f"report-usage --from {t.start:%Y-%m-%d}",
            "report-usage",
        )
    elif difference < 0:
        add(
            f"{_units(-difference)} unit(s) more were reported than Amplify counts now; check the usage "
            "source (usage.statuses, the file) and the Recurly records",
            "by hand",
        )


def usage_line(facts: UsageFacts, lookback: timedelta, verified: bool) -> UsageLine:
    """The row of one target, and each disagreement between Amplify, the journal and Recurly as drift."""
    t = facts.target
    ref = f"subscription {t.subscription_name} ({t.subscription_id}) quota {t.quota_id}"
    ours = [e for e in facts.journal_entries if e.quota_id == t.quota_id and t.holds(e.window_start)]
    journal_total = sum((e.amount for e in ours), Decimal(0))
    journal_tags = {e.merchant_tag for e in ours}
    recurly = _recurly_side(t, facts.recurly_records) if facts.recurly_records is not None else None
    drift: list[DriftItem] = []
    notes: list[str] = []

    def add(detail: str, nxt: str) -> None:
        drift.append(
            DriftItem(
                "usage",
                "usage",
                ref,
                f"{t.recurly_uuid}/{t.add_on_code}",
                detail,
                nxt,
                amplify_id=t.subscription_id,
                recurly_id=t.recurly_uuid,
                key=f"usage:{t.subscription_id}:{t.quota_id}",
            )
        )
        notes.append(detail.split(";", 1)[0])

    if t.end is None:
        if recurly is not None and recurly.total:
            add(
                f"the journal records nothing reported in this period, but Recurly holds {_units(recurly.total)} "
                "unit(s); check that this journal belongs to this Recurly site",
                "by hand",
            )
        else:
            notes.append("nothing reported in this period yet")
    else:
        _count_drift(facts, journal_total, lookback, add)
        if recurly is not None and recurly.total != journal_total:
            add(
                f"Recurly holds {_units(recurly.total)} unit(s), the journal {_units(journal_total)} "
                f"({len(journal_tags - recurly.tags)} journal record(s) missing in Recurly, "
                f"{len(recurly.tags - journal_tags)} Recurly record(s) unknown to the journal); report-usage reads "
                "Recurly back only for pairs it has not seen: check the records in Recurly",
                "by hand",
            )
    if recurly is not None and recurly.foreign_records:
        add(
            f"{recurly.foreign_records} usage record(s) ({_units(recurly.foreign_units)} unit(s)) on this add-on "
            "carry no amplify-billing merchant_tag; they are billed too: remove them in Recurly if they are not meant",
            "by hand",
        )
    row: tuple[StatusCell, ...] = (
        t.subscription_name,
        t.subscription_id,
        t.quota_id,
        t.recurly_uuid,
        t.add_on_code,
        format_ts(t.period_start),
        format_ts(t.start),
        format_ts(t.end),
        facts.amplify_count,
        _units(journal_total),
        _units(recurly.total) if recurly is not None else None,
        "in step" if not drift else "differs",
        "; ".join(notes) if notes else ("verified" if verified else ""),
    )
    return UsageLine(row, tuple(drift))


__all__ = [
    "UsageFacts",
    "UsageLine",
    "UsageTarget",
    "usage_line",
    "usage_targets",
]
