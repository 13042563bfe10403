"""The marketplace-mode benchmark at a tiny size: its figures agree with both emulators and with each other, and its
minimum follows the derivation in tools/bench_invoices.py on a case computed by hand (never timings)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tools import bench
from tools.bench import SYSTEMS, BenchOptions, main, writes
from tools.bench import tally as tally_lines
from tools.bench_invoices import (
    InvoiceResult,
    InvoiceWork,
    accounts_needed,
    bench_size,
    checks,
    command_requests,
    document,
    invoice_lines,
    invoiced_live,
    render,
    work_of,
)

PHASES = ["initial", "paid", "period", "period-paid", "steady"]


@dataclass
class Logs:
    """What the emulators logged themselves (their own request log, beside the bench's taps)."""

    routes: dict[str, Counter[tuple[str, str]]] = field(default_factory=dict)
    runs: list[bench.RunMeasure] = field(default_factory=list)


@pytest.fixture(scope="module")
def tiny() -> Iterator[tuple[InvoiceResult, Logs]]:
    logs = Logs()
    attach = bench._Tap.attach

    def attach_keeping_the_log(tap: bench._Tap, emulator: Any) -> None:
        own = emulator.record
        attach(tap, emulator)
        tapped = emulator.record

        def both(*args: Any) -> None:
            own(*args)
            tapped(*args)

        emulator.record = both

    def inspect(sandbox: Any, runs: list[bench.RunMeasure]) -> None:
        for system, emulator in (("amplify", sandbox.amplify), ("recurly", sandbox.recurly)):
            logs.routes[system] = Counter((r.method, r.route) for r in emulator.requests)
        logs.runs = list(runs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench._Tap, "attach", attach_keeping_the_log)
        result = bench_size(20, BenchOptions(sizes=(20,), seed=3), inspect=inspect)
    yield result, logs


def test_every_request_is_counted_once_as_the_emulators_logged_it(tiny: tuple[InvoiceResult, Logs]) -> None:
    result, logs = tiny
    runs = result.size.runs
    assert [r.phase for r in runs] == PHASES and logs.runs == list(runs)
    for system in SYSTEMS:
        counted: Counter[tuple[str, str]] = Counter()
        for run in runs:
            for routes in run.by_command.values():
                for key, count in routes.get(system, {}).items():
                    method, route = key.split(" ", 1)
                    counted[(method, route)] += count
            by_method = Counter({m: n for m, n in run.requests.get(system, {}).items()})
            assert sum(by_method.values()) == sum(
                n for routes in run.by_command.values() for n in routes.get(system, {}).values()
            )
        assert counted == logs.routes[system], system
        # sync-invoices' requests hold every invoice request (the listing link-accounts may make first included)
        invoices: Counter[str] = Counter()
        for (method, route), count in counted.items():
            if "invoice" in route or route == "create_purchase":
                invoices[method] += count
        attributed: Counter[str] = Counter()
        for run in runs:
            attributed.update(command_requests(run).get(system, {}))
        assert all(attributed[method] >= count for method, count in invoices.items()), (system, attributed, invoices)


def test_each_invoice_to_pay_became_one_recurly_invoice_and_ended_paid(tiny: tuple[InvoiceResult, Logs]) -> None:
    result, _logs = tiny
    outcome, work = result.outcome, result.work
    assert all(r.failed == 0 for r in result.size.runs), [r.reports for r in result.size.runs]
    issued = sum(w.new + w.free for w in work.values())
    assert outcome.amplify_invoices == issued and outcome.to_pay == sum(w.new for w in work.values())
    assert work["initial"].new > 3 and work["period"].new > 3, "the scenario gives each sending phase a few"
    assert work["paid"].followed == work["initial"].new and work["period-paid"].followed == work["period"].new
    assert work["steady"] == InvoiceWork(0, 0, 0)
    assert outcome.recurly_invoices == outcome.to_pay and outcome.once_each and outcome.settled
    assert outcome.states == {"paid/Success": outcome.to_pay, "paid/Pending": issued - outcome.to_pay}
    for run in result.size.runs:
        made = sum(r["figures"].get("recurly_invoices_made", 0) for r in run.reports if r["command"] == "sync-invoices")
        requests = command_requests(run)
        assert made == requests["recurly"].get("POST", 0) == work[run.phase].new, run.phase
        # the writes are exactly the minimum's: one purchase each, and the Amplify write-backs
        least = result.invoice_minimums[run.phase].requests
        assert requests["amplify"].get("PUT", 0) == least["amplify"].get("PUT", 0), run.phase
        for system in SYSTEMS:
            for method, need in least[system].items():
                assert requests[system].get(method, 0) >= need, (run.phase, system, method)
        whole = result.size.minimums[run.phase].requests
        for system in SYSTEMS:
            for method, need in whole[system].items():
                assert run.requests[system].get(method, 0) >= need, (run.phase, system, method)
    assert writes(result.size.run("steady")) == 0
    found = {what: met for what, met, _ in checks(result)}
    assert found["steady-state writes are zero"] is True
    assert found["each Amplify invoice to pay became one Recurly invoice, and ended paid"] is True


def test_the_invoice_minimum_on_a_case_computed_by_hand() -> None:
    work = InvoiceWork(new=3, free=2, followed=250, plans_without_currency=1)
    requests, reasons = tally_lines(invoice_lines(work, page=2))
    # 255 actionable invoices in pages of 2 (128), the one plan's currency; 3 x (billing, open), 2 paid at once,
    # 250 x (paid, Success); 3 purchases, and the 250 followed in two requests of up to 200 ids
    assert requests == {"amplify": {"GET": 128 + 1, "PUT": 3 + 3 + 2 + 250 + 250}, "recurly": {"GET": 2, "POST": 3}}
    assert reasons["recurly"] == [
        "3 POST purchases, one per invoice with something to pay",
        "2 GET states of the 250 invoices followed, 200 ids a request",
    ]
    # nothing to do still lists once (an empty listing is one request), and asks Recurly nothing
    assert tally_lines(invoice_lines(InvoiceWork(0, 0, 0), page=100))[0] == {"amplify": {"GET": 1}, "recurly": {}}


def test_the_work_of_a_phase_comes_from_amplify_invoices_alone() -> None:
    def invoice(total: float, plan: str, currency: str | None) -> dict[str, Any]:
        cost: dict[str, Any] = {"name": plan, "cost": total}
        if currency:
            cost["currency"] = currency
        return {"spec": {"cost": {"total": total, "plan": cost}}}

    issued = [
        invoice(0, "free", None),
        invoice(12.5, "gold", "USD"),
        invoice(0.01, "odd", None),
        invoice(3, "odd", None),
        invoice(4, "listed", None),
    ]
    work = work_of(issued, sent_before=7, listed_plans=frozenset({"listed", "gold"}))
    # a total of 0 needs no currency; "odd" is read once for its two invoices, "listed" is in the catalog listing
    assert work == InvoiceWork(new=4, free=1, followed=7, plans_without_currency=1)
    assert work.listed == work.acted_on == 12


def test_accounts_are_those_of_live_subscriptions_then_of_any_invoice_to_pay() -> None:
    from amplify_billing.sandbox.scenario import build_scenario

    scenario = build_scenario(seed=3, subscriptions=40, now=bench.TODAY)
    live = {scenario.account_code(n) for n in invoiced_live(scenario)}
    ended = scenario.cancelled_subscriptions[0]
    needed = accounts_needed(scenario, {"initial": [], "period": [ended, ended]})
    assert needed["initial"].new == len(live) and needed["initial"].before == 0
    assert needed["period"].before == len(live)
    # an ended subscription's invoice needs its owner's account, unless a live subscription of theirs made it
    assert needed["period"].new == (0 if scenario.account_code(ended) in live else 1)
    first = accounts_needed(scenario, {"initial": [ended]})["initial"]
    assert first.new == len(live | {scenario.account_code(ended)})


def test_document_and_table(tiny: tuple[InvoiceResult, Logs]) -> None:
    from rich.console import Console

    result, _logs = tiny
    doc = json.loads(json.dumps(document([result])))
    assert doc["mode"] == "marketplace" and doc["billing"]["collection_method"] == "automatic"
    size = doc["sizes"][0]
    assert size["subscriptions"] == 20 and [r["phase"] for r in size["runs"]] == PHASES
    initial = size["runs"][0]["sync_invoices"]
    assert initial["new_invoices"] == result.work["initial"].new and initial["acted_on"] > 0
    assert initial["per_invoice"] == round(initial["total"] / initial["acted_on"], 3)
    assert initial["minimum_per_invoice"] == round(initial["minimum_total"] / initial["acted_on"], 3)
    assert size["runs"][-1]["sync_invoices"]["per_invoice"] is None  # nothing to act on in the steady state
    assert size["outcome"]["settled"] is True

    console = Console(width=220, color_system=None, record=True)
    render(console, [result])
    text = console.export_text()
    assert "marketplace mode: 20 subscriptions" in text and "per invoice" in text
    assert "ok   steady-state writes are zero: 0 writes" in text


def test_command_line_chooses_the_mode(tmp_path: Path, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--mode", "stripe"])
    assert exit_info.value.code == 2 and "--mode" in capsys.readouterr().err
    out = tmp_path / "bench.json"
    code = main(["--mode", "marketplace", "--subscriptions", "6", "--seed", "2", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "marketplace mode: 6 subscriptions" in captured.out
    assert json.loads(out.read_text())["mode"] == "marketplace"
