"""The subscription facts sync-subscriptions keeps in the journal (links, names, misses, operator ends), and the
subscription writes that keep the memoised Recurly listing current (docs/architecture.md, "Executors")."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from amplify_billing.actions import Action, CancelSubscription, CreateSubscription, TerminateSubscription
from amplify_billing.apply import Handler
from amplify_billing.commands.options import SyncOptions
from amplify_billing.errors import ConfigError
from amplify_billing.execute import default_handlers
from amplify_billing.gather.subscriptions import endable, reads_of, subscription_inputs
from amplify_billing.links import CREATED_LINK, END_LINK, MISSED_LINK, NAME_LINK, SUBSCRIPTION_LINK
from amplify_billing.reconcile.subscriptions import (
    DELETED,
    STAND_IN,
    SubscriptionInputs,
    SubscriptionOptions,
    match_subscriptions,
)
from amplify_billing.recurly.translate import subscription_body
from amplify_billing.runtime import Runtime


def remember_missed(rt: Runtime, inputs: SubscriptionInputs) -> None:
    """Keep the moment a subscription was proven deleted, so later runs end its usage there (real runs only)."""
    journal = rt.journal()
    missed = journal.links(MISSED_LINK)
    for s in inputs.amplify:
        deleted = s.raw.get(STAND_IN) == DELETED
        if deleted and not missed.get(s.id) and s.state_changed_at is not None:
            journal.set_link(MISSED_LINK, s.id, s.state_changed_at.isoformat())
        elif not deleted and missed.get(s.id):
            journal.set_link(MISSED_LINK, s.id, "")  # listed again (a listing glitch): not deleted after all


def subscription_handlers(rt: Runtime) -> dict[type[Action], Handler]:
    handlers = default_handlers(rt)

    def create(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, CreateSubscription)
        created = rt.recurly().create_subscription(subscription_body(action), idempotency_key=key)
        uuid = str(created.get("uuid"))
        journal = rt.journal()
        journal.set_link(SUBSCRIPTION_LINK, action.amplify_id, uuid)
        # created by this journal: every usage record on it goes through this journal's ledger, so report-usage
        # need not read Recurly to learn what is already there
        journal.set_link(CREATED_LINK, action.amplify_id, uuid)
        rt.snapshots().record_recurly_subscription(created)
        return uuid

    def end(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        if isinstance(action, CancelSubscription):
            answer = rt.recurly().cancel_subscription(
                f"uuid-{action.uuid}", {"timeframe": "term_end"}, idempotency_key=key
            )
        else:
            assert isinstance(action, TerminateSubscription)
            answer = rt.recurly().terminate_subscription(
                f"uuid-{action.uuid}", {"refund": action.refund, "charge": True}, idempotency_key=key
            )
        rt.snapshots().record_recurly_subscription(answer)
        return str(answer.get("uuid") or "") or None

    handlers[CreateSubscription] = create
    handlers[CancelSubscription] = end
    handlers[TerminateSubscription] = end
    return handlers


def operator_ends(rt: Runtime, options: SyncOptions) -> dict[str, datetime]:
    """--end: each id must be one the tool cannot end by itself (else exit 2 naming it); kept in the journal on a
    real run, so later runs finish the end (its final usage must settle first)."""
    if not options.end:
        return {}
    now = rt.clock()
    asked = {amplify_id: now for amplify_id in options.end}
    allowed = endable(subscription_inputs(reads_of(rt), ends=asked))
    wrong = sorted(set(options.end) - allowed)
    if wrong:
        raise ConfigError(
            f"--end {' '.join(wrong)}: not a subscription this tool keeps billing without Amplify's word (one whose "
            "product left the opted-in catalog, or a linked one Amplify no longer lists). End a listed subscription "
            "in Amplify instead; see the findings of sync-subscriptions for the ids --end accepts"
        )
    if options.dry_run:
        return asked
    journal = rt.journal()
    recorded = journal.links(END_LINK)
    for amplify_id in sorted(asked):
        if not recorded.get(amplify_id):
            journal.set_link(END_LINK, amplify_id, now.isoformat())
    return {}


def remember_names(rt: Runtime, inputs: SubscriptionInputs, links: Mapping[str, str]) -> None:
    """The name of each linked subscription: a later run that misses it in a listing reads it by name."""
    journal = rt.journal()
    names = journal.links(NAME_LINK)
    for s in inputs.amplify:
        if s.id in links and not s.raw.get(STAND_IN) and names.get(s.id) != s.name:
            journal.set_link(NAME_LINK, s.id, s.name)


def remember_links(rt: Runtime, inputs: SubscriptionInputs, options: SubscriptionOptions) -> None:
    """After the writes: the link of every matched subscription, and the names of the linked ones (real runs)."""
    journal = rt.journal()
    for amplify_id, uuid in match_subscriptions(inputs, options).items():
        if inputs.journal_links.get(amplify_id) != uuid:
            journal.set_link(SUBSCRIPTION_LINK, amplify_id, uuid)
    remember_names(rt, inputs, journal.links(SUBSCRIPTION_LINK))
