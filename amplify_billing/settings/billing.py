"""The ``billing`` section: who rates each Marketplace's subscriptions, Recurly or Amplify itself.

``recurly`` (the default, and the tool's behaviour before this section existed): Recurly plans, subscriptions and
usage counted from Traceability. ``marketplace``: the Marketplace has billing enabled with vendor Custom, Amplify
writes a ``SubscriptionInvoice`` for each consumer-organization subscription, and ``sync-invoices`` makes each one
a Recurly invoice (the custom billing flow of Axway's "Custom Marketplace billing integration" guide,
docs.axway.com/bundle/amplify-central/page/docs/integrate_with_central/custom_billing/index.html). A Marketplace is
named by its ``name`` (a UUID), as a subscription's ``marketplace.name`` names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from amplify_billing.settings.values import one_of

BillingMode = Literal["recurly", "marketplace"]
InvoiceCollection = Literal["automatic", "manual"]

RECURLY_MODE: BillingMode = "recurly"
MARKETPLACE_MODE: BillingMode = "marketplace"


class BillingSettings(BaseModel):
    # frozen and extra=forbid like every section (settings/models.py)
    model_config = ConfigDict(frozen=True, extra="forbid")

    # the mode of every Marketplace not listed in ``marketplaces``
    mode: Annotated[BillingMode, one_of(BillingMode)] = RECURLY_MODE
    # Marketplace name (its UUID) -> recurly | marketplace
    marketplaces: Mapping[str, Annotated[BillingMode, one_of(BillingMode)]] = Field(default_factory=dict)
    # how the Recurly invoices of marketplace mode are collected: automatic charges the card on file, manual is paid
    # by the consumer on the account's hosted page (Recurly PurchaseCreate.collection_method)
    collection_method: Annotated[InvoiceCollection, one_of(InvoiceCollection)] = "automatic"

    def mode_of(self, marketplace: str | None) -> BillingMode:
        """The mode of the Marketplace named ``marketplace`` (None: a subscription that names none)."""
        if marketplace is not None and marketplace in self.marketplaces:
            return self.marketplaces[marketplace]
        return self.mode

    def invoiced(self, marketplace: str | None) -> bool:
        """True when Amplify's invoices are the bill for this Marketplace (no Recurly plan, subscription or usage)."""
        return self.mode_of(marketplace) == MARKETPLACE_MODE

    @property
    def any_invoiced(self) -> bool:
        return self.mode == MARKETPLACE_MODE or MARKETPLACE_MODE in self.marketplaces.values()
