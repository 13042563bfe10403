"""report-usage: counted API traffic -> Recurly usage records, exactly once (DESIGN.md §3 Usage, §4, §5).

Order of a run:
1. resolve open intents left by a killed run, by looking for their merchant_tag in Recurly;
2. for each billed (subscription, quota) never seen by this journal, read what Recurly already holds
   (so a lost journal never causes a second post);
3. plan windows from each pair's watermark (plus the lookback for late traffic), count them with one
   query per distinct range, compare with the ledger;
4. apply: intent -> write with Idempotency-Key -> ledger + confirmation; then advance the watermarks of the
   pairs whose changes all succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.apply import Handler
from amplify_billing.commands.common import default_handlers, execute, make_report
from amplify_billing.commands.subscriptions import (
    CREATED_LINK,
    SUBSCRIPTION_LINK,
    subscription_inputs,
    subscription_options,
)
from amplify_billing.errors import ConfigError
from amplify_billing.journal import UsageLedgerEntry
from amplify_billing.models import Change, ChangeKind, ChangeResult, ChangeSet, CommandReport, Outcome
from amplify_billing.reconcile.subscriptions import ended_state, match_subscriptions
from amplify_billing.reconcile.usage import BilledQuota, LedgerView, plan_usage, unbilled_findings
from amplify_billing.recurly_parse import money
from amplify_billing.runtime import Runtime
from amplify_billing.usage.sources import build_source
from amplify_billing.usage.windows import (
    WINDOW_SIZES,
    UsageWindow,
    idempotency_key,
    merchant_tag,
    parse_merchant_tag,
    reportable_windows,
)

log = logging.getLogger(__name__)

INTENT_KIND = "usage"
# (subscription, quota) pairs planned and applied together; bounds the changes held in memory at once
USAGE_BATCH_PAIRS = 1000
LOOKED_UP_LINK = "usage-looked-up"  # (subscription, quota, Recurly uuid) whose Recurly usage is in the ledger
WINDOW_SETTING = ("setting", "usage.window")


@dataclass(frozen=True)
class UsageOptions:
    dry_run: bool = False
    exit_code: bool = False
    force: bool = False
    start: datetime | None = None  # --from
    end: datetime | None = None  # --to
    window: str | None = None  # --window
    # Only these Amplify subscription ids (None: all). sync-subscriptions reports the last usage of ended
    # subscriptions this way before it ends them, so that nothing after the end is billed and nothing before lost.
    only: frozenset[str] | None = None


@dataclass
class _Ledger:
    """The journal's ledger plus what this run learned from Recurly (kept in memory on a dry run)."""

    rt: Runtime
    dry_run: bool
    extra: dict[str, list[UsageLedgerEntry]] = field(default_factory=dict)

    def record(self, entry: UsageLedgerEntry) -> None:
        if self.dry_run:
            base = entry.base_tag or entry.merchant_tag
            self.extra.setdefault(base, []).append(entry)
        else:
            self.rt.journal().record_usage(entry)

    def view(self, subscription_id: str, quota_id: str, window_start: datetime) -> LedgerView | None:
        entries = list(self.rt.journal().usage_for_window(subscription_id, quota_id, window_start))
        tag = merchant_tag(subscription_id, quota_id, window_start)
        known = {e.merchant_tag for e in entries}
        entries += [e for e in self.extra.get(tag, []) if e.merchant_tag not in known]
        if not entries:
            return None
        base = next((e for e in entries if e.kind == "base"), None)
        return LedgerView(
            base_tag=tag,
            base_usage_id=base.usage_id if base else None,
            total=sum((e.amount for e in entries), Decimal(0)),
            adjustments=sum(1 for e in entries if e.kind == "adjustment"),
            billed=bool(base and base.billed),
        )


def _usage_entry(
    record: Mapping[str, Any], *, subscription_id: str, quota_id: str, uuid: str, add_on: str, size: timedelta
) -> UsageLedgerEntry | None:
    tag = parse_merchant_tag(str(record.get("merchant_tag") or ""))
    if tag is None or tag.subscription_id != subscription_id or tag.quota_id != quota_id:
        return None
    now_value = record.get("updated_at") or record.get("created_at")
    recorded = now_value if isinstance(now_value, datetime) else parse_timestamp(now_value)
    base = merchant_tag(subscription_id, quota_id, tag.window_start)
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
        kind="adjustment" if tag.adjustment else "base",
        base_tag=base if tag.adjustment else None,
        recorded_at=recorded or tag.window_start,
        updated_at=recorded or tag.window_start,
    )


