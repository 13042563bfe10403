"""Which Recurly term a subscription was billed for in advance before its Marketplace switched to marketplace mode
(``reconcile/mode_switch.base_overlap``). Reads only.

The proof, in order (docs/architecture.md, "Where each rule lives"): the journal's link; when there is none, the
journal's silence counts only if it saw the time before the switch (a sync-subscriptions run finished before
``billing.switch_at``): a journal lost and made anew has not, so the Amplify subscription's link attribute, then
the owner's Recurly account's subscriptions in every state, counted and listed whole, say it instead.

Requests: none unless a draft on Amplify's side of such a switch charges a base price; then one direct read per
linked Recurly subscription, and, only without a journal that saw the switch, one listing of the invoiced Amplify
subscriptions and a count and a listing per owner account no link names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from amplify_billing.errors import AmplifyBillingError, NotFoundError
from amplify_billing.gather.options import subscription_options
from amplify_billing.identity import account_code
from amplify_billing.links import NAME_LINK, SUBSCRIPTION_LINK
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.mode_switch import (
    AMPLIFY_SIDE,
    PaidTerm,
    invoice_side,
    paid_term,
    paid_term_from_account,
)
from amplify_billing.settings.billing import MARKETPLACE_MODE
from amplify_billing.snapshots import GONE

if TYPE_CHECKING:
    from amplify_billing.amplify.invoices import SubscriptionInvoice
    from amplify_billing.collaborators import InvoiceReads

SUBSCRIPTIONS_COMMAND = "sync-subscriptions"


def _asked(rt: InvoiceReads, drafts: Iterable[SubscriptionInvoice]) -> dict[str, datetime]:
    """The subscriptions whose drafts charge a base price on Amplify's side of a switch to marketplace mode, with
    that switch's instant."""
    billing = rt.settings.billing
    asked: dict[str, datetime] = {}
    for invoice in drafts:
        switch = billing.switch(invoice.marketplace_name)
        if switch is None or switch[0] != MARKETPLACE_MODE or invoice.plan_cost <= 0:
            continue
        side = invoice_side(*switch, invoice.period_start, invoice.period_end, invoice.created_at)
        if side.side == AMPLIFY_SIDE:
            asked[invoice.subscription_name] = switch[1]
    return asked


def _read(rt: InvoiceReads, uuid: str) -> PaidTerm:
    """One direct read, whatever its state (a cancelled one has expired by the time its overlap is invoiced, so
    the live listing no longer shows it)."""
    read = rt.snapshots().recurly_subscription(uuid)
    if isinstance(read, Mapping):
        return paid_term(uuid, read)
    return PaidTerm(uuid, None, "it is gone from Recurly" if read is GONE else str(read))


def _from_account(rt: InvoiceReads, subscription: AmplifySubscription) -> PaidTerm | None:
    options = subscription_options(rt.settings)
    code = account_code(subscription, options.owner)
    if code is None:
        return None  # no owner: Recurly could never have billed it
    try:
        gateway = rt.recurly()
        total = gateway.count_account_subscriptions(f"code-{code}")  # first: a walk never comes up short of it
        listed = gateway.list_account_subscriptions(f"code-{code}")
    except NotFoundError:
        return None  # no account: Recurly never billed it
    except AmplifyBillingError as error:
        return PaidTerm("", None, f"the subscriptions of Recurly account {code} could not be read ({error})")
    walked = len({str(s.get("uuid")) for s in listed})
    incomplete = "no total to check" if total is None else ""
    if total is not None and walked < total:
        incomplete = f"{walked} of {total} listed (Recurly-Total-Records)"
    return paid_term_from_account(
        subscription.id,
        code,
        listed,
        incomplete,
        custom_field=options.custom_field,
        plan_prefix=rt.settings.catalog.plan_code_prefix,
    )


def paid_terms(
    rt: InvoiceReads,
    drafts: Iterable[SubscriptionInvoice],
    invoiced_subscriptions: Callable[[], Iterable[AmplifySubscription]],
) -> dict[str, PaidTerm]:
    """The term each asked subscription was billed for in advance, by subscription name; absent: Recurly never
    billed it, proven as the module says. ``invoiced_subscriptions`` lists them (called only when needed)."""
    asked = _asked(rt, drafts)
    if not asked:
        return {}
    journal = rt.journal()
    ids = {name: amplify_id for amplify_id, name in journal.links(NAME_LINK).items()}
    uuids = journal.links(SUBSCRIPTION_LINK)
    first = journal.first_applied_run(SUBSCRIPTIONS_COMMAND)
    terms: dict[str, PaidTerm] = {}
    unproven: list[str] = []
    for name, switch_at in sorted(asked.items()):
        uuid = uuids.get(ids.get(name, ""))
        if uuid:
            terms[name] = _read(rt, uuid)
        elif first is None or first.started_at >= switch_at:
            unproven.append(name)  # this journal has not seen the time Recurly billed: its silence proves nothing
    if not unproven:
        return terms
    by_name = {s.name: s for s in invoiced_subscriptions()}
    link_attribute = subscription_options(rt.settings).link_attribute
    for name in unproven:
        subscription = by_name.get(name)
        if subscription is None:
            terms[name] = PaidTerm("", None, f"its Amplify subscription {name} is not listed")
            continue
        attribute = subscription.attributes.get(link_attribute)
        term = _read(rt, attribute) if attribute else _from_account(rt, subscription)
        if term is not None:
            terms[name] = term
    return terms
