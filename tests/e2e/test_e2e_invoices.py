"""End-to-end: marketplace mode against both emulators (issue 15). Amplify rates and meters, Recurly invoices.

Each flow runs the tool's production code (the real ``recurly`` client, ``requests`` over HTTP) on a virtual clock,
then checks both emulators: the Recurly invoices (one per Amplify invoice, by its ``po_number``, with the exact
lines), the Amplify invoices' ``billing.payment``, state and status, and the report's findings.
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from rich.console import Console

from amplify_billing.changes import ChangeKind, CommandReport, Outcome
from amplify_billing.commands.sync_invoices import InvoiceOptions, sync_invoices
from amplify_billing.execute import recorded
from amplify_billing.reconcile.invoice_lines import po_number
from amplify_billing.render import render_report
from amplify_billing.sandbox import recurly_invoices
from amplify_billing.sandbox.amplify_invoices import InvoiceIssuer, enable_custom_billing
from amplify_billing.sandbox.recurly_cards import hosted_login_token
from tools.driver import Cycle, amplify_writes, failed, recurly_writes

MARKETPLACE_MODE = {"mode": "marketplace", "collection_method": "automatic"}


def invoices_run(cycle: Cycle, *, dry_run: bool = False) -> CommandReport:
    rt = cycle.runtime()
    try:
        body = lambda run_id: sync_invoices(rt, InvoiceOptions(dry_run=dry_run), run_id=run_id)  # noqa: E731
        return recorded(rt, "sync-invoices", dry_run, body)
    finally:
        rt.close()


def start(make_cycle: Any, *, subscriptions: int = 6, **billing: Any) -> Cycle:
    """A tenant whose one Marketplace bills through Custom billing, after a first `run` (accounts, no Recurly
    subscriptions), with the invoices Amplify made by the clock's now."""
    cycle: Cycle = make_cycle(subscriptions=subscriptions, billing={**MARKETPLACE_MODE, **billing})
    enable_custom_billing(cycle.sandbox.amplify, cycle.scenario.marketplace)
    for report in cycle.run():
        assert failed(report) == [], (report.command, failed(report))
    InvoiceIssuer(cycle.sandbox.amplify).issue(cycle.clock())
    return cycle


def amplify_invoices(cycle: Cycle) -> dict[str, dict[str, Any]]:
    return {i["metadata"]["id"]: i for i in cycle.sandbox.amplify.resources("SubscriptionInvoice")}


def recurly_by_po(cycle: Cycle) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for invoice in recurly_invoices.invoices(cycle.sandbox.recurly):
        found.setdefault(invoice["po_number"], []).append(invoice)
    return found


def to_bill(cycle: Cycle) -> dict[str, dict[str, Any]]:
    """Amplify invoices with something to pay (a total of 0 is paid in Amplify without a Recurly invoice)."""
    return {i: inv for i, inv in amplify_invoices(cycle).items() if inv["spec"]["cost"]["total"] > 0}


def state(invoice: dict[str, Any]) -> tuple[str, str]:
    return invoice["state"]["name"], invoice["status"]["level"]


def findings(report: CommandReport) -> list[str]:
    return [r.change.summary for r in report.results if r.change.kind is ChangeKind.FINDING]


# ---- creation, payment, following -----------------------------------------------------------------------------