def _resolve_open_intents(rt: Runtime, ledger: _Ledger, size: timedelta) -> int:
    """DESIGN.md §4 step 4: an intent left open by a killed run is looked up in Recurly before any resend."""
    journal = rt.journal()
    resolved = 0
    for intent in journal.open_intents(INTENT_KIND):
        p = intent.payload
        when = str(p["usage_timestamp"])
        records = rt.recurly().list_usage(
            p["subscription_id"],
            p["add_on_id"],
            {"billing_status": "all", "begin_time": when, "end_time": when, "limit": 200},
        )
        found = [r for r in records if r.get("merchant_tag") == intent.key]
        if found:
            entry = _usage_entry(
                found[0],
                subscription_id=str(p["amplify_subscription_id"]),
                quota_id=str(p["quota_id"]),
                uuid=str(p["subscription_id"]).removeprefix("uuid-"),
                add_on=str(p["add_on_id"]).removeprefix("code-"),
                size=size,
            )
            if entry is not None:
                ledger.record(entry)
            if not ledger.dry_run:
                journal.complete_intent(intent.key, str(found[0].get("id")))
            if len(found) > 1:
                log.error("merchant_tag %s appears %d times in Recurly", intent.key, len(found))
        elif not ledger.dry_run:
            journal.abandon_intent(intent.key, "not found in Recurly: the write never landed")
        resolved += 1
    return resolved


def _bootstrap(rt: Runtime, ledger: _Ledger, quota: BilledQuota, since: datetime, size: timedelta) -> None:
    """First contact with a pair (or a lost journal): learn what Recurly already holds for it."""
    records = rt.recurly().list_usage(
        f"uuid-{quota.recurly_uuid}",
        f"code-{quota.add_on_code}",
        {"billing_status": "all", "begin_time": since.strftime("%Y-%m-%dT%H:%M:%SZ"), "limit": 200},
    )
    for record in records:
        entry = _usage_entry(
            record,
            subscription_id=quota.subscription_id,
            quota_id=quota.quota_id,
            uuid=quota.recurly_uuid,
            add_on=quota.add_on_code,
            size=size,
        )
        if entry is not None:
            ledger.record(entry)


def _check_window_setting(rt: Runtime, window: str, dry_run: bool) -> None:
    journal = rt.journal()
    previous = journal.get_link(*WINDOW_SETTING)
    if previous and previous != window:
        raise ConfigError(
            f"usage was reported in {previous} windows by this journal ({rt.settings.state.path}); "
            f"counting {window} windows now would bill the same traffic twice. Keep usage.window: {previous} "
            "(and no --window), or start a new journal and Recurly site"
        )
    if not previous and not dry_run:
        journal.set_link(*WINDOW_SETTING, window)


def report_usage(rt: Runtime, options: UsageOptions, *, run_id: int | None) -> CommandReport:
    return report_usage_with_watermarks(rt, options, run_id=run_id)[0]


