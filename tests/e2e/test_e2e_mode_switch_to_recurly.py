"""End-to-end: switching a Marketplace from marketplace to recurly mode at billing.switch_at (issue 15).

Amplify's invoices bill every period up to the switch (sent by sync-invoices); the Recurly subscriptions, made
before the switch, start at it (Recurly's ``starts_at``) and carry the usage from it on. Each period is billed on
exactly one side (README, "Switching a Marketplace between modes").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.reconcile.invoice_lines import po_number
from amplify_billing.sandbox import recurly_invoices
from amplify_billing.sandbox.amplify_invoices import InvoiceIssuer, enable_custom_billing
from tools.driver import Cycle, failed

SWITCH = datetime(2026, 12, 1, tzinfo=UTC)  # a metering period's start: no Amplify invoice straddles it


def clean(reports: list[Any]) -> None:
    for report in reports:
        assert failed(report) == [] and report.exit_code == 0, (report.command, failed(report), report.exit_code)


def test_marketplace_to_recurly_bills_each_period_on_one_side(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(
        subscriptions=6, days=7, today=SWITCH + timedelta(days=2), billing={"mode": "marketplace"}
    )
    amplify, recurly = cycle.sandbox.amplify, cycle.sandbox.recurly
    market = cycle.scenario.marketplace
    enable_custom_billing(amplify, market)
    clean(cycle.run())
    InvoiceIssuer(amplify).issue(cycle.clock())  # the initial invoices, at approval
    clean(cycle.run())

    # the operator sets the switch ahead of it; Custom billing stays on, Amplify bills up to the switch
    cycle.overrides["billing"] = {"marketplaces": {market["name"]: "recurly"}, "switch_at": "2026-12-01T00:00:00Z"}
    clean(cycle.run())
    made = list(recurly.state.subscriptions.values())
    assert made and {s.state for s in made} == {"future"}  # nothing billed in Recurly before the switch
    assert {s.current_period_started_at for s in made} == {SWITCH}

    # after the switch Amplify makes the invoices of the period ending at it: still Amplify's to bill
    cycle.clock.advance(SWITCH + timedelta(hours=1) - cycle.clock())
    InvoiceIssuer(amplify).issue(cycle.clock())
    reports = cycle.run()
    assert all(failed(r) == [] for r in reports)
    # Custom billing still on after the switch: the guard withholds the Marketplace from Recurly (exit 1)
    assert any(r.exit_code == 1 for r in reports), [(r.command, r.exit_code) for r in reports]
    assert not recurly.state.usage

    amplify.put_resource({**market, "billing": {}})  # Custom billing off, as the procedure's last step
    cycle.clock.advance(timedelta(days=2) - timedelta(hours=1))
    clean(cycle.run())

    # each Amplify invoice: one Recurly invoice, and its span ends by the switch
    invoices = amplify.resources("SubscriptionInvoice")
    assert invoices
    pos: dict[str, int] = {}
    for invoice in recurly_invoices.invoices(recurly):
        pos[invoice["po_number"]] = pos.get(invoice["po_number"], 0) + 1
    for invoice in invoices:
        period = invoice["spec"].get("period")
        if period:
            assert parse_timestamp(period["to"]) <= SWITCH
        if invoice["spec"]["cost"]["total"] > 0:
            assert pos.get(po_number(invoice["metadata"]["id"])) == 1, invoice["title"]
    assert any(i["spec"].get("period") for i in invoices), "the period ending at the switch was invoiced"
    # Recurly: its terms start at the switch, its usage is from the switch on only, and there is some
    made_uuids = {m.uuid for m in made}
    subscriptions = [s for s in recurly.state.subscriptions.values() if s.uuid in made_uuids]
    assert len(subscriptions) == len(recurly.state.subscriptions)  # none made after the switch
    assert {s.state for s in subscriptions} == {"active"}
    assert {s.activated_at for s in subscriptions} == {SWITCH}
    usage = list(recurly.state.usage.values())
    assert usage, "the traffic after the switch is Recurly's"
    assert min(u.usage_timestamp for u in usage) >= SWITCH
