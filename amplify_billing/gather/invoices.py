"""Gathering sync-invoices' inputs: Amplify's actionable invoices, the consumers' Recurly accounts, the Recurly
invoices already made for them, and the journal's links and open intents. Reads only: every decision is in
``reconcile/invoices.py``.

Requests: one Amplify listing of the actionable invoices; the Recurly accounts the run lists anyway; one read of the
site (its subdomain makes the pay link); one Recurly read per invoice being followed (open, past due, voided) and
per draft an earlier run already touched (a journal link, or an open intent: then the account's invoices are scanned
for its ``po_number``, since neither it nor a line's ``product_code`` can be filtered on).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from amplify_billing.amplify import invoices as amp
from amplify_billing.amplify.invoices import SubscriptionInvoice, list_subscription_invoices
from amplify_billing.amplify.parse import parse_subscription, parse_timestamp
from amplify_billing.compact import CompactResource
from amplify_billing.errors import AmplifyBillingError, NotFoundError
from amplify_billing.identity import account_code
from amplify_billing.invoice_actions import INVOICE_INTENT, INVOICE_LINK, RecurlyInvoice
from amplify_billing.links import NAME_LINK, SUBSCRIPTION_LINK
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.billing_modes import invoiced_query
from amplify_billing.reconcile.invoice_lines import po_number
from amplify_billing.reconcile.invoices import InvoiceAccount, InvoiceInputs, InvoicePlanOptions
from amplify_billing.reconcile.mode_switch import AMPLIFY_SIDE, PaidTerm, invoice_side
from amplify_billing.recurly.invoices import InvoiceCalls, recurly_invoice
from amplify_billing.redact import register_secret
from amplify_billing.settings import Settings
from amplify_billing.settings.billing import MARKETPLACE_MODE
from amplify_billing.settings.secret import Secret
from amplify_billing.snapshots import GONE

if TYPE_CHECKING:
    from amplify_billing.collaborators import InvoiceReads


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
        if "hosted_login_token" not in data:
            data = calls.get_account(f"code-{code}")
        result[code] = _account(data, subdomain)
    return result


@dataclass
class _Found:
    recurly: dict[str, RecurlyInvoice] = field(default_factory=dict)
    unusable: dict[str, str] = field(default_factory=dict)
    open_intents: dict[str, str] = field(default_factory=dict)


def _read(calls: InvoiceCalls, invoice: SubscriptionInvoice, recurly_id: str, why: str, found: _Found) -> None:
    try:
        found.recurly[invoice.id] = recurly_invoice(calls.get_invoice(recurly_id))
    except NotFoundError:
        found.unusable[invoice.id] = f"{why} Recurly invoice {recurly_id}, which no longer exists (HTTP 404)"
    except AmplifyBillingError as error:
        found.unusable[invoice.id] = f"{why} Recurly invoice {recurly_id}, which could not be read ({error})"


def _draft(
    calls: InvoiceCalls,
    invoice: SubscriptionInvoice,
    links: Mapping[str, str],
    intents: Mapping[str, Any],
    owner: str,
    found: _Found,
) -> None:
    """A draft an earlier run touched: the Recurly invoice it made, if any."""
    if invoice.id in links:
        _read(calls, invoice, links[invoice.id], "the journal links it to", found)
        return
    if invoice.payment is not None and invoice.payment.id:
        _read(calls, invoice, invoice.payment.id, "its billing.payment.id names", found)
        return
    po = po_number(invoice.id)
    intent = intents.get(po)
    code = account_code(invoice, owner)
    if intent is None or code is None:
        return
    found.open_intents[invoice.id] = po
    try:
        data = calls.find_by_po_number(code, po)
    except AmplifyBillingError as error:
        found.unusable[invoice.id] = f"a purchase was begun for it and looking it up in Recurly failed ({error})"
        return
    if data is not None:
        found.recurly[invoice.id] = recurly_invoice(data)


def _plan_currencies(rt: InvoiceReads, invoices: Iterable[SubscriptionInvoice]) -> dict[str, str]:
    """The currency of each plan an invoice without one names (``spec.billing.currency``); one read per plan."""
    result: dict[str, str] = {}
    for name in sorted({i.plan_name for i in invoices if i.currency is None and i.plan_name}):
        try:
            plan = rt.amplify().resources.get("productplans", name)
        except AmplifyBillingError:
            continue  # no currency: the plan says so as a finding
        currency = (plan.get("spec") or {}).get("billing", {}).get("currency")
        if isinstance(currency, str) and currency:
            result[name] = currency.upper()
    return result


def invoice_inputs(rt: InvoiceReads) -> InvoiceInputs:
    settings = rt.settings
    listing = list_subscription_invoices(rt.amplify().resources, query=amp.ACTIONABLE_QUERY)
    ours = [i for i in listing.invoices if settings.billing.reads_invoices(i.marketplace_name)]
    calls = InvoiceCalls(rt.recurly())
    journal = rt.journal()
    links = journal.links(INVOICE_LINK)
    intents = {i.key: i for i in journal.open_intents(INVOICE_INTENT)}
    owner = settings.accounts.owner
    found = _Found()
    drafts = [i for i in ours if i.state == amp.DRAFT and i.status == amp.PENDING]
    for invoice in drafts:
        _draft(calls, invoice, links, intents, owner, found)
    for invoice in ours:
        followed = invoice.state in (amp.OPEN, amp.PAST_DUE) or (
            invoice.state == amp.VOID and invoice.status == amp.PENDING
        )
        recurly_id = invoice.payment.id if invoice.payment is not None else None
        if followed and recurly_id:
            _read(calls, invoice, recurly_id, "its billing.payment.id names", found)
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
        paid_terms=_paid_terms(rt, drafts),
    )


def _paid_terms(rt: InvoiceReads, drafts: Iterable[SubscriptionInvoice]) -> dict[str, PaidTerm]:
    """The Recurly term each subscription was billed for in advance, for the drafts on Amplify's side of a switch
    to marketplace mode that charge a base price (``mode_switch.base_overlap``): one direct read of its linked
    Recurly subscription, whatever its state (a cancelled one has expired by the time its overlap is invoiced, so
    the live listing no longer shows it). No request for any other invoice."""
    billing = rt.settings.billing
    asked: set[str] = set()
    for invoice in drafts:
        switch = billing.switch(invoice.marketplace_name)
        if switch is None or switch[0] != MARKETPLACE_MODE or invoice.plan_cost <= 0:
            continue
        side = invoice_side(*switch, invoice.period_start, invoice.period_end, invoice.created_at)
        if side.side == AMPLIFY_SIDE:
            asked.add(invoice.subscription_name)
    if not asked:
        return {}
    journal = rt.journal()
    ids = {name: amplify_id for amplify_id, name in journal.links(NAME_LINK).items()}
    uuids = journal.links(SUBSCRIPTION_LINK)
    terms: dict[str, PaidTerm] = {}
    for name in sorted(asked):
        uuid = uuids.get(ids.get(name, ""))
        if not uuid:
            continue  # Recurly never billed it (approved after the switch): nothing was paid in advance
        read = rt.snapshots().recurly_subscription(uuid)
        if isinstance(read, Mapping):
            ends = parse_timestamp(read.get("current_period_ends_at")) or parse_timestamp(read.get("expires_at"))
            terms[name] = PaidTerm(uuid, ends, "" if ends else "it shows no term end")
        else:
            terms[name] = PaidTerm(uuid, None, "it is gone from Recurly" if read is GONE else str(read))
    return terms


def awaiting_invoices(rt: InvoiceReads, ended: Iterable[AmplifySubscription]) -> frozenset[str]:
    """Which of ``ended`` (subscriptions of marketplace mode that no longer need billing, whose owner has no Recurly
    account) Amplify still has an invoice with something to pay of, waiting for the gateway (draft, Pending): its
    cancellation invoice always comes after the end, its initial one too when it ended before a run sent it. Their
    owners need an account, where sync-invoices bills it. One listing of the drafts, only when ``ended`` names a
    subscription, made once an invocation (``run``'s two passes share it)."""
    names = {s.name for s in ended}
    if not names:
        return frozenset()
    billing = rt.settings.billing
    drafts = rt.snapshots().remember(
        "invoices:to-send", lambda: list_subscription_invoices(rt.amplify().resources, query=amp.TO_SEND_QUERY).invoices
    )
    return frozenset(
        i.subscription_name
        for i in drafts
        if i.subscription_name in names and i.total > 0 and billing.reads_invoices(i.marketplace_name)
    )


def invoiced_subscriptions(rt: InvoiceReads) -> list[AmplifySubscription]:
    """The subscriptions Amplify's invoices bill (their Marketplace is in marketplace mode), whatever their plan:
    link-accounts gives their owners Recurly accounts. No request when no Marketplace is in that mode."""
    query = invoiced_query(rt.settings.billing)
    if query is None:
        return []
    raws, _proof = rt.amplify().resources.listing("subscriptions", query=query)
    parsed = (parse_subscription(raw) for raw in raws)
    return [
        replace(s, raw=CompactResource.of(raw))
        for s, raw in zip(parsed, raws, strict=True)
        if isinstance(s, AmplifySubscription)
    ]
