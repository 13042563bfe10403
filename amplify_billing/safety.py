"""The safety valve (DESIGN.md §6): refuse mass destruction unless --force.

An empty or truncated listing (a lost permission, a wrong tenant) looks exactly like "everything was
deleted". So a run that would deactivate, cancel or terminate more than the configured share of the
linked objects refuses; and one that would destroy *every* linked object refuses whatever the count.
A create for an Amplify subscription that was already linked to a Recurly subscription counts the same
way: when the Recurly side looks empty (a listing cut short), re-creating everything bills twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from amplify_billing.actions import CreateSubscription
from amplify_billing.changes import ChangeSet
from amplify_billing.errors import SafetyValveError
from amplify_billing.settings import SafetySettings


def recreates(changeset: ChangeSet) -> int:
    """Creates of a second Recurly subscription for an Amplify subscription that was already linked to one."""
    return sum(1 for c in changeset.changes if isinstance(c.action, CreateSubscription) and c.action.replaces)


def refusal(plan: ChangeSet | Sequence[ChangeSet], safety: SafetySettings, *, force: bool) -> str | None:
    """Why the valve refuses this plan (None: it may go ahead). ``plan`` is one command's changes or a whole
    cycle's: ``run`` judges every phase's changes together, before its first write."""
    sets = [plan] if isinstance(plan, ChangeSet) else list(plan)
    again = sum(recreates(c) for c in sets)
    ends = sum(len(c.destructive) for c in sets)
    destructive = ends + again
    linked = max((c.linked_count for c in sets), default=0)
    if force or destructive == 0 or linked == 0:
        return None
    share = Decimal(destructive) / Decimal(linked)
    # one object is too few to tell a lost permission from a real change; two or more all going at once is not
    everything = destructive >= linked >= 2
    too_many = destructive >= safety.min_destructive_count and share > safety.max_destructive_fraction
    if not (everything or too_many):
        return None
    percent = (share * 100).quantize(Decimal(1))
    limit = (safety.max_destructive_fraction * 100).quantize(Decimal(1))
    reason = "every linked object" if everything else f"more than safety.max_destructive_fraction ({limit}%)"
    verbs = sorted({verb for c in sets for verb in _verbs(c)})
    acts = f"{' or '.join(verbs) or 'change'} {destructive}"
    if again:
        second = f"create a second Recurly subscription for {again} already linked Amplify subscription(s)"
        acts = f"{acts.rsplit(' ', 1)[0]} {ends} and {second}, {destructive}" if ends else f"{second}, {destructive}"
    who = " + ".join(c.command for c in sets if c.destructive or recreates(c)) or sets[0].command
    return (
        f"{who} would {acts} of {linked} linked Recurly objects ({percent}%), "
        f"{reason}; nothing was written. Check that the Amplify service account still sees the catalog and "
        "subscriptions (a lost permission looks like an empty listing) and that Recurly lists every live "
        "subscription; if this is intended, run again with --force"
    )


# what each command's destructive changes do, for the refusal
VERBS = {"sync-plans": "deactivate", "sync-subscriptions": "cancel or terminate"}


def _verbs(changeset: ChangeSet) -> set[str]:
    return {VERBS.get(changeset.command, "change")} if changeset.destructive else set()


def check(plan: ChangeSet | Sequence[ChangeSet], safety: SafetySettings, *, force: bool) -> None:
    """Raise ``SafetyValveError`` when the valve refuses ``plan`` (see ``refusal``)."""
    reason = refusal(plan, safety, force=force)
    if reason is not None:
        raise SafetyValveError(reason)
