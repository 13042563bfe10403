"""The final usage of ended subscriptions is planned the same way by a dry run and a real run (docs/architecture.md,
"Dry run and the whole cycle"): a dry run is the plan applied to the overlays, nothing else.

sync-subscriptions reports the usage of ended subscriptions up to their end before it ends them, and the safety
valve judges those ends before any of that usage is planned: where the valve lets them through, the dry run lists
the usage the run then posts; where it refuses them, neither plans any usage (the run writes nothing)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from amplify_billing.changes import CommandReport, Outcome
from amplify_billing.errors import SafetyValveError
from tools.driver import Cycle, amplify_writes, recurly_writes

SETTLE = timedelta(hours=2)  # usage.settle_delay, default


def _final_usage(report: CommandReport, outcome: Outcome) -> list[tuple[str, str]]:
    """The usage rows of sync-subscriptions' report: (subscription:quota, "n record(s), m unit(s)")."""
    return sorted(
        (r.change.key, r.change.summary) for r in report.results if r.change.object == "usage" and r.outcome is outcome
    )


def _cancel(cycle: Cycle, count: int) -> list[str]:
    """Cancel ``count`` approved subscriptions on plans with usage add-ons, a day after the first run; their last
    windows then settle. Returns their Amplify ids."""
    scenario = cycle.scenario
    chosen = [
        raw
        for raw in (scenario.subscriptions_by_name[n] for n in scenario.live_subscriptions)
        if (raw.get("approval") or {}).get("state") == "approved" and scenario.usage_quotas[raw["spec"]["plan"]["name"]]
    ][:count]
    assert len(chosen) == count
    cycle.clock.advance(timedelta(days=1, hours=6))
    for raw in chosen:
        cycle.sandbox.amplify.set_subscription_state(raw["name"], "cancelled")
    cycle.clock.advance(SETTLE + timedelta(minutes=5))
    return [raw["metadata"]["id"] for raw in chosen]


def test_a_dry_run_plans_the_final_usage_the_real_run_posts(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=12)
    assert all(r.exit_code == 0 for r in cycle.run())
    (ended,) = _cancel(cycle, 1)
    marks = len(cycle.sandbox.recurly.requests), len(cycle.sandbox.amplify.requests)

    dry = cycle.sync_subscriptions(dry_run=True)
    assert recurly_writes(cycle.sandbox, marks[0]) == [] and amplify_writes(cycle.sandbox, marks[1]) == []
    real = cycle.sync_subscriptions()

    planned = _final_usage(dry, Outcome.PLANNED)
    assert planned and all(key.startswith(f"{ended}:") for key, _summary in planned)
    assert _final_usage(real, Outcome.APPLIED) == planned
    assert real.exit_code == 0 and dry.exit_code == 0


def test_when_the_valve_refuses_the_ends_neither_run_plans_their_final_usage(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=12)
    assert all(r.exit_code == 0 for r in cycle.run())
    _cancel(cycle, 5)  # more than safety.max_destructive_fraction (20%) of the linked subscriptions
    marks = len(cycle.sandbox.recurly.requests), len(cycle.sandbox.amplify.requests)

    dry = cycle.sync_subscriptions(dry_run=True)
    assert _final_usage(dry, Outcome.PLANNED) == []
    assert "a real run would stop here" in (dry.note or "") and "nothing was written" in (dry.note or "")
    with pytest.raises(SafetyValveError) as refused:
        cycle.sync_subscriptions()
    assert str(refused.value) in (dry.note or "")
    assert recurly_writes(cycle.sandbox, marks[0]) == [] and amplify_writes(cycle.sandbox, marks[1]) == []
