"""Recurly wire data (plain dicts from the gateway) -> frozen models. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from amplify_billing.amplify.literals import OPEN_TIER_END
from amplify_billing.models import MeasuredUnit, RecurlyAddOn, RecurlyPlan, RecurlyTier


def money(value: Any) -> Decimal | None:
    """Recurly answers floats (unit_amount) or strings (unit_amount_decimal); both become exact Decimals."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        return None


def _price(entry: Mapping[str, Any]) -> Decimal | None:
    decimal_value = money(entry.get("unit_amount_decimal"))
    return decimal_value if decimal_value is not None else money(entry.get("unit_amount"))


def _currency_entry(entries: Any, currency: str) -> Mapping[str, Any] | None:
    for entry in entries or ():
        if isinstance(entry, Mapping) and entry.get("currency") == currency:
            return entry
    return None


def add_on_from_recurly(data: Mapping[str, Any], currency: str, unit_names: Mapping[str, str]) -> RecurlyAddOn:
    tier_type = str(data.get("tier_type") or "flat")
    tiers: list[RecurlyTier] = []
    for tier in data.get("tiers") or ():
        entry = _currency_entry(tier.get("currencies"), currency) or {}
        ending = tier.get("ending_quantity")
        ending_value = None if ending is None or int(ending) >= OPEN_TIER_END else int(ending)
        tiers.append(RecurlyTier(ending_value, _price(entry) or Decimal(0)))
    flat = _currency_entry(data.get("currencies"), currency)
    unit_id = data.get("measured_unit_id")
    return RecurlyAddOn(
        code=str(data.get("code")),
        name=str(data.get("name") or ""),
        measured_unit_name=unit_names.get(str(unit_id), str(data.get("measured_unit_name") or unit_id or "")),
        tier_type=tier_type,
        currency=currency,
        unit_amount_decimal=_price(flat) if flat is not None and tier_type == "flat" else None,
        tiers=tuple(tiers),
        id=data.get("id"),
        state=str(data.get("state") or "active"),
    )


def plan_from_recurly(
    data: Mapping[str, Any], add_ons: Iterable[Mapping[str, Any]], unit_names: Mapping[str, str]
) -> RecurlyPlan:
    currencies = [c for c in data.get("currencies") or () if isinstance(c, Mapping)]
    first = currencies[0] if currencies else {}
    currency = str(first.get("currency") or "")
    # a plan priced in several currencies is never one we created; report its first currency so the
    # diff shows the difference instead of hiding it
    return RecurlyPlan(
        code=str(data.get("code")),
        name=str(data.get("name") or ""),
        currency=currency if len(currencies) <= 1 else "+".join(sorted(str(c.get("currency")) for c in currencies)),
        unit_amount=money(first.get("unit_amount")) or Decimal(0),
        setup_fee=money(first.get("setup_fee")) or Decimal(0),
        interval_length=int(data.get("interval_length") or 1),
        interval_unit=str(data.get("interval_unit") or "months"),
        auto_renew=bool(data.get("auto_renew", True)),
        total_billing_cycles=data.get("total_billing_cycles"),
        add_ons=tuple(
            sorted(
                (add_on_from_recurly(a, currency, unit_names) for a in add_ons if a.get("state", "active") == "active"),
                key=lambda a: a.code,
            )
        ),
        id=data.get("id"),
        state=str(data.get("state") or "active"),
    )


def measured_unit_from_recurly(data: Mapping[str, Any]) -> MeasuredUnit:
    return MeasuredUnit(name=str(data.get("name")), display_name=str(data.get("display_name") or ""), id=data.get("id"))
