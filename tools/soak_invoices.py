"""The fault soak's marketplace mode (issue 15): a second Marketplace billed by Amplify's invoices, Amplify issuing
them while the soak runs, and the checks of what ``sync-invoices`` left.

**Set-up** (as ``demo --mode both``): beside the scenario's Marketplace (recurly mode), a Partner Marketplace with
billing on and vendor Custom takes every third subscription (``demo_modes.split_marketplace``; a third, not half as
in the demo, so that recurly mode keeps most of the scenario and the default suite's small soak stays short); the
configuration sets it to ``marketplace`` (``billing.marketplaces``) with automatic collection, so a purchase is
charged at once and a later run follows its Recurly invoice to ``paid``. ``run`` then includes ``sync-invoices``, and
the storm's faults and kills hit its requests as they hit the others: ``POST /purchases``, the scans of an account's
invoices, and the Amplify invoice writes (``billing`` with the payment, ``state``, ``status``).

**Amplify's side while the soak runs** (``AmplifyInvoicing``): before every run of the tool, Amplify's invoicing job
(``sandbox/amplify_invoices.InvoiceIssuer``) makes whatever is due by then, after the events of ``STAGES`` the run
has reached: ``start``, the invoices of the subscriptions approved before the soak (their initial payment, and a
cancellation one for those cancelled before it); ``approvals``, the provider approves the Partner Marketplace's
pending subscriptions in Amplify (the tool never approves a marketplace-mode subscription) and their initial
invoices follow; ``month end``, Amplify's run at 2 am after the month end that follows the traffic: one period
invoice per live subscription, with the base price and the period's consumption priced from the emulator's
traffic. The storm reaches the stages one after the other across its runs, so that purchases are made while runs
are killed (the writes for invoices not issued yet are left out of the range a kill point is drawn over:
``writes_not_due``); the clean reference run has all of them before its first run (its final state must not depend
on when Amplify issued). The tool looks at no invoice's period against its own clock, so a period that ends after the
real now is billed like any other.

**Checks**, from both emulators and the README's rules, never the tool's code (``invoice_problems``):

- exactly one Recurly invoice per Amplify invoice with something to pay, found by its ``po_number``
  (``amplify-inv-{invoice id}``, README "Marketplace mode"), none twice and none for anything else, on the
  subscription owner's account;
- its line items are the Amplify invoice's items (base price, setup fee, each quota's cost: one line per non-zero
  cost) and its subtotal is the Amplify total, in the currency and in its smallest unit (Decimal);
- the Amplify invoice's ``billing.payment`` names that Recurly invoice (id and number), and its state and status are
  what README's mapping gives for the Recurly invoice's state (``paid`` -> ``paid``/``Success``, ``pending`` ->
  ``open``…); an invoice with nothing to pay is ``paid`` with no Recurly invoice; none is left ``draft``;
- no Recurly subscription and no usage record for a subscription of a marketplace-mode Marketplace.

``invoice_sections`` gives both systems' invoices for the comparison with the reference run.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from amplify_billing.sandbox.amplify_emulator import AmplifyEmulator, format_timestamp
from amplify_billing.sandbox.amplify_invoices import InvoiceIssuer, next_month
from amplify_billing.sandbox.demo_modes import split_marketplace
from amplify_billing.sandbox.harness import CUSTOM_FIELD, Sandbox
from amplify_billing.sandbox.recurly_invoices import CURRENCY_DIGITS, invoices
from amplify_billing.sandbox.scenario import Scenario

KIND = "SubscriptionInvoice"
SPLIT_EVERY = 3  # the Partner Marketplace's share of the subscriptions (module docstring)
STAGES = ("start", "approvals", "month end")
LAST_STAGE = len(STAGES) - 1
# Amplify's invoicing run comes "about 2 am after month end" (sandbox/amplify_invoices.py)
AFTER_MONTH_END = timedelta(hours=2)
PO_PREFIX = "amplify-inv-"  # README, "Marketplace mode": the po_number is amplify-inv-{invoice id}
# README, "Marketplace mode": later runs follow Recurly's invoice. Recurly state -> (Amplify state, status level);
# a level of None leaves the status as it was (Pending after the write-back)
FOLLOWS: Mapping[str, tuple[str, str | None]] = {
    "pending": ("open", None),
    "processing": ("open", None),
    "past_due": ("pastDue", "Success"),
    "paid": ("paid", "Success"),
    "failed": ("incomplete", "Error"),
    "voided": ("void", "Success"),
}
# a Recurly invoice number in a reason an Amplify invoice carries: it differs between two sandboxes
INVOICE_NUMBER = re.compile(r"\b(invoice )\d+\b")
# a po_number, alone or at the head of a line's product_code: it holds the Amplify invoice's generated id
PO_NUMBER = re.compile(PO_PREFIX + r"[0-9a-f]{32}")


def stage_of_storm(index: int, storm_runs: int) -> int:
    """The stage the ``index``-th storm run (from 0) reaches: spread over the storm so that each comes before a run
    that may be killed, the month end before the storm's last killed run when there is one."""
    return min(LAST_STAGE, index * len(STAGES) // max(1, storm_runs - 1))


@dataclass
class AmplifyInvoicing:
    """Amplify's side of the Partner Marketplace in one sandbox (module docstring): its events and invoicing job."""

    amplify: AmplifyEmulator
    clock: Callable[[], datetime]
    marketplace: str
    month_end: datetime
    stage: int = -1  # the last stage done
    made: list[str] = field(default_factory=list)  # names of the invoices Amplify made, in order

    @classmethod
    def start(cls, sandbox: Sandbox, scenario: Scenario) -> AmplifyInvoicing:
        """Split the scenario's subscriptions over a Partner Marketplace with Custom billing (nothing issued yet)."""
        name = split_marketplace(sandbox.amplify, scenario, every=SPLIT_EVERY)
        return cls(sandbox.amplify, sandbox.clock, name, next_month(scenario.now) + AFTER_MONTH_END)

    def billing(self) -> dict[str, Any]:
        """The configuration's ``billing`` section: the Partner Marketplace in marketplace mode."""
        return {"marketplaces": {self.marketplace: "marketplace"}, "collection_method": "automatic"}

    def before_run(self, stage: int = LAST_STAGE) -> int:
        """Every event up to ``stage`` not done yet, then Amplify's invoicing job; how many invoices it made."""
        while self.stage < min(stage, LAST_STAGE):
            self.stage += 1
            if STAGES[self.stage] == "approvals":
                self._approve_pending()
        moment = self.month_end if STAGES[self.stage] == "month end" else self.clock()
        made = InvoiceIssuer(self.amplify).issue(moment)
        self.made.extend(i["name"] for i in made)
        return len(made)

    def writes_not_due(self, reference: tuple[int, int] | None) -> int:
        """Of a clean run's writes for invoices (``reference``: those writes, and how many invoices Amplify issued
        there), the share of the invoices not issued here yet, which no run can make now; 0 without a reference.
        Only the spread of the storm's kill points depends on it."""
        if reference is None:
            return 0
        writes, issued = reference
        return round(writes * max(0, issued - len(self.made)) / max(1, issued))

    def _approve_pending(self) -> None:
        """The provider approves the Partner Marketplace's pending subscriptions; Amplify activates each."""
        when = {"timestamp": format_timestamp(self.clock())}
        for s in self.amplify.resources("Subscription"):
            if (s.get("marketplace") or {}).get("name") != self.marketplace:
                continue
            if (s.get("approval") or {}).get("state") == "pending":
                approval = {"state": "approved", "reason": "Approved by the provider"}
                self.amplify.put_resource({**s, "approval": approval, "state": {"name": "active", "when": when}})


@dataclass(frozen=True)
class InvoiceFigures:
    """What marketplace mode billed, for the result line."""

    amplify: int = 0  # Amplify invoices of the Marketplaces it bills by its invoices
    to_pay: int = 0  # of which with something to pay
    recurly: int = 0  # Recurly invoices (one per invoice to pay when the soak passes)
    purchases: int = 0  # POST /purchases the tool sent, retries and repeats included

    @classmethod
    def of(cls, sandbox: Sandbox) -> InvoiceFigures:
        markets = invoiced_marketplaces(sandbox)
        amplify = [i for i in sandbox.amplify.resources(KIND) if (i.get("marketplace") or {}).get("name") in markets]
        return cls(
            amplify=len(amplify),
            to_pay=sum(1 for i in amplify if _money(i["spec"]["cost"]["total"]) > 0),
            recurly=len(invoices(sandbox.recurly)),
            purchases=sum(1 for r in sandbox.recurly.requests if r.method == "POST" and r.path == "/purchases"),
        )

    def line(self) -> str:
        return (
            f"invoices {self.amplify:,} in Amplify ({self.to_pay:,} to pay), {self.recurly:,} in Recurly from "
            f"{self.purchases:,} purchases sent"
        )


def invoice_writes(sandbox: Sandbox) -> int:
    """The writes the tool sent for invoices: purchases, and the Amplify invoices' subresources."""
    recurly = sum(1 for r in sandbox.recurly.requests if r.method == "POST" and r.path == "/purchases")
    amplify = sum(1 for r in sandbox.amplify.requests if r.method == "PUT" and "/subscriptioninvoices/" in r.path)
    return recurly + amplify


# ---- the checks ------------------------------------------------------------------------------------------------


def _money(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def _minor(amount: Decimal, currency: str) -> Decimal:
    """``amount`` in the currency's smallest unit (a fraction of it stays visible: it is never rounded away)."""
    return amount.scaleb(CURRENCY_DIGITS.get(currency, 2))


def invoiced_marketplaces(sandbox: Sandbox) -> frozenset[str]:
    """The Marketplaces Amplify bills by its invoices (billing on with vendor Custom), by name."""
    return frozenset(
        m["name"]
        for m in sandbox.amplify.resources("Marketplace")
        if ((m.get("billing") or {}).get("payment") or {}).get("type") == "custom"
    )


def invoiced_subscriptions(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    """The subscriptions (by Amplify id) of the Marketplaces Amplify bills by its invoices."""
    markets = invoiced_marketplaces(sandbox)
    return {
        s["metadata"]["id"]: s
        for s in sandbox.amplify.resources("Subscription")
        if (s.get("marketplace") or {}).get("name") in markets
    }


def _items(invoice: Mapping[str, Any]) -> list[Decimal]:
    """The Amplify invoice's costs: base price, setup fee, each quota's cost (spec.cost.plan), the non-zero ones."""
    plan = invoice["spec"]["cost"]["plan"]
    costs = [_money(plan.get("cost")), _money((plan.get("setup") or {}).get("cost"))]
    costs += [_money(q.get("cost")) for q in plan.get("quotas") or ()]
    return sorted(c for c in costs if c)


def _custom_field(subscription: Mapping[str, Any]) -> str | None:
    for item in subscription.get("custom_fields") or ():
        if item.get("name") == CUSTOM_FIELD:
            return str(item.get("value"))
    return None


class InvoiceChecks:
    """The final state of marketplace mode against both emulators (module docstring, "Checks")."""

    def __init__(self, scenario: Scenario, sandbox: Sandbox) -> None:
        self.scenario = scenario
        self.sandbox = sandbox
        self.markets = invoiced_marketplaces(sandbox)
        self.amplify = [
            i for i in sandbox.amplify.resources(KIND) if (i.get("marketplace") or {}).get("name") in self.markets
        ]
        self.recurly = invoices(sandbox.recurly)

    def all(self) -> list[list[str]]:
        """The problems of each check (one list per check)."""
        return [self.one_invoice_each(), self.amounts_and_write_back(), self.nothing_else_billed()]

    def _by_po(self) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for invoice in self.recurly:
            found.setdefault(str(invoice.get("po_number")), []).append(invoice)
        return found

    def _to_pay(self) -> dict[str, dict[str, Any]]:
        """Amplify invoices with something to pay, by their po_number."""
        return {
            PO_PREFIX + i["metadata"]["id"].lower(): i for i in self.amplify if _money(i["spec"]["cost"]["total"]) > 0
        }

    def one_invoice_each(self) -> list[str]:
        problems: list[str] = []
        by_po, to_pay = self._by_po(), self._to_pay()
        for po, found in sorted(by_po.items()):
            numbers = ", ".join(str(r["number"]) for r in found)
            if po not in to_pay:
                problems.append(f"Recurly invoice {numbers} (po_number {po}) bills no Amplify invoice with a total")
            elif len(found) > 1:
                problems.append(f"{_ref(to_pay[po])} has {len(found)} Recurly invoices: {numbers} ({po})")
        for po, invoice in sorted(to_pay.items()):
            if po not in by_po:
                problems.append(f"{_ref(invoice)} ({_money(invoice['spec']['cost']['total'])}) has no Recurly invoice")
        return problems

    def amounts_and_write_back(self) -> list[str]:
        problems: list[str] = []
        by_po = self._by_po()
        for invoice in sorted(self.amplify, key=lambda i: i["name"]):
            found = by_po.get(PO_PREFIX + invoice["metadata"]["id"].lower(), [])
            if _money(invoice["spec"]["cost"]["total"]) == 0:
                problems.extend(self._nothing_to_pay(invoice))
            elif len(found) == 1:
                problems.extend(self._amounts(invoice, found[0]))
                problems.extend(self._written_back(invoice, found[0]))
        return problems

    def _nothing_to_pay(self, invoice: Mapping[str, Any]) -> list[str]:
        state = (invoice.get("state") or {}).get("name")
        return [] if state == "paid" else [f"{_ref(invoice)} has nothing to pay but is {state}, not paid"]

    def _amounts(self, invoice: Mapping[str, Any], recurly: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        currency = str(invoice["spec"]["cost"]["plan"].get("currency"))
        number = recurly["number"]
        if recurly.get("currency") != currency:
            problems.append(f"Recurly invoice {number} is in {recurly.get('currency')}, {_ref(invoice)} in {currency}")
        lines = sorted(_minor(_money(line["subtotal"]), currency) for line in recurly.get("line_items") or ())
        items = [_minor(cost, currency) for cost in _items(invoice)]
        if lines != sorted(items):
            problems.append(
                f"Recurly invoice {number} has lines of {_units(lines)}, {_ref(invoice)} items of {_units(items)} "
                f"(smallest units of {currency})"
            )
        subtotal = _minor(_money(recurly.get("subtotal")), currency)
        total = _minor(_money(invoice["spec"]["cost"]["total"]), currency)
        if subtotal != total:
            problems.append(f"Recurly invoice {number}: subtotal {subtotal:f}, {_ref(invoice)}: total {total:f}")
        subscription = invoice["metadata"]["scope"]["name"]
        account = recurly["account"]["code"]
        if subscription in self.scenario.subscriptions_by_name and account != self.scenario.account_code(subscription):
            problems.append(f"Recurly invoice {number} is on account {account}, not its owner's")
        return problems

    def _written_back(self, invoice: Mapping[str, Any], recurly: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        payment = (invoice.get("billing") or {}).get("payment") or {}
        if (payment.get("id"), payment.get("number")) != (recurly["id"], recurly["number"]):
            problems.append(
                f"{_ref(invoice)}: billing.payment names Recurly invoice {payment.get('number')} "
                f"({payment.get('id')}), not {recurly['number']} ({recurly['id']})"
            )
        wanted = FOLLOWS.get(recurly["state"])
        state = (invoice.get("state") or {}).get("name")
        level = (invoice.get("status") or {}).get("level")
        if wanted is None:
            problems.append(f"Recurly invoice {recurly['number']} of {_ref(invoice)} is {recurly['state']}")
        elif state != wanted[0] or wanted[1] not in (None, level):
            want = wanted[0] + (f"/{wanted[1]}" if wanted[1] else "")
            problems.append(
                f"{_ref(invoice)} is {state}/{level}, not {want} for its Recurly invoice {recurly['number']} "
                f"({recurly['state']})"
            )
        return problems

    def nothing_else_billed(self) -> list[str]:
        """No Recurly subscription nor usage record for a subscription billed by Amplify's invoices."""
        theirs = invoiced_subscriptions(self.sandbox)
        problems: list[str] = []
        uuids: dict[str, str] = {}
        for s in self.sandbox.recurly.subscriptions():
            amplify_id = _custom_field(s)
            if amplify_id in theirs:
                uuids[s["uuid"]] = theirs[amplify_id]["name"]
                problems.append(
                    f"Recurly subscription {s['uuid']} bills {theirs[amplify_id]['name']}, whose Marketplace "
                    "Amplify bills by its invoices"
                )
        used = Counter(r["subscription_uuid"] for r in self.sandbox.recurly.usage_records())
        for uuid, name in sorted(uuids.items()):
            if used.get(uuid):
                problems.append(f"{used[uuid]} usage record(s) bill {name} in Recurly (subscription {uuid})")
        return problems


def _ref(invoice: Mapping[str, Any]) -> str:
    return f"Amplify invoice {invoice['title']} ({invoice['name']}) of {invoice['metadata']['scope']['name']}"


def _units(amounts: Iterable[Decimal]) -> str:
    return "[" + ", ".join(f"{a:f}" for a in amounts) + "]"


def invoice_problems(scenario: Scenario, sandbox: Sandbox) -> list[list[str]]:
    """Every way marketplace mode's final state is wrong, one list per check; empty lists when it is right."""
    return InvoiceChecks(scenario, sandbox).all()


# ---- comparing with a clean run -----------------------------------------------------------------------------------


def _stable(value: Any, names: Mapping[str, str]) -> Any:
    """``value`` without what differs between two sandboxes for the same outcome: a Recurly invoice's number (given
    in the order the purchases came), the tool's own timestamps, and the Amplify invoice ids in po_numbers and
    product codes (generated in the order Amplify made them), each replaced by the invoice's stable name."""
    if isinstance(value, Mapping):
        dropped = ("number", "invoice_number", "timestamp")
        return {k: _stable(v, names) for k, v in value.items() if k not in dropped}
    if isinstance(value, list):
        return [_stable(v, names) for v in value]
    if isinstance(value, str):
        value = PO_NUMBER.sub(lambda m: f"<po of {names.get(m.group(0), m.group(0))}>", value)
        return INVOICE_NUMBER.sub(r"\1N", value)
    return value


def invoice_sections(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    """Both systems' invoices keyed by a stable name, the Amplify invoice's subscription and title (for a Recurly
    invoice, the one its po_number names), for the comparison with a clean run; the caller drops generated ids and
    moments."""
    amplify_invoices = sandbox.amplify.resources(KIND)
    names = {
        PO_PREFIX + i["metadata"]["id"].lower(): f"{i['metadata']['scope']['name']}/{i['title']}"
        for i in amplify_invoices
    }
    recurly: dict[str, Any] = {}
    for invoice in invoices(sandbox.recurly):
        po = str(invoice.get("po_number"))
        key = names.get(po, po)
        recurly[key if key not in recurly else f"{key} ({invoice['id']})"] = _stable(invoice, names)
    amplify = {
        names[PO_PREFIX + i["metadata"]["id"].lower()]: _stable(
            {"spec": i.get("spec"), "billing": i.get("billing"), "state": i.get("state"), "status": i.get("status")},
            names,
        )
        for i in amplify_invoices
    }
    return {"recurly invoices": recurly, "amplify invoices": amplify}
