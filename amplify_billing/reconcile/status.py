"""The status report, computed: what is linked, what drifted, what waits, and how usage compares.

"In step" means exactly: a run would write nothing and report nothing, no intent is open, and the usage
figures agree. The comparison of usage ends at the journal's watermark of each pair (the end of the
last window reported): later traffic is the unsettled tail that the next ``report-usage`` reports, not
drift.

Pure: ``build_status`` takes ``StatusInputs`` (already gathered) and the time, and returns a
``StatusReport`` of frozen sections of plain rows (text, whole numbers, nothing). No I/O, no clock; the
journal's record types are used for typing only. The report's shape lives in ``status_report``, the
comparison of usage in ``status_usage``; this module re-exports what callers need from both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from amplify_billing.acknowledge import Rule, finding_key
from amplify_billing.change_ids import change_ids
from amplify_billing.changes import REPORT_ONLY, Change, ChangeKind
from amplify_billing.errors import ExitCode
from amplify_billing.identity import account_code, plan_code
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.plans import CatalogSnapshot, PlanSyncOptions, RecurlyCatalog, diff_plans
from amplify_billing.reconcile.status_invoices import MeteredQuota, metered_section
from amplify_billing.reconcile.status_report import (
    DRIFT_COLUMNS,
    INTENT_COLUMNS,
    PLAN_COLUMNS,
    RUN_COLUMNS,
    SUBSCRIPTION_COLUMNS,
    USAGE_COLUMNS,
    DriftItem,
    Row,
    Section,
    SectionColumn,
    StatusCell,
    StatusReport,
    format_ts,
)
from amplify_billing.reconcile.status_scope import StatusFilter, acknowledge_drift, keeps_metered, scope_of
from amplify_billing.reconcile.status_usage import UsageFacts, UsageLine, UsageTarget, usage_line, usage_targets
from amplify_billing.reconcile.subscriptions import (
    END_HINT,
    LIVE_STATES,
    SubscriptionInputs,
    SubscriptionOptions,
    diff_subscriptions,
    ended_state,
    match_subscriptions,
)

if TYPE_CHECKING:
    from amplify_billing.journal import Intent, RunRecord

# The commands whose last run is shown, in the order ``run`` performs them (``run`` records each step
# under its own name, so there is no separate "run" entry to show).
COMMANDS = ("sync-plans", "link-accounts", "sync-subscriptions", "report-usage")

# Which command would act on a change of each area (shown in the "next" column of drift rows).
_FIXED_BY = {"plans": "sync-plans", "subscriptions": "sync-subscriptions", "usage": "report-usage"}

_OUTCOMES = {
    int(ExitCode.OK): "ok",
    int(ExitCode.PARTIAL_FAILURE): "some changes failed",
    int(ExitCode.CONFIG): "configuration error",
    int(ExitCode.UPSTREAM): "upstream unreachable or refused",
    int(ExitCode.REFUSED): "refused (safety valve) or pending",
    int(ExitCode.LOCKED): "lock held by another run",
    int(ExitCode.INTERRUPTED): "interrupted",
}


@dataclass(frozen=True)
class IntentFacts:
    intent: Intent
    # --verify only: True when Recurly holds the write (report-usage confirms it), False when it never
    # landed (report-usage abandons it and sends again), None when not looked up
    in_recurly: bool | None = None


@dataclass(frozen=True)
class StatusInputs:
    catalog: CatalogSnapshot
    recurly_catalog: RecurlyCatalog
    plan_options: PlanSyncOptions
    subscriptions: SubscriptionInputs
    subscription_options: SubscriptionOptions
    usage: tuple[UsageFacts, ...] = ()
    usage_gaps: tuple[DriftItem, ...] = ()
    intents: tuple[IntentFacts, ...] = ()
    runs: Mapping[str, RunRecord | None] = field(default_factory=dict)
    journal_path: str = ""
    journal_present: bool = True
    window: str = "daily"
    lookback: timedelta = timedelta(hours=72)
    verify: bool = False
    # --verify only: Amplify id -> Recurly uuid as Recurly alone says (custom field, account + plan)
    recurly_matches: Mapping[str, str] | None = None
    opted_in_products: int = 0
    # marketplace mode only (None otherwise: no section, no request): Amplify's metered units next to
    # Traceability's count of each subscription's latest period invoice (``status_invoices``)
    metered: tuple[MeteredQuota, ...] | None = None


# ---- drift ----------------------------------------------------------------------------------------


def _change_drift(area: str, change: Change) -> DriftItem:
    ids = change_ids(change)
    if change.kind is ChangeKind.WAITING:
        nxt = "waits"
    elif END_HINT in change.summary and ids.amplify_id:
        # the finding asks the operator to act: name the command that acts
        nxt = f"sync-subscriptions --end {ids.amplify_id}"
    elif change.kind in REPORT_ONLY:
        nxt = "by hand"
    else:
        nxt = _FIXED_BY[area]
    return DriftItem(
        area,
        change.kind.value,
        change.amplify,
        change.recurly,
        change.summary,
        nxt,
        amplify_id=ids.amplify_id,
        recurly_id=ids.recurly_uuid or ids.recurly_code,
        key=finding_key(change) if change.kind in REPORT_ONLY else f"{change.kind.value}:{change.key}",
        change=change,
    )


def orphans(subscriptions: SubscriptionInputs, options: SubscriptionOptions) -> list[DriftItem]:
    """Live Recurly subscriptions on our plans that no Amplify subscription claims.

    Claimed means: the journal links it, the Amplify side's link attribute names it, its custom field holds
    a listed Amplify id, or its (account, plan) is that of a listed Amplify subscription. Anything else
    is billed in Recurly for something Amplify does not know.
    """
    listed = {s.id for s in subscriptions.amplify}
    linked = set(subscriptions.journal_links.values())
    attributes = {s.attributes.get(options.link_attribute) for s in subscriptions.amplify}
    pairs: set[tuple[str, str]] = set()
    for s in subscriptions.amplify:
        plan = subscriptions.plans.get(s.plan_name)
        code = account_code(s, options.owner)
        if plan is not None and code is not None:
            pairs.add((code, plan.code))
    items: list[DriftItem] = []
    for r in sorted(subscriptions.recurly, key=lambda r: r.uuid):
        if r.state not in LIVE_STATES or r.uuid in linked or r.uuid in attributes:
            continue
        named = r.custom_fields.get(options.custom_field) if options.custom_field else None
        if named in listed or (r.account_code, r.plan_code) in pairs:
            continue
        why = (
            f"its custom field {options.custom_field} names Amplify subscription {named}, which Amplify does not list"
            if named
            else "no Amplify subscription matches it (by journal link, custom field or account and plan)"
        )
        items.append(
            DriftItem(
                "subscriptions",
                "orphan",
                "-",
                f"subscription {r.uuid} ({r.account_code} on {r.plan_code}, {r.state})",
                f"{why}; cancel it in Recurly if nobody should be billed for it",
                "by hand",
                recurly_id=r.uuid,
                key=f"orphan:{r.uuid}",
            )
        )
    return items


def _link_drift(subscriptions: SubscriptionInputs, recurly_matches: Mapping[str, str]) -> list[DriftItem]:
    """--verify: journal links that Recurly's own data (custom field, account and plan) contradicts."""
    names = {s.id: s.name for s in subscriptions.amplify}
    items = []
    for amplify_id, uuid in sorted(subscriptions.journal_links.items()):
        found = recurly_matches.get(amplify_id)
        if found is not None and found != uuid:
            items.append(
                DriftItem(
                    "journal",
                    "link",
                    f"subscription {names.get(amplify_id, '?')} ({amplify_id})",
                    f"subscription {found}",
                    f"the journal links it to Recurly subscription {uuid}, but Recurly's data points at {found}; "
                    "check both in Recurly, cancel the wrong one, then run sync-subscriptions",
                    "by hand",
                    amplify_id=amplify_id,
                    recurly_id=found,
                    key=f"link:{amplify_id}",
                )
            )
    return items


