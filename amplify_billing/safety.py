"""The safety valve (DESIGN.md §6): refuse mass destruction unless --force.

An empty or truncated listing (a lost permission, a wrong tenant) looks exactly like "everything was
deleted". So a run that would deactivate, cancel or terminate more than the configured share of the
linked objects refuses; and one that would destroy *every* linked object refuses whatever the count.
A create for an Amplify subscription that was already linked to a Recurly subscription counts the same
way: when the Recurly side looks empty (a listing cut short), re-creating everything bills twice.
"""

from __future__ import annotations

from decimal import Decimal

from amplify_billing.errors import SafetyValveError
from amplify_billing.models import ChangeKind, ChangeSet
from amplify_billing.reconcile.subscriptions import REPLACES
from amplify_billing.settings import SafetySettings


def recreates(changeset: ChangeSet) -> int:
    """Creates of a second Recurly subscription for an Amplify subscription that was already linked to one."""
    return sum(1 for c in changeset.changes if c.kind is ChangeKind.CREATE and c.payload.get(REPLACES))


def check(changeset: ChangeSet, safety: SafetySettings, *, force: bool, what: str) -> None:
    again = recreates(changeset)
    destructive = len(changeset.destructive) + again
    linked = changeset.linked_count
    if force or destructive == 0 or linked == 0:
        return
    share = Decimal(destructive) / Decimal(linked)
    # one object is too few to tell a lost permission from a real change; two or more all going at once is not
    everything = destructive >= linked >= 2
    too_many = destructive >= safety.min_destructive_count and share > safety.max_destructive_fraction
    if not (everything or too_many):
        return
    percent = (share * 100).quantize(Decimal(1))
    limit = (safety.max_destructive_fraction * 100).quantize(Decimal(1))
    reason = (
        "every linked object"
        if everything
        else f"more than safety.max_destructive_fraction ({limit}%)"
    )
    acts = f"{what} {destructive}"
    if again:
        ends = len(changeset.destructive)
        second = f"create a second Recurly subscription for {again} already linked Amplify subscription(s)"
        acts = f"{what} {ends} and {second}, {destructive}" if ends else f"{second}, {destructive}"
    raise SafetyValveError(
        f"{changeset.command} would {acts} of {linked} linked Recurly objects ({percent}%), "
        f"{reason}; nothing was written. Check that the Amplify service account still sees the catalog and "
        "subscriptions (a lost permission looks like an empty listing) and that Recurly lists every live "
        "subscription; if this is intended, run again with --force"
    )
