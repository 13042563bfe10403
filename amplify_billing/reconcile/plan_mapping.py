"""DESIGN.md §3: an Amplify ProductPlan and its Quotas -> the Recurly plan and usage add-ons it must be.

Pure. A plan that cannot be represented exactly is never approximated: ``desired_plan`` returns an
``Unsupported`` with the reason instead, and nothing of that plan is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from amplify_billing import identity
from amplify_billing.amplify import literals
from amplify_billing.models import AmplifyTier, PlanUnit, ProductPlan, Quota, RecurlyAddOn, RecurlyPlan, RecurlyTier

MAX_PRICE = Decimal(1_000_000)
MAX_DECIMAL_PLACES = 9  # unit_amount_decimal precision
# DESIGN.md §2: a plan or add-on code is ``[a-z0-9_-]``, at most 50 characters. Ids are opaque, so an id that
# does not fit is refused rather than mangled (a mangled code could collide, and could not be found again).
CODE = re.compile(r"[a-z0-9_-]{1,50}", re.ASCII)


@dataclass(frozen=True)
class MappingOptions:
    plan_code_prefix: str = "amplify-"
    add_on_code_prefix: str = "amplify-"
    # units the usage source can count; None = any (the file source counts whatever it is given)
    countable_units: frozenset[str] | None = frozenset({literals.TRANSACTIONS_UNIT})
    # the Recurly site's default currency, for a plan that names none (a free plan without ``spec.billing``); None:
    # such a plan is unsupported
    default_currency: str | None = None


@dataclass(frozen=True)
class Unsupported:
    reason: str


def plan_code(plan_id: str, options: MappingOptions) -> str:
    return identity.plan_code(plan_id, options.plan_code_prefix)


def add_on_code(quota_id: str, options: MappingOptions) -> str:
    return identity.add_on_code(quota_id, options.add_on_code_prefix)


def _bad_code(code: str, what: str, resource_id: str) -> Unsupported | None:
    if CODE.fullmatch(code):
        return None
    return Unsupported(
        f"{what} id {resource_id!r} gives {code!r}, which is not a valid Recurly {what} code "
        "([a-z0-9_-], at most 50 characters)"
    )


def unit_display_name(unit: PlanUnit | None, unit_name: str) -> str:
    """Recurly's display_name allows only letters, digits, underscore and space, ≤ 50 chars."""
    for candidate in (unit.title if unit else None, unit_name):
        if candidate:
            cleaned = re.sub(r"\s+", " ", re.sub(r"[^A-Za-z0-9_ ]", " ", candidate)).strip()[:50].strip()
            if cleaned:
                return cleaned
    return "Units"


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _check_price(value: Decimal, what: str) -> str | None:
    if _places(value) > MAX_DECIMAL_PLACES:
        return f"{what} {value} has more than {MAX_DECIMAL_PLACES} decimal places"
    if value > MAX_PRICE:
        return f"{what} {value} is above Recurly's maximum of {MAX_PRICE}"
    return None


def _tiers(tiers: tuple[AmplifyTier, ...], quota: Quota) -> tuple[RecurlyTier, ...] | Unsupported:
    result: list[RecurlyTier] = []
    previous_end = 0
    for index, tier in enumerate(tiers):
        last = index == len(tiers) - 1
        label = f"quota {quota.name} tier {index + 1}"
        if tier.flat_fee is not None and tier.flat_fee != 0:
            return Unsupported(f"{label} has a flat fee ({tier.flat_fee}), which Recurly usage tiers cannot charge")
        problem = _check_price(tier.cost, f"{label} cost")
        if problem:
            return Unsupported(problem)
        open_end = tier.end is None or tier.end >= literals.OPEN_TIER_END
        # Recurly tiers have only an end; Amplify's "from" must follow on from the previous tier (the first
        # starts at 0 or 1), or an overlap or a gap would be priced at a tier it was not given
        if tier.start is not None:
            if not open_end and tier.end is not None and tier.end < tier.start:
                return Unsupported(f"{label} ends at {tier.end}, before it starts at {tier.start}")
            expected = (0, 1) if index == 0 else (previous_end + 1,)
            if tier.start not in expected:
                return Unsupported(
                    f"{label} starts at {tier.start} but the previous tier ends at {previous_end}"
                    if index
                    else f"{label} starts at {tier.start}; the first tier must start at 0 or 1"
                )
        if open_end and not last:
            return Unsupported(f"{label} is open-ended but is not the last tier")
        if last and not open_end:
            return Unsupported(f"{label} is the last tier but ends at {tier.end}; the last tier must be open")
        if not open_end:
            assert tier.end is not None
            if tier.end <= previous_end:
                return Unsupported(f"{label} ends at {tier.end}, not after the previous tier ({previous_end})")
            previous_end = tier.end
        result.append(RecurlyTier(None if open_end else tier.end, tier.cost))
    return tuple(result)