def _all_drift(
    inputs: StatusInputs, plan_changes: Sequence[Change], sub_changes: Sequence[Change], usage: Sequence[UsageLine]
) -> list[DriftItem]:
    """Everything out of step, in a stable order: plans, subscriptions, orphans, links, then usage."""
    drift: list[DriftItem] = [_change_drift("plans", c) for c in plan_changes]
    drift += [_change_drift("subscriptions", c) for c in sub_changes]
    drift += orphans(inputs.subscriptions, inputs.subscription_options)
    if inputs.recurly_matches is not None:
        drift += _link_drift(inputs.subscriptions, inputs.recurly_matches)
    drift += inputs.usage_gaps
    for line in usage:
        drift += line.drift
    return drift


# ---- rows -----------------------------------------------------------------------------------------


def _mentions(change: Change, *needles: str) -> bool:
    return any(n and (n in change.amplify or n in change.recurly or n in change.key) for n in needles)


def _status_of(changes: Iterable[Change]) -> str:
    kinds = sorted({c.kind.value for c in changes})
    return "in step" if not kinds else ", ".join(kinds)


def _plan_rows(inputs: StatusInputs, plan_changes: Sequence[Change]) -> list[Row]:
    """Every Amplify plan that is (or should be) in Recurly, then the active Recurly plans Amplify lacks."""
    prefix = inputs.plan_options.mapping.plan_code_prefix
    live = inputs.recurly_catalog.live_subscriptions_by_plan
    rows: list[Row] = []
    seen_codes: set[str] = set()
    for plan in sorted(inputs.catalog.plans, key=lambda p: (p.product_name, p.name)):
        code = plan_code(plan.id, prefix)
        have = inputs.recurly_catalog.plans.get(code)
        mine = [c for c in plan_changes if _mentions(c, plan.id, code)]
        if have is None and not mine:
            continue  # draft, free or archived and absent: nothing of it belongs in Recurly
        seen_codes.add(code)
        rows.append(
            (
                f"{plan.product_name}/{plan.name}",
                plan.state,
                code,
                have.state if have else "missing",
                len(have.add_ons) if have else 0,
                live.get(code, 0),
                _status_of(mine),
            )
        )
    for code, have in sorted(inputs.recurly_catalog.plans.items()):
        if code in seen_codes or have.state != "active":
            continue
        mine = [c for c in plan_changes if _mentions(c, code)]
        rows.append(
            ("(not in Amplify)", None, code, have.state, len(have.add_ons), live.get(code, 0), _status_of(mine))
        )
    return rows


