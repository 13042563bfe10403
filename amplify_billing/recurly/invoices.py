"""Recurly's invoices and purchases (API v2021-02-25): the calls marketplace mode makes, and their answers read.

``InvoiceCalls`` adds the invoice operations to the run's ``RecurlyGateway`` and sends them through its one call
path (retries, reconnects, rate limits, request statistics, errors translated), so a run keeps one set of clients
and one count of requests. Answers come back as plain JSON data, read into ``RecurlyInvoice`` here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import recurly

from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.errors import UpstreamError
from amplify_billing.invoice_actions import RecurlyInvoice
from amplify_billing.recurly.gateway import RecurlyGateway
from amplify_billing.recurly.wire import body_of, to_wire

log = logging.getLogger(__name__)


def _money(value: Any, what: str) -> Decimal:
    try:
        if isinstance(value, bool) or value is None:
            raise InvalidOperation
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        raise UpstreamError(
            f"Recurly answered an invoice whose {what} is not a number ({value!r}); nothing was changed on it",
            system="recurly",
        ) from None


def recurly_invoice(data: Mapping[str, Any]) -> RecurlyInvoice:
    """An ``Invoice`` answer as a value; one without an id, number or state cannot be acted on."""
    given = data.get("account")
    account: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    missing = [k for k in ("id", "number", "state") if not data.get(k)]
    if missing:
        raise UpstreamError(
            f"Recurly answered an invoice without {', '.join(missing)}; nothing was changed on it", system="recurly"
        )
    return RecurlyInvoice(
        id=str(data["id"]),
        number=str(data["number"]),
        state=str(data["state"]),
        account_code=str(account.get("code") or ""),
        currency=str(data.get("currency") or "").upper(),
        subtotal=_money(data.get("subtotal", 0), "subtotal"),
        total=_money(data.get("total", 0), "total"),
        po_number=str(data["po_number"]) if data.get("po_number") else None,
        created_at=parse_timestamp(data.get("created_at")),
        due_at=parse_timestamp(data.get("due_at")),
        type=str(data.get("type") or "charge"),
    )


# OpenAPI ``list_invoices``/``list_subscriptions`` ``ids``: "Up to 200 IDs can be passed at once"
IDS_PER_REQUEST = 200


class InvoiceCalls:
    """The invoice operations, on the run's gateway (one client per thread, one retry policy, one request count)."""

    def __init__(self, gateway: RecurlyGateway) -> None:
        self._gateway = gateway

    def get_account(self, account_id: str) -> dict[str, Any]:
        g = self._gateway
        return body_of(g._call("GET", f"account {account_id}", lambda c: c.get_account(account_id), repeatable=True))

    def get_invoice(self, invoice_id: str) -> dict[str, Any]:
        g = self._gateway
        return body_of(g._call("GET", f"invoice {invoice_id}", lambda c: c.get_invoice(invoice_id), repeatable=True))

    def list_account_invoices(self, account_id: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._gateway._list(
            f"invoices of account {account_id}",
            lambda c, p: c.list_account_invoices(account_id, params=p),
            params,
        )

    def list_invoices_by_ids(self, invoice_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The invoices of up to ``IDS_PER_REQUEST`` ids in one listing (OpenAPI ``list_invoices`` ``ids``: "Up to
        200 IDs can be passed at once"; an id Recurly does not know is simply not listed)."""
        return self._gateway._list(
            f"{len(invoice_ids)} invoices by id", lambda c, p: c.list_invoices(params=p), {"ids": list(invoice_ids)}
        )

    def mark_invoice_failed(self, invoice_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        g = self._gateway
        h = g._headers(idempotency_key)
        return g._write(
            "PUT",
            f"failure of invoice {invoice_id}",
            lambda c: c.mark_invoice_failed(invoice_id, headers=h),
            idempotency_key,
        )

    def create_purchase(
        self,
        body: Mapping[str, Any],
        *,
        idempotency_key: str,
        already_stored: Callable[[], Mapping[str, Any] | None],
    ) -> dict[str, Any]:
        """One purchase: its charge invoice (``InvoiceCollection.charge_invoice``). ``already_stored`` is asked
        before every repeat of the request: it finds the invoice by its ``po_number`` when the first attempt was
        stored but its answer lost. Recurly documents no lifetime for an Idempotency-Key, so a repeat never relies
        on the key alone (reference/recurly-api.md §4)."""
        g = self._gateway
        h = g._headers(idempotency_key)
        attempts = 0

        def send(client: recurly.Client) -> Any:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                found = already_stored()
                if found is not None:
                    log.info("purchase %s was stored by an attempt whose answer was lost", body.get("po_number"))
                    return {"charge_invoice": dict(found)}
            return client.create_purchase(to_wire(body), headers=h)

        answer = g._call("POST", f"purchase {body.get('po_number')}", send, repeatable=True)
        collection = dict(answer) if isinstance(answer, dict) else body_of(answer)
        invoice = collection.get("charge_invoice")
        if not isinstance(invoice, Mapping):
            raise UpstreamError(
                f"Recurly answered the purchase {body.get('po_number')} without a charge invoice", system="recurly"
            )
        return dict(invoice)

    def find_by_po_number(self, account_code: str, po_number: str, since: str | None = None) -> dict[str, Any] | None:
        """The account's invoice with ``po_number``: neither it nor a line's ``product_code`` can be filtered on, so
        the account's invoices are scanned (newest first, from ``since`` when given)."""
        params: dict[str, Any] = {"sort": "created_at", "order": "desc"}
        if since is not None:
            params["begin_time"] = since
        for invoice in self.list_account_invoices(f"code-{account_code}", params):
            if invoice.get("po_number") == po_number:
                return invoice
        return None
