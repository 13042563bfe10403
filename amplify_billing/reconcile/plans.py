"""sync-plans diff: the Amplify catalog snapshot and the Recurly catalog in, a ChangeSet out. Pure.

One step per decision: what cannot be read (reported, and its Recurly plan kept), each Amplify plan (the Recurly
plan it must be: created, or brought in line by ``plan_updates``, then linked), the measured units those plans
use, and the Recurly plans no longer needed (``plan_deactivation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from amplify_billing.actions import Action, CreateMeasuredUnit, CreatePlan, SetAttributes, UpdateMeasuredUnit
from amplify_billing.amplify import literals
from amplify_billing.amplify.parse import ParseProblem
from amplify_billing.changes import Change, ChangeKind, ChangeSet
from amplify_billing.models import ProductPlan, RecurlyPlan
from amplify_billing.reconcile.plan_deactivation import deactivations
from amplify_billing.reconcile.plan_inputs import (
    PHASE_ADD_ONS,
    PHASE_DEACTIVATE,
    PHASE_LINKS,
    PHASE_PLANS,
    PHASE_REPORT,
    PHASE_UNITS,
    CatalogSnapshot,
    PlanSyncOptions,
    RecurlyCatalog,
    mapping_for,
    plan_ref,
)
from amplify_billing.reconcile.plan_mapping import (
    Unsupported,
    add_on_code,
    desired_plan,
    plan_code,
    unit_display_name,
)
from amplify_billing.reconcile.plan_updates import active_plan_changes

# the inputs moved to plan_inputs (shared with the steps); importers keep naming them from here
__all__ = [
    "PHASE_ADD_ONS",
    "PHASE_DEACTIVATE",
    "PHASE_LINKS",
    "PHASE_PLANS",
    "PHASE_REPORT",
    "PHASE_UNITS",
    "CatalogSnapshot",
    "PlanSyncOptions",
    "RecurlyCatalog",
    "diff_plans",
]


@dataclass(frozen=True)
class _PlanOutcome:
    """One Amplify plan's part of the diff, and what it leaves for the catalog-wide steps."""

    changes: tuple[Change, ...] = ()
    kept_code: str | None = None  # the Recurly plan it still needs: never deactivated
    units: Mapping[str, str] = field(default_factory=dict)  # measured unit name -> display name


def diff_plans(amplify: CatalogSnapshot, recurly: RecurlyCatalog, options: PlanSyncOptions) -> ChangeSet:
    changes = [_unreadable_in_amplify(problem) for problem in amplify.problems]
    changes.extend(_unreadable_in_recurly(amplify, recurly, options))
    kept_codes: set[str] = set(recurly.unparsed)  # never touched until they read correctly
    wanted_units: dict[str, str] = {}
    for plan in sorted(amplify.plans, key=lambda p: p.id):
        outcome = _plan_outcome(plan, amplify, recurly, options)
        changes.extend(outcome.changes)
        if outcome.kept_code is not None:
            kept_codes.add(outcome.kept_code)
        wanted_units.update(outcome.units)
    changes.extend(_unit_changes(wanted_units, recurly))
    changes.extend(deactivations(amplify, recurly, options, kept_codes))
    # the valve's denominator: every active plan under our prefix is one a deactivation could hit
    active = sum(1 for have in recurly.plans.values() if have.state == "active")
    return ChangeSet.of("sync-plans", changes, linked_count=active)


def _unreadable_in_amplify(problem: ParseProblem) -> Change:
    return Change(
        ChangeKind.UNSUPPORTED if problem.kind in ("productplan", "quota") else ChangeKind.FINDING,
        problem.kind,
        problem.name,
        "-",
        f"cannot read the Amplify resource: {problem.reason}",
        phase=PHASE_REPORT,
        key=problem.name,
    )


def _unreadable_in_recurly(amplify: CatalogSnapshot, recurly: RecurlyCatalog, options: PlanSyncOptions) -> list[Change]:
    refs = {plan_code(p.id, options.mapping): plan_ref(p) for p in amplify.plans}
    return [
        Change(
            ChangeKind.FINDING,
            "plan",
            refs.get(code, "-"),
            f"plan {code}",
            f"cannot read the Recurly plan: {reason}; nothing is changed for it until it reads correctly "
            "(check it in the Recurly admin UI)",
            phase=PHASE_REPORT,
            key=code,
        )
        for code, reason in sorted(recurly.unparsed.items())
    ]