def report_usage_with_watermarks(
    rt: Runtime, options: UsageOptions, *, run_id: int | None
) -> tuple[CommandReport, dict[tuple[str, str], datetime]]:
    """The report, and the watermark of each (subscription, quota) this run moved: planned on a dry run,
    stored otherwise (sync-subscriptions uses them to decide whether an ended subscription may end now)."""
    settings = rt.settings.usage
    window_name = options.window or settings.window
    size = WINDOW_SIZES[window_name]
    now = rt.clock()
    _check_window_setting(rt, window_name, options.dry_run)
    ledger = _Ledger(rt, options.dry_run)
    resolved = _resolve_open_intents(rt, ledger, size)

    source = build_source(rt.settings, rt.amplify() if settings.source == "traceability" else None, size)
    # A file says nothing about windows past its last row: counting them as zero would move the watermarks
    # past traffic a later file may bring, so the windows stop where the file does.
    span_end = getattr(source, "span", (None, None))[1]
    report_until = options.end if span_end is None else min(options.end or span_end, span_end)

    inputs = subscription_inputs(rt)
    matches = {**inputs.journal_links, **match_subscriptions(inputs, subscription_options(rt))}
    recurly_by_uuid = {r.uuid: r for r in inputs.recurly}
    earliest = options.start or (now - settings.max_backfill)
    journal = rt.journal()
    billed: list[BilledQuota] = []
    reasons: dict[tuple[str, str], str] = {}
    known_names: dict[str, str] = {}
    chosen = [s for s in inputs.amplify if options.only is None or s.id in options.only]
    created_here = journal.links(CREATED_LINK)
    looked_up = journal.links(LOOKED_UP_LINK)
    for subscription in chosen:
        plan = inputs.plans.get(subscription.plan_name)
        if plan is None:
            continue
        known_names[subscription.id] = subscription.name
        current = recurly_by_uuid.get(matches.get(subscription.id, ""))
        quota_ids = [q for q in plan.quota_add_ons]
        if current is None or current.activated_at is None:
            for quota_id in quota_ids:
                reasons[(subscription.id, quota_id)] = "the subscription has no live Recurly subscription"
            continue
        until = subscription.state_changed_at if ended_state(subscription) else None
        if current.expires_at is not None and (until is None or current.expires_at < until):
            until = current.expires_at
        for quota_id, add_on in sorted(plan.quota_add_ons.items()):
            if add_on not in current.add_on_codes:
                reasons[(subscription.id, quota_id)] = f"add-on {add_on} is not on Recurly subscription {current.uuid}"
                continue
            watermark = journal.usage_watermark(subscription.id, quota_id)
            pair = BilledQuota(subscription.id, subscription.name, quota_id, current.uuid, add_on, ())
            backfill = options.start is not None or options.end is not None
            windows = reportable_windows(
                size=size,
                now=now,
                settle_delay=settings.settle_delay,
                active_from=current.activated_at,
                active_until=until,
                since=None if backfill else watermark,
                earliest=earliest,
                until=report_until,
            )
            # First contact with a pair (or a lost journal): learn what Recurly already holds before posting.
            # Not needed when nothing is to be posted yet, nor for a subscription this journal created (all its
            # usage went through this journal's ledger): that keeps the first runs free of per-pair reads.
            known_key = f"{subscription.id}:{quota_id}:{current.uuid}"
            if (
                watermark is None
                and windows
                and created_here.get(subscription.id) != current.uuid
                and known_key not in looked_up
            ):
                _bootstrap(rt, ledger, pair, max(earliest, current.activated_at), size)
                if not options.dry_run:
                    # the ledger now holds what Recurly held, and every later post goes through an intent: a run
                    # killed before the watermark moves need not read this pair again
                    journal.set_link(LOOKED_UP_LINK, known_key, now.isoformat())
            recount: list[UsageWindow] = []
            if watermark is not None and not backfill:
                recount = [
                    w
                    for w in reportable_windows(
                        size=size,
                        now=now,
                        settle_delay=settings.settle_delay,
                        active_from=current.activated_at,
                        active_until=until,
                        since=None,
                        earliest=max(earliest, now - settings.lookback),
                        until=watermark,
                    )
                    if w.clip_end <= watermark
                ]
            billed.append(
                BilledQuota(
                    subscription.id, subscription.name, quota_id, current.uuid, add_on, tuple(windows), tuple(recount)
                )
            )
    # plan-level quotas without an add-on (unlimited, strict) are covered by the base price
    quotas_of = _plan_quotas(rt)
    for subscription in chosen:
        plan = inputs.plans.get(subscription.plan_name)
        if plan is not None:
            for covered in quotas_of.get(subscription.plan_name, ()):
                if covered not in plan.quota_add_ons:
                    reasons.setdefault(
                        (subscription.id, covered), "the quota has no usage add-on (the base price covers it)"
                    )

    ranges = sorted({(w.clip_start, w.clip_end) for q in billed for w in (*q.windows, *q.recount)})
    counts = source.counts(ranges) if ranges else {}
    billed_pairs = {(q.subscription_id, q.quota_id) for q in billed}
    if options.only is not None:
        # the ranges counted for the chosen subscriptions hold others' traffic too: not this run's to report
        counts = {r: {p: n for p, n in c.items() if p[0] in options.only} for r, c in counts.items()}
    findings = unbilled_findings(counts, billed_pairs, known_names, reasons, size)

    # Plan and apply in batches of pairs: a week of hourly usage for 10,000 subscriptions is ~100,000 changes,
    # and holding all of them (with their payloads) at once is what bounds the memory of a run. Counting stays
    # one query per window for everything (above); each batch keeps only slim results for the report.
    results: list[ChangeResult] = []
    moved: dict[tuple[str, str], datetime] = {}
    units = records = restated = 0
    stopped = False
    handlers = _usage_handlers(rt, size)
    for start in range(0, len(billed), USAGE_BATCH_PAIRS):
        batch = billed[start : start + USAGE_BATCH_PAIRS]
        views: dict[str, LedgerView] = {}
        for quota in batch:
            for window in (*quota.recount, *quota.windows):
                view = ledger.view(quota.subscription_id, quota.quota_id, window.start)
                if view is not None:
                    views[view.base_tag] = view
        usage_plan = plan_usage(batch, counts, views, now=now, skip_zero=settings.skip_zero)
        batch_results, note = execute(
            rt,
            ChangeSet.of("report-usage", list(usage_plan.changes)),
            dry_run=options.dry_run,
            force=options.force,
            destructive_verb="change",
            run_id=run_id,
            handlers=handlers,
        )
        stopped = stopped or note is not None
        moved.update(_advance_watermarks(rt, usage_plan.watermarks, batch_results, dry_run=options.dry_run))
        for r in batch_results:
            if r.outcome not in (Outcome.APPLIED, Outcome.PLANNED) or r.change.object != "usage":
                continue
            if r.change.kind is ChangeKind.POST:
                records += 1
                units += int(r.change.payload.get("amount", 0))
            elif r.change.kind is ChangeKind.RESTATE:
                restated += 1
                units += int(r.change.payload["new_total"]) - int(Decimal(str(r.change.payload["old_total"])))
        results.extend(_per_pair(batch_results))
    results.extend(ChangeResult(c, Outcome.REPORTED) for c in ChangeSet.of("report-usage", findings).changes)
    left = sum(1 for r in results if r.outcome is Outcome.SKIPPED)
    figures: dict[str, int | str] = {
        "units_reported": units,
        "records_reported": records,
        "restated": restated,
        "windows_counted": sum(len(q.windows) + len(q.recount) for q in billed),
        "count_queries": source.queries,
        "intents_resolved": resolved,
        "unbilled_units": sum(int(c.summary.split(" ", 1)[0]) for c in findings),
    }
    report = make_report(
        "report-usage",
        results,
        dry_run=options.dry_run,
        exit_code_flag=options.exit_code,
        note=f"stopped at --max-duration; {left} change(s) left for the next run" if stopped else None,
        figures=figures,
    )
    return report, moved


