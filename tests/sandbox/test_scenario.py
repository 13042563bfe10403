"""The seeded scenario: deterministic, complete, readable by the production parsers, and fast at scale."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from amplify_billing.amplify.clients import AmplifyClients
from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.identity import account_code
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.plan_mapping import MappingOptions, Unsupported, desired_plan
from amplify_billing.sandbox.amplify_emulator import AmplifyEmulator
from amplify_billing.sandbox.scenario import OUTSIDE_MARKETPLACE_PER_HOUR, Scenario, build_scenario
from amplify_billing.settings import AmplifySettings, RecurlySettings, Secret, Settings
from amplify_billing.snapshots import Snapshots

NOW = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
TENANT = "100000000000001"


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return build_scenario(seed=11, subscriptions=60, now=NOW)


@pytest.fixture(scope="module")
def amplify(scenario: Scenario) -> Iterator[AmplifyEmulator]:
    emulator = AmplifyEmulator(client_id="sandbox", client_secret="secret", tenant_id=TENANT, clock=lambda: NOW)
    scenario.seed_amplify(emulator)
    emulator.start()
    try:
        yield emulator
    finally:
        # the server loop notices a shutdown only at its 0.5 s poll; nothing waits for it
        threading.Thread(target=emulator.stop, daemon=True).start()


def clients_for(emulator: AmplifyEmulator) -> AmplifyClients:
    settings = AmplifySettings(
        central_url=emulator.url,
        auth_url=f"{emulator.url}/auth",
        platform_url=emulator.url,
        tenant_id=TENANT,
        client_id="sandbox",
        client_secret=Secret("secret"),
        page_size=25,
        rate_limit_per_minute=100_000,
        timeout_seconds=5,
    )
    return AmplifyClients.build(settings, sleep=lambda _seconds: None)


def by_name(resources: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in resources}


def quotas_of(scenario: Scenario, plan_name: str) -> list[dict[str, Any]]:
    return [q for q in scenario.quotas if q["metadata"]["scope"]["name"] == plan_name]


# ---- determinism ------------------------------------------------------------------------------------------
def test_the_same_seed_gives_the_same_scenario_and_another_seed_another() -> None:
    first = build_scenario(seed=5, subscriptions=30, now=NOW)
    again = build_scenario(seed=5, subscriptions=30, now=NOW)
    other = build_scenario(seed=6, subscriptions=30, now=NOW)

    for part in ("products", "units", "plans", "quotas", "marketplace", "org", "teams", "users", "subscriptions"):
        assert getattr(first, part) == getattr(again, part), part
    assert first.traffic_series == again.traffic_series
    assert {s["metadata"]["id"] for s in first.subscriptions}.isdisjoint(
        s["metadata"]["id"] for s in other.subscriptions
    )
    assert first.traffic_series != other.traffic_series


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        build_scenario(seed=1, subscriptions=1, now=datetime(2026, 3, 8))
    with pytest.raises(ValueError, match="days_of_traffic must be at least 1"):
        build_scenario(seed=1, subscriptions=1, now=NOW, days_of_traffic=0)
    with pytest.raises(ValueError, match="quotas_per_plan must be at least 1"):
        build_scenario(seed=1, subscriptions=1, now=NOW, quotas_per_plan=0)


# ---- the catalog ------------------------------------------------------------------------------------------
def test_the_catalog_covers_every_pricing_type_and_plan_state(scenario: Scenario) -> None:
    plans = by_name(scenario.plans)
    pricing = {name: [q["spec"]["pricing"] for q in quotas_of(scenario, name)] for name in plans}

    assert scenario.opted_in_products == ("weather-api", "maps-api")
    assert [(p["name"], p["attributes"]) for p in scenario.products][2] == (
        "internal-tools",
        {"billingSystem": "stripe"},
    )
    assert pricing["weather-payg"] == [{"type": "perUnit", "cost": 0.0025}]
    graduated = pricing["weather-graduated"][0]
    assert (graduated["type"], graduated["interval"], graduated["limit"]["type"]) == ("graduated", "monthly", "tiered")
    assert [t.get("to") for t in graduated["limit"]["tiers"]] == [10_000, 100_000, 1_000_000, 999_999_999]
    volume = pricing["weather-volume"][0]
    assert volume["type"] == "volume" and "to" not in volume["limit"]["tiers"][-1]
    assert pricing["weather-standard"][0]["limit"] == {"type": "loose", "value": 5000, "overages": {"value": 0.01}}
    assert [(p["type"], p.get("limit", {}).get("type")) for p in pricing["weather-enterprise"]] == [
        ("fixed", "strict"),
        ("unlimited", None),
    ]
    intervals = Counter(p["spec"]["billing"]["interval"] for p in scenario.plans if "billing" in p["spec"])
    assert intervals == {"monthly": 10, "annually": 2}
    # reference §9.2: a free plan may have no spec.billing (the docs' example), a Custom plan is billed elsewhere
    assert [p["name"] for p in scenario.plans if "billing" not in p["spec"]] == ["weather-free", "weather-custom"]
    assert plans["weather-custom"]["spec"]["type"] == "custom"
    assert [n for n, p in plans.items() if "setup" in p["spec"].get("billing", {})] == ["weather-graduated"]
    assert scenario.plans_by_state == {
        "active": (
            "weather-payg",
            "weather-graduated",
            "weather-volume",
            "weather-standard",
            "weather-enterprise",
            "weather-annual",
            "weather-free",
            "weather-flatfee",
            "maps-payg",
            "internal-payg",
            "weather-custom",
        ),
        "draft": ("weather-beta",),
        "archived": ("weather-legacy",),
        "deprecated": ("maps-classic",),
    }
    assert scenario.free_plans == ("weather-free",)
    flat = pricing["weather-flatfee"][0]["limit"]["tiers"]
    assert [t.get("flatFee") for t in flat] == [None, 5.0]
    assert [
        (q["metadata"]["scope"]["name"], q["spec"]["unit"])
        for q in scenario.quotas
        if q["spec"]["unit"] != "transactions"
    ] == [("weather-flatfee", "x-megabytes")]
    assert [u["name"] for u in scenario.units] == ["transactions", "x-megabytes"]
    assert scenario.supported_plans == (
        "weather-payg",
        "weather-graduated",
        "weather-volume",
        "weather-standard",
        "weather-enterprise",
        "weather-annual",
        "maps-payg",
        "maps-classic",
    )
    assert scenario.unsupported_plans == ("weather-flatfee", "weather-custom")
    assert scenario.usage_quotas["weather-enterprise"] == () and len(scenario.usage_quotas["weather-payg"]) == 1


def test_quotas_per_plan_multiplies_the_usage_quotas() -> None:
    scaled = build_scenario(seed=3, subscriptions=12, now=NOW, quotas_per_plan=3)

    assert len(scaled.usage_quotas["weather-graduated"]) == 3
    assert len(scaled.usage_quotas["maps-payg"]) == 3
    assert scaled.usage_quotas["weather-enterprise"] == ()
    assert [q["name"] for q in quotas_of(scaled, "weather-volume")] == ["calls", "calls-2", "calls-3"]
    usage = {q for ids in scaled.usage_quotas.values() for q in ids}
    assert {s.quota_id for s in scaled.traffic_series} <= usage
    per_subscription = Counter(s.subscription_id for s in scaled.traffic_series if s.status == "Success")
    assert max(per_subscription.values()) == 3


# ---- subscriptions and owners -------------------------------------------------------------------------------
def test_subscriptions_are_spread_over_plans_owners_and_states(scenario: Scenario) -> None:
    subscriptions = scenario.subscriptions_by_name
    billed = [subscriptions[n] for n in scenario.billed_subscriptions]
    plans = Counter(s["spec"]["plan"]["name"] for s in billed)
    user_owned = [s for s in billed if s["marketplace"]["resource"]["owner"].get("user")]

    assert len(billed) == 60
    assert set(plans) == set(scenario.supported_plans)
    assert len(scenario.pending_subscriptions) == 12  # 20 %
    assert len(scenario.cancelled_subscriptions) == 3  # 5 %
    assert len(scenario.live_subscriptions) == 57
    assert 0 < len(user_owned) < 30
    assert sorted(subscriptions[n]["spec"]["plan"]["name"] for n in scenario.ignored_subscriptions) == [
        "internal-payg",
        "internal-payg",
        "weather-flatfee",
        "weather-free",
    ]
    for s in scenario.subscriptions:
        created = parse_timestamp(s["metadata"]["audit"]["createTimestamp"])
        assert created is not None and created < scenario.traffic_start
        # inside Traceability's 7-day retention of a first run days into the traffic: every window can be counted
        assert scenario.traffic_start - created <= timedelta(days=3, hours=2)
        if s["name"] in scenario.pending_subscriptions:
            assert s["approval"] == {"state": "pending"} and "state" not in s
        else:
            changed = parse_timestamp(s["state"]["when"]["timestamp"])
            assert s["approval"]["state"] == "approved"
            assert changed is not None and created < changed < scenario.traffic_start
    teams = by_name(scenario.teams)
    assert len(scenario.teams) == 8
    for team in scenario.teams:
        humans = [m for m in team["users"] if m["type"] == "user"]
        assert [m["roles"] for m in humans] == [["administrator"], ["developer"], ["consumer"]]
        assert team["org_guid"] == scenario.org["guid"]
    assert scenario.teams[0]["users"][0]["type"] == "client"  # a service account, never billed
    assert len(teams) == len(scenario.teams)


def test_the_seeded_tenant_parses_through_the_production_clients(scenario: Scenario, amplify: AmplifyEmulator) -> None:
    clients = clients_for(amplify)
    settings = Settings(
        amplify=AmplifySettings(
            central_url=amplify.url,
            auth_url=amplify.url,
            platform_url=amplify.url,
            tenant_id=TENANT,
            client_id="sandbox",
        ),
        recurly=RecurlySettings(api_key=Secret("unused")),
    )
    snapshots = Snapshots(settings, clients.resources, recurly=None)  # type: ignore[arg-type]

    catalog = snapshots.amplify_catalog()
    subscriptions, problems = snapshots.amplify_subscriptions([p.name for p in catalog.snapshot.plans])

    assert catalog.snapshot.problems == ()
    assert [p.name for p in catalog.products] == list(scenario.opted_in_products)
    assert sorted(p.name for p in catalog.snapshot.plans) == sorted(scenario.opted_in_plans)
    mapped = {p.name: desired_plan(p, catalog.snapshot.units, MappingOptions()) for p in catalog.snapshot.plans}
    unsupported = {name: m.reason for name, m in mapped.items() if isinstance(m, Unsupported)}
    # the free plan names no currency and no site default is given here; the Custom plan is named by its type
    assert sorted(unsupported) == ["weather-custom", "weather-flatfee", "weather-free"]
    assert "flat fee" in unsupported["weather-flatfee"] or "x-megabytes" in unsupported["weather-flatfee"]
    assert unsupported["weather-free"].startswith("it names no currency")
    assert unsupported["weather-custom"].startswith("plan type 'custom'")
    for name in scenario.supported_plans:
        wanted = mapped[name]
        assert not isinstance(wanted, Unsupported)
        assert sorted(a.code for a in wanted.add_ons) == sorted(f"amplify-{q}" for q in scenario.usage_quotas[name])
    assert problems == []
    listed = {s.name: s for s in subscriptions}
    assert set(listed) == {
        n
        for n in scenario.subscriptions_by_name
        if scenario.subscriptions_by_name[n]["spec"]["plan"]["name"] in scenario.opted_in_plans
    }
    for name in scenario.billed_subscriptions:
        parsed = listed[name]
        assert isinstance(parsed, AmplifySubscription)
        assert account_code(parsed, "marketplace") == scenario.account_code(name)
        assert (
            account_code(parsed, "org") == scenario.account_code(name, "org") == f"amplify-org-{scenario.org['org_id']}"
        )


def test_the_owners_are_readable_on_the_platform_api(scenario: Scenario, amplify: AmplifyEmulator) -> None:
    platform = clients_for(amplify).platform
    user_owned = next(
        scenario.subscriptions_by_name[n]
        for n in scenario.billed_subscriptions
        if scenario.subscriptions_by_name[n]["marketplace"]["resource"]["owner"].get("user")
    )
    owner = user_owned["marketplace"]["resource"]["owner"]

    team = platform.get_team(owner["id"])
    admin = next(m for m in team["users"] if "administrator" in m["roles"] and m["type"] == "user")
    person = platform.get_user(owner["user"]["id"])
    org = platform.get_org(owner["organization"]["id"])

    assert owner["user"]["id"] in [m["guid"] for m in team["users"]]
    assert person["email"].endswith("@example.test") and person["firstname"]
    assert platform.get_user(admin["guid"])["guid"] == admin["guid"]
    assert org["name"] == "Acme Consumers" and next(u for u in org["users"] if u["primary"])["guid"]


# ---- traffic --------------------------------------------------------------------------------------------------
def test_traffic_is_the_same_from_the_scenario_the_emulator_and_the_traceability_api(
    scenario: Scenario, amplify: AmplifyEmulator
) -> None:
    traceability = clients_for(amplify).traceability
    start = scenario.traffic_start
    windows = [
        (start, scenario.now),
        (start + timedelta(days=2), start + timedelta(days=3)),
        (start + timedelta(minutes=95), start + timedelta(hours=5, minutes=17)),  # clipped, mid-hour
        (start - timedelta(days=1), start),
    ]
    for window in windows:
        for statuses in ((), ("Success",), ("Failure",)):
            expected = scenario.expected_traffic(*window, statuses)
            assert amplify.traffic(*window, statuses) == expected, (window, statuses)
            answer = traceability.grouped_count(*window, limit=1000, statuses=statuses)
            assert answer.counts == expected, (window, statuses)
            assert answer.units == traceability.total_count(*window, statuses=statuses), (window, statuses)
    assert scenario.expected_traffic(start - timedelta(days=1), start) == {}
    assert scenario.expected_traffic(scenario.now, scenario.now + timedelta(days=1)) == {}


def test_traffic_outside_the_marketplace_is_in_the_total_unless_exists_leaves_it_out(
    scenario: Scenario, amplify: AmplifyEmulator
) -> None:
    from amplify_billing.amplify.traceability import total_query

    clients = clients_for(amplify)
    day = (scenario.traffic_start + timedelta(days=1), scenario.traffic_start + timedelta(days=2))
    proven = total_query(*day)
    without_exists = {**proven, "filters": {"$and": [f for f in proven["filters"]["$and"] if "$exists" not in f]}}
    url = f"{amplify.url}/api/traceability/v1/traceability/search"

    def total(body: dict[str, Any]) -> int:
        answer = clients.transport.request("POST", url, json=body, safe_to_repeat=True).json()
        return int(answer[0]["result"])

    billable = sum(scenario.expected_traffic(*day).values())
    assert total(proven) == billable == clients.traceability.total_count(*day)
    assert total(without_exists) == billable + 24 * OUTSIDE_MARKETPLACE_PER_HOUR


def test_traffic_has_quiet_hours_failures_and_only_billable_pairs(scenario: Scenario) -> None:
    ids = {s["name"]: s["metadata"]["id"] for s in scenario.subscriptions}
    usage = {q for quotas in scenario.usage_quotas.values() for q in quotas}
    successes = [s for s in scenario.traffic_series if s.status == "Success"]
    failures = [s for s in scenario.traffic_series if s.status == "Failure"]

    assert all(len(s.counts) == 7 * 24 for s in scenario.traffic_series)
    assert all(
        scenario.traffic_start <= s.first_at < scenario.traffic_start + timedelta(hours=1)
        for s in scenario.traffic_series
    )
    assert {s.quota_id for s in scenario.traffic_series} <= usage
    assert not {ids[n] for n in scenario.cancelled_subscriptions} & {s.subscription_id for s in scenario.traffic_series}
    assert any(ids[n] in {s.subscription_id for s in successes} for n in scenario.pending_subscriptions)
    assert any(0 in s.counts for s in successes) and any(max(s.counts) > 50 for s in successes)
    assert failures and all(0 < sum(s.counts) <= 12 for s in failures)
    on_ignored = {ids[n] for n in scenario.ignored_subscriptions} & {s.subscription_id for s in successes}
    assert on_ignored  # traffic the tool must not bill exists, so ignoring it is tested


# ---- scale ------------------------------------------------------------------------------------------------------
def test_ten_thousand_subscriptions_with_a_week_of_hourly_traffic_build_and_seed_quickly() -> None:
    began = time.perf_counter()
    large = build_scenario(seed=2, subscriptions=10_000, now=NOW, days_of_traffic=7)
    emulator = AmplifyEmulator(client_id="c", client_secret="s", tenant_id=TENANT, clock=lambda: NOW)
    large.seed_amplify(emulator)
    elapsed = time.perf_counter() - began

    assert len(large.billed_subscriptions) == 10_000 and len(large.pending_subscriptions) == 2_000
    assert len(emulator.resources("Subscription")) == 10_004
    day = (large.traffic_start + timedelta(days=3), large.traffic_start + timedelta(days=4))
    assert emulator.traffic(*day) == large.expected_traffic(*day)
    assert elapsed < 60, f"building and seeding took {elapsed:.1f} s"
