"""The fault soak: faults of every kind on both systems and random SIGKILLs, until the tool converges.

The default suite runs a small soak through the module's command line and checks the checker itself (each check
must catch the fault it exists for); ``pytest -m soak`` runs the 2,000-subscription soak of the issue.
"""

from __future__ import annotations

import io
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from amplify_billing.sandbox.server import FAULT_KINDS
from tools.driver import Cycle, failed
from tools.soak import (
    SoakOptions,
    SoakResult,
    SoakRun,
    check_state,
    compare_states,
    main,
    run_soak,
    state_of,
)

TODAY = datetime(2026, 11, 20, tzinfo=UTC)  # as in conftest.py
LINE = re.compile(
    r"soak: (?P<subs>[\d,]+) subscriptions, (?P<runs>\d+) runs \((?P<killed>\d+) killed\), (?P<faults>[\d,]+) faults "
    r"injected \([\d.]+ % of [\d,]+ requests; (?P<kinds>[^)]*)\), (?P<verdict>[^;]+); usage (?P<units>[\d,]+) units in "
    r"(?P<records>[\d,]+) records, (?P<dups>\d+) duplicate tags; \d+ s"
)


def _reported(make_cycle: Any, **kwargs: Any) -> Cycle:
    """A cycle that created everything on day 0 and reported the week's usage on days 3 and 7, without faults
    (Traceability keeps 7 days: a single run on day 7 could no longer count day 0)."""
    cycle: Cycle = make_cycle(**kwargs)
    assert all(failed(r) == [] for r in cycle.run())
    for moment in (TODAY - timedelta(days=4) + timedelta(hours=3), TODAY + timedelta(hours=3)):
        cycle.clock.set(moment)
        report = cycle.report_usage()
        assert failed(report) == [] and report.exit_code == 0, [r.change.summary for r in report.results][:5]
    return cycle


