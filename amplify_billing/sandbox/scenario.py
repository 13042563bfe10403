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
| | weather-free | a free plan (synced only with ``catalog.sync_free_plans``) |
| | weather-beta | a draft plan (ignored) |
| | weather-legacy | an archived plan (never created in Recurly) |
| | weather-flatfee | unsupported: a tier with a flatFee, and a quota in the custom unit ``x-megabytes`` |
| maps-api (opted in) | maps-payg | perUnit in EUR, 12 billing cycles |
| | maps-classic | deprecated (existing subscriptions are still billed), graduated |
| internal-tools (``billingSystem: stripe``) | internal-payg | not opted in: its subscriptions must be ignored |

``subscriptions`` are spread over the supported plans (the eight plans above that reach Recurly), owned
by teams (most) and by users (some, with the marketplace owner a user); about 20 % are pending approval,
a few were cancelled before the traffic starts, the rest are approved and active. Four more
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
import random
import uuid
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from amplify_billing.amplify import literals
from amplify_billing.sandbox.amplify_emulator import AmplifyEmulator, format_timestamp

HOUR = timedelta(hours=1)
PENDING_SHARE = 0.20
CANCELLED_SHARE = 0.05
USER_OWNED_SHARE = 0.20
SUBSCRIPTIONS_PER_TEAM = 8
# Mean calls per hour of a subscription's quota; 0 = an idle subscription.
HOURLY_RATES = (0, 1, 3, 8, 20, 45, 120)
# Share of (subscription, quota) pairs that also see a few failed calls.
FAILING_SHARE = 0.3
# Approved subscriptions became active at most this long (plus 2 h) before the traffic starts. Usage is billed from
# that moment, and Traceability keeps 7 days (reference §9.1): a first run up to four days into the traffic can
# still count every window since, so the scenario's first runs bill cleanly, as a tenant's do after a recent start.
ACTIVE_BEFORE_TRAFFIC_HOURS = 3 * 24
# Calls per hour outside the Marketplace (no subscription, no quota): the gateway's own health checks, say. Nothing
# can bill them; a count that does not leave them out ($exists) never adds up to its total.
OUTSIDE_MARKETPLACE_PER_HOUR = 4
OPEN_TIER = literals.OPEN_TIER_END
MARKETPLACE_TITLE = "Sandbox Marketplace"


# ---- the catalog, as data --------------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaSpec:
    name: str
    title: str
    pricing: dict[str, Any]
    unit: str = literals.TRANSACTIONS_UNIT
    bills_usage: bool = True  # False: unlimited or a strict limit, covered by the base price


@dataclass(frozen=True)
class PlanSpec:
    product: str
    name: str
    title: str
    quotas: tuple[QuotaSpec, ...]
    price: float | None = 0.0
    currency: str = "USD"
    interval: str = "monthly"
    plan_type: str = "paid"
    state: str = "active"
    setup_price: float | None = None
    cycles: int | None = None
    weight: int = 0  # share of the scenario's subscriptions; 0 = none (or only the ignored extras)
    supported: bool = True  # False: the tool must report it unsupported


def _tiers(*tiers: tuple[int, int | None, float], flat_fee: dict[int, float] | None = None) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for index, (start, end, cost) in enumerate(tiers):
        tier: dict[str, Any] = {"from": start, "cost": cost}
        if end is not None:
            tier["to"] = end
        if flat_fee and index in flat_fee:
            tier["flatFee"] = flat_fee[index]
        result.append(tier)
    return result


def _per_unit(cost: float) -> dict[str, Any]:
    return {"type": literals.PRICING_PER_UNIT, "cost": cost}


PRODUCTS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("weather-api", "Weather API", {"billingSystem": "recurly"}),
    ("maps-api", "Maps API", {"billingSystem": "recurly"}),
    ("internal-tools", "Internal Tools", {"billingSystem": "stripe"}),
)

