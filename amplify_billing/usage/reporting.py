"""The usage phase (report-usage, and sync-subscriptions' final usage before an end): counted API traffic ->
Recurly usage records, exactly once (docs/architecture.md, "Where each rule lives").

Order of a run:
1. resolve open intents left by a killed run, one by one, by looking for their merchant_tag in Recurly; one whose
   lookup fails is stuck and holds back only its own (subscription, quota);
2. for each billed (subscription, quota) never seen by this journal, read what Recurly already holds
   (so a lost journal never causes a second post);
3. plan windows from each pair's watermark (plus the lookback for late traffic), from the moment the Amplify
   subscription became active; count them with one query per distinct range (the source proves each answer
   whole, or says which pairs it could not prove), compare with the ledger; windows older than the source can
   count are a finding, never skipped in silence;
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

from amplify_billing.actions import PostUsage, UpdateUsage
from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.changes import Change, ChangeKind, ChangeResult, ChangeSet, CommandReport, Outcome
from amplify_billing.errors import ConfigError, UpstreamError
from amplify_billing.execute import execute, make_report
from amplify_billing.gather.options import subscription_options
from amplify_billing.gather.subscriptions import GatherReads, subscription_inputs
from amplify_billing.journal import UsageLedgerEntry
from amplify_billing.links import CREATED_LINK, INTENT_KIND, LOOKED_UP_LINK, STALE_MARK, WINDOW_SETTING
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.subscriptions import RecurlySubscription, ended_state, match_subscriptions
from amplify_billing.reconcile.usage import (
    PHASE_REPORT,
    AgedOut,
    BilledQuota,
    LedgerView,
    UsageRules,
    plan_usage,
    restatement_candidates,
    unbilled_findings,
)
from amplify_billing.recurly.parse import money
from amplify_billing.runtime import Runtime
from amplify_billing.usage.journal_check import SamplePair, check_sample
from amplify_billing.usage.sources import Range, RangeCount, UsageSource, build_source
from amplify_billing.usage.windows import (
    WINDOW_SIZES,
    UsageWindow,
    merchant_tag,
    parse_merchant_tag,
    reportable_windows,
    window_ceil,
    window_floor,
)

log = logging.getLogger(__name__)

# (subscription, quota) pairs planned and applied together; bounds the changes held in memory at once
USAGE_BATCH_PAIRS = 1000
# a tier type we cannot read is treated as the strictest: no correction into a billed cycle is attempted
UNKNOWN_TIER_TYPE = "volume"

Pair = tuple[str, str]


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


def _usage_entry(
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
class _IntentResolution:
    resolved: int = 0
    stuck: list[Change] = field(default_factory=list)
    blocked: set[Pair] = field(default_factory=set)


def _resolve_open_intents(rt: Runtime, ledger: _Ledger, size: timedelta) -> _IntentResolution:
    """DESIGN.md §4 step 4: an intent left open by a killed run is looked up in Recurly before any resend.

    One by one: an intent whose lookup fails is reported as stuck and holds back only its own pair, so one bad
    record never stops the usage billing of every other subscription."""
    journal = rt.journal()
    outcome = _IntentResolution()
    for intent in journal.open_intents(INTENT_KIND):
        p = intent.payload
        when = str(p["usage_timestamp"])
        pair = (str(p["amplify_subscription_id"]), str(p["quota_id"]))
        try:
            records = rt.recurly().list_usage(
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
            entry = _usage_entry(
                found[0],
                subscription_id=pair[0],
                quota_id=pair[1],
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
        outcome.resolved += 1
    return outcome


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


@dataclass(frozen=True)
class _Horizon:
    """How far back this run may count, and why not further (for the finding)."""

    cutoff: datetime | None  # windows must start at or after it to be countable; None: no limit
    why: str


def _horizon(rt: Runtime, source: UsageSource, options: UsageOptions, now: datetime) -> _Horizon:
    settings = rt.settings.usage
    limits: list[tuple[datetime, str]] = []
    if source.retention is not None:
        limits.append(
            (
                now - source.retention,
                f"the usage source keeps {_days(source.retention)} of transactions (usage.retention); "
                "count them from another source (usage.source: file, with report-usage --from/--to)",
            )
        )
    max_backfill = settings.max_backfill
    if max_backfill is not None and options.start is None:
        limits.append(
            (
                now - max_backfill,
                f"older than usage.max_backfill ({_days(max_backfill)}); "
                "raise it, or backfill with report-usage --from/--to",
            )
        )
    span_start = getattr(source, "span", (None, None))[0]
    if span_start is not None:
        # a file holds what it holds: windows before its first row cannot be counted from it
        limits.append(
            (span_start, f"the usage file starts at {span_start.strftime('%Y-%m-%dT%H:%M:%SZ')}; add rows for them")
        )
    if not limits:
        return _Horizon(None, "")
    cutoff, why = max(limits, key=lambda limit: limit[0])
    return _Horizon(cutoff, why)


def _days(span: timedelta) -> str:
    return f"{span.days} days" if span % timedelta(days=1) == timedelta(0) else str(span)


@dataclass
class _Planner:
    """Builds the BilledQuota of every (subscription, quota) this run reports, and the reasons for the others."""

    rt: Runtime
    options: UsageOptions
    ledger: _Ledger
    size: timedelta
    now: datetime
    horizon: _Horizon
    report_until: datetime | None
    blocked: set[Pair]
    stale: bool = False
    stale_note: str | None = None
    sample_reads: int = 0
    rebuilt: int = 0
    billed: list[BilledQuota] = field(default_factory=list)
    reasons: dict[Pair, str] = field(default_factory=dict)

    def pair_windows(
        self, subscription: AmplifySubscription, current: RecurlySubscription, watermark: datetime | None
    ) -> tuple[list[UsageWindow], list[UsageWindow], AgedOut | None, list[UsageWindow]]:
        """New windows, re-count windows, the aged-out span and the before-billing-start windows of one pair."""
        settings = self.rt.settings.usage
        assert current.activated_at is not None
        # DESIGN.md §3: billing starts when the Amplify subscription became active, not when its Recurly
        # subscription was made (a subscription approved before the first run, or while cron was down)
        became_active = subscription.active_since or current.activated_at
        became_active = min(became_active, current.activated_at)
        report_mode = settings.before_billing_start == "report"
        active_from = current.activated_at if report_mode else became_active
        until = subscription.state_changed_at if ended_state(subscription) else None
        if current.expires_at is not None and (until is None or current.expires_at < until):
            until = current.expires_at
        backfill = self.options.start is not None or self.options.end is not None
        since = None if backfill else watermark
        floor = self.options.start or became_active
        cutoff = self.horizon.cutoff
        earliest = floor if cutoff is None else max(floor, cutoff)

        def windows(start: datetime, earliest: datetime, since: datetime | None) -> list[UsageWindow]:
            return reportable_windows(
                size=self.size,
                now=self.now,
                settle_delay=settings.settle_delay,
                active_from=start,
                active_until=until,
                since=since,
                earliest=earliest,
                until=self.report_until,
            )

        countable = [w for w in windows(active_from, earliest, since) if cutoff is None or w.clip_start >= cutoff]
        aged = self._aged_out(active_from, since, until, cutoff)
        before: list[UsageWindow] = []
        if report_mode and became_active < current.activated_at:
            before = [
                w
                for w in windows(became_active, earliest, since)
                if w.clip_start < current.activated_at and (cutoff is None or w.clip_start >= cutoff)
            ]
            before = [replace(w, clip_end=min(w.clip_end, current.activated_at)) for w in before]
        recount: list[UsageWindow] = []
        if watermark is not None and not backfill:
            back = self.now - settings.lookback
            recount = [
                w
                for w in windows(active_from, max(earliest, back), None)
                if w.clip_end <= watermark and (cutoff is None or w.clip_start >= cutoff)
            ]
        return countable, recount, aged, before

    def _aged_out(
        self, active_from: datetime, since: datetime | None, until: datetime | None, cutoff: datetime | None
    ) -> AgedOut | None:
        """The span this pair should have counted but can no longer: from where counting would begin to the first
        countable window (a window that starts before the cutoff has lost some of its transactions)."""
        if cutoff is None:
            return None
        start = max(active_from, since) if since is not None else active_from
        if self.options.start is not None:
            start = max(start, self.options.start)
        boundary = window_ceil(cutoff, self.size)
        end = min(boundary, until) if until is not None else boundary
        settled = self.now - self.rt.settings.usage.settle_delay
        end = min(end, settled)
        if start >= end:
            return None
        first = start - (start - datetime(1970, 1, 1, tzinfo=start.tzinfo)) % self.size
        count = -((first - end) // self.size)
        return AgedOut(start, end, count, self.horizon.why)


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
    intents = _resolve_open_intents(rt, ledger, size)

    source = build_source(rt.settings, rt.amplify() if settings.source == "traceability" else None, size)
    # A file says nothing about windows past its last row: counting them as zero would move the watermarks
    # past traffic a later file may bring, so the windows stop where the file does.
    span_end = getattr(source, "span", (None, None))[1]
    report_until = options.end if span_end is None else min(options.end or span_end, span_end)
    horizon = _horizon(rt, source, options, now)
    planner = _Planner(rt, options, ledger, size, now, horizon, report_until, intents.blocked)
    known_names = _collect_pairs(planner)

    answers = _count(source, planner.billed, size)
    if options.only is not None:
        # the ranges counted for the chosen subscriptions hold others' traffic too: not this run's to report
        answers = {
            r: replace(a, counts={p: n for p, n in a.counts.items() if p[0] in options.only})
            for r, a in answers.items()
        }
    billed_pairs = {(q.subscription_id, q.quota_id) for q in planner.billed} | intents.blocked
    findings = [*intents.stuck, *unbilled_findings(answers, billed_pairs, known_names, planner.reasons, size)]

    results, moved, figures, stopped = _plan_and_apply(rt, planner, answers, options, run_id)
    results.extend(ChangeResult(c, Outcome.REPORTED) for c in ChangeSet.of("report-usage", findings).changes)
    left = sum(1 for r in results if r.outcome is Outcome.SKIPPED)
    reported_findings = [r.change for r in results if r.outcome is Outcome.REPORTED]
    figures.update(
        {
            "windows_counted": sum(len(q.windows) + len(q.recount) for q in planner.billed),
            "count_queries": source.queries,
            "intents_resolved": intents.resolved,
            "intents_stuck": len(intents.stuck),
            "unbilled_units": sum(
                c.units for c in reported_findings if c.units is not None and c.units > 0
            ),
            "withheld_findings": sum(1 for c in reported_findings if c.withholds),
            "journal_sample_reads": planner.sample_reads,
            "pairs_read_from_recurly": planner.rebuilt,
        }
    )
    notes = [planner.stale_note] if planner.stale_note else []
    if stopped:
        notes.append(f"stopped at --max-duration; {left} change(s) left for the next run")
    report = make_report(
        "report-usage",
        results,
        dry_run=options.dry_run,
        exit_code_flag=options.exit_code,
        note="; ".join(notes) or None,
        figures=figures,
    )
    return report, moved


def _ranges_of(quota: BilledQuota) -> list[tuple[datetime, datetime]]:
    return [(w.clip_start, w.clip_end) for w in (*quota.windows, *quota.recount, *quota.before_start)]


def _count(source: UsageSource, billed: list[BilledQuota], size: timedelta) -> dict[Range, RangeCount]:
    """Every range the plan needs, counted with as few queries as proof allows.

    A subscription that became active inside a window needs that window from its activation: a range of its own,
    one more query per new subscription. Most such windows are quiet, and the whole aligned window proves it: where
    the whole window's answer is proven and holds nothing for the subscriptions that start inside it, their part of
    it holds nothing either, and it is not asked for."""
    wanted: dict[Range, set[str]] = {}
    for quota in billed:
        for span in _ranges_of(quota):
            wanted.setdefault(span, set()).add(quota.subscription_id)
    if not wanted:
        return {}
    population = sorted({q.subscription_id for q in billed})
    clipped = {
        span for span in wanted if span[0] != window_floor(span[0], size) and span[1] == _aligned_end(span, size)
    }
    aligned = {(window_floor(start, size), end) for start, end in clipped}
    answers = source.counts(sorted((set(wanted) - clipped) | aligned), population)
    left = []
    for span in sorted(clipped):
        whole = answers.get((window_floor(span[0], size), span[1]))
        starting = wanted[span]
        if whole is not None and whole.whole and not any(n and p[0] in starting for p, n in whole.counts.items()):
            answers[span] = RangeCount({}, whole=True)
        else:
            left.append(span)
    if left:
        answers.update(source.counts(left, population))
    return answers


def _aligned_end(span: Range, size: timedelta) -> datetime:
    return window_floor(span[0], size) + size


@dataclass(frozen=True)
class _Target:
    """A (subscription, quota) billed through a usage add-on on a live Recurly subscription."""

    subscription: AmplifySubscription
    current: RecurlySubscription
    plan_code: str
    quota_id: str
    add_on_code: str

    @property
    def recurly_uuid(self) -> str:
        return self.current.uuid

    @property
    def subscription_id(self) -> str:
        return self.subscription.id


def _collect_pairs(planner: _Planner) -> dict[str, str]:
    """Fills the planner's billed pairs and reasons; returns Amplify id -> name of the subscriptions on linked plans."""
    rt, options = planner.rt, planner.options
    inputs = subscription_inputs(GatherReads(rt.settings, rt.snapshots(), rt.journal(), rt.clock))
    matches = {**inputs.journal_links, **match_subscriptions(inputs, subscription_options(rt.settings))}
    recurly_by_uuid = {r.uuid: r for r in inputs.recurly}
    known_names: dict[str, str] = {}
    chosen = [s for s in inputs.amplify if options.only is None or s.id in options.only]
    targets: list[_Target] = []
    for subscription in chosen:
        plan = inputs.plans.get(subscription.plan_name)
        if plan is None:
            continue
        known_names[subscription.id] = subscription.name
        current = recurly_by_uuid.get(matches.get(subscription.id, ""))
        if current is None or current.activated_at is None:
            for quota_id in plan.quota_add_ons:
                planner.reasons[(subscription.id, quota_id)] = "the subscription has no live Recurly subscription"
            continue
        for quota_id, add_on in sorted(plan.quota_add_ons.items()):
            if add_on not in current.add_on_codes:
                why = f"add-on {add_on} is not on Recurly subscription {current.uuid}"
                planner.reasons[(subscription.id, quota_id)] = why
            elif (subscription.id, quota_id) not in planner.blocked:  # a stuck intent holds it back (see its finding)
                targets.append(_Target(subscription, current, plan.code, quota_id, add_on))
    if options.only is None:
        _check_journal(planner, targets)
    _billed_quotas(planner, targets)
    # plan-level quotas without an add-on (unlimited, strict) are covered by the base price
    quotas_of = _plan_quotas(rt)
    for subscription in chosen:
        plan = inputs.plans.get(subscription.plan_name)
        if plan is not None:
            for covered in quotas_of.get(subscription.plan_name, ()):
                if covered not in plan.quota_add_ons:
                    planner.reasons.setdefault(
                        (subscription.id, covered), "the quota has no usage add-on (the base price covers it)"
                    )
    return known_names