def test_each_amplify_invoice_becomes_one_recurly_invoice_written_back_then_followed(make_cycle: Any) -> None:
    cycle = start(make_cycle)
    billed = to_bill(cycle)
    assert len(billed) >= 3, "the scenario bills a few initial invoices"

    report = invoices_run(cycle)

    assert failed(report) == [] and report.exit_code == 0
    by_po = recurly_by_po(cycle)
    assert sorted(by_po) == sorted(po_number(i) for i in billed)
    assert all(len(v) == 1 for v in by_po.values())
    for amplify_id, amplify in amplify_invoices(cycle).items():
        if amplify_id not in billed:
            assert state(amplify) == ("paid", "Pending")  # nothing to pay: paid at once, no Recurly invoice
            continue
        recurly = by_po[po_number(amplify_id)][0]
        lines = sum((Decimal(str(line["unit_amount"])) for line in recurly["line_items"]), Decimal(0))
        assert lines == Decimal(str(amplify["spec"]["cost"]["total"])) == Decimal(str(recurly["subtotal"]))
        assert recurly["collection_method"] == "automatic" and recurly["state"] == "paid"
        payment = amplify["billing"]["payment"]
        account = next(a for a in cycle.sandbox.recurly.accounts() if a["code"] == recurly["account"]["code"])
        assert payment == {
            "type": "custom",
            "id": recurly["id"],
            "number": recurly["number"],
            "issueDate": payment["issueDate"],
            "dueDate": payment["dueDate"],
            "amount": {
                "currency": recurly["currency"],
                "total": amplify["spec"]["cost"]["total"],
                "due": recurly["total"],
            },
            "link": f"https://sandbox.recurly.com/account/{account['hosted_login_token']}",
            "customer": {"id": recurly["account"]["code"]},
        }
        assert "documentLink" not in payment
        assert state(amplify) == ("open", "Pending")

    followed = invoices_run(cycle)  # automatic collection charged the card: Recurly says paid

    assert failed(followed) == []
    assert {state(amplify_invoices(cycle)[i]) for i in billed} == {("paid", "Success")}
    since = len(cycle.sandbox.recurly.requests), len(cycle.sandbox.amplify.requests)
    again = invoices_run(cycle)
    assert [r for r in again.results if r.outcome is Outcome.APPLIED] == []
    assert recurly_writes(cycle.sandbox, since[0]) == [] and amplify_writes(cycle.sandbox, since[1]) == []


def test_manual_collection_follows_payment_and_past_due(make_cycle: Any) -> None:
    cycle = start(make_cycle, collection_method="manual")
    assert failed(invoices_run(cycle)) == []
    billed = sorted(to_bill(cycle))
    assert {state(amplify_invoices(cycle)[i]) for i in billed} == {("open", "Pending")}
    paid, late = billed[0], billed[1]
    number = recurly_by_po(cycle)[po_number(paid)][0]["number"]
    recurly_invoices.settle(cycle.sandbox.recurly, number, "paid")  # the consumer pays on the hosted page

    cycle.clock.advance(timedelta(days=2))  # net 0 + the 24 hours Recurly adds: the others are past due
    assert failed(invoices_run(cycle)) == []

    now = amplify_invoices(cycle)
    assert state(now[paid]) == ("paid", "Success")
    assert state(now[late]) == ("pastDue", "Success")
    assert recurly_by_po(cycle)[po_number(late)][0]["state"] == "past_due"
    late_number = recurly_by_po(cycle)[po_number(late)][0]["number"]
    recurly_invoices.settle(cycle.sandbox.recurly, late_number, "paid")  # paid late, after dunning
    assert failed(invoices_run(cycle)) == []
    assert state(amplify_invoices(cycle)[late]) == ("paid", "Success")


def test_a_void_in_amplify_stops_the_recurly_invoice(make_cycle: Any) -> None:
    cycle = start(make_cycle, collection_method="manual")
    assert failed(invoices_run(cycle)) == []
    voided = sorted(to_bill(cycle))[0]
    amplify = amplify_invoices(cycle)[voided]
    # the consumer cancelled before paying the first invoice: Amplify voids it and raises it (status Pending)
    cycle.sandbox.amplify.put_resource({**amplify, "state": {"name": "void"}, "status": {"level": "Pending"}})

    report = invoices_run(cycle)

    assert failed(report) == []
    assert [r.change.kind for r in report.results if r.outcome is Outcome.APPLIED and r.change.object == "invoice"] == [
        ChangeKind.CANCEL
    ]
    assert recurly_by_po(cycle)[po_number(voided)][0]["state"] == "failed"
    assert state(amplify_invoices(cycle)[voided]) == ("void", "Success")
    writes = [r for r in recurly_writes(cycle.sandbox) if r.path.endswith("/mark_failed")]
    assert len(writes) == 1


