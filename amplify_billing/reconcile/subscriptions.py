"""sync-subscriptions diff: Amplify subscriptions x Recurly subscriptions -> ChangeSet. Pure.

Identity, in order of trust: the journal's link, then the Recurly custom field holding the Amplify id,
then (account, plan). Two different candidates are ambiguous: reported, never guessed. Nothing here
cancels, terminates or approves on a state or approval value it does not know.

Completeness (DESIGN.md §3): a create depends on the absence of a Recurly subscription, an end on the absence
of the Amplify one. Neither follows from a read that is not proven complete: the inputs say which reads are
unproven, and those cases become findings that withhold the action, with everything else still applied.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from amplify_billing.actions import (
    Approve,
    CancelSubscription,
    CreateSubscription,
    Later,
    LinkSubscription,
    TerminateSubscription,
    known,
)
from amplify_billing.amplify import literals
from amplify_billing.amplify.parse import ParseProblem
from amplify_billing.changes import Change, ChangeKind, ChangeSet
from amplify_billing.identity import account_code
from amplify_billing.models import AmplifySubscription

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


def unreadable_ids(inputs: SubscriptionInputs) -> frozenset[str]:
    """Amplify subscriptions that exist but could not be read: never to be taken for deleted."""
    return frozenset(p.id for p in inputs.problems if p.id)


def _ref(s: AmplifySubscription) -> str:
    return f"subscription {s.name} ({s.id})"


def _rec(uuid: str | Later | None, plan: str | None = None) -> str:
    if not isinstance(uuid, str):
        return f"new subscription on {plan}" if plan else "-"
    return f"subscription {uuid}"


def ended_state(s: AmplifySubscription) -> bool:
    return s.approval_state == literals.APPROVAL_REJECTED or (
        s.approval_state == literals.APPROVAL_APPROVED and s.state_name in literals.ENDED_STATES
    )


def _unknown_values(s: AmplifySubscription) -> str | None:
    if s.approval_state not in literals.APPROVAL_STATES:
        return f"unknown approval state {s.approval_state!r}"
    if s.state_name is not None and s.state_name not in literals.SUBSCRIPTION_STATES:
        return f"unknown subscription state {s.state_name!r}"
    return None


@dataclass
class _Matcher:
    inputs: SubscriptionInputs
    options: SubscriptionOptions
    by_uuid: dict[str, RecurlySubscription] = field(init=False)
    by_field: dict[str, list[RecurlySubscription]] = field(init=False)
    by_account_plan: dict[tuple[str, str], list[RecurlySubscription]] = field(init=False)
    claimed: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.by_uuid = {r.uuid: r for r in self.inputs.recurly}
        self.by_field = {}
        self.by_account_plan = {}
        for r in self.inputs.recurly:
            if self.options.custom_field and r.custom_fields.get(self.options.custom_field):
                self.by_field.setdefault(r.custom_fields[self.options.custom_field], []).append(r)
            self.by_account_plan.setdefault((r.account_code, r.plan_code), []).append(r)
        # a Recurly subscription the journal or the custom field ties to some Amplify id is claimed by it
        for uuid in self.inputs.journal_links.values():
            self.claimed.add(uuid)
        for found in self.by_field.values():
            self.claimed.update(r.uuid for r in found)

    def match(self, s: AmplifySubscription, code: str | None, plan: LinkedPlan | None) -> list[RecurlySubscription]:
        candidates: dict[str, RecurlySubscription] = {}
        linked = self.inputs.journal_links.get(s.id)
        if linked and linked in self.by_uuid:
            candidates[linked] = self.by_uuid[linked]
        for r in self.by_field.get(s.id, []):
            candidates[r.uuid] = r
        if not candidates:
            # the Amplify side's own link attribute, written after a successful create
            attribute = s.attributes.get(self.options.link_attribute)
            if attribute and attribute in self.by_uuid:
                candidates[attribute] = self.by_uuid[attribute]
        if not candidates and code and plan:
            for r in self.by_account_plan.get((code, plan.code), []):
                if r.uuid not in self.claimed or r.custom_fields.get(self.options.custom_field or "") == s.id:
                    candidates[r.uuid] = r
        return sorted(candidates.values(), key=lambda r: r.uuid)


def _linked_uuid(s: AmplifySubscription, inputs: SubscriptionInputs, options: SubscriptionOptions) -> str | None:
    """The Recurly subscription this Amplify subscription was linked to: the journal's link, else its attribute."""
    return inputs.journal_links.get(s.id) or s.attributes.get(options.link_attribute) or None


