"""The benchmark at a tiny size: the figures are computed and agree with each other (never timings)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from amplify_billing.sandbox.scenario import PLANS, build_scenario
from amplify_billing.sandbox.scenario_catalog import DOCUMENTED_PLANS
from amplify_billing.sandbox.server import Emulator, Request, Response
from tools.bench import (
    SYSTEMS,
    TODAY,
    WEEK_RUN_AT,
    BenchOptions,
    SizeResult,
    bench_size,
    budget_minutes,
    checks,
    document,
    main,
    minimum,
    nonzero_cells,
    overall_ratio,
    render,
    usage_figures,
    usage_ranges,
    usage_windows,
    writes,
)

SETTLE = timedelta(hours=2)
LOOKBACK = timedelta(hours=72)


@pytest.fixture(scope="module")
def tiny() -> SizeResult:
    return bench_size(12, BenchOptions(sizes=(12,), seed=3))


# ---- the emulators' latency ------------------------------------------------------------------------------------
def test_latency_delays_each_answer_and_concurrent_requests_overlap() -> None:
    emulator = Emulator()
    emulator.route("GET", r"/ping", "ping", lambda request: Response(200, {"ok": True}))
    emulator.latency_seconds = 0.3
    with emulator:
        took: list[float] = []

        def call() -> None:
            began = time.perf_counter()
            with urllib.request.urlopen(f"{emulator.url}/ping", timeout=5) as answer:
                assert json.loads(answer.read()) == {"ok": True}
            took.append(time.perf_counter() - began)

        began = time.perf_counter()
        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
    assert len(took) == 4 and min(took) >= 0.3
    assert elapsed < 0.3 * 4 * 0.75, f"four requests at 0.3 s each took {elapsed:.2f} s: they did not overlap"
    assert emulator.count("GET", route="ping") == 4


def test_no_latency_by_default() -> None:
    emulator = Emulator()
    assert emulator.latency_seconds == 0.0
    response, fault, route = emulator.dispatch(Request("GET", "/nothing", {}, {}, b""))
    assert response is not None and response.status == 404 and fault is None and route == "unknown"


# ---- the scenario scaled by subscriptions per plan --------------------------------------------------------------
def test_subscriptions_per_plan_copies_the_weighted_plans() -> None:
    scaled = build_scenario(seed=4, subscriptions=400, now=TODAY, quotas_per_plan=2, subscriptions_per_plan=10)
    plain = build_scenario(seed=4, subscriptions=400, now=TODAY, quotas_per_plan=2)

    assert [p["name"] for p in plain.plans] == [spec.name for spec in (*PLANS, *DOCUMENTED_PLANS)]
    assert 36 <= len(scaled.supported_plans) <= 44, len(scaled.supported_plans)
    assert "weather-payg-2" in scaled.supported_plans and "weather-beta" not in scaled.supported_plans
    on_plans = {s["spec"]["plan"]["name"] for s in scaled.subscriptions}
    assert len(on_plans & set(scaled.supported_plans)) > 30, "the copies receive subscriptions"
    assert all(len(scaled.usage_quotas[p]) in (0, 2) for p in scaled.supported_plans)
    with pytest.raises(ValueError, match="subscriptions_per_plan must be at least 1, got 0"):
        build_scenario(seed=4, subscriptions=4, now=TODAY, subscriptions_per_plan=0)


# ---- the minimum -----------------------------------------------------------------------------------------------
def traffic_start_lost(scenario: Any) -> tuple[Any, Any]:
    """The first window of a 7-day scenario, which a run 3 h after the week can no longer count whole."""
    start = scenario.traffic_start
    return (start, start + timedelta(days=1))


def test_minimum_counts_windows_cells_and_pages_from_the_scenario() -> None:
    scenario = build_scenario(seed=5, subscriptions=30, now=TODAY, quotas_per_plan=2, subscriptions_per_plan=10)

    week = usage_windows(scenario, "week", settle=SETTLE, lookback=LOOKBACK)
    steady = usage_windows(scenario, "steady", settle=SETTLE, lookback=LOOKBACK)
    assert week == [scenario.traffic_start + timedelta(days=d) for d in range(7)]
    assert steady == week[-3:]  # the 72 h lookback before 03:00 reaches into the fifth day
    assert usage_windows(scenario, "initial", settle=SETTLE, lookback=LOOKBACK) == []

    live = {scenario.subscriptions_by_name[n]["metadata"]["id"] for n in scenario.live_subscriptions}
    expected = sum(
        1
        for start in week
        for (subscription, _quota), total in scenario.expected_traffic(start, start + timedelta(days=1)).items()
        if subscription in live and total
    )
    assert nonzero_cells(scenario, week) == expected > 0

    initial = minimum(scenario, "initial", settle=SETTLE, lookback=LOOKBACK, team_page=500)
    plans = len(scenario.supported_plans)
    live_count = len(scenario.live_subscriptions)
    # five listings of an empty site, one page each, and the site (whose the journal is)
    assert initial.requests["recurly"]["GET"] == 6
    assert initial.requests["recurly"]["HEAD"] == 1  # the count that proves the subscription listing whole
    accounts = len({scenario.account_code(n) for n in scenario.live_subscriptions})
    assert initial.requests["recurly"]["POST"] == 1 + plans + accounts + live_count
    usage_quotas = sum(len(scenario.usage_quotas[p]) for p in scenario.supported_plans)
    pending = len(scenario.pending_subscriptions)
    assert initial.requests["amplify"]["PUT"] == plans + usage_quotas + live_count + pending
    week_min = minimum(scenario, "week", settle=SETTLE, lookback=LOOKBACK, team_page=500)
    ranges = usage_ranges(scenario, "week", settle=SETTLE, lookback=LOOKBACK)
    # every settled window inside the 7-day retention, and the first window of each subscription activated in it
    assert {start for start, _end in ranges} >= set(week[1:]) and traffic_start_lost(scenario) not in ranges
    assert week_min.windows == len(ranges) and week_min.usage_writes == expected
    # the token, and per range a total that proves it whole, and a grouped count where the total is not 0
    busy = sum(1 for span in ranges if scenario.expected_traffic(*span))
    assert week_min.requests["amplify"]["POST"] == 1 + len(ranges) + busy == 1 + week_min.count_queries
    assert "PUT" not in week_min.requests["amplify"]


def test_budget_minutes_divide_by_the_published_limits() -> None:
    budget = budget_minutes({"amplify": {"GET": 40, "POST": 10}, "recurly": {"GET": 2_000, "POST": 400}})
    assert budget == {
        "amplify": 2.0,
        "recurly_production": 2.0,
        "recurly_sandbox": 6.0,
        "run_production": 4.0,
        "run_sandbox_site": 8.0,
    }


# ---- a tiny benchmark -------------------------------------------------------------------------------------------
def test_tiny_benchmark_figures_are_consistent(tiny: SizeResult) -> None:
    assert [r.phase for r in tiny.runs] == ["initial", "week", "steady"]
    assert all(r.failed == 0 for r in tiny.runs), [r.reports for r in tiny.runs]
    for run in tiny.runs:
        least = tiny.minimums[run.phase]
        for system in SYSTEMS:
            for method, need in least.requests[system].items():
                actual = run.requests[system].get(method, 0)
                assert actual >= need, f"{run.phase} {system} {method}: {actual} below the minimum {need}"
        ratio = overall_ratio(run, least)
        assert ratio is not None and ratio >= 1
        assert run.wall_seconds > 0 and run.max_rss_bytes > 0 and run.tracemalloc_peak_bytes is None
        assert {s.command for s in run.steps} == {
            "(planning the cycle)",
            "sync-plans",
            "link-accounts",
            "sync-subscriptions",
            "report-usage",  # sync-invoices only where a Marketplace is invoiced (billing.mode)
        }

    initial, week, steady = tiny.runs
    assert writes(initial) > 0 and writes(steady) == 0
    assert initial.requests["recurly"]["POST"] == tiny.minimums["initial"].requests["recurly"]["POST"]
    assert initial.requests["amplify"]["PUT"] == tiny.minimums["initial"].requests["amplify"]["PUT"]
    week_usage = usage_figures(week, tiny.minimums["week"])
    assert week_usage["traceability_queries"] == week_usage["traceability_minimum"] > 0
    assert week_usage["recurly_writes"] == week_usage["recurly_writes_minimum"] > 0
    assert week.requests["recurly"]["POST"] == week_usage["recurly_writes"]
    units = sum(int(r["figures"].get("records_reported", 0)) for r in week.reports if r["command"] == "report-usage")
    assert units == week_usage["recurly_writes"], "the tool's own count of records agrees with the emulator's"
    steady_usage = usage_figures(steady, tiny.minimums["steady"])
    assert steady_usage["recurly_writes"] == 0
    # the steady state reads only the journal check's sample of usage
    assert steady_usage["recurly_usage_reads"] == steady_usage["recurly_usage_reads_minimum"] == 5
    assert steady_usage["traceability_queries"] == steady_usage["traceability_minimum"] > 0
    assert steady.requests["recurly"] == tiny.minimums["steady"].requests["recurly"]

    found = {what: met for what, met, _ in checks(tiny)}
    assert found["steady-state writes are zero"] is True
    assert tiny.serial_initial is None and not any("third" in what for what in found)


def test_tiny_benchmark_document_and_table(tiny: SizeResult, capsys: Any) -> None:
    from rich.console import Console

    doc = json.loads(json.dumps(document([tiny])))
    size = doc["sizes"][0]
    assert size["subscriptions"] == 12 and [r["phase"] for r in size["runs"]] == ["initial", "week", "steady"]
    steady = size["runs"][2]
    assert steady["writes"] == 0 and steady["overall_ratio"] == 1.0
    assert steady["ratio"]["recurly"] == {"GET": 1.0, "HEAD": 1.0}
    assert size["checks"][0] == {"check": "steady-state writes are zero", "met": True, "figures": "0 writes"}

    console = Console(width=200, color_system=None, record=True)
    render(console, [tiny])
    text = console.export_text()
    assert "12 subscriptions" in text and "report-usage" in text
    assert "ok   steady-state writes are zero: 0 writes" in text


def test_bench_command_line(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "bench.json"
    code = main(["--subscriptions", "6", "--seed", "2", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "6 subscriptions" in captured.out and "steady-state writes are zero" in captured.out
    assert json.loads(out.read_text())["sizes"][0]["subscriptions"] == 6


def test_bench_command_line_refuses_a_negative_latency(capsys: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--latency-ms", "-5"])
    assert exit_info.value.code == 2
    assert "--latency-ms" in capsys.readouterr().err


def test_week_run_is_after_the_settle_delay() -> None:
    assert WEEK_RUN_AT - SETTLE > TODAY  # the last day is closed and settled when the cron run comes
