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
from dataclasses import dataclass, replace
from datetime import datetime

from amplify_billing.actions import AdvanceWatermark, PostUsage, SetSampleCursor, UpdateUsage
from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.changes import Change, ChangeKind, ChangeResult, ChangeSet, CommandReport, Outcome
from amplify_billing.collaborators import Listings, Phase, Reading, RecurlyAccess
from amplify_billing.errors import UpstreamError
from amplify_billing.execute import execute, make_report, record
from amplify_billing.gather.invoices import invoiced_subscriptions
from amplify_billing.gather.options import subscription_options
from amplify_billing.gather.subscriptions import reads_of, subscription_inputs
from amplify_billing.journal_changes import PHASE_MARKS, set_link
from amplify_billing.journal_changes import record as journal_record
from amplify_billing.links import ACTIVE_SINCE_LINK, CREATED_LINK, LOOKED_UP_LINK, STALE_MARK
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.billing_modes import withheld_finding
from amplify_billing.reconcile.subscriptions import RecurlySubscription, match_subscriptions
from amplify_billing.reconcile.usage import (
    BilledQuota,
    LedgerView,
    UsageRules,
    plan_usage,
    restatement_candidates,
    unbilled_findings,
)
from amplify_billing.usage.journal_check import SamplePair, check_sample
from amplify_billing.usage.ledger_reads import (
    UsageLedger,
    bootstrap,
    check_window_setting,
    resolve_open_intents,
)
from amplify_billing.usage.planning import Planner, UsageOptions, count_ranges, horizon
from amplify_billing.usage.remembered import RememberedCounts, RememberedUsage
from amplify_billing.usage.sources import RangeCount, build_source
from amplify_billing.usage.windows import (
    WINDOW_SIZES,
)

log = logging.getLogger(__name__)

COMMAND = "report-usage"

# (subscription, quota) pairs planned and applied together; bounds the changes held in memory at once
USAGE_BATCH_PAIRS = 1000
# a tier type we cannot read is treated as the strictest: no correction into a billed cycle is attempted
UNKNOWN_TIER_TYPE = "volume"

Pair = tuple[str, str]


