"""End-to-end: the double billing guard (issue 15). A Marketplace whose billing is on with vendor Custom has Amplify
write an invoice for each subscription; in mode ``recurly`` Recurly would bill the same subscription too. `run`,
`sync-subscriptions` and `report-usage` skip that Marketplace's subscriptions with a withholding finding (exit 1)
that names it and the fix; nothing already in Recurly is ended, and no usage is posted for them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from amplify_billing.changes import ChangeKind, CommandReport
from amplify_billing.sandbox.amplify_invoices import enable_custom_billing
from tools.driver import Cycle, failed, recurly_writes


def guard_findings(report: CommandReport) -> list[str]:
    return [
        r.change.summary
        for r in report.results
        if r.change.kind is ChangeKind.FINDING and r.change.object == "marketplace" and r.change.withholds
    ]


def expected(cycle: Cycle, count: int) -> str:
    name = cycle.scenario.marketplace["name"]
    return (
        f"{count} subscription(s) of Marketplace Sandbox Marketplace ({name}) are not billed in Recurly: its billing "
        f"is on with vendor custom, so Amplify invoices them too, and billing.mode is recurly for it (each would be "
        f"billed twice). Set billing.marketplaces: {{{name}: marketplace}} to bill Amplify's invoices, or turn its "
        f"Custom billing off in the Marketplace's settings"
    )


def test_run_skips_a_custom_billed_marketplace_in_recurly_mode(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=6)
    enable_custom_billing(cycle.sandbox.amplify, cycle.scenario.marketplace)

    reports = cycle.run()

    by_command = {r.command: r for r in reports}
    subscriptions = by_command["sync-subscriptions"]
    [summary] = guard_findings(subscriptions)
    count = int(summary.split(" ", 1)[0])
    assert count > 0 and summary == expected(cycle, count)
    assert subscriptions.exit_code == 1
    assert [w.path for w in recurly_writes(cycle.sandbox) if "/subscriptions" in w.path] == []
    usage = by_command["report-usage"]
    assert guard_findings(usage) == [expected(cycle, count)] and usage.exit_code == 1
    assert failed(subscriptions) == [] and failed(usage) == []


def test_custom_billing_turned_on_later_ends_nothing_and_posts_no_usage(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=6)
    for report in cycle.run():
        assert failed(report) == [] and report.exit_code == 0, (report.command, failed(report))
    created = len(cycle.sandbox.recurly.state.subscriptions_in("active"))
    assert created > 0
    enable_custom_billing(cycle.sandbox.amplify, cycle.scenario.marketplace)
    cycle.clock.advance(timedelta(days=2))
    mark = len(cycle.sandbox.recurly.requests)

    reports = cycle.run()

    writes = recurly_writes(cycle.sandbox, mark)
    assert writes == [], [(w.method, w.path) for w in writes]
    for report in reports:
        if report.command in ("sync-subscriptions", "report-usage"):
            [summary] = guard_findings(report)
            assert summary == expected(cycle, int(summary.split(" ", 1)[0]))
            assert report.exit_code == 1


def test_marketplace_mode_for_it_lifts_the_guard(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=6, billing={"marketplaces": {"placeholder": "recurly"}})
    name = cycle.scenario.marketplace["name"]
    cycle.overrides["billing"] = {"marketplaces": {name: "marketplace"}}
    enable_custom_billing(cycle.sandbox.amplify, cycle.scenario.marketplace)

    reports = cycle.run()

    for report in reports:
        assert guard_findings(report) == [], report.command
        assert failed(report) == []
