"""Recurly wire data (plain dicts from the gateway) -> frozen models. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from amplify_billing.amplify.literals import OPEN_TIER_END
from amplify_billing.models import MeasuredUnit, RecurlyAddOn, RecurlyPlan, RecurlyTier


class UnreadableRecurlyError(ValueError):
    """A Recurly object whose prices or tiers cannot be read exactly.

    Read as zero or as an open tier, such a value would make the diff "update" the object from a misreading;
    the caller reports it instead and leaves the object alone.
    """


def money(value: Any) -> Decimal | None:
    """Recurly answers floats (unit_amount) or strings (unit_amount_decimal); both become exact Decimals."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def _price(entry: Mapping[str, Any], what: str) -> Decimal:
    """The exact price of a currency entry: ``unit_amount_decimal`` when present, else ``unit_amount``."""
    key = "unit_amount_decimal" if entry.get("unit_amount_decimal") is not None else "unit_amount"
    value = money(entry.get(key))
    if value is None:
        raise UnreadableRecurlyError(f"{what} {entry.get(key)!r} is not a number")
    return value


def _currency_entry(entries: Any, currency: str) -> Mapping[str, Any] | None:
    for entry in entries or ():
        if isinstance(entry, Mapping) and entry.get("currency") == currency:
            return entry
    return None


def add_on_from_recurly(data: Mapping[str, Any], currency: str, unit_names: Mapping[str, str]) -> RecurlyAddOn:
    """Raises UnreadableRecurlyError for a price or tier that cannot be read exactly."""
    tier_type = str(data.get("tier_type") or "flat")
    code = str(data.get("code"))
    tiers: list[RecurlyTier] = []
    raw_tiers = list(data.get("tiers") or ())
    for index, tier in enumerate(raw_tiers):
        what = f"add-on {code} tier {index + 1}"
        ending = tier.get("ending_quantity")
        if ending is None and index < len(raw_tiers) - 1:
            # only the last tier may be open; a missing end in the middle is not an open tier
            raise UnreadableRecurlyError(f"{what} has no ending_quantity but is not the last tier")
        entry = _currency_entry(tier.get("currencies"), currency)
        if entry is None:
            raise UnreadableRecurlyError(f"{what} has no {currency} price")
        ending_value = None if ending is None or int(ending) >= OPEN_TIER_END else int(ending)
        tiers.append(RecurlyTier(ending_value, _price(entry, f"{what} {currency} price")))
    unit_amount: Decimal | None = None
    if tier_type == "flat":
        flat = _currency_entry(data.get("currencies"), currency)
        if flat is None:
            raise UnreadableRecurlyError(f"add-on {code} has no {currency} price")
        unit_amount = _price(flat, f"add-on {code} {currency} price")
    unit_id = data.get("measured_unit_id")
    return RecurlyAddOn(
        code=code,
        name=str(data.get("name") or ""),
        measured_unit_name=unit_names.get(str(unit_id), str(data.get("measured_unit_name") or unit_id or "")),
        tier_type=tier_type,
        currency=currency,
        unit_amount_decimal=unit_amount,
        tiers=tuple(tiers),
        id=data.get("id"),
        state=str(data.get("state") or "active"),
    )


def plan_from_recurly(
    data: Mapping[str, Any], add_ons: Iterable[Mapping[str, Any]], unit_names: Mapping[str, str]
) -> RecurlyPlan:
    """Raises UnreadableRecurlyError when the plan's price or one of its add-ons cannot be read exactly."""
    currencies = [c for c in data.get("currencies") or () if isinstance(c, Mapping)]
    if not currencies:
        raise UnreadableRecurlyError("it has no currencies")
    first = currencies[0]
    currency = str(first.get("currency") or "")
    unit_amount = money(first.get("unit_amount"))
    if unit_amount is None:
        raise UnreadableRecurlyError(f"{currency} unit_amount {first.get('unit_amount')!r} is not a number")
    # an absent setup fee is Recurly's default of 0; one that is present must be a number
    setup_fee = money(first.get("setup_fee", 0))
    if setup_fee is None:
        raise UnreadableRecurlyError(f"{currency} setup_fee {first.get('setup_fee')!r} is not a number")
    # a plan priced in several currencies is never one we created; report its first currency so the
    # diff shows the difference instead of hiding it
    return RecurlyPlan(
        code=str(data.get("code")),
        name=str(data.get("name") or ""),
        currency=currency if len(currencies) <= 1 else "+".join(sorted(str(c.get("currency")) for c in currencies)),
        unit_amount=unit_amount,
        setup_fee=setup_fee,
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
