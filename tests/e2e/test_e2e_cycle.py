"""End-to-end: the seeded sandbox catalog, population and traffic reach the expected Recurly state.

Each command is run three ways: ``--dry-run`` (writes nothing, anywhere), the real run (applies exactly what the
dry run planned) and a second real run (writes nothing). Usage is checked to the unit against the emulator's own
record of the traffic.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.changes import Outcome
from tools.driver import Cycle, amplify_writes, applied, failed, planned, recurly_writes

TODAY = datetime(2026, 11, 20, tzinfo=UTC)  # as in conftest.py


def _marks(cycle: Cycle) -> tuple[int, int]:
    return len(cycle.sandbox.recurly.requests), len(cycle.sandbox.amplify.requests)


def _assert_no_writes(cycle: Cycle, marks: tuple[int, int]) -> None:
    assert recurly_writes(cycle.sandbox, marks[0]) == []
    assert amplify_writes(cycle.sandbox, marks[1]) == []


def test_sync_plans_dry_run_then_apply_then_nothing(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle()
    marks = _marks(cycle)
    dry = cycle.sync_plans(dry_run=True)
    _assert_no_writes(cycle, marks)
    assert planned(dry), "the seeded catalog needs plans in Recurly"

    real = cycle.sync_plans()
    assert failed(real) == []
    assert applied(real) == planned(dry)
    assert real.exit_code == 0

    plans = {p["code"]: p for p in cycle.sandbox.recurly.plans() if p["state"] == "active"}
    assert plans, "plans were created"
    add_ons = cycle.sandbox.recurly.add_ons()
    decimals = {
        c.get("unit_amount_decimal") for a in add_ons if a["tier_type"] == "flat" for c in a.get("currencies") or ()
    }
    assert "0.0025" in decimals, f"the per-call price of 0.0025 is exact: {decimals}"
    graduated = [a for a in add_ons if a["tier_type"] == "tiered" and len(a.get("tiers") or ()) == 4]
    assert graduated, "the graduated quota of four tiers became a tiered add-on of four tiers"
    assert any(a["tier_type"] == "volume" for a in add_ons)
    unsupported = [r for r in real.results if r.change.kind.value == "unsupported"]
    assert unsupported and all(r.outcome is Outcome.REPORTED for r in unsupported)

    marks = _marks(cycle)
    again = cycle.sync_plans()
    assert applied(again) == []
    _assert_no_writes(cycle, marks)


def test_accounts_and_subscriptions_then_nothing(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle()
    assert failed(cycle.sync_plans()) == []

    marks = _marks(cycle)
    dry_accounts = cycle.link_accounts(dry_run=True)
    _assert_no_writes(cycle, marks)
    accounts = cycle.link_accounts()
    assert failed(accounts) == []
    assert applied(accounts) == planned(dry_accounts)
    codes = {a["code"] for a in cycle.sandbox.recurly.accounts()}
    assert codes and all(c.startswith(("amplify-team-", "amplify-user-")) for c in codes)
    assert all(a.get("email") for a in cycle.sandbox.recurly.accounts()), "never an empty e-mail"

    marks = _marks(cycle)
    dry_subs = cycle.sync_subscriptions(dry_run=True)
    _assert_no_writes(cycle, marks)
    subs = cycle.sync_subscriptions()
    assert failed(subs) == []
    assert applied(subs) == planned(dry_subs)

    live = cycle.sandbox.recurly.subscriptions(state="active")
    assert live
    by_amplify = Counter(
        f["value"] for s in live for f in s.get("custom_fields") or () if f["name"] == "amplify_subscription_id"
    )
    assert by_amplify and max(by_amplify.values()) == 1, "one Recurly subscription per Amplify subscription"
    for s in live:
        on_plan = sorted(a["code"] for a in cycle.sandbox.recurly.add_ons(s["plan"]["code"]))
        listed = sorted(a["add_on"]["code"] for a in s["add_ons"])
        assert listed == on_plan, f"every usage add-on of the plan is listed explicitly on {s['uuid']}"
    assert any(s["add_ons"] for s in live)
    approved = {
        r["metadata"]["id"]
        for r in cycle.sandbox.amplify.resources("Subscription")
        if (r.get("approval") or {}).get("state") == "approved"
    }
    assert set(by_amplify) <= approved, "every billed subscription is approved in Amplify"
    pending_left = [
        r["name"]
        for r in cycle.sandbox.amplify.resources("Subscription")
        if (r.get("approval") or {}).get("state") == "pending" and r["metadata"]["id"] in by_amplify
    ]
    assert pending_left == []

    marks = _marks(cycle)
    assert applied(cycle.link_accounts()) == []
    assert applied(cycle.sync_subscriptions()) == []
    _assert_no_writes(cycle, marks)


def _expected_usage(cycle: Cycle, settle: timedelta = timedelta(hours=2)) -> dict[tuple[str, str], int]:
    """Traffic in the closed, settled daily windows of each billed (subscription, add-on)."""
    now = cycle.clock()
    last_end = (now - settle).replace(hour=0, minute=0, second=0, microsecond=0)
    expected: dict[tuple[str, str], int] = {}
    prefix = "amplify-"
    for s in cycle.sandbox.recurly.subscriptions():
        fields = {f["name"]: f["value"] for f in s.get("custom_fields") or ()}
        amplify_id = fields["amplify_subscription_id"]
        started = parse_timestamp(s["activated_at"])
        assert isinstance(started, datetime)
        ended = parse_timestamp(s.get("expires_at"))
        until = min(last_end, ended) if ended else last_end
        traffic = cycle.sandbox.amplify.traffic(started, until) if started < until else {}
        for add_on in s["add_ons"]:
            code = add_on["add_on"]["code"]
            quota_id = code.removeprefix(prefix)
            expected[(s["uuid"], code)] = traffic.get((amplify_id, quota_id), 0)
    return expected


def _recurly_usage(cycle: Cycle) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = {}
    for record in cycle.sandbox.recurly.usage_records():
        key = (record["subscription_uuid"], record["add_on_code"])
        totals[key] = totals.get(key, 0) + int(Decimal(str(record["amount"])))
    return totals


# Traceability keeps 7 days: a cycle that reports its traffic in one go after it ends has six days of it
WHOLE = 6


def test_usage_sums_match_traffic_to_the_unit_and_a_second_run_posts_nothing(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(days=WHOLE)
    day0 = cycle.run()
    assert all(failed(r) == [] for r in day0), [failed(r) for r in day0]
    cycle.clock.set(TODAY + timedelta(hours=3))

    marks = _marks(cycle)
    dry = cycle.report_usage(dry_run=True)
    _assert_no_writes(cycle, marks)
    real = cycle.report_usage()
    reads = [r for r in cycle.sandbox.recurly.requests[marks[0] :] if r.method == "GET" and "usage" in r.path]
    # the journal check reads a sample of pairs (with an end_time) in each run, the dry one too; nothing else
    first_reads = [r for r in reads if "end_time" not in r.query]
    assert first_reads == [], "subscriptions this journal created need no usage reads before their first post"
    assert len(reads) <= 2 * 5
    assert failed(real) == []
    assert sorted(applied(real)) == sorted(planned(dry))
    assert int(real.figures["records_reported"]) > 0
    # the report: one row per (subscription, quota) with its windows and units, adding up to the figures
    posts = [r for r in real.results if r.change.kind.value == "post"]
    assert len({r.change.key for r in posts}) == len(posts)
    parsed = [re.fullmatch(r"(\d+) record\(s\), ([\d,]+) unit\(s\)", r.change.summary) for r in posts]
    assert all(parsed)
    assert sum(int(m.group(1)) for m in parsed if m) == int(real.figures["records_reported"])
    assert sum(int(m.group(2).replace(",", "")) for m in parsed if m) == int(real.figures["units_reported"])

    expected = _expected_usage(cycle)
    got = _recurly_usage(cycle)
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}
    assert sum(expected.values()) > 0
    tags = Counter(r["merchant_tag"] for r in cycle.sandbox.recurly.usage_records())
    assert max(tags.values()) == 1, "no merchant_tag twice"

    marks = _marks(cycle)
    again = cycle.report_usage()
    assert applied(again) == []
    assert int(again.figures["records_reported"]) == 0
    _assert_no_writes(cycle, marks)
    recurly_reads = [r for r in cycle.sandbox.recurly.requests[marks[0] :] if "usage" in r.path]
    # the steady state reads no usage from Recurly (the journal knows) but the journal check's sample of 5 pairs
    assert len(recurly_reads) == 5, "the steady state reads only the journal check's sample of usage from Recurly"
    assert all("end_time" in r.query for r in recurly_reads)


def test_late_traffic_is_restated_in_place_then_as_an_adjustment_once_billed(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle()
    cycle.run()
    cycle.clock.set(TODAY + timedelta(hours=3))
    assert failed(cycle.report_usage()) == []
    records = cycle.sandbox.recurly.usage_records()
    target = max(records, key=lambda r: r["amount"])
    tag = target["merchant_tag"]
    _, subscription_id, quota_id, window = tag.split(":")
    window_start = datetime.strptime(window, "%Y%m%dT%H%M%SZ").replace(tzinfo=TODAY.tzinfo)

    # late traffic inside the lookback: the unbilled record is updated in place
    cycle.sandbox.amplify.add_traffic(subscription_id, quota_id, window_start + timedelta(minutes=5), count=7)
    cycle.clock.advance(timedelta(hours=1))
    first = cycle.report_usage()
    assert failed(first) == []
    restated = [r for r in first.results if r.change.kind.value == "restate" and r.outcome is Outcome.APPLIED]
    assert len(restated) == 1 and restated[0].change.key == tag
    updated = [r for r in cycle.sandbox.recurly.usage_records() if r["merchant_tag"] == tag]
    assert len(updated) == 1 and int(updated[0]["amount"]) == int(target["amount"]) + 7

    # once billed, a further change is posted as a separate :adj1 record for the difference
    assert cycle.sandbox.recurly.bill() > 0
    cycle.sandbox.amplify.add_traffic(subscription_id, quota_id, window_start + timedelta(minutes=6), count=3)
    cycle.clock.advance(timedelta(hours=1))
    second = cycle.report_usage()
    assert failed(second) == []
    adjustments = [r for r in cycle.sandbox.recurly.usage_records() if r["merchant_tag"] == f"{tag}:adj1"]
    assert len(adjustments) == 1 and int(adjustments[0]["amount"]) == 3
    total = sum(int(r["amount"]) for r in cycle.sandbox.recurly.usage_records() if r["merchant_tag"].startswith(tag))
    assert total == int(target["amount"]) + 10
    assert applied(cycle.report_usage()) == []


def test_run_spends_one_amplify_attribute_write_per_subscription_and_approvals_come_first(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle()
    reports = cycle.run()
    assert all(failed(r) == [] for r in reports)
    listings = Counter(r.path for r in cycle.sandbox.recurly.requests if r.method == "GET")
    assert listings["/subscriptions"] == 1, "created subscriptions are added to the run's listing, not re-listed"
    assert listings["/accounts"] == 1
    puts = [r for r in cycle.sandbox.amplify.requests if r.method == "PUT" and "/subscriptions/" in r.path]
    attribute_puts = Counter(r.path for r in puts if not r.path.endswith(("/approval", "/state", "/marketplace")))
    assert attribute_puts and max(attribute_puts.values()) == 1, "account code and uuid go in one PUT"
    assert all(r.status in (200, 201) for r in puts), "no stale resourceVersion (428) on any write"
    order = [r.path.endswith("/approval") for r in puts]
    assert any(order) and order.index(False) > max(i for i, a in enumerate(order) if a), "approvals first"


def test_usage_in_small_batches_bills_the_same(make_cycle: Any, monkeypatch: Any) -> None:
    import amplify_billing.usage.reporting as report_usage

    monkeypatch.setattr(report_usage, "USAGE_BATCH_PAIRS", 3)  # many batches: planning and applying per batch
    cycle: Cycle = make_cycle(days=WHOLE)
    cycle.run()
    cycle.clock.set(TODAY + timedelta(hours=3))
    real = cycle.report_usage()
    assert failed(real) == []
    assert all(r.change.action is None for r in real.results if r.change.object == "usage"), (
        "batch results keep no actions"
    )
    expected = _expected_usage(cycle)
    assert {k: v for k, v in _recurly_usage(cycle).items() if v} == {k: v for k, v in expected.items() if v}
    assert int(real.figures["units_reported"]) == sum(expected.values())
    assert applied(cycle.report_usage()) == []


def test_a_lost_answer_is_resolved_by_merchant_tag_even_if_recurly_ignored_the_idempotency_key(
    make_cycle: Any,
) -> None:
    cycle: Cycle = make_cycle(days=WHOLE)
    cycle.run()
    cycle.clock.set(TODAY + timedelta(hours=3))
    emulator = cycle.sandbox.recurly
    original = emulator.dispatch

    def forgetful(raw: Any) -> Any:
        emulator._priors.clear()  # a Recurly that keeps no Idempotency-Key at all
        return original(raw)

    emulator.dispatch = forgetful  # type: ignore[method-assign]
    # stored, then the connection drops before the answer: the retry must find the record, not post it again
    rule = emulator.inject("drop_after", method="POST", path=r"/usage$", nth=2)
    report = cycle.report_usage()
    emulator.dispatch = original  # type: ignore[method-assign]
    assert rule.injected == 1
    assert failed(report) == []
    tags = Counter(r["merchant_tag"] for r in emulator.usage_records())
    assert max(tags.values()) == 1, "no merchant_tag twice"
    assert {k: v for k, v in _recurly_usage(cycle).items() if v} == {
        k: v for k, v in _expected_usage(cycle).items() if v
    }
