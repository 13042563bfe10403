"""The journal side of a usage run: the ledger as this run sees it, open intents resolved by looking them up in
Recurly, first-contact reads of what Recurly already holds, and the window size the journal was started with."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from amplify_billing.actions import AbandonIntent, CompleteIntent, RecordUsage
from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.changes import Change, ChangeKind, ChangeResult
from amplify_billing.collaborators import Reading, RecurlyAccess
from amplify_billing.errors import ConfigError, UpstreamError
from amplify_billing.journal import UsageLedgerEntry
from amplify_billing.journal_changes import record as journal_record
from amplify_billing.journal_changes import set_link
from amplify_billing.links import INTENT_KIND, WINDOW_SETTING
from amplify_billing.reconcile.usage import (
    PHASE_REPORT,
    BilledQuota,
    LedgerView,
)
from amplify_billing.recurly.parse import money
from amplify_billing.usage.remembered import RememberedUsage
from amplify_billing.usage.windows import (
    merchant_tag,
    parse_merchant_tag,
)

log = logging.getLogger(__name__)

Pair = tuple[str, str]


class UsageReads(Reading, RecurlyAccess, Protocol):
    """What the usage phase's reads use: settings, clock, listings, the journal as planning sees it, and Recurly's
    usage records (open intents looked up, first-contact reads)."""


@dataclass
class UsageLedger:
    """The journal's ledger as planning reads it (the journal, or its overlay while planning), and the journal
    changes this run's reads call for (rows Recurly holds, intents closed), until the phase records them."""

    rt: Reading
    # records journal changes at once (to the journal, or its overlay while planning): the usage phase's
    # ``execute.record``; the results are kept for the report
    recorder: Callable[[Sequence[Change]], list[ChangeResult]] = lambda changes: []
    pending: list[Change] = field(default_factory=list)
    results: list[ChangeResult] = field(default_factory=list)

    def record(self, entry: UsageLedgerEntry) -> None:
        self.pending.append(
            journal_record(
                RecordUsage(entry),
                f"ledger row {entry.merchant_tag} ({entry.amount} unit(s), usage {entry.usage_id or '-'})",
                about=f"subscription ({entry.subscription_id}) quota {entry.quota_id}",
                key=f"ledger:{entry.merchant_tag}",
                amplify_id=entry.subscription_id,
            )
        )

    def close_intent(self, action: CompleteIntent | AbandonIntent, summary: str) -> None:
        self.pending.append(journal_record(action, summary, about=f"intent {action.key}", key=f"intent:{action.key}"))

    def flush(self) -> None:
        """Record the changes gathered so far: the steps after this one read what they say."""
        taken, self.pending = self.pending, []
        self.results += self.recorder(taken)

    def view(self, subscription_id: str, quota_id: str, window_start: datetime) -> LedgerView | None:
        entries = list(self.rt.journal_view().usage_for_window(subscription_id, quota_id, window_start))
        tag = merchant_tag(subscription_id, quota_id, window_start)
        if not entries:
            return None
        base = next((e for e in entries if e.kind == "base"), None)
        parts = [e for e in entries if e.kind == "part"]
        first = base or (parts[0] if parts else None)
        adjustments = {
            parsed.adjustment
            for e in entries
            if e.kind == "adjustment" and (parsed := parse_merchant_tag(e.merchant_tag)) and parsed.adjustment
        }
        return LedgerView(
            base_tag=tag,
            base_usage_id=base.usage_id if base else None,
            total=sum((e.amount for e in entries), Decimal(0)),
            adjustments=max(adjustments, default=0),
            billed=bool(first and first.billed),
            parts=len(parts),
            probe_usage_id=first.usage_id if first else None,
        )


def _record_kind(tag_text: str) -> str:
    tag = parse_merchant_tag(tag_text)
    if tag is None:
        return "base"
    if tag.adjustment:
        return "adjustment"
    return "part" if tag.part else "base"


def usage_entry(
    record: Mapping[str, Any], *, subscription_id: str, quota_id: str, uuid: str, add_on: str, size: timedelta
) -> UsageLedgerEntry | None:
    tag = parse_merchant_tag(str(record.get("merchant_tag") or ""))
    if tag is None or tag.subscription_id != subscription_id or tag.quota_id != quota_id:
        return None
    now_value = record.get("updated_at") or record.get("created_at")
    recorded = now_value if isinstance(now_value, datetime) else parse_timestamp(now_value)
    base = merchant_tag(subscription_id, quota_id, tag.window_start)
    kind = _record_kind(str(record.get("merchant_tag")))
    return UsageLedgerEntry(
        merchant_tag=str(record.get("merchant_tag")),
        subscription_id=subscription_id,
        quota_id=quota_id,
        window_start=tag.window_start,
        window_end=tag.window_start + size,
        recurly_subscription_id=uuid,
        add_on_code=add_on,
        amount=money(record.get("amount")) or Decimal(0),
        usage_id=str(record.get("id")) if record.get("id") else None,
        billed=record.get("billed_at") is not None,
        kind=kind,
        base_tag=None if kind == "base" else base,
        recorded_at=recorded or tag.window_start,
        updated_at=recorded or tag.window_start,
    )


