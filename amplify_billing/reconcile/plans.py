"""sync-plans diff: the Amplify catalog snapshot and the Recurly catalog in, a ChangeSet out. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from amplify_billing.actions import (
    CreateAddOn,
    CreateMeasuredUnit,
    CreatePlan,
    DeactivatePlan,
    SetAttributes,
    UpdateAddOn,
    UpdateMeasuredUnit,
    UpdatePlan,
)
from amplify_billing.amplify import literals
from amplify_billing.amplify.parse import ParseProblem
from amplify_billing.changes import Change, ChangeKind, ChangeSet
from amplify_billing.models import MeasuredUnit, PlanUnit, ProductPlan, RecurlyAddOn, RecurlyPlan
from amplify_billing.reconcile.plan_mapping import (
    MappingOptions,
    Unsupported,
    add_on_code,
    desired_plan,
    plan_code,
    unit_display_name,
)

PHASE_UNITS = 10
PHASE_PLANS = 20
PHASE_ADD_ONS = 30
PHASE_DEACTIVATE = 40
PHASE_LINKS = 90
PHASE_REPORT = 95


@dataclass(frozen=True)
class CatalogSnapshot:
    """What Amplify says: opted-in products' plans (every state), their quotas, the units."""

    plans: tuple[ProductPlan, ...]
    units: Mapping[str, PlanUnit]
    problems: tuple[ParseProblem, ...] = ()
    # False when the listing was narrowed (--product): absent plans then prove nothing
    complete: bool = True


@dataclass(frozen=True)
class RecurlyCatalog:
    """What Recurly holds under our code prefix."""

    plans: Mapping[str, RecurlyPlan]  # by code, active and inactive
    measured_units: Mapping[str, MeasuredUnit]  # by name
    live_subscriptions_by_plan: Mapping[str, int] = field(default_factory=dict)
    # plans under our prefix whose prices or tiers cannot be read exactly: code -> why. They are reported and left
    # alone (never updated, deactivated or linked), because every comparison with them would be a misreading.
    unparsed: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanSyncOptions:
    mapping: MappingOptions = field(default_factory=MappingOptions)
    sync_free_plans: bool = False
    plan_link_attribute: str = "recurlyPlanCode"
    quota_link_attribute: str = "recurlyAddOnCode"


def _plan_ref(plan: ProductPlan) -> str:
    return f"{plan.product_name}/{plan.name} ({plan.id})"


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


def _add_on_changes(plan: ProductPlan, want: RecurlyPlan, have: RecurlyPlan) -> list[Change]:
    changes: list[Change] = []
    have_add_ons = {a.code: a for a in have.add_ons}
    for add_on in want.add_ons:
        ref = f"{_plan_ref(plan)} quota"
        recurly = f"add-on {want.code}/{add_on.code}"
        current = have_add_ons.get(add_on.code)
        if current is None:
            changes.append(
                Change(
                    ChangeKind.CREATE,
                    "add_on",
                    ref,
                    recurly,
                    f"create {add_on.tier_type} usage add-on",
                    action=CreateAddOn(want.code, add_on),
                    recurly_id=add_on.code,
                    phase=PHASE_ADD_ONS,
                    key=f"{want.code}/{add_on.code}",
                    requires=(f"unit:{add_on.measured_unit_name}",),
                )
            )
        elif current.tier_type != add_on.tier_type:
            changes.append(
                Change(
                    ChangeKind.FINDING,
                    "add_on",
                    ref,
                    recurly,
                    f"tier type is {current.tier_type} in Recurly but the quota needs {add_on.tier_type}; Recurly "
                    "cannot change an add-on's tier type in place: archive this Amplify plan and publish a new one",
                    phase=PHASE_REPORT,
                    key=f"{want.code}/{add_on.code}",
                )
            )
        elif current != add_on:
            changes.append(
                Change(
                    ChangeKind.UPDATE,
                    "add_on",
                    ref,
                    recurly,
                    _describe_add_on_diff(current, add_on),
                    action=UpdateAddOn(want.code, add_on),
                    recurly_id=add_on.code,
                    phase=PHASE_ADD_ONS,
                    key=f"{want.code}/{add_on.code}",
                )
            )
    wanted_codes = {a.code for a in want.add_ons}
    for code in sorted(set(have_add_ons) - wanted_codes):
        changes.append(
            Change(
                ChangeKind.FINDING,
                "add_on",
                _plan_ref(plan),
                f"add-on {want.code}/{code}",
                "Recurly add-on has no billable Amplify quota; left in place (remove it in Recurly if unused)",
                phase=PHASE_REPORT,
                key=f"{want.code}/{code}",
            )
        )
    return changes


