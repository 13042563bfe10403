"""End-to-end: no subscription is created or ended from a read that is not proven complete (issue 11, DESIGN.md §3).

A create depends on the absence of a Recurly subscription, an end on the absence of an Amplify one. Each scenario
runs the tool's production code against both emulators on a virtual clock, breaks one read the way a real tenant or
a fault would (a listing cut short, a paused or expired Recurly subscription, a product that leaves the opted-in
catalog), and checks Recurly's records, the requests made, the exit code and the finding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from amplify_billing.changes import Change, ChangeKind, CommandReport, Outcome
from amplify_billing.errors import ConfigError, ExitCode
from amplify_billing.sandbox.harness import CUSTOM_FIELD
from amplify_billing.sandbox.server import RecordedRequest
from tools.driver import Cycle, amplify_writes, failed, recurly_writes

TODAY = datetime(2026, 11, 20, tzinfo=UTC)  # as in conftest.py
DAY0 = TODAY - timedelta(days=7)  # where make_cycle's clock starts
SETTLE = timedelta(hours=2)  # usage.settle_delay, default


# ---- helpers ---------------------------------------------------------------------------------------------


def _ok(reports: CommandReport | Iterable[CommandReport]) -> dict[str, CommandReport]:
    """Every report without a failed change and with exit code 0; by command."""
    listed = [reports] if isinstance(reports, CommandReport) else list(reports)
    for report in listed:
        assert failed(report) == [], (report.command, failed(report))
        assert report.exit_code == 0, (report.command, report.exit_code, [c.summary for c in _findings(report)])
    return {r.command: r for r in listed}


def _findings(report: CommandReport) -> list[Change]:
    return [r.change for r in report.results if r.outcome is Outcome.REPORTED and r.change.kind is ChangeKind.FINDING]


def _field(subscription: dict[str, Any]) -> str | None:
    fields = {f["name"]: f["value"] for f in subscription.get("custom_fields") or ()}
    return fields.get(CUSTOM_FIELD)


def _recurly_for(cycle: Cycle, amplify_id: str) -> list[dict[str, Any]]:
    return [s for s in cycle.sandbox.recurly.subscriptions() if _field(s) == amplify_id]


def _usage_total(cycle: Cycle, uuid: str) -> int:
    return sum(
        int(Decimal(str(r["amount"]))) for r in cycle.sandbox.recurly.usage_records() if r["subscription_uuid"] == uuid
    )


def _traffic(cycle: Cycle, amplify_id: str, start: datetime, end: datetime) -> int:
    return sum(n for (sid, _quota), n in cycle.sandbox.amplify.traffic(start, end).items() if sid == amplify_id)


def _billed_with_traffic(cycle: Cycle, *, product: str | None = None) -> list[dict[str, Any]]:
    """Approved, active subscriptions of the scenario on a plan with usage add-ons, with traffic."""
    scenario = cycle.scenario
    plans = {p["name"]: p["spec"]["product"] for p in scenario.plans}
    found = []
    for name in scenario.live_subscriptions:
        raw = scenario.subscriptions_by_name[name]
        plan = raw["spec"]["plan"]["name"]
        if (raw.get("approval") or {}).get("state") != "approved" or not scenario.usage_quotas[plan]:
            continue
        if product is not None and plans[plan] != product:
            continue
        if _traffic(cycle, raw["metadata"]["id"], DAY0, TODAY) > 0:
            found.append(raw)
    assert found, f"the scenario needs an approved subscription with traffic on {product or 'any product'}"
    return found


def _creates(seen: Iterable[RecordedRequest]) -> list[RecordedRequest]:
    return [r for r in seen if r.method == "POST" and r.path == "/subscriptions"]


def _ends(seen: Iterable[RecordedRequest]) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in seen
        if (r.method == "PUT" and r.path.endswith("/cancel")) or (r.method == "DELETE" and "/subscriptions/" in r.path)
    ]


def _direct_reads(seen: Iterable[RecordedRequest]) -> list[str]:
    """GETs of one Recurly subscription by uuid (not of its usage)."""
    return [r.path for r in seen if r.method == "GET" and re.fullmatch(r"/subscriptions/uuid-[0-9a-f]+", r.path)]


def _usage_posts(seen: Iterable[RecordedRequest], uuid: str) -> list[int]:
    return [
        i
        for i, r in enumerate(seen)
        if r.method == "POST" and r.path.startswith(f"/subscriptions/uuid-{uuid}/") and r.path.endswith("/usage")
    ]


def _sync(cycle: Cycle, *, end: tuple[str, ...] = (), dry_run: bool = False) -> CommandReport:
    from amplify_billing.commands.options import SyncOptions
    from amplify_billing.commands.sync_subscriptions import sync_subscriptions

    options = SyncOptions(dry_run=dry_run, end=end)
    return cycle._go("sync-subscriptions", dry_run, lambda rt, run_id: sync_subscriptions(rt, options, run_id=run_id))


def _new_subscription(cycle: Cycle, like: dict[str, Any]) -> str:
    """A subscription approved in Amplify since the last run, on the same plan and owner as ``like``: its id."""
    fresh = {key: value for key, value in like.items() if key not in ("metadata", "attributes")}
    fresh["name"] = f"{like['name']}-new"
    return str(cycle.sandbox.amplify.put_resource(fresh)["metadata"]["id"])


# ---- 1. a linked Recurly subscription missing from the live listing gets no second one -------------------


def test_a_recurly_listing_cut_short_creates_nothing_twice(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=8)
    _ok(cycle.run())
    live = cycle.sandbox.recurly.subscriptions("live")
    assert len(live) >= 5
    fresh_id = _new_subscription(cycle, _billed_with_traffic(cycle)[0])
    # a fault between pages ends the walk early (has_more false) while the total stays true
    cycle.sandbox.recurly.cut_listings["list_subscriptions"] = 2
    cycle.clock.advance(timedelta(hours=3))

    mark = len(cycle.sandbox.recurly.requests)
    report = _sync(cycle)

    seen = cycle.sandbox.recurly.requests[mark:]
    assert _creates(seen) == [], "no second subscription for the linked ones, no create from an unproven listing"
    assert sorted(len(_recurly_for(cycle, _field(s) or "")) for s in live) == [1] * len(live)
    assert _recurly_for(cycle, fresh_id) == []
    # each linked one the cut listing missed was read directly, once: still the customer's subscription
    assert len(_direct_reads(seen)) == len(live) - 2 == len(set(_direct_reads(seen)))
    (withheld,) = [c for c in _findings(report) if c.key == fresh_id]
    assert withheld.withholds and withheld.summary == (
        f"no Recurly subscription matches it, but Recurly listed 2 of {len(live)} live subscriptions "
        "(Recurly-Total-Records); it is not created until a listing is proven whole (the next run lists again)"
    )
    assert [f.key for f in _findings(report)] == [fresh_id]
    assert report.exit_code == ExitCode.PARTIAL_FAILURE == 1

    # the fault is gone: the listing proves itself whole (one HEAD), nothing is read directly, the new one starts
    cycle.sandbox.recurly.cut_listings.clear()
    mark = len(cycle.sandbox.recurly.requests)
    _ok(_sync(cycle))
    seen = cycle.sandbox.recurly.requests[mark:]
    assert [r.path for r in seen if r.method == "HEAD"] == ["/subscriptions"]
    assert _direct_reads(seen) == []
    assert len(_creates(seen)) == 1 and len(_recurly_for(cycle, fresh_id)) == 1


@pytest.mark.parametrize("cause", ["terminated by an operator", "total_billing_cycles without renewal"])
def test_a_linked_subscription_that_ended_in_recurly_is_not_created_again(make_cycle: Any, cause: str) -> None:
    cycle: Cycle = make_cycle(subscriptions=8)
    target = _billed_with_traffic(cycle)[0]
    amplify_id, plan_name = target["metadata"]["id"], target["spec"]["plan"]["name"]
    if cause.startswith("total_billing_cycles"):
        # the provider sells the plan for one month without renewal: Recurly ends it by itself after one period
        plan = cycle.sandbox.amplify.resource("ProductPlan", plan_name)
        plan["spec"]["subscription"].update(renewal="manual", cycles=1)
        cycle.sandbox.amplify.put_resource(plan)
    _ok(cycle.run())
    (first,) = _recurly_for(cycle, amplify_id)
    if cause.startswith("terminated"):
        cycle.clock.advance(timedelta(days=1))
        cycle.recurly_by_hand("DELETE", f"/subscriptions/uuid-{first['uuid']}?refund=none")
        reason = "terminated"
    else:
        cycle.clock.set(DAY0 + timedelta(days=32))  # past the end of its only billing period
        reason = "nonrenewing"
    assert cycle.sandbox.recurly.subscriptions("live") == [] or first["uuid"] not in {
        s["uuid"] for s in cycle.sandbox.recurly.subscriptions("live")
    }

    mark = len(cycle.sandbox.recurly.requests)
    report = _sync(cycle)

    seen = cycle.sandbox.recurly.requests[mark:]
    assert [
        r for r in _creates(seen) if r.body and r.body.get("custom_fields", [{}])[0].get("value") == amplify_id
    ] == []
    assert [s["uuid"] for s in _recurly_for(cycle, amplify_id)] == [first["uuid"]]
    assert _direct_reads(seen).count(f"/subscriptions/uuid-{first['uuid']}") == 1
    (finding,) = [c for c in _findings(report) if c.key == amplify_id]
    assert finding.withholds and finding.summary.startswith(
        f"its linked Recurly subscription {first['uuid']} is expired, {reason}; no second Recurly subscription is "
        "created for it."
    )
    assert report.exit_code == ExitCode.PARTIAL_FAILURE


def test_a_paused_subscription_stays_the_customers_and_its_usage_is_reported(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=8)
    _ok(cycle.run())
    target = _billed_with_traffic(cycle)[0]
    amplify_id = target["metadata"]["id"]
    (first,) = _recurly_for(cycle, amplify_id)
    # paused in Recurly (by the customer or an operator): `state=live` no longer lists it (reference §9.3)
    cycle.sandbox.recurly.pause(first["uuid"], cycles=2)
    assert first["uuid"] not in {s["uuid"] for s in cycle.sandbox.recurly.subscriptions("live")}
    until = DAY0 + timedelta(days=2, hours=5)
    cycle.clock.set(until)

    mark = len(cycle.sandbox.recurly.requests)
    reports = _ok(cycle.run())

    seen = cycle.sandbox.recurly.requests[mark:]
    assert _creates(seen) == []
    assert [s["uuid"] for s in _recurly_for(cycle, amplify_id)] == [first["uuid"]]
    assert _direct_reads(seen) == [f"/subscriptions/uuid-{first['uuid']}"], "read once for the whole run"
    assert _usage_posts(seen, first["uuid"]), "its usage is still reported"
    assert _usage_total(cycle, first["uuid"]) == _traffic(cycle, amplify_id, DAY0, DAY0 + timedelta(days=2))
    assert _findings(reports["sync-subscriptions"]) == []


# ---- 2. a cut-short Amplify listing ends nothing ------------------------------------------------------------


@pytest.mark.parametrize("served", [2, -1], ids=["above the safety valve", "one missing, below the valve"])
def test_an_amplify_listing_cut_short_ends_nothing(make_cycle: Any, served: int) -> None:
    cycle: Cycle = make_cycle(subscriptions=8)
    _ok(cycle.run())
    linked = len(cycle.sandbox.recurly.subscriptions("live"))
    listed = len(cycle.scenario.billed_subscriptions)  # what the listing by linked plan names matches
    served = served % listed
    # paging stops without a Link header after `served` subscriptions; X-Axway-Total-Count stays true
    cycle.sandbox.amplify.cut_listings["Subscription"] = served

    for hours in (3, 3 + 5):  # the second run comes after the settle delay, when a missed one would end
        cycle.clock.set(DAY0 + timedelta(hours=hours))
        mark = len(cycle.sandbox.recurly.requests)
        report = _sync(cycle)
        assert _ends(cycle.sandbox.recurly.requests[mark:]) == []
        assert report.exit_code == ExitCode.PARTIAL_FAILURE
        (finding,) = _findings(report)
        shown = re.fullmatch(
            rf"Amplify listed {served} of {listed} subscriptions \(X-Axway-Total-Count\); (\d+) linked "
            "subscription\\(s\\) it did not show are not ended, and the usage of any it did not show waits for a "
            "whole listing",
            finding.summary,
        )
        assert finding.withholds and shown is not None, finding.summary
        assert 0 < int(shown.group(1)) <= min(linked, listed - served)
    assert {s["state"] for s in cycle.sandbox.recurly.subscriptions()} == {"active"}

    cycle.sandbox.amplify.cut_listings.clear()
    mark = len(cycle.sandbox.recurly.requests)
    _ok(_sync(cycle))
    assert recurly_writes(cycle.sandbox, mark) == []


def test_a_subscription_missing_from_the_listing_ends_only_once_a_direct_read_answers_404(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=6)
    _ok(cycle.run())
    target = _billed_with_traffic(cycle)[0]
    amplify_id, name = target["metadata"]["id"], target["name"]
    (live,) = _recurly_for(cycle, amplify_id)
    deleted_at = DAY0 + timedelta(days=1, hours=2)
    cycle.clock.set(deleted_at)
    cycle.sandbox.amplify.delete_resource("Subscription", name)
    # the direct read fails (a 503 every time, past the retries): absence alone ends nothing
    cycle.sandbox.amplify.inject("503", method="GET", path=f"/subscriptions/{name}$")

    cycle.clock.set(deleted_at + SETTLE + timedelta(hours=1))
    mark = len(cycle.sandbox.recurly.requests)
    report = _sync(cycle)
    assert _ends(cycle.sandbox.recurly.requests[mark:]) == []
    (finding,) = _findings(report)
    assert finding.withholds and finding.key == amplify_id
    assert finding.summary.startswith("not listed by Amplify and not proven deleted: reading it failed (")
    assert finding.summary.endswith(
        f"Recurly subscription {live['uuid']} is not ended. If it was deleted: amplify-billing sync-subscriptions "
        f"--end {amplify_id}"
    )
    assert report.exit_code == ExitCode.PARTIAL_FAILURE

    # the read answers 404: deleted; its usage up to this run's moment first, then the end (as before)
    cycle.sandbox.amplify.clear_faults()
    missed_at = cycle.clock()
    cycle.clock.set(missed_at + SETTLE + timedelta(minutes=5))
    _sync(cycle)  # records the moment it was proven gone; waits for that window to settle
    cycle.clock.advance(SETTLE)
    mark = len(cycle.sandbox.recurly.requests)
    _ok(cycle.run())
    seen = cycle.sandbox.recurly.requests
    (end,) = [
        i for i, r in enumerate(seen) if r.method == "PUT" and r.path == f"/subscriptions/uuid-{live['uuid']}/cancel"
    ]
    assert end >= mark and max(_usage_posts(seen, live["uuid"])) < end


# ---- 3. a product that leaves the opted-in catalog keeps billing until the operator ends it -------------------


@pytest.mark.parametrize("how", ["opt-in attribute removed", "product no longer readable"])
def test_a_product_that_leaves_the_catalog_keeps_billing_until_ended_by_the_operator(make_cycle: Any, how: str) -> None:
    cycle: Cycle = make_cycle(subscriptions=8)
    _ok(cycle.run())
    target = _billed_with_traffic(cycle, product="maps-api")[0]
    amplify_id = target["metadata"]["id"]
    (live,) = _recurly_for(cycle, amplify_id)
    maps_ids = {
        s["metadata"]["id"]
        for s in cycle.sandbox.amplify.resources("Subscription")
        if s["spec"]["plan"]["name"].startswith("maps-") and _recurly_for(cycle, s["metadata"]["id"])
    }
    removed_at = DAY0 + timedelta(days=1, hours=3)
    cycle.clock.set(removed_at)
    if how.startswith("opt-in"):
        product = cycle.sandbox.amplify.resource("Product", "maps-api")
        product["attributes"] = {}
        cycle.sandbox.amplify.put_resource(product)
    else:
        cycle.sandbox.amplify.delete_resource("Product", "maps-api")

    # two days on: nothing ends, its usage goes on, and a finding names each one, every run
    for day in (1, 2):
        cycle.clock.set(removed_at + timedelta(days=day))
        mark = len(cycle.sandbox.recurly.requests), len(cycle.sandbox.amplify.requests)
        reports = _ok(cycle.run())
        assert _ends(cycle.sandbox.recurly.requests[mark[0] :]) == []
        kept = {c.key: c for c in _findings(reports["sync-subscriptions"]) if "left the opted-in catalog" in c.summary}
        assert set(kept) == maps_ids
        assert not kept[amplify_id].withholds
        assert kept[amplify_id].summary.endswith(
            f"Recurly subscription {live['uuid']} is kept and its usage still reported. To end it after its final "
            f"usage: amplify-billing sync-subscriptions --end {amplify_id}"
        )
        assert [w.path for w in amplify_writes(cycle.sandbox, mark[1]) if target["name"] in w.path] == []
    reported_until = removed_at + timedelta(days=2) - SETTLE
    assert _usage_total(cycle, live["uuid"]) == _traffic(
        cycle, amplify_id, DAY0, reported_until.replace(hour=0, minute=0)
    )

    # an id that is not such a subscription is refused, naming it, before anything is done
    listed = _billed_with_traffic(cycle, product="weather-api")[0]["metadata"]["id"]
    with pytest.raises(ConfigError, match=f"--end {listed}: not a subscription") as refused:
        _sync(cycle, end=(amplify_id, listed))
    assert refused.value.exit_code == ExitCode.CONFIG == 2

    # the operator ends it: its usage up to that moment first, then the end (once the last window settled)
    ended_at = removed_at + timedelta(days=2, hours=4, minutes=30)
    cycle.clock.set(ended_at)
    marks = len(cycle.sandbox.recurly.requests), len(cycle.sandbox.amplify.requests)
    dry = _sync(cycle, end=(amplify_id,), dry_run=True)
    assert recurly_writes(cycle.sandbox, marks[0]) == [] and amplify_writes(cycle.sandbox, marks[1]) == []
    assert any(r.change.key == amplify_id and "ended by the operator" in r.change.summary for r in dry.results)
    mark = len(cycle.sandbox.recurly.requests)
    first = _sync(cycle, end=(amplify_id,))
    assert _ends(cycle.sandbox.recurly.requests[mark:]) == []
    assert any(
        r.change.kind is ChangeKind.WAITING
        and r.change.key == amplify_id
        and "ended by the operator" in r.change.summary
        for r in first.results
    )
    cycle.clock.set(ended_at + SETTLE + timedelta(minutes=5))
    mark = len(cycle.sandbox.recurly.requests)
    _ok(cycle.run())
    seen = cycle.sandbox.recurly.requests
    (end,) = [
        i for i, r in enumerate(seen) if r.method == "PUT" and r.path == f"/subscriptions/uuid-{live['uuid']}/cancel"
    ]
    assert end >= mark and max(_usage_posts(seen, live["uuid"])) < end
    assert _recurly_for(cycle, amplify_id)[0]["state"] == "canceled"
    assert _usage_total(cycle, live["uuid"]) == _traffic(cycle, amplify_id, DAY0, ended_at)
    # the others of the product are still kept and billed
    others = maps_ids - {amplify_id}
    assert all(_recurly_for(cycle, i)[0]["state"] == "active" for i in others)
