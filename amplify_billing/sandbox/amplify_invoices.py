"""Amplify's side of marketplace mode in the emulator: Marketplaces with Custom billing, and their invoices.

Amplify writes a ``SubscriptionInvoice`` for each subscription of a Marketplace whose billing is on with vendor
Custom (DOCS ``integrate_with_central/custom_billing.md``): after approval (the base price and the setup fee,
"Initial Payment"), at the end of each metering period (the base price and the period's consumption) and at
cancellation (the consumption since the last period). ``InvoiceIssuer.issue(now)`` does what Amplify's invoicing
job does by then, once each: it prices the consumption from the plan's quotas and the emulator's traffic, as the
plan's pricing says (per unit, graduated, volume, a loose limit's overage), rounded to the cent. Metering periods
are calendar months in UTC (Amplify's run comes "about 2 am after month end", reference §3.6).

Each invoice is made as Amplify makes it: state ``draft``, status ``Pending``, ``billing.payment.type: custom``,
the subscription's ``marketplace`` and hard references to its ProductPlan and Marketplace (the guide's sample).
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from amplify_billing.amplify import literals
from amplify_billing.amplify.parse import parse_pricing, parse_timestamp
from amplify_billing.models import QuotaPricing
from amplify_billing.sandbox.amplify_emulator import AmplifyEmulator, format_timestamp

KIND = "SubscriptionInvoice"
CENT = Decimal("0.01")


def enable_custom_billing(amplify: AmplifyEmulator, marketplace: Mapping[str, Any]) -> None:
    """Marketplace Settings > Billing > vendor Custom (the Marketplace's ``billing.payment.type``)."""
    amplify.put_resource({**marketplace, "billing": {"payment": {"type": "custom"}}})


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(moment: datetime) -> datetime:
    start = month_start(moment)
    return start + timedelta(days=calendar.monthrange(start.year, start.month)[1])


def invoice_name(subscription_id: str, title: str) -> str:
    """An invoice's name: the same for one subscription and title, so that each is made once."""
    return hashlib.sha256(f"{subscription_id}:{title}".encode()).hexdigest()[:32]


def quota_cost(pricing: QuotaPricing, units: int) -> Decimal:
    """What ``units`` cost under ``pricing`` (DOCS ``manage_product_plans.md``: graduated prices each unit at its
    tier plus the flat fees of the tiers reached, volume prices every unit at the last tier reached)."""
    if pricing.type == literals.PRICING_PER_UNIT:
        return Decimal(units) * (pricing.cost or 0)
    if pricing.type == literals.PRICING_FIXED:
        over = max(0, units - (pricing.limit_value or 0))
        return Decimal(over) * (pricing.overage_cost or 0) if pricing.limit_type == literals.LIMIT_LOOSE else Decimal(0)
    ends = [t.end if t.end is not None and t.end < literals.OPEN_TIER_END else None for t in pricing.tiers]
    if pricing.type == literals.PRICING_VOLUME and units:
        for tier, end in zip(pricing.tiers, ends, strict=True):
            if end is None or units <= end:
                return Decimal(units) * tier.cost + (tier.flat_fee or 0)
    if pricing.type == literals.PRICING_GRADUATED and units:
        total, previous = Decimal(0), 0
        for tier, end in zip(pricing.tiers, ends, strict=True):
            upper = units if end is None else min(units, end)
            total += Decimal(upper - previous) * tier.cost + (tier.flat_fee or 0)
            if end is None or units <= end:
                break
            previous = end
        return total
    return Decimal(0)


class InvoiceIssuer:
    """Amplify's invoicing job over the emulator's resources and traffic."""

    def __init__(self, amplify: AmplifyEmulator) -> None:
        self.amplify = amplify

    def issue(self, now: datetime) -> list[dict[str, Any]]:
        """Every invoice due by ``now`` that is not made yet: the initial one of each approved subscription, one per
        metering period that ended, one at cancellation. Returns those it made."""
        made: list[dict[str, Any]] = []
        custom = {
            m["name"]
            for m in self.amplify.resources("Marketplace")
            if (m.get("billing") or {}).get("payment", {}).get("type") == "custom"
        }
        existing = {i["name"] for i in self.amplify.resources(KIND)}
        for subscription in self.amplify.resources("Subscription"):
            if (subscription.get("marketplace") or {}).get("name") not in custom:
                continue
            for invoice in self._due(subscription, now, existing):
                made.append(self.amplify.put_resource(invoice))
        return made

    def _due(self, subscription: dict[str, Any], now: datetime, existing: set[str]) -> list[dict[str, Any]]:
        """The subscription's invoices due by ``now`` that are not in ``existing`` (priced only those: the
        consumption of a period is counted once, when its invoice is made)."""
        state = subscription.get("state") if isinstance(subscription.get("state"), dict) else None
        approval = (subscription.get("approval") or {}).get("state")
        if approval != literals.APPROVAL_APPROVED or state is None:
            return []
        started = parse_timestamp((subscription.get("metadata") or {}).get("audit", {}).get("createTimestamp"))
        changed = parse_timestamp((state.get("when") or {}).get("timestamp"))
        ended = changed if state.get("name") in literals.ENDED_STATES else None
        active_from = (changed if state.get("name") == literals.STATE_ACTIVE else None) or started or now
        # (title, period start, period end, whether it charges the setup fee, whether it charges the base price)
        due: list[tuple[str, datetime | None, datetime | None, bool, bool]] = [
            ("Initial Payment", None, None, True, True)
        ]
        period = next_month(active_from)
        start = active_from
        while period <= now and (ended is None or period <= ended):
            due.append((f"Period {start:%Y-%m}", start, period, False, True))
            start, period = period, next_month(period)
        if ended is not None and ended <= now:
            due.append(("Cancellation", start, ended, False, False))
        sub_id = subscription["metadata"]["id"]
        missing = [d for d in due if invoice_name(sub_id, d[0]) not in existing]
        if not missing:
            return []
        plan = self.amplify.resource("ProductPlan", subscription["spec"]["plan"]["name"])
        return [self._invoice(subscription, plan, *d) for d in missing]

    def _invoice(
        self,
        subscription: dict[str, Any],
        plan: dict[str, Any],
        title: str,
        start: datetime | None,
        end: datetime | None,
        setup: bool,
        base: bool,
    ) -> dict[str, Any]:
        name = invoice_name(subscription["metadata"]["id"], title)
        billing = plan["spec"].get("billing") or {}
        price = Decimal(str(billing.get("price") or 0)) if base else Decimal(0)
        setup_cost = Decimal(str((billing.get("setup") or {}).get("price") or 0)) if setup else Decimal(0)
        quotas, costs = self._consumption(subscription, plan, start, end) if start and end else ([], [])
        total = price + setup_cost + sum((Decimal(str(c["cost"])) for c in costs), Decimal(0))
        cost_plan: dict[str, Any] = {"name": plan["name"], "cost": float(price), "currency": billing.get("currency")}
        if setup_cost:
            cost_plan["setup"] = {"cost": float(setup_cost)}
        if costs:
            cost_plan["quotas"] = costs
        spec: dict[str, Any] = {"cost": {"plan": cost_plan, "total": float(total)}}
        if start and end:
            spec["period"] = {"from": format_timestamp(start), "to": format_timestamp(end)}
            spec["quotas"] = quotas
        marketplace = subscription["marketplace"]
        return {
            "kind": KIND,
            "name": name,
            "title": title,
            "metadata": {
                "scope": {"kind": "Subscription", "name": subscription["name"]},
                "references": [
                    {"kind": "ProductPlan", "name": plan["name"], "type": "hard", "group": "catalog"},
                    {"kind": "Marketplace", "name": marketplace["name"], "type": "hard", "group": "catalog"},
                ],
            },
            "marketplace": marketplace,
            "spec": spec,
            "billing": {"payment": {"type": "custom"}},
            "state": {"name": "draft"},
            "status": {"level": "Pending"},
        }

    def _consumption(
        self, subscription: dict[str, Any], plan: dict[str, Any], start: datetime, end: datetime
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``spec.quotas`` (units, one interval) and ``spec.cost.plan.quotas`` (cost, one item) of the period."""
        traffic = self.amplify.traffic(start, end)
        quotas: list[dict[str, Any]] = []
        costs: list[dict[str, Any]] = []
        for quota in self._quotas(plan["name"]):
            units = traffic.get((subscription["metadata"]["id"], quota["metadata"]["id"]), 0)
            pricing = parse_pricing((quota.get("spec") or {}).get("pricing"))
            cost = quota_cost(pricing, units).quantize(CENT, rounding=ROUND_HALF_UP)
            quotas.append(
                {
                    "name": quota["name"],
                    "units": units,
                    "intervals": [{"from": format_timestamp(start), "units": units}],
                }
            )
            if cost:
                title = quota.get("title") or quota["name"]
                item = {
                    "title": title,
                    "units": units,
                    "itemCost": float(pricing.cost or 0),
                    "from": format_timestamp(start),
                    "to": format_timestamp(end),
                }
                costs.append({"name": quota["name"], "cost": float(cost), "items": [item]})
        return quotas, costs

    def _quotas(self, plan_name: str) -> Sequence[dict[str, Any]]:
        return [q for q in self.amplify.resources("Quota") if q["metadata"]["scope"]["name"] == plan_name]
