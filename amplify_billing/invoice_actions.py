"""Typed actions and values of marketplace mode (``sync-invoices``), beside ``actions.py``'s.

Amplify rates and meters; each of its ``SubscriptionInvoice``s becomes one Recurly invoice made by one
``create_purchase`` (docs/architecture.md, "How to add a command"). The executors are ``recurly/invoice_executor.py``
(the purchase, the stop of a voided invoice, the journal's intents) and ``amplify/invoice_executor.py`` (the
invoice's ``billing``, ``state`` and ``status`` subresources).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from amplify_billing.actions import Action, Later
from amplify_billing.settings.secret import Secret

# the journal's link kind: Amplify invoice id -> the Recurly invoice id made for it
INVOICE_LINK = "invoice"
# the journal's intent kind of a purchase (key: its po_number)
INVOICE_INTENT = "invoice"


@dataclass(frozen=True, slots=True)
class RecurlyInvoice:
    """A Recurly charge invoice as this tool needs it (Recurly ``Invoice`` schema, API v2021-02-25)."""

    id: str
    number: str
    state: str  # pending | processing | past_due | paid | failed (charge); open | closed | voided (credit)
    account_code: str
    currency: str
    subtotal: Decimal  # before discounts and taxes
    total: Decimal  # with taxes: what the consumer pays
    po_number: str | None = None
    created_at: datetime | None = None
    due_at: datetime | None = None
    type: str = "charge"


@dataclass(frozen=True, slots=True)
class PurchaseLine:
    """One one-time charge of a purchase (Recurly ``LineItemCreate``, ``type: charge``, quantity 1)."""

    product_code: str  # derived from the Amplify invoice, at most 50 characters
    description: str  # at most 255 characters
    unit_amount: Decimal
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class CreateInvoicePurchase(Action):
    """One Recurly invoice for one Amplify invoice: intent, ``create_purchase`` with its Idempotency-Key, link."""

    amplify_invoice_id: str
    amplify_invoice_name: str
    subscription_name: str
    account_code: str
    currency: str
    po_number: str  # the deterministic key that ties the Recurly invoice to the Amplify one
    collection_method: str
    lines: tuple[PurchaseLine, ...]


@dataclass(frozen=True, slots=True)
class MarkInvoiceFailed(Action):
    """Stop collecting a Recurly invoice whose Amplify invoice was voided (``mark_invoice_failed``; ``void_invoice``
    applies to credit invoices only)."""

    invoice_id: str
    number: str


@dataclass(frozen=True, slots=True)
class ResolveInvoiceIntent(Action):
    """Close a purchase intent a killed run left open: done with the invoice a lookup found, or abandoned."""

    system: ClassVar[str] = "journal"
    key: str
    result_id: str | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class WriteInvoicePayment(Action):
    """``billing.payment`` of the Amplify invoice: the Recurly invoice and where the consumer pays it."""

    system: ClassVar[str] = "amplify"
    resource: Mapping[str, Any] = field(repr=False, compare=False)
    invoice_id: str | Later
    customer_id: str  # the Recurly account code
    total: Decimal  # the Amplify total (billing.payment.amount.total)
    link: Secret = field(repr=False)  # the account's hosted page: it logs in whoever holds it
    # the Recurly invoice when it exists before this run; else the create's answer
    known: RecurlyInvoice | None = None


@dataclass(frozen=True, slots=True)
class SetInvoiceState(Action):
    system: ClassVar[str] = "amplify"
    resource: Mapping[str, Any] = field(repr=False, compare=False)
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class SetInvoiceStatus(Action):
    system: ClassVar[str] = "amplify"
    resource: Mapping[str, Any] = field(repr=False, compare=False)
    level: str
    reason: str
