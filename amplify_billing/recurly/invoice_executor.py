"""Typed invoice actions -> Recurly calls and the journal writes around them (docs/architecture.md, "Executors").

A purchase is the exactly-once path of marketplace mode, as a usage post is of recurly mode: an intent in the
journal (keyed by the purchase's ``po_number``), then ``create_purchase`` with its Idempotency-Key, then the
journal's link (Amplify invoice -> Recurly invoice) and the intent closed. A run killed after Recurly stored the
purchase leaves the intent open: the next run scans the account's invoices for that ``po_number`` before it could
send the purchase again (``gather/invoices.py``), and a lost answer inside a run is looked up the same way before
any repeat. A purchase Recurly refuses (a declined card: error type ``transaction``) made no invoice: its intent is
abandoned and the refusal kept for the plan's follow-up (status ``Error``, never retried by itself).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from amplify_billing.actions import Action
from amplify_billing.apply import Handler
from amplify_billing.errors import ApiRejectedError
from amplify_billing.invoice_actions import (
    INVOICE_INTENT,
    INVOICE_LINK,
    CreateInvoicePurchase,
    MarkInvoiceFailed,
    RecurlyInvoice,
    ResolveInvoiceIntent,
)
from amplify_billing.recurly.gateway import RecurlyGateway
from amplify_billing.recurly.invoices import InvoiceCalls, recurly_invoice
from amplify_billing.recurly.wire import wire_timestamp

# Recurly's error type of a payment the gateway refused (ErrorTypeEnum ``transaction``, ErrorMayHaveTransaction)
DECLINED = "transaction"


class InvoiceJournal(Protocol):
    def begin_intent(self, key: str, kind: str, payload: Mapping[str, Any]) -> None: ...
    def complete_intent(self, key: str, result_id: str | None) -> None: ...
    def abandon_intent(self, key: str, reason: str) -> None: ...
    def set_link(self, kind: str, key: str, value: str) -> None: ...


@dataclass
class InvoiceOutcomes:
    """What the invoice writes of one apply learnt, for the writes after them: the invoices Recurly made (their
    numbers and dates go into ``billing.payment``) and the purchases it refused (Amplify invoice id -> reason)."""

    created: dict[str, RecurlyInvoice] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def made(self, invoice: RecurlyInvoice) -> None:
        with self._lock:
            self.created[invoice.id] = invoice

    def refuse(self, amplify_invoice_id: str, reason: str) -> None:
        with self._lock:
            self.refused[amplify_invoice_id] = reason


def purchase_body(action: CreateInvoicePurchase) -> dict[str, Any]:
    """Recurly ``PurchaseCreate``: the existing account by code, one charge per line, quantity 1, exact amounts."""
    lines = []
    for line in action.lines:
        item: dict[str, Any] = {
            "type": "charge",
            "currency": action.currency,
            "unit_amount": line.unit_amount,
            "quantity": 1,
            "description": line.description,
            "product_code": line.product_code,
        }
        if line.start is not None:
            item["start_date"] = wire_timestamp(line.start)
        if line.end is not None:
            item["end_date"] = wire_timestamp(line.end)
        lines.append(item)
    return {
        "currency": action.currency,
        "account": {"code": action.account_code},
        "collection_method": action.collection_method,
        "po_number": action.po_number,
        "line_items": lines,
    }


def _intent_payload(action: CreateInvoicePurchase) -> dict[str, Any]:
    """What the next run needs to look the purchase up if this one's answer is lost (no pay link: it is a secret)."""
    return {
        "account_code": action.account_code,
        "po_number": action.po_number,
        "amplify_invoice_id": action.amplify_invoice_id,
        "amplify_invoice_name": action.amplify_invoice_name,
        "subscription_name": action.subscription_name,
    }


def invoice_handlers(
    gateway: Callable[[], RecurlyGateway], journal: Callable[[], InvoiceJournal], outcomes: InvoiceOutcomes
) -> dict[type[Action], Handler]:
    def create(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, CreateInvoicePurchase)
        calls = InvoiceCalls(gateway())
        po = action.po_number
        journal().begin_intent(po, INVOICE_INTENT, _intent_payload(action))
        try:
            data = calls.create_purchase(
                purchase_body(action),
                idempotency_key=f"purchase-{po}",
                already_stored=lambda: calls.find_by_po_number(action.account_code, po),
            )
        except ApiRejectedError as refused:
            # a 4xx: Recurly made nothing, so nothing is left to look up
            journal().abandon_intent(po, f"refused by Recurly: {refused}")
            if refused.error_type == DECLINED:
                outcomes.refuse(action.amplify_invoice_id, str(refused))
            raise
        invoice = recurly_invoice(data)
        journal().set_link(INVOICE_LINK, action.amplify_invoice_id, invoice.id)
        journal().complete_intent(po, invoice.id)
        outcomes.made(invoice)
        return invoice.id

    def stop(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, MarkInvoiceFailed)
        InvoiceCalls(gateway()).mark_invoice_failed(action.invoice_id, idempotency_key=key)
        return action.invoice_id

    def resolve_intent(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, ResolveInvoiceIntent)
        if action.result_id is not None:
            journal().complete_intent(action.key, action.result_id)
        else:
            journal().abandon_intent(action.key, action.reason)
        return action.result_id

    return {CreateInvoicePurchase: create, MarkInvoiceFailed: stop, ResolveInvoiceIntent: resolve_intent}
