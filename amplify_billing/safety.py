"""The safety valve (DESIGN.md §6): refuse mass destruction unless --force.

An empty or truncated listing (a lost permission, a wrong tenant) looks exactly like "everything was
deleted". So a run that would deactivate, cancel or terminate more than the configured share of the
linked objects refuses; and one that would destroy *every* linked object refuses whatever the count.
"""

from __future__ import annotations

from decimal import Decimal

from amplify_billing.errors import SafetyValveError
from amplify_billing.models import ChangeSet
from amplify_billing.settings import SafetySettings


def check(changeset: ChangeSet, safety: SafetySettings, *, force: bool, what: str) -> None:
    destructive = len(changeset.destructive)
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
    raise SafetyValveError(
        f"{changeset.command} would {what} {destructive} of {linked} linked Recurly objects ({percent}%), "
        f"{reason}; nothing was written. Check that the Amplify service account still sees the catalog and "
        "subscriptions (a lost permission looks like an empty listing); if this is intended, run again with --force"
    )
