"""The emulated site's purchases and charge invoices (Recurly API v2021-02-25).

Endpoints: ``POST /purchases`` (``create_purchase``: one-time charges only, on an existing account; answered with an
``InvoiceCollection``), ``GET /invoices/{id}`` (an id, or ``number-{n}``), ``PUT /invoices/{id}/mark_failed``,
``GET /accounts/{account_id}/invoices`` and ``GET /invoices`` (listed with the usual paging, ``state`` and ``type``
filters). A purchase is all or nothing, as Recurly's: "All items purchased will be on one invoice and paid for with
one transaction" (OpenAPI ``create_purchase``), so a refused payment leaves no invoice and no line item.

Collection (``collection_method``): ``automatic`` charges the card on file (``recurly_cards``) at once, and the
invoice is ``paid``; no card is a 422 ``validation`` and a declining card a 422 ``transaction`` error with its
``transaction_error``. ``manual`` leaves the invoice ``pending`` until it is paid; it is due after ``net_terms`` days
plus the 24 hours Recurly adds for manual invoices (OpenAPI ``PurchaseCreate.net_terms``) and becomes ``past_due``
once that has passed. Tests move invoices on with ``pay``, ``fail`` and ``void`` as a consumer, Recurly's dunning or
an operator would.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import unquote

from amplify_billing.sandbox.recurly_cards import Card, cards_of
from amplify_billing.sandbox.recurly_records import AccountRecord
from amplify_billing.sandbox.recurly_routes import ID, json_body
from amplify_billing.sandbox.recurly_state import RecurlyState
from amplify_billing.sandbox.recurly_wire import (
    Problems,
    RecurlyProblem,
    decimal_places,
    fmt_time,
    not_found,
    paginate,
    parse_list_query,
    parse_time,
    to_decimal,
    validation,
)
from amplify_billing.sandbox.server import Handler, Request, Response

FIRST_NUMBER = 1001
COLLECTING = frozenset({"pending", "processing", "past_due"})
STATE_FILTERS = ("pending", "past_due", "paid", "failed")  # InvoiceStateQueryParamEnum
# currencies whose smallest unit is not the cent (ISO 4217): amounts may carry that many decimals
CURRENCY_DIGITS = {"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0, "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3}


@dataclass
class LineItemRecord:
    id: str
    uuid: str
    description: str | None
    product_code: str | None
    unit_amount: Decimal
    quantity: int
    start_date: datetime | None
    end_date: datetime | None

    @property
    def subtotal(self) -> Decimal:
        return self.unit_amount * self.quantity


@dataclass
class InvoiceRecord:
    id: str
    uuid: str
    number: str
    account_id: str
    currency: str
    collection_method: str
    po_number: str | None
    net_terms: int
    state: str
    line_items: list[LineItemRecord]
    created_at: datetime
    updated_at: datetime
    due_at: datetime
    seq: int
    closed_at: datetime | None = None
    paid: Decimal = Decimal(0)

    @property
    def subtotal(self) -> Decimal:
        return sum((line.subtotal for line in self.line_items), Decimal(0))


@dataclass
class InvoiceBook:
    invoices: dict[str, InvoiceRecord] = field(default_factory=dict)
    next_number: int = FIRST_NUMBER


_BOOKS: weakref.WeakKeyDictionary[RecurlyState, InvoiceBook] = weakref.WeakKeyDictionary()


def book_of(state: RecurlyState) -> InvoiceBook:
    found = _BOOKS.get(state)
    if found is None:
        found = _BOOKS[state] = InvoiceBook()
    return found


class Declined(RecurlyProblem):
    """A payment the gateway refused: 422 ``transaction`` with its ``transaction_error`` (ErrorMayHaveTransaction)."""

    def __init__(self, state: RecurlyState) -> None:
        super().__init__(422, "transaction", "Your card was declined. Please use a different card.")
        self.transaction_id = state.ids.id()

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["error"]["transaction_error"] = {
            "object": "transaction_error",
            "transaction_id": self.transaction_id,
            "category": "hard",
            "code": "declined",
            "decline_code": "generic_decline",
            "message": self.message,
            "merchant_advice": "The card was declined; ask the customer for another card.",
        }
        return body


# ---- the purchase ---------------------------------------------------------------------------------------------


def _account(state: RecurlyState, body: Mapping[str, Any]) -> AccountRecord:
    account = body.get("account")
    code = account.get("code") if isinstance(account, Mapping) else None
    if not isinstance(code, str) or not code:
        raise validation("account.code", "can't be blank")
    found = next((a for a in state.accounts.values() if a.code == code), None)
    if found is None:
        # a real purchase would create the account; the tool always names one link-accounts made
        raise validation("account.code", "is not an account of this site (the emulator makes no account here)")
    return found


def _lines(state: RecurlyState, body: Mapping[str, Any], currency: str, problems: Problems) -> list[LineItemRecord]:
    items = body.get("line_items")
    if not isinstance(items, list) or not items:
        problems.add("line_items", "can't be blank (the emulator makes one-time charges only)")
        return []
    digits = CURRENCY_DIGITS.get(currency, 2)
    lines = []
    for index, item in enumerate(items):
        at = f"line_items[{index}]"
        if not isinstance(item, Mapping):
            problems.add(at, "must be an object")
            continue
        if item.get("type") != "charge":
            problems.add(f"{at}.type", "must be charge (the emulator makes no credits)")
        if item.get("currency") != currency:
            problems.add(f"{at}.currency", f"must be the purchase's currency {currency}")
        amount = to_decimal(item.get("unit_amount"))
        if amount is None or amount <= 0 or decimal_places(amount) > digits:
            problems.add(f"{at}.unit_amount", f"must be a positive amount with at most {digits} decimals")
        quantity = item.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            problems.add(f"{at}.quantity", "must be a whole number of 1 or more")
        for name, limit in (("description", 255), ("product_code", 50)):
            value = item.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                problems.add(f"{at}.{name}", f"is too long (maximum is {limit} characters)")
        if problems or amount is None:
            continue
        lines.append(
            LineItemRecord(
                state.ids.id(),
                state.ids.uuid(),
                item.get("description"),
                item.get("product_code"),
                amount,
                int(quantity),
                parse_time(item.get("start_date")),
                parse_time(item.get("end_date")),
            )
        )
    return lines


def create_purchase(state: RecurlyState, body: Mapping[str, Any]) -> InvoiceRecord:
    """One charge invoice, checked whole before anything is kept (a 422 leaves no trace)."""
    account = _account(state, body)
    problems = Problems()
    currency = body.get("currency")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isupper():
        problems.add("currency", "must be a 3-letter ISO 4217 code")
        currency = ""
    method = body.get("collection_method", "automatic")
    if method not in ("automatic", "manual"):
        problems.add("collection_method", "must be automatic or manual")
    po = body.get("po_number")
    if po is not None and (not isinstance(po, str) or len(po) > 50):
        problems.add("po_number", "is too long (maximum is 50 characters)")
    terms = body.get("net_terms", 0)
    if isinstance(terms, bool) or not isinstance(terms, int) or terms < 0:
        problems.add("net_terms", "must be a whole number of 0 or more")
    if body.get("subscriptions"):
        problems.add("subscriptions", "are not supported by the emulator's purchases")
    lines = _lines(state, body, currency, problems)
    problems.raise_if_any()
    card = cards_of(state).card(account)
    if method == "automatic" and card == "none":
        raise validation("billing_info", "can't be blank: the account has no billing information to charge")
    if method == "automatic" and card == "declined":
        raise Declined(state)
    now = state.now()
    book = book_of(state)
    due = now + timedelta(days=int(terms)) + (timedelta(days=1) if method == "manual" else timedelta(0))
    record = InvoiceRecord(
        state.ids.id(),
        state.ids.uuid(),
        str(book.next_number),
        account.id,
        currency,
        str(method),
        po if isinstance(po, str) else None,
        int(terms),
        "pending",
        lines,
        now,
        now,
        due,
        state.ids.seq(),
    )
    book.next_number += 1
    if method == "automatic":
        record.state, record.paid, record.closed_at = "paid", record.subtotal, now
    book.invoices[record.id] = record
    return record


# ---- lookups and transitions ----------------------------------------------------------------------------------


def invoice(state: RecurlyState, ref: str) -> InvoiceRecord:
    invoices = book_of(state).invoices
    found = (
        next((i for i in invoices.values() if i.number == ref[7:]), None)
        if ref.startswith("number-")
        else invoices.get(ref)
    )
    if found is None:
        raise not_found("Invoice", ref)
    return found


def age(state: RecurlyState) -> None:
    """A pending invoice past its due time becomes past due, as Recurly's collection terms make it."""
    now = state.now()
    for record in book_of(state).invoices.values():
        if record.state == "pending" and record.due_at <= now:
            record.state, record.updated_at = "past_due", now


