"""Amplify's Marketplaces and who bills each: the reads behind the double billing guard.

One listing per invocation (``Snapshots.remember``: ``run``'s planning pass and its phases share it), proven whole
by its total count; only when some subscription billed by Recurly names a Marketplace. The judgement is pure:
``reconcile/billing_modes.guard_double_billing`` (docs/architecture.md, "Where each rule lives").
"""

from __future__ import annotations

from collections.abc import Iterable

from amplify_billing.amplify.parse import dig
from amplify_billing.errors import AmplifyBillingError
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.billing_modes import MarketplaceBilling, needs_marketplaces
from amplify_billing.snapshots import Completeness, ResourceLister, Snapshots


def read_marketplaces(amplify: ResourceLister) -> MarketplaceBilling:
    """Every Marketplace's billing vendor (``billing.payment.type``, reference §3.6) and title."""
    try:
        items, proof = amplify.listing("marketplaces")
    except AmplifyBillingError as error:
        return MarketplaceBilling(unproven=f"the Marketplaces could not be read ({error})")
    vendors: dict[str, str | None] = {}
    titles: dict[str, str] = {}
    for item in items:
        name = item.get("name")
        if isinstance(name, str) and name:
            vendor = dig(item, "billing.payment.type")
            vendors[name] = str(vendor) if vendor else None
            titles[name] = str(item.get("title") or "")
    read = Completeness.of([proof])
    return MarketplaceBilling(vendors, titles, "" if read.complete else read.why)


def marketplace_billing(snapshots: Snapshots, subscriptions: Iterable[AmplifySubscription]) -> MarketplaceBilling:
    """The Marketplaces, read once per invocation when ``subscriptions`` name any (else nothing is read)."""
    if not needs_marketplaces(subscriptions):
        return MarketplaceBilling()
    found: MarketplaceBilling = snapshots.remember("amplify_marketplaces", lambda: read_marketplaces(snapshots.amplify))
    return found
