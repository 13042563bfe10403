"""A seeded Amplify tenant: products, plans of every pricing type, teams, users, subscriptions, traffic.

Everything is derived from ``seed`` (the same seed gives the same ids, names and counts), so tests can
compute what the tool must do from the ``Scenario`` alone and check it against both emulators.

The catalog (DESIGN.md §3):

| product | plan | what it exercises |
|---|---|---|
| weather-api (opted in) | weather-payg | perUnit at 0.0025 per call, monthly, base price 0 |
| | weather-graduated | graduated, four tiers (the last open at 999999999), monthly, setup fee |
| | weather-volume | volume, three tiers (the last with no ``to``), monthly |
| | weather-standard | fixed loose limit with an overage price, monthly |
| | weather-enterprise | fixed strict and unlimited quotas (no add-on), annually |
| | weather-annual | perUnit, annually |
| | weather-free | a free plan without ``spec.billing`` (synced only with ``catalog.sync_free_plans``) |
| | weather-beta | a draft plan (ignored) |
| | weather-legacy | an archived plan (never created in Recurly) |
| | weather-flatfee | unsupported: a tier with a flatFee, and a quota in the custom unit ``x-megabytes`` |
| maps-api (opted in) | maps-payg | perUnit in EUR, 12 billing cycles |
| | maps-classic | deprecated (existing subscriptions are still billed), graduated |
| internal-tools (``billingSystem: stripe``) | internal-payg | not opted in: its subscriptions must be ignored |
| weather-api | weather-custom | a Custom plan (no billing; unsupported, named by its type) |

``subscriptions`` are spread over the supported plans (the eight plans above that reach Recurly), owned
by teams (most) and by users (some, with the marketplace owner a user); about 20 % are pending approval,
a few were cancelled before the traffic starts, from ten subscriptions on one each is in a transitional state
(``migrationScheduled``, ``migrating``, ``archivalScheduled``: billed until the final state), the rest are approved
and active. Four more
subscriptions sit on plans the tool must ignore (two on internal-payg, one each on weather-free and
weather-flatfee). Every subscription was created 2 h to 3 days before ``now - days_of_traffic`` (inside
Traceability's 7-day retention for a first run at the start of the traffic).

Traffic: every live subscription (pending or active, on any plan) has, for each quota that bills
usage, one aggregated count per hour over [now - days_of_traffic, now) at a fixed minute of the hour
that differs per (subscription, quota); some hours are zero, some subscriptions are idle, and a few
hours also carry "Failure" transactions. A few calls an hour carry no subscription or quota at all (traffic
outside the Marketplace, which nothing bills).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from amplify_billing.amplify import literals
from amplify_billing.sandbox.amplify_emulator import AmplifyEmulator
from amplify_billing.sandbox.scenario_builder import HOUR, ScenarioBuilder, TrafficSeries, subscription_state
from amplify_billing.sandbox.scenario_catalog import PLANS, PRODUCTS, PlanSpec, QuotaSpec, bills_usage, reaches_recurly

SUBSCRIPTIONS_PER_TEAM = 8
# Calls per hour outside the Marketplace (no subscription, no quota): the gateway's own health checks, say. Nothing
# can bill them; a count that does not leave them out ($exists) never adds up to its total.
OUTSIDE_MARKETPLACE_PER_HOUR = 4
MARKETPLACE_TITLE = "Sandbox Marketplace"


@dataclass(frozen=True)
class Scenario:
    seed: int
    now: datetime
    traffic_start: datetime
    products: tuple[dict[str, Any], ...]
    units: tuple[dict[str, Any], ...]
    plans: tuple[dict[str, Any], ...]
    quotas: tuple[dict[str, Any], ...]
    marketplace: dict[str, Any]
    org: dict[str, Any]
    teams: tuple[dict[str, Any], ...]
    users: tuple[dict[str, Any], ...]
    subscriptions: tuple[dict[str, Any], ...]
    traffic_series: tuple[TrafficSeries, ...] = field(repr=False)
    # the catalog the scenario was built from: PLANS, plus numbered copies when scaled by subscriptions_per_plan
    plan_specs: tuple[PlanSpec, ...] = field(default=PLANS, repr=False)

    # ---- seeding ------------------------------------------------------------------------------------
    def seed_amplify(self, amplify: AmplifyEmulator) -> None:
        """Put every resource, owner and transaction of the scenario into the emulator."""
        for resource in (*self.products, *self.units, self.marketplace, *self.plans, *self.quotas, *self.subscriptions):
            amplify.put_resource(resource)
        amplify.add_org(self.org)
        for team in self.teams:
            amplify.add_team(team)
        for user in self.users:
            amplify.add_user(user)
        for series in self.traffic_series:
            amplify.add_traffic_series(
                series.subscription_id, series.quota_id, series.first_at, 3600, series.counts, series.status
            )
        hours = (self.now - self.traffic_start) // HOUR
        amplify.add_traffic_series(None, None, self.traffic_start, 3600, [OUTSIDE_MARKETPLACE_PER_HOUR] * hours)

    # ---- what tests need to compute expectations ---------------------------------------------------
    @cached_property
    def opted_in_products(self) -> tuple[str, ...]:
        return tuple(p["name"] for p in self.products if p["attributes"].get("billingSystem") == "recurly")

    @cached_property
    def opted_in_plans(self) -> tuple[str, ...]:
        """Every plan of an opted-in product, whatever its type or state."""
        return tuple(p["name"] for p in self.plans if p["spec"]["product"] in self.opted_in_products)

    @cached_property
    def supported_plans(self) -> tuple[str, ...]:
        """Plans the tool must create in Recurly: paid, active or deprecated, opted in, representable."""
        return tuple(spec.name for spec in self.plan_specs if reaches_recurly(spec))

    @cached_property
    def unsupported_plans(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.plan_specs if not spec.supported)

    @cached_property
    def plans_by_state(self) -> dict[str, tuple[str, ...]]:
        states: dict[str, list[str]] = {}
        for plan in self.plans:
            states.setdefault(plan["state"], []).append(plan["name"])
        return {state: tuple(names) for state, names in states.items()}

    @cached_property
    def free_plans(self) -> tuple[str, ...]:
        return tuple(p["name"] for p in self.plans if p["spec"]["type"] == "free")

    @cached_property
    def plan_ids(self) -> dict[str, str]:
        return {p["name"]: p["metadata"]["id"] for p in self.plans}

    @cached_property
    def usage_quotas(self) -> dict[str, tuple[str, ...]]:
        """Plan name -> ids of its quotas that bill usage (one Recurly usage add-on each), every plan."""
        result: dict[str, list[str]] = {p["name"]: [] for p in self.plans}
        for quota in self.quotas:
            if bills_usage(quota):
                result[quota["metadata"]["scope"]["name"]].append(quota["metadata"]["id"])
        return {plan: tuple(ids) for plan, ids in result.items()}

    @cached_property
    def subscriptions_by_name(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.subscriptions}

    @cached_property
    def billed_subscriptions(self) -> tuple[str, ...]:
        """Subscriptions on supported plans (the tool must handle them), by name."""
        supported = set(self.supported_plans)
        return tuple(s["name"] for s in self.subscriptions if s["spec"]["plan"]["name"] in supported)

    @cached_property
    def ignored_subscriptions(self) -> tuple[str, ...]:
        """Subscriptions on plans the tool never bills (not opted in, free, unsupported)."""
        billed = set(self.billed_subscriptions)
        return tuple(s["name"] for s in self.subscriptions if s["name"] not in billed)

    @cached_property
    def pending_subscriptions(self) -> tuple[str, ...]:
        return tuple(n for n in self.billed_subscriptions if _approval(self.subscriptions_by_name[n]) == "pending")

    @cached_property
    def transitional_subscriptions(self) -> tuple[str, ...]:
        """Billed subscriptions in a transitional state (migration or archival scheduled, migrating): billed still."""
        by_name = self.subscriptions_by_name
        transitional = literals.TRANSITIONAL_STATES
        return tuple(n for n in self.billed_subscriptions if subscription_state(by_name[n]) in transitional)

    @cached_property
    def cancelled_subscriptions(self) -> tuple[str, ...]:
        return tuple(
            n for n in self.billed_subscriptions if subscription_state(self.subscriptions_by_name[n]) == "cancelled"
        )

    @cached_property
    def live_subscriptions(self) -> tuple[str, ...]:
        """Billed subscriptions that must have a live Recurly subscription: pending, or approved and active."""
        by_name = self.subscriptions_by_name
        return tuple(
            n
            for n in self.billed_subscriptions
            if _approval(by_name[n]) == "pending"
            or (_approval(by_name[n]) == "approved" and subscription_state(by_name[n]) in literals.BILLED_STATES)
        )

    def account_code(self, subscription_name: str, owner_mode: str = "marketplace") -> str:
        """The Recurly account code DESIGN.md §2 gives the subscription's owner."""
        subscription = self.subscriptions_by_name[subscription_name]
        owner = subscription["marketplace"]["resource"]["owner"]
        if owner_mode == "org":
            return f"amplify-org-{owner['organization']['id']}"
        if owner.get("user"):
            return f"amplify-user-{owner['user']['id']}"
        return f"amplify-team-{owner['id']}"

    def expected_traffic(
        self, start: datetime, end: datetime, statuses: Sequence[str] = ()
    ) -> dict[tuple[str, str], int]:
        """Transactions in [start, end) per (subscription id, quota id), computed from the scenario alone."""
        totals: dict[tuple[str, str], int] = {}
        for series in self.traffic_series:
            if statuses and series.status not in statuses:
                continue
            total = series.total(start, end)
            if total:
                pair = (series.subscription_id, series.quota_id)
                totals[pair] = totals.get(pair, 0) + total
        return totals


