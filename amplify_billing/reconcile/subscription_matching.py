"""sync-subscriptions, one step: which Recurly subscription is each Amplify subscription's. Pure.

Identity, in order of trust: the journal's link, then the Recurly custom field holding the Amplify id, then the
Amplify subscription's own link attribute, then (account, plan). Two different candidates are ambiguous: the diff
reports them, never guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amplify_billing.identity import account_code
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.subscription_inputs import (
    LinkedPlan,
    RecurlySubscription,
    SubscriptionInputs,
    SubscriptionOptions,
    ended_state,
    unknown_values,
)


@dataclass
class Matcher:
    """The live Recurly subscriptions indexed by each kind of identity, and those some Amplify id already claims
    (a claimed one is never matched by account and plan to another subscription)."""

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


def linked_uuid(s: AmplifySubscription, inputs: SubscriptionInputs, options: SubscriptionOptions) -> str | None:
    """The Recurly subscription this Amplify subscription was linked to: the journal's link, else its attribute."""
    return inputs.journal_links.get(s.id) or s.attributes.get(options.link_attribute) or None


def unmatched_links(inputs: SubscriptionInputs, options: SubscriptionOptions) -> dict[str, str]:
    """Amplify id -> linked Recurly uuid, for subscriptions that would get a subscription created (listed, to be
    billed, no candidate) although they were linked to one the live listing does not show: paused (`state=live`
    never lists it), ended, or missed by a listing cut short. Each is to be read directly before any create."""
    matcher = Matcher(inputs, options)
    found: dict[str, str] = {}
    for s in inputs.amplify:
        plan = inputs.plans.get(s.plan_name)
        if plan is None or ended_state(s) or unknown_values(s) or s.id in inputs.kept:
            continue
        uuid = linked_uuid(s, inputs, options)
        if uuid and uuid not in matcher.by_uuid and not matcher.match(s, account_code(s, options.owner), plan):
            found[s.id] = uuid
    return found


def match_subscriptions(inputs: SubscriptionInputs, options: SubscriptionOptions) -> dict[str, str]:
    """Amplify id -> Recurly uuid for every subscription with exactly one match (to remember in the journal)."""
    matcher = Matcher(inputs, options)
    found: dict[str, str] = {}
    for s in inputs.amplify:
        plan = inputs.plans.get(s.plan_name)
        if plan is None:
            continue
        candidates = matcher.match(s, account_code(s, options.owner), plan)
        if len(candidates) == 1:
            found[s.id] = candidates[0].uuid
    return found
