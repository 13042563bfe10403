"""What ``status`` reads: both systems (memoised snapshots), the journal, usage counts, and with ``--verify``
Recurly's usage records. Everything becomes ``StatusInputs`` for the pure ``reconcile.status``.

Nothing here writes: no lock, no run history, and a journal that does not exist yet is not created (it
reads as empty). Without ``--verify`` nothing is read per subscription from Recurly, so the steady state
costs the same listings as a dry run plus one count query per distinct period range.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from amplify_billing.amplify.invoices import SubscriptionInvoice, list_subscription_invoices
from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.collaborators import AmplifyAccess, Clocked, Listings, OpensJournal, RecurlyAccess, Settled
from amplify_billing.errors import AmplifyBillingError
from amplify_billing.gather.invoices import invoiced_subscriptions
from amplify_billing.gather.options import plan_sync_options, subscription_options
from amplify_billing.gather.subscriptions import GatherReads, subscription_inputs
from amplify_billing.identity import account_code
from amplify_billing.journal import Intent, RunRecord, UsageLedgerEntry
from amplify_billing.journal_view import EmptyJournal
from amplify_billing.links import INTENT_KIND, SUBSCRIPTION_LINK, WINDOW_SETTING
from amplify_billing.reconcile.status import (
    COMMANDS,
    DriftItem,
    IntentFacts,
    StatusInputs,
    UsageFacts,
    UsageTarget,
    format_ts,
    usage_targets,
)
from amplify_billing.reconcile.status_invoices import MeteredQuota
from amplify_billing.reconcile.status_offline import JournalView, plans_section
from amplify_billing.reconcile.status_report import Row, Section
from amplify_billing.reconcile.subscriptions import SubscriptionInputs, match_subscriptions
from amplify_billing.settings import Settings
from amplify_billing.usage.sources import RangeCount, build_source
from amplify_billing.usage.windows import WINDOW_SIZES


class JournalReader(Protocol):
    """The read side of the journal that status uses (``Journal`` satisfies it)."""

    def links(self, kind: str) -> dict[str, str]: ...
    def get_link(self, kind: str, key: str) -> str | None: ...
    def usage_watermark(self, subscription_id: str, quota_id: str) -> datetime | None: ...
    def usage_entries(self, subscription_id: str | None = None) -> list[UsageLedgerEntry]: ...
    def open_intents(self, kind: str | None = None) -> list[Intent]: ...
    def last_run(self, command: str) -> RunRecord | None: ...


class StatusReads(Settled, Clocked, Listings, OpensJournal, AmplifyAccess, RecurlyAccess, Protocol):
    """What status reads: both systems, the journal (only if its file exists), usage counts; ``sleep`` for the
    fresh Recurly gateway of ``readable_side``."""

    @property
    def sleep(self) -> Callable[[float], None]: ...


def _journal(rt: StatusReads) -> tuple[JournalReader, bool]:
    # opening the journal creates its file; status writes nothing, so a missing journal reads as empty
    if rt.settings.state.path.exists():
        return rt.journal(), True
    return EmptyJournal(), False


def _recurly_usage(rt: RecurlyAccess, target: UsageTarget) -> tuple[Mapping[str, Any], ...]:
    records = rt.recurly().list_usage(
        f"uuid-{target.recurly_uuid}",
        f"code-{target.add_on_code}",
        {"billing_status": "all", "sort": "usage_timestamp", "order": "asc", "begin_time": format_ts(target.start)},
    )
    return tuple(records)


def _intent_in_recurly(rt: RecurlyAccess, intent: Intent) -> bool | None:
    if intent.kind != INTENT_KIND:
        return None
    p = intent.payload
    when = str(p.get("usage_timestamp") or "")
    if not when or not p.get("subscription_id") or not p.get("add_on_id"):
        return None
    records = rt.recurly().list_usage(
        str(p["subscription_id"]),
        str(p["add_on_id"]),
        {"billing_status": "all", "begin_time": when, "end_time": when, "limit": 200},
    )
    return any(r.get("merchant_tag") == intent.key for r in records)


def _usage_facts(
    rt: StatusReads, journal: JournalReader, targets: list[UsageTarget], size: timedelta, *, verify: bool
) -> list[UsageFacts]:
    """Amplify's count of each target's range (one query per distinct range), the journal's entries, and
    with ``verify`` Recurly's records."""
    settings = rt.settings
    ranges = sorted({(t.start, t.end) for t in targets if t.end is not None})
    answers: dict[tuple[datetime, datetime], RangeCount] = {}
    if ranges:
        source = build_source(settings, rt.amplify() if settings.usage.source == "traceability" else None, size)
        answers = source.counts(ranges, sorted({t.subscription_id for t in targets}))
    entries: dict[str, tuple[UsageLedgerEntry, ...]] = {}
    usage: list[UsageFacts] = []
    for t in targets:
        if t.subscription_id not in entries:
            entries[t.subscription_id] = tuple(journal.usage_entries(t.subscription_id))
        # None where the count is not proven complete: status never shows a guess as Amplify's count
        answer = answers.get((t.start, t.end)) if t.end is not None else None
        usage.append(
            UsageFacts(
                target=t,
                amplify_count=None if answer is None else answer.count(t.pair),
                journal_entries=entries[t.subscription_id],
                recurly_records=_recurly_usage(rt, t) if verify else None,
            )
        )
    return usage


