"""``amplify-billing demo``: the whole cycle against the built-in emulators, on a virtual week.

Day 0: the first run creates plans, accounts and subscriptions and approves pending subscriptions.
Day 7: the cron run reports the week's traffic as usage. Then the same run again changes nothing.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from amplify_billing.commands.common import recorded
from amplify_billing.commands.run import RunOptions, run_all
from amplify_billing.models import CommandReport, Outcome
from amplify_billing.render import render_reports
from amplify_billing.runtime import Runtime
from amplify_billing.sandbox.clock import VirtualClock
from amplify_billing.sandbox.harness import Sandbox
from amplify_billing.sandbox.scenario import build_scenario


def _writes(reports: list[CommandReport]) -> int:
    return sum(1 for r in reports for result in r.results if result.outcome is Outcome.APPLIED)


def _run(sandbox: Sandbox, clock: VirtualClock, console: Console, err: Console, output: str) -> list[CommandReport]:
    runtime = Runtime(sandbox.settings(), console, err, output="json" if output == "json" else "table", clock=clock)
    try:
        reports = run_all(runtime, RunOptions(), recorded)
    finally:
        runtime.close()
    render_reports(console, reports, output="json" if output == "json" else "table")
    return reports


def run_demo(console: Console, err: Console, *, seed: int = 7, subscriptions: int = 40, output: str = "table") -> int:
    today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    clock = VirtualClock(today - timedelta(days=7))
    scenario = build_scenario(seed=seed, subscriptions=subscriptions, now=today, days_of_traffic=7)
    with tempfile.TemporaryDirectory(prefix="amplify-billing-demo-") as temp:
        sandbox = Sandbox.start(clock=clock, state_dir=Path(temp), seed=seed)
        try:
            scenario.seed_amplify(sandbox.amplify)
            table = output != "json"
            if table:
                console.rule(f"Day 0 ({clock():%Y-%m-%d %H:%M} UTC): first run against a fresh Recurly site")
            first = _run(sandbox, clock, console, err, output)
            clock.set(today)
            if table:
                console.rule(f"Day 7 ({clock():%Y-%m-%d %H:%M} UTC): the cron run reports a week of traffic")
            second = _run(sandbox, clock, console, err, output)
            if table:
                console.rule("Day 7 again: a second run finds nothing to do")
            third = _run(sandbox, clock, console, err, output)
            usage = sandbox.recurly.usage_records()
            units = sum(int(u["amount"]) for u in usage)
            failures = sum(r.count(Outcome.FAILED) for r in (*first, *second, *third))
            if table:
                console.rule("What just happened")
                console.print(
                    f"1. Plans, accounts and {len(sandbox.recurly.subscriptions())} subscriptions were created in "
                    f"the Recurly emulator ({_writes(first)} writes on day 0), and pending Amplify subscriptions "
                    "were approved once billing was in place.",
                    markup=False,
                    highlight=False,
                )
                console.print(
                    f"2. A week of API traffic became {len(usage)} usage records ({units} units), one per "
                    "(subscription, quota, day); the last run wrote nothing "
                    f"({_writes(third)} writes): every call is billed once.",
                    markup=False,
                    highlight=False,
                )
                console.print(
                    "3. For a real tenant: copy config.example.yaml to config.yaml, set the service account, "
                    "Recurly API key and the billingSystem=recurly product attribute, then run "
                    "`amplify-billing run --dry-run` (see README, 'Pointing at a real tenant').",
                    markup=False,
                    highlight=False,
                )
            return 0 if failures == 0 and _writes(third) == 0 else 1
        finally:
            sandbox.stop()
