"""The fault soak: faults of every kind on both systems and random SIGKILLs, until the tool converges.

The default suite runs a small soak through the module's command line and checks the checker itself (each check
must catch the fault it exists for, marketplace mode's invoices included); ``pytest -m soak`` runs the
2,000-subscription soak of the issue.
"""

from __future__ import annotations

import io
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from amplify_billing.sandbox.recurly_invoices import book_of, invoices
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
from tools.soak_invoices import LAST_STAGE, AmplifyInvoicing, InvoiceFigures, invoiced_subscriptions

TODAY = datetime(2026, 11, 20, tzinfo=UTC)  # as in conftest.py
LINE = re.compile(
    r"soak: (?P<subs>[\d,]+) subscriptions, (?P<runs>\d+) runs \((?P<killed>\d+) killed\), (?P<faults>[\d,]+) faults "
    r"injected \([\d.]+ % of [\d,]+ requests; (?P<kinds>[^)]*)\), (?P<verdict>[^;]+); usage (?P<units>[\d,]+) units in "
    r"(?P<records>[\d,]+) records, (?P<dups>\d+) duplicate tags; invoices (?P<amplify>[\d,]+) in Amplify "
    r"\((?P<to_pay>[\d,]+) to pay\), (?P<recurly>[\d,]+) in Recurly from (?P<purchases>[\d,]+) purchases sent; \d+ s"
)


def _reported(make_cycle: Any, *, invoiced: bool = False, **kwargs: Any) -> Cycle:
    """A cycle that created everything on day 0 and reported the week's usage on days 3 and 7, without faults
    (Traceability keeps 7 days: a single run on day 7 could no longer count day 0). ``invoiced``: with the soak's
    Partner Marketplace in marketplace mode, every Amplify event and invoice first, and a last run that follows
    the Recurly invoices to paid."""
    cycle: Cycle = make_cycle(**kwargs)
    if invoiced:
        invoicing = AmplifyInvoicing.start(cycle.sandbox, cycle.scenario)
        cycle.overrides["billing"] = invoicing.billing()
        assert invoicing.before_run(LAST_STAGE) > 0
    assert all(failed(r) == [] for r in cycle.run())
    for moment in (TODAY - timedelta(days=4) + timedelta(hours=3), TODAY + timedelta(hours=3)):
        cycle.clock.set(moment)
        report = cycle.report_usage()
        assert failed(report) == [] and report.exit_code == 0, [r.change.summary for r in report.results][:5]
    if invoiced:
        assert all(failed(r) == [] and r.exit_code == 0 for r in cycle.run())
    return cycle


