"""Gathering sync-invoices' inputs: Amplify's actionable invoices, the consumers' Recurly accounts, the Recurly
invoices already made for them, and the journal's links and open intents. Reads only: every decision is in
``reconcile/invoices.py``.

Requests: one Amplify listing of the actionable invoices; the Recurly accounts the run lists anyway; one read of the
site (its subdomain makes the pay link); one Recurly read per invoice being followed (open, past due, voided) and
per draft an earlier run already touched (a journal link, or an open intent: then the account's invoices are scanned
for its ``po_number``, since neither it nor a line's ``product_code`` can be filtered on).

Each of these reads is made once per invocation (``Snapshots.remember``): ``run`` plans the whole cycle, then
applies it phase by phase, and no write of the run touches an invoice before sync-invoices, its last phase, uses
them (docs/architecture.md, "Dry run and the whole cycle"). A read that failed is asked again by the next pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from amplify_billing.actions import KNOWN_AFTER_APPLY
from amplify_billing.amplify import invoices as amp
from amplify_billing.amplify.invoices import InvoiceListing, SubscriptionInvoice, list_subscription_invoices
from amplify_billing.amplify.parse import parse_subscription
from amplify_billing.compact import CompactResource
from amplify_billing.errors import AmplifyBillingError, NotFoundError
from amplify_billing.gather.paid_terms import paid_terms
from amplify_billing.identity import account_code
from amplify_billing.invoice_actions import INVOICE_INTENT, INVOICE_LINK, RecurlyInvoice
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.billing_modes import invoiced_query
from amplify_billing.reconcile.invoice_lines import po_number
from amplify_billing.reconcile.invoices import InvoiceAccount, InvoiceInputs, InvoicePlanOptions
from amplify_billing.recurly.invoices import IDS_PER_REQUEST, InvoiceCalls, recurly_invoice
from amplify_billing.redact import register_secret
from amplify_billing.settings import Settings
from amplify_billing.settings.secret import Secret

if TYPE_CHECKING:
    from amplify_billing.collaborators import InvoicedListing, InvoiceReads

T = TypeVar("T")


def plan_options(settings: Settings) -> InvoicePlanOptions:
    billing = settings.billing
    return InvoicePlanOptions(
        owner=settings.accounts.owner,
        collection_method=billing.collection_method,
        invoiced=billing.invoiced,
        switch=billing.switch,
    )


def pay_link(subdomain: str, token: str) -> Secret:
    """The account's hosted page, where the consumer pays: ``https://{subdomain}.recurly.com/account/{token}``
    (Recurly ``Account.hosted_login_token``). The token logs in whoever holds it: from here on every output of the
    process hides it (``redact``), and it is written nowhere but the Amplify invoice's ``billing.payment.link``."""
    register_secret(token)
    return Secret(f"https://{subdomain}.recurly.com/account/{token}")


def _account(data: Mapping[str, Any], subdomain: str) -> InvoiceAccount:
    token = data.get("hosted_login_token")
    link = pay_link(subdomain, str(token)) if isinstance(token, str) and token else None
    return InvoiceAccount(str(data.get("code")), has_card=bool(data.get("billing_info")), link=link)


def _once(rt: InvoicedListing, key: str, read: Callable[[], T]) -> T:
    """``read()``'s answer, read once per invocation whichever pass of ``run`` asks (a read that failed is not kept:
    the next pass asks again)."""
    found: T = rt.snapshots().remember(f"invoices:{key}", read)
    return found


