"""Which subscriptions Recurly bills and which Amplify's own invoices bill, by their Marketplace's mode. Pure.

A subscription of a Marketplace in ``marketplace`` mode (``billing`` settings) gets no Recurly plan, subscription
nor usage: Amplify's invoice is its bill, made a Recurly invoice by ``sync-invoices``. Its owner still gets a
Recurly account (``link-accounts``), where that invoice goes.

The double billing guard (docs/architecture.md, "Where each rule lives"): a Marketplace whose billing is on in
Amplify (``billing.payment.type``, vendor Custom) has Amplify write an invoice for each subscription; in mode
``recurly`` Recurly would bill the same subscription too. Its subscriptions are withheld from Recurly billing (no
create, no end, no usage) with one finding per Marketplace naming the fix. Where the Marketplaces could not be read
whole, a subscription of a Marketplace the listing did not show is withheld too: absence proves nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from amplify_billing.amplify import literals
from amplify_billing.changes import Change, ChangeKind
from amplify_billing.models import AmplifySubscription
from amplify_billing.settings.billing import BillingSettings

# findings come last in a change set (the PHASE_REPORT of every reconcile module)
PHASE_REPORT = 95
CUSTOM_VENDOR = "custom"


@dataclass(frozen=True)
class MarketplaceBilling:
    """Amplify's Marketplaces as read: each one's billing vendor (None: billing off) and title, by name."""

    vendors: Mapping[str, str | None] = field(default_factory=dict)
    titles: Mapping[str, str] = field(default_factory=dict)
    unproven: str = ""  # why the listing is not proven whole, or could not be read ("" when it is)


@dataclass(frozen=True)
class Withheld:
    """The subscriptions of one Marketplace that Recurly must not bill, and why."""

    marketplace: str
    title: str
    vendor: str | None  # the vendor Amplify bills with; None: unknown (the Marketplaces were not read whole)
    subscription_ids: tuple[str, ...]
    why: str = ""  # for an unknown vendor: why the read proves nothing


def marketplace_of(subscription: AmplifySubscription) -> str | None:
    """The name of the Marketplace a subscription was made in (``marketplace.name``, reference §3.5)."""
    market = subscription.raw.get("marketplace") if subscription.raw else None
    name = market.get("name") if isinstance(market, Mapping) else None
    return name if isinstance(name, str) and name else None


def billed_by_recurly(
    subscriptions: Iterable[AmplifySubscription], billing: BillingSettings, now: datetime | None = None
) -> list[AmplifySubscription]:
    """The subscriptions Recurly rates (every one, unless some Marketplace is in marketplace mode).

    A Marketplace switched from recurly to marketplace at ``billing.switch_at`` (``reconcile/mode_switch.py``):
    Recurly billed it until then, so its subscriptions stay, and from the switch on each is one cancelled at the
    switch: its usage up to the switch is reported first, then its Recurly subscription is cancelled as for any
    cancellation (``subscriptions.on_cancel``; the term already billed is not refunded) and nothing is created."""
    if not billing.any_invoiced:
        return list(subscriptions)
    kept: list[AmplifySubscription] = []
    for s in subscriptions:
        name = marketplace_of(s)
        if not billing.invoiced(name):
            kept.append(s)
        elif (until := billing.switch_of(name)) is not None:
            if now is not None and now < until:
                kept.append(s)
            elif s.approval_state == literals.APPROVAL_APPROVED:  # one never approved is Amplify's alone now
                kept.append(ended_at_switch(s, until))
    return kept


def ended_at_switch(subscription: AmplifySubscription, until: datetime) -> AmplifySubscription:
    """The subscription as Recurly must see it once its Marketplace switched to marketplace mode: cancelled then
    (or when it really ended, if earlier)."""
    ended = subscription.state_changed_at
    if subscription.state_name in literals.ENDED_STATES and ended is not None and ended <= until:
        return subscription
    return replace(subscription, state_name=literals.STATE_CANCELLED, state_changed_at=until)


def recurly_from(subscription: AmplifySubscription, billing: BillingSettings) -> datetime | None:
    """When Recurly starts billing a subscription whose Marketplace switched from marketplace to recurly mode at
    ``billing.switch_at`` (None: Recurly bills it from its start). Before it, Amplify's invoices billed it
    (``reconcile/mode_switch.py``), so its Recurly term and its usage begin there, never earlier."""
    name = marketplace_of(subscription)
    return None if billing.invoiced(name) else billing.switch_of(name)


def future_starts(
    subscriptions: Iterable[AmplifySubscription], billing: BillingSettings, now: datetime
) -> dict[str, datetime]:
    """Amplify id -> Recurly's ``starts_at`` for the subscriptions whose Recurly subscription is created before
    their Marketplace's switch to recurly mode: it starts (state ``future``, nothing billed) at the switch."""
    return {s.id: at for s in subscriptions if (at := recurly_from(s, billing)) is not None and at > now}


