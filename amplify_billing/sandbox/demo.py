"""``amplify-billing demo``: the whole cycle against the built-in emulators, on a virtual week.

Day 0: the first run creates plans, accounts and subscriptions and approves pending subscriptions.
Day 3: a cron run reports the first days of traffic as usage. Day 7: the cron run reports the rest; then the
same run again changes nothing, and the status report shows both systems in step. Traceability keeps 7 days of
transactions (reference §9.1), so a week is billed by runs inside it, as a daily cron does: a run on day 7 alone
could no longer count day 0. Everything runs through the production code over HTTP; only the clock is virtual.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from amplify_billing.changes import CommandReport, Outcome
from amplify_billing.commands.run import RunOptions, run_all
from amplify_billing.execute import recorded
from amplify_billing.gather.status import gather_status
from amplify_billing.reconcile.status import build_status
from amplify_billing.render import overall_exit_code, render_reports
from amplify_billing.render.envelope import demo_envelope, envelope_json
from amplify_billing.render.status import render_status
from amplify_billing.runtime import Runtime
from amplify_billing.sandbox.clock import VirtualClock
from amplify_billing.sandbox.harness import Sandbox
from amplify_billing.sandbox.scenario import Scenario, build_scenario

# The demo shows the shape of each report, not every one of its hundreds of rows.
DEMO_ROWS_PER_KIND = 6
# one row per subscription would fill screens; the summary, plans and drift tell the story
DEMO_STATUS_SECTIONS = frozenset({"summary", "plans", "drift", "intents", "runs"})
DEMO_DAYS = 7
# the mid-week cron run: every window it leaves is still inside Traceability's 7 days on day 7
MID_WEEK = timedelta(days=3)


def _writes(reports: list[CommandReport]) -> int:
    return sum(1 for r in reports for result in r.results if result.outcome is Outcome.APPLIED)


def _runtime(sandbox: Sandbox, clock: VirtualClock, console: Console, err: Console, **sections: Any) -> Runtime:
    return Runtime(sandbox.settings(**sections), console, err, clock=clock)


def _run(
    sandbox: Sandbox, clock: VirtualClock, console: Console, err: Console, table: bool, **sections: Any
) -> list[CommandReport]:
    runtime = _runtime(sandbox, clock, console, err, **sections)
    try:
        reports = run_all(runtime, RunOptions(), recorded)
    finally:
        runtime.close()
    if table:
        render_reports(console, reports, output="table", max_rows_per_kind=DEMO_ROWS_PER_KIND)
    return reports


@contextmanager
def seeded(seed: int, subscriptions: int, today: datetime) -> Iterator[tuple[Sandbox, VirtualClock, Scenario]]:
    """A started sandbox seeded with a scenario whose DEMO_DAYS of traffic end at ``today``, its clock at day 0."""
    clock = VirtualClock(today - timedelta(days=DEMO_DAYS))
    scenario = build_scenario(seed=seed, subscriptions=subscriptions, now=today, days_of_traffic=DEMO_DAYS)
    with tempfile.TemporaryDirectory(prefix="amplify-billing-demo-") as temp:
        sandbox = Sandbox.start(clock=clock, state_dir=Path(temp), seed=seed)
        try:
            scenario.seed_amplify(sandbox.amplify)
            yield sandbox, clock, scenario
        finally:
            sandbox.stop()


def run_demo(console: Console, err: Console, *, seed: int = 7, subscriptions: int = 40, output: str = "table") -> int:
    today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    day0 = today - timedelta(days=DEMO_DAYS)
    table = output != "json"
    with seeded(seed, subscriptions, today) as (sandbox, clock, _scenario):
        runs: list[tuple[str, list[CommandReport]]] = []
        if table:
            console.rule(f"Day 0 ({clock():%Y-%m-%d %H:%M} UTC): first run against a fresh Recurly site")
        runs.append(("day 0", _run(sandbox, clock, console, err, table)))
        clock.set(day0 + MID_WEEK)
        if table:
            console.rule(f"Day 3 ({clock():%Y-%m-%d %H:%M} UTC): a cron run reports the first days of traffic")
        runs.append(("day 3", _run(sandbox, clock, console, err, table)))
        clock.set(today)
        if table:
            console.rule(f"Day 7 ({clock():%Y-%m-%d %H:%M} UTC): the cron run reports the rest of the week")
        runs.append(("day 7", _run(sandbox, clock, console, err, table)))
        if table:
            console.rule("Day 7 again: a second run finds nothing to do")
        runs.append(("day 7 again", _run(sandbox, clock, console, err, table)))

        runtime = _runtime(sandbox, clock, console, err)
        try:
            status = build_status(gather_status(runtime, verify=True), clock())
        finally:
            runtime.close()
        usage = sandbox.recurly.usage_records()
        units = sum(int(u["amount"]) for u in usage)
        first, last = runs[0][1], runs[-1][1]
        # a failed change, or a money action held back for want of a complete read, fails the demo
        worst = max(overall_exit_code(reports) for _, reports in runs)
        code = 0 if worst == 0 and _writes(last) == 0 else 1
        if not table:
            # the report envelope of every command: one step per run, each with its four steps
            figures = {
                "recurly_subscriptions": len(sandbox.recurly.subscriptions()),
                "usage_records": len(usage),
                "usage_units": units,
            }
            document = demo_envelope(runs, exit_code=code, figures=figures, status=status.to_json())
            console.file.write(envelope_json(document) + "\n")
            return code
        console.rule("Status (--verify: Recurly read in full; `amplify-billing status` shows every section)")
        render_status(
            console,
            replace(status, sections=tuple(s for s in status.sections if s.name in DEMO_STATUS_SECTIONS)),
            "table",
        )
        console.rule("What just happened")
        for line in (
            f"1. Plans, accounts and {len(sandbox.recurly.subscriptions())} subscriptions were created in the "
            f"Recurly emulator ({_writes(first)} writes on day 0); pending Amplify subscriptions were approved "
            "once billing was in place.",
            f"2. A week of API traffic became {len(usage)} usage records ({units:,} units), one per "
            f"(subscription, quota, day), over the day-3 and day-7 runs; the last run wrote nothing "
            f"({_writes(last)} writes): every call is billed once, and the status above compares Amplify's "
            "counts, the journal and Recurly.",
            "3. For a real tenant: copy config.example.yaml to config.yaml, set the service account, the "
            "Recurly API key and the billingSystem=recurly product attribute, run `amplify-billing config "
            "check`, then `amplify-billing doctor` (read-only: is the tenant ready, and how), then "
            "`amplify-billing run --dry-run` (README, 'Pointing it at a real tenant'). `amplify-billing demo "
            "--mode marketplace` shows the other billing mode: Amplify's own invoices, collected through Recurly.",
        ):
            console.print(line, markup=False, highlight=False)
        return code
