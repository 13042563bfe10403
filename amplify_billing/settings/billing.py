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
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from amplify_billing.settings.values import FileContext, Problem, before, one_of, show, to_text

BillingMode = Literal["recurly", "marketplace"]
InvoiceCollection = Literal["automatic", "manual"]

RECURLY_MODE: BillingMode = "recurly"
MARKETPLACE_MODE: BillingMode = "marketplace"

_TIME_HINT = "expected a UTC time such as 2027-01-01T00:00:00Z"


def utc_time(value: object, context: FileContext | None) -> datetime:
    """A time with its offset, in UTC: a switch is one instant for both systems, never a local wall time."""
    if isinstance(value, datetime):
        moment, written = value, value.isoformat()
    else:
        written = to_text(value, context).strip()
        try:
            moment = datetime.fromisoformat(written.replace("Z", "+00:00"))
        except ValueError:
            raise Problem(f"{_TIME_HINT}, got {show(written)}") from None
    if moment.tzinfo is None:
        raise Problem(f"{_TIME_HINT}, got {show(written)} (no offset: add Z)")
    if moment.utcoffset() != timedelta(0):
        raise Problem(f"{_TIME_HINT}, got {show(written)} (write it in UTC, with Z)")
    return moment.astimezone(UTC)


def _switch_times(value: object, context: FileContext | None) -> Any:
    """One time for every Marketplace, or {Marketplace name: time}."""
    if not isinstance(value, Mapping):
        return utc_time(value, context)
    times: dict[str, datetime] = {}
    for name, moment in value.items():
        try:
            times[str(name)] = utc_time(moment, context)
        except Problem as problem:
            raise Problem(f"Marketplace {name}: {problem.text}") from None
    return times


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
    # when each Marketplace's mode as configured here took (or takes) effect; before it the other mode billed it.
    # One UTC time for every Marketplace, or {Marketplace name: time}. The rules that keep each period billed once
    # across it: reconcile/mode_switch.py (docs/architecture.md, "Where each rule lives"; README, "Switching a
    # Marketplace between modes")
    switch_at: Annotated[datetime | Mapping[str, datetime] | None, before(_switch_times)] = None

    def mode_of(self, marketplace: str | None) -> BillingMode:
        """The mode of the Marketplace named ``marketplace`` (None: a subscription that names none)."""
        if marketplace is not None and marketplace in self.marketplaces:
            return self.marketplaces[marketplace]
        return self.mode

    def invoiced(self, marketplace: str | None) -> bool:
        """True when Amplify's invoices are the bill for this Marketplace (no Recurly plan, subscription or usage)."""
        return self.mode_of(marketplace) == MARKETPLACE_MODE

    def switch_of(self, marketplace: str | None) -> datetime | None:
        """When the Marketplace named ``marketplace`` switched (or switches) to its configured mode, if it does."""
        if isinstance(self.switch_at, Mapping):
            return self.switch_at.get(marketplace) if marketplace is not None else None
        return self.switch_at

    def switch(self, marketplace: str | None) -> tuple[BillingMode, datetime] | None:
        """The Marketplace's configured mode and when it took (or takes) effect, if it switched modes."""
        moment = self.switch_of(marketplace)
        return None if moment is None else (self.mode_of(marketplace), moment)

    def reads_invoices(self, marketplace: str | None) -> bool:
        """Whether Amplify's invoices of this Marketplace are sync-invoices' to judge: in marketplace mode, or
        switched between modes (the invoices on Amplify's side of the switch are sent, the others marked)."""
        return self.invoiced(marketplace) or self.switch_of(marketplace) is not None

    @property
    def any_invoiced(self) -> bool:
        """Whether sync-invoices has any Marketplace to read (``run`` includes it only then)."""
        switched = self.switch_at is not None and (not isinstance(self.switch_at, Mapping) or bool(self.switch_at))
        return self.mode == MARKETPLACE_MODE or MARKETPLACE_MODE in self.marketplaces.values() or switched
