"""The subscription facts sync-subscriptions keeps in the journal (links, names, misses, operator ends), as planned
journal changes (docs/architecture.md, "Journal effects"): a dry run shows them, a real run audits them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from amplify_billing.changes import Change
from amplify_billing.collaborators import Reading
from amplify_billing.commands.options import SyncOptions
from amplify_billing.errors import ConfigError
from amplify_billing.gather.subscriptions import LinkReader, endable, reads_of, subscription_inputs
from amplify_billing.journal_changes import set_link
from amplify_billing.links import ACTIVE_SINCE_LINK, END_LINK, MISSED_LINK, NAME_LINK, SUBSCRIPTION_LINK
from amplify_billing.reconcile.subscriptions import (
    DELETED,
    STAND_IN,
    SubscriptionInputs,
    SubscriptionOptions,
    match_subscriptions,
)


def missed(journal: LinkReader, inputs: SubscriptionInputs) -> list[Change]:
    """The moment a subscription was proven deleted, so later runs end its usage there."""
    known = journal.links(MISSED_LINK)
    changes = []
    for s in inputs.amplify:
        deleted = s.raw.get(STAND_IN) == DELETED
        if deleted and not known.get(s.id) and s.state_changed_at is not None:
            changes.append(set_link(MISSED_LINK, s.id, s.state_changed_at.isoformat()))
        elif not deleted and known.get(s.id):
            changes.append(set_link(MISSED_LINK, s.id, ""))  # listed again (a listing glitch): not deleted after all
    return changes


def operator_ends(rt: Reading, options: SyncOptions) -> list[Change]:
    """--end: each id must be one the tool cannot end by itself (else exit 2 naming it); kept in the journal, so
    later runs finish the end (its final usage must settle first)."""
    if not options.end:
        return []
    now = rt.clock()
    asked: dict[str, datetime] = {amplify_id: now for amplify_id in options.end}
    allowed = endable(subscription_inputs(reads_of(rt), ends=asked))
    wrong = sorted(set(options.end) - allowed)
    if wrong:
        raise ConfigError(
            f"--end {' '.join(wrong)}: not a subscription this tool keeps billing without Amplify's word (one whose "
            "product left the opted-in catalog, or a linked one Amplify no longer lists). End a listed subscription "
            "in Amplify instead; see the findings of sync-subscriptions for the ids --end accepts"
        )
    recorded = rt.journal_view().links(END_LINK)
    return [set_link(END_LINK, i, now.isoformat()) for i in sorted(asked) if not recorded.get(i)]


def names(journal: LinkReader, inputs: SubscriptionInputs, links: Mapping[str, str]) -> list[Change]:
    """The name of each linked subscription: a later run that misses it in a listing reads it by name."""
    known = journal.links(NAME_LINK)
    return [
        set_link(NAME_LINK, s.id, s.name)
        for s in inputs.amplify
        if s.id in links and not s.raw.get(STAND_IN) and known.get(s.id) != s.name
    ]


def active_since(journal: LinkReader, inputs: SubscriptionInputs, links: Mapping[str, str]) -> list[Change]:
    """When each linked subscription became active, while its Amplify state still says so: once it ends, its state's
    timestamp is the end, and its final usage is billed from this (usage/reporting.py). A create records it too
    (``reconcile/subscriptions.created_links``); this covers subscriptions linked before that, or found again."""
    known = journal.links(ACTIVE_SINCE_LINK)
    return [
        set_link(ACTIVE_SINCE_LINK, s.id, s.active_since.isoformat())
        for s in inputs.amplify
        if s.id in links and s.active_since is not None and not known.get(s.id)
    ]


def links(journal: LinkReader, inputs: SubscriptionInputs, options: SubscriptionOptions) -> list[Change]:
    """After the writes: the link of every matched subscription, and the names and activation times of the linked
    ones."""
    matched = match_subscriptions(inputs, options)
    changes = [
        set_link(SUBSCRIPTION_LINK, amplify_id, uuid)
        for amplify_id, uuid in matched.items()
        if inputs.journal_links.get(amplify_id) != uuid
    ]
    linked = {**journal.links(SUBSCRIPTION_LINK), **matched}
    return changes + names(journal, inputs, linked) + active_since(journal, inputs, linked)