def _approval(subscription: dict[str, Any]) -> str | None:
    approval = subscription.get("approval")
    return approval.get("state") if isinstance(approval, dict) else None


def build_scenario(
    *,
    seed: int,
    subscriptions: int,
    now: datetime,
    days_of_traffic: int = 7,
    quotas_per_plan: int | None = None,
    subscriptions_per_plan: int | None = None,
) -> Scenario:
    """The scenario for ``seed``: the same arguments always give the same scenario.

    ``subscriptions``: how many subscriptions to spread over the supported plans (four more go to plans
    the tool must ignore). ``quotas_per_plan``: when set, every plan whose quotas bill transactions gets
    that many such quotas (copies of its first one), to scale the number of usage add-ons.
    ``subscriptions_per_plan``: when set, every plan that receives subscriptions gets numbered copies
    (``weather-payg-2``, …) so that each of them holds about that many, to scale the catalog with the
    population (a tenant of 10,000 subscriptions has about 1,000 plans at 10 per plan).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    if subscriptions < 0:
        raise ValueError(f"subscriptions must be 0 or more, got {subscriptions}")
    if days_of_traffic < 1:
        raise ValueError(f"days_of_traffic must be at least 1, got {days_of_traffic}")
    if quotas_per_plan is not None and quotas_per_plan < 1:
        raise ValueError(f"quotas_per_plan must be at least 1, got {quotas_per_plan}")
    if subscriptions_per_plan is not None and subscriptions_per_plan < 1:
        raise ValueError(f"subscriptions_per_plan must be at least 1, got {subscriptions_per_plan}")
    now = now.astimezone(UTC)
    builder = ScenarioBuilder(
        seed, now, days_of_traffic, quotas_per_plan, _plan_copies(subscriptions, subscriptions_per_plan)
    )
    products = builder.products()
    units = builder.units()
    plans, quotas = builder.plans_and_quotas()
    marketplace = {
        "kind": "Marketplace",
        "name": builder.new_uuid(),
        "title": MARKETPLACE_TITLE,
        "metadata": {"id": builder.new_id()},
        "spec": {},
    }
    team_count = max(3, math.ceil(subscriptions / SUBSCRIPTIONS_PER_TEAM))
    org, teams, users = builder.owners(team_count)
    subs = builder.subscriptions(subscriptions, plans, org, teams, marketplace)
    traffic = builder.traffic(subs, quotas)
    return Scenario(
        seed=seed,
        now=now,
        traffic_start=builder.traffic_start,
        products=products,
        units=units,
        plans=plans,
        quotas=quotas,
        marketplace=marketplace,
        org=org,
        teams=teams,
        users=users,
        subscriptions=subs,
        traffic_series=traffic,
        plan_specs=builder.specs,
    )


def _plan_copies(subscriptions: int, per_plan: int | None) -> dict[str, int]:
    """How many plans each weighted plan becomes so that each holds about ``per_plan`` of ``subscriptions``."""
    if per_plan is None:
        return {}
    weighted = [spec for spec in PLANS if spec.weight and reaches_recurly(spec)]
    total = sum(spec.weight for spec in weighted)
    return {spec.name: max(1, round(subscriptions * spec.weight / total / per_plan)) for spec in weighted}


__all__ = [
    "OUTSIDE_MARKETPLACE_PER_HOUR",
    "PLANS",
    "PRODUCTS",
    "PlanSpec",
    "QuotaSpec",
    "Scenario",
    "TrafficSeries",
    "build_scenario",
]