def _check_journal(planner: _Planner, targets: list[_Target]) -> None:
    """DESIGN.md §5: a journal restored from a backup, or another host's, is behind what Recurly holds. A sample of
    pairs read from Recurly shows it (our tags its ledger does not know); then every pair is rebuilt from Recurly
    before anything is posted, and that stays so (a marker in the journal) until a run has rebuilt them all."""
    rt, journal = planner.rt, planner.rt.journal()
    settings = rt.settings
    planner.stale = bool(journal.get_link(*STALE_MARK))
    check = check_sample(
        journal,
        rt.recurly(),
        [SamplePair(t.subscription.id, t.quota_id, t.current.uuid, t.add_on_code) for t in targets],
        settings.state.verify_sample,
        planner.now,
        lookback=settings.usage.lookback,
        remember=not planner.options.dry_run,
    )
    planner.sample_reads = check.reads
    if check.stale:
        log.warning("%s", check.summary())
        planner.stale_note = check.summary()
        planner.stale = True
        if not planner.options.dry_run:
            journal.set_link(*STALE_MARK, planner.now.isoformat())


def _billed_quotas(planner: _Planner, targets: list[_Target]) -> None:
    rt, options = planner.rt, planner.options
    journal = rt.journal()
    created_here = journal.links(CREATED_LINK)
    looked_up = journal.links(LOOKED_UP_LINK)
    tier_types = _tier_types(rt)
    for target in targets:
        subscription, current = target.subscription, target.current
        quota_id, add_on = target.quota_id, target.add_on_code
        assert current.activated_at is not None
        watermark = journal.usage_watermark(subscription.id, quota_id)
        windows, recount, aged, before = planner.pair_windows(subscription, current, watermark)
        quota = BilledQuota(
            subscription.id,
            subscription.name,
            quota_id,
            current.uuid,
            add_on,
            tuple(windows),
            tuple(recount),
            billing_start=current.activated_at,
            tier_type=tier_types.get((target.plan_code, add_on), UNKNOWN_TIER_TYPE),
            before_start=tuple(before),
            aged_out=aged,
        )
        # First contact with a pair (or a lost journal): learn what Recurly already holds before posting.
        # Not needed when nothing is to be posted yet, nor for a subscription this journal created (all its
        # usage went through this journal's ledger): that keeps the first runs free of per-pair reads.
        # A stale journal reads every pair that has windows to plan, whatever it remembers.
        known_key = f"{subscription.id}:{quota_id}:{current.uuid}"
        first_contact = (
            watermark is None and bool(windows) and created_here.get(subscription.id) != current.uuid
        ) and known_key not in looked_up
        if first_contact or (planner.stale and (windows or recount)):
            since = min((w.clip_start for w in (*windows, *recount)), default=current.activated_at)
            _bootstrap(rt, planner.ledger, quota, min(since, current.activated_at), planner.size)
            planner.rebuilt += 1
            if not options.dry_run:
                # the ledger now holds what Recurly held, and every later post goes through an intent: a run
                # killed before the watermark moves need not read this pair again
                journal.set_link(LOOKED_UP_LINK, known_key, planner.now.isoformat())
        planner.billed.append(quota)
    if planner.stale and not options.dry_run:
        journal.set_link(*STALE_MARK, "")  # every pair is rebuilt: the ledger is current again


