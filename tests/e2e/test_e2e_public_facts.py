"""End-to-end: the whole cycle on tenants that hold the facts of Amplify's public sources (reference §9).

A 2024 tenant that serves plans, plan units and subscriptions only as ``v1alpha1`` (``api_version: auto`` finds it);
quotas listed through the documented ``scopeResource.name`` filter; a free plan without billing synced in the site's
default currency; subscriptions in transitional states billed like active ones.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from amplify_billing.changes import Outcome
from amplify_billing.sandbox.amplify_catalog import SERVED_IN_2024
from tools.driver import Cycle, failed


def _ok(reports: list[Any]) -> None:
    for report in reports:
        assert failed(report) == [] and report.exit_code == 0, (report.command, failed(report))


def test_the_cycle_runs_on_a_2024_tenant_that_serves_plans_and_subscriptions_only_as_v1alpha1(
    make_cycle: Any,
) -> None:
    cycle: Cycle = make_cycle(subscriptions=12)
    cycle.sandbox.amplify.serve_versions(SERVED_IN_2024)

    _ok(cycle.run())

    requests = cycle.sandbox.amplify.requests
    by_route = {(r.route, r.path.split("/")[3]) for r in requests if r.path.startswith("/apis/")}
    # each kind is probed once at v1 and, where that answers 404, read at v1alpha1 from then on
    assert [r.status for r in requests if r.path == "/apis/catalog/v1/productplans"] == [404]
    assert [r.status for r in requests if r.path == "/apis/catalog/v1/subscriptions"] == [404]
    assert ("list_products", "v1") in by_route and ("list_productplans", "v1alpha1") in by_route
    writes = [r.path for r in requests if r.method == "PUT"]
    assert writes and all("/catalog/v1alpha1/" in p for p in writes if "/subscriptions/" in p)
    live = {cycle.scenario.subscriptions_by_name[n]["metadata"]["id"] for n in cycle.scenario.live_subscriptions}
    billed = {s["custom_fields"][0]["value"] for s in cycle.sandbox.recurly.subscriptions("live")}
    assert billed == live


def test_quotas_are_listed_through_the_documented_scope_filter(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=4)

    cycle.sync_plans(dry_run=True)

    [listing] = [r for r in cycle.sandbox.amplify.requests if r.route == "list_quotas"]
    assert listing.path == "/apis/catalog/v1/quotas"
    assert listing.query["query"][0].startswith("scopeResource.name=in=(")


def test_a_free_plan_without_billing_is_synced_in_the_sites_default_currency(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=4, catalog={"sync_free_plans": True})

    report = cycle.sync_plans()

    free_id = cycle.scenario.plan_ids["weather-free"]
    [plan] = [p for p in cycle.sandbox.recurly.plans() if p["code"] == f"amplify-{free_id}"]
    assert [(c["currency"], c["unit_amount"]) for c in plan["currencies"]] == [("USD", 0.0)]
    custom = [r for r in report.results if r.change.amplify.startswith("weather-api/weather-custom")]
    assert [(r.change.kind.value, r.outcome) for r in custom] == [("unsupported", Outcome.REPORTED)]


def test_subscriptions_in_transitional_states_are_billed_until_their_final_state(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=12, days=2)
    scenario = cycle.scenario
    transitional = {scenario.subscriptions_by_name[n]["metadata"]["id"] for n in scenario.transitional_subscriptions}
    assert len(transitional) == 3

    _ok(cycle.run())
    cycle.clock.set(scenario.now)
    _ok(cycle.run())

    billed = {s["custom_fields"][0]["value"] for s in cycle.sandbox.recurly.subscriptions("live")}
    assert transitional <= billed
    posted = {u["subscription_uuid"] for u in cycle.sandbox.recurly.usage_records()}
    uuids = {
        s["uuid"] for s in cycle.sandbox.recurly.subscriptions("live") if s["custom_fields"][0]["value"] in transitional
    }
    busy = {
        s.subscription_id
        for s in scenario.traffic_series
        if s.subscription_id in transitional
        and scenario.usage_quotas[_plan(scenario, s.subscription_id)]
        and s.total(scenario.traffic_start, scenario.now - timedelta(hours=3))
    }
    assert len(posted & uuids) == len(busy)


def _plan(scenario: Any, subscription_id: str) -> str:
    return next(s["spec"]["plan"]["name"] for s in scenario.subscriptions if s["metadata"]["id"] == subscription_id)
