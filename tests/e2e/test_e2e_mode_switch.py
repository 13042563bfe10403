"""End-to-end: switching a Marketplace from recurly to marketplace mode at billing.switch_at (issue 15).

Recurly keeps the Marketplace's usage up to the switch and none after; each Recurly subscription is cancelled at
the switch (at term end: the term already billed is not refunded) and nothing new is created in Recurly for it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from amplify_billing.changes import CommandReport
from amplify_billing.reconcile.invoice_lines import po_number
from amplify_billing.sandbox import recurly_invoices
from amplify_billing.sandbox.amplify_invoices import InvoiceIssuer, enable_custom_billing
from tools.driver import Cycle, failed


def invoices_run(cycle: Cycle) -> CommandReport:
    from amplify_billing.commands.sync_invoices import InvoiceOptions, sync_invoices
    from amplify_billing.execute import recorded

    rt = cycle.runtime()
    try:
        return recorded(rt, "sync-invoices", False, lambda run_id: sync_invoices(rt, InvoiceOptions(), run_id=run_id))
    finally:
        rt.close()


def forced_run(cycle: Cycle) -> list[CommandReport]:
    """`run --force`: the switch cancels every Recurly subscription of the Marketplace, which the safety valve
    refuses without it (README, "Switching a Marketplace between modes")."""
    from amplify_billing.commands.run import RunOptions, run_all
    from amplify_billing.execute import recorded

    rt = cycle.runtime()
    try:
        return run_all(rt, RunOptions(force=True), recorded)
    finally:
        rt.close()


def test_recurly_to_marketplace_keeps_usage_up_to_the_switch_then_cancels(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=6, days=7)
    for report in cycle.run():
        assert failed(report) == [] and report.exit_code == 0, (report.command, failed(report))
    recurly = cycle.sandbox.recurly.state
    live = {s.uuid for s in recurly.subscriptions.values() if s.state == "active"}
    assert live
    cycle.clock.advance(timedelta(days=2))
    switch_at = cycle.clock().replace(minute=0, second=0, microsecond=0)
    name = cycle.scenario.marketplace["name"]
    cycle.overrides["billing"] = {
        "marketplaces": {name: "marketplace"},
        "switch_at": switch_at.isoformat().replace("+00:00", "Z"),
    }
    enable_custom_billing(cycle.sandbox.amplify, cycle.scenario.marketplace)
    cycle.clock.advance(timedelta(days=2))
    refused = cycle.run()  # a mass cancel: the valve asks for --force, nothing written
    assert {s.state for s in recurly.subscriptions.values() if s.uuid in live} == {"active"}
    assert any(r.exit_code == 4 for r in refused) or refused == [], [(r.command, r.exit_code) for r in refused]

    for report in forced_run(cycle):
        assert failed(report) == [], (report.command, failed(report))

    after = {s.uuid: s for s in recurly.subscriptions.values() if s.uuid in live}
    assert {s.state for s in after.values()} == {"canceled"}  # at term end: the term billed stays, no refund
    assert all(s.expires_at is not None and s.expires_at >= switch_at for s in after.values())
    assert [s.uuid for s in recurly.subscriptions.values() if s.uuid not in live] == []  # nothing new in Recurly
    usage = list(recurly.usage.values())
    assert usage, "usage before the switch is still Recurly's"
    assert max(u.usage_timestamp for u in usage) < switch_at
    ends = {u.merchant_tag for u in usage}
    cycle.clock.advance(timedelta(days=2))

    for report in cycle.run():
        assert failed(report) == []
    assert {u.merchant_tag for u in recurly.usage.values()} == ends  # none after the switch, ever


def _lose_the_journal(cycle: Cycle) -> None:
    rt = cycle.runtime()
    path = Path(rt.settings.state.path)
    rt.close()
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        (path.parent / name).unlink(missing_ok=True)


def _clear_link_attributes(cycle: Cycle) -> None:
    amplify = cycle.sandbox.amplify
    for subscription in amplify.resources("Subscription"):
        if subscription.get("attributes"):
            amplify.put_resource({**subscription, "attributes": {}})


@pytest.mark.parametrize("lost", ["nothing", "the journal", "the journal and Amplify's link attributes"])
def test_recurly_to_marketplace_never_bills_a_base_price_a_recurly_term_already_paid(
    make_cycle: Any, lost: str
) -> None:
    """The Recurly terms started before the switch and run past it (cancelled at term end, no refund): Amplify's
    first period invoice after the switch charges the base price for those days again, so it is not sent; the
    finding names the overlap and its amount (README, "Switching a Marketplace between modes"). The journal's
    links are not the only proof of a term paid in advance: with the journal lost, Amplify's link attribute names
    the Recurly subscription, and with both gone, the owner's Recurly account lists it."""
    switch_at = datetime(2026, 12, 1, tzinfo=UTC)
    cycle: Cycle = make_cycle(subscriptions=4, days=5, today=switch_at + timedelta(days=1))
    for report in cycle.run():
        assert failed(report) == [] and report.exit_code == 0, (report.command, failed(report))
    recurly = cycle.sandbox.recurly.state
    terms = {s.uuid: s.current_period_ends_at for s in recurly.subscriptions.values()}
    assert terms and all(end > switch_at for end in terms.values())  # paid in advance past the switch
    name = cycle.scenario.marketplace["name"]
    cycle.overrides["billing"] = {"marketplaces": {name: "marketplace"}, "switch_at": "2026-12-01T00:00:00Z"}
    enable_custom_billing(cycle.sandbox.amplify, cycle.scenario.marketplace)
    issuer = InvoiceIssuer(cycle.sandbox.amplify)
    issuer.issue(cycle.clock())  # initial invoices, before the switch: billed in Recurly, marked paid
    cycle.clock.advance(switch_at + timedelta(hours=2) - cycle.clock())
    for report in forced_run(cycle):
        assert failed(report) == [], (report.command, failed(report))
    assert {s.state for s in recurly.subscriptions.values()} == {"canceled"}

    cycle.clock.advance(datetime(2027, 1, 1, 1, tzinfo=UTC) - cycle.clock())
    issuer.issue(cycle.clock())
    if lost != "nothing":
        _lose_the_journal(cycle)
    if lost.endswith("attributes"):
        _clear_link_attributes(cycle)
    since = len(cycle.sandbox.recurly.requests)
    report = invoices_run(cycle)
    account_listings = [
        r
        for r in cycle.sandbox.recurly.requests[since:]
        if r.path.startswith("/accounts/") and r.path.endswith("/subscriptions")
    ]
    # a journal that saw the switch proves by its silence that Recurly never billed a subscription; without it, the
    # owners' accounts of the subscriptions nothing links are listed
    assert bool(account_listings) == (lost != "nothing")
    in_recurly = {f["value"] for s in recurly.subscriptions.values() for f in s.custom_fields}
    names = {s["name"] for s in cycle.sandbox.amplify.resources("Subscription") if s["metadata"]["id"] in in_recurly}
    december = [
        i
        for i in cycle.sandbox.amplify.resources("SubscriptionInvoice")
        if (i["spec"].get("period") or {}).get("from") == "2026-12-01T00:00:00.000+0000"
    ]
    # a plan without a base price has nothing billed twice, and a subscription Recurly never billed paid nothing
    # in advance: those are sent
    after = [i for i in december if i["spec"]["cost"]["plan"]["cost"] > 0 and i["metadata"]["scope"]["name"] in names]
    sent = [i for i in december if i not in after and i["spec"]["cost"]["total"] > 0]
    assert after and sent
    assert {i["state"]["name"] for i in sent} == {"open"}
    assert {i["state"]["name"] for i in after} == {"draft"}  # not sent, not marked
    pos = {inv["po_number"] for inv in recurly_invoices.invoices(cycle.sandbox.recurly)}
    assert not pos & {po_number(i["metadata"]["id"]) for i in after}
    held = [r.change for r in report.results if r.change.withholds]
    assert len(held) == len(after) and report.exit_code == 1
    for change in held:
        assert "would be billed twice, so nothing is sent" in change.summary
        assert any(uuid in change.summary for uuid in terms)