def _amplify_state(s: AmplifySubscription) -> str:
    return f"{s.approval_state or '?'}/{s.state_name}" if s.state_name else (s.approval_state or "?")


def _subscription_status(changes: Sequence[Change], *, ended: bool) -> str:
    if not changes:
        return "ended" if ended else "in step"
    parts = []
    for change in changes:
        if change.kind in (ChangeKind.WAITING, ChangeKind.FINDING):
            parts.append(f"{change.kind.value}: {change.summary}")
        else:
            parts.append(change.kind.value)
    return "; ".join(parts)


def _subscription_rows(subs: SubscriptionInputs, matches: Mapping[str, str], changes: Sequence[Change]) -> list[Row]:
    """Each Amplify subscription on a linked plan, with its Recurly side."""
    by_uuid = {r.uuid: r for r in subs.recurly}
    rows: list[Row] = []
    for s in sorted(subs.amplify, key=lambda s: (s.plan_name, s.name, s.id)):
        if s.plan_name not in subs.plans:
            continue
        current = by_uuid.get(matches.get(s.id, ""))
        mine = [c for c in changes if _mentions(c, s.id)]
        rows.append(
            (
                s.name,
                s.id,
                s.plan_name,
                _amplify_state(s),
                current.account_code if current else None,
                current.uuid if current else None,
                current.state if current else None,
                _subscription_status(mine, ended=ended_state(s)),
            )
        )
    return rows


def run_row(command: str, run: RunRecord | None) -> Row:
    if run is None:
        return (command, None, None, None, None, "never run", "")
    if run.finished_at is None:
        outcome = "unfinished (running now, or killed)"
    else:
        outcome = _OUTCOMES.get(run.exit_code or 0, f"exit {run.exit_code}")
    totals: dict[str, int] = {}
    for key, value in run.counts.items():
        for suffix in ("applied", "failed", "skipped"):
            if key.endswith("_" + suffix) and isinstance(value, int):
                totals[suffix] = totals.get(suffix, 0) + value
    figures = [f"{k} {totals[k]}" for k in ("applied", "failed", "skipped") if totals.get(k)]
    if run.counts.get("units_reported"):
        figures.append(f"units {run.counts['units_reported']}")
    changes = ", ".join(figures) or "no changes"
    return (command, run.id, format_ts(run.started_at), format_ts(run.finished_at), run.exit_code, outcome, changes)


def intent_row(facts: IntentFacts) -> Row:
    i = facts.intent
    if facts.in_recurly is None:
        recurly = "not looked up (use --verify)"
    elif facts.in_recurly:
        recurly = "landed: the next report-usage confirms it"
    else:
        recurly = "not in Recurly: the next report-usage sends it again"
    return (i.key, i.kind, format_ts(i.created_at), i.run_id, recurly)


# ---- sections -------------------------------------------------------------------------------------


def _next(item: DriftItem) -> str:
    """What resolves the item; for an acknowledged one, its acknowledgement instead."""
    return item.next if item.acknowledged is None else f"{item.acknowledged.describe()} (else: {item.next})"