def _plan_outcome(
    plan: ProductPlan, amplify: CatalogSnapshot, recurly: RecurlyCatalog, options: PlanSyncOptions
) -> _PlanOutcome:
    """Whether the plan belongs in Recurly at all, and if so the changes that make Recurly hold it."""
    ref = plan_ref(plan)
    code = plan_code(plan.id, options.mapping)
    if plan.state not in literals.PLAN_STATES:
        finding = Change(
            ChangeKind.FINDING,
            "plan",
            ref,
            "-",
            f"unknown plan state {plan.state!r}; left as it is in Recurly",
            phase=PHASE_REPORT,
            key=ref,
        )
        return _PlanOutcome((finding,), kept_code=code)  # an unknown state never deactivates anything
    if plan.state not in literals.PLAN_STATES_IN_RECURLY:
        # a draft is ignored: neither synced nor deactivated; an archived plan is left to plan_deactivation
        return _PlanOutcome(kept_code=code if plan.state == "draft" else None)
    if plan.type == "free" and not options.sync_free_plans:
        return _PlanOutcome()
    want = desired_plan(plan, amplify.units, mapping_for(options, recurly))
    if isinstance(want, Unsupported):
        unsupported = Change(ChangeKind.UNSUPPORTED, "plan", ref, "-", want.reason, phase=PHASE_REPORT, key=ref)
        return _PlanOutcome((unsupported,), kept_code=code)
    if want.code in recurly.unparsed:
        return _PlanOutcome(kept_code=want.code)  # reported with the unreadable Recurly plans
    units = {
        a.measured_unit_name: unit_display_name(amplify.units.get(a.measured_unit_name), a.measured_unit_name)
        for a in want.add_ons
    }
    return _PlanOutcome(tuple(_recurly_plan_changes(plan, want, recurly, options)), want.code, units)


def _recurly_plan_changes(
    plan: ProductPlan, want: RecurlyPlan, recurly: RecurlyCatalog, options: PlanSyncOptions
) -> list[Change]:
    """Create the Recurly plan or bring it in line, then link the Amplify plan and quotas to it."""
    have = recurly.plans.get(want.code)
    if have is None:
        changes = [_create_plan(plan, want)]
    elif have.state != "active":
        return [
            Change(
                ChangeKind.FINDING,
                "plan",
                plan_ref(plan),
                f"plan {want.code}",
                "the Recurly plan was removed (inactive) but the Amplify plan is live; Recurly's API cannot "
                "restore it: restore it in the Recurly admin UI, then run again",
                phase=PHASE_REPORT,
                key=want.code,
            )
        ]  # nothing to link to until it is restored
    else:
        changes = active_plan_changes(plan, want, have)
    return changes + _link_changes(plan, want, options)


def _create_plan(plan: ProductPlan, want: RecurlyPlan) -> Change:
    return Change(
        ChangeKind.CREATE,
        "plan",
        plan_ref(plan),
        f"plan {want.code}",
        f"create {want.name!r} {want.unit_amount} {want.currency} every {want.interval_length} month(s)"
        + (f" with {len(want.add_ons)} usage add-on(s)" if want.add_ons else ""),
        action=CreatePlan(want),
        amplify_id=plan.id,
        recurly_id=want.code,
        phase=PHASE_PLANS,
        key=want.code,
        # a plan is created with its add-ons, whose measured units must exist first
        requires=tuple(sorted({f"unit:{a.measured_unit_name}" for a in want.add_ons})),
    )


def _link_changes(plan: ProductPlan, want: RecurlyPlan, options: PlanSyncOptions) -> list[Change]:
    """The attributes that name the Recurly plan and add-ons on the Amplify plan and its billed quotas; they
    require the Recurly objects, which exist once the earlier phases have run."""
    ref = plan_ref(plan)
    changes: list[Change] = []
    if plan.attributes.get(options.plan_link_attribute) != want.code:
        changes.append(
            _link(
                "productplan",
                ref,
                f"plan {want.code}",
                plan.raw,
                options.plan_link_attribute,
                want.code,
                (want.code,),
            )
        )
    billed = {a.code for a in want.add_ons}
    for quota in plan.quotas:
        code = add_on_code(quota.id, options.mapping)
        if code in billed and quota.attributes.get(options.quota_link_attribute) != code:
            changes.append(
                _link(
                    "quota",
                    f"{ref} quota {quota.name} ({quota.id})",
                    f"add-on {want.code}/{code}",
                    quota.raw,
                    options.quota_link_attribute,
                    code,
                    (want.code, f"{want.code}/{code}"),
                )
            )
    return changes


def _link(
    resource_kind: str,
    ref: str,
    recurly: str,
    raw: Mapping[str, object],
    attribute: str,
    value: str,
    requires: tuple[str, ...],
) -> Change:
    return Change(
        kind=ChangeKind.LINK,
        object=resource_kind,
        amplify=ref,
        recurly=recurly,
        summary=f"set attribute {attribute}={value}",
        action=SetAttributes(resource=raw, attributes={attribute: value}),
        phase=PHASE_LINKS,
        key=ref,
        requires=requires,
    )


def _unit_changes(wanted_units: Mapping[str, str], recurly: RecurlyCatalog) -> list[Change]:
    """Each measured unit a synced add-on uses: created, or its display name brought in line."""
    changes: list[Change] = []
    for name, display in sorted(wanted_units.items()):
        current = recurly.measured_units.get(name)
        action: Action
        if current is None:
            kind, action = ChangeKind.CREATE, CreateMeasuredUnit(name, display)
            summary = f"create measured unit {display!r}"
        elif current.display_name != display:
            kind, action = ChangeKind.UPDATE, UpdateMeasuredUnit(name, display)
            summary = f"display name {current.display_name!r} → {display!r}"
        else:
            continue
        changes.append(
            Change(
                kind,
                "measured_unit",
                f"unit {name}",
                f"measured unit {name}",
                summary,
                action=action,
                recurly_id=name,
                phase=PHASE_UNITS,
                key=f"unit:{name}",
            )
        )
    return changes
