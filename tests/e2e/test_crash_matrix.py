"""Crashes and faults: every API call billed exactly once, whatever happens to the process or the network.

The tool runs as a real process (``python -m amplify_billing``) against the emulators. To kill it *after a
Recurly write*, the Recurly emulator applies the write and then SIGKILLs the client before answering: the record
is stored, the client never learns it. The next run must find it (DESIGN.md §4 step 4) instead of posting it
again. The default suite kills at a sample of positions; ``pytest -m slow`` kills after every write in turn.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.sandbox.server import Emulator, Request, Response
from tools.driver import Cycle, failed

# The child process uses the real clock, so the scenario is laid out around the real "now".
REAL_TODAY = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
# Days of traffic before the child's run: Traceability keeps 7 days (reference §9.1), and the window before day 0
# (not settled at the day-0 run) must still be countable at the child's run, whatever the hour.
DAYS = 5


def _cli(cycle: Cycle, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMPLIFY_BILLING")}
    return subprocess.run(
        [sys.executable, "-m", "amplify_billing", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def _spawn(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "amplify_billing", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class KillAfterWrite:
    """Wraps an emulator's dispatch (Recurly's unless told): after the n-th successful matching write, SIGKILL the
    client."""

    def __init__(self, cycle: Cycle, matches: Callable[[Request], bool], emulator: Emulator | None = None) -> None:
        self.emulator = emulator or cycle.sandbox.recurly
        self.matches = matches
        self.original = self.emulator.dispatch
        self.target: int | None = None
        self.pid: int | None = None
        self.seen = 0
        self.killed = False

    def dispatch(self, raw: Request) -> tuple[Response | None, Any, str]:
        response, fault, route = self.original(raw)
        if response is not None and response.status < 300 and self.matches(raw):
            self.seen += 1
            if self.target is not None and self.seen == self.target and self.pid is not None:
                os.kill(self.pid, signal.SIGKILL)
                self.killed = True
                return None, fault, route  # the client is gone; the record stays
        return response, fault, route

    def arm(self, target: int | None, pid: int | None) -> None:
        self.target, self.pid, self.seen, self.killed = target, pid, 0, False
        self.emulator.dispatch = self.dispatch  # type: ignore[method-assign]


def _usage_post(raw: Request) -> bool:
    return raw.method == "POST" and raw.path.endswith("/usage")


def _subscription_post(raw: Request) -> bool:
    return raw.method == "POST" and raw.path == "/subscriptions"


def _prepare(make_cycle: Any, subscriptions: int = 4) -> tuple[Cycle, Path]:
    cycle: Cycle = make_cycle(subscriptions=subscriptions, today=REAL_TODAY, days=DAYS)
    reports = cycle.run()  # day 0, in-process on the virtual clock: plans, accounts, subscriptions
    assert all(failed(r) == [] for r in reports)
    cycle.clock.set(datetime.now(UTC))
    config = cycle.sandbox.write_config(cycle.sandbox.state_dir / "config.yaml")
    return cycle, config


def _expected(cycle: Cycle) -> dict[tuple[str, str], int]:
    last_end = (datetime.now(UTC) - timedelta(hours=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    expected: dict[tuple[str, str], int] = {}
    for s in cycle.sandbox.recurly.subscriptions():
        amplify_id = {f["name"]: f["value"] for f in s.get("custom_fields") or ()}["amplify_subscription_id"]
        started = parse_timestamp(s["activated_at"])
        assert started is not None
        traffic = cycle.sandbox.amplify.traffic(started, last_end) if started < last_end else {}
        for add_on in s["add_ons"]:
            code = add_on["add_on"]["code"]
            count = traffic.get((amplify_id, code.removeprefix("amplify-")), 0)
            if count:
                expected[(s["uuid"], code)] = count
    return expected


def _billed(cycle: Cycle) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = {}
    for record in cycle.sandbox.recurly.usage_records():
        key = (record["subscription_uuid"], record["add_on_code"])
        totals[key] = totals.get(key, 0) + int(Decimal(str(record["amount"])))
    return {k: v for k, v in totals.items() if v}


def _assert_exactly_once(cycle: Cycle) -> None:
    tags = Counter(r["merchant_tag"] for r in cycle.sandbox.recurly.usage_records())
    doubled = {t: n for t, n in tags.items() if n > 1}
    assert doubled == {}, f"merchant_tags posted twice: {doubled}"
    assert _billed(cycle) == _expected(cycle)


def _kill_then_finish(cycle: Cycle, config: Path, killer: KillAfterWrite, target: int, command: str) -> None:
    child = _spawn(config, command)
    killer.arm(target, child.pid)
    child.communicate(timeout=120)
    assert killer.killed, f"write {target} was never reached"
    assert child.returncode == -signal.SIGKILL
    killer.arm(None, None)
    finish = _cli(cycle, config, command)
    assert finish.returncode == 0, finish.stderr


def _writes_needed(make_cycle: Any) -> int:
    cycle, config = _prepare(make_cycle)
    result = _cli(cycle, config, "report-usage")
    assert result.returncode == 0, result.stderr
    _assert_exactly_once(cycle)
    return len([r for r in cycle.sandbox.recurly.requests if r.method == "POST" and r.path.endswith("/usage")])


def _positions(total: int) -> list[int]:
    return sorted({1, max(1, total // 2), total})


def test_killed_after_usage_writes_then_rerun_bills_each_window_once(make_cycle: Any) -> None:
    total = _writes_needed(make_cycle)
    assert total >= 5, "the scenario needs a handful of usage writes"
    for target in _positions(total):
        cycle, config = _prepare(make_cycle)
        killer = KillAfterWrite(cycle, _usage_post)
        _kill_then_finish(cycle, config, killer, target, "report-usage")
        _assert_exactly_once(cycle)
        again = _cli(cycle, config, "report-usage")
        assert again.returncode == 0


@pytest.mark.slow
def test_killed_after_every_usage_write_in_turn(make_cycle: Any) -> None:
    total = _writes_needed(make_cycle)
    for target in range(1, total + 1):
        cycle, config = _prepare(make_cycle)
        killer = KillAfterWrite(cycle, _usage_post)
        _kill_then_finish(cycle, config, killer, target, "report-usage")
        _assert_exactly_once(cycle)


def test_killed_after_subscription_create_finds_it_instead_of_creating_another(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=4, today=REAL_TODAY)
    for report in (cycle.sync_plans(), cycle.link_accounts()):
        assert failed(report) == []
    config = cycle.sandbox.write_config(cycle.sandbox.state_dir / "config.yaml")
    killer = KillAfterWrite(cycle, _subscription_post)
    _kill_then_finish(cycle, config, killer, 1, "sync-subscriptions")
    per_amplify = Counter(
        f["value"]
        for s in cycle.sandbox.recurly.subscriptions()
        for f in s.get("custom_fields") or ()
        if f["name"] == "amplify_subscription_id"
    )
    assert per_amplify and max(per_amplify.values()) == 1


def test_faults_on_usage_writes_are_retried_without_doubling(make_cycle: Any) -> None:
    cycle, config = _prepare(make_cycle, subscriptions=6)  # enough usage writes for every fault to strike twice
    # every way a write can fail, a few times each; a retry carries the same Idempotency-Key, and a stored
    # record whose answer was lost (drop_after) is answered from the key instead of being stored twice
    kinds = ("429", "503", "empty", "drop_before", "drop_after")
    rules = [cycle.sandbox.recurly.inject(kind, method="POST", path=r"/usage$", rate=0.3, times=2) for kind in kinds]
    result = _cli(cycle, config, "report-usage")
    cycle.sandbox.recurly.clear_faults()
    assert {k: r.injected for k, r in zip(kinds, rules, strict=True)} == dict.fromkeys(kinds, 2)
    assert result.returncode == 0, result.stderr
    _assert_exactly_once(cycle)
    assert _cli(cycle, config, "report-usage").returncode == 0
    _assert_exactly_once(cycle)


# ---- sync-invoices (marketplace mode, issue 15) --------------------------------------------------------------


def _purchase_post(raw: Request) -> bool:
    return raw.method == "POST" and raw.path == "/purchases"


def _mark_failed(raw: Request) -> bool:
    return raw.method == "PUT" and raw.path.endswith("/mark_failed")


def _invoicing(make_cycle: Any) -> tuple[Cycle, Path]:
    """Marketplace mode with manual collection: accounts from a first run, then Amplify's initial invoices."""
    from amplify_billing.sandbox.amplify_invoices import InvoiceIssuer, enable_custom_billing

    cycle: Cycle = make_cycle(
        subscriptions=6, today=REAL_TODAY, billing={"mode": "marketplace", "collection_method": "manual"}
    )
    enable_custom_billing(cycle.sandbox.amplify, cycle.scenario.marketplace)
    assert all(failed(r) == [] for r in cycle.run())
    cycle.clock.set(datetime.now(UTC))
    InvoiceIssuer(cycle.sandbox.amplify).issue(cycle.clock())
    config = cycle.sandbox.write_config(cycle.sandbox.state_dir / "config.yaml", **cycle.overrides)
    return cycle, config


