"""End-to-end: what a `run` in marketplace mode asks of each system for Amplify's invoices (issue 15), counted on the
emulators' side. `run` plans the whole cycle before it applies it (docs/architecture.md, "Dry run and the whole
cycle"): a read that no write of the run changes before the second pass uses it is made once for both passes.
``python -m tools.bench --mode marketplace`` measures the same at scale."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from amplify_billing.sandbox.amplify_invoices import InvoiceIssuer, enable_custom_billing
from tools.driver import Cycle, failed

MARKETPLACE_MODE = {"mode": "marketplace", "collection_method": "automatic"}


def invoicing(make_cycle: Any, subscriptions: int = 8) -> Cycle:
    """A tenant whose one Marketplace bills through Custom billing, Amplify's initial invoices issued."""
    cycle: Cycle = make_cycle(subscriptions=subscriptions, billing=MARKETPLACE_MODE)
    enable_custom_billing(cycle.sandbox.amplify, cycle.scenario.marketplace)
    InvoiceIssuer(cycle.sandbox.amplify).issue(cycle.clock())
    return cycle


def run_ok(cycle: Cycle) -> None:
    for report in cycle.run():
        assert failed(report) == [] and report.exit_code == 0, (report.command, failed(report), report.note)


def to_pay(cycle: Cycle) -> dict[str, dict[str, Any]]:
    invoices = cycle.sandbox.amplify.resources("SubscriptionInvoice")
    return {i["metadata"]["id"]: i for i in invoices if i["spec"]["cost"]["total"] > 0}


def test_a_run_reads_each_followed_invoice_and_lists_amplify_invoices_once(make_cycle: Any) -> None:
    cycle = invoicing(make_cycle)
    run_ok(cycle)  # the accounts, and a Recurly invoice for each Amplify invoice to pay
    sent = {i["billing"]["payment"]["id"] for i in to_pay(cycle).values()}
    assert len(sent) >= 3
    amplify, recurly = len(cycle.sandbox.amplify.requests), len(cycle.sandbox.recurly.requests)

    run_ok(cycle)  # Recurly says paid: each becomes paid in Amplify

    assert {(i["state"]["name"], i["status"]["level"]) for i in to_pay(cycle).values()} == {("paid", "Success")}
    requests = cycle.sandbox.recurly.requests[recurly:]
    # every Recurly invoice followed, in one listing by ids (up to 200 a request), for both passes of the run
    assert not [r for r in requests if r.route == "get_invoice"]
    by_ids = [r for r in requests if r.route == "list_invoices"]
    assert len(by_ids) == 1 and set(by_ids[0].query["ids"][0].split(",")) == sent
    assert set(by_ids[0].query) == {"ids"}, "ids takes no other parameter (OpenAPI list_invoices)"
    amplify_reads = Counter(r.route for r in cycle.sandbox.amplify.requests[amplify:] if r.method == "GET")
    assert amplify_reads["list_subscriptioninvoices"] == 1
    invoiced = [
        r
        for r in cycle.sandbox.amplify.requests[amplify:]
        if r.route == "list_subscriptions" and "marketplace.name" in "".join(r.query.get("query", []))
    ]
    assert len(invoiced) == 1, "the invoiced Marketplace's subscriptions are listed once"


def test_a_followed_invoice_gone_from_recurly_is_read_alone_and_named(make_cycle: Any) -> None:
    """The listing by ids leaves out an id Recurly does not know (OpenAPI: "Invalid or unknown IDs will be
    ignored"): that one is read on its own, and its 404 is the finding, as before."""
    cycle = invoicing(make_cycle)
    run_ok(cycle)
    invoices = to_pay(cycle)
    gone = next(iter(invoices.values()))
    amplify = cycle.sandbox.amplify
    amplify.put_resource({**gone, "billing": {"payment": {**gone["billing"]["payment"], "id": "nosuchinvoice"}}})
    since = len(cycle.sandbox.recurly.requests)

    reports = cycle.run()

    alone = [r for r in cycle.sandbox.recurly.requests[since:] if r.route == "get_invoice"]
    assert {r.path.rsplit("/", 1)[-1] for r in alone} == {"nosuchinvoice"}
    notes = [f for report in reports for f in failed(report) + [c.change.summary for c in report.results]]
    assert any("nosuchinvoice, which no longer exists" in n for n in notes), notes