def _accounts(rt: InvoiceReads, codes: Iterable[str], calls: InvoiceCalls) -> dict[str, InvoiceAccount]:
    """The accounts of the consumers; one this run created (link-accounts keeps only its code) is read whole."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}  # nothing to create: neither the accounts nor the site are read
    listed = rt.snapshots().recurly_accounts()
    subdomain = str(rt.recurly().get_site().get("subdomain") or "")
    result: dict[str, InvoiceAccount] = {}
    for code in wanted:
        data = listed.get(code)
        if data is None:
            continue
        if str(data.get("id") or "").startswith(KNOWN_AFTER_APPLY):
            # planned by link-accounts on the overlays (a dry run, `run`'s planning pass): Recurly has it not yet
            result[code] = InvoiceAccount(code, has_card=None, link=Secret(KNOWN_AFTER_APPLY))
            continue
        if "hosted_login_token" not in data:
            data = calls.get_account(f"code-{code}")
        result[code] = _account(data, subdomain)
    return result


@dataclass
class _Found:
    recurly: dict[str, RecurlyInvoice] = field(default_factory=dict)
    unusable: dict[str, str] = field(default_factory=dict)
    open_intents: dict[str, str] = field(default_factory=dict)


def _read(
    rt: InvoiceReads, calls: InvoiceCalls, invoice: SubscriptionInvoice, recurly_id: str, why: str, found: _Found
) -> None:
    try:
        found.recurly[invoice.id] = recurly_invoice(
            _once(rt, f"recurly-invoice:{recurly_id}", lambda: calls.get_invoice(recurly_id))
        )
    except NotFoundError:
        found.unusable[invoice.id] = f"{why} Recurly invoice {recurly_id}, which no longer exists (HTTP 404)"
    except AmplifyBillingError as error:
        found.unusable[invoice.id] = f"{why} Recurly invoice {recurly_id}, which could not be read ({error})"


def _given(data: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: data


def _by_ids(calls: InvoiceCalls, chunk: Sequence[str]) -> Callable[[], list[dict[str, Any]]]:
    return lambda: calls.list_invoices_by_ids(chunk)


def _read_by_ids(rt: InvoiceReads, calls: InvoiceCalls, recurly_ids: Sequence[str]) -> None:
    """The Recurly invoices a run follows, read up to 200 at a time instead of one request each; each answer is
    kept where ``_read`` looks first. An id the listing does not hold (gone, or a listing that failed) is read on
    its own by ``_read``, which says why it could not be."""
    wanted = sorted(set(recurly_ids))
    if len(wanted) < 2:
        return  # one GET is as cheap
    snapshots = rt.snapshots()
    for start in range(0, len(wanted), IDS_PER_REQUEST):
        chunk = wanted[start : start + IDS_PER_REQUEST]
        try:
            # once per invocation, as every read here: both passes of `run` use the one answer
            listed = _once(rt, "by-ids:" + ",".join(chunk), _by_ids(calls, chunk))
        except AmplifyBillingError:
            continue  # each is read on its own, and a failure there is a finding with its reason
        for data in listed:
            recurly_id = str(data.get("id") or "")
            if recurly_id in chunk:
                snapshots.remember(f"invoices:recurly-invoice:{recurly_id}", _given(data))


def _draft(
    rt: InvoiceReads,
    calls: InvoiceCalls,
    invoice: SubscriptionInvoice,
    links: Mapping[str, str],
    intents: Mapping[str, Any],
    owner: str,
    found: _Found,
) -> None:
    """A draft an earlier run touched: the Recurly invoice it made, if any."""
    if invoice.id in links:
        _read(rt, calls, invoice, links[invoice.id], "the journal links it to", found)
        return
    if invoice.payment is not None and invoice.payment.id:
        _read(rt, calls, invoice, invoice.payment.id, "its billing.payment.id names", found)
        return
    po = po_number(invoice.id)
    intent = intents.get(po)
    code = account_code(invoice, owner)
    if intent is None or code is None:
        return
    found.open_intents[invoice.id] = po
    try:
        data = _once(rt, f"po-number:{code}:{po}", lambda: calls.find_by_po_number(code, po))
    except AmplifyBillingError as error:
        found.unusable[invoice.id] = f"a purchase was begun for it and looking it up in Recurly failed ({error})"
        return
    if data is not None:
        found.recurly[invoice.id] = recurly_invoice(data)


def _plan_currencies(rt: InvoiceReads, invoices: Iterable[SubscriptionInvoice]) -> dict[str, str]:
    """The currency of each plan an invoice without one names (``spec.billing.currency``); one read per plan."""
    result: dict[str, str] = {}

    def plan_of(name: str) -> Callable[[], dict[str, Any]]:
        return lambda: rt.amplify().resources.get("productplans", name)

    for name in sorted({i.plan_name for i in invoices if i.currency is None and i.plan_name}):
        try:
            plan = _once(rt, f"plan:{name}", plan_of(name))
        except AmplifyBillingError:
            continue  # no currency: the plan says so as a finding
        currency = (plan.get("spec") or {}).get("billing", {}).get("currency")
        if isinstance(currency, str) and currency:
            result[name] = currency.upper()
    return result


def _actionable(rt: InvoiceReads) -> InvoiceListing:
    """Amplify's invoices the gateway acts on, listed once per invocation (link-accounts and sync-invoices share it)."""
    return _once(
        rt, "actionable", lambda: list_subscription_invoices(rt.amplify().resources, query=amp.ACTIONABLE_QUERY)
    )


