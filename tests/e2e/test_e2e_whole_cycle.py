"""`run` plans the whole cycle before its first write (docs/architecture.md, "Dry run and the whole cycle").

A dry run applies each phase's plan to overlays, so the later phases plan against what the earlier ones would
leave: on a fresh sandbox it lists the changes the real run then makes. The safety valve judges every phase's plan
before the first write, so a refusal in a later phase leaves the earlier phases' writes unmade too."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from amplify_billing.changes import CommandReport, Outcome
from tools.driver import Cycle, amplify_writes, recurly_writes


def _changes(reports: list[CommandReport], outcome: Outcome) -> Counter[tuple[str, str, str]]:
    return Counter(
        (report.command, r.change.kind.value, r.change.object)
        for report in reports
        for r in report.results
        if r.outcome is outcome
    )


def test_a_dry_run_of_a_fresh_sandbox_lists_the_changes_the_run_then_applies(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=12)
    journal = Path(cycle.sandbox.settings(**cycle.overrides).state.path)
    dry = cycle.run(dry_run=True)
    assert recurly_writes(cycle.sandbox) == [] and amplify_writes(cycle.sandbox) == []
    assert not journal.exists(), "a dry run creates no journal"
    planned = _changes(dry, Outcome.PLANNED)
    real = cycle.run()
    applied = _changes(real, Outcome.APPLIED)
    assert all(r.exit_code == 0 for r in real), [(r.command, r.exit_code, r.note) for r in real]
    # the later phases saw the earlier phases' planned plans, accounts and subscriptions
    assert {command for command, _kind, _object in planned} >= {"sync-plans", "link-accounts", "sync-subscriptions"}
    assert planned[("sync-subscriptions", "create", "subscription")] > 0
    assert planned == applied
    # and the journal effects too: planned on the overlay, then written (and audited) by the real run
    assert dry[-2].figures["journal_records"] == real[-2].figures["journal_records"] > 0


def test_a_refusal_in_a_later_phase_leaves_nothing_written_by_the_earlier_ones(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=12)
    assert all(r.exit_code == 0 for r in cycle.run())
    # an earlier phase has a write to make: a plan's title changed in Amplify (sync-plans updates the Recurly plan)
    plan = cycle.sandbox.amplify.resources("ProductPlan")[0]
    plan["title"] = plan["title"] + " (renamed)"
    cycle.sandbox.amplify.put_resource(plan)
    # and a later phase would end too many: half the linked subscriptions cancelled in Amplify at once, a day on
    cycle.clock.advance(timedelta(days=1, hours=6))
    live = [n for n in cycle.scenario.live_subscriptions if cycle.scenario.subscriptions_by_name[n].get("approval")]
    for name in live[:6]:
        cycle.sandbox.amplify.set_subscription_state(name, "cancelled")
    cycle.clock.advance(timedelta(hours=2, minutes=1))  # their last windows settle
    marks = len(cycle.sandbox.recurly.requests), len(cycle.sandbox.amplify.requests)

    dry = {r.command: r for r in cycle.run(dry_run=True)}
    assert dry["sync-plans"].count(Outcome.PLANNED) >= 1, "the rename is planned"
    assert "a real run would refuse the whole cycle before its first write" in (dry["sync-plans"].note or "")

    (refused,) = cycle.run()
    assert (refused.command, refused.exit_code) == ("run", 4)
    assert "sync-subscriptions would cancel or terminate" in (refused.note or "")
    assert "nothing was written" in (refused.note or "")
    assert recurly_writes(cycle.sandbox, marks[0]) == [], "not even the earlier phase's plan update"
    assert amplify_writes(cycle.sandbox, marks[1]) == []