def test_an_account_made_by_the_run_is_not_read_back_for_its_pay_link(make_cycle: Any) -> None:
    cycle = invoicing(make_cycle)  # Amplify's invoices wait before the first run: no account exists yet
    recurly = len(cycle.sandbox.recurly.requests)

    run_ok(cycle)

    made = [r for r in cycle.sandbox.recurly.requests[recurly:] if r.route == "create_account"]
    read = [r for r in cycle.sandbox.recurly.requests[recurly:] if r.route == "get_account" and r.status == 200]
    assert made and read == [], "the create's answer carries the hosted login token and the card on file"
    tokens = {a["code"]: a["hosted_login_token"] for a in cycle.sandbox.recurly.accounts()}
    for invoice in to_pay(cycle).values():
        payment = invoice["billing"]["payment"]
        assert invoice["state"]["name"] == "open"
        assert payment["link"].endswith(tokens[payment["customer"]["id"]])


@pytest.mark.parametrize("collection", ["manual", "automatic"])
def test_a_dry_run_plans_the_invoices_of_accounts_the_run_creates(make_cycle: Any, collection: str) -> None:
    from amplify_billing.changes import ChangeKind, Outcome
    from amplify_billing.invoice_actions import CreateInvoicePurchase

    cycle = invoicing(make_cycle)
    cycle.overrides["billing"] = {**MARKETPLACE_MODE, "collection_method": collection}
    bills = to_pay(cycle)
    recurly = len(cycle.sandbox.recurly.requests)

    reports = {r.command: r for r in cycle.run(dry_run=True)}

    invoices = reports["sync-invoices"]
    assert invoices.exit_code == 0 and not (invoices.note or "").startswith("stopped"), invoices.note
    asked = [r.route for r in cycle.sandbox.recurly.requests[recurly:]]
    assert "get_account" not in asked, "an account the run only plans is not asked of Recurly"
    planned = [r.change for r in invoices.results if r.outcome is Outcome.PLANNED]
    purchases = [c for c in planned if isinstance(c.action, CreateInvoicePurchase)]
    found = [r.change.summary for r in invoices.results if r.change.kind is ChangeKind.FINDING]
    if collection == "manual":  # no card needed: each invoice to pay is planned as the real run makes it
        assert len(purchases) == len(bills) and found == []
    else:  # a new account's card on file is known once it exists: the real run decides, the dry run says so
        assert purchases == [] and len(found) == len(bills)
        assert all("created by this run" in text for text in found)


def test_an_owner_whose_only_subscription_ended_gets_an_account_for_the_invoices_it_owes(make_cycle: Any) -> None:
    """Amplify invoices a subscription that ended before the tool's first run (its initial invoice, then the
    cancellation one): its owner needs a Recurly account to be billed, though no live subscription asks for one."""
    cycle: Cycle = make_cycle(subscriptions=8, billing=MARKETPLACE_MODE)
    amplify, scenario = cycle.sandbox.amplify, cycle.scenario
    enable_custom_billing(amplify, scenario.marketplace)
    issuer = InvoiceIssuer(amplify)
    paid_for = {i["metadata"]["scope"]["name"] for i in issuer.issue(cycle.clock()) if i["spec"]["cost"]["total"] > 0}
    template = next(s for s in amplify.resources("Subscription") if s["name"] in paid_for)
    owners = [s["marketplace"]["resource"]["owner"] for s in scenario.subscriptions]
    taken = {o["user"]["id"] for o in owners if o.get("user")}
    user = next(u["guid"] for u in scenario.users if u["guid"] not in taken)
    owner = {**template["marketplace"]["resource"]["owner"], "user": {"id": user}}
    ended = {
        **template,
        "name": "ended-before-the-first-run",
        "metadata": {**template["metadata"], "id": "e" * 32},
        "marketplace": {**template["marketplace"], "resource": {"owner": owner}},
        "state": {"name": "cancelled", "when": {"timestamp": template["state"]["when"]["timestamp"]}},
    }
    amplify.put_resource(ended)
    owed = [i for i in issuer.issue(cycle.clock()) if i["metadata"]["scope"]["name"] == ended["name"]]
    assert [i["title"] for i in owed] == ["Initial Payment", "Cancellation"]

    run_ok(cycle)  # before: "the consumer has no Recurly account (amplify-user-…)", every run, exit 1

    assert f"amplify-user-{user}" in {a["code"] for a in cycle.sandbox.recurly.accounts()}
    sent = {i["name"]: i for i in amplify.resources("SubscriptionInvoice")}
    for invoice in owed:
        now = sent[invoice["name"]]
        expected = "open" if invoice["spec"]["cost"]["total"] > 0 else "paid"
        assert now["state"]["name"] == expected, now["state"]
