"""sync-subscriptions, one step: a Recurly subscription for an Amplify subscription that has none. Pure.

A create rests on the absence of a Recurly subscription, which only a listing proven whole shows; and it is never
a second one for a subscription whose linked Recurly subscription was read as ended or gone.
"""

from __future__ import annotations

from amplify_billing.actions import CreateSubscription
from amplify_billing.changes import Change, ChangeKind
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.subscription_inputs import (
    PHASE_CREATE,
    PHASE_REPORT,
    LinkedPlan,
    SubscriptionInputs,
    SubscriptionOptions,
    recurly_ref,
    subscription_ref,
    withheld,
)
from amplify_billing.reconcile.subscription_matching import linked_uuid


def create_or_withhold(
    s: AmplifySubscription,
    plan: LinkedPlan,
    code: str | None,
    inputs: SubscriptionInputs,
    options: SubscriptionOptions,
) -> Change:
    """The create, or the one change that says why it is held back (its kind is then not CREATE)."""
    ref = subscription_ref(s)
    if s.id in inputs.lost_links:
        return withheld(
            ref,
            inputs.lost_links[s.id],
            "no second Recurly subscription is created for it. If it is to be billed again, create its "
            "successor in Recurly by hand (same account and plan), or end it in Amplify",
            key=s.id,
        )
    if code is None or code not in inputs.accounts:
        return Change(
            ChangeKind.WAITING,
            "subscription",
            ref,
            f"account {code or '?'}",
            "its Recurly account is missing (see link-accounts); "
            + ("stays pending in Amplify" if s.approval_state == "pending" else "not billed yet"),
            phase=PHASE_REPORT,
            key=s.id,
        )
    if inputs.recurly_unproven:
        return withheld(
            ref,
            f"no Recurly subscription matches it, but {inputs.recurly_unproven}",
            "it is not created until a listing is proven whole (the next run lists again)",
            key=s.id,
        )
    return _create(s, plan, code, inputs, options)


def _create(
    s: AmplifySubscription, plan: LinkedPlan, code: str, inputs: SubscriptionInputs, options: SubscriptionOptions
) -> Change:
    previous = linked_uuid(s, inputs, options)
    create = CreateSubscription(
        amplify_id=s.id,
        account_code=code,
        plan_code=plan.code,
        currency=plan.currency,
        add_on_codes=plan.add_on_codes,
        collection_method=options.collection_method,
        custom_field=options.custom_field,
        replaces=previous,  # counted by the safety valve like an end
        starts_at=inputs.starts_at.get(s.id),
    )
    return Change(
        ChangeKind.CREATE,
        "subscription",
        subscription_ref(s),
        recurly_ref(None, plan.code),
        f"subscribe {code} to {plan.code}"
        + (f" with {len(plan.add_on_codes)} usage add-on(s)" if plan.add_on_codes else "")
        + (f" (it was linked to Recurly subscription {previous}, which is not live)" if previous else "")
        + (f", starting at billing.switch_at {starts.isoformat()}" if (starts := inputs.starts_at.get(s.id)) else ""),
        action=create,
        phase=PHASE_CREATE,
        key=f"create:{s.id}",
        amplify_id=s.id,
    )


def late_start_finding(s: AmplifySubscription, inputs: SubscriptionInputs) -> list[Change]:
    """The base price no side bills: its Marketplace switched to recurly mode before this create, and Amplify's
    invoices stopped at the switch (README, "Switching a Marketplace between modes")."""
    if s.id not in inputs.late_starts:
        return []
    switch, now = inputs.late_starts[s.id]
    return [
        withheld(
            subscription_ref(s),
            f"its Marketplace switched to recurly mode at billing.switch_at {switch.isoformat()}, but its Recurly "
            f"subscription is made only now ({now.isoformat()}) and starts now: the base price from the switch to "
            "now is billed by neither side (its usage from the switch is reported)",
            "bill that base price by hand in Recurly (a one-time charge on its account)",
            key=f"late-start:{s.id}",
        )
    ]
