"""Which subscriptions Recurly bills and which Amplify's own invoices bill, by their Marketplace's mode. Pure.

A subscription of a Marketplace in ``marketplace`` mode (``billing`` settings) gets no Recurly plan, subscription
nor usage: Amplify's invoice is its bill, made a Recurly invoice by ``sync-invoices``. Its owner still gets a
Recurly account (``link-accounts``), where that invoice goes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from amplify_billing.models import AmplifySubscription
from amplify_billing.settings.billing import BillingSettings


def marketplace_of(subscription: AmplifySubscription) -> str | None:
    """The name of the Marketplace a subscription was made in (``marketplace.name``, reference §3.5)."""
    market = subscription.raw.get("marketplace") if subscription.raw else None
    name = market.get("name") if isinstance(market, Mapping) else None
    return name if isinstance(name, str) and name else None


def billed_by_recurly(
    subscriptions: Iterable[AmplifySubscription], billing: BillingSettings
) -> list[AmplifySubscription]:
    """The subscriptions Recurly rates (every one, unless some Marketplace is in marketplace mode)."""
    if not billing.any_invoiced:
        return list(subscriptions)
    return [s for s in subscriptions if not billing.invoiced(marketplace_of(s))]


def invoiced_query(billing: BillingSettings) -> str | None:
    """The RSQL filter of the subscriptions Amplify's invoices bill (None: none do)."""
    if not billing.any_invoiced:
        return None
    names = sorted(billing.marketplaces)
    if billing.mode == "marketplace":
        others = [n for n in names if not billing.invoiced(n)]
        quoted = ",".join(f'"{n}"' for n in others)
        return f"marketplace.name=out=({quoted})" if others else "marketplace.name==*"
    quoted = ",".join(f'"{n}"' for n in names if billing.invoiced(n))
    return f"marketplace.name=in=({quoted})"