def test_small_soak_converges_to_the_exact_state(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    args = ["--subscriptions", "12", "--days", "2", "--storm-runs", "4", "--calm-runs", "3", "--timeout", "1"]
    # seed 3: each of the three armed runs is killed, two of them at an Amplify invoice write
    code = main([*args, "--seed", "3", "--work-dir", str(tmp_path)], out=out, err=err)
    line = out.getvalue().strip()
    assert code == 0, f"{line}\n{err.getvalue()}"
    found = LINE.fullmatch(line)
    assert found, line
    assert found["subs"] == "12"
    assert found["verdict"] == "converged, state as expected and equal to a clean run's"
    assert found["dups"] == "0"
    assert int(found["killed"]) >= 1, "at least one run was killed"
    assert int(found["faults"].replace(",", "")) > 0
    assert [k.split(":")[0] for k in found["kinds"].split(", ")] == list(FAULT_KINDS)
    assert int(found["records"].replace(",", "")) > 0
    # marketplace mode: Amplify's invoices with something to pay, each one Recurly invoice
    to_pay = int(found["to_pay"].replace(",", ""))
    assert to_pay > 0 and found["recurly"] == found["to_pay"]
    assert int(found["purchases"].replace(",", "")) >= to_pay
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


def test_checks_pass_with_marketplace_mode_and_name_each_invoice_fault(make_cycle: Any) -> None:
    cycle = _reported(make_cycle, invoiced=True)
    sandbox, scenario = cycle.sandbox, cycle.scenario
    assert check_state(scenario, sandbox, TODAY) == []
    figures = InvoiceFigures.of(sandbox)
    assert figures.to_pay >= 3 and figures.recurly == figures.to_pay
    amplify = {f"amplify-inv-{i['metadata']['id']}": i for i in sandbox.amplify.resources("SubscriptionInvoice")}

    def ref(po: str) -> str:
        invoice = amplify[po]
        return f"Amplify invoice {invoice['title']} ({invoice['name']}) of {invoice['metadata']['scope']['name']}"

    # a purchase sent twice: a second Recurly invoice with the same po_number
    doubled, stale, *others = invoices(sandbox.recurly)
    lines = [
        {k: line[k] for k in ("type", "currency", "unit_amount", "quantity", "description", "product_code")}
        for line in doubled["line_items"]
    ]
    body = {k: doubled[k] for k in ("currency", "po_number", "collection_method")}
    again = cycle.recurly_by_hand(
        "POST", "/purchases", {**body, "account": {"code": doubled["account"]["code"]}, "line_items": lines}
    )
    # an Amplify invoice whose write-back was lost: still a draft waiting for the gateway
    left = amplify[stale["po_number"]]
    sandbox.amplify.put_resource({**left, "state": {"name": "draft"}, "status": {"level": "Pending"}})
    # a Recurly invoice whose line differs from the Amplify invoice's item by one cent
    cent = next(r for r in others if len(r["line_items"]) == 1)
    with sandbox.recurly.lock:
        book_of(sandbox.recurly.state).invoices[cent["id"]].line_items[0].unit_amount += Decimal("0.01")
    billed = int(Decimal(str(cent["subtotal"])) * 100)
    # a Recurly subscription for a subscription of the marketplace-mode Marketplace
    theirs = next(
        s
        for s in invoiced_subscriptions(sandbox).values()
        if (s.get("state") or {}).get("name") == "active" and s["spec"]["plan"]["name"] in scenario.supported_plans
    )
    plan = f"amplify-{scenario.plan_ids[theirs['spec']['plan']['name']]}"
    currency = next(p for p in sandbox.recurly.plans() if p["code"] == plan)["currencies"][0]["currency"]
    subscription = cycle.recurly_by_hand(
        "POST",
        "/subscriptions",
        {
            "plan_code": plan,
            "currency": currency,
            "account": {"code": scenario.account_code(theirs["name"])},
            "collection_method": "manual",
            "custom_fields": [{"name": "amplify_subscription_id", "value": theirs["metadata"]["id"]}],
        },
    )

    by_name = {
        amplify[stale["po_number"]]["name"]: [
            f"{ref(stale['po_number'])} is draft/Pending, not paid/Success for its Recurly invoice {stale['number']} "
            "(paid)"
        ],
        amplify[cent["po_number"]]["name"]: [
            f"Recurly invoice {cent['number']} has lines of [{billed + 1}], {ref(cent['po_number'])} items of "
            f"[{billed}] (smallest units of {cent['currency']})",
            f"Recurly invoice {cent['number']}: subtotal {billed + 1}, {ref(cent['po_number'])}: total {billed}",
        ],
    }
    assert check_state(scenario, sandbox, TODAY) == [
        f"{ref(doubled['po_number'])} has 2 Recurly invoices: {doubled['number']}, "
        f"{again['charge_invoice']['number']} ({doubled['po_number']})",
        *(problem for name in sorted(by_name) for problem in by_name[name]),
        f"Recurly subscription {subscription['uuid']} bills {theirs['name']}, whose Marketplace Amplify bills by "
        "its invoices",
    ]


def test_compare_states_compares_the_invoices(make_cycle: Any) -> None:
    first, second = (_reported(make_cycle, subscriptions=6, invoiced=True) for _ in range(2))
    assert compare_states(state_of(first.sandbox), state_of(second.sandbox)) == []

    invoice = next(i for i in second.sandbox.amplify.resources("SubscriptionInvoice") if i["state"]["name"] == "paid")
    second.sandbox.amplify.put_resource({**invoice, "status": {"level": "Error"}})
    differences = compare_states(state_of(first.sandbox), state_of(second.sandbox))
    key = f"{invoice['metadata']['scope']['name']}/{invoice['title']}"
    assert len(differences) == 1
    assert differences[0].startswith(f"amplify invoices: {key} differs from a clean run's (status: soak "), differences


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
        invoices=InvoiceFigures(amplify=2210, to_pay=1985, recurly=1985, purchases=2031),
    )
    assert result.passed and result.killed == 1
    assert result.line() == (
        "soak: 2,000 subscriptions, 3 runs (1 killed), 17 faults injected (10.0 % of 170 requests; 429: 3, 500: 2, "
        "502: 2, 503: 2, empty: 2, delay: 2, drop_before: 2, drop_after: 2), converged, state as expected; "
        "usage 1,234,567 units in 27,810 records, 0 duplicate tags; invoices 2,210 in Amplify (1,985 to pay), 1,985 "
        "in Recurly from 2,031 purchases sent; 61 s"
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