def _assert_invoiced_once(cycle: Cycle) -> dict[str, dict[str, Any]]:
    """Exactly one Recurly invoice per Amplify invoice with something to pay, and each written back once: its
    billing.payment names that invoice and its state is open. Returns the Recurly invoices by po_number."""
    from amplify_billing.reconcile.invoice_lines import po_number
    from amplify_billing.sandbox.recurly_invoices import invoices

    amplify = {i["metadata"]["id"]: i for i in cycle.sandbox.amplify.resources("SubscriptionInvoice")}
    billed = {i for i, inv in amplify.items() if inv["spec"]["cost"]["total"] > 0}
    recurly = invoices(cycle.sandbox.recurly)
    assert Counter(r["po_number"] for r in recurly) == {po_number(i): 1 for i in billed}
    by_po = {r["po_number"]: r for r in recurly}
    for amplify_id in billed:
        invoice = amplify[amplify_id]
        assert invoice["billing"]["payment"]["id"] == by_po[po_number(amplify_id)]["id"]
        assert invoice["state"]["name"] == "open", invoice["state"]
    return by_po


def test_killed_after_a_purchase_then_rerun_invoices_each_amplify_invoice_once(make_cycle: Any) -> None:
    cycle, config = _invoicing(make_cycle)
    assert _cli(cycle, config, "sync-invoices").returncode == 0
    total = len(_assert_invoiced_once(cycle))
    assert total >= 3, "the scenario needs a few invoices to bill"
    for target in _positions(total):
        cycle, config = _invoicing(make_cycle)
        killer = KillAfterWrite(cycle, _purchase_post)
        _kill_then_finish(cycle, config, killer, target, "sync-invoices")
        _assert_invoiced_once(cycle)
        # found by its po_number, never sent again (the emulator's Idempotency-Key replay would hide a resend)
        sent = Counter(r.body["po_number"] for r in cycle.sandbox.recurly.requests if _purchase_post(r))
        assert set(sent.values()) == {1}, sent
        again = _cli(cycle, config, "sync-invoices")
        assert again.returncode == 0, again.stderr
        _assert_invoiced_once(cycle)