def report_usage_with_watermarks(
    rt: Phase, options: UsageOptions, *, run_id: int | None
) -> tuple[CommandReport, dict[tuple[str, str], datetime]]:
    """The report, and the watermark of each (subscription, quota) this run moved: planned on a dry run,
    stored otherwise (sync-subscriptions uses them to decide whether an ended subscription may end now)."""
    settings = rt.settings.usage
    window_name = options.window or settings.window
    size = WINDOW_SIZES[window_name]
    now = rt.clock()
    ledger = UsageLedger(rt, recorder=lambda changes: record(rt, COMMAND, changes, run_id=run_id))
    ledger.pending += check_window_setting(rt, window_name)
    intents = resolve_open_intents(rt, ledger, size)
    ledger.flush()

    built = build_source(rt.settings, rt.amplify() if settings.source == "traceability" else None, size)
    source = RememberedCounts(built, rt.snapshots().remember)
    # A file says nothing about windows past its last row: counting them as zero would move the watermarks
    # past traffic a later file may bring, so the windows stop where the file does.
    span_end = getattr(source, "span", (None, None))[1]
    report_until = options.end if span_end is None else min(options.end or span_end, span_end)
    limit = horizon(rt, source, options, now)
    planner = Planner(rt, options, ledger, size, now, limit, report_until, intents.blocked)
    known_names = _collect_pairs(planner)
    # what the reads found (rows Recurly holds, the marks that they were read) is in the ledger before planning
    ledger.flush()

    answers = count_ranges(source, planner.billed, size)
    if options.only is not None:
        # the ranges counted for the chosen subscriptions hold others' traffic too: not this run's to report
        answers = {
            r: replace(a, counts={p: n for p, n in a.counts.items() if p[0] in options.only})
            for r, a in answers.items()
        }
    billed_pairs = {(q.subscription_id, q.quota_id) for q in planner.billed} | intents.blocked
    # marketplace mode: Amplify's invoices bill these subscriptions' traffic, so their units say so (issue 15)
    invoiced = {s.id: s.name for s in invoiced_subscriptions(rt)}
    findings = [
        *intents.stuck,
        *unbilled_findings(answers, billed_pairs, known_names, planner.reasons, size, invoiced=invoiced),
    ]
    findings.extend(withheld_finding(w) for w in planner.withheld)

    results, moved, figures, stopped = _plan_and_apply(rt, planner, answers, options, run_id)
    results.extend(ledger.results)
    results.extend(ChangeResult(c, Outcome.REPORTED) for c in ChangeSet.of("report-usage", findings).changes)
    left = sum(1 for r in results if r.outcome is Outcome.SKIPPED)
    reported_findings = [r.change for r in results if r.outcome is Outcome.REPORTED]
    figures.update(
        {
            "windows_counted": sum(len(q.windows) + len(q.recount) for q in planner.billed),
            "count_queries": source.queries,
            "intents_resolved": intents.resolved,
            "intents_stuck": len(intents.stuck),
            "unbilled_units": sum(c.units for c in reported_findings if c.units is not None and c.units > 0),
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


def _collect_pairs(planner: Planner) -> dict[str, str]:
    """Fills the planner's billed pairs and reasons; returns Amplify id -> name of the subscriptions on linked plans."""
    rt, options = planner.rt, planner.options
    inputs = subscription_inputs(reads_of(rt))
    planner.withheld = inputs.withheld
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


def _check_journal(planner: Planner, targets: list[_Target]) -> None:
    """A journal restored from a backup, or another host's, is behind what Recurly holds. A sample of
    pairs read from Recurly shows it (our tags its ledger does not know); then every pair is rebuilt from Recurly
    before anything is posted, and that stays so (a marker in the journal) until a run has rebuilt them all."""
    rt, journal = planner.rt, planner.rt.journal_view()
    settings = rt.settings
    planner.stale = bool(journal.get_link(*STALE_MARK))
    check = check_sample(
        journal,
        RememberedUsage(rt.recurly(), rt.snapshots().remember),
        [SamplePair(t.subscription.id, t.quota_id, t.current.uuid, t.add_on_code) for t in targets],
        settings.state.verify_sample,
        planner.now,
        lookback=settings.usage.lookback,
    )
    planner.sample_reads = check.reads
    if check.cursor is not None:
        cursor = SetSampleCursor(check.cursor)
        planner.ledger.pending.append(journal_record(cursor, f"the next stale check reads after {check.cursor}"))
    if check.stale:
        log.warning("%s", check.summary())
        planner.stale_note = check.summary()
        planner.stale = True
        planner.ledger.pending.append(set_link(*STALE_MARK, planner.now.isoformat(), about="journal.stale"))
    # at once: a run killed while rebuilding still knows, next time, that the journal was found stale (its sample
    # may not find the evidence again)
    planner.ledger.flush()


def _billed_quotas(planner: Planner, targets: list[_Target]) -> None:
    rt = planner.rt
    journal = rt.journal_view()
    created_here = journal.links(CREATED_LINK)
    looked_up = journal.links(LOOKED_UP_LINK)
    # an ended subscription's state no longer says when it became active: the journal kept it at the create
    active_since = journal.links(ACTIVE_SINCE_LINK)
    tier_types = _tier_types(rt)
    for target in targets:
        subscription, current = target.subscription, target.current
        if subscription.active_since is None and subscription.id in active_since:
            kept = parse_timestamp(active_since[subscription.id])
            subscription = replace(subscription, active_since=kept) if kept is not None else subscription
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
            bootstrap(rt, planner.ledger, quota, min(since, current.activated_at), planner.size)
            planner.rebuilt += 1
            # once the ledger holds what Recurly held (its rows come first), and every later post goes through
            # an intent, a run killed before the watermark moves need not read this pair again
            looked_up_now = set_link(LOOKED_UP_LINK, known_key, planner.now.isoformat(), phase=PHASE_MARKS)
            planner.ledger.pending.append(looked_up_now)
        planner.billed.append(quota)
    if planner.stale:
        # every pair is rebuilt (after the rows): the ledger is current again
        planner.ledger.pending.append(set_link(*STALE_MARK, "", about="journal.stale", phase=PHASE_MARKS))


def _tier_types(rt: Listings) -> dict[tuple[str, str], str]:
    """(plan code, add-on code) -> the add-on's tier type as Recurly holds it."""
    catalog = rt.snapshots().recurly_catalog()
    return {(code, a.code): a.tier_type for code, plan in catalog.plans.items() for a in plan.add_ons}


def _plan_and_apply(
    rt: Phase,
    planner: Planner,
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
        marks, moved_here = _advance_watermarks(rt, usage_plan.watermarks, batch_results)
        moved.update(moved_here)
        batch_results += record(rt, COMMAND, marks, run_id=run_id)
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


def _ledger_views(ledger: UsageLedger, batch: list[BilledQuota]) -> dict[str, LedgerView]:
    views: dict[str, LedgerView] = {}
    for quota in batch:
        for window in (*quota.recount, *quota.windows):
            view = ledger.view(quota.subscription_id, quota.quota_id, window.start)
            if view is not None:
                views[view.base_tag] = view
    return views


def _refresh_billed(rt: RecurlyAccess, views: dict[str, LedgerView], tags: list[str]) -> dict[str, LedgerView]:
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
        if (
            change.kind is ChangeKind.POST
            and isinstance(action, PostUsage)
            and r.outcome
            in (
                Outcome.APPLIED,
                Outcome.PLANNED,
            )
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
    rt: Reading, watermarks: Mapping[tuple[str, str], datetime], results: list[ChangeResult]
) -> tuple[list[Change], dict[Pair, datetime]]:
    """Move each pair's watermark past its windows once every change of that pair succeeded (or, planning, is
    planned): the changes that do it, and the marks they move."""
    journal = rt.journal_view()
    failed_pairs = {
        (action.record.amplify_subscription_id, action.record.quota_id)
        for r in results
        if r.outcome in (Outcome.FAILED, Outcome.SKIPPED)
        and isinstance(action := r.change.action, PostUsage | UpdateUsage)
    }
    changes: list[Change] = []
    moved: dict[Pair, datetime] = {}
    for (subscription_id, quota_id), mark in watermarks.items():
        if (subscription_id, quota_id) in failed_pairs:
            continue
        old = journal.usage_watermark(subscription_id, quota_id)
        if old is None or mark > old:
            action = AdvanceWatermark(subscription_id, quota_id, mark)
            about = f"subscription ({subscription_id}) quota {quota_id}"
            changes.append(journal_record(action, f"usage reported through {mark.isoformat()}", about=about))
            moved[(subscription_id, quota_id)] = mark
    return changes, moved


def _plan_quotas(rt: Listings) -> dict[str, list[str]]:
    """Quota ids of every plan of the catalog, by plan name (one pass, not one per subscription)."""
    return {plan.name: [q.id for q in plan.quotas] for plan in rt.snapshots().amplify_catalog().snapshot.plans}


__all__ = ["UsageOptions", "report_usage_with_watermarks"]
