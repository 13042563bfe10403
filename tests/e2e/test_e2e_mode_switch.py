"""End-to-end: switching a Marketplace from recurly to marketplace mode at billing.switch_at (issue 15).

Recurly keeps the Marketplace's usage up to the switch and none after; each Recurly subscription is cancelled at
the switch (at term end: the term already billed is not refunded) and nothing new is created in Recurly for it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from amplify_billing.changes import CommandReport
from amplify_billing.sandbox.amplify_invoices import enable_custom_billing
from tools.driver import Cycle, failed


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