def _tier_types(rt: Runtime) -> dict[tuple[str, str], str]:
    """(plan code, add-on code) -> the add-on's tier type as Recurly holds it."""
    catalog = rt.snapshots().recurly_catalog()
    return {(code, a.code): a.tier_type for code, plan in catalog.plans.items() for a in plan.add_ons}


def _plan_and_apply(
    rt: Runtime,
    planner: _Planner,
    answers: Mapping[tuple[datetime, datetime], RangeCount],
    options: UsageOptions,
    run_id: int | None,
) -> tuple[list[ChangeResult], dict[Pair, datetime], dict[str, int | str], bool]:
    """Plan and apply in batches of pairs: a week of hourly usage for 10,000 subscriptions is ~100,000 changes,
    and holding all of them (with their payloads) at once is what bounds the memory of a run. Counting stays
    one query per window for everything (above); each batch keeps only slim results for the report."""
    settings = rt.settings.usage
    rules = UsageRules(skip_zero=settings.skip_zero, allow_downward=settings.allow_downward_restatement)
    results: list[ChangeResult] = []
    moved: dict[Pair, datetime] = {}
    units = records = restated = 0
    stopped = False
    billed = planner.billed
    for start in range(0, len(billed), USAGE_BATCH_PAIRS):
        batch = billed[start : start + USAGE_BATCH_PAIRS]
        views = _ledger_views(planner.ledger, batch)
        views = _refresh_billed(rt, views, restatement_candidates(batch, answers, views))
        usage_plan = plan_usage(batch, answers, views, now=planner.now, rules=rules)
        batch_results, note = execute(
            rt,
            ChangeSet.of("report-usage", list(usage_plan.changes)),
            dry_run=options.dry_run,
            force=options.force,
            run_id=run_id,
        )
        stopped = stopped or note is not None
        moved.update(_advance_watermarks(rt, usage_plan.watermarks, batch_results, dry_run=options.dry_run))
        for r in batch_results:
            action = r.change.action
            if r.outcome not in (Outcome.APPLIED, Outcome.PLANNED):
                continue
            if isinstance(action, UpdateUsage):
                restated += 1
                units += action.amount - action.old_total
            elif isinstance(action, PostUsage):
                units += action.amount
                if r.change.kind is ChangeKind.POST:
                    records += 1
                else:
                    restated += 1
        results.extend(_per_pair(batch_results))
    figures: dict[str, int | str] = {"units_reported": units, "records_reported": records, "restated": restated}
    return results, moved, figures, stopped