def _targets(
    rt: Listings, journal: JournalReader, subscriptions: SubscriptionInputs, matches: Mapping[str, str], size: timedelta
) -> tuple[list[UsageTarget], list[DriftItem]]:
    """The billed pairs with their compared ranges (Recurly's period starts, the journal's watermarks)."""
    plans = subscriptions.plans
    period_starts = {
        str(r.get("uuid")): parse_timestamp(r.get("current_period_started_at"))
        for r in rt.snapshots().recurly_subscriptions()
        if isinstance(r.get("current_period_started_at"), str)
    }
    pairs = [
        (s.id, q)
        for s in subscriptions.amplify
        if s.id in matches and s.plan_name in plans
        for q in plans[s.plan_name].quota_add_ons
    ]
    watermarks = {pair: journal.usage_watermark(*pair) for pair in pairs}
    return usage_targets(subscriptions, matches, period_starts, watermarks, size)


def _latest_period_invoices(rt: StatusReads) -> list[SubscriptionInvoice]:
    """Each subscription's latest invoice with a period and metered units, of the Marketplaces sync-invoices reads."""
    billing = rt.settings.billing
    latest: dict[str, SubscriptionInvoice] = {}
    for invoice in list_subscription_invoices(rt.amplify().resources).invoices:
        if not billing.reads_invoices(invoice.marketplace_name) or invoice.period_end is None or not invoice.quotas:
            continue
        known = latest.get(invoice.subscription_name)
        if known is None or (known.period_end or invoice.period_end) < invoice.period_end:
            latest[invoice.subscription_name] = invoice
    return list(latest.values())


def _not_counted(settings: Settings, aged: bool, answer: RangeCount | None, listed: bool) -> str:
    """Why Traceability's count of a period is not shown (status never shows a part of a count as the count)."""
    if aged:
        return f"the period began before the {settings.usage.retention.days} days Traceability keeps"
    if settings.usage.source != "traceability":
        return "not counted: usage.source is file"
    if not listed:
        return "its subscription or quota is not listed"
    return (answer.why if answer is not None else "") or "Traceability's count is not proven complete"


def metered_quotas(rt: StatusReads, size: timedelta) -> tuple[MeteredQuota, ...] | None:
    """Amplify's metered units of each subscription's latest period invoice, next to Traceability's count over the
    same period (status_invoices.py). None, with no request, when no Marketplace is billed by Amplify's invoices.
    Requests: the invoices, the invoiced subscriptions, the quotas, and one count per distinct period."""
    settings = rt.settings
    if not settings.billing.any_invoiced:
        return None
    invoices = _latest_period_invoices(rt)
    if not invoices:
        return ()
    subscriptions = {s.name: s for s in invoiced_subscriptions(rt)}
    quotas = [
        q
        for q in rt.amplify().resources.list("quotas")
        if isinstance(q.get("metadata"), Mapping) and q["metadata"].get("id") and q["metadata"].get("scope")
    ]
    quota_ids = {(str(q["metadata"]["scope"]["name"]), str(q["name"])): str(q["metadata"]["id"]) for q in quotas}
    # a quota's scope is its plan (name and id): what --plan names, with no further request
    plan_ids = {str(q["metadata"]["scope"]["name"]): str(q["metadata"]["scope"].get("id") or "") for q in quotas}
    owner_mode = subscription_options(settings).owner
    held_from = rt.clock() - settings.usage.retention
    countable = [i for i in invoices if i.period_start is not None and i.period_start >= held_from]
    answers: dict[tuple[datetime, datetime], RangeCount] = {}
    if countable and settings.usage.source == "traceability":
        source = build_source(settings, rt.amplify(), size)
        ranges = [(i.period_start, i.period_end) for i in countable if i.period_start and i.period_end]
        ids = sorted(s.id for s in subscriptions.values())
        answers = source.counts(ranges, ids)
    rows: list[MeteredQuota] = []
    for invoice in invoices:
        start, end = invoice.period_start or invoice.period_end, invoice.period_end
        assert start is not None and end is not None
        owner = subscriptions.get(invoice.subscription_name)
        answer = answers.get((start, end))
        for quota in invoice.quotas:
            quota_id = quota_ids.get((owner.plan_name, quota.name)) if owner is not None else None
            traced = answer.count((owner.id, quota_id)) if answer and owner and quota_id else None
            why = (
                ""
                if traced is not None
                else _not_counted(settings, start < held_from, answer, bool(owner and quota_id))
            )
            plan = owner.plan_name if owner is not None else ""
            rows.append(
                MeteredQuota(
                    invoice.subscription_name,
                    invoice.title,
                    quota.name,
                    start,
                    end,
                    quota.units,
                    traced,
                    why,
                    subscription_id=owner.id if owner is not None else "",
                    plan=plan,
                    plan_id=plan_ids.get(plan, ""),
                    account=account_code(owner, owner_mode) if owner is not None else None,
                )
            )
    return tuple(rows)


