"""Following Recurly's invoice on later runs: the one mapping of Recurly's invoice states to Amplify's. Pure.

Recurly's ``InvoiceStateEnum`` (OpenAPI v2021-02-25) has eight values. A charge invoice, which is what a purchase
makes, goes through ``pending``, ``processing``, ``past_due``, ``paid`` and ``failed``; ``open``, ``closed`` and
``voided`` belong to credit invoices (Recurly, "Charge invoice notifications" and "Credit invoice notifications",
docs.recurly.com/recurly-subscriptions/docs/charge-invoice-notifications). Amplify's invoice has the states
``draft, open, paid, incomplete, pastDue, void`` and a status level ``Pending, Success, Error`` for the gateway's
action (DOCS ``integrate_with_central/custom_billing.md``, "Invoice state and status").

| Recurly state | Amplify state | Amplify status | why |
|---|---|---|---|
| ``pending`` | ``open`` | as it is | issued, waiting for the consumer (manual) or the next charge (automatic) |
| ``processing`` | ``open`` | as it is | a bank payment (ACH) is on its way |
| ``past_due`` | ``pastDue`` | ``Success`` | not paid on time; Recurly's dunning goes on collecting |
| ``paid`` | ``paid`` | ``Success`` | the consumer gets access once the first invoice is paid |
| ``failed`` | ``incomplete`` | ``Error`` | Recurly stopped collecting; "incomplete" is the gateway's state for issues |
| ``closed`` | ``incomplete`` | ``Error`` | a credit invoice's state: not what a purchase makes, so an operator looks |
| ``voided`` | ``void`` | ``Success`` | voided in Recurly: it will never be paid |
| ``open`` | ``incomplete`` | ``Error`` | a credit invoice's state, as ``closed`` |

An Amplify invoice already ``pastDue`` (Amplify marks it at its due date) stays ``pastDue`` while Recurly still
collects (``pending``, ``processing``): only its status becomes ``Success``. Any other Recurly state is a finding.
An Amplify invoice that Amplify ``void``ed (status ``Pending``) stops its Recurly invoice with ``mark_invoice_failed``
while Recurly still collects it, then gets status ``Success``; one Recurly already settled gets its status from the
table (a paid one ``Error``: the consumer paid an invoice Amplify voided, a refund is an operator's decision).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from amplify_billing.amplify import invoices as amp
from amplify_billing.invoice_actions import RecurlyInvoice


@dataclass(frozen=True)
class Target:
    state: str
    level: str | None  # None: the status stays as it is
    reason: str


RECURLY_TO_AMPLIFY: Mapping[str, Target] = {
    "pending": Target(amp.OPEN, None, "issued in Recurly, waiting for payment"),
    "processing": Target(amp.OPEN, None, "a payment is processing in Recurly"),
    "past_due": Target(amp.PAST_DUE, amp.SUCCESS, "past due in Recurly; Recurly's dunning goes on collecting"),
    "paid": Target(amp.PAID, amp.SUCCESS, "paid in Recurly"),
    "failed": Target(amp.INCOMPLETE, amp.ERROR, "Recurly stopped collecting it (failed)"),
    "closed": Target(amp.INCOMPLETE, amp.ERROR, "closed in Recurly, a state of credit invoices: check it there"),
    "voided": Target(amp.VOID, amp.SUCCESS, "voided in Recurly"),
    "open": Target(amp.INCOMPLETE, amp.ERROR, "open in Recurly, a state of credit invoices: check it there"),
}
# Recurly states in which a charge invoice is still being collected: ``mark_invoice_failed`` accepts only these
# (OpenAPI ``mark_invoice_failed``: "Only invoices with the pending, processing or past_due states")
COLLECTING = frozenset({"pending", "processing", "past_due"})


def target_of(invoice: amp.SubscriptionInvoice, recurly: RecurlyInvoice) -> Target | None:
    """Where the Amplify invoice should stand for its Recurly invoice; None for a Recurly state not in the table."""
    target = RECURLY_TO_AMPLIFY.get(recurly.state)
    if target is None:
        return None
    if invoice.state == amp.PAST_DUE and target.state == amp.OPEN:
        # Amplify marked it past due at its due date; Recurly still collects: acknowledged, not moved back
        return Target(amp.PAST_DUE, amp.SUCCESS, f"past due in Amplify; Recurly still collects it ({recurly.state})")
    return target


def void_target(recurly: RecurlyInvoice | None) -> Target:
    """The status of an invoice Amplify voided, once its Recurly invoice (if any) no longer collects."""
    if recurly is None:
        return Target(amp.VOID, amp.SUCCESS, "no Recurly invoice was made for it")
    if recurly.state in COLLECTING or recurly.state in ("failed", "voided"):
        return Target(amp.VOID, amp.SUCCESS, f"Recurly invoice {recurly.number} no longer collects (marked failed)")
    if recurly.state == "paid":
        return Target(
            amp.VOID, amp.ERROR, f"Recurly invoice {recurly.number} was paid before the void; refund it there if due"
        )
    return Target(amp.VOID, amp.ERROR, f"Recurly invoice {recurly.number} is {recurly.state}: check it there")