def test_the_period_and_cancellation_invoices_bill_the_metered_units(make_cycle: Any) -> None:
    cycle = start(make_cycle)
    assert failed(invoices_run(cycle)) == []
    cycle.clock.advance(timedelta(days=20))  # past the month's end: Amplify invoices the period
    ending = next(
        s for s in cycle.sandbox.amplify.resources("Subscription") if (s.get("state") or {}).get("name") == "active"
    )
    cycle.sandbox.amplify.set_subscription_state(ending["name"], "cancelled", reason="Cancelled by the consumer")
    made = InvoiceIssuer(cycle.sandbox.amplify).issue(cycle.clock())
    titles = Counter(i["title"] for i in made)
    assert titles["Cancellation"] == 1 and any(t.startswith("Period ") for t in titles)

    report = invoices_run(cycle)

    assert failed(report) == []
    by_po = recurly_by_po(cycle)
    for invoice in made:
        if invoice["spec"]["cost"]["total"] > 0:
            recurly = by_po[po_number(invoice["metadata"]["id"])]
            assert len(recurly) == 1
            assert Decimal(str(recurly[0]["subtotal"])) == Decimal(str(invoice["spec"]["cost"]["total"]))
    consumed = [i for i in made if i["spec"]["cost"]["plan"].get("quotas")]
    assert consumed, "some period had priced consumption"
    units = {q["name"]: q["units"] for i in consumed for q in i["spec"]["quotas"]}
    lines = [line["description"] for i in consumed for line in by_po[po_number(i["metadata"]["id"])][0]["line_items"]]
    assert any(f"{units[name]:,} units" in text for name in units for text in lines)


def test_an_invoice_of_a_subscription_that_ended_before_its_owner_had_an_account_is_billed(make_cycle: Any) -> None:
    # found by the fault soak: Amplify invoices a subscription after it ends (its cancellation invoice always, its
    # initial one too when it ended before a run sent it); an owner with nothing else live never got an account, and
    # the invoice was a withholding finding on every run, whose advice (run link-accounts) could not help
    cycle: Cycle = make_cycle(subscriptions=16, seed=5, billing=MARKETPLACE_MODE)
    enable_custom_billing(cycle.sandbox.amplify, cycle.scenario.marketplace)
    scenario = cycle.scenario
    live = {
        scenario.account_code(s["name"])
        for s in scenario.subscriptions
        if (s.get("approval") or {}).get("state") == "pending" or (s.get("state") or {}).get("name") == "active"
    }
    ended = {n for n in scenario.cancelled_subscriptions if scenario.account_code(n) not in live}
    InvoiceIssuer(cycle.sandbox.amplify).issue(cycle.clock())  # made at its approval, before the first run
    theirs = {i: inv for i, inv in to_bill(cycle).items() if inv["metadata"]["scope"]["name"] in ended}
    assert theirs, "the scenario has an ended subscription with something to pay whose owner has nothing else"

    reports = cycle.run()

    for report in reports:
        assert failed(report) == [] and report.exit_code == 0, (report.command, findings(report))
    by_po = recurly_by_po(cycle)
    for amplify_id, invoice in theirs.items():
        recurly = by_po.get(po_number(amplify_id), [])
        assert len(recurly) == 1, invoice["title"]
        assert recurly[0]["account"]["code"] == scenario.account_code(invoice["metadata"]["scope"]["name"])
        assert state(amplify_invoices(cycle)[amplify_id]) == ("open", "Pending")