def _sections(
    inputs: StatusInputs, plans: Sequence[Row], subs: Sequence[Row], drift: Sequence[DriftItem], usage: Sequence[Row]
) -> tuple[Section, ...]:
    journal_note = "" if inputs.journal_present else f" (no journal at {inputs.journal_path} yet)"
    usage_title = f"Usage this billing period ({inputs.window} windows, compared through the last reported window)"
    return (
        Section("plans", "Plans", PLAN_COLUMNS, tuple(plans), empty="no opted-in plan is billed through Recurly"),
        Section(
            "subscriptions",
            "Subscriptions",
            SUBSCRIPTION_COLUMNS,
            tuple(subs),
            empty="no Amplify subscription on a linked plan",
            wide=frozenset({"amplify_id"}),
        ),
        Section(
            "drift",
            "Drift",
            DRIFT_COLUMNS,
            tuple((d.area, d.kind, d.amplify, d.recurly, d.detail, _next(d)) for d in drift),
            empty="none: both systems are in step",
        ),
        Section(
            "open_intents",
            "Open journal intents",
            INTENT_COLUMNS,
            tuple(intent_row(f) for f in inputs.intents),
            empty="none" + journal_note,
        ),
        Section("runs", "Last runs", RUN_COLUMNS, tuple(run_row(c, inputs.runs.get(c)) for c in COMMANDS)),
        Section(
            "usage",
            usage_title,
            USAGE_COLUMNS,
            tuple(usage),
            empty="no billed usage add-on on a live subscription",
            wide=frozenset({"amplify_id", "recurly_subscription", "add_on", "compared_from"}),
        ),
    ) + ((metered_section(inputs.metered),) if inputs.metered is not None else ())


def build_status(
    inputs: StatusInputs,
    now: datetime,
    *,
    rules: Sequence[Rule] = (),
    only: StatusFilter | None = None,
) -> StatusReport:
    """Everything the report shows, from data already gathered. Pure: no I/O, no clock.

    ``rules``: the acknowledged findings (``findings.acknowledge``); ``only``: the filters (``--subscription``…)."""
    plan_changes = diff_plans(inputs.catalog, inputs.recurly_catalog, inputs.plan_options).changes
    sub_changes = diff_subscriptions(inputs.subscriptions, inputs.subscription_options).changes
    usage_lines = [usage_line(f, inputs.lookback, inputs.verify) for f in inputs.usage]
    drift = acknowledge_drift(_all_drift(inputs, plan_changes, sub_changes, usage_lines), rules, now.date())

    subs = inputs.subscriptions
    matches = {**subs.journal_links, **match_subscriptions(subs, inputs.subscription_options)}
    plan_rows = _plan_rows(inputs, plan_changes)
    sub_rows = _subscription_rows(subs, matches, sub_changes)
    intents = list(inputs.intents)
    metered = inputs.metered
    if only is not None:
        prefix = inputs.plan_options.mapping.plan_code_prefix
        plan_ids = {p.id: plan_code(p.id, prefix) for p in inputs.catalog.plans}
        scope = scope_of(only, subs, matches, inputs.subscription_options, plan_ids)
        plan_rows = [row for row in plan_rows if row[2] in scope.plan_codes]
        sub_rows = [row for row in sub_rows if row[1] in scope.subscription_ids]
        drift = [d for d in drift if scope.keeps_drift(d)]
        usage_lines = [line for line in usage_lines if line.row[1] in scope.subscription_ids]
        intents = [i for i in intents if scope.keeps_text(i.intent.key)]
        if metered is not None:
            metered = tuple(m for m in metered if keeps_metered(only, m, prefix))
    linked_uuids = {r.uuid for r in subs.recurly}
    linked = sum(1 for row in sub_rows if row[5] in linked_uuids)
    counting = [d for d in drift if d.counts]
    summary = {
        "opted_in_products": inputs.opted_in_products,
        "plans_in_recurly": sum(1 for row in plan_rows if row[3] == "active"),
        "subscriptions_linked": linked,
        "subscriptions_not_linked": len(sub_rows) - linked,
        "drift": len(counting),
        "acknowledged": len(drift) - len(counting),
        "orphans": sum(1 for d in counting if d.kind == "orphan"),
        "open_intents": len(intents),
        "usage_pairs": len(usage_lines),
        "usage_differences": sum(1 for line in usage_lines if line.drift),
    }
    return StatusReport(
        generated_at=now,
        verified=inputs.verify,
        drift=tuple(drift),
        open_intents=len(intents),
        summary=summary,
        sections=_sections(
            replace(inputs, intents=tuple(intents), metered=metered),
            plan_rows,
            sub_rows,
            drift,
            [line.row for line in usage_lines],
        ),
        scope=only.describe() if only is not None else None,
    )


__all__ = [
    "COMMANDS",
    "DriftItem",
    "IntentFacts",
    "Section",
    "SectionColumn",
    "StatusCell",
    "StatusFilter",
    "StatusInputs",
    "StatusReport",
    "UsageFacts",
    "UsageTarget",
    "build_status",
    "format_ts",
    "orphans",
    "usage_targets",
]