def unmatched_links(inputs: SubscriptionInputs, options: SubscriptionOptions) -> dict[str, str]:
    """Amplify id -> linked Recurly uuid, for subscriptions that would get a subscription created (listed, to be
    billed, no candidate) although they were linked to one the live listing does not show: paused (`state=live`
    never lists it), ended, or missed by a listing cut short. Each is to be read directly before any create."""
    matcher = _Matcher(inputs, options)
    found: dict[str, str] = {}
    for s in inputs.amplify:
        plan = inputs.plans.get(s.plan_name)
        if plan is None or ended_state(s) or _unknown_values(s) or s.id in inputs.kept:
            continue
        uuid = _linked_uuid(s, inputs, options)
        if uuid and uuid not in matcher.by_uuid and not matcher.match(s, account_code(s, options.owner), plan):
            found[s.id] = uuid
    return found


def match_subscriptions(inputs: SubscriptionInputs, options: SubscriptionOptions) -> dict[str, str]:
    """Amplify id -> Recurly uuid for every subscription with exactly one match (to remember in the journal)."""
    matcher = _Matcher(inputs, options)
    found: dict[str, str] = {}
    for s in inputs.amplify:
        plan = inputs.plans.get(s.plan_name)
        if plan is None:
            continue
        candidates = matcher.match(s, account_code(s, options.owner), plan)
        if len(candidates) == 1:
            found[s.id] = candidates[0].uuid
    return found