def desired_add_on(
    quota: Quota, plan: ProductPlan, units: Mapping[str, PlanUnit], options: MappingOptions
) -> RecurlyAddOn | Unsupported | None:
    """The usage add-on for a quota; None when the base price covers it (nothing can be billed)."""
    pricing = quota.pricing
    kind = pricing.type
    if kind not in literals.PRICING_TYPES:
        return Unsupported(f"quota {quota.name} has unknown pricing type {kind!r}")
    if kind == literals.PRICING_UNLIMITED:
        return None
    if kind == literals.PRICING_FIXED and pricing.limit_type == literals.LIMIT_STRICT:
        return None
    if options.countable_units is not None and quota.unit not in options.countable_units:
        return Unsupported(
            f"quota {quota.name} bills unit {quota.unit!r}, which the usage source cannot count "
            f"(it counts {', '.join(sorted(options.countable_units))})"
        )
    tiered_kind = kind in (literals.PRICING_GRADUATED, literals.PRICING_VOLUME) or kind == literals.PRICING_FIXED
    if tiered_kind and pricing.interval and pricing.interval != plan.interval:
        return Unsupported(
            f"quota {quota.name} prices per {pricing.interval} period but the plan bills {plan.interval}; "
            "tiers would not reset with the billing period"
        )
    code = add_on_code(quota.id, options)
    bad = _bad_code(code, "add-on", quota.id)
    if bad:
        return bad
    common: dict[str, Any] = {
        "code": code,
        "name": (quota.title or quota.name)[:255],
        "measured_unit_name": quota.unit,
        "currency": plan.currency,
    }
    if kind == literals.PRICING_PER_UNIT:
        assert pricing.cost is not None
        problem = _check_price(pricing.cost, f"quota {quota.name} cost")
        if problem:
            return Unsupported(problem)
        return RecurlyAddOn(tier_type="flat", unit_amount_decimal=pricing.cost, **common)
    if kind == literals.PRICING_FIXED:
        if pricing.limit_type != literals.LIMIT_LOOSE:
            return Unsupported(f"quota {quota.name} has unknown fixed limit type {pricing.limit_type!r}")
        if not pricing.limit_value or pricing.overage_cost is None:
            return Unsupported(f"quota {quota.name} has a loose limit without a value and an overage price")
        if pricing.limit_value >= literals.OPEN_TIER_END:
            return Unsupported(f"quota {quota.name} limit {pricing.limit_value} is beyond Recurly's tier range")
        problem = _check_price(pricing.overage_cost, f"quota {quota.name} overage price")
        if problem:
            return Unsupported(problem)
        included = RecurlyTier(pricing.limit_value, Decimal(0))
        return RecurlyAddOn(tier_type="tiered", tiers=(included, RecurlyTier(None, pricing.overage_cost)), **common)
    if pricing.limit_type not in (None, literals.LIMIT_TIERED):
        return Unsupported(f"quota {quota.name} has unknown limit type {pricing.limit_type!r} for {kind} pricing")
    tiers = _tiers(pricing.tiers, quota)
    if isinstance(tiers, Unsupported):
        return tiers
    tier_type = "tiered" if kind == literals.PRICING_GRADUATED else "volume"
    return RecurlyAddOn(tier_type=tier_type, tiers=tiers, **common)


def plan_name(plan: ProductPlan) -> str:
    return f"{plan.product_title} - {plan.title}"[:255]


def desired_plan(
    plan: ProductPlan, units: Mapping[str, PlanUnit], options: MappingOptions
) -> RecurlyPlan | Unsupported:
    if plan.type == literals.PLAN_TYPE_CUSTOM:
        return Unsupported(
            f"plan type {plan.type!r}: a Custom plan's pricing is negotiated outside Amplify and it carries no price "
            "to bill; bill it outside this tool, or give it a paid plan"
        )
    if plan.type not in literals.PLAN_TYPES:
        return Unsupported(f"unknown plan type {plan.type!r}")
    bad = _bad_code(plan_code(plan.id, options), "plan", plan.id)
    if bad:
        return bad
    months = literals.BILLING_INTERVAL_MONTHS.get(plan.interval)
    if months is None:
        return Unsupported(f"unknown billing interval {plan.interval!r}")
    currency = plan.currency or options.default_currency or ""
    if not currency:
        return Unsupported(
            "it names no currency (spec.billing.currency) and the Recurly site has no default currency to take; "
            "give the plan a billing currency in Amplify"
        )
    if not re.fullmatch(r"[A-Z]{3}", currency):
        return Unsupported(f"currency {currency!r} is not an ISO 4217 code")
    if currency != plan.currency:
        plan = replace(plan, currency=currency)  # its add-ons are priced in the same currency
    auto_renew = True
    if plan.renewal is not None:
        if plan.renewal not in literals.RENEWAL_AUTO_RENEW:
            return Unsupported(f"unknown renewal {plan.renewal!r}")
        auto_renew = literals.RENEWAL_AUTO_RENEW[plan.renewal]
    for value, what in ((plan.price, "price"), (plan.setup_price or Decimal(0), "setup price")):
        if _places(value) > 2:
            return Unsupported(f"plan {what} {value} has more than 2 decimal places")
        if value > MAX_PRICE:
            return Unsupported(f"plan {what} {value} is above Recurly's maximum of {MAX_PRICE}")
    add_ons: list[RecurlyAddOn] = []
    for quota in sorted(plan.quotas, key=lambda q: q.id):
        wanted = desired_add_on(quota, plan, units, options)
        if isinstance(wanted, Unsupported):
            return wanted
        if wanted is not None:
            add_ons.append(wanted)
    return RecurlyPlan(
        code=plan_code(plan.id, options),
        name=plan_name(plan),
        currency=plan.currency,
        unit_amount=plan.price,
        setup_fee=plan.setup_price or Decimal(0),
        interval_length=months,
        auto_renew=auto_renew,
        total_billing_cycles=plan.cycles,
        add_ons=tuple(add_ons),
    )


# ---- Recurly request bodies (Decimal stays Decimal; the gateway converts at the boundary) ----