def _ledger_views(ledger: _Ledger, batch: list[BilledQuota]) -> dict[str, LedgerView]:
    views: dict[str, LedgerView] = {}
    for quota in batch:
        for window in (*quota.recount, *quota.windows):
            view = ledger.view(quota.subscription_id, quota.quota_id, window.start)
            if view is not None:
                views[view.base_tag] = view
    return views


def _refresh_billed(rt: Runtime, views: dict[str, LedgerView], tags: list[str]) -> dict[str, LedgerView]:
    """Whether a window's record is billed decides its restatement (in place or an adjustment), so it is read from
    Recurly before planning, never assumed from the journal (a record is billed when its cycle is invoiced)."""
    for tag in tags:
        view = views[tag]
        if view.billed or view.probe_usage_id is None:
            continue
        try:
            record = rt.recurly().get_usage(view.probe_usage_id)
        except UpstreamError as error:
            views[tag] = replace(view, unreadable=f"cannot read usage {view.probe_usage_id} in Recurly ({error})")
            continue
        if record.get("billed_at") is not None:
            views[tag] = replace(view, billed=True)
    return views


def _per_pair(results: list[ChangeResult]) -> list[ChangeResult]:
    """The report's view of a batch: posts summed per (subscription, quota) and outcome ("7 record(s), 1,234
    unit(s)"), each restatement, failure and skip on its own row. A week of hourly usage is ~100,000 posts; the
    journal's audit log keeps every one of them, the report keeps what an operator reads (no actions)."""
    rows: list[ChangeResult] = []
    sums: dict[tuple[str, str, Outcome], tuple[ChangeResult, int, int]] = {}
    for r in results:
        change, action = r.change, r.change.action
        if change.kind is ChangeKind.POST and isinstance(action, PostUsage) and r.outcome in (
            Outcome.APPLIED,
            Outcome.PLANNED,
        ):
            pair = (action.record.amplify_subscription_id, action.record.quota_id, r.outcome)
            first, windows, units = sums.get(pair, (r, 0, 0))
            sums[pair] = (first, windows + 1, units + action.amount)
        else:
            rows.append(replace(r, change=replace(change, action=None)))
    for (subscription_id, quota_id, _outcome), (first, windows, units) in sums.items():
        summary = f"{windows} record(s), {units:,} unit(s)"
        change = replace(first.change, action=None, summary=summary, key=f"{subscription_id}:{quota_id}")
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
        (action.record.amplify_subscription_id, action.record.quota_id)
        for r in results
        if r.outcome in (Outcome.FAILED, Outcome.SKIPPED)
        and isinstance(action := r.change.action, PostUsage | UpdateUsage)
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


__all__ = ["UsageOptions", "report_usage_with_watermarks"]