def diff_subscriptions(inputs: SubscriptionInputs, options: SubscriptionOptions) -> ChangeSet:
    changes: list[Change] = []
    matcher = _Matcher(inputs, options)
    seen_uuids: set[str] = set()
    for problem in inputs.problems:
        changes.append(
            Change(
                ChangeKind.FINDING,
                "subscription",
                problem.name,
                "-",
                f"cannot read the Amplify subscription: {problem.reason}",
                phase=PHASE_REPORT,
                key=problem.name,
            )
        )
    # an Amplify subscription that was migrated away ends where its successor starts
    for s in sorted(inputs.amplify, key=lambda s: s.id):
        plan = inputs.plans.get(s.plan_name)
        if plan is None:
            continue
        ref = _ref(s)
        code = account_code(s, options.owner)
        unknown = _unknown_values(s)
        candidates = matcher.match(s, code, plan)
        seen_uuids.update(r.uuid for r in candidates)
        if unknown:
            changes.append(
                Change(
                    ChangeKind.FINDING,
                    "subscription",
                    ref,
                    _rec(None),
                    f"{unknown}; nothing done",
                    phase=PHASE_REPORT,
                    key=s.id,
                )
            )
            continue
        if len(candidates) > 1:
            uuids = ", ".join(r.uuid for r in candidates)
            changes.append(
                Change(
                    ChangeKind.FINDING,
                    "subscription",
                    ref,
                    uuids,
                    f"{len(candidates)} Recurly subscriptions match it ({uuids}); resolve by hand (keep one, "
                    "cancel the others), then run again",
                    phase=PHASE_REPORT,
                    key=s.id,
                )
            )
            continue
        current = candidates[0] if candidates else None
        if ended_state(s):
            changes.extend(_end(s, current, inputs, options))
            continue
        if s.id in inputs.kept:
            changes.append(_kept_finding(s, current))
            continue  # nothing is written for a product that no longer opts in, in either system
        # pending, or approved and active (an approved subscription has no state until Amplify sets it)
        if current is None and s.id in inputs.lost_links:
            changes.append(
                _withheld(
                    ref,
                    inputs.lost_links[s.id],
                    "no second Recurly subscription is created for it. If it is to be billed again, create its "
                    "successor in Recurly by hand (same account and plan), or end it in Amplify",
                    key=s.id,
                )
            )
            continue
        if current is None:
            if code is None or code not in inputs.accounts:
                changes.append(
                    Change(
                        ChangeKind.WAITING,
                        "subscription",
                        ref,
                        f"account {code or '?'}",
                        "its Recurly account is missing (see link-accounts); "
                        + ("stays pending in Amplify" if s.approval_state == "pending" else "not billed yet"),
                        phase=PHASE_REPORT,
                        key=s.id,
                    )
                )
                continue
            if inputs.recurly_unproven:
                changes.append(
                    _withheld(
                        ref,
                        f"no Recurly subscription matches it, but {inputs.recurly_unproven}",
                        "it is not created until a listing is proven whole (the next run lists again)",
                        key=s.id,
                    )
                )
                continue
            create_key = f"create:{s.id}"
            previous = _linked_uuid(s, inputs, options)
            create = CreateSubscription(
                amplify_id=s.id,
                account_code=code,
                plan_code=plan.code,
                currency=plan.currency,
                add_on_codes=plan.add_on_codes,
                collection_method=options.collection_method,
                custom_field=options.custom_field,
                replaces=previous,  # counted by the safety valve like an end
            )
            changes.append(
                Change(
                    ChangeKind.CREATE,
                    "subscription",
                    ref,
                    _rec(None, plan.code),
                    f"subscribe {code} to {plan.code}"
                    + (f" with {len(plan.add_on_codes)} usage add-on(s)" if plan.add_on_codes else "")
                    + (f" (it was linked to Recurly subscription {previous}, which is not live)" if previous else ""),
                    action=create,
                    phase=PHASE_CREATE,
                    key=create_key,
                    amplify_id=s.id,
                )
            )
            requires: tuple[str, ...] = (create_key,)
            uuid: str | Later | None = Later(create_key)
        else:
            if current.plan_code != plan.code:
                changes.append(
                    Change(
                        ChangeKind.FINDING,
                        "subscription",
                        ref,
                        _rec(current.uuid),
                        f"Recurly subscription is on plan {current.plan_code} but Amplify says {plan.code}; "
                        "Amplify plan changes arrive as migrations (a new subscription): check by hand",
                        phase=PHASE_REPORT,
                        key=s.id,
                    )
                )
            requires = ()
            uuid = current.uuid
        if s.approval_state == literals.APPROVAL_PENDING:
            if options.approve_pending:
                changes.append(
                    Change(
                        ChangeKind.APPROVE,
                        "approval",
                        ref,
                        _rec(uuid, plan.code),
                        "approve in Amplify: billing is in place",
                        action=Approve(resource=s.raw, reason="Billing set up in Recurly by amplify-billing"),
                        amplify_id=s.id,
                        recurly_id=known(uuid),
                        phase=PHASE_APPROVE,
                        key=f"approve:{s.id}",
                        requires=requires,
                    )
                )
            else:
                changes.append(
                    Change(
                        ChangeKind.WAITING,
                        "approval",
                        ref,
                        _rec(uuid, plan.code),
                        "pending approval by the provider (subscriptions.approve_pending is false)",
                        phase=PHASE_REPORT,
                        key=s.id,
                    )
                )
        wanted: dict[str, str] = {}
        if code and s.attributes.get(options.account_link_attribute) != code:
            wanted[options.account_link_attribute] = code
        if not isinstance(uuid, str) or s.attributes.get(options.link_attribute) != uuid:
            wanted[options.link_attribute] = str(uuid)
        if wanted:
            changes.append(
                Change(
                    ChangeKind.LINK,
                    "subscription",
                    ref,
                    _rec(uuid, plan.code),
                    "set attribute " + ", ".join(f"{k}={v}" for k, v in sorted(wanted.items())),
                    action=LinkSubscription(
                        resource=s.raw, attributes=wanted, uuid_attribute=options.link_attribute, uuid=uuid
                    ),
                    amplify_id=s.id,
                    recurly_id=known(uuid),
                    phase=PHASE_LINKS,
                    key=f"link:{s.id}",
                    requires=requires,
                )
            )
    changes.extend(_absent_findings(inputs, matcher, seen_uuids))
    # the valve's denominator: what is linked now, plus what was linked before and would be created again (a
    # Recurly listing that came back empty must not make a mass re-create look small)
    linked = sum(1 for r in inputs.recurly if r.state in LIVE_STATES)
    linked += sum(1 for c in changes if isinstance(c.action, CreateSubscription) and c.action.replaces)
    return ChangeSet.of("sync-subscriptions", changes, linked_count=linked)


def _withheld(ref: str, what: str, then: str, *, key: str, recurly: str = "-") -> Change:
    """A finding that holds back a money action (a create or an end) for want of a proven read."""
    return Change(
        ChangeKind.FINDING, "subscription", ref, recurly, f"{what}; {then}", phase=PHASE_REPORT, key=key, withholds=True
    )


def _kept_finding(s: AmplifySubscription, current: RecurlySubscription | None) -> Change:
    kept = f"Recurly subscription {current.uuid} is kept and its usage still reported" if current else "nothing billed"
    return Change(
        ChangeKind.FINDING,
        "subscription",
        _ref(s),
        _rec(current.uuid if current else None),
        f"its plan {s.plan_name} left the opted-in catalog (the product no longer opts in, or it or the plan cannot "
        f"be read); {kept}. To end it after its final usage: {END_HINT} {s.id}",
        phase=PHASE_REPORT,
        key=s.id,
    )


