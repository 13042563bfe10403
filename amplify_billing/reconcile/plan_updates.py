"""sync-plans, one step: a Recurly plan that exists and is active, brought in line with the plan it must be. Pure.

Recurly changes a plan's fields and its add-ons in place, but never a billing interval or an add-on's tier type:
those differences are reported with what to do instead, and nothing is written for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from amplify_billing.actions import CreateAddOn, UpdateAddOn, UpdatePlan
from amplify_billing.changes import Change, ChangeKind
from amplify_billing.models import ProductPlan, RecurlyAddOn, RecurlyPlan, RecurlyTier
from amplify_billing.reconcile.plan_inputs import PHASE_ADD_ONS, PHASE_PLANS, PHASE_REPORT, plan_ref

T = TypeVar("T")


def active_plan_changes(plan: ProductPlan, want: RecurlyPlan, have: RecurlyPlan) -> list[Change]:
    """The interval finding, the plan's own update, then its add-ons' changes (in the order the report lists them)."""
    changes: list[Change] = []
    ref = plan_ref(plan)
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
    differences = _plan_differences(have, want)
    if differences:
        changes.append(
            Change(
                ChangeKind.UPDATE,
                "plan",
                ref,
                f"plan {want.code}",
                "update " + "; ".join(differences),
                action=UpdatePlan(want),
                amplify_id=plan.id,
                recurly_id=want.code,
                phase=PHASE_PLANS,
                key=want.code,
            )
        )
    changes.extend(_add_on_changes(plan, want, have))
    return changes


def _add_on_changes(plan: ProductPlan, want: RecurlyPlan, have: RecurlyPlan) -> list[Change]:
    have_add_ons = {a.code: a for a in have.add_ons}
    changes: list[Change] = []
    for add_on in want.add_ons:
        change = _add_on_change(plan, want, add_on, have_add_ons.get(add_on.code))
        if change is not None:
            changes.append(change)
    wanted_codes = {a.code for a in want.add_ons}
    # an add-on we did not make, or whose quota is gone, may still bill someone: reported, never removed
    for code in sorted(set(have_add_ons) - wanted_codes):
        changes.append(
            Change(
                ChangeKind.FINDING,
                "add_on",
                plan_ref(plan),
                f"add-on {want.code}/{code}",
                "Recurly add-on has no billable Amplify quota; left in place (remove it in Recurly if unused)",
                phase=PHASE_REPORT,
                key=f"{want.code}/{code}",
            )
        )
    return changes


def _add_on_change(
    plan: ProductPlan, want: RecurlyPlan, add_on: RecurlyAddOn, current: RecurlyAddOn | None
) -> Change | None:
    """Create the add-on, update it, or report a tier type Recurly cannot change; None when it is as it must be."""
    ref = f"{plan_ref(plan)} quota"
    recurly = f"add-on {want.code}/{add_on.code}"
    key = f"{want.code}/{add_on.code}"
    if current is None:
        return Change(
            ChangeKind.CREATE,
            "add_on",
            ref,
            recurly,
            f"create {add_on.tier_type} usage add-on",
            action=CreateAddOn(want.code, add_on),
            recurly_id=add_on.code,
            phase=PHASE_ADD_ONS,
            key=key,
            requires=(f"unit:{add_on.measured_unit_name}",),
        )
    if current.tier_type != add_on.tier_type:
        return Change(
            ChangeKind.FINDING,
            "add_on",
            ref,
            recurly,
            f"tier type is {current.tier_type} in Recurly but the quota needs {add_on.tier_type}; Recurly "
            "cannot change an add-on's tier type in place: archive this Amplify plan and publish a new one",
            phase=PHASE_REPORT,
            key=key,
        )
    if current != add_on:
        return Change(
            ChangeKind.UPDATE,
            "add_on",
            ref,
            recurly,
            _describe_add_on_diff(current, add_on),
            action=UpdateAddOn(want.code, add_on),
            recurly_id=add_on.code,
            phase=PHASE_ADD_ONS,
            key=key,
        )
    return None


def _describe_add_on_diff(have: RecurlyAddOn, want: RecurlyAddOn) -> str:
    parts = [
        *_changed("name", have.name, want.name, repr),
        *_changed("unit", have.measured_unit_name, want.measured_unit_name),
        *_changed("price", have.unit_amount_decimal, want.unit_amount_decimal, suffix=f" {want.currency}"),
        *_changed("tiers", have.tiers, want.tiers, _tiers_text),
        *_changed("currency", have.currency, want.currency),
    ]
    return "update " + "; ".join(parts) if parts else "update"


def _tiers_text(tiers: tuple[RecurlyTier, ...]) -> str:
    return "[" + ", ".join(f"≤{t.ending_quantity or '∞'}@{t.unit_amount_decimal}" for t in tiers) + "]"


def _plan_differences(have: RecurlyPlan, want: RecurlyPlan) -> list[str]:
    """What an update of the plan changes; the interval is not among them: Recurly cannot change it, so it is a
    finding, not an update."""
    return [
        *_changed("name", have.name, want.name, repr),
        *_changed("currency", have.currency, want.currency),
        *_changed("price", have.unit_amount, want.unit_amount),
        *_changed("setup fee", have.setup_fee, want.setup_fee),
        *_changed("auto renew", have.auto_renew, want.auto_renew),
        *_changed("billing cycles", have.total_billing_cycles, want.total_billing_cycles),
    ]


def _changed(label: str, have: T, want: T, show: Callable[[T], str] = str, *, suffix: str = "") -> list[str]:
    """``label old → new`` (with ``suffix``) when the values differ; nothing when they are the same."""
    return [f"{label} {show(have)} → {show(want)}{suffix}"] if have != want else []
