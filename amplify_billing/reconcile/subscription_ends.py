"""sync-subscriptions, one step: which Recurly subscriptions end, which wait, and which are never ended. Pure.

An ended Amplify subscription ends its Recurly subscription only once its usage up to its end is reported. One
that Amplify did not list ends only when its deletion is proven (it then arrives as a stand-in); absence from a
listing alone never ends anything, and a subscription whose plan left the catalog is ended only by the operator.
"""

from __future__ import annotations

from amplify_billing.actions import CancelSubscription, TerminateSubscription
from amplify_billing.amplify import literals
from amplify_billing.changes import Change, ChangeKind
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.subscription_inputs import (
    END_HINT,
    ENDED_BY_OPERATOR,
    LIVE_STATES,
    PHASE_END,
    PHASE_REPORT,
    STAND_IN,
    RecurlySubscription,
    SubscriptionInputs,
    SubscriptionOptions,
    ended_state,
    recurly_ref,
    subscription_ref,
    unknown_values,
    unreadable_ids,
    withheld,
)
from amplify_billing.reconcile.subscription_matching import Matcher, match_subscriptions


def end_changes(
    s: AmplifySubscription,
    current: RecurlySubscription | None,
    inputs: SubscriptionInputs,
    options: SubscriptionOptions,
) -> list[Change]:
    """An ended Amplify subscription: end its Recurly subscription, or wait for its final usage first."""
    if current is None:
        return []
    ref = subscription_ref(s)
    migrated = s.state_name == literals.STATE_MIGRATED
    refused = s.approval_state in literals.REFUSED_APPROVALS
    why = f"{s.approval_state} in Amplify" if refused else f"{s.state_name} in Amplify"
    if s.raw.get(STAND_IN) == ENDED_BY_OPERATOR:
        why = f"ended by the operator ({END_HINT})"
    elif s.raw.get(STAND_IN):
        why = "deleted in Amplify (missed by the run)"
    end = s.state_changed_at
    reported = inputs.usage_reported_through.get(s.id)
    if end is not None and awaits_final_usage(s, inputs, current):
        return [
            Change(
                ChangeKind.WAITING,
                "subscription",
                ref,
                recurly_ref(current.uuid),
                f"{why} at {end.isoformat()}; ends in Recurly once usage up to then is reported "
                f"(reported through {reported.isoformat() if reported else 'nothing yet'})",
                phase=PHASE_REPORT,
                key=s.id,
            )
        ]
    change = _end_change(ref, current, options, why, migrated=migrated, key=f"end:{s.id}")
    return [change] if change else []


def _end_change(
    ref: str, current: RecurlySubscription, options: SubscriptionOptions, why: str, *, migrated: bool, key: str
) -> Change | None:
    if options.on_cancel == "terminate" or migrated:
        if current.state not in ("active", "canceled", "future", "paused"):
            return None
        # a migration ends the old subscription now with a prorated refund, so base price is not billed
        # twice for the rest of the term; unbilled usage is charged on the final invoice
        refund = "partial" if migrated else "none"
        return Change(
            ChangeKind.TERMINATE,
            "subscription",
            ref,
            recurly_ref(current.uuid),
            f"{why}; terminate now (refund {refund}, unbilled usage charged)",
            action=TerminateSubscription(current.uuid, refund),
            recurly_id=current.uuid,
            phase=PHASE_END,
            key=key,
        )
    if current.state not in ("active", "future"):
        return None  # already canceled: it ends at term end as asked (a future one canceled never starts)
    return Change(
        ChangeKind.CANCEL,
        "subscription",
        ref,
        recurly_ref(current.uuid),
        f"{why}; cancel at the end of the term",
        action=CancelSubscription(current.uuid),
        recurly_id=current.uuid,
        phase=PHASE_END,
        key=key,
    )


def awaits_final_usage(s: AmplifySubscription, inputs: SubscriptionInputs, current: RecurlySubscription | None) -> bool:
    """An ended subscription whose usage up to its end is not reported yet: it must not end in Recurly yet.

    Usage is counted from ``current``'s activation (an ended Amplify subscription no longer says when it became
    active; usage/planning.py): an end at or before it leaves no window, so no watermark would ever move and the
    wait would keep the Recurly subscription billing for ever."""
    end = s.state_changed_at
    reported = inputs.usage_reported_through.get(s.id)
    plan = inputs.plans.get(s.plan_name)
    billable = bool(plan and plan.add_on_codes) and s.approval_state == literals.APPROVAL_APPROVED
    if current is not None and current.activated_at is not None and end is not None and end <= current.activated_at:
        return False
    return billable and end is not None and (reported is None or reported < end)


def awaiting_final_usage(inputs: SubscriptionInputs, options: SubscriptionOptions) -> list[str]:
    """Amplify ids of ended subscriptions with a Recurly subscription that wait for their last usage.

    sync-subscriptions reports that usage first and then ends them in the same run; without it the end would wait
    for the next run's report-usage.
    """
    matched = match_subscriptions(inputs, options)
    by_uuid = {r.uuid: r for r in inputs.recurly}
    return sorted(
        s.id
        for s in inputs.amplify
        if s.id in matched
        and ended_state(s)
        and unknown_values(s) is None
        and awaits_final_usage(s, inputs, by_uuid.get(matched[s.id]))
    )


def kept_finding(s: AmplifySubscription, current: RecurlySubscription | None) -> Change:
    """A subscription whose plan left the opted-in catalog: nothing is written for it, in either system."""
    kept = f"Recurly subscription {current.uuid} is kept and its usage still reported" if current else "nothing billed"
    return Change(
        ChangeKind.FINDING,
        "subscription",
        subscription_ref(s),
        recurly_ref(current.uuid if current else None),
        f"its plan {s.plan_name} left the opted-in catalog (the product no longer opts in, or it or the plan cannot "
        f"be read); {kept}. To end it after its final usage: {END_HINT} {s.id}",
        phase=PHASE_REPORT,
        key=s.id,
    )


def absent_findings(inputs: SubscriptionInputs, matcher: Matcher, seen_uuids: set[str]) -> list[Change]:
    """Journal-linked subscriptions Amplify did not list, with a live Recurly subscription, that are neither
    proven deleted (those arrive as stand-ins) nor found elsewhere: never ended for absence alone."""
    listed = {s.id for s in inputs.amplify}
    unreadable = unreadable_ids(inputs)
    absent = [
        (amplify_id, matcher.by_uuid[uuid])
        for amplify_id, uuid in sorted(inputs.journal_links.items())
        if amplify_id not in listed
        and amplify_id not in unreadable
        and uuid not in seen_uuids
        and uuid in matcher.by_uuid
        and matcher.by_uuid[uuid].state in LIVE_STATES
    ]
    if inputs.amplify_unproven:
        return [
            withheld(
                "subscriptions",
                inputs.amplify_unproven,
                f"{len(absent)} linked subscription(s) it did not show are not ended, and the usage of any it did "
                "not show waits for a whole listing",
                key="(subscription listing)",
            )
        ]
    return [
        withheld(
            f"subscription ({amplify_id})",
            "not listed by Amplify and not proven deleted: "
            + inputs.unproven_absent.get(amplify_id, "it was not read directly"),
            f"Recurly subscription {current.uuid} is not ended. If it was deleted: {END_HINT} {amplify_id}",
            key=amplify_id,
            recurly=recurly_ref(current.uuid),
        )
        for amplify_id, current in absent
    ]
