"""What the emulated Recurly site accepts for its catalog: custom fields, measured units, plans and add-ons.

Request bodies are read, checked and turned into records or changes (accounts, subscriptions and usage:
``recurly_validation_billing``). Every reader collects all the problems of one request and raises them as one
422 (``Problems.raise_if_any``) before the state changes anything, as the real API answers. Readers look at
the site only through ``Site``: existing records (uniqueness and references), fresh ids and the clock. They take
ids in the order the site always has, so a seeded site keeps the same ids.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from amplify_billing.sandbox.recurly_records import (
    AccountRecord,
    AddOnRecord,
    CustomFieldDefinitionRecord,
    Ids,
    MeasuredUnitRecord,
    PlanPrice,
    PlanRecord,
    Price,
    Tier,
)
from amplify_billing.sandbox.recurly_wire import OPEN_TIER_END, BodyReader, Problems, read_whole

CODE_PATTERN = r"[a-z0-9_+-]+"  # plan and add-on codes; the API matches it case-insensitively
UNIT_DISPLAY_PATTERN = r"[\w ]+"
CURRENCY_PATTERN = r"[A-Z]{3}"
CUSTOM_FIELD_TYPES = ("account", "item", "plan", "subscription", "charge")
TIER_TYPES = ("flat", "tiered", "stairstep", "volume")


class Site(Protocol):
    """The part of the site a request is checked against."""

    ids: Ids
    units: dict[str, MeasuredUnitRecord]
    plans: dict[str, PlanRecord]
    accounts: dict[str, AccountRecord]
    field_definitions: dict[str, CustomFieldDefinitionRecord]

    def now(self) -> datetime: ...

    def plan_add_ons(self, plan: PlanRecord) -> list[AddOnRecord]: ...


# ---- custom fields --------------------------------------------------------------------------------


def check_field_definition(site: Site, name: str, related_type: str) -> None:
    """Seeding only (definitions are made in Recurly's admin UI): a ValueError names what is wrong."""
    if not re.fullmatch(r"[a-z0-9_-]+", name, re.IGNORECASE) or len(name) > 50:
        raise ValueError(f"custom field name {name!r} must be 1-50 letters, digits, '_' or '-'")
    if related_type not in CUSTOM_FIELD_TYPES:
        raise ValueError(f"related_type {related_type!r} must be one of {', '.join(CUSTOM_FIELD_TYPES)}")
    if any(d.name == name and d.related_type == related_type for d in site.field_definitions.values()):
        raise ValueError(f"custom field {name!r} for {related_type} is already defined")


def read_custom_fields(site: Site, reader: BodyReader, related_type: str) -> list[dict[str, str]] | None:
    entries = reader.objects("custom_fields")
    if entries is None:
        return None
    defined = {d.name for d in site.field_definitions.values() if d.related_type == related_type}
    result: list[dict[str, str]] = []
    for prefix, entry in entries:
        item = BodyReader(entry, reader.problems, prefix)
        name = item.string("name", required=True)
        value = item.string("value", max_length=255)
        if name is None:
            continue
        if name not in defined:
            reader.problems.add(f"{prefix}name", f"{name} is not a custom field defined for {related_type}s")
            continue
        result.append({"name": name, "value": value or ""})
    return result


# ---- measured units -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitFields:
    name: str | None
    display_name: str | None
    description: str | None
    description_sent: bool


def read_unit(site: Site, body: Mapping[str, Any], record: MeasuredUnitRecord | None) -> UnitFields:
    """A new unit (``record`` None: name and display_name required) or the fields an update sends."""
    problems = Problems()
    reader = BodyReader(body, problems)
    name = reader.string("name", required=record is None, max_length=255)
    display = reader.string("display_name", required=record is None, max_length=50, pattern=UNIT_DISPLAY_PATTERN)
    description = reader.string("description", max_length=255)
    if name is not None and any(u.name == name and u is not record for u in site.units.values()):
        problems.add("name", "has already been taken")
    problems.raise_if_any()
    return UnitFields(name, display, description, reader.has("description"))


# ---- plans ----------------------------------------------------------------------------------------


def _read_plan_prices(reader: BodyReader, *, required: bool) -> list[PlanPrice] | None:
    entries = reader.objects("currencies")
    if entries is None or not entries:
        if required or entries is not None:
            reader.problems.add(reader.param("currencies"), "can't be blank")
        return None
    prices: list[PlanPrice] = []
    seen: set[str] = set()
    for prefix, entry in entries:
        item = BodyReader(entry, reader.problems, prefix)
        currency = item.string("currency", required=True, pattern=CURRENCY_PATTERN)
        unit_amount = item.money("unit_amount", places=2)
        setup_fee = item.money("setup_fee", places=2)
        if currency is None:
            continue
        if currency in seen:
            reader.problems.add(f"{prefix}currency", "has already been taken")
            continue
        seen.add(currency)
        prices.append(PlanPrice(currency, unit_amount or Decimal(0), setup_fee or Decimal(0)))
    return prices


def _read_plan_common(site: Site, reader: BodyReader, plan: PlanRecord | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    code = reader.string("code", required=plan is None, max_length=50, pattern=CODE_PATTERN, flags=re.IGNORECASE)
    if code is not None and any(p.code == code and p is not plan for p in site.plans.values()):
        reader.problems.add("code", "has already been taken")
    values["code"] = code
    values["name"] = reader.string("name", required=plan is None, max_length=255)
    values["description"] = reader.string("description")
    values["accounting_code"] = reader.string("accounting_code", max_length=20, pattern=r"[a-z0-9_+-]+")
    values["auto_renew"] = reader.boolean("auto_renew")
    values["total_billing_cycles"] = reader.integer("total_billing_cycles", minimum=1)
    values["trial_unit"] = reader.string("trial_unit", choices=("days", "months"))
    values["trial_length"] = reader.integer("trial_length", minimum=0)
    values["prices"] = _read_plan_prices(reader, required=plan is None)
    values["custom_fields"] = read_custom_fields(site, reader, "plan")
    return values


def read_new_plan(site: Site, body: Mapping[str, Any]) -> tuple[PlanRecord, list[AddOnRecord]]:
    """The plan and the add-ons it is created with, all checked; their ``seq`` is the state's to give."""
    problems = Problems()
    reader = BodyReader(body, problems)
    values = _read_plan_common(site, reader, None)
    interval_unit = reader.string("interval_unit", choices=("days", "months")) or "months"
    interval_length = reader.integer("interval_length", minimum=1) or 1
    now = site.now()
    plan = PlanRecord(
        id=site.ids.id(),
        code=values["code"] or "",
        name=values["name"] or "",
        prices=values["prices"] or [],
        interval_unit=interval_unit,
        interval_length=interval_length,
        created_at=now,
        updated_at=now,
        seq=0,
        description=values["description"],
        accounting_code=values["accounting_code"],
        auto_renew=True if values["auto_renew"] is None else values["auto_renew"],
        total_billing_cycles=values["total_billing_cycles"],
        trial_unit=values["trial_unit"] or "months",
        trial_length=values["trial_length"] or 0,
        custom_fields=values["custom_fields"] or [],
    )
    add_ons: list[AddOnRecord] = []
    for prefix, entry in reader.objects("add_ons") or []:
        taken = {a.code for a in add_ons}
        add_on = _read_add_on(site, BodyReader(entry, problems, prefix), plan, taken)
        if add_on is not None:
            add_ons.append(add_on)
    problems.raise_if_any()
    return plan, add_ons


def read_plan_update(site: Site, plan: PlanRecord, body: Mapping[str, Any]) -> dict[str, Any]:
    """The plan's fields as sent (None: unchanged), ``prices`` and ``custom_fields`` included."""
    problems = Problems()
    reader = BodyReader(body, problems)
    values = _read_plan_common(site, reader, plan)
    for fixed in ("interval_unit", "interval_length"):
        if reader.has(fixed) and body[fixed] != getattr(plan, fixed):
            problems.add(fixed, "cannot be changed after the plan is created")
    prices: list[PlanPrice] | None = values["prices"]
    if prices is not None:
        offered = {p.currency for p in prices}
        for add_on in site.plan_add_ons(plan):
            priced = {p.currency for p in add_on.prices} | {p.currency for t in add_on.tiers for p in t.prices}
            if add_on.state == "active" and priced - offered:
                problems.add(
                    "currencies",
                    f"must include {', '.join(sorted(priced - offered))} (add-on {add_on.code} is priced in it)",
                )
    problems.raise_if_any()
    return values


# ---- add-ons --------------------------------------------------------------------------------------


def _read_prices(reader: BodyReader, name: str, plan: PlanRecord, *, usage: bool) -> list[Price] | None:
    entries = reader.objects(name)
    if entries is None:
        return None
    offered = {p.currency for p in plan.prices}
    prices: list[Price] = []
    for prefix, entry in entries:
        item = BodyReader(entry, reader.problems, prefix)
        currency = item.string("currency", required=True, pattern=CURRENCY_PATTERN)
        exact = item.money("unit_amount_decimal", places=9) if usage else None
        if not usage and item.has("unit_amount_decimal"):
            reader.problems.add(f"{prefix}unit_amount_decimal", "is only allowed for usage add-ons")
        amount = item.money("unit_amount", places=2) if exact is None else None
        if exact is None and amount is None and not (item.has("unit_amount") or item.has("unit_amount_decimal")):
            reader.problems.add(f"{prefix}unit_amount", "can't be blank")
        if currency is None or (exact is None and amount is None):
            continue
        if offered and currency not in offered:  # a plan without valid currencies is reported on its own
            reader.problems.add(f"{prefix}currency", f"{currency} is not offered by plan {plan.code}")
            continue
        if any(p.currency == currency for p in prices):
            reader.problems.add(f"{prefix}currency", "has already been taken")
            continue
        prices.append(Price(currency, exact if exact is not None else amount or Decimal(0), exact is not None))
    return prices


def check_tier_ends(ends: list[int | None], param: str, problems: Problems) -> None:
    """Exactly one open tier, and it is the last; closed tiers end in ascending order."""
    if not ends:
        problems.add(param, "can't be blank")
        return
    open_positions = [i for i, end in enumerate(ends) if end is None]
    if open_positions != [len(ends) - 1]:
        problems.add(param, "must have exactly one tier without ending_quantity (or 999999999), the last one")
        return
    closed = [end for end in ends if end is not None]
    if any(b <= a for a, b in itertools.pairwise(closed)):
        problems.add(param, "ending_quantity must be ascending")


def _read_tiers(reader: BodyReader, plan: PlanRecord, *, usage: bool) -> list[Tier] | None:
    entries = reader.objects("tiers")
    if entries is None:
        return None
    tiers: list[Tier] = []
    for prefix, entry in entries:
        item = BodyReader(entry, reader.problems, prefix)
        end = item.integer("ending_quantity", minimum=1, maximum=OPEN_TIER_END)
        prices = _read_prices(item, "currencies", plan, usage=usage)
        if not prices:
            if not entry.get("currencies"):  # else each bad entry has said what is wrong with it
                reader.problems.add(f"{prefix}currencies", "can't be blank")
            continue
        tiers.append(Tier(None if end is None or end >= OPEN_TIER_END else end, prices))
    if len(tiers) == len(entries):
        check_tier_ends([t.ending_quantity for t in tiers], reader.param("tiers"), reader.problems)
    return tiers


def _read_measured_unit(site: Site, reader: BodyReader) -> str | None:
    unit_id = reader.string("measured_unit_id", max_length=13)
    unit_name = reader.string("measured_unit_name", max_length=255)
    if unit_id is not None:  # the id wins when both are given
        unit = site.units.get(unit_id)
        if unit is None:
            reader.problems.add(reader.param("measured_unit_id"), f"{unit_id} is not a measured unit")
            return None
        return unit.id
    if unit_name is not None:
        named = next((u for u in site.units.values() if u.name == unit_name), None)
        if named is None:
            reader.problems.add(reader.param("measured_unit_name"), f"{unit_name} is not a measured unit")
            return None
        return named.id
    return None


def _read_add_on(site: Site, reader: BodyReader, plan: PlanRecord, taken: set[str]) -> AddOnRecord | None:
    problems = reader.problems
    before = len(problems.items)
    code = reader.string("code", required=True, max_length=50, pattern=CODE_PATTERN, flags=re.IGNORECASE)
    if code is not None and code in taken:
        problems.add(reader.param("code"), "has already been taken")
    name = reader.string("name", required=True, max_length=255)
    add_on_type = reader.string("add_on_type", choices=("fixed", "usage")) or "fixed"
    tier_type = reader.string("tier_type", choices=TIER_TYPES) or "flat"
    usage = add_on_type == "usage"
    record = AddOnRecord(
        id=site.ids.id(),
        plan_id=plan.id,
        code=code or "",
        name=name or "",
        add_on_type=add_on_type,
        tier_type=tier_type,
        created_at=site.now(),
        updated_at=site.now(),
        seq=0,
        optional=reader.boolean("optional") is not False,
        default_quantity=reader.integer("default_quantity", minimum=0) or 1,
        display_quantity=reader.boolean("display_quantity") or False,
        accounting_code=reader.string("accounting_code", max_length=20, pattern=r"[a-z0-9_+-]+"),
    )
    if usage:
        record.usage_type = reader.string("usage_type", required=True, choices=("price", "percentage"))
        record.usage_calculation_type = (
            reader.string("usage_calculation_type", choices=("cumulative", "last_in_period")) or "cumulative"
        )
        record.usage_timeframe = (
            reader.string("usage_timeframe", choices=("billing_period", "subscription_term")) or "billing_period"
        )
        record.measured_unit_id = _read_measured_unit(site, reader)
        if record.measured_unit_id is None and not (reader.has("measured_unit_id") or reader.has("measured_unit_name")):
            problems.add(reader.param("measured_unit_id"), "or measured_unit_name is required for usage add-ons")
    _read_pricing(reader, record, plan)
    return record if len(problems.items) == before else None


def _read_pricing(reader: BodyReader, record: AddOnRecord, plan: PlanRecord) -> None:
    """currencies for flat pricing, tiers otherwise, usage_percentage for percentage usage."""
    usage = record.add_on_type == "usage"
    percentage = record.usage_type == "percentage"
    prices = _read_prices(reader, "currencies", plan, usage=usage)
    tiers = _read_tiers(reader, plan, usage=usage)
    if percentage:
        record.usage_percentage = reader.money("usage_percentage", places=4, maximum=Decimal(100))
        if record.usage_percentage is None and not reader.has("usage_percentage"):
            reader.problems.add(reader.param("usage_percentage"), "can't be blank")
        if record.tier_type != "flat":
            reader.problems.add(reader.param("tier_type"), "must be flat for percentage usage")
        if prices:
            reader.problems.add(reader.param("currencies"), "must be blank for percentage usage")
        return
    if record.tier_type == "flat":
        if tiers:
            reader.problems.add(reader.param("tiers"), "must be blank for flat pricing")
        if not prices:
            if not reader.body.get("currencies"):  # else each bad entry has said what is wrong with it
                reader.problems.add(reader.param("currencies"), "can't be blank")
            return
        record.prices, record.tiers = prices, []
    else:
        if prices:
            reader.problems.add(reader.param("currencies"), f"must be blank for {record.tier_type} pricing")
        if tiers is None:
            reader.problems.add(reader.param("tiers"), "can't be blank")
            return
        record.prices, record.tiers = [], tiers


def read_new_add_on(site: Site, plan: PlanRecord, body: Mapping[str, Any]) -> AddOnRecord:
    taken = {a.code for a in site.plan_add_ons(plan)}
    return read_whole(body, lambda reader: _read_add_on(site, reader, plan, taken))


@dataclass(frozen=True)
class AddOnUpdate:
    """The fields an add-on update sends (None: unchanged); ``priced`` carries the pricing, replaced or not."""

    code: str | None
    name: str | None
    usage_calculation_type: str | None
    measured_unit_id: str | None
    optional: bool | None
    default_quantity: int | None
    display_quantity: bool | None
    priced: AddOnRecord


def read_add_on_update(site: Site, plan: PlanRecord, record: AddOnRecord, body: Mapping[str, Any]) -> AddOnUpdate:
    problems = Problems()
    reader = BodyReader(body, problems)
    for fixed in ("add_on_type", "usage_type", "tier_type", "usage_timeframe"):
        if reader.has(fixed) and body[fixed] != getattr(record, fixed):
            problems.add(fixed, "cannot be changed; create an add-on with a new code instead")
    problems.raise_if_any()
    code = reader.string("code", max_length=50, pattern=CODE_PATTERN, flags=re.IGNORECASE)
    if code is not None and any(a.code == code and a is not record for a in site.plan_add_ons(plan)):
        problems.add("code", "has already been taken")
    name = reader.string("name", max_length=255)
    usage = record.add_on_type == "usage"
    calculation = reader.string("usage_calculation_type", choices=("cumulative", "last_in_period")) if usage else None
    unit_id = _read_measured_unit(site, reader) if usage else None
    optional = reader.boolean("optional")
    default_quantity = reader.integer("default_quantity", minimum=0)
    display_quantity = reader.boolean("display_quantity")
    # pricing is replaced only when sent; validate the replacement as on create
    draft = AddOnRecord(**{**record.__dict__, "prices": list(record.prices), "tiers": list(record.tiers)})
    if reader.has("currencies") or reader.has("tiers") or reader.has("usage_percentage"):
        _read_pricing(reader, draft, plan)
    problems.raise_if_any()
    return AddOnUpdate(code, name, calculation, unit_id, optional, default_quantity, display_quantity, draft)
