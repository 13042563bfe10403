"""The scenario's catalog as data: products, units and plans of every pricing type (the table in ``scenario.py``).

Which plans reach Recurly and which quotas bill usage are decided here, from the specs alone, so the scenario can
say what the tool must create without asking the tool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amplify_billing.amplify import literals

OPEN_TIER = literals.OPEN_TIER_END


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
    PlanSpec(
        "weather-api", "weather-payg", "Pay as you go", (QuotaSpec("calls", "API calls", _per_unit(0.0025)),), weight=5
    ),
    PlanSpec(
        "weather-api",
        "weather-graduated",
        "Graduated",
        (
            QuotaSpec(
                "calls",
                "API calls",
                {
                    "type": literals.PRICING_GRADUATED,
                    "interval": "monthly",
                    "limit": {
                        "type": literals.LIMIT_TIERED,
                        "tiers": _tiers(
                            (1, 10_000, 0.004),
                            (10_001, 100_000, 0.003),
                            (100_001, 1_000_000, 0.002),
                            (1_000_001, OPEN_TIER, 0.001),
                        ),
                    },
                },
            ),
        ),
        price=49.0,
        setup_price=99.0,
        weight=4,
    ),
    PlanSpec(
        "weather-api",
        "weather-volume",
        "Volume",
        (
            QuotaSpec(
                "calls",
                "API calls",
                {
                    "type": literals.PRICING_VOLUME,
                    "interval": "monthly",
                    "limit": {
                        "type": literals.LIMIT_TIERED,
                        "tiers": _tiers((1, 50_000, 0.003), (50_001, 500_000, 0.002), (500_001, None, 0.001)),
                    },
                },
            ),
        ),
        price=19.0,
        weight=3,
    ),
    PlanSpec(
        "weather-api",
        "weather-standard",
        "Standard",
        (
            QuotaSpec(
                "calls",
                "API calls",
                {
                    "type": literals.PRICING_FIXED,
                    "interval": "monthly",
                    "limit": {"type": literals.LIMIT_LOOSE, "value": 5_000, "overages": {"value": 0.01}},
                },
            ),
        ),
        price=29.0,
        weight=4,
    ),
    PlanSpec(
        "weather-api",
        "weather-enterprise",
        "Enterprise",
        (
            QuotaSpec(
                "calls",
                "API calls",
                {
                    "type": literals.PRICING_FIXED,
                    "interval": "annually",
                    "limit": {"type": literals.LIMIT_STRICT, "value": 10_000_000},
                },
                bills_usage=False,
            ),
            QuotaSpec("alerts", "Weather alerts", {"type": literals.PRICING_UNLIMITED}, bills_usage=False),
        ),
        price=1200.0,
        interval="annually",
        weight=1,
    ),
    PlanSpec(
        "weather-api",
        "weather-annual",
        "Annual pay per use",
        (QuotaSpec("calls", "API calls", _per_unit(0.001)),),
        price=100.0,
        interval="annually",
        weight=1,
    ),
    PlanSpec(
        "weather-api",
        "weather-free",
        "Free",
        (
            QuotaSpec(
                "calls",
                "API calls",
                {
                    "type": literals.PRICING_FIXED,
                    "interval": "monthly",
                    "limit": {"type": literals.LIMIT_STRICT, "value": 1000},
                },
                bills_usage=False,
            ),
        ),
        price=None,
        plan_type="free",
    ),
    PlanSpec(
        "weather-api",
        "weather-beta",
        "Beta",
        (QuotaSpec("calls", "API calls", _per_unit(0.002)),),
        price=5.0,
        state="draft",
    ),
    PlanSpec(
        "weather-api",
        "weather-legacy",
        "Legacy",
        (QuotaSpec("calls", "API calls", _per_unit(0.003)),),
        price=9.0,
        state="archived",
    ),
    PlanSpec(
        "weather-api",
        "weather-flatfee",
        "Graduated with flat fees",
        (
            QuotaSpec(
                "calls",
                "API calls",
                {
                    "type": literals.PRICING_GRADUATED,
                    "interval": "monthly",
                    "limit": {
                        "type": literals.LIMIT_TIERED,
                        "tiers": _tiers((1, 1_000, 0.0), (1_001, OPEN_TIER, 0.002), flat_fee={1: 5.0}),
                    },
                },
            ),
            QuotaSpec("data", "Data transferred", _per_unit(0.0001), unit="x-megabytes"),
        ),
        price=15.0,
        supported=False,
    ),
    PlanSpec(
        "maps-api",
        "maps-payg",
        "Pay per call",
        (QuotaSpec("tiles", "Map tiles", _per_unit(0.0005)),),
        price=10.0,
        currency="EUR",
        cycles=12,
        weight=3,
    ),
    PlanSpec(
        "maps-api",
        "maps-classic",
        "Classic",
        (
            QuotaSpec(
                "tiles",
                "Map tiles",
                {
                    "type": literals.PRICING_GRADUATED,
                    "interval": "monthly",
                    "limit": {
                        "type": literals.LIMIT_TIERED,
                        "tiers": _tiers((1, 20_000, 0.001), (20_001, OPEN_TIER, 0.0005)),
                    },
                },
            ),
        ),
        price=25.0,
        currency="EUR",
        state="deprecated",
        weight=1,
    ),
    PlanSpec("internal-tools", "internal-payg", "Internal", (QuotaSpec("calls", "API calls", _per_unit(0.001)),)),
)

# Plans that hold facts of Amplify's public sources (reference §9.2), added after PLANS with ids of their own, so that
# a seed gives the same ids, subscriptions and traffic as before they were added. A Custom plan ("pricing is
# negotiated outside of Engage", docs.axway.com amplify-central manage_product_plans.md) carries no billing; the tool
# must report it unsupported, naming its type.
DOCUMENTED_PLANS: tuple[PlanSpec, ...] = (
    PlanSpec(
        "weather-api",
        "weather-custom",
        "Enterprise contract",
        (QuotaSpec("calls", "API calls", {"type": literals.PRICING_UNLIMITED}, bills_usage=False),),
        price=None,
        plan_type=literals.PLAN_TYPE_CUSTOM,
        supported=False,
    ),
)

# Subscriptions on plans the tool must leave alone, added on top of the requested number.
IGNORED_EXTRAS: tuple[str, ...] = ("internal-payg", "internal-payg", "weather-free", "weather-flatfee")

UNITS: tuple[tuple[str, str, str], ...] = (
    (literals.TRANSACTIONS_UNIT, "Transactions", "API calls counted by the gateway"),
    ("x-megabytes", "Megabytes (MB)", "Data transferred, a custom unit"),
)


def reaches_recurly(spec: PlanSpec) -> bool:
    opted_in = any(name == spec.product and attrs.get("billingSystem") == "recurly" for name, _, attrs in PRODUCTS)
    return opted_in and spec.supported and spec.plan_type == "paid" and spec.state in literals.PLAN_STATES_IN_RECURLY


def bills_usage(quota: dict[str, Any]) -> bool:
    pricing = quota["spec"]["pricing"]
    if pricing["type"] == literals.PRICING_UNLIMITED:
        return False
    return not (pricing["type"] == literals.PRICING_FIXED and pricing["limit"]["type"] == literals.LIMIT_STRICT)