def late_starts(
    subscriptions: Iterable[AmplifySubscription], billing: BillingSettings, now: datetime
) -> dict[str, tuple[datetime, datetime]]:
    """Amplify id -> (switch, now) for the approved subscriptions of a Marketplace that switched to recurly mode
    whose Recurly subscription, made now, starts after the switch: the base price from the switch to now is billed
    by neither side (Amplify's invoices stop at the switch). One active only from after the switch has no gap."""
    late: dict[str, tuple[datetime, datetime]] = {}
    for s in subscriptions:
        at = recurly_from(s, billing)
        if at is None or at > now or s.approval_state != literals.APPROVAL_APPROVED:
            continue
        if s.active_since is None or s.active_since < at:
            late[s.id] = (at, now)
    return late


def invoiced_query(billing: BillingSettings) -> str | None:
    """The RSQL filter of the subscriptions Amplify's invoices bill (None: none do)."""
    if not billing.any_invoiced:
        return None
    switched = billing.switch_at if isinstance(billing.switch_at, Mapping) else {}
    names = sorted({*billing.marketplaces, *switched})
    if billing.reads_invoices(None):  # every Marketplace not named otherwise
        others = [n for n in names if not billing.reads_invoices(n)]
        quoted = ",".join(f'"{n}"' for n in others)
        return f"marketplace.name=out=({quoted})" if others else "marketplace.name==*"
    quoted = ",".join(f'"{n}"' for n in names if billing.reads_invoices(n))
    return f"marketplace.name=in=({quoted})"


def needs_marketplaces(subscriptions: Iterable[AmplifySubscription]) -> bool:
    """Whether the guard has anything to judge: some subscription billed by Recurly names its Marketplace."""
    return any(marketplace_of(s) is not None for s in subscriptions)


def guard_double_billing(
    subscriptions: Iterable[AmplifySubscription],
    marketplaces: MarketplaceBilling,
    billing: BillingSettings,
    now: datetime | None = None,
) -> tuple[list[AmplifySubscription], tuple[Withheld, ...]]:
    """The subscriptions Recurly may bill, and those withheld by Marketplace. ``subscriptions`` are those
    ``billed_by_recurly`` kept: in mode recurly, or switched to marketplace mode (Recurly finishes what it billed
    before the switch, so Amplify's Custom billing is expected there). A Marketplace switching to recurly mode at
    a ``switch_at`` still ahead of ``now`` is Amplify's to bill until then, so Custom billing is expected too: its
    Recurly subscriptions are made to start at the switch, billing nothing before it (``future_starts``). From the
    switch on, Custom billing still on withholds it again, until the operator turns it off (README, "Switching a
    Marketplace between modes")."""
    kept: list[AmplifySubscription] = []
    held: dict[str, list[str]] = {}
    for s in subscriptions:
        name = marketplace_of(s)
        known = name is not None and name in marketplaces.vendors
        start = recurly_from(s, billing)
        if (
            billing.invoiced(name)
            or (start is not None and now is not None and now < start)
            or name is None
            or (known and not marketplaces.vendors[name])
            or (not known and not marketplaces.unproven)
        ):
            kept.append(s)
        else:
            held.setdefault(name, []).append(s.id)
    withheld = tuple(
        Withheld(
            name,
            marketplaces.titles.get(name, ""),
            marketplaces.vendors.get(name),
            tuple(sorted(ids)),
            "" if name in marketplaces.vendors else marketplaces.unproven,
        )
        for name, ids in sorted(held.items())
    )
    return kept, withheld


def withheld_finding(withheld: Withheld) -> Change:
    """One withholding finding per Marketplace (exit 1), with the count and the fix."""
    name = withheld.marketplace
    label = f"Marketplace {withheld.title} ({name})" if withheld.title else f"Marketplace {name}"
    head = f"{len(withheld.subscription_ids)} subscription(s) of {label} are not billed in Recurly: "
    if withheld.vendor is None:
        summary = (
            f"whether Amplify invoices them too (billing on in the Marketplace) is unknown: {withheld.why}; absence "
            f"proves nothing. Give the service account read access to Marketplaces (the Engage (Central) Admin "
            f"role), or set billing.marketplaces: {{{name}: marketplace}} if Amplify bills it"
        )
    else:
        fix = (
            f"Set billing.marketplaces: {{{name}: marketplace}} to bill Amplify's invoices, or turn its Custom billing "
            "off in the Marketplace's settings"
            if withheld.vendor == CUSTOM_VENDOR
            else f"Turn its {withheld.vendor} billing off in the Marketplace's settings to bill it in Recurly"
        )
        summary = (
            f"its billing is on with vendor {withheld.vendor}, so Amplify invoices them too, and billing.mode is "
            f"recurly for it (each would be billed twice). {fix}"
        )
    return Change(
        ChangeKind.FINDING,
        "marketplace",
        label,
        "-",
        head + summary,
        phase=PHASE_REPORT,
        key=f"double-billing:{name}",
        withholds=True,
        amplify_id=name,
    )