def _absent_findings(inputs: SubscriptionInputs, matcher: _Matcher, seen_uuids: set[str]) -> list[Change]:
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
            _withheld(
                "subscriptions",
                inputs.amplify_unproven,
                f"{len(absent)} linked subscription(s) it did not show are not ended, and the usage of any it did "
                "not show waits for a whole listing",
                key="(subscription listing)",
            )
        ]
    return [
        _withheld(
            f"subscription ({amplify_id})",
            "not listed by Amplify and not proven deleted: "
            + inputs.unproven_absent.get(amplify_id, "it was not read directly"),
            f"Recurly subscription {current.uuid} is not ended. If it was deleted: {END_HINT} {amplify_id}",
            key=amplify_id,
            recurly=_rec(current.uuid),
        )
        for amplify_id, current in absent
    ]


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
            _rec(current.uuid),
            f"{why}; terminate now (refund {refund}, unbilled usage charged)",
            action=TerminateSubscription(current.uuid, refund),
            recurly_id=current.uuid,
            phase=PHASE_END,
            key=key,
        )
    if current.state != "active":
        return None  # already canceled: it ends at term end as asked
    return Change(
        ChangeKind.CANCEL,
        "subscription",
        ref,
        _rec(current.uuid),
        f"{why}; cancel at the end of the term",
        action=CancelSubscription(current.uuid),
        recurly_id=current.uuid,
        phase=PHASE_END,
        key=key,
    )


def _end(
    s: AmplifySubscription,
    current: RecurlySubscription | None,
    inputs: SubscriptionInputs,
    options: SubscriptionOptions,
) -> list[Change]:
    if current is None:
        return []
    ref = _ref(s)
    migrated = s.state_name == literals.STATE_MIGRATED
    why = "rejected in Amplify" if s.approval_state == literals.APPROVAL_REJECTED else f"{s.state_name} in Amplify"
    if s.raw.get(STAND_IN) == ENDED_BY_OPERATOR:
        why = f"ended by the operator ({END_HINT})"
    elif s.raw.get(STAND_IN):
        why = "deleted in Amplify (missed by the run)"
    end = s.state_changed_at
    reported = inputs.usage_reported_through.get(s.id)
    if end is not None and _awaits_final_usage(s, inputs):
        return [
            Change(
                ChangeKind.WAITING,
                "subscription",
                ref,
                _rec(current.uuid),
                f"{why} at {end.isoformat()}; ends in Recurly once usage up to then is reported "
                f"(reported through {reported.isoformat() if reported else 'nothing yet'})",
                phase=PHASE_REPORT,
                key=s.id,
            )
        ]
    change = _end_change(ref, current, options, why, migrated=migrated, key=f"end:{s.id}")
    return [change] if change else []


def _awaits_final_usage(s: AmplifySubscription, inputs: SubscriptionInputs) -> bool:
    """An ended subscription whose usage up to its end is not reported yet: it must not end in Recurly yet."""
    end = s.state_changed_at
    reported = inputs.usage_reported_through.get(s.id)
    plan = inputs.plans.get(s.plan_name)
    billable = bool(plan and plan.add_on_codes) and s.approval_state == literals.APPROVAL_APPROVED
    return billable and end is not None and (reported is None or reported < end)


def awaiting_final_usage(inputs: SubscriptionInputs, options: SubscriptionOptions) -> list[str]:
    """Amplify ids of ended subscriptions with a Recurly subscription that wait for their last usage.

    sync-subscriptions reports that usage first and then ends them in the same run (DESIGN.md §3: "usage up
    to that moment is reported first"); without it the end would wait for the next run's report-usage.
    """
    matched = match_subscriptions(inputs, options)
    return sorted(
        s.id
        for s in inputs.amplify
        if s.id in matched and ended_state(s) and _unknown_values(s) is None and _awaits_final_usage(s, inputs)
    )


def deleted_stand_in(
    amplify_id: str, plan_name: str, missed_at: datetime, *, why: str = DELETED, name: str = "(deleted)"
) -> AmplifySubscription:
    """A journal-linked subscription that ends without Amplify saying so, as an ended one (DESIGN.md §3).

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
    code being the prefix and the quota id (DESIGN.md §2), so that its usage is reported as before."""
    codes = tuple(sorted(current.add_on_codes))
    quotas = {code.removeprefix(add_on_prefix): code for code in codes if code.startswith(add_on_prefix)}
    return LinkedPlan(plan_name, current.plan_code, "", codes, quotas)
