"""sync-subscriptions inputs, options, phases and the small shared vocabulary of its steps. Pure.

Shared by the diff (``subscriptions``) and its steps (matching, creates, ends), so that no step imports the module
that calls it; ``subscriptions`` re-exports every public name, which is where importers name them from.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from amplify_billing.actions import Later
from amplify_billing.amplify import literals
from amplify_billing.amplify.parse import ParseProblem
from amplify_billing.changes import Change, ChangeKind
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.billing_modes import Withheld

PHASE_END = 40
PHASE_CREATE = 50
PHASE_APPROVE = 60
PHASE_LINKS = 90
PHASE_REPORT = 95

LIVE_STATES = frozenset({"active", "canceled", "future", "paused"})
# marks a stand-in (see deleted_stand_in) in its otherwise empty raw; the value says why it ended
STAND_IN = "amplify-billing:deleted"
DELETED = "deleted"  # a direct read answered 404
ENDED_BY_OPERATOR = "operator"  # sync-subscriptions --end
# in a create's payload: the Recurly subscription the Amplify subscription was linked to before (safety valve)
END_HINT = "amplify-billing sync-subscriptions --end"


@dataclass(frozen=True)
class LinkedPlan:
    """An Amplify plan that exists (active) in Recurly."""

    amplify_name: str
    code: str
    currency: str
    add_on_codes: tuple[str, ...]  # usage add-ons to attach, in order
    quota_add_ons: Mapping[str, str] = field(default_factory=dict)  # quota id -> add-on code


@dataclass(frozen=True)
class RecurlySubscription:
    uuid: str
    account_code: str
    plan_code: str
    state: str
    custom_fields: Mapping[str, str] = field(default_factory=dict)
    activated_at: datetime | None = None
    canceled_at: datetime | None = None
    expires_at: datetime | None = None
    add_on_codes: tuple[str, ...] = ()
    expiration_reason: str | None = None


@dataclass(frozen=True)
class SubscriptionOptions:
    owner: str = "marketplace"
    custom_field: str | None = None
    collection_method: str = "automatic"
    approve_pending: bool = True
    on_cancel: str = "term_end"
    link_attribute: str = "recurlySubscriptionUuid"
    account_link_attribute: str = "recurlyAccountCode"


@dataclass(frozen=True)
class SubscriptionInputs:
    amplify: tuple[AmplifySubscription, ...]
    plans: Mapping[str, LinkedPlan]  # by Amplify plan name
    recurly: tuple[RecurlySubscription, ...]  # live subscriptions on our plans
    accounts: Collection[str]  # existing Recurly account codes
    journal_links: Mapping[str, str] = field(default_factory=dict)  # Amplify id -> Recurly uuid
    # end of the usage already reported for each Amplify subscription (min over its quotas)
    usage_reported_through: Mapping[str, datetime | None] = field(default_factory=dict)
    problems: tuple[ParseProblem, ...] = ()
    # why Recurly's live listing is not proven complete ("" when it is): a subscription without a match may have
    # one the listing missed, so nothing is created
    recurly_unproven: str = ""
    # why Amplify's subscription listing is not proven complete ("" when it is): nothing is ended for absence
    amplify_unproven: str = ""
    # linked Recurly subscriptions missing from the live listing that a direct read showed ended or gone:
    # Amplify id -> what the read showed. Never a second subscription for these.
    lost_links: Mapping[str, str] = field(default_factory=dict)
    # journal-linked subscriptions Amplify did not list and whose deletion could not be proven: id -> why
    unproven_absent: Mapping[str, str] = field(default_factory=dict)
    # subscriptions that still exist but whose plan left the opted-in catalog (opt-in removed, product hidden or
    # unreadable): kept on their Recurly subscription (``plans`` holds a plan built from it), usage still reported
    kept: frozenset[str] = frozenset()
    # subscriptions of Marketplaces Amplify bills too (the double billing guard, ``billing_modes``): not billed in
    # Recurly, nothing of theirs created or ended, one finding per Marketplace
    withheld: tuple[Withheld, ...] = ()
    # Amplify id -> Recurly's starts_at: a subscription of a Marketplace switching to recurly mode at a switch_at
    # still ahead starts there (``billing_modes.future_starts``; README, "Switching a Marketplace between modes")
    starts_at: Mapping[str, datetime] = field(default_factory=dict)
    # Amplify id -> (switch, now): made after that switch, its Recurly subscription starts late
    # (``billing_modes.late_starts``): a finding names the base price's gap
    late_starts: Mapping[str, tuple[datetime, datetime]] = field(default_factory=dict)


def unreadable_ids(inputs: SubscriptionInputs) -> frozenset[str]:
    """Amplify subscriptions that exist but could not be read, or are withheld: never to be taken for deleted."""
    held = (i for w in inputs.withheld for i in w.subscription_ids)
    return frozenset(p.id for p in inputs.problems if p.id) | frozenset(held)


def ended_state(s: AmplifySubscription) -> bool:
    """Refused (rejected, declined), or approved and in a final state. A transitional state (migration or archival
    scheduled, migrating) is not an end: billing goes on until the final state."""
    return s.approval_state in literals.REFUSED_APPROVALS or (
        s.approval_state == literals.APPROVAL_APPROVED and s.state_name in literals.ENDED_STATES
    )


def unknown_values(s: AmplifySubscription) -> str | None:
    """Why the tool acts on nothing for the subscription (a value it does not know, an approval in error), or None."""
    if s.approval_state not in literals.APPROVAL_STATES:
        return f"unknown approval state {s.approval_state!r}"
    if s.approval_state == literals.APPROVAL_ERROR:
        # "an error in processing the subscription request" (subscription_management.md): not an approval, not an end
        return "its approval is in error in Amplify (not an approval): nothing is billed, approved or ended for it"
    if s.state_name is not None and s.state_name not in literals.SUBSCRIPTION_STATES:
        return f"unknown subscription state {s.state_name!r}"
    return None


def subscription_ref(s: AmplifySubscription) -> str:
    """The Amplify side of a change: name and id."""
    return f"subscription {s.name} ({s.id})"


def recurly_ref(uuid: str | Later | None, plan: str | None = None) -> str:
    """The Recurly side of a change: the subscription, or the one a create will make on ``plan``."""
    if not isinstance(uuid, str):
        return f"new subscription on {plan}" if plan else "-"
    return f"subscription {uuid}"


def withheld(ref: str, what: str, then: str, *, key: str, recurly: str = "-") -> Change:
    """A finding that holds back a money action (a create or an end) for want of a proven read."""
    return Change(
        ChangeKind.FINDING, "subscription", ref, recurly, f"{what}; {then}", phase=PHASE_REPORT, key=key, withholds=True
    )


def deleted_stand_in(
    amplify_id: str, plan_name: str, missed_at: datetime, *, why: str = DELETED, name: str = "(deleted)"
) -> AmplifySubscription:
    """A journal-linked subscription that ends without Amplify saying so, as an ended one.

    ``why`` DELETED: a direct read answered 404. Amplify keeps no trace of when a resource was deleted; the first
    run that missed it is the latest moment it can have existed. ENDED_BY_OPERATOR: ``sync-subscriptions --end``
    for one whose plan left the opted-in catalog, at the moment it was asked. Treated as cancelled then, its usage
    up to that moment is reported first and only then does the Recurly subscription end, as for a cancellation.
    """
    return AmplifySubscription(
        id=amplify_id,
        name=name,
        product_name="",
        plan_name=plan_name,
        approval_state=literals.APPROVAL_APPROVED,
        state_name=literals.STATE_CANCELLED,
        owner_team=None,
        owner_user=None,
        owner_org=None,
        state_changed_at=missed_at,
        raw={STAND_IN: why},
    )


def kept_plan(plan_name: str, current: RecurlySubscription, add_on_prefix: str) -> LinkedPlan:
    """The plan of a kept subscription, from its Recurly subscription: its plan code and add-ons, each add-on
    code being the prefix and the quota id (see ``identity.add_on_code``), so that its usage is reported as before."""
    codes = tuple(sorted(current.add_on_codes))
    quotas = {code.removeprefix(add_on_prefix): code for code in codes if code.startswith(add_on_prefix)}
    return LinkedPlan(plan_name, current.plan_code, "", codes, quotas)