def test_killed_after_stopping_a_voided_invoice_then_rerun_stops_it_once(make_cycle: Any) -> None:
    from amplify_billing.reconcile.invoice_lines import po_number

    cycle, config = _invoicing(make_cycle)
    assert _cli(cycle, config, "sync-invoices").returncode == 0
    by_po = _assert_invoiced_once(cycle)
    amplify = next(
        i for i in cycle.sandbox.amplify.resources("SubscriptionInvoice") if po_number(i["metadata"]["id"]) in by_po
    )
    cycle.sandbox.amplify.put_resource({**amplify, "state": {"name": "void"}, "status": {"level": "Pending"}})
    killer = KillAfterWrite(cycle, _mark_failed)
    _kill_then_finish(cycle, config, killer, 1, "sync-invoices")

    stops = [r for r in cycle.sandbox.recurly.requests if _mark_failed(r) and r.method == "PUT"]
    assert len(stops) == 1
    voided = cycle.sandbox.amplify.resource(
        "SubscriptionInvoice", amplify["name"], amplify["metadata"]["scope"]["name"]
    )
    assert (voided["state"]["name"], voided["status"]["level"]) == ("void", "Success")
    assert by_po[po_number(amplify["metadata"]["id"])]["number"] in voided["status"]["reasons"][0]["detail"]


def _invoice_state_or_status(raw: Request) -> bool:
    return raw.method == "PUT" and "/subscriptioninvoices/" in raw.path and raw.path.endswith(("/state", "/status"))


def test_killed_between_the_writes_that_follow_an_invoice_to_paid_then_rerun_finishes_both(make_cycle: Any) -> None:
    # found by the fault soak: a paid invoice leaves Amplify's actionable listing, so whatever write of the follow
    # comes last must be the one that moves the state; killed before it, the next run must still see the invoice
    from amplify_billing.sandbox.recurly_invoices import settle

    cycle, config = _invoicing(make_cycle)
    assert _cli(cycle, config, "sync-invoices").returncode == 0
    by_po = _assert_invoiced_once(cycle)
    paid = next(iter(by_po.values()))
    settle(cycle.sandbox.recurly, paid["number"], "paid")  # the consumer pays on the hosted page
    killer = KillAfterWrite(cycle, _invoice_state_or_status, cycle.sandbox.amplify)

    _kill_then_finish(cycle, config, killer, 1, "sync-invoices")

    [invoice] = [
        i
        for i in cycle.sandbox.amplify.resources("SubscriptionInvoice")
        if (i.get("billing") or {}).get("payment", {}).get("id") == paid["id"]
    ]
    assert (invoice["state"]["name"], invoice["status"]["level"]) == ("paid", "Success")


def _invoice_billing(raw: Request) -> bool:
    return raw.method == "PUT" and "/subscriptioninvoices/" in raw.path and raw.path.endswith("/billing")


def test_killed_after_each_billing_write_back_then_rerun_opens_each_invoice_once(make_cycle: Any) -> None:
    """Killed after Amplify stored an invoice's billing.payment (before its state open): the next run finds the
    Recurly invoice (the journal's link, or billing.payment.id), sends no second purchase and finishes the state."""
    cycle, config = _invoicing(make_cycle)
    assert _cli(cycle, config, "sync-invoices").returncode == 0
    total = len(_assert_invoiced_once(cycle))
    for target in _positions(total):
        cycle, config = _invoicing(make_cycle)
        killer = KillAfterWrite(cycle, _invoice_billing, cycle.sandbox.amplify)
        _kill_then_finish(cycle, config, killer, target, "sync-invoices")
        _assert_invoiced_once(cycle)
        sent = Counter(r.body["po_number"] for r in cycle.sandbox.recurly.requests if _purchase_post(r))
        assert set(sent.values()) == {1}, sent