# ---- refusals and bad inputs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("card", "why"), [("declined", "Your card was declined"), ("none", "no card on file")])
def test_a_declined_card_or_none_makes_no_invoice_and_is_not_retried(make_cycle: Any, card: str, why: str) -> None:
    cycle = start(make_cycle)
    target = sorted(to_bill(cycle))[0]
    owner = amplify_invoices(cycle)[target]["marketplace"]["resource"]["owner"]
    code = f"amplify-user-{owner['user']['id']}" if owner.get("user") else f"amplify-team-{owner['id']}"
    recurly_invoices.set_card(cycle.sandbox.recurly, code, card)  # type: ignore[arg-type]

    report = invoices_run(cycle)

    refused = [t for t in findings(report) if why in t]
    assert refused and report.exit_code == 0, (findings(report), failed(report))
    assert po_number(target) not in recurly_by_po(cycle)
    amplify = amplify_invoices(cycle)[target]
    assert state(amplify) == ("draft", "Error")
    assert why in amplify["status"]["reasons"][0]["detail"]
    purchases = len([r for r in recurly_writes(cycle.sandbox) if r.path == "/purchases"])
    again = invoices_run(cycle)
    assert len([r for r in recurly_writes(cycle.sandbox) if r.path == "/purchases"]) == purchases
    assert findings(again) == []


def test_bad_invoices_send_nothing_and_say_why(make_cycle: Any) -> None:
    cycle = start(make_cycle)
    bad = sorted(to_bill(cycle))[:2]
    invoices = amplify_invoices(cycle)
    unknown = invoices[bad[0]]
    unknown["spec"]["cost"]["plan"]["currency"] = "XYZ"
    wrong = invoices[bad[1]]
    wrong["spec"]["cost"]["total"] = wrong["spec"]["cost"]["total"] + 1
    for changed in (unknown, wrong):
        cycle.sandbox.amplify.put_resource(changed)

    report = invoices_run(cycle)

    assert report.exit_code == 1  # money held back
    texts = findings(report)
    assert any("its currency 'XYZ' is not one this tool knows" in t for t in texts)
    assert any("add up to" in t and "not its total" in t for t in texts)
    for amplify_id in bad:
        assert po_number(amplify_id) not in recurly_by_po(cycle)
        assert state(amplify_invoices(cycle)[amplify_id]) == ("draft", "Pending")


def test_a_consumer_without_a_recurly_account_gets_a_finding(make_cycle: Any) -> None:
    cycle = start(make_cycle, subscriptions=4)
    subscription = cycle.scenario.subscriptions[0]
    newcomer = {
        **subscription,
        "name": "newcomer-sub",
        "metadata": {"id": "f" * 32},
        "marketplace": {
            **subscription["marketplace"],
            "resource": {"owner": {"type": "team", "id": "0f0f0f0f-team-without-account"}},
        },
        "approval": {"state": "approved"},
        "state": {"name": "active"},
    }
    cycle.sandbox.amplify.put_resource(newcomer)
    InvoiceIssuer(cycle.sandbox.amplify).issue(cycle.clock())

    report = invoices_run(cycle)

    texts = findings(report)
    assert any("no Recurly account (amplify-team-0f0f0f0f-team-without-account)" in t for t in texts)
    assert report.exit_code == 1


def test_an_invoice_linked_to_a_recurly_invoice_that_no_longer_exists_sends_nothing(make_cycle: Any) -> None:
    cycle = start(make_cycle)
    target = sorted(to_bill(cycle))[0]
    rt = cycle.runtime()
    try:
        rt.journal().set_link("invoice", target, "gone0000000001")  # e.g. a journal restored from another site
    finally:
        rt.close()

    report = invoices_run(cycle)

    assert any("Recurly invoice gone0000000001, which no longer exists (HTTP 404)" in t for t in findings(report))
    assert po_number(target) not in recurly_by_po(cycle)
    assert state(amplify_invoices(cycle)[target]) == ("draft", "Pending")
    assert report.exit_code == 1