PLANS: tuple[PlanSpec, ...] = (
    PlanSpec("weather-api", "weather-payg", "Pay as you go", (QuotaSpec("calls", "API calls", _per_unit(0.0025)),),
             weight=5),
    PlanSpec(
        "weather-api", "weather-graduated", "Graduated",
        (
            QuotaSpec("calls", "API calls", {
                "type": literals.PRICING_GRADUATED, "interval": "monthly",
                "limit": {"type": literals.LIMIT_TIERED, "tiers": _tiers(
                    (1, 10_000, 0.004), (10_001, 100_000, 0.003), (100_001, 1_000_000, 0.002),
                    (1_000_001, OPEN_TIER, 0.001))},
            }),
        ),
        price=49.0, setup_price=99.0, weight=4,
    ),
    PlanSpec(
        "weather-api", "weather-volume", "Volume",
        (
            QuotaSpec("calls", "API calls", {
                "type": literals.PRICING_VOLUME, "interval": "monthly",
                "limit": {"type": literals.LIMIT_TIERED, "tiers": _tiers(
                    (1, 50_000, 0.003), (50_001, 500_000, 0.002), (500_001, None, 0.001))},
            }),
        ),
        price=19.0, weight=3,
    ),
    PlanSpec(
        "weather-api", "weather-standard", "Standard",
        (
            QuotaSpec("calls", "API calls", {
                "type": literals.PRICING_FIXED, "interval": "monthly",
                "limit": {"type": literals.LIMIT_LOOSE, "value": 5_000, "overages": {"value": 0.01}},
            }),
        ),
        price=29.0, weight=4,
    ),
    PlanSpec(
        "weather-api", "weather-enterprise", "Enterprise",
        (
            QuotaSpec("calls", "API calls", {
                "type": literals.PRICING_FIXED, "interval": "annually",
                "limit": {"type": literals.LIMIT_STRICT, "value": 10_000_000},
            }, bills_usage=False),
            QuotaSpec("alerts", "Weather alerts", {"type": literals.PRICING_UNLIMITED}, bills_usage=False),
        ),
        price=1200.0, interval="annually", weight=1,
    ),
    PlanSpec("weather-api", "weather-annual", "Annual pay per use",
             (QuotaSpec("calls", "API calls", _per_unit(0.001)),), price=100.0, interval="annually", weight=1),
    PlanSpec(
        "weather-api", "weather-free", "Free",
        (QuotaSpec("calls", "API calls", {
            "type": literals.PRICING_FIXED, "interval": "monthly",
            "limit": {"type": literals.LIMIT_STRICT, "value": 1000},
        }, bills_usage=False),),
        price=None, plan_type="free",
    ),
    PlanSpec("weather-api", "weather-beta", "Beta", (QuotaSpec("calls", "API calls", _per_unit(0.002)),),
             price=5.0, state="draft"),
    PlanSpec("weather-api", "weather-legacy", "Legacy", (QuotaSpec("calls", "API calls", _per_unit(0.003)),),
             price=9.0, state="archived"),
    PlanSpec(
        "weather-api", "weather-flatfee", "Graduated with flat fees",
        (
            QuotaSpec("calls", "API calls", {
                "type": literals.PRICING_GRADUATED, "interval": "monthly",
                "limit": {"type": literals.LIMIT_TIERED, "tiers": _tiers(
                    (1, 1_000, 0.0), (1_001, OPEN_TIER, 0.002), flat_fee={1: 5.0})},
            }),
            QuotaSpec("data", "Data transferred", _per_unit(0.0001), unit="x-megabytes"),
        ),
        price=15.0, supported=False,
    ),
    PlanSpec("maps-api", "maps-payg", "Pay per call", (QuotaSpec("tiles", "Map tiles", _per_unit(0.0005)),),
             price=10.0, currency="EUR", cycles=12, weight=3),
    PlanSpec(
        "maps-api", "maps-classic", "Classic",
        (
            QuotaSpec("tiles", "Map tiles", {
                "type": literals.PRICING_GRADUATED, "interval": "monthly",
                "limit": {"type": literals.LIMIT_TIERED, "tiers": _tiers(
                    (1, 20_000, 0.001), (20_001, OPEN_TIER, 0.0005))},
            }),
        ),
        price=25.0, currency="EUR", state="deprecated", weight=1,
    ),
    PlanSpec("internal-tools", "internal-payg", "Internal", (QuotaSpec("calls", "API calls", _per_unit(0.001)),)),
)

