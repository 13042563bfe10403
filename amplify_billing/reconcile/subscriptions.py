"""sync-subscriptions diff: Amplify subscriptions x Recurly subscriptions -> ChangeSet. Pure.

One decision per subscription, in this order: values it does not know or an ambiguous match (reported, nothing
done), an end (``subscription_ends``), a plan that left the catalog (reported), a create or why it is withheld
(``subscription_creates``), then the approval and the link attributes. Matching is ``subscription_matching``.
Nothing here cancels, terminates or approves on a state or approval value it does not know.

Completeness: a create depends on the absence of a Recurly subscription, an end on the absence of the Amplify one.
Neither follows from a read that is not proven complete: the inputs say which reads are unproven, and those cases
become findings that withhold the action, with everything else still applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from amplify_billing.actions import Approve, CreateSubscription, Later, LinkSubscription, SetLink, known
from amplify_billing.amplify import literals
from amplify_billing.amplify.parse import ParseProblem
from amplify_billing.changes import Change, ChangeKind, ChangeSet
from amplify_billing.identity import account_code
from amplify_billing.journal_changes import record
from amplify_billing.links import ACTIVE_SINCE_LINK, CREATED_LINK, SUBSCRIPTION_LINK
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.billing_modes import withheld_finding
from amplify_billing.reconcile.subscription_creates import create_or_withhold, late_start_finding
from amplify_billing.reconcile.subscription_ends import absent_findings, awaiting_final_usage, end_changes, kept_finding
from amplify_billing.reconcile.subscription_inputs import (
    DELETED,
    END_HINT,
    ENDED_BY_OPERATOR,
    LIVE_STATES,
    PHASE_APPROVE,
    PHASE_CREATE,
    PHASE_END,
    PHASE_LINKS,
    PHASE_REPORT,
    STAND_IN,
    LinkedPlan,
    RecurlySubscription,
    SubscriptionInputs,
    SubscriptionOptions,
    deleted_stand_in,
    ended_state,
    kept_plan,
    recurly_ref,
    subscription_ref,
    unknown_values,
    unreadable_ids,
)
from amplify_billing.reconcile.subscription_matching import Matcher, match_subscriptions, unmatched_links

# what the steps' modules define, importers keep naming from here
__all__ = [
    "DELETED",
    "ENDED_BY_OPERATOR",
    "END_HINT",
    "LIVE_STATES",
    "PHASE_APPROVE",
    "PHASE_CREATE",
    "PHASE_END",
    "PHASE_LINKS",
    "PHASE_REPORT",
    "STAND_IN",
    "LinkedPlan",
    "RecurlySubscription",
    "SubscriptionInputs",
    "SubscriptionOptions",
    "awaiting_final_usage",
    "deleted_stand_in",
    "diff_subscriptions",
    "ended_state",
    "kept_plan",
    "match_subscriptions",
    "unmatched_links",
    "unreadable_ids",
]


@dataclass(frozen=True)
class _Billed:
    """The Recurly subscription the approval and the links name: an existing one, or the one a create makes
    (its uuid then known only after apply, and the create required first)."""

    uuid: str | Later
    requires: tuple[str, ...] = ()


def diff_subscriptions(inputs: SubscriptionInputs, options: SubscriptionOptions) -> ChangeSet:
    changes = [_unreadable(problem) for problem in inputs.problems]
    changes.extend(withheld_finding(w) for w in inputs.withheld)
    matcher = Matcher(inputs, options)
    seen_uuids: set[str] = set()
    for s in sorted(inputs.amplify, key=lambda s: s.id):
        plan = inputs.plans.get(s.plan_name)
        if plan is None:
            continue
        code = account_code(s, options.owner)
        candidates = matcher.match(s, code, plan)
        seen_uuids.update(r.uuid for r in candidates)
        changes.extend(_subscription_changes(s, plan, code, candidates, inputs, options))
    changes.extend(absent_findings(inputs, matcher, seen_uuids))
    active_since = {s.id: s.active_since for s in inputs.amplify if s.active_since is not None}
    changes.extend(link for c in list(changes) for link in created_links(c, active_since))
    # the valve's denominator: what is linked now, plus what was linked before and would be created again (a
    # Recurly listing that came back empty must not make a mass re-create look small)
    linked = sum(1 for r in inputs.recurly if r.state in LIVE_STATES)
    linked += sum(1 for c in changes if isinstance(c.action, CreateSubscription) and c.action.replaces)
    return ChangeSet.of("sync-subscriptions", changes, linked_count=linked)


def created_links(change: Change, active_since: Mapping[str, datetime] | None = None) -> list[Change]:
    """The journal links of a subscription this run creates, written right after its create (the Applier runs a
    journal effect that requires one write at once after it): a killed run leaves at most one write without them.
    ``CREATED_LINK`` says every usage record on it goes through this journal's ledger, so report-usage need not
    read Recurly to learn what is already there. ``ACTIVE_SINCE_LINK`` keeps when it became active, which its
    Amplify state stops saying once it ends (usage is billed from then)."""
    action = change.action
    if not isinstance(action, CreateSubscription):
        return []
    uuid = Later(change.key)
    values: list[tuple[str, str | Later, str]] = [
        (SUBSCRIPTION_LINK, uuid, "the new Recurly subscription"),
        (CREATED_LINK, uuid, "the new Recurly subscription"),
    ]
    since = (active_since or {}).get(action.amplify_id)
    if since is not None:
        stamp = since.isoformat()
        values.append((ACTIVE_SINCE_LINK, stamp, f"{stamp}, when it became active"))
    return [
        record(
            SetLink(kind, action.amplify_id, value),
            f"{kind} {action.amplify_id} = {what}",
            about=change.amplify,
            key=f"{kind}:{action.amplify_id}",
            requires=(change.key,),
            phase=change.phase,
            amplify_id=action.amplify_id,
        )
        for kind, value, what in values
    ]


def _unreadable(problem: ParseProblem) -> Change:
    return Change(
        ChangeKind.FINDING,
        "subscription",
        problem.name,
        "-",
        f"cannot read the Amplify subscription: {problem.reason}",
        phase=PHASE_REPORT,
        key=problem.name,
    )


def _subscription_changes(
    s: AmplifySubscription,
    plan: LinkedPlan,
    code: str | None,
    candidates: list[RecurlySubscription],
    inputs: SubscriptionInputs,
    options: SubscriptionOptions,
) -> list[Change]:
    """One listed subscription on a linked plan; the first decision that applies wins."""
    ref = subscription_ref(s)
    unknown = unknown_values(s)
    if unknown:
        return [
            Change(
                ChangeKind.FINDING,
                "subscription",
                ref,
                recurly_ref(None),
                f"{unknown}; nothing done",
                phase=PHASE_REPORT,
                key=s.id,
            )
        ]
    if len(candidates) > 1:
        return [_ambiguous(s, candidates)]
    current = candidates[0] if candidates else None
    if ended_state(s):
        return end_changes(s, current, inputs, options)
    if s.id in inputs.kept:
        return [kept_finding(s, current)]  # nothing is written for a product that no longer opts in
    # pending, or approved and active (an approved subscription has no state until Amplify sets it)
    if current is None:
        create = create_or_withhold(s, plan, code, inputs, options)
        if create.kind is not ChangeKind.CREATE:
            return [create]
        changes = [create, *late_start_finding(s, inputs)]
        billed = _Billed(Later(create.key), requires=(create.key,))
    else:
        changes = _plan_mismatch(s, plan, current)
        billed = _Billed(current.uuid)
    changes.extend(_approval(s, plan, billed, options))
    changes.extend(_links(s, plan, code, billed, options))
    return changes


def _ambiguous(s: AmplifySubscription, candidates: list[RecurlySubscription]) -> Change:
    uuids = ", ".join(r.uuid for r in candidates)
    return Change(
        ChangeKind.FINDING,
        "subscription",
        subscription_ref(s),
        uuids,
        f"{len(candidates)} Recurly subscriptions match it ({uuids}); resolve by hand (keep one, "
        "cancel the others), then run again",
        phase=PHASE_REPORT,
        key=s.id,
    )


def _plan_mismatch(s: AmplifySubscription, plan: LinkedPlan, current: RecurlySubscription) -> list[Change]:
    if current.plan_code == plan.code:
        return []
    return [
        Change(
            ChangeKind.FINDING,
            "subscription",
            subscription_ref(s),
            recurly_ref(current.uuid),
            f"Recurly subscription is on plan {current.plan_code} but Amplify says {plan.code}; "
            "Amplify plan changes arrive as migrations (a new subscription): check by hand",
            phase=PHASE_REPORT,
            key=s.id,
        )
    ]


def _approval(s: AmplifySubscription, plan: LinkedPlan, billed: _Billed, options: SubscriptionOptions) -> list[Change]:
    """A pending subscription is approved once its billing is in place, unless approving is left to the provider."""
    if s.approval_state != literals.APPROVAL_PENDING:
        return []
    if options.approve_pending:
        return [
            Change(
                ChangeKind.APPROVE,
                "approval",
                subscription_ref(s),
                recurly_ref(billed.uuid, plan.code),
                "approve in Amplify: billing is in place",
                action=Approve(resource=s.raw, reason="Billing set up in Recurly by amplify-billing"),
                amplify_id=s.id,
                recurly_id=known(billed.uuid),
                phase=PHASE_APPROVE,
                key=f"approve:{s.id}",
                requires=billed.requires,
            )
        ]
    return [
        Change(
            ChangeKind.WAITING,
            "approval",
            subscription_ref(s),
            recurly_ref(billed.uuid, plan.code),
            "pending approval by the provider (subscriptions.approve_pending is false)",
            phase=PHASE_REPORT,
            key=s.id,
        )
    ]


def _links(
    s: AmplifySubscription, plan: LinkedPlan, code: str | None, billed: _Billed, options: SubscriptionOptions
) -> list[Change]:
    """The account code and the Recurly uuid as attributes of the Amplify subscription, where they differ (a
    create's uuid always, as it is new)."""
    wanted: dict[str, str] = {}
    if code and s.attributes.get(options.account_link_attribute) != code:
        wanted[options.account_link_attribute] = code
    if not isinstance(billed.uuid, str) or s.attributes.get(options.link_attribute) != billed.uuid:
        wanted[options.link_attribute] = str(billed.uuid)
    if not wanted:
        return []
    return [
        Change(
            ChangeKind.LINK,
            "subscription",
            subscription_ref(s),
            recurly_ref(billed.uuid, plan.code),
            "set attribute " + ", ".join(f"{k}={v}" for k, v in sorted(wanted.items())),
            action=LinkSubscription(
                resource=s.raw, attributes=wanted, uuid_attribute=options.link_attribute, uuid=billed.uuid
            ),
            amplify_id=s.id,
            recurly_id=known(billed.uuid),
            phase=PHASE_LINKS,
            key=f"link:{s.id}",
            requires=billed.requires,
        )
    ]