def _describe_add_on_diff(have: RecurlyAddOn, want: RecurlyAddOn) -> str:
    parts = []
    if have.name != want.name:
        parts.append(f"name {have.name!r} → {want.name!r}")
    if have.measured_unit_name != want.measured_unit_name:
        parts.append(f"unit {have.measured_unit_name} → {want.measured_unit_name}")
    if have.unit_amount_decimal != want.unit_amount_decimal:
        parts.append(f"price {have.unit_amount_decimal} → {want.unit_amount_decimal} {want.currency}")
    if have.tiers != want.tiers:
        parts.append(f"tiers {_tiers_text(have)} → {_tiers_text(want)}")
    if have.currency != want.currency:
        parts.append(f"currency {have.currency} → {want.currency}")
    return "update " + "; ".join(parts) if parts else "update"


def _tiers_text(add_on: RecurlyAddOn) -> str:
    return "[" + ", ".join(f"≤{t.ending_quantity or '∞'}@{t.unit_amount_decimal}" for t in add_on.tiers) + "]"


def _describe_plan_diff(have: RecurlyPlan, want: RecurlyPlan) -> str:
    parts = []
    if have.name != want.name:
        parts.append(f"name {have.name!r} → {want.name!r}")
    if have.currency != want.currency:
        parts.append(f"currency {have.currency} → {want.currency}")
    if have.unit_amount != want.unit_amount:
        parts.append(f"price {have.unit_amount} → {want.unit_amount}")
    if have.setup_fee != want.setup_fee:
        parts.append(f"setup fee {have.setup_fee} → {want.setup_fee}")
    if have.auto_renew != want.auto_renew:
        parts.append(f"auto renew {have.auto_renew} → {want.auto_renew}")
    if have.total_billing_cycles != want.total_billing_cycles:
        parts.append(f"billing cycles {have.total_billing_cycles} → {want.total_billing_cycles}")
    return "update " + "; ".join(parts)


def _plan_fields_differ(have: RecurlyPlan, want: RecurlyPlan) -> bool:
    return (have.name, have.currency, have.unit_amount, have.setup_fee, have.auto_renew, have.total_billing_cycles) != (
        want.name,
        want.currency,
        want.unit_amount,
        want.setup_fee,
        want.auto_renew,
        want.total_billing_cycles,
    )


