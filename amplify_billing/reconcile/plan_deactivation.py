"""sync-plans, one step: the Recurly plans no Amplify plan needs any more, deactivated once nobody is on them. Pure.

Deactivation is destructive, so a plan counts as gone only when the Amplify listing proves it: a plan that exists
but cannot be read, or a listing that is narrowed or missing a product, proves nothing about absent plans.
"""

from __future__ import annotations

from collections.abc import Collection

from amplify_billing.actions import DeactivatePlan
from amplify_billing.amplify import literals
from amplify_billing.changes import Change, ChangeKind
from amplify_billing.models import ProductPlan
from amplify_billing.reconcile.plan_inputs import (
    PHASE_DEACTIVATE,
    PHASE_REPORT,
    CatalogSnapshot,
    PlanSyncOptions,
    RecurlyCatalog,
    plan_ref,
)
from amplify_billing.reconcile.plan_mapping import plan_code


def deactivations(
    amplify: CatalogSnapshot, recurly: RecurlyCatalog, options: PlanSyncOptions, kept_codes: Collection[str]
) -> list[Change]:
    """A deactivation (or a wait for live subscriptions) per active Recurly plan that is not kept and is retired.

    ``kept_codes``: the Recurly plans the Amplify plans still need (live, draft, unsupported, of an unknown state,
    or unreadable in Recurly)."""
    kept = set(kept_codes) | _unreadable_plan_codes(amplify, options)
    complete = _listing_complete(amplify)
    by_code = {plan_code(p.id, options.mapping): p for p in amplify.plans}
    changes: list[Change] = []
    for code, have in sorted(recurly.plans.items()):
        if have.state != "active" or code in kept:
            continue
        amplify_plan = by_code.get(code)
        if _retired(amplify_plan, complete, options):
            changes.append(_deactivate_or_wait(code, amplify_plan, recurly))
    return changes


def _unreadable_plan_codes(amplify: CatalogSnapshot, options: PlanSyncOptions) -> set[str]:
    # a plan that exists in Amplify but cannot be read is not gone: its Recurly plan stays
    return {plan_code(p.id, options.mapping) for p in amplify.problems if p.kind == "productplan" and p.id}


def _listing_complete(amplify: CatalogSnapshot) -> bool:
    # when a plan or a product cannot even be identified, no absent plan proves anything (as for a narrowed listing)
    return amplify.complete and not any(
        p.kind == "product" or (p.kind == "productplan" and not p.id) for p in amplify.problems
    )


def _retired(amplify_plan: ProductPlan | None, complete: bool, options: PlanSyncOptions) -> bool:
    """Gone from a complete listing, or archived (a free plan only when free plans are synced at all)."""
    if amplify_plan is None:
        return complete
    if amplify_plan.type == "free" and not options.sync_free_plans:
        return False
    return amplify_plan.state not in literals.PLAN_STATES_IN_RECURLY


def _deactivate_or_wait(code: str, amplify_plan: ProductPlan | None, recurly: RecurlyCatalog) -> Change:
    ref = plan_ref(amplify_plan) if amplify_plan else f"(deleted plan) {code}"
    why = "archived in Amplify" if amplify_plan else "no longer in Amplify"
    live = recurly.live_subscriptions_by_plan.get(code, 0)
    if live:
        return Change(
            ChangeKind.WAITING,
            "plan",
            ref,
            f"plan {code}",
            f"{why}; waiting for {live} live Recurly subscription(s) to end before deactivating",
            phase=PHASE_REPORT,
            key=code,
        )
    return Change(
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