def _per_pair(results: list[ChangeResult]) -> list[ChangeResult]:
    """The report's view of a batch: posts summed per (subscription, quota) and outcome ("7 window(s), 1,234
    unit(s)"), each restatement, failure and skip on its own row. A week of hourly usage is ~100,000 posts; the
    journal's audit log keeps every one of them, the report keeps what an operator reads."""
    rows: list[ChangeResult] = []
    sums: dict[tuple[str, str, Outcome], tuple[ChangeResult, int, int]] = {}
    for r in results:
        change = r.change
        if change.kind is ChangeKind.POST and r.outcome in (Outcome.APPLIED, Outcome.PLANNED):
            pair = (str(change.payload["amplify_subscription_id"]), str(change.payload["quota_id"]), r.outcome)
            first, windows, units = sums.get(pair, (r, 0, 0))
            sums[pair] = (first, windows + 1, units + int(change.payload.get("amount", 0)))
        else:
            # payloads are for the handlers only (the report never shows them)
            rows.append(replace(r, change=replace(change, payload={})))
    for (subscription_id, quota_id, _outcome), (first, windows, units) in sums.items():
        summary = f"{windows} window(s), {units:,} unit(s)"
        change = replace(first.change, payload={}, summary=summary, key=f"{subscription_id}:{quota_id}")
        rows.append(replace(first, change=change, result_id=None))
    return rows


def _advance_watermarks(
    rt: Runtime,
    watermarks: Mapping[tuple[str, str], datetime],
    results: list[ChangeResult],
    *,
    dry_run: bool,
) -> dict[tuple[str, str], datetime]:
    """Move each pair's watermark past its windows once every change of that pair succeeded (real runs)."""
    if dry_run:
        return dict(watermarks)
    journal = rt.journal()
    failed_pairs = {
        (str(r.change.payload.get("amplify_subscription_id")), str(r.change.payload.get("quota_id")))
        for r in results
        if r.outcome in (Outcome.FAILED, Outcome.SKIPPED) and r.change.object == "usage"
    }
    moved: dict[tuple[str, str], datetime] = {}
    for (subscription_id, quota_id), mark in watermarks.items():
        if (subscription_id, quota_id) in failed_pairs:
            continue
        old = journal.usage_watermark(subscription_id, quota_id)
        if old is None or mark > old:
            journal.set_usage_watermark(subscription_id, quota_id, mark)
            moved[(subscription_id, quota_id)] = mark
    return moved