def gather_status(rt: StatusReads, *, verify: bool) -> StatusInputs:
    """List both systems (memoised snapshots), read the journal, count usage; with ``verify`` read Recurly usage."""
    settings = rt.settings
    journal, present = _journal(rt)
    snapshots = rt.snapshots()
    catalog = snapshots.amplify_catalog()
    recurly_catalog = snapshots.recurly_catalog()
    sub_options = subscription_options(rt.settings)
    # the same inputs sync-subscriptions builds (deleted subscriptions waiting for their usage included), read
    # through a journal reader that never creates the file
    subscriptions = subscription_inputs(GatherReads(settings, snapshots, journal, rt.clock))
    matches = {**subscriptions.journal_links, **match_subscriptions(subscriptions, sub_options)}
    # the window size the journal's usage was reported in (report-usage pins it), else the configured one
    window = journal.get_link(*WINDOW_SETTING) or settings.usage.window
    size = WINDOW_SIZES.get(window, WINDOW_SIZES[settings.usage.window])
    targets, gaps = _targets(rt, journal, subscriptions, matches, size)
    usage = _usage_facts(rt, journal, targets, size, verify=verify)
    intents = tuple(IntentFacts(i, _intent_in_recurly(rt, i) if verify else None) for i in journal.open_intents())
    recurly_matches = match_subscriptions(replace(subscriptions, journal_links={}), sub_options) if verify else None
    return StatusInputs(
        catalog=catalog.snapshot,
        recurly_catalog=recurly_catalog,
        plan_options=plan_sync_options(settings),
        subscriptions=subscriptions,
        subscription_options=sub_options,
        usage=tuple(usage),
        usage_gaps=tuple(gaps),
        intents=intents,
        runs={c: journal.last_run(c) for c in COMMANDS},
        journal_path=str(settings.state.path),
        journal_present=present,
        window=window,
        lookback=settings.usage.lookback,
        verify=verify,
        recurly_matches=recurly_matches,
        opted_in_products=len(catalog.products),
        metered=metered_quotas(rt, size),
    )


# ---- the journal's view, and one system's plans when the other is down -------------------------------------


def journal_view(rt: StatusReads, extra: tuple[Section, ...] = ()) -> JournalView:
    """The journal's last runs, subscription links and open intents; nothing asked of either system.

    The journal is opened here, not through the runtime: the runtime checks it belongs to this Recurly site by
    reading the site, and this view is for when Recurly may be down (status writes nothing, so no claim is made)."""
    from amplify_billing.journal import Journal

    path = rt.settings.state.path
    if not path.exists():
        return JournalView({c: None for c in COMMANDS}, {}, (), str(path), False, extra)
    journal = Journal.open(path, clock=rt.clock)
    try:
        return JournalView(
            runs={c: journal.last_run(c) for c in COMMANDS},
            links=journal.links(SUBSCRIPTION_LINK),
            intents=tuple(IntentFacts(i) for i in journal.open_intents()),
            journal_path=str(path),
            journal_present=True,
            extra=extra,
        )
    finally:
        journal.close()


def readable_side(rt: StatusReads, failed: str) -> tuple[tuple[Section, ...], list[str]]:
    """The plans of the system that still answers, when ``failed`` (amplify or recurly) did not; and a phrase for
    each system that could not be read."""
    from amplify_billing.recurly.gateway import RecurlyGateway
    from amplify_billing.snapshots import Snapshots

    other = "recurly" if failed == "amplify" else "amplify"
    # a fresh gateway only to fill the slot: the Amplify listing never uses it (and rt.recurly() would read the
    # site to check the journal's owner, which fails while Recurly is down)
    gateway = RecurlyGateway(rt.settings.recurly, sleep=rt.sleep)
    snapshots = Snapshots(rt.settings, rt.amplify().resources, gateway)
    try:
        if other == "recurly":
            catalog = snapshots.recurly_catalog()
            rows: list[Row] = [
                (code, plan.state, len(plan.add_ons), catalog.live_subscriptions_by_plan.get(code, 0))
                for code, plan in sorted(catalog.plans.items())
            ]
            header = (("recurly_plan", "Recurly plan"), ("recurly_state", "Recurly state"), ("add_ons", "add-ons"))
            section = plans_section(
                "recurly_plans", "Recurly plans", rows, (*header, ("live_subscriptions", "live subs"))
            )
        else:
            amplify = snapshots.amplify_catalog().snapshot
            rows = [(f"{p.product_name}/{p.name}", p.id, p.state) for p in sorted(amplify.plans, key=lambda p: p.id)]
            header = (("amplify_plan", "Amplify plan"), ("amplify_id", "id"), ("amplify_state", "state"))
            section = plans_section("amplify_plans", "Amplify plans (opted in)", rows, header)
    except AmplifyBillingError as error:
        return (), [f"{other.capitalize()}: {error}"]
    finally:
        gateway.close()
    return (section,), []


__all__ = ["EmptyJournal", "JournalReader", "StatusReads", "gather_status", "journal_view", "readable_side"]