# Subscriptions on plans the tool must leave alone, added on top of the requested number.
IGNORED_EXTRAS: tuple[str, ...] = ("internal-payg", "internal-payg", "weather-free", "weather-flatfee")

UNITS: tuple[tuple[str, str, str], ...] = (
    (literals.TRANSACTIONS_UNIT, "Transactions", "API calls counted by the gateway"),
    ("x-megabytes", "Megabytes (MB)", "Data transferred, a custom unit"),
)

FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Lee")
TEAM_WORDS = ("Blue", "Green", "Swift", "Quiet", "Bright", "North", "Delta", "Orbit", "Cedar", "Harbor")
TEAM_NOUNS = ("Labs", "Works", "Systems", "Studio", "Analytics", "Logistics", "Retail", "Travel", "Energy", "Media")


# ---- the result -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficSeries:
    """Hourly counts of one (subscription, quota, status): ``counts[h]`` at ``first_at + h hours``."""

    subscription_id: str
    quota_id: str
    status: str
    first_at: datetime
    counts: array[int]

    def total(self, start: datetime, end: datetime) -> int:
        if end <= start:
            return 0
        # the first hour index at or after a moment, in integer arithmetic: ceil(a / b) == -(-a // b)
        low = max(0, -((self.first_at - start) // HOUR))
        high = min(len(self.counts), max(0, -((self.first_at - end) // HOUR)))
        return sum(self.counts[low:high]) if low < high else 0


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
        return tuple(spec.name for spec in self.plan_specs if _reaches_recurly(spec))

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
            if _bills_usage(quota):
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
    def cancelled_subscriptions(self) -> tuple[str, ...]:
        return tuple(n for n in self.billed_subscriptions if _state(self.subscriptions_by_name[n]) == "cancelled")

    @cached_property
    def live_subscriptions(self) -> tuple[str, ...]:
        """Billed subscriptions that must have a live Recurly subscription: pending, or approved and active."""
        by_name = self.subscriptions_by_name
        return tuple(
            n
            for n in self.billed_subscriptions
            if _approval(by_name[n]) == "pending"
            or (_approval(by_name[n]) == "approved" and _state(by_name[n]) == "active")
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


def _reaches_recurly(spec: PlanSpec) -> bool:
    opted_in = any(name == spec.product and attrs.get("billingSystem") == "recurly" for name, _, attrs in PRODUCTS)
    return (
        opted_in
        and spec.supported
        and spec.plan_type == "paid"
        and spec.state in literals.PLAN_STATES_IN_RECURLY
    )


def _bills_usage(quota: dict[str, Any]) -> bool:
    pricing = quota["spec"]["pricing"]
    if pricing["type"] == literals.PRICING_UNLIMITED:
        return False
    return not (pricing["type"] == literals.PRICING_FIXED and pricing["limit"]["type"] == literals.LIMIT_STRICT)


def _approval(subscription: dict[str, Any]) -> str | None:
    approval = subscription.get("approval")
    return approval.get("state") if isinstance(approval, dict) else None


def _state(subscription: dict[str, Any]) -> str | None:
    state = subscription.get("state")
    return state.get("name") if isinstance(state, dict) else None


# ---- building ---------------------------------------------------------------------------------------------


class _Builder:
    def __init__(
        self, seed: int, now: datetime, days_of_traffic: int, quotas_per_plan: int | None, plan_copies: dict[str, int]
    ) -> None:
        self.rng = random.Random(f"amplify-billing-scenario:{seed}")
        self.now = now
        self.traffic_start = now - timedelta(days=days_of_traffic)
        self.hours = days_of_traffic * 24
        self.quotas_per_plan = quotas_per_plan
        # each weighted plan and its numbered copies ("weather-payg", "weather-payg-2", …), which share its weight
        self.families: dict[str, tuple[str, ...]] = {}
        specs: list[PlanSpec] = []
        for spec in PLANS:
            specs.append(spec)
            copies = tuple(
                replace(spec, name=f"{spec.name}-{n}", title=f"{spec.title} {n}", weight=0)
                for n in range(2, plan_copies.get(spec.name, 1) + 1)
            )
            specs.extend(copies)
            self.families[spec.name] = (spec.name, *(c.name for c in copies))
        self.specs = tuple(specs)

    def new_id(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def stamp(self, moment: datetime) -> str:
        return format_timestamp(moment)

    # ---- catalog -------------------------------------------------------------------------------------
    def products(self) -> tuple[dict[str, Any], ...]:
        created = self.stamp(self.traffic_start - timedelta(days=120))
        return tuple(
            {
                "kind": "Product",
                "name": name,
                "title": title,
                "metadata": {"id": self.new_id(), "audit": {"createTimestamp": created}},
                "attributes": dict(attributes),
                "tags": ["sandbox"],
                "spec": {"description": f"{title}, seeded by the amplify-billing sandbox", "categories": []},
                "state": "active",
            }
            for name, title, attributes in PRODUCTS
        )

    def units(self) -> tuple[dict[str, Any], ...]:
        return tuple(
            {
                "kind": "ProductPlanUnit",
                "name": name,
                "title": title,
                "metadata": {"id": self.new_id()},
                "spec": {"description": description},
            }
            for name, title, description in UNITS
        )

    def plans_and_quotas(self) -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
        created = self.stamp(self.traffic_start - timedelta(days=90))
        plans: list[dict[str, Any]] = []
        quotas: list[dict[str, Any]] = []
        for spec in self.specs:
            billing: dict[str, Any] = {"currency": spec.currency, "cycle": "recurring", "interval": spec.interval}
            if spec.price is not None:
                billing["price"] = spec.price
            if spec.setup_price is not None:
                billing["setup"] = {"price": spec.setup_price}
            subscription: dict[str, Any] = {
                "approval": "manual",
                "renewal": "automatic",
                "interval": {"type": "months", "length": literals.BILLING_INTERVAL_MONTHS[spec.interval]},
            }
            if spec.cycles is not None:
                subscription["cycles"] = spec.cycles
            plans.append(
                {
                    "kind": "ProductPlan",
                    "name": spec.name,
                    "title": spec.title,
                    "metadata": {"id": self.new_id(), "audit": {"createTimestamp": created}},
                    "attributes": {},
                    "spec": {
                        "product": spec.product,
                        "description": f"{spec.title} plan of {spec.product}",
                        "type": spec.plan_type,
                        "billing": billing,
                        "subscription": subscription,
                        "features": [],
                    },
                    "state": spec.state,
                }
            )
            for quota in self._quota_specs(spec):
                quotas.append(
                    {
                        "kind": "Quota",
                        "name": quota.name,
                        "title": quota.title,
                        "metadata": {
                            "id": self.new_id(),
                            "audit": {"createTimestamp": created},
                            "scope": {"kind": "ProductPlan", "name": spec.name},
                        },
                        "attributes": {},
                        "spec": {
                            "description": f"{quota.title} on {spec.title}",
                            "unit": quota.unit,
                            "resources": [{"kind": "AssetResource", "name": f"{spec.product}/{quota.name}"}],
                            "pricing": dict(quota.pricing),
                        },
                    }
                )
        return tuple(plans), tuple(quotas)

    def _quota_specs(self, spec: PlanSpec) -> tuple[QuotaSpec, ...]:
        """The plan's quotas; ``quotas_per_plan`` sets how many usage-billed quotas a plan that has one gets."""
        if self.quotas_per_plan is None:
            return spec.quotas
        usage = [q for q in spec.quotas if q.bills_usage and q.unit == literals.TRANSACTIONS_UNIT]
        if not usage:
            return spec.quotas
        template = usage[0]
        extra = tuple(
            QuotaSpec(f"{template.name}-{n}", f"{template.title} ({n})", template.pricing)
            for n in range(2, self.quotas_per_plan + 1)
        )
        return spec.quotas + extra

    # ---- owners ---------------------------------------------------------------------------------------
    def owners(self, team_count: int) -> tuple[dict[str, Any], tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
        org_id = 100_000_000_000_000 + self.rng.randrange(900_000_000_000_000)
        org_guid = self.new_uuid()
        created = self.stamp(self.traffic_start - timedelta(days=200))
        users: list[dict[str, Any]] = []
        teams: list[dict[str, Any]] = []
        for index in range(team_count):
            members: list[dict[str, Any]] = []
            if index == 0:
                # a service account in a team is a "client" member, never a person to bill
                members.append({"guid": self.new_uuid(), "type": "client", "roles": ["administrator"]})
            for role in ("administrator", "developer", "consumer"):
                first = FIRST_NAMES[self.rng.randrange(len(FIRST_NAMES))]
                last = LAST_NAMES[self.rng.randrange(len(LAST_NAMES))]
                guid = self.new_uuid()
                number = len(users) + 1
                users.append(
                    {
                        "guid": guid,
                        "user_id": 5000 + number,
                        "email": f"{first.lower()}.{last.lower()}.{number}@example.test",
                        "firstname": first,
                        "lastname": last,
                        "active": True,
                        "provider_guid": org_guid,
                        "created": created,
                    }
                )
                members.append({"guid": guid, "type": "user", "roles": [role]})
            name = f"{TEAM_WORDS[index % len(TEAM_WORDS)]} {TEAM_NOUNS[(index // len(TEAM_WORDS)) % len(TEAM_NOUNS)]}"
            teams.append(
                {
                    "guid": self.new_uuid(),
                    "name": f"{name} {index + 1}",
                    "desc": f"Consumer team {index + 1}",
                    "org_guid": org_guid,
                    "default": index == 0,
                    "tags": [],
                    "users": members,
                    "created": created,
                    "updated": created,
                }
            )
        org = {
            "org_id": org_id,
            "guid": org_guid,
            "name": "Acme Consumers",
            "active": True,
            "region": "US",
            "provider_guid": self.new_uuid(),
            "users": [
                {"guid": users[0]["guid"], "roles": ["administrator"], "primary": True},
                *({"guid": u["guid"], "roles": ["consumer"], "primary": False} for u in users[1:]),
            ],
            "created": created,
        }
        return org, tuple(teams), tuple(users)

    # ---- subscriptions --------------------------------------------------------------------------------
    def subscriptions(
        self,
        count: int,
        plans: tuple[dict[str, Any], ...],
        org: dict[str, Any],
        teams: tuple[dict[str, Any], ...],
        marketplace: dict[str, Any],
    ) -> tuple[dict[str, Any], ...]:
        weighted = [spec for spec in PLANS if spec.weight and _reaches_recurly(spec) for _ in range(spec.weight)]
        plan_names: list[str] = []
        for _ in range(count):
            family = self.families[weighted[self.rng.randrange(len(weighted))].name]
            # no second draw for an unscaled catalog, so a seed gives the same scenario as before scaling existed
            plan_names.append(family[self.rng.randrange(len(family))] if len(family) > 1 else family[0])
        plan_names += IGNORED_EXTRAS
        by_name = {p["name"]: p for p in plans}
        total = len(plan_names)
        order = list(range(count))
        self.rng.shuffle(order)
        pending = set(order[: round(count * PENDING_SHARE)])
        cancel_count = max(1 if count >= 5 else 0, round(count * CANCELLED_SHARE))
        cancelled = set(order[len(pending) : len(pending) + cancel_count])
        result: list[dict[str, Any]] = []
        for index in range(total):
            team = teams[self.rng.randrange(len(teams))]
            humans = [m for m in team["users"] if m["type"] == "user"]
            user_owned = self.rng.random() < USER_OWNED_SHARE
            # created 2 h to 3 days before the traffic starts, so it is approved before then; drawn from 30 days as
            # it always was, so that a seed keeps the rest of its scenario
            hours_before = 2 + self.rng.randrange(30 * 24) % ACTIVE_BEFORE_TRAFFIC_HOURS
            created = self.traffic_start - timedelta(hours=hours_before)
            owner: dict[str, Any] = {"type": "team", "id": team["guid"], "organization": {"id": str(org["org_id"])}}
            market_owner = dict(owner)
            requester = humans[self.rng.randrange(len(humans))]["guid"]
            if user_owned:
                market_owner["user"] = {"id": requester}
            plan = by_name[plan_names[index]]
            subscription: dict[str, Any] = {
                "kind": "Subscription",
                "name": self.new_uuid(),
                "title": f"{team['name']} - {plan['title']}",
                "metadata": {
                    "id": self.new_id(),
                    "audit": {"createTimestamp": self.stamp(created), "createUserId": requester},
                },
                "owner": owner,
                "attributes": {},
                "tags": [],
                "spec": {"product": plan["spec"]["product"], "plan": {"name": plan["name"]}, "data": {}},
                "marketplace": {
                    "name": marketplace["name"],
                    "resource": {
                        "metadata": {"createUserId": requester, "modifyUserId": requester},
                        "owner": market_owner,
                    },
                },
            }
            if index in pending:
                subscription["approval"] = {"state": "pending"}
            else:
                approved_at = created + timedelta(minutes=5 + self.rng.randrange(55))
                subscription["approval"] = {"state": "approved", "reason": "Approved by the provider"}
                subscription["state"] = {"name": "active", "when": {"timestamp": self.stamp(approved_at)}}
                if index in cancelled:
                    cancel_at = self.traffic_start - timedelta(minutes=1 + self.rng.randrange(60))
                    subscription["state"] = {
                        "name": "cancelled",
                        "reason": "Cancelled by the consumer",
                        "when": {"timestamp": self.stamp(cancel_at)},
                    }
            result.append(subscription)
        return tuple(result)

    # ---- traffic --------------------------------------------------------------------------------------
    def traffic(
        self, subscriptions: tuple[dict[str, Any], ...], quotas: tuple[dict[str, Any], ...]
    ) -> tuple[TrafficSeries, ...]:
        by_plan: dict[str, list[str]] = {}
        for quota in quotas:
            if _bills_usage(quota):
                by_plan.setdefault(quota["metadata"]["scope"]["name"], []).append(quota["metadata"]["id"])
        # calls follow the working day: a UTC diurnal curve from 0.15 at night to 1.0 at 14:00
        shape = [
            0.15 + 0.85 * max(0.0, math.sin(math.pi * (((self.traffic_start + h * HOUR).hour - 6) % 24) / 16))
            for h in range(self.hours)
        ]
        series: list[TrafficSeries] = []
        for subscription in subscriptions:
            state = _state(subscription)
            if state not in (None, "active"):
                continue  # cancelled before the traffic starts: no calls
            for quota_id in by_plan.get(subscription["spec"]["plan"]["name"], ()):
                rate = HOURLY_RATES[self.rng.randrange(len(HOURLY_RATES))]
                if rate == 0:
                    continue
                minute = timedelta(seconds=self.rng.randrange(3600))
                first = self.traffic_start + minute
                uniform = self.rng.random
                counts = array("q", (int(rate * s * (0.4 + 1.2 * uniform())) for s in shape))
                series.append(TrafficSeries(subscription["metadata"]["id"], quota_id, "Success", first, counts))
                if self.rng.random() < FAILING_SHARE:
                    failures = array("q", bytes(8 * self.hours))
                    for _ in range(1 + self.rng.randrange(3)):
                        failures[self.rng.randrange(self.hours)] += 1 + self.rng.randrange(4)
                    series.append(TrafficSeries(subscription["metadata"]["id"], quota_id, "Failure", first, failures))
        return tuple(series)


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
    builder = _Builder(seed, now, days_of_traffic, quotas_per_plan, _plan_copies(subscriptions, subscriptions_per_plan))
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
    weighted = [spec for spec in PLANS if spec.weight and _reaches_recurly(spec)]
    total = sum(spec.weight for spec in weighted)
    return {spec.name: max(1, round(subscriptions * spec.weight / total / per_plan)) for spec in weighted}