def _plan_quotas(rt: Runtime) -> dict[str, list[str]]:
    """Quota ids of every plan of the catalog, by plan name (one pass, not one per subscription)."""
    return {plan.name: [q.id for q in plan.quotas] for plan in rt.snapshots().amplify_catalog().snapshot.plans}


def _usage_handlers(rt: Runtime, size: timedelta) -> dict[str, Handler]:
    handlers = default_handlers(rt)
    journal_payload_keys = (
        "subscription_id",
        "add_on_id",
        "merchant_tag",
        "amount",
        "usage_timestamp",
        "amplify_subscription_id",
        "quota_id",
    )

    def post_record(change: Change, tag: str, amount: Decimal | int, kind: str) -> str | None:
        p = change.payload
        journal = rt.journal()
        intent_payload = {k: (str(p[k]) if k == "amount" else p[k]) for k in journal_payload_keys if k in p}
        intent_payload.update({"merchant_tag": tag, "amount": str(amount)})
        journal.begin_intent(tag, INTENT_KIND, intent_payload)
        body = {"amount": amount, "merchant_tag": tag, "usage_timestamp": p["usage_timestamp"]}
        def stored() -> Mapping[str, Any] | None:
            # DESIGN.md §4 step 4 within the run: a lost answer is resolved by merchant_tag, never by a resend
            records = rt.recurly().list_usage(
                p["subscription_id"],
                p["add_on_id"],
                {"billing_status": "all", "begin_time": p["usage_timestamp"], "end_time": p["usage_timestamp"]},
            )
            return next((r for r in records if r.get("merchant_tag") == tag), None)

        created = rt.recurly().create_usage(
            p["subscription_id"],
            p["add_on_id"],
            body,
            idempotency_key=idempotency_key(tag, "create"),
            already_stored=stored,
        )
        usage_id = str(created.get("id"))
        now = rt.clock()
        journal.record_usage(
            UsageLedgerEntry(
                merchant_tag=tag,
                subscription_id=str(p["amplify_subscription_id"]),
                quota_id=str(p["quota_id"]),
                window_start=p["window_start"],
                window_end=p["window_end"],
                recurly_subscription_id=str(p["subscription_id"]).removeprefix("uuid-"),
                add_on_code=str(p["add_on_id"]).removeprefix("code-"),
                amount=Decimal(amount),
                usage_id=usage_id,
                billed=False,
                kind=kind,
                base_tag=None if kind == "base" else str(p["merchant_tag"]),
                recorded_at=now,
                updated_at=now,
            )
        )
        journal.complete_intent(tag, usage_id)
        return usage_id

    def post(change: Change, key: str, done: Mapping[str, str | None]) -> str | None:
        return post_record(change, str(change.payload["merchant_tag"]), int(change.payload["amount"]), "base")

    def restate(change: Change, key: str, done: Mapping[str, str | None]) -> str | None:
        p = change.payload
        journal = rt.journal()
        entries = journal.usage_for_window(str(p["amplify_subscription_id"]), str(p["quota_id"]), p["window_start"])
        base = next((e for e in entries if e.kind == "base"), None)
        adjustments = sum(1 for e in entries if e.kind == "adjustment")
        record = rt.recurly().get_usage(base.usage_id) if base and base.usage_id else None
        billed = record is None or record.get("billed_at") is not None
        new_total = Decimal(p["new_total"])
        if base is not None and base.usage_id and record is not None and not billed and adjustments == 0:
            rt.recurly().update_usage(
                base.usage_id,
                {"amount": int(new_total)},
                idempotency_key=idempotency_key(f"{base.merchant_tag}={new_total}", "update"),
            )
            now = rt.clock()
            journal.record_usage(replace(base, amount=new_total, updated_at=now))
            return base.usage_id
        if base is not None and billed and not base.billed:
            journal.mark_billed(base.merchant_tag)
        old_total = sum((e.amount for e in entries), Decimal(0))
        difference = new_total - old_total
        if difference == 0:
            return base.usage_id if base else None
        tag = merchant_tag(str(p["amplify_subscription_id"]), str(p["quota_id"]), p["window_start"], adjustments + 1)
        return post_record(change, tag, int(difference), "adjustment")

    handlers["usage.post"] = post
    handlers["usage.restate"] = restate
    return handlers


__all__ = ["SUBSCRIPTION_LINK", "UsageOptions", "report_usage", "report_usage_with_watermarks"]
