"""Building a scenario from its seed: ids, owners, subscriptions and hourly traffic, drawn from one RNG.

The order of the draws is part of the contract: the same seed gives the same scenario, so a method here never
draws in a different order than before (see ``scenario.build_scenario`` for the order of the steps).
"""

from __future__ import annotations

import math
import random
import uuid
from array import array
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from amplify_billing.amplify import literals
from amplify_billing.sandbox.amplify_answers import format_timestamp
from amplify_billing.sandbox.scenario_catalog import (
    DOCUMENTED_PLANS,
    IGNORED_EXTRAS,
    PLANS,
    PRODUCTS,
    UNITS,
    PlanSpec,
    QuotaSpec,
    bills_usage,
    reaches_recurly,
)

HOUR = timedelta(hours=1)
PENDING_SHARE = 0.20
CANCELLED_SHARE = 0.05
USER_OWNED_SHARE = 0.20
# Mean calls per hour of a subscription's quota; 0 = an idle subscription.
HOURLY_RATES = (0, 1, 3, 8, 20, 45, 120)
# Share of (subscription, quota) pairs that also see a few failed calls.
FAILING_SHARE = 0.3
# Approved subscriptions became active at most this long (plus 2 h) before the traffic starts. Usage is billed from
# that moment, and Traceability keeps 7 days (reference §9.1): a first run up to four days into the traffic can
# still count every window since, so the scenario's first runs bill cleanly, as a tenant's do after a recent start.
ACTIVE_BEFORE_TRAFFIC_HOURS = 3 * 24
# Approved subscriptions put in the transitional states the Marketplace shows (Migration scheduled, Migrating,
# Archival scheduled: still usable, billed until the final state; subscription_management.md), one each, in
# scenarios of at least this many subscriptions. Chosen from the order already drawn, so no draw moves.
TRANSITIONAL = (literals.STATE_MIGRATION_SCHEDULED, literals.STATE_MIGRATING, literals.STATE_ARCHIVAL_SCHEDULED)
TRANSITIONAL_FROM = 10

FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Lee")
TEAM_WORDS = ("Blue", "Green", "Swift", "Quiet", "Bright", "North", "Delta", "Orbit", "Cedar", "Harbor")
TEAM_NOUNS = ("Labs", "Works", "Systems", "Studio", "Analytics", "Logistics", "Retail", "Travel", "Energy", "Media")


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


def subscription_state(subscription: dict[str, Any]) -> str | None:
    """The subscription's state name (``active``, ``cancelled``…), None while it has none (pending approval)."""
    state = subscription.get("state")
    return state.get("name") if isinstance(state, dict) else None


class ScenarioBuilder:
    """The resources of one scenario, step by step; every step draws from the one seeded RNG."""

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
        self.specs = (*specs, *DOCUMENTED_PLANS)
        # ids of the documented plans come from their own generator: adding one moves no id of the rest
        self._documented_rng = random.Random(f"amplify-billing-scenario-documented:{seed}")

    def new_id(self, rng: random.Random | None = None) -> str:
        return f"{(rng or self.rng).getrandbits(128):032x}"

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
            rng = self._documented_rng if spec in DOCUMENTED_PLANS else self.rng
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
            plan_spec: dict[str, Any] = {
                "product": spec.product,
                "description": f"{spec.title} plan of {spec.product}",
                "type": spec.plan_type,
                "subscription": subscription,
                "features": [],
            }
            # only a paid plan has billing: a free one has none in the docs' "Create Plan" example
            # (cli_product_foundry.md), and a Custom one is billed outside Amplify
            if spec.plan_type == "paid":
                plan_spec["billing"] = billing
            plans.append(
                {
                    "kind": "ProductPlan",
                    "name": spec.name,
                    "title": spec.title,
                    "metadata": {"id": self.new_id(rng), "audit": {"createTimestamp": created}},
                    "attributes": {},
                    "spec": plan_spec,
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
                            "id": self.new_id(rng),
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
        weighted = [spec for spec in PLANS if spec.weight and reaches_recurly(spec) for _ in range(spec.weight)]
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
        after = len(pending) + cancel_count
        transitional = dict(zip(order[after:], TRANSITIONAL, strict=False)) if count >= TRANSITIONAL_FROM else {}
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
                subscription["state"] = self._approved_state(approved_at, transitional.get(index))
                if index in cancelled:
                    cancel_at = self.traffic_start - timedelta(minutes=1 + self.rng.randrange(60))
                    subscription["state"] = {
                        "name": "cancelled",
                        "reason": "Cancelled by the consumer",
                        "when": {"timestamp": self.stamp(cancel_at)},
                    }
            result.append(subscription)
        return tuple(result)

    def _approved_state(self, approved_at: datetime, transitional: str | None) -> dict[str, Any]:
        """Active since its approval, or in a transitional state since half an hour later (before the traffic)."""
        if transitional is None:
            return {"name": "active", "when": {"timestamp": self.stamp(approved_at)}}
        scheduled_at = self.stamp(approved_at + timedelta(minutes=30))
        return {"name": transitional, "reason": "Scheduled by the provider", "when": {"timestamp": scheduled_at}}

    # ---- traffic --------------------------------------------------------------------------------------
    def traffic(
        self, subscriptions: tuple[dict[str, Any], ...], quotas: tuple[dict[str, Any], ...]
    ) -> tuple[TrafficSeries, ...]:
        by_plan: dict[str, list[str]] = {}
        for quota in quotas:
            if bills_usage(quota):
                by_plan.setdefault(quota["metadata"]["scope"]["name"], []).append(quota["metadata"]["id"])
        # calls follow the working day: a UTC diurnal curve from 0.15 at night to 1.0 at 14:00
        shape = [
            0.15 + 0.85 * max(0.0, math.sin(math.pi * (((self.traffic_start + h * HOUR).hour - 6) % 24) / 16))
            for h in range(self.hours)
        ]
        series: list[TrafficSeries] = []
        for subscription in subscriptions:
            state = subscription_state(subscription)
            if state is not None and state not in literals.BILLED_STATES:
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