def move(state: RecurlyState, ref: str, to: str) -> InvoiceRecord:
    """``paid``, ``failed`` (collection stopped) or ``voided``, from a state that still collects."""
    record = invoice(state, ref)
    if record.state not in COLLECTING:
        raise validation("state", f"is {record.state}: only pending, processing or past_due invoices can change")
    now = state.now()
    record.state, record.updated_at, record.closed_at = to, now, now
    if to == "paid":
        record.paid = record.subtotal
    return record


# ---- the wire format ------------------------------------------------------------------------------------------


def invoice_wire(state: RecurlyState, record: InvoiceRecord) -> dict[str, Any]:
    account = state.accounts[record.account_id]
    total = record.subtotal  # the emulator charges no tax
    return {
        "id": record.id,
        "uuid": record.uuid,
        "object": "invoice",
        "type": "charge",
        "origin": "purchase",
        "state": record.state,
        "account": {"id": account.id, "object": "account", "code": account.code, "email": account.email},
        "number": record.number,
        "collection_method": record.collection_method,
        "po_number": record.po_number,
        "net_terms": record.net_terms,
        "net_terms_type": "net",
        "currency": record.currency,
        "discount": 0.0,
        "subtotal": float(record.subtotal),
        "tax": 0.0,
        "total": float(total),
        "paid": float(record.paid),
        "balance": float(total - record.paid) if record.state != "failed" else float(total),
        "line_items": [_line_wire(state, record, line) for line in record.line_items],
        "has_more_line_items": False,
        "transactions": [],
        "created_at": fmt_time(record.created_at),
        "updated_at": fmt_time(record.updated_at),
        "due_at": fmt_time(record.due_at),
        "closed_at": fmt_time(record.closed_at),
    }