# ---- the mode's other rules ------------------------------------------------------------------------------------


def test_marketplace_mode_makes_no_recurly_subscription_nor_usage_but_accounts(make_cycle: Any) -> None:
    cycle = start(make_cycle)
    cycle.clock.advance(timedelta(days=7))
    for report in cycle.run():
        assert failed(report) == []

    assert cycle.sandbox.recurly.subscriptions() == []
    assert cycle.sandbox.recurly.usage_records() == []
    codes = {a["code"] for a in cycle.sandbox.recurly.accounts()}
    approved = [s for s in cycle.scenario.subscriptions if (s.get("state") or {}).get("name") == "active"]
    assert {cycle.scenario.account_code(s["name"]) for s in approved} <= codes


def test_usage_names_amplify_invoices_as_the_bill_of_a_marketplace_mode_subscription(make_cycle: Any) -> None:
    """Beside a recurly-mode Marketplace, the traffic Traceability counts holds the marketplace-mode subscriptions'
    too: its units are listed (never dropped in silence) and say who bills them, not "not on a plan billed
    through Recurly"."""
    from amplify_billing.sandbox.demo_modes import split_marketplace

    cycle: Cycle = make_cycle(subscriptions=10)
    second = split_marketplace(cycle.sandbox.amplify, cycle.scenario)
    cycle.overrides["billing"] = {"marketplaces": {second: "marketplace"}}
    cycle.clock.advance(timedelta(days=7))
    reports = cycle.run()
    for report in reports:
        assert failed(report) == [], (report.command, failed(report))

    usage = next(r for r in reports if r.command == "report-usage")
    units = [r.change for r in usage.results if r.change.object == "usage" and r.change.units]
    amplify = cycle.sandbox.amplify
    invoiced = {s["metadata"]["id"] for s in amplify.resources("Subscription") if s["marketplace"]["name"] == second}
    theirs = [c for c in units if c.amplify_id in invoiced]
    assert theirs, [c.summary for c in units]
    assert all("Amplify's invoices bill this traffic" in c.summary for c in theirs), [c.summary for c in theirs]


def test_the_pay_link_token_is_hidden_from_every_output(make_cycle: Any) -> None:
    cycle = start(make_cycle)
    report = invoices_run(cycle)
    tokens = {hosted_login_token(cycle.sandbox.recurly.state, a) for a in cycle.sandbox.recurly.state.accounts.values()}
    shown = io.StringIO()
    render_report(Console(file=shown, width=200), report, output="table")
    render_report(Console(file=shown, width=200), report, output="json")
    text = shown.getvalue() + cycle.output.getvalue() + repr(report)
    assert tokens and not any(t in text for t in tokens)
    links = [
        i["billing"]["payment"]["link"] for i in amplify_invoices(cycle).values() if "link" in i["billing"]["payment"]
    ]
    assert links and all(any(t in link for t in tokens) for link in links)


def test_a_dry_run_plans_the_purchases_and_writes_nothing(make_cycle: Any) -> None:
    cycle = start(make_cycle)
    bills = to_bill(cycle)
    assert bills
    marks = len(cycle.sandbox.recurly.requests), len(cycle.sandbox.amplify.requests)
    before = {i: state(inv) for i, inv in amplify_invoices(cycle).items()}
    dry = invoices_run(cycle, dry_run=True)
    # the overlays hold what the plan would do; neither system sees a write
    assert recurly_writes(cycle.sandbox, marks[0]) == [] and amplify_writes(cycle.sandbox, marks[1]) == []
    assert {i: state(inv) for i, inv in amplify_invoices(cycle).items()} == before
    assert recurly_by_po(cycle) == {}
    assert dry.count(Outcome.PLANNED) >= len(bills)
    real = invoices_run(cycle)
    assert real.count(Outcome.APPLIED) == dry.count(Outcome.PLANNED)