def diff_plans(amplify: CatalogSnapshot, recurly: RecurlyCatalog, options: PlanSyncOptions) -> ChangeSet:
    changes: list[Change] = []
    wanted_units: dict[str, str] = {}
    kept_codes: set[str] = set()  # Recurly plans that an Amplify plan still needs

    for problem in amplify.problems:
        changes.append(
            Change(
                ChangeKind.UNSUPPORTED if problem.kind in ("productplan", "quota") else ChangeKind.FINDING,
                problem.kind,
                problem.name,
                "-",
                f"cannot read the Amplify resource: {problem.reason}",
                phase=PHASE_REPORT,
                key=problem.name,
            )
        )

    refs = {plan_code(p.id, options.mapping): _plan_ref(p) for p in amplify.plans}
    for code, reason in sorted(recurly.unparsed.items()):
        changes.append(
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
        )
        kept_codes.add(code)

    for plan in sorted(amplify.plans, key=lambda p: p.id):
        ref = _plan_ref(plan)
        if plan.state not in literals.PLAN_STATES:
            changes.append(
                Change(
                    ChangeKind.FINDING,
                    "plan",
                    ref,
                    "-",
                    f"unknown plan state {plan.state!r}; left as it is in Recurly",
                    phase=PHASE_REPORT,
                    key=ref,
                )
            )
            # an unknown state never deactivates anything
            kept_codes.add(plan_code(plan.id, options.mapping))
            continue
        if plan.state not in literals.PLAN_STATES_IN_RECURLY:
            if plan.state == "draft":
                kept_codes.add(plan_code(plan.id, options.mapping))
            continue  # archived: handled by deactivation below
        if plan.type == "free" and not options.sync_free_plans:
            continue
        want = desired_plan(plan, amplify.units, options.mapping)
        if isinstance(want, Unsupported):
            changes.append(
                Change(ChangeKind.UNSUPPORTED, "plan", ref, "-", want.reason, phase=PHASE_REPORT, key=ref)
            )
            kept_codes.add(plan_code(plan.id, options.mapping))
            continue
        kept_codes.add(want.code)
        if want.code in recurly.unparsed:
            continue  # reported above
        for add_on in want.add_ons:
            unit = amplify.units.get(add_on.measured_unit_name)
            wanted_units[add_on.measured_unit_name] = unit_display_name(unit, add_on.measured_unit_name)
        have = recurly.plans.get(want.code)
        if have is None:
            changes.append(
                Change(
                    ChangeKind.CREATE,
                    "plan",
                    ref,
                    f"plan {want.code}",
                    f"create {want.name!r} {want.unit_amount} {want.currency} every {want.interval_length} month(s)"
                    + (f" with {len(want.add_ons)} usage add-on(s)" if want.add_ons else ""),
                    action=CreatePlan(want),
                    amplify_id=plan.id,
                    recurly_id=want.code,
                    phase=PHASE_PLANS,
                    key=want.code,
                    requires=tuple(sorted({f"unit:{a.measured_unit_name}" for a in want.add_ons})),
                )
            )
        elif have.state != "active":
            changes.append(
                Change(
                    ChangeKind.FINDING,
                    "plan",
                    ref,
                    f"plan {want.code}",
                    "the Recurly plan was removed (inactive) but the Amplify plan is live; Recurly's API cannot "
                    "restore it: restore it in the Recurly admin UI, then run again",
                    phase=PHASE_REPORT,
                    key=want.code,
                )
            )
            continue
        else:
            if have.interval_length != want.interval_length or have.interval_unit != want.interval_unit:
                changes.append(
                    Change(
                        ChangeKind.FINDING,
                        "plan",
                        ref,
                        f"plan {want.code}",
                        f"billing interval is {have.interval_length} {have.interval_unit} in Recurly but "
                        f"{want.interval_length} months in Amplify; Recurly cannot change it: publish a new plan",
                        phase=PHASE_REPORT,
                        key=want.code,
                    )
                )
            if _plan_fields_differ(have, want):
                changes.append(
                    Change(
                        ChangeKind.UPDATE,
                        "plan",
                        ref,
                        f"plan {want.code}",
                        _describe_plan_diff(have, want),
                        action=UpdatePlan(want),
                        amplify_id=plan.id,
                        recurly_id=want.code,
                        phase=PHASE_PLANS,
                        key=want.code,
                    )
                )
            changes.extend(_add_on_changes(plan, want, have))
        # link attributes (the objects exist once the phases above have run)
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
        codes_by_quota = {q.id: add_on_code(q.id, options.mapping) for q in plan.quotas}
        billed = {a.code for a in want.add_ons}
        for quota in plan.quotas:
            code = codes_by_quota[quota.id]
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

    for name, display in sorted(wanted_units.items()):
        current = recurly.measured_units.get(name)
        if current is None:
            changes.append(
                Change(
                    ChangeKind.CREATE,
                    "measured_unit",
                    f"unit {name}",
                    f"measured unit {name}",
                    f"create measured unit {display!r}",
                    action=CreateMeasuredUnit(name, display),
                    recurly_id=name,
                    phase=PHASE_UNITS,
                    key=f"unit:{name}",
                )
            )
        elif current.display_name != display:
            changes.append(
                Change(
                    ChangeKind.UPDATE,
                    "measured_unit",
                    f"unit {name}",
                    f"measured unit {name}",
                    f"display name {current.display_name!r} → {display!r}",
                    action=UpdateMeasuredUnit(name, display),
                    recurly_id=name,
                    phase=PHASE_UNITS,
                    key=f"unit:{name}",
                )
            )

    # A plan that exists in Amplify but cannot be read is not gone: its Recurly plan stays. When a plan or a
    # product cannot even be identified, no absent plan proves anything (as for a narrowed listing).
    for problem in amplify.problems:
        if problem.kind == "productplan" and problem.id:
            kept_codes.add(plan_code(problem.id, options.mapping))
    complete = amplify.complete and not any(
        p.kind == "product" or (p.kind == "productplan" and not p.id) for p in amplify.problems
    )
    by_code = {plan_code(p.id, options.mapping): p for p in amplify.plans}
    active_linked = 0
    for code, have in sorted(recurly.plans.items()):
        if have.state != "active":
            continue
        active_linked += 1
        if code in kept_codes:
            continue
        amplify_plan = by_code.get(code)
        if amplify_plan is None and not complete:
            continue  # a narrowed listing, or an unreadable plan or product, cannot prove the plan is gone
        if amplify_plan is not None and amplify_plan.type == "free" and not options.sync_free_plans:
            continue
        if amplify_plan is not None and amplify_plan.state in literals.PLAN_STATES_IN_RECURLY:
            continue
        ref = _plan_ref(amplify_plan) if amplify_plan else f"(deleted plan) {code}"
        why = "archived in Amplify" if amplify_plan else "no longer in Amplify"
        live = recurly.live_subscriptions_by_plan.get(code, 0)
        if live:
            changes.append(
                Change(
                    ChangeKind.WAITING,
                    "plan",
                    ref,
                    f"plan {code}",
                    f"{why}; waiting for {live} live Recurly subscription(s) to end before deactivating",
                    phase=PHASE_REPORT,
                    key=code,
                )
            )
            continue
        changes.append(
            Change(
                ChangeKind.DEACTIVATE,
                "plan",
                ref,
                f"plan {code}",
                f"{why}; deactivate the Recurly plan",
                action=DeactivatePlan(code),
                recurly_id=code,
                phase=PHASE_DEACTIVATE,
                key=code,
            )
        )
    return ChangeSet.of("sync-plans", changes, linked_count=active_linked)