def _line_wire(state: RecurlyState, record: InvoiceRecord, line: LineItemRecord) -> dict[str, Any]:
    return {
        "id": line.id,
        "object": "line_item",
        "uuid": line.uuid,
        "type": "charge",
        "state": "invoiced",
        "invoice_id": record.id,
        "invoice_number": record.number,
        "currency": record.currency,
        "description": line.description,
        "product_code": line.product_code,
        "unit_amount": float(line.unit_amount),
        "quantity": line.quantity,
        "subtotal": float(line.subtotal),
        "amount": float(line.subtotal),
        "tax": 0.0,
        "start_date": fmt_time(line.start_date),
        "end_date": fmt_time(line.end_date),
        "created_at": fmt_time(record.created_at),
        "updated_at": fmt_time(record.updated_at),
    }


# ---- routes ---------------------------------------------------------------------------------------------------


class InvoiceRoutes:
    """The purchase and invoice endpoints over one site's state (registered by ``RecurlyEmulator``)."""

    def __init__(self, state: RecurlyState) -> None:
        self.state = state

    def register(self, api: Callable[[str, str, str, Handler], None]) -> None:
        api("POST", "/purchases", "create_purchase", self._purchase)
        api("LIST", "/invoices", "list_invoices", self._list_all)
        api("GET", f"/invoices/(?P<invoice_id>{ID})", "get_invoice", self._get)
        api("PUT", f"/invoices/(?P<invoice_id>{ID})/mark_failed", "mark_invoice_failed", self._mark_failed)
        api("LIST", f"/accounts/(?P<account_id>{ID})/invoices", "list_account_invoices", self._list_account)

    def _purchase(self, request: Request) -> Response:
        record = create_purchase(self.state, json_body(request))
        collection = {
            "object": "invoice_collection",
            "charge_invoice": invoice_wire(self.state, record),
            "credit_invoices": [],
        }
        return Response(201, collection)

    def _get(self, request: Request) -> Response:
        age(self.state)
        return Response(200, invoice_wire(self.state, invoice(self.state, unquote(request.params["invoice_id"]))))

    def _mark_failed(self, request: Request) -> Response:
        age(self.state)
        record = move(self.state, unquote(request.params["invoice_id"]), "failed")
        return Response(200, invoice_wire(self.state, record))

    def _list_account(self, request: Request) -> Response:
        account = self.state.account(unquote(request.params["account_id"]))
        return self._list(request, lambda r: r.account_id == account.id)

    def _list_all(self, request: Request) -> Response:
        return self._list(request, lambda r: True)

    def _list(self, request: Request, wanted: Callable[[InvoiceRecord], bool]) -> Response:
        age(self.state)
        q = parse_list_query(request.query, sorts=("created_at", "updated_at"), default_sort="created_at")
        state_filter = request.arg("state")
        if state_filter not in (None, "", *STATE_FILTERS):
            raise validation("state", f"must be one of {', '.join(STATE_FILTERS)}")
        kind = request.arg("type")
        records = [
            r
            for r in book_of(self.state).invoices.values()
            if wanted(r)
            and (not state_filter or r.state == state_filter)
            and kind in (None, "", "charge", "non-legacy")
        ]
        page = paginate(
            records,
            q,
            key=lambda r: (getattr(r, q.sort), r.seq),
            ident=lambda r: r.id,
            render=lambda r: invoice_wire(self.state, r),
            path=request.path,
            query=request.query,
        )
        headers = {"Recurly-Total-Records": str(page.total)}
        return Response(200, None if request.method == "HEAD" else page.body, headers)


# ---- what tests and the demo do to the site, as a consumer, Recurly's dunning or an operator would -------------


class _Site(Protocol):
    state: RecurlyState
    lock: Any


def invoices(site: _Site) -> list[dict[str, Any]]:
    """Every invoice as GET answers it now, in creation order."""
    with site.lock:
        age(site.state)
        records = sorted(book_of(site.state).invoices.values(), key=lambda r: r.seq)
        return copy.deepcopy([invoice_wire(site.state, r) for r in records])


def settle(site: _Site, number: str, to: str) -> dict[str, Any]:
    """Invoice ``number`` becomes ``paid`` (the consumer paid), ``failed`` (dunning gave up) or ``voided``."""
    with site.lock:
        age(site.state)
        try:
            return copy.deepcopy(invoice_wire(site.state, move(site.state, f"number-{number}", to)))
        except RecurlyProblem as problem:
            raise ValueError(problem.message) from None


def set_card(site: _Site, account_code: str, card: Card) -> None:
    """The account's card on file: ``valid``, ``declined`` (every charge is refused) or ``none``."""
    with site.lock:
        cards_of(site.state).cards[site.state.account(f"code-{account_code}").id] = card
