"""sync-invoices plan: Amplify's SubscriptionInvoices x Recurly's invoices -> ChangeSet. Pure.

One decision per Amplify invoice (docs/architecture.md, "Where each rule lives"):
- ``draft`` with status ``Pending``: the owner's Recurly account gets one invoice, made by one ``create_purchase``
  (``invoice_lines`` builds it and proves its money), then ``billing.payment`` is written back, then state ``open``.
  If an earlier run already made it (the journal links it, or a purchase intent it left open found it by its
  ``po_number``), only what is left of the write-back is planned. A total of 0 is paid in Amplify at once: there is
  nothing to collect. An account without a card under automatic collection gets no invoice but status ``Error``;
  one the run only plans to create (a dry run, ``run``'s planning pass) has no card known yet: a finding says so.
- ``open`` or ``pastDue``: follow the Recurly invoice (``invoice_states``).
- ``void`` with status ``Pending``: stop the Recurly invoice that still collects, then status ``Success``.
Anything that cannot be done exactly is a finding that withholds it, with everything else still applied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from amplify_billing.actions import Action, Later, SetLink
from amplify_billing.amplify import invoices as amp
from amplify_billing.amplify.invoices import SubscriptionInvoice
from amplify_billing.amplify.parse import ParseProblem
from amplify_billing.changes import Change, ChangeKind, ChangeSet
from amplify_billing.identity import account_code
from amplify_billing.invoice_actions import (
    INVOICE_LINK,
    CreateInvoicePurchase,
    MarkInvoiceFailed,
    RecurlyInvoice,
    ResolveInvoiceIntent,
    SetInvoiceState,
    SetInvoiceStatus,
    WriteInvoicePayment,
)
from amplify_billing.reconcile.invoice_lines import Purchase, po_number, purchase_of
from amplify_billing.reconcile.invoice_states import COLLECTING, Target, target_of, void_target
from amplify_billing.reconcile.mode_switch import (
    AMPLIFY_SIDE,
    RECURLY_SIDE,
    SPLIT,
    PaidTerm,
    base_overlap,
    invoice_side,
)
from amplify_billing.settings.billing import MARKETPLACE_MODE
from amplify_billing.settings.secret import Secret

COMMAND = "sync-invoices"
PHASE_CREATE = 10
PHASE_JOURNAL = 15
PHASE_STOP = 20
PHASE_PAYMENT = 30
# a followed invoice's status is written before its state (``_to_target``), a write-back's state after its payment
PHASE_STATUS = 35
PHASE_STATE = 40
PHASE_REPORT = 95


@dataclass(frozen=True)
class InvoiceAccount:
    """The consumer's Recurly account: whether a card is on file (None: not known before it exists, an account this
    run only plans to create), and its hosted page (None: not known)."""

    code: str
    has_card: bool | None
    link: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True)
class InvoiceInputs:
    invoices: tuple[SubscriptionInvoice, ...]
    problems: tuple[ParseProblem, ...] = ()
    accounts: Mapping[str, InvoiceAccount] = field(default_factory=dict)
    # Amplify invoice id -> its Recurly invoice (found through the journal's link, an open intent's lookup, or
    # billing.payment.id)
    recurly: Mapping[str, RecurlyInvoice] = field(default_factory=dict)
    # Amplify invoice id -> why the Recurly invoice it is linked to cannot be used (gone, unreadable)
    unusable: Mapping[str, str] = field(default_factory=dict)
    # Amplify invoice id -> the key of the purchase intent an earlier run left open for it
    open_intents: Mapping[str, str] = field(default_factory=dict)
    # Amplify invoice ids the journal links to a Recurly invoice already
    linked: frozenset[str] = frozenset()
    # plan name -> its currency, for invoices that do not carry one
    plan_currencies: Mapping[str, str] = field(default_factory=dict)
    # subscription name -> the Recurly term it was billed for in advance before its Marketplace switched to
    # marketplace mode (``mode_switch.base_overlap``); absent: the journal links it to no Recurly subscription
    paid_terms: Mapping[str, PaidTerm] = field(default_factory=dict)


@dataclass(frozen=True)
class InvoicePlanOptions:
    owner: str = "marketplace"  # accounts.owner
    collection_method: str = "automatic"  # billing.collection_method
    # whether a Marketplace (by name) is in marketplace mode
    invoiced: Callable[[str | None], bool] = field(default=lambda name: True)
    # a Marketplace's configured mode and billing.switch_at, when it switched (or switches) modes
    switch: Callable[[str | None], tuple[str, datetime] | None] = field(default=lambda name: None)


def _ref(invoice: SubscriptionInvoice) -> str:
    return f"invoice {invoice.title} ({invoice.name}) of subscription {invoice.subscription_name}"


def _key(invoice: SubscriptionInvoice, what: str) -> str:
    return f"{what}:{invoice.id}"


def _finding(invoice: SubscriptionInvoice, summary: str, *, recurly: str = "-", withholds: bool = True) -> Change:
    return _change(
        invoice, ChangeKind.FINDING, "invoice", "finding", summary, None, PHASE_REPORT, recurly, withholds=withholds
    )


def _state(
    invoice: SubscriptionInvoice, name: str, reason: str, requires: tuple[str, ...] = (), recurly: str = "-"
) -> Change:
    # an invoice given up (incomplete) or voided counts as destructive: the safety valve judges a mass of them
    kind = ChangeKind.CANCEL if name in (amp.INCOMPLETE, amp.VOID) else ChangeKind.UPDATE
    action = SetInvoiceState(invoice.resource(), name, reason)
    summary = f"state {invoice.state} -> {name}: {reason}"
    return _change(invoice, kind, "invoice_state", "state", summary, action, PHASE_STATE, recurly, requires=requires)


def _status(
    invoice: SubscriptionInvoice, level: str, reason: str, requires: tuple[str, ...] = (), recurly: str = "-"
) -> Change:
    action = SetInvoiceStatus(invoice.resource(), level, reason)
    summary = f"status {invoice.status} -> {level}: {reason}"
    kind = ChangeKind.UPDATE
    return _change(invoice, kind, "invoice_status", "status", summary, action, PHASE_STATUS, recurly, requires=requires)


def _change(
    invoice: SubscriptionInvoice,
    kind: ChangeKind,
    name: str,
    what: str,
    summary: str,
    action: Action | None,
    phase: int,
    recurly: str,
    **more: Any,
) -> Change:
    """One planned change about ``invoice``, keyed by ``what`` it does to it (finding, state, status, payment)."""
    return Change(
        kind,
        name,
        _ref(invoice),
        recurly,
        summary,
        action,
        phase=phase,
        key=_key(invoice, what),
        amplify_id=invoice.id,
        **more,
    )


def _to_target(invoice: SubscriptionInvoice, target: Target, recurly: str) -> list[Change]:
    """The writes that bring the Amplify invoice to ``target``: status, then state (none when it stands there).

    The state comes last: a final one (paid, incomplete, void) takes the invoice out of the actionable listing
    (``amplify/invoices.ACTIONABLE_QUERY``), so a run stopped between the two writes must leave the state as it
    was, for the next run to see the invoice again and finish both (found by the fault soak)."""
    moves = invoice.state != target.state
    changes: list[Change] = []
    if target.level is not None and (invoice.status != target.level or moves):
        changes.append(_status(invoice, target.level, target.reason, recurly=recurly))
    if moves:
        changes.append(_state(invoice, target.state, target.reason, tuple(c.key for c in changes), recurly))
    return changes


def _write_back(
    invoice: SubscriptionInvoice,
    account: InvoiceAccount,
    invoice_id: str | Later,
    known: RecurlyInvoice | None,
    requires: tuple[str, ...],
) -> list[Change]:
    """``billing.payment`` (unless it already names this Recurly invoice), then state ``open``."""
    changes: list[Change] = []
    recurly = f"invoice {known.number}" if known else "invoice (known after apply)"
    written = known is not None and invoice.payment is not None and invoice.payment.id == known.id
    if not written:
        assert account.link is not None  # the caller makes a finding for an account without a hosted page
        action = WriteInvoicePayment(invoice.resource(), invoice_id, account.code, invoice.total, account.link, known)
        summary = f"billing.payment: Recurly {recurly}, pay link of account {account.code}"
        extra = {"requires": requires, "recurly_id": known.id if known else None}
        payment = _change(
            invoice, ChangeKind.LINK, "invoice_payment", "payment", summary, action, PHASE_PAYMENT, recurly, **extra
        )
        changes.append(payment)
        requires = (*requires, changes[-1].key)
    reason = f"Recurly {recurly} issued to account {account.code}"
    changes.append(_state(invoice, amp.OPEN, reason, requires, recurly))
    return changes


def _create(invoice: SubscriptionInvoice, account: InvoiceAccount, purchase: Purchase, method: str) -> Change:
    po = po_number(invoice.id)
    action = CreateInvoicePurchase(
        invoice.id,
        invoice.name,
        invoice.subscription_name,
        account.code,
        purchase.currency,
        po,
        method,
        purchase.lines,
    )
    amount = f"{purchase.total_minor} minor units of {purchase.currency}"
    return Change(
        ChangeKind.CREATE,
        "invoice",
        _ref(invoice),
        f"invoice {po}",
        f"one purchase of {len(purchase.lines)} line(s), {invoice.total} {purchase.currency} ({amount}) before tax, "
        f"{method} collection, on account {account.code}",
        action,
        phase=PHASE_CREATE,
        key=_key(invoice, "create"),
        amplify_id=invoice.id,
    )


def _draft(invoice: SubscriptionInvoice, inputs: InvoiceInputs, options: InvoicePlanOptions) -> list[Change]:
    if invoice.status != amp.PENDING:
        return []  # Error: refused earlier and not retried until an operator sets it Pending again; Success: done
    if invoice.id in inputs.unusable:
        return [
            _finding(
                invoice,
                f"{inputs.unusable[invoice.id]}; nothing is sent for it. Check the Recurly "
                "invoice, then set the Amplify invoice's status to Error (or void it) to stop this",
            )
        ]
    code = account_code(invoice, options.owner)
    account = inputs.accounts.get(code or "")
    known = inputs.recurly.get(invoice.id)
    if known is not None:
        finish = _write_back(invoice, account, known.id, known, ()) if account and account.link else []
        return [*_recovered(invoice, known, inputs), *(finish or [_no_account(invoice, code, account)])]
    if invoice.total == 0:
        return [_state(invoice, amp.PAID, "nothing to pay (total 0); no Recurly invoice is made")]
    currency = invoice.currency or inputs.plan_currencies.get(invoice.plan_name or "")
    if not currency:
        return [
            _finding(invoice, "its currency is unknown (neither the invoice nor its plan names one); nothing is sent")
        ]
    purchase = purchase_of(invoice, currency)
    if isinstance(purchase, str):
        return [_finding(invoice, f"{purchase}; nothing is sent")]
    if account is None or account.link is None:
        return [_no_account(invoice, code, account)]
    if options.collection_method == "automatic" and account.has_card is None:
        reason = (
            f"Recurly account {account.code} is created by this run: whether a card is on file is known once it "
            "exists, so the run decides (automatic collection)"
        )
        return [_finding(invoice, reason, withholds=False)]
    if options.collection_method == "automatic" and not account.has_card:
        reason = f"no card on file for Recurly account {account.code} (automatic collection); no invoice was made"
        return [_status(invoice, amp.ERROR, reason), _finding(invoice, reason, withholds=False)]
    create = _create(invoice, account, purchase, options.collection_method)
    return [create, *_write_back(invoice, account, Later(create.key), None, (create.key,))]


def _no_account(invoice: SubscriptionInvoice, code: str | None, account: InvoiceAccount | None) -> Change:
    if account is None:
        return _finding(
            invoice,
            f"the consumer has no Recurly account{f' ({code})' if code else ''}; run "
            "link-accounts (with accounts.create_missing: true), then sync-invoices again",
        )
    return _finding(
        invoice, f"Recurly gave account {code} no hosted login token, so there is no page to pay on; nothing is sent"
    )


def _recovered(invoice: SubscriptionInvoice, known: RecurlyInvoice, inputs: InvoiceInputs) -> list[Change]:
    """An invoice an earlier run made but did not finish: its intent closed and its link kept, before the rest."""
    changes: list[Change] = []
    intent = inputs.open_intents.get(invoice.id)
    if intent is not None:
        changes.append(
            Change(
                ChangeKind.LINK,
                "invoice_intent",
                _ref(invoice),
                f"invoice {known.number}",
                f"the purchase a killed run sent was found (invoice {known.number}): its intent is closed",
                ResolveInvoiceIntent(intent, known.id, "found by its po_number"),
                phase=PHASE_JOURNAL,
                key=_key(invoice, "intent"),
                amplify_id=invoice.id,
                recurly_id=known.id,
            )
        )
    if invoice.id not in inputs.linked:
        changes.append(
            Change(
                ChangeKind.LINK,
                "invoice_link",
                _ref(invoice),
                f"invoice {known.number}",
                "journal link kept",
                SetLink(INVOICE_LINK, invoice.id, known.id),
                phase=PHASE_JOURNAL,
                key=_key(invoice, "link"),
                amplify_id=invoice.id,
                recurly_id=known.id,
            )
        )
    return changes


def _follow(invoice: SubscriptionInvoice, inputs: InvoiceInputs) -> list[Change]:
    known = inputs.recurly.get(invoice.id)
    if known is None:
        why = inputs.unusable.get(invoice.id) or "it names no Recurly invoice (billing.payment.id)"
        return [_finding(invoice, f"{why}; its state cannot be followed", withholds=False)]
    target = target_of(invoice, known)
    if target is None:
        return [
            _finding(
                invoice,
                f"Recurly invoice {known.number} is in state {known.state!r}, which the mapping "
                "does not know; nothing is changed",
                recurly=f"invoice {known.number}",
                withholds=False,
            )
        ]
    return _to_target(invoice, target, f"invoice {known.number}")


def _voided(invoice: SubscriptionInvoice, inputs: InvoiceInputs) -> list[Change]:
    if invoice.status != amp.PENDING:
        return []
    known = inputs.recurly.get(invoice.id)
    if known is None and invoice.id in inputs.unusable:
        return [_finding(invoice, f"{inputs.unusable[invoice.id]}; the void is not acknowledged")]
    changes: list[Change] = []
    if known is not None and known.state in COLLECTING:
        changes.append(
            Change(
                ChangeKind.CANCEL,
                "invoice",
                _ref(invoice),
                f"invoice {known.number}",
                f"voided in Amplify: Recurly invoice {known.number} ({known.state}) is marked failed",
                MarkInvoiceFailed(known.id, known.number),
                phase=PHASE_STOP,
                key=_key(invoice, "stop"),
                amplify_id=invoice.id,
                recurly_id=known.id,
            )
        )
    target = void_target(known)
    status = _status(invoice, str(target.level), target.reason, tuple(c.key for c in changes))
    return [*changes, status]


def _across_switch(
    invoice: SubscriptionInvoice, switch: tuple[str, datetime], inputs: InvoiceInputs
) -> list[Change] | None:
    """A draft waiting for the gateway, of a Marketplace that switched modes: billed by Recurly (not sent, Amplify
    told it is paid), straddling the switch or charging a base price a Recurly term already covered (sent nowhere,
    withheld), or None: sent as usual (``mode_switch``)."""
    if invoice.state != amp.DRAFT or invoice.status != amp.PENDING:
        return None
    mode, switch_at = switch
    start, end = invoice.period_start, invoice.period_end
    side = invoice_side(mode, switch_at, start, end, invoice.created_at)
    if side.side == RECURLY_SIDE:
        return [_state(invoice, amp.PAID, side.reason)]
    if side.side == SPLIT:
        return [_finding(invoice, side.reason)]
    if side.side == AMPLIFY_SIDE and mode == MARKETPLACE_MODE:
        currency = invoice.currency or inputs.plan_currencies.get(invoice.plan_name or "", "")
        term = inputs.paid_terms.get(invoice.subscription_name)
        twice = base_overlap(switch_at, start, end, invoice.created_at, invoice.plan_cost, currency, term)
        if twice is not None:
            return [_finding(invoice, twice)]
    return None


def _decide(invoice: SubscriptionInvoice, inputs: InvoiceInputs, options: InvoicePlanOptions) -> list[Change]:
    switch = options.switch(invoice.marketplace_name)
    if switch is not None:
        across = _across_switch(invoice, switch, inputs)
        if across is not None:
            return across
    elif not options.invoiced(invoice.marketplace_name):
        return [
            _finding(
                invoice,
                f"its Marketplace {invoice.marketplace_name} bills through Amplify's invoices "
                "(Custom billing) but billing.mode is recurly for it: it would be billed twice. Set "
                "billing.marketplaces to marketplace for it, or turn its Custom billing off",
            )
        ]
    if invoice.state == amp.DRAFT:
        return _draft(invoice, inputs, options)
    if invoice.state in (amp.OPEN, amp.PAST_DUE):
        return _follow(invoice, inputs)
    if invoice.state == amp.VOID:
        return _voided(invoice, inputs)
    return []


def diff_invoices(inputs: InvoiceInputs, options: InvoicePlanOptions) -> ChangeSet:
    changes = [
        Change(
            ChangeKind.FINDING,
            "invoice",
            p.name,
            "-",
            f"cannot read the Amplify invoice: {p.reason}",
            phase=PHASE_REPORT,
            key=f"unreadable:{p.name}",
            withholds=True,
            amplify_id=p.id,
        )
        for p in inputs.problems
    ]
    for invoice in sorted(inputs.invoices, key=lambda i: i.id):
        changes.extend(_decide(invoice, inputs, options))
    # the valve's denominator: the Recurly invoices this run follows (a stop is destructive)
    return ChangeSet.of(COMMAND, changes, linked_count=len(inputs.recurly))


def refusal_changes(refused: Mapping[str, str], invoices: Sequence[SubscriptionInvoice]) -> ChangeSet:
    """After a purchase Recurly refused (a declined card): status ``Error`` with the reason, and a finding. Not
    retried: the next run leaves an invoice in Error alone until an operator sets it back to Pending."""
    changes: list[Change] = []
    for invoice in invoices:
        reason = refused.get(invoice.id)
        if reason is None:
            continue
        text = f"Recurly refused the payment, no invoice was made: {reason}"
        changes += [_status(invoice, amp.ERROR, text), _finding(invoice, text, withholds=False)]
    return ChangeSet.of(COMMAND, changes)