def _waiting(invoice: SubscriptionInvoice) -> bool:
    return invoice.state == amp.DRAFT and invoice.status == amp.PENDING


def owed_subscriptions(rt: InvoiceReads) -> frozenset[str]:
    """The subscriptions (by name) of Amplify's invoices waiting to be sent with something to pay: their owners need
    a Recurly account even when the subscription has ended (its cancellation invoice always comes after the end)."""
    billing = rt.settings.billing
    return frozenset(
        i.subscription_name
        for i in _actionable(rt).invoices
        if _waiting(i) and i.total > 0 and billing.reads_invoices(i.marketplace_name)
    )


def invoice_inputs(rt: InvoiceReads) -> InvoiceInputs:
    settings = rt.settings
    listing = _actionable(rt)
    ours = [i for i in listing.invoices if settings.billing.reads_invoices(i.marketplace_name)]
    calls = InvoiceCalls(rt.recurly())
    journal = rt.journal()
    links = journal.links(INVOICE_LINK)
    intents = {i.key: i for i in journal.open_intents(INVOICE_INTENT)}
    owner = settings.accounts.owner
    found = _Found()
    drafts = [i for i in ours if _waiting(i)]
    for invoice in drafts:
        _draft(rt, calls, invoice, links, intents, owner, found)
    followed = [
        (invoice, invoice.payment.id)
        for invoice in ours
        if (invoice.state in (amp.OPEN, amp.PAST_DUE) or (invoice.state == amp.VOID and invoice.status == amp.PENDING))
        and invoice.payment is not None
        and invoice.payment.id
    ]
    _read_by_ids(rt, calls, [recurly_id for _, recurly_id in followed])
    for invoice, recurly_id in followed:
        _read(rt, calls, invoice, recurly_id, "its billing.payment.id names", found)
    codes = [c for c in (account_code(i, owner) for i in drafts) if c]
    return InvoiceInputs(
        invoices=listing.invoices,
        problems=listing.problems,
        accounts=_accounts(rt, codes, calls),
        recurly=found.recurly,
        unusable=found.unusable,
        open_intents=found.open_intents,
        linked=frozenset(links),
        plan_currencies=_plan_currencies(rt, drafts),
        paid_terms=paid_terms(rt, drafts, lambda: invoiced_subscriptions(rt)),
    )


def invoiced_subscriptions(rt: InvoicedListing) -> list[AmplifySubscription]:
    """The subscriptions Amplify's invoices bill (their Marketplace is in marketplace mode), whatever their plan:
    link-accounts gives their owners Recurly accounts. No request when no Marketplace is in that mode."""
    query = invoiced_query(rt.settings.billing)
    if query is None:
        return []
    # once per invocation: link-accounts reads them in both passes of `run`, before any write to a subscription
    raws, _proof = _once(rt, "subscriptions", lambda: rt.amplify().resources.listing("subscriptions", query=query))
    parsed = (parse_subscription(raw) for raw in raws)
    return [
        replace(s, raw=CompactResource.of(raw))
        for s, raw in zip(parsed, raws, strict=True)
        if isinstance(s, AmplifySubscription)
    ]
