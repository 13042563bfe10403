"""Typed invoice actions -> SubscriptionInvoice subresource writes (docs/architecture.md, "Executors").

The custom billing flow's write-back (DOCS ``integrate_with_central/custom_billing.md``, "Invoice creation flow"):
``PUT {selfLink}/billing`` with ``{"billing": {"payment": {...}}}``, then ``PUT {selfLink}/state`` with
``{"state": {"name", "reason"}}``; ``status`` likewise with ``{"status": {"level", "reasons": [...]}}``. Each handler
performs exactly one write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from amplify_billing.actions import Action, resolve
from amplify_billing.amplify.invoices import CUSTOM
from amplify_billing.amplify.resources import ResourceClient
from amplify_billing.apply import Handler
from amplify_billing.invoice_actions import RecurlyInvoice, SetInvoiceState, SetInvoiceStatus, WriteInvoicePayment


def amplify_time(moment: datetime) -> str:
    """Amplify's timestamp format, ISO 8601 with a numeric offset: 2024-04-02T20:45:30.112+0000."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def _number(amount: Decimal) -> int | float:
    # billing.payment.amount is a JSON number (float64 in the SDK's model); whole amounts stay integers
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def payment_body(action: WriteInvoicePayment, invoice: RecurlyInvoice) -> dict[str, Any]:
    """``billing.payment`` of type custom (SDK ``model_subscription_invoice_billing_payment_type_custom.go``).

    ``amount.total`` is the Amplify total; ``amount.due`` what the consumer is billed with tax (Recurly's total),
    as the guide's "What is the difference between 'due' and 'total'?" has it. ``documentLink`` stays empty:
    Recurly has no public invoice document."""
    body: dict[str, Any] = {
        "type": CUSTOM,
        "id": invoice.id,
        "number": invoice.number,
        "amount": {"currency": invoice.currency, "total": _number(action.total), "due": _number(invoice.total)},
        "link": action.link.reveal(),
        "customer": {"id": action.customer_id},
    }
    if invoice.created_at is not None:
        body["issueDate"] = amplify_time(invoice.created_at)
    if invoice.due_at is not None:
        body["dueDate"] = amplify_time(invoice.due_at)
    return body


def amplify_invoice_handlers(
    resources: Callable[[], ResourceClient],
    invoice_of: Callable[[str], RecurlyInvoice],
    clock: Callable[[], datetime],
) -> dict[type[Action], Handler]:
    """``invoice_of(id)``: the Recurly invoice a payment names (this run's create answer, else read)."""

    def payment(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, WriteInvoicePayment)
        invoice = action.known or invoice_of(resolve(action.invoice_id, done))
        resources().put_subresource(action.resource, "billing", {"payment": payment_body(action, invoice)})
        return invoice.id

    def state(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, SetInvoiceState)
        resources().put_subresource(action.resource, "state", {"name": action.name, "reason": action.reason})
        return None

    def status(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, SetInvoiceStatus)
        reason = {"type": action.level, "detail": action.reason, "timestamp": amplify_time(clock())}
        resources().put_subresource(action.resource, "status", {"level": action.level, "reasons": [reason]})
        return None

    return {WriteInvoicePayment: payment, SetInvoiceState: state, SetInvoiceStatus: status}