@dataclass
class IntentResolution:
    resolved: int = 0
    stuck: list[Change] = field(default_factory=list)
    blocked: set[Pair] = field(default_factory=set)


def resolve_open_intents(rt: UsageReads, ledger: UsageLedger, size: timedelta) -> IntentResolution:
    """An intent left open by a killed run is looked up in Recurly before any resend.

    One by one: an intent whose lookup fails is reported as stuck and holds back only its own pair, so one bad
    record never stops the usage billing of every other subscription."""
    journal = rt.journal_view()
    outcome = IntentResolution()
    for intent in journal.open_intents(INTENT_KIND):
        p = intent.payload
        when = str(p["usage_timestamp"])
        pair = (str(p["amplify_subscription_id"]), str(p["quota_id"]))
        try:
            records = RememberedUsage(rt.recurly(), rt.snapshots().remember).list_usage(
                p["subscription_id"],
                p["add_on_id"],
                {"billing_status": "all", "begin_time": when, "end_time": when, "limit": 200},
            )
        except UpstreamError as error:
            outcome.blocked.add(pair)
            outcome.stuck.append(
                Change(
                    ChangeKind.FINDING,
                    "usage",
                    f"subscription ({pair[0]}) quota {pair[1]}",
                    f"{str(p['subscription_id']).removeprefix('uuid-')}/{str(p['add_on_id']).removeprefix('code-')}",
                    f"stuck intent {intent.key} ({p.get('amount')} unit(s)) from {intent.created_at.isoformat()}: "
                    f"cannot look it up in Recurly ({error}); nothing more is posted for this pair until it is "
                    "resolved, the next run tries again",
                    units=int(Decimal(str(p.get("amount") or 0))),
                    amplify_id=pair[0],
                    phase=PHASE_REPORT,
                    key=f"{pair[0]}:{pair[1]}:stuck:{intent.key}",
                    withholds=True,
                )
            )
            continue
        found = [r for r in records if r.get("merchant_tag") == intent.key]
        if found:
            entry = usage_entry(
                found[0],
                subscription_id=pair[0],
                quota_id=pair[1],
                uuid=str(p["subscription_id"]).removeprefix("uuid-"),
                add_on=str(p["add_on_id"]).removeprefix("code-"),
                size=size,
            )
            if entry is not None:
                ledger.record(entry)
            usage_id = str(found[0].get("id"))
            ledger.close_intent(CompleteIntent(intent.key, usage_id), f"found in Recurly as usage {usage_id}: done")
            if len(found) > 1:
                log.error("merchant_tag %s appears %d times in Recurly", intent.key, len(found))
        else:
            why = "not found in Recurly: the write never landed"
            ledger.close_intent(AbandonIntent(intent.key, why), f"{why}; its window is planned afresh")
        outcome.resolved += 1
    return outcome


def bootstrap(rt: RecurlyAccess, ledger: UsageLedger, quota: BilledQuota, since: datetime, size: timedelta) -> None:
    """First contact with a pair (or a lost journal): learn what Recurly already holds for it."""
    records = rt.recurly().list_usage(
        f"uuid-{quota.recurly_uuid}",
        f"code-{quota.add_on_code}",
        {"billing_status": "all", "begin_time": since.strftime("%Y-%m-%dT%H:%M:%SZ"), "limit": 200},
    )
    for record in records:
        entry = usage_entry(
            record,
            subscription_id=quota.subscription_id,
            quota_id=quota.quota_id,
            uuid=quota.recurly_uuid,
            add_on=quota.add_on_code,
            size=size,
        )
        if entry is not None:
            ledger.record(entry)


def check_window_setting(rt: Reading, window: str) -> list[Change]:
    """Refuse a window size other than the one this journal reports in; the first run records it."""
    previous = rt.journal_view().get_link(*WINDOW_SETTING)
    if previous and previous != window:
        raise ConfigError(
            f"usage was reported in {previous} windows by this journal ({rt.settings.state.path}); "
            f"counting {window} windows now would bill the same traffic twice. Keep usage.window: {previous} "
            "(and no --window), or start a new journal and Recurly site"
        )
    return [] if previous else [set_link(*WINDOW_SETTING, window, about="usage.window")]