def test_small_soak_converges_to_the_exact_state(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    args = ["--subscriptions", "16", "--days", "2", "--storm-runs", "4", "--calm-runs", "3", "--timeout", "1"]
    code = main([*args, "--seed", "5", "--work-dir", str(tmp_path)], out=out, err=err)
    line = out.getvalue().strip()
    assert code == 0, f"{line}\n{err.getvalue()}"
    found = LINE.fullmatch(line)
    assert found, line
    assert found["subs"] == "16"
    assert found["verdict"] == "converged, state as expected and equal to a clean run's"
    assert found["dups"] == "0"
    assert int(found["killed"]) >= 1, "at least one run was killed"
    assert int(found["faults"].replace(",", "")) > 0
    assert [k.split(":")[0] for k in found["kinds"].split(", ")] == list(FAULT_KINDS)
    assert int(found["records"].replace(",", "")) > 0
    # the progress: one line per run, the last one quiet
    runs = [ln for ln in err.getvalue().splitlines() if re.match(r"run \d+ \((storm|calm)\)", ln)]
    assert len(runs) == int(found["runs"])
    assert re.match(r"run \d+ \(calm\): exit 0; [\d,]+ requests, 0 writes, 0 faults", runs[-1]), runs[-1]
    assert (tmp_path / "runs" / "run-01.stderr").exists(), "each run's output is kept in the work dir"


def test_checks_pass_on_a_clean_cycle_and_name_each_fault(make_cycle: Any) -> None:
    cycle = _reported(make_cycle)
    sandbox, scenario = cycle.sandbox, cycle.scenario
    assert check_state(scenario, sandbox, TODAY) == []

    # a usage record posted twice: the tag and the sum are both wrong
    records = sandbox.recurly.usage_records()
    record = max(records, key=lambda r: r["amount"])
    key = (record["subscription_uuid"], record["add_on_code"])
    total = sum(int(r["amount"]) for r in records if (r["subscription_uuid"], r["add_on_code"]) == key)
    with sandbox.recurly.lock:
        sandbox.recurly.state.create_usage(
            f"uuid-{record['subscription_uuid']}",
            f"code-{record['add_on_code']}",
            {
                "amount": record["amount"],
                "merchant_tag": record["merchant_tag"],
                "usage_timestamp": record["usage_timestamp"],
            },
        )
    problems = check_state(scenario, sandbox, TODAY)
    doubled = total + int(record["amount"])
    assert problems == [
        f"merchant_tag {record['merchant_tag']} is in Recurly 2 times",
        f"usage of subscription {key[0]} add-on {key[1]}: {doubled:,} units in Recurly, {total:,} in the traffic up "
        "to 2026-11-20 00:00 UTC",
    ]


def test_checks_catch_a_wrong_plan_and_a_subscription_that_should_not_be_billed(make_cycle: Any) -> None:
    cycle = _reported(make_cycle)
    sandbox, scenario = cycle.sandbox, cycle.scenario
    name = scenario.supported_plans[0]
    code = f"amplify-{scenario.plan_ids[name]}"
    plan = next(p for p in sandbox.recurly.plans() if p["code"] == code)
    rt = cycle.runtime()
    try:
        rt.recurly().update_plan(f"code-{code}", {"name": "Renamed by hand"})
    finally:
        rt.close()
    live = next(s for s in sandbox.recurly.subscriptions() if s["state"] == "active")
    amplify_id = next(f["value"] for f in live["custom_fields"] if f["name"] == "amplify_subscription_id")
    amplify_name = next(s["name"] for s in scenario.subscriptions if s["metadata"]["id"] == amplify_id)
    sandbox.amplify.set_subscription_state(amplify_name, "cancelled")

    assert check_state(scenario, sandbox, TODAY) == [
        f"plan {name} ({code}): name is 'Renamed by hand', the catalog says {plan['name']!r}",
        f"Recurly subscription {live['uuid']} bills {amplify_id}, which is not live and billed",
    ]


def test_compare_states_is_empty_for_two_clean_runs_and_names_a_difference(make_cycle: Any) -> None:
    first, second = _reported(make_cycle, subscriptions=6), _reported(make_cycle, subscriptions=6)
    assert compare_states(state_of(first.sandbox), state_of(second.sandbox)) == []

    record = second.sandbox.recurly.usage_records()[0]
    rt = second.runtime()
    try:
        rt.recurly().update_usage(record["id"], {"amount": int(record["amount"]) + 1})
    finally:
        rt.close()
    differences = compare_states(state_of(first.sandbox), state_of(second.sandbox))
    assert differences == [
        f"usage: {record['merchant_tag']} differs from a clean run's "
        f"(amount: soak {float(record['amount'])}, clean {float(record['amount']) + 1})"
    ]


def test_result_line_names_faults_kills_and_runs() -> None:
    runs = (
        SoakRun(number=1, phase="storm", exit_code=-9, seconds=3.0, requests=100, writes=60, faults=9, killed="x"),
        SoakRun(number=2, phase="storm", exit_code=1, seconds=2.0, requests=80, writes=20, faults=8),
        SoakRun(number=3, phase="calm", exit_code=0, seconds=1.0, requests=20, writes=0, faults=0),
    )
    faults = dict.fromkeys(FAULT_KINDS, 2) | {"429": 3}
    result = SoakResult(
        options=SoakOptions(subscriptions=2000),
        runs=runs,
        faults=faults,
        requests=170,
        converged=True,
        problems=(),
        usage_units=1234567,
        usage_records=27810,
        duplicate_tags=0,
        seconds=61.4,
    )
    assert result.passed and result.killed == 1
    assert result.line() == (
        "soak: 2,000 subscriptions, 3 runs (1 killed), 17 faults injected (10.0 % of 170 requests; 429: 3, 500: 2, "
        "502: 2, 503: 2, empty: 2, delay: 2, drop_before: 2, drop_after: 2), converged, state as expected; "
        "usage 1,234,567 units in 27,810 records, 0 duplicate tags; 61 s"
    )
    wrong = replace(result, converged=False, problems=("a", "b"))
    assert not wrong.passed
    assert "DID NOT CONVERGE, STATE WRONG (2 problems)" in wrong.line()


def test_bad_options_exit_2_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--subscriptions", "0"])
    assert exit_info.value.code == 2
    assert "subscriptions must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_soak_2000_subscriptions_three_days_of_traffic(tmp_path: Path) -> None:
    progress: list[str] = []
    result = run_soak(SoakOptions(), work_dir=tmp_path, progress=progress.append)
    print(result.line())
    assert result.passed, "\n".join([result.line(), *progress, *result.problems])
    assert result.duplicate_tags == 0
    assert result.killed >= 1
    assert all(result.faults.get(kind, 0) > 0 for kind in FAULT_KINDS), result.faults
    assert 0.08 <= sum(result.faults.values()) / result.requests <= 0.12, "about 10 % of all requests failed"
