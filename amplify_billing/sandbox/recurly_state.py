"""The Recurly site the emulator serves: records, the rules the real service enforces, and their wire format.

HTTP-free and lock-free: the emulator calls in under its lock. Every operation validates the whole request
before it changes anything (a 422 leaves no trace) and raises ``RecurlyProblem`` for an error answer.
Money is Decimal from the request body to the answer; times are whole UTC seconds from the injected clock.
Time moves only with that clock: ``advance()`` activates future subscriptions, expires canceled ones at
their ``expires_at`` (and non-renewing ones after ``total_billing_cycles``), rolls active ones into the next
billing period, and starts and ends pauses at renewals.
"""

from __future__ import annotations

import calendar
import itertools
import random
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from amplify_billing.sandbox.recurly_wire import (
    OPEN_TIER_END,
    BodyReader,
    Problems,
    RecurlyProblem,
    decimal_text,
    fmt_time,
    not_found,
    validation,
    whole_seconds,
)

CODE_PATTERN = r"[a-z0-9_+-]+"  # plan and add-on codes; the API matches it case-insensitively
UNIT_DISPLAY_PATTERN = r"[\w ]+"
CURRENCY_PATTERN = r"[A-Z]{3}"
CUSTOM_FIELD_TYPES = ("account", "item", "plan", "subscription", "charge")
TIER_TYPES = ("flat", "tiered", "stairstep", "volume")
# What `state=live` lists: "active, canceled, or future state or are in trial" (ROAS `state` parameter,
# reference §9.3): NOT paused, and no filter value lists paused subscriptions at all.
LISTED_AS_LIVE = frozenset({"active", "canceled", "future"})
# An account's `has_live_subscription` does count paused ones ("active, canceled, future, or paused", ROAS Account).
ACCOUNT_LIVE_STATES = frozenset({"active", "canceled", "future", "paused"})
SUBSCRIPTION_FILTERS = ("active", "canceled", "expired", "future", "in_trial", "live")
MAX_USAGE_AMOUNT = Decimal(999_999_999)  # whole-number quantities up to 9 digits
ID_ALPHABET = string.ascii_lowercase + string.digits


class Ids:
    """Deterministic ids from a seed: 13 characters of [a-z0-9] for ids, 32 hex digits for uuids."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self._used: set[str] = set()
        self._seq = 0

    def id(self) -> str:
        while True:
            value = "".join(self._random.choice(ID_ALPHABET) for _ in range(13))
            if value not in self._used:
                self._used.add(value)
                return value

    def uuid(self) -> str:
        while True:
            value = f"{self._random.getrandbits(128):032x}"
            if value not in self._used:
                self._used.add(value)
                return value

    def seq(self) -> int:
        """Insertion order: the tie-breaker that keeps paging stable among records of the same second."""
        self._seq += 1
        return self._seq


# ---- records --------------------------------------------------------------------------------------


@dataclass
class Price:
    currency: str
    amount: Decimal
    decimal: bool  # given as unit_amount_decimal (sub-cent prices of usage add-ons)

    def wire(self, *, with_currency: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"currency": self.currency} if with_currency else {}
        body["unit_amount"] = float(self.amount)
        body["unit_amount_decimal"] = decimal_text(self.amount) if self.decimal else None
        return body


@dataclass
class Tier:
    ending_quantity: int | None  # None: the open last tier
    prices: list[Price]

    def wire(self) -> dict[str, Any]:
        return {
            "ending_quantity": OPEN_TIER_END if self.ending_quantity is None else self.ending_quantity,
            "currencies": [p.wire() for p in self.prices],
        }

    def price(self, currency: str) -> Price | None:
        return next((p for p in self.prices if p.currency == currency), None)


@dataclass
class MeasuredUnitRecord:
    id: str
    name: str
    display_name: str
    description: str | None
    created_at: datetime
    updated_at: datetime
    seq: int
    state: str = "active"
    deleted_at: datetime | None = None


@dataclass
class PlanPrice:
    currency: str
    unit_amount: Decimal
    setup_fee: Decimal


@dataclass
class PlanRecord:
    id: str
    code: str
    name: str
    prices: list[PlanPrice]
    interval_unit: str
    interval_length: int
    created_at: datetime
    updated_at: datetime
    seq: int
    description: str | None = None
    auto_renew: bool = True
    total_billing_cycles: int | None = None
    trial_unit: str = "months"
    trial_length: int = 0
    accounting_code: str | None = None
    custom_fields: list[dict[str, str]] = field(default_factory=list)
    state: str = "active"
    deleted_at: datetime | None = None

    def price(self, currency: str) -> PlanPrice | None:
        return next((p for p in self.prices if p.currency == currency), None)


@dataclass
class AddOnRecord:
    id: str
    plan_id: str
    code: str
    name: str
    add_on_type: str
    tier_type: str
    created_at: datetime
    updated_at: datetime
    seq: int
    usage_type: str | None = None
    usage_calculation_type: str | None = None
    usage_timeframe: str | None = None
    usage_percentage: Decimal | None = None
    measured_unit_id: str | None = None
    prices: list[Price] = field(default_factory=list)
    tiers: list[Tier] = field(default_factory=list)
    optional: bool = True
    default_quantity: int = 1
    display_quantity: bool = False
    accounting_code: str | None = None
    state: str = "active"
    deleted_at: datetime | None = None


@dataclass
class AccountRecord:
    id: str
    code: str
    created_at: datetime
    updated_at: datetime
    seq: int
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    username: str | None = None
    custom_fields: list[dict[str, str]] = field(default_factory=list)
    state: str = "active"
    deleted_at: datetime | None = None


@dataclass
class SubscriptionAddOnRecord:
    """A plan add-on on one subscription, priced in the subscription's currency when it was attached."""

    id: str
    add_on_id: str
    quantity: int
    tier_type: str
    created_at: datetime
    updated_at: datetime
    usage_calculation_type: str | None
    usage_timeframe: str | None
    usage_percentage: Decimal | None
    unit_price: Price | None  # flat
    tiers: list[tuple[int | None, Price]]  # non-flat: (ending_quantity, price)

    def tiers_wire(self) -> list[dict[str, Any]]:
        return [
            {"ending_quantity": OPEN_TIER_END if end is None else end, **price.wire(with_currency=False)}
            for end, price in self.tiers
        ]


@dataclass
class SubscriptionRecord:
    id: str
    uuid: str
    account_id: str
    plan_id: str
    state: str
    currency: str
    unit_amount: Decimal
    quantity: int
    collection_method: str
    interval_unit: str
    interval_length: int
    anchor: datetime  # start of period 0; periods are counted from here so month ends do not drift
    period: int
    current_period_started_at: datetime
    current_period_ends_at: datetime
    created_at: datetime
    updated_at: datetime
    seq: int
    auto_renew: bool = True
    total_billing_cycles: int | None = None
    net_terms: int = 0
    add_ons: list[SubscriptionAddOnRecord] = field(default_factory=list)
    custom_fields: list[dict[str, str]] = field(default_factory=list)
    activated_at: datetime | None = None
    canceled_at: datetime | None = None
    expires_at: datetime | None = None
    expiration_reason: str | None = None
    po_number: str | None = None
    # a pause asked for: it starts at the renewal on or after paused_at and lasts remaining_pause_cycles periods
    paused_at: datetime | None = None
    remaining_pause_cycles: int | None = None
    # usage dated before this has been invoiced (the last invoice run, see bill())
    billed_through: datetime | None = None


@dataclass
class UsageRecord:
    id: str
    subscription_id: str
    add_on_id: str  # the plan add-on
    amount: Decimal
    merchant_tag: str | None
    usage_type: str | None
    tier_type: str
    measured_unit_id: str | None
    usage_percentage: Decimal | None
    unit_price: Price | None
    tiers: list[dict[str, Any]]
    usage_timestamp: datetime
    recording_timestamp: datetime
    created_at: datetime
    updated_at: datetime
    seq: int
    billed_at: datetime | None = None


@dataclass
class CustomFieldDefinitionRecord:
    id: str
    name: str
    related_type: str
    created_at: datetime
    seq: int
    user_access: str = "write"


# ---- calendar -------------------------------------------------------------------------------------


def add_interval(start: datetime, unit: str, count: int) -> datetime:
    """``count`` days or months after ``start``; a month end clamps (Jan 31 + 1 month = Feb 28/29)."""
    if unit == "days":
        return start + timedelta(days=count)
    months = start.month - 1 + count
    year, month = start.year + months // 12, months % 12 + 1
    return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))


# ---- the site -------------------------------------------------------------------------------------


class RecurlyState:
    def __init__(self, *, clock: Callable[[], datetime], seed: int) -> None:
        self._clock = clock
        self.ids = Ids(seed)
        created = self.now()
        self.site_id = self.ids.id()
        self.site_created_at = created
        self.units: dict[str, MeasuredUnitRecord] = {}
        self.plans: dict[str, PlanRecord] = {}
        self.add_ons: dict[str, AddOnRecord] = {}
        self.accounts: dict[str, AccountRecord] = {}
        self.subscriptions: dict[str, SubscriptionRecord] = {}
        self.usage: dict[str, UsageRecord] = {}
        self.field_definitions: dict[str, CustomFieldDefinitionRecord] = {}

    def now(self) -> datetime:
        return whole_seconds(self._clock())

    # ---- lookups ------------------------------------------------------------------------------------
    def unit(self, ref: str) -> MeasuredUnitRecord:
        found = (
            next((u for u in self.units.values() if u.name == ref[5:]), None)
            if ref.startswith("name-")
            else self.units.get(ref)
        )
        if found is None:
            raise not_found("MeasuredUnit", ref)
        return found

    def plan(self, ref: str) -> PlanRecord:
        found = (
            next((p for p in self.plans.values() if p.code == ref[5:]), None)
            if ref.startswith("code-")
            else self.plans.get(ref)
        )
        if found is None:
            raise not_found("Plan", ref)
        return found

    def plan_add_ons(self, plan: PlanRecord) -> list[AddOnRecord]:
        return [a for a in self.add_ons.values() if a.plan_id == plan.id]

    def add_on(self, plan: PlanRecord, ref: str) -> AddOnRecord:
        candidates = self.plan_add_ons(plan)
        found = (
            next((a for a in candidates if a.code == ref[5:]), None)
            if ref.startswith("code-")
            else next((a for a in candidates if a.id == ref), None)
        )
        if found is None:
            raise not_found("AddOn", ref)
        return found

    def site_add_on(self, ref: str) -> AddOnRecord:
        found = (
            next((a for a in self.add_ons.values() if a.code == ref[5:]), None)
            if ref.startswith("code-")
            else self.add_ons.get(ref)
        )
        if found is None:
            raise not_found("AddOn", ref)
        return found

    def account(self, ref: str) -> AccountRecord:
        found = (
            next((a for a in self.accounts.values() if a.code == ref[5:]), None)
            if ref.startswith("code-")
            else self.accounts.get(ref)
        )
        if found is None:
            raise not_found("Account", ref)
        return found

    def subscription(self, ref: str) -> SubscriptionRecord:
        found = (
            next((s for s in self.subscriptions.values() if s.uuid == ref[5:]), None)
            if ref.startswith("uuid-")
            else self.subscriptions.get(ref)
        )
        if found is None:
            raise not_found("Subscription", ref)
        return found

    def usage_record(self, ref: str) -> UsageRecord:
        found = self.usage.get(ref)
        if found is None:
            raise not_found("Usage", ref)
        return found

    def field_definition(self, ref: str) -> CustomFieldDefinitionRecord:
        found = self.field_definitions.get(ref)
        if found is None:
            raise not_found("CustomFieldDefinition", ref)
        return found

    # ---- custom fields ------------------------------------------------------------------------------
    def seed_field_definition(self, name: str, related_type: str) -> CustomFieldDefinitionRecord:
        if not re.fullmatch(r"[a-z0-9_-]+", name, re.IGNORECASE) or len(name) > 50:
            raise ValueError(f"custom field name {name!r} must be 1-50 letters, digits, '_' or '-'")
        if related_type not in CUSTOM_FIELD_TYPES:
            raise ValueError(f"related_type {related_type!r} must be one of {', '.join(CUSTOM_FIELD_TYPES)}")
        if any(d.name == name and d.related_type == related_type for d in self.field_definitions.values()):
            raise ValueError(f"custom field {name!r} for {related_type} is already defined")
        record = CustomFieldDefinitionRecord(self.ids.id(), name, related_type, self.now(), self.ids.seq())
        self.field_definitions[record.id] = record
        return record

    def _read_custom_fields(self, reader: BodyReader, related_type: str) -> list[dict[str, str]] | None:
        entries = reader.objects("custom_fields")
        if entries is None:
            return None
        defined = {d.name for d in self.field_definitions.values() if d.related_type == related_type}
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

    @staticmethod
    def _merge_custom_fields(current: list[dict[str, str]], changes: list[dict[str, str]]) -> list[dict[str, str]]:
        """Partial semantics of the API: only named fields change; an empty value clears one."""
        merged = {f["name"]: f["value"] for f in current}
        for change in changes:
            if change["value"]:
                merged[change["name"]] = change["value"]
            else:
                merged.pop(change["name"], None)
        return [{"name": k, "value": v} for k, v in merged.items()]

    # ---- measured units -----------------------------------------------------------------------------
    def create_unit(self, body: Mapping[str, Any]) -> MeasuredUnitRecord:
        problems = Problems()
        reader = BodyReader(body, problems)
        name = reader.string("name", required=True, max_length=255)
        display = reader.string("display_name", required=True, max_length=50, pattern=UNIT_DISPLAY_PATTERN)
        description = reader.string("description", max_length=255)
        if name is not None and any(u.name == name for u in self.units.values()):
            problems.add("name", "has already been taken")
        problems.raise_if_any()
        assert name is not None and display is not None
        now = self.now()
        record = MeasuredUnitRecord(self.ids.id(), name, display, description, now, now, self.ids.seq())
        self.units[record.id] = record
        return record

    def update_unit(self, ref: str, body: Mapping[str, Any]) -> MeasuredUnitRecord:
        record = self.unit(ref)
        problems = Problems()
        reader = BodyReader(body, problems)
        name = reader.string("name", max_length=255)
        display = reader.string("display_name", max_length=50, pattern=UNIT_DISPLAY_PATTERN)
        description = reader.string("description", max_length=255)
        if name is not None and any(u.name == name and u.id != record.id for u in self.units.values()):
            problems.add("name", "has already been taken")
        problems.raise_if_any()
        record.name = name or record.name
        record.display_name = display or record.display_name
        if reader.has("description"):
            record.description = description
        record.updated_at = self.now()
        return record

    def remove_unit(self, ref: str) -> MeasuredUnitRecord:
        record = self.unit(ref)
        in_use = any(
            a.measured_unit_id == record.id and a.state == "active" and self.plans[a.plan_id].state == "active"
            for a in self.add_ons.values()
        )
        if in_use or record.state != "active":
            raise validation("measured_unit", "is used by an active plan or may already be inactive")
        now = self.now()
        record.state, record.deleted_at, record.updated_at = "inactive", now, now
        return record

    # ---- plans --------------------------------------------------------------------------------------
    def _read_plan_prices(self, reader: BodyReader, *, required: bool) -> list[PlanPrice] | None:
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

    def _read_plan_common(self, reader: BodyReader, plan: PlanRecord | None) -> dict[str, Any]:
        values: dict[str, Any] = {}
        code = reader.string("code", required=plan is None, max_length=50, pattern=CODE_PATTERN, flags=re.IGNORECASE)
        if code is not None and any(p.code == code and p is not plan for p in self.plans.values()):
            reader.problems.add("code", "has already been taken")
        values["code"] = code
        values["name"] = reader.string("name", required=plan is None, max_length=255)
        values["description"] = reader.string("description")
        values["accounting_code"] = reader.string("accounting_code", max_length=20, pattern=r"[a-z0-9_+-]+")
        values["auto_renew"] = reader.boolean("auto_renew")
        values["total_billing_cycles"] = reader.integer("total_billing_cycles", minimum=1)
        values["trial_unit"] = reader.string("trial_unit", choices=("days", "months"))
        values["trial_length"] = reader.integer("trial_length", minimum=0)
        values["prices"] = self._read_plan_prices(reader, required=plan is None)
        values["custom_fields"] = self._read_custom_fields(reader, "plan")
        return values

    def create_plan(self, body: Mapping[str, Any]) -> PlanRecord:
        problems = Problems()
        reader = BodyReader(body, problems)
        values = self._read_plan_common(reader, None)
        interval_unit = reader.string("interval_unit", choices=("days", "months")) or "months"
        interval_length = reader.integer("interval_length", minimum=1) or 1
        now = self.now()
        plan = PlanRecord(
            id=self.ids.id(),
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
            add_on = self._read_add_on(BodyReader(entry, problems, prefix), plan, taken)
            if add_on is not None:
                add_ons.append(add_on)
        problems.raise_if_any()
        plan.seq = self.ids.seq()
        self.plans[plan.id] = plan
        for add_on in add_ons:
            add_on.seq = self.ids.seq()
            self.add_ons[add_on.id] = add_on
        return plan

    def update_plan(self, ref: str, body: Mapping[str, Any]) -> PlanRecord:
        plan = self.plan(ref)
        problems = Problems()
        reader = BodyReader(body, problems)
        values = self._read_plan_common(reader, plan)
        for fixed in ("interval_unit", "interval_length"):
            if reader.has(fixed) and body[fixed] != getattr(plan, fixed):
                problems.add(fixed, "cannot be changed after the plan is created")
        prices: list[PlanPrice] | None = values["prices"]
        if prices is not None:
            offered = {p.currency for p in prices}
            for add_on in self.plan_add_ons(plan):
                priced = {p.currency for p in add_on.prices} | {p.currency for t in add_on.tiers for p in t.prices}
                if add_on.state == "active" and priced - offered:
                    problems.add(
                        "currencies",
                        f"must include {', '.join(sorted(priced - offered))} (add-on {add_on.code} is priced in it)",
                    )
        problems.raise_if_any()
        for name in (
            "code",
            "name",
            "description",
            "accounting_code",
            "auto_renew",
            "total_billing_cycles",
            "trial_unit",
            "trial_length",
        ):
            if values[name] is not None:
                setattr(plan, name, values[name])
        if prices is not None:
            plan.prices = prices
        if values["custom_fields"] is not None:
            plan.custom_fields = self._merge_custom_fields(plan.custom_fields, values["custom_fields"])
        plan.updated_at = self.now()
        return plan

    def remove_plan(self, ref: str) -> PlanRecord:
        plan = self.plan(ref)
        if plan.state != "active":
            raise validation("plan", "is already inactive")
        now = self.now()
        plan.state, plan.deleted_at, plan.updated_at = "inactive", now, now
        return plan

    # ---- add-ons ------------------------------------------------------------------------------------
    def _read_prices(self, reader: BodyReader, name: str, plan: PlanRecord, *, usage: bool) -> list[Price] | None:
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

    @staticmethod
    def _check_tier_ends(ends: list[int | None], param: str, problems: Problems) -> None:
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

    def _read_tiers(self, reader: BodyReader, plan: PlanRecord, *, usage: bool) -> list[Tier] | None:
        entries = reader.objects("tiers")
        if entries is None:
            return None
        tiers: list[Tier] = []
        for prefix, entry in entries:
            item = BodyReader(entry, reader.problems, prefix)
            end = item.integer("ending_quantity", minimum=1, maximum=OPEN_TIER_END)
            prices = self._read_prices(item, "currencies", plan, usage=usage)
            if not prices:
                if not entry.get("currencies"):  # else each bad entry has said what is wrong with it
                    reader.problems.add(f"{prefix}currencies", "can't be blank")
                continue
            tiers.append(Tier(None if end is None or end >= OPEN_TIER_END else end, prices))
        if len(tiers) == len(entries):
            self._check_tier_ends([t.ending_quantity for t in tiers], reader.param("tiers"), reader.problems)
        return tiers

    def _read_measured_unit(self, reader: BodyReader) -> str | None:
        unit_id = reader.string("measured_unit_id", max_length=13)
        unit_name = reader.string("measured_unit_name", max_length=255)
        if unit_id is not None:  # the id wins when both are given
            unit = self.units.get(unit_id)
            if unit is None:
                reader.problems.add(reader.param("measured_unit_id"), f"{unit_id} is not a measured unit")
                return None
            return unit.id
        if unit_name is not None:
            named = next((u for u in self.units.values() if u.name == unit_name), None)
            if named is None:
                reader.problems.add(reader.param("measured_unit_name"), f"{unit_name} is not a measured unit")
                return None
            return named.id
        return None

    def _read_add_on(self, reader: BodyReader, plan: PlanRecord, taken: set[str]) -> AddOnRecord | None:
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
            id=self.ids.id(),
            plan_id=plan.id,
            code=code or "",
            name=name or "",
            add_on_type=add_on_type,
            tier_type=tier_type,
            created_at=self.now(),
            updated_at=self.now(),
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
            record.measured_unit_id = self._read_measured_unit(reader)
            if record.measured_unit_id is None and not (
                reader.has("measured_unit_id") or reader.has("measured_unit_name")
            ):
                problems.add(reader.param("measured_unit_id"), "or measured_unit_name is required for usage add-ons")
        self._read_pricing(reader, record, plan)
        return record if len(problems.items) == before else None

    def _read_pricing(self, reader: BodyReader, record: AddOnRecord, plan: PlanRecord) -> None:
        """currencies for flat pricing, tiers otherwise, usage_percentage for percentage usage."""
        usage = record.add_on_type == "usage"
        percentage = record.usage_type == "percentage"
        prices = self._read_prices(reader, "currencies", plan, usage=usage)
        tiers = self._read_tiers(reader, plan, usage=usage)
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

    def create_add_on(self, plan_ref: str, body: Mapping[str, Any]) -> AddOnRecord:
        plan = self.plan(plan_ref)
        problems = Problems()
        record = self._read_add_on(BodyReader(body, problems), plan, {a.code for a in self.plan_add_ons(plan)})
        problems.raise_if_any()
        assert record is not None
        record.seq = self.ids.seq()
        self.add_ons[record.id] = record
        return record

    def update_add_on(self, plan_ref: str, ref: str, body: Mapping[str, Any]) -> AddOnRecord:
        plan = self.plan(plan_ref)
        record = self.add_on(plan, ref)
        problems = Problems()
        reader = BodyReader(body, problems)
        for fixed in ("add_on_type", "usage_type", "tier_type", "usage_timeframe"):
            if reader.has(fixed) and body[fixed] != getattr(record, fixed):
                problems.add(fixed, "cannot be changed; create an add-on with a new code instead")
        problems.raise_if_any()
        code = reader.string("code", max_length=50, pattern=CODE_PATTERN, flags=re.IGNORECASE)
        if code is not None and any(a.code == code and a is not record for a in self.plan_add_ons(plan)):
            problems.add("code", "has already been taken")
        name = reader.string("name", max_length=255)
        calculation = (
            reader.string("usage_calculation_type", choices=("cumulative", "last_in_period"))
            if record.add_on_type == "usage"
            else None
        )
        unit_id = self._read_measured_unit(reader) if record.add_on_type == "usage" else None
        optional = reader.boolean("optional")
        default_quantity = reader.integer("default_quantity", minimum=0)
        display_quantity = reader.boolean("display_quantity")
        # pricing is replaced only when sent; validate the replacement as on create
        draft = AddOnRecord(**{**record.__dict__, "prices": list(record.prices), "tiers": list(record.tiers)})
        if reader.has("currencies") or reader.has("tiers") or reader.has("usage_percentage"):
            self._read_pricing(reader, draft, plan)
        problems.raise_if_any()
        record.code = code or record.code
        record.name = name or record.name
        record.usage_calculation_type = calculation or record.usage_calculation_type
        record.measured_unit_id = unit_id or record.measured_unit_id
        record.optional = record.optional if optional is None else optional
        record.default_quantity = record.default_quantity if default_quantity is None else default_quantity
        record.display_quantity = record.display_quantity if display_quantity is None else display_quantity
        record.prices, record.tiers, record.usage_percentage = draft.prices, draft.tiers, draft.usage_percentage
        record.updated_at = self.now()
        return record

    def remove_add_on(self, plan_ref: str, ref: str) -> AddOnRecord:
        record = self.add_on(self.plan(plan_ref), ref)
        if record.state != "active":
            raise validation("add_on", "is already inactive")
        now = self.now()
        record.state, record.deleted_at, record.updated_at = "inactive", now, now
        return record

    # ---- accounts -----------------------------------------------------------------------------------
    def _read_account(self, reader: BodyReader) -> AccountRecord | None:
        before = len(reader.problems.items)
        code = reader.string("code", required=True, max_length=50)
        if code is not None and any(a.code == code for a in self.accounts.values()):
            reader.problems.add(reader.param("code"), "has already been taken")
        now = self.now()
        record = AccountRecord(
            id=self.ids.id(),
            code=code or "",
            created_at=now,
            updated_at=now,
            seq=0,
            email=reader.string("email", max_length=255),
            first_name=reader.string("first_name", max_length=255),
            last_name=reader.string("last_name", max_length=255),
            company=reader.string("company", max_length=100),
            username=reader.string("username", max_length=255),
            custom_fields=self._read_custom_fields(reader, "account") or [],
        )
        return record if len(reader.problems.items) == before else None

    def create_account(self, body: Mapping[str, Any]) -> AccountRecord:
        problems = Problems()
        record = self._read_account(BodyReader(body, problems))
        problems.raise_if_any()
        assert record is not None
        record.seq = self.ids.seq()
        self.accounts[record.id] = record
        return record

    def update_account(self, ref: str, body: Mapping[str, Any]) -> AccountRecord:
        record = self.account(ref)
        problems = Problems()
        reader = BodyReader(body, problems)
        if reader.has("code") and body["code"] != record.code:
            problems.add("code", "cannot be changed")
        values = {
            "email": reader.string("email", max_length=255),
            "first_name": reader.string("first_name", max_length=255),
            "last_name": reader.string("last_name", max_length=255),
            "company": reader.string("company", max_length=100),
            "username": reader.string("username", max_length=255),
        }
        custom = self._read_custom_fields(reader, "account")
        problems.raise_if_any()
        for name, value in values.items():
            if reader.has(name):
                setattr(record, name, value)
        if custom is not None:
            record.custom_fields = self._merge_custom_fields(record.custom_fields, custom)
        record.updated_at = self.now()
        return record

    # ---- subscriptions ------------------------------------------------------------------------------
    def _price_add_on(
        self, reader: BodyReader, add_on: AddOnRecord, currency: str, quantity: int
    ) -> SubscriptionAddOnRecord | None:
        """The plan add-on priced in the subscription's currency, or the subscription's own price if sent."""
        problems = reader.problems
        unit_price: Price | None = None
        tiers: list[tuple[int | None, Price]] = []
        usage = add_on.add_on_type == "usage"
        if add_on.usage_type == "percentage":
            pass
        elif add_on.tier_type == "flat":
            exact = reader.money("unit_amount_decimal", places=9) if usage else None
            amount = reader.money("unit_amount", places=2)
            if exact is not None or amount is not None:
                unit_price = Price(currency, exact if exact is not None else amount or Decimal(0), exact is not None)
            else:
                plan_price = next((p for p in add_on.prices if p.currency == currency), None)
                if plan_price is None:
                    problems.add(reader.param("code"), f"add-on {add_on.code} has no price in {currency}")
                    return None
                unit_price = Price(currency, plan_price.amount, plan_price.decimal)
        else:
            entries = reader.objects("tiers")
            if entries is not None:
                for prefix, entry in entries:
                    item = BodyReader(entry, problems, prefix)
                    end = item.integer("ending_quantity", minimum=1, maximum=OPEN_TIER_END)
                    exact = item.money("unit_amount_decimal", places=9) if usage else None
                    amount = item.money("unit_amount", places=2)
                    if exact is None and amount is None:
                        problems.add(f"{prefix}unit_amount", "can't be blank")
                        continue
                    price = Price(currency, exact if exact is not None else amount or Decimal(0), exact is not None)
                    tiers.append((None if end is None or end >= OPEN_TIER_END else end, price))
                self._check_tier_ends([end for end, _ in tiers], reader.param("tiers"), problems)
            else:
                for tier in add_on.tiers:
                    tier_price = tier.price(currency)
                    if tier_price is None:
                        problems.add(reader.param("code"), f"add-on {add_on.code} has no tier price in {currency}")
                        return None
                    tiers.append((tier.ending_quantity, Price(currency, tier_price.amount, tier_price.decimal)))
        now = self.now()
        return SubscriptionAddOnRecord(
            id=self.ids.id(),
            add_on_id=add_on.id,
            quantity=quantity,
            tier_type=add_on.tier_type,
            created_at=now,
            updated_at=now,
            usage_calculation_type=add_on.usage_calculation_type,
            usage_timeframe=add_on.usage_timeframe,
            usage_percentage=add_on.usage_percentage,
            unit_price=unit_price,
            tiers=tiers,
        )

    def _read_subscription_add_ons(
        self, reader: BodyReader, plan: PlanRecord, currency: str
    ) -> list[SubscriptionAddOnRecord]:
        result: list[SubscriptionAddOnRecord] = []
        seen: set[str] = set()
        for prefix, entry in reader.objects("add_ons") or []:
            item = BodyReader(entry, reader.problems, prefix)
            code = item.string("code", required=True)
            quantity = item.integer("quantity", minimum=0)
            if code is None:
                continue
            add_on = next((a for a in self.plan_add_ons(plan) if a.code == code and a.state == "active"), None)
            if add_on is None:
                reader.problems.add(f"{prefix}code", f"{code} is not an add-on of plan {plan.code}")
                continue
            if code in seen:
                reader.problems.add(f"{prefix}code", f"{code} is listed twice")
                continue
            seen.add(code)
            if add_on.add_on_type == "usage" and quantity not in (None, 1):
                reader.problems.add(f"{prefix}quantity", "must be 1 for usage add-ons")
                continue
            priced = self._price_add_on(item, add_on, currency, 1 if quantity is None else quantity)
            if priced is not None:
                result.append(priced)
        return result

    def create_subscription(self, body: Mapping[str, Any]) -> SubscriptionRecord:
        problems = Problems()
        reader = BodyReader(body, problems)
        plan_code = reader.string("plan_code")
        plan_id = reader.string("plan_id")
        currency = reader.string("currency", required=True, pattern=CURRENCY_PATTERN)
        plan: PlanRecord | None = None
        if plan_id is not None:
            plan = self.plans.get(plan_id)
            if plan is None:
                problems.add("plan_id", f"{plan_id} is not a plan")
        elif plan_code is not None:
            plan = next((p for p in self.plans.values() if p.code == plan_code), None)
            if plan is None:
                problems.add("plan_code", f"{plan_code} is not a plan")
        else:
            problems.add("plan_code", "can't be blank")
        if plan is not None and plan.state != "active":
            problems.add("plan_code", f"plan {plan.code} is inactive")
        plan_price = plan.price(currency) if plan is not None and currency is not None else None
        if plan is not None and currency is not None and plan_price is None:
            problems.add("currency", f"{currency} is not offered by plan {plan.code}")
        account_reader = reader.nested("account")
        account: AccountRecord | None = None
        new_account: AccountRecord | None = None
        if account_reader is None:
            problems.add("account", "can't be blank")
        else:
            code = account_reader.string("code", required=True, max_length=50)
            account = next((a for a in self.accounts.values() if a.code == code), None) if code else None
            if code is not None and account is None:
                new_account = self._read_account(account_reader)
        collection = reader.string("collection_method", choices=("automatic", "manual")) or "automatic"
        unit_amount = reader.money("unit_amount", places=2)
        quantity = reader.integer("quantity", minimum=1)
        starts_at = reader.time("starts_at")
        auto_renew = reader.boolean("auto_renew")
        cycles = reader.integer("total_billing_cycles", minimum=1)
        net_terms = reader.integer("net_terms", minimum=0)
        po_number = reader.string("po_number", max_length=50)
        custom_fields = self._read_custom_fields(reader, "subscription") or []
        add_ons = (
            self._read_subscription_add_ons(reader, plan, currency)
            if plan is not None and plan_price is not None and currency is not None
            else []
        )
        problems.raise_if_any()
        assert plan is not None and plan_price is not None and currency is not None
        if new_account is not None:
            new_account.seq = self.ids.seq()
            self.accounts[new_account.id] = new_account
            account = new_account
        assert account is not None
        now = self.now()
        start = starts_at if starts_at is not None and starts_at > now else now
        subscription = SubscriptionRecord(
            id=self.ids.id(),
            uuid=self.ids.uuid(),
            account_id=account.id,
            plan_id=plan.id,
            state="future" if start > now else "active",
            currency=currency,
            unit_amount=plan_price.unit_amount if unit_amount is None else unit_amount,
            quantity=quantity or 1,
            collection_method=collection,
            interval_unit=plan.interval_unit,
            interval_length=plan.interval_length,
            anchor=start,
            period=0,
            current_period_started_at=start,
            current_period_ends_at=add_interval(start, plan.interval_unit, plan.interval_length),
            created_at=now,
            updated_at=now,
            seq=self.ids.seq(),
            auto_renew=plan.auto_renew if auto_renew is None else auto_renew,
            total_billing_cycles=plan.total_billing_cycles if cycles is None else cycles,
            net_terms=net_terms or 0,
            add_ons=add_ons,
            custom_fields=custom_fields,
            activated_at=None if start > now else now,
            po_number=po_number,
        )
        self.subscriptions[subscription.id] = subscription
        return subscription

    def term_ends_at(self, s: SubscriptionRecord) -> datetime:
        if s.total_billing_cycles is None:
            return s.current_period_ends_at
        periods_left = s.total_billing_cycles - s.period % s.total_billing_cycles
        return add_interval(s.anchor, s.interval_unit, (s.period + periods_left) * s.interval_length)

    def term_started_at(self, s: SubscriptionRecord) -> datetime:
        if s.total_billing_cycles is None:
            return s.current_period_started_at
        first = s.period - s.period % s.total_billing_cycles
        return add_interval(s.anchor, s.interval_unit, first * s.interval_length)

    def cancel_subscription(self, ref: str, body: Mapping[str, Any]) -> SubscriptionRecord:
        s = self.subscription(ref)
        problems = Problems()
        timeframe = BodyReader(body, problems).string("timeframe", choices=("bill_date", "term_end")) or "term_end"
        problems.raise_if_any()
        if s.state not in ("active", "future"):
            raise validation("subscription", f"is {s.state}; only active or future subscriptions can be canceled")
        now = self.now()
        if s.state == "future":
            # a future subscription that is canceled never starts
            s.expires_at = s.current_period_started_at
        else:
            s.expires_at = s.current_period_ends_at if timeframe == "bill_date" else self.term_ends_at(s)
        s.state, s.canceled_at, s.updated_at = "canceled", now, now
        return s

    def terminate_subscription(self, ref: str, *, refund: str, charge: bool) -> SubscriptionRecord:
        s = self.subscription(ref)
        if s.state == "expired":
            raise validation("subscription", "is already expired")
        now = self.now()
        if not charge:
            # charge=false: Recurly zeroes the period's unbilled usage with one negative record per add-on
            for sub_add_on in s.add_ons:
                unbilled = [
                    u
                    for u in self.usage.values()
                    if u.subscription_id == s.id
                    and u.add_on_id == sub_add_on.add_on_id
                    and u.billed_at is None
                    and u.usage_timestamp >= s.current_period_started_at
                ]
                total = sum((u.amount for u in unbilled), Decimal(0))
                if total:
                    add_on = self.add_ons[sub_add_on.add_on_id]
                    self._store_usage(s, add_on, sub_add_on, -total, None, now, now)
        s.state, s.expires_at, s.updated_at, s.expiration_reason = "expired", now, now, "terminated"
        if s.canceled_at is None:
            s.canceled_at = now
        return s

    def pause_subscription(self, ref: str, body: Mapping[str, Any]) -> SubscriptionRecord:
        """PUT /subscriptions/{id}/pause (ROAS `pause_subscription`): the pause starts at the next renewal and
        lasts ``remaining_pause_cycles`` periods; 0 cancels a pending pause, or resumes a paused subscription."""
        s = self.subscription(ref)
        problems = Problems()
        cycles = BodyReader(body, problems).integer("remaining_pause_cycles", minimum=0)
        if cycles is None and not problems:
            problems.add("remaining_pause_cycles", "is required")
        problems.raise_if_any()
        assert cycles is not None
        if s.state not in ("active", "paused"):
            raise validation("subscription", f"is {s.state}; only active or paused subscriptions can be paused")
        if cycles == 0 and s.state == "paused":
            return self.resume_subscription(ref)
        now = self.now()
        if cycles == 0:
            s.paused_at, s.remaining_pause_cycles = None, None
        else:
            s.paused_at = s.paused_at if s.state == "paused" else s.current_period_ends_at
            s.remaining_pause_cycles = cycles
        s.updated_at = now
        return s

    def resume_subscription(self, ref: str) -> SubscriptionRecord:
        """PUT /subscriptions/{id}/resume: a paused subscription is active again at once, in a new period."""
        s = self.subscription(ref)
        if s.state != "paused":
            raise validation("subscription", f"is {s.state}; only a paused subscription can be resumed")
        self._resume(s, self.now())
        return s

    def pause_now(self, ref: str, cycles: int) -> SubscriptionRecord:
        """Seeding: a subscription whose pause took effect at its last renewal and lasts ``cycles`` periods
        counted from the current one (as if paused earlier with ``PUT …/pause``)."""
        s = self.subscription(ref)
        if s.state != "active" or cycles < 1:
            raise validation("subscription", f"is {s.state}; only an active subscription can be paused, for 1+ cycles")
        s.state, s.paused_at, s.remaining_pause_cycles = "paused", s.current_period_started_at, cycles
        s.updated_at = self.now()
        return s

    def _resume(self, s: SubscriptionRecord, when: datetime) -> None:
        s.state, s.paused_at, s.remaining_pause_cycles, s.updated_at = "active", None, None, when
        # a resumed subscription starts a new billing period then
        s.anchor, s.period, s.current_period_started_at = when, 0, when
        s.current_period_ends_at = add_interval(when, s.interval_unit, s.interval_length)

    def advance(self) -> None:
        """Bring every subscription to the clock's now (see module docstring)."""
        now = self.now()
        for s in self.subscriptions.values():
            if s.state == "future" and s.current_period_started_at <= now:
                start = s.current_period_started_at
                s.state, s.activated_at, s.updated_at = "active", start, start
            # a canceled subscription keeps billing period by period until it expires (term_end of a long term)
            while s.state in ("active", "canceled", "paused") and s.current_period_ends_at <= now:
                end = s.current_period_ends_at
                if s.state == "canceled" and s.expires_at is not None and end >= s.expires_at:
                    break
                cycles = s.total_billing_cycles
                if s.state == "active" and cycles is not None and not s.auto_renew and (s.period + 1) % cycles == 0:
                    s.state, s.expires_at, s.updated_at, s.expiration_reason = "expired", end, end, "nonrenewing"
                    break
                if s.state == "paused":
                    s.remaining_pause_cycles = (s.remaining_pause_cycles or 1) - 1
                    if s.remaining_pause_cycles <= 0:
                        self._resume(s, end)  # the pause is over at this renewal
                        continue
                elif s.state == "active" and s.paused_at is not None and end >= s.paused_at:
                    s.state = "paused"  # a pause asked for starts at the renewal
                s.period += 1
                s.current_period_started_at = end
                s.current_period_ends_at = add_interval(s.anchor, s.interval_unit, (s.period + 1) * s.interval_length)
                s.updated_at = end
            if s.state == "canceled" and s.expires_at is not None and s.expires_at <= now:
                s.state, s.updated_at = "expired", s.expires_at
                s.expiration_reason = s.expiration_reason or "canceled"

    def subscriptions_in(self, state: str | None, account_id: str | None = None) -> list[SubscriptionRecord]:
        if state is not None and state not in SUBSCRIPTION_FILTERS:
            raise RecurlyProblem(400, "bad_request", f"state must be one of {', '.join(SUBSCRIPTION_FILTERS)}")
        result = []
        for s in self.subscriptions.values():
            if account_id is not None and s.account_id != account_id:
                continue
            if state == "live":
                matches = s.state in LISTED_AS_LIVE
            elif state == "in_trial":
                matches = False  # the emulator starts no trials
            else:
                matches = state is None or s.state == state
            if matches:
                result.append(s)
        return result

    # ---- usage --------------------------------------------------------------------------------------
    def _usage_target(
        self, sub_ref: str, add_on_ref: str
    ) -> tuple[SubscriptionRecord, AddOnRecord, SubscriptionAddOnRecord]:
        s = self.subscription(sub_ref)
        plan = self.plans[s.plan_id]
        by_sub_add_on = next((a for a in s.add_ons if a.id == add_on_ref), None)
        add_on = self.add_ons[by_sub_add_on.add_on_id] if by_sub_add_on else self.add_on(plan, add_on_ref)
        attached = next((a for a in s.add_ons if a.add_on_id == add_on.id), None)
        if attached is None:
            raise validation("add_on_id", f"add-on {add_on.code} is not on subscription {s.uuid}")
        return s, add_on, attached

    def _store_usage(
        self,
        s: SubscriptionRecord,
        add_on: AddOnRecord,
        attached: SubscriptionAddOnRecord,
        amount: Decimal,
        merchant_tag: str | None,
        usage_timestamp: datetime,
        recording_timestamp: datetime,
    ) -> UsageRecord:
        now = self.now()
        record = UsageRecord(
            id=self.ids.id(),
            subscription_id=s.id,
            add_on_id=add_on.id,
            amount=amount,
            merchant_tag=merchant_tag,
            usage_type=add_on.usage_type,
            tier_type=attached.tier_type,
            measured_unit_id=add_on.measured_unit_id,
            usage_percentage=attached.usage_percentage,
            unit_price=attached.unit_price,
            tiers=attached.tiers_wire(),
            usage_timestamp=usage_timestamp,
            recording_timestamp=recording_timestamp,
            created_at=now,
            updated_at=now,
            seq=self.ids.seq(),
        )
        self.usage[record.id] = record
        return record

    @staticmethod
    def _read_amount(reader: BodyReader, *, required: bool) -> Decimal | None:
        raw = reader.body.get("amount")
        if raw is None:
            if required:
                reader.problems.add("amount", "can't be blank")
            return None
        amount = reader.money("amount", places=30, minimum=-MAX_USAGE_AMOUNT, maximum=MAX_USAGE_AMOUNT)
        # without the Decimal Quantity feature the API strips the digits after the decimal point
        return None if amount is None else amount.to_integral_value(rounding=ROUND_DOWN)

    def _check_usage_time(self, s: SubscriptionRecord, when: datetime | None, problems: Problems) -> None:
        if when is not None and (s.activated_at is None or when < s.activated_at):
            started = fmt_time(s.activated_at) if s.activated_at else "not yet"
            problems.add("usage_timestamp", f"must not be before the subscription was activated ({started})")

    @staticmethod
    def _check_correction(s: SubscriptionRecord, add_on: AddOnRecord, when: datetime, problems: Problems) -> None:
        # usage dated into an invoiced period becomes a usage correction on the next invoice, for fixed and tiered
        # add-ons only: it is rejected for volume and stairstep (reference/recurly-api.md §2.6)
        if add_on.tier_type in ("volume", "stairstep") and s.billed_through is not None and when < s.billed_through:
            problems.add(
                "usage_timestamp",
                f"falls in a period already invoiced; usage corrections are not supported for {add_on.tier_type} "
                "add-ons",
            )

    def create_usage(self, sub_ref: str, add_on_ref: str, body: Mapping[str, Any]) -> UsageRecord:
        s, add_on, attached = self._usage_target(sub_ref, add_on_ref)
        if add_on.add_on_type != "usage":
            raise validation("add_on_id", f"add-on {add_on.code} is not a usage add-on")
        if s.state == "expired":
            raise validation("subscription", f"{s.uuid} is expired; usage cannot be recorded on it")
        problems = Problems()
        reader = BodyReader(body, problems)
        amount = self._read_amount(reader, required=True)
        merchant_tag = reader.string("merchant_tag")
        now = self.now()
        usage_timestamp = reader.time("usage_timestamp")
        recording_timestamp = reader.time("recording_timestamp")
        self._check_usage_time(s, usage_timestamp or now, problems)
        self._check_correction(s, add_on, usage_timestamp or now, problems)
        problems.raise_if_any()
        assert amount is not None
        return self._store_usage(
            s, add_on, attached, amount, merchant_tag, usage_timestamp or now, recording_timestamp or now
        )

    def update_usage(self, ref: str, body: Mapping[str, Any]) -> UsageRecord:
        record = self.usage_record(ref)
        s = self.subscriptions[record.subscription_id]
        problems = Problems()
        reader = BodyReader(body, problems)
        amount = self._read_amount(reader, required=False)
        merchant_tag = reader.string("merchant_tag")
        usage_timestamp = reader.time("usage_timestamp")
        recording_timestamp = reader.time("recording_timestamp")
        if record.billed_at is not None:
            changed = [
                name
                for name, new, old in (
                    ("amount", amount, record.amount),
                    ("usage_timestamp", usage_timestamp, record.usage_timestamp),
                    ("recording_timestamp", recording_timestamp, record.recording_timestamp),
                )
                if new is not None and new != old
            ]
            for name in changed:
                problems.add(name, "cannot be changed on billed usage; only merchant_tag can")
        self._check_usage_time(s, usage_timestamp, problems)
        problems.raise_if_any()
        if amount is not None:
            record.amount = amount
        if reader.has("merchant_tag"):
            record.merchant_tag = merchant_tag
        record.usage_timestamp = usage_timestamp or record.usage_timestamp
        record.recording_timestamp = recording_timestamp or record.recording_timestamp
        record.updated_at = self.now()
        return record

    def remove_usage(self, ref: str) -> None:
        record = self.usage_record(ref)
        if record.billed_at is not None:
            raise validation("usage", "has been billed and cannot be deleted")
        del self.usage[record.id]

    def usage_of(self, sub_ref: str, add_on_ref: str, billing_status: str) -> list[UsageRecord]:
        s, add_on, _attached = self._usage_target(sub_ref, add_on_ref)
        if billing_status not in ("unbilled", "billed", "all"):
            raise RecurlyProblem(400, "bad_request", "billing_status must be unbilled, billed or all")
        return [
            u
            for u in self.usage.values()
            if u.subscription_id == s.id
            and u.add_on_id == add_on.id
            and (billing_status == "all" or (billing_status == "billed") == (u.billed_at is not None))
        ]

    def bill(self, subscription_uuid: str | None) -> int:
        target: SubscriptionRecord | None = None
        if subscription_uuid is not None:
            uuid = subscription_uuid.removeprefix("uuid-")
            target = next((s for s in self.subscriptions.values() if s.uuid == uuid), None)
            if target is None:
                raise not_found("Subscription", f"uuid-{uuid}")
        now = self.now()
        billed = 0
        for s in self.subscriptions.values():
            if target is None or s is target:
                s.billed_through = now
        for record in self.usage.values():
            if record.billed_at is None and (target is None or record.subscription_id == target.id):
                record.billed_at, record.updated_at = now, now
                billed += 1
        return billed

    # ---- wire format ----------------------------------------------------------------------------------
    def site_wire(self) -> dict[str, Any]:
        return {
            "id": self.site_id,
            "object": "site",
            "subdomain": "sandbox",
            "public_api_key": f"ewr1-{self.site_id}",
            "mode": "sandbox",
            "address": {"country": "US"},
            "settings": {
                "billing_address_requirement": "none",
                "accepted_currencies": sorted(
                    {p.currency for plan in self.plans.values() for p in plan.prices} | {"USD"}
                ),
                "default_currency": "USD",
            },
            "features": [],
            "created_at": fmt_time(self.site_created_at),
            "updated_at": fmt_time(self.site_created_at),
            "deleted_at": None,
        }

    @staticmethod
    def unit_wire(u: MeasuredUnitRecord) -> dict[str, Any]:
        return {
            "id": u.id,
            "object": "measured_unit",
            "name": u.name,
            "display_name": u.display_name,
            "state": u.state,
            "description": u.description,
            "created_at": fmt_time(u.created_at),
            "updated_at": fmt_time(u.updated_at),
            "deleted_at": fmt_time(u.deleted_at),
        }

    @staticmethod
    def plan_wire(p: PlanRecord) -> dict[str, Any]:
        return {
            "id": p.id,
            "object": "plan",
            "code": p.code,
            "state": p.state,
            "name": p.name,
            "description": p.description,
            "interval_unit": p.interval_unit,
            "interval_length": p.interval_length,
            "trial_unit": p.trial_unit,
            "trial_length": p.trial_length,
            "trial_requires_billing_info": True,
            "total_billing_cycles": p.total_billing_cycles,
            "auto_renew": p.auto_renew,
            "pricing_model": "fixed",
            "accounting_code": p.accounting_code,
            "tax_exempt": False,
            "custom_fields": [dict(f) for f in p.custom_fields],
            "currencies": [
                {"currency": c.currency, "setup_fee": float(c.setup_fee), "unit_amount": float(c.unit_amount)}
                for c in p.prices
            ],
            "allow_any_item_on_subscriptions": False,
            "created_at": fmt_time(p.created_at),
            "updated_at": fmt_time(p.updated_at),
            "deleted_at": fmt_time(p.deleted_at),
        }

    @staticmethod
    def add_on_wire(a: AddOnRecord) -> dict[str, Any]:
        return {
            "id": a.id,
            "plan_id": a.plan_id,
            "object": "add_on",
            "code": a.code,
            "state": a.state,
            "name": a.name,
            "add_on_type": a.add_on_type,
            "usage_type": a.usage_type,
            "usage_calculation_type": a.usage_calculation_type,
            "usage_timeframe": a.usage_timeframe,
            "usage_percentage": None if a.usage_percentage is None else float(a.usage_percentage),
            "measured_unit_id": a.measured_unit_id,
            "accounting_code": a.accounting_code,
            "display_quantity": a.display_quantity,
            "default_quantity": a.default_quantity,
            "optional": a.optional,
            # the schema allows no empty list here: tiered pricing has no flat currencies at all
            "currencies": [p.wire() for p in a.prices] or None,
            "tier_type": a.tier_type,
            "tiers": [t.wire() for t in a.tiers],
            "created_at": fmt_time(a.created_at),
            "updated_at": fmt_time(a.updated_at),
            "deleted_at": fmt_time(a.deleted_at),
        }

    def account_wire(self, a: AccountRecord) -> dict[str, Any]:
        states = {s.state for s in self.subscriptions.values() if s.account_id == a.id}
        return {
            "id": a.id,
            "object": "account",
            "code": a.code,
            "state": a.state,
            "email": a.email,
            "first_name": a.first_name,
            "last_name": a.last_name,
            "company": a.company,
            "username": a.username,
            "bill_to": "self",
            "tax_exempt": False,
            "has_live_subscription": bool(states & ACCOUNT_LIVE_STATES),
            "has_active_subscription": "active" in states,
            "has_future_subscription": "future" in states,
            "has_canceled_subscription": "canceled" in states,
            "has_paused_subscription": "paused" in states,
            "has_past_due_invoice": False,
            "custom_fields": [dict(f) for f in a.custom_fields],
            "created_at": fmt_time(a.created_at),
            "updated_at": fmt_time(a.updated_at),
            "deleted_at": fmt_time(a.deleted_at),
        }

    def subscription_wire(self, s: SubscriptionRecord) -> dict[str, Any]:
        account = self.accounts[s.account_id]
        plan = self.plans[s.plan_id]
        add_ons = []
        for attached in s.add_ons:
            add_on = self.add_ons[attached.add_on_id]
            add_ons.append(
                {
                    "id": attached.id,
                    "object": "subscription_add_on",
                    "subscription_id": s.id,
                    "add_on": {
                        "id": add_on.id,
                        "object": "add_on",
                        "code": add_on.code,
                        "name": add_on.name,
                        "add_on_type": add_on.add_on_type,
                        "usage_type": add_on.usage_type,
                        "usage_percentage": None if add_on.usage_percentage is None else float(add_on.usage_percentage),
                        "measured_unit_id": add_on.measured_unit_id,
                        "accounting_code": add_on.accounting_code,
                    },
                    "add_on_source": "plan_add_on",
                    "quantity": attached.quantity,
                    **(
                        attached.unit_price.wire(with_currency=False)
                        if attached.unit_price
                        else {"unit_amount": None, "unit_amount_decimal": None}
                    ),
                    "tier_type": attached.tier_type,
                    "usage_calculation_type": attached.usage_calculation_type,
                    "usage_timeframe": attached.usage_timeframe,
                    "tiers": attached.tiers_wire() or None,
                    "usage_percentage": None if attached.usage_percentage is None else float(attached.usage_percentage),
                    "created_at": fmt_time(attached.created_at),
                    "updated_at": fmt_time(attached.updated_at),
                    "expired_at": fmt_time(s.expires_at) if s.state == "expired" else None,
                }
            )
        live = s.state in ("active", "canceled", "paused")
        return {
            "id": s.id,
            "object": "subscription",
            "uuid": s.uuid,
            "account": {
                "id": account.id,
                "object": "account",
                "code": account.code,
                "email": account.email,
                "first_name": account.first_name,
                "last_name": account.last_name,
                "company": account.company,
                "parent_account_id": None,
                "bill_to": "self",
            },
            "plan": {"id": plan.id, "object": "plan", "code": plan.code, "name": plan.name},
            "state": s.state,
            "currency": s.currency,
            "unit_amount": float(s.unit_amount),
            "quantity": s.quantity,
            "add_ons": add_ons,
            "add_ons_total": 0.0,
            "subtotal": float(s.unit_amount * s.quantity),
            "collection_method": s.collection_method,
            "net_terms": s.net_terms,
            "po_number": s.po_number,
            "auto_renew": s.auto_renew,
            "total_billing_cycles": s.total_billing_cycles,
            "remaining_billing_cycles": (
                None if s.total_billing_cycles is None else s.total_billing_cycles - s.period % s.total_billing_cycles
            ),
            "custom_fields": [dict(f) for f in s.custom_fields],
            "activated_at": fmt_time(s.activated_at),
            "canceled_at": fmt_time(s.canceled_at),
            "expires_at": fmt_time(s.expires_at),
            "expiration_reason": s.expiration_reason if s.state == "expired" else None,
            "current_period_started_at": fmt_time(s.current_period_started_at),
            "current_period_ends_at": fmt_time(s.current_period_ends_at),
            "current_term_started_at": fmt_time(self.term_started_at(s)) if live or s.state == "future" else None,
            "current_term_ends_at": fmt_time(self.term_ends_at(s)) if live or s.state == "future" else None,
            "trial_started_at": None,
            "trial_ends_at": None,
            "paused_at": fmt_time(s.paused_at),
            "remaining_pause_cycles": s.remaining_pause_cycles,
            "created_at": fmt_time(s.created_at),
            "updated_at": fmt_time(s.updated_at),
        }

    @staticmethod
    def usage_wire(u: UsageRecord) -> dict[str, Any]:
        price = u.unit_price.wire(with_currency=False) if u.unit_price else {}
        return {
            "id": u.id,
            "object": "usage",
            "merchant_tag": u.merchant_tag,
            "amount": float(u.amount),
            "usage_type": u.usage_type,
            "tier_type": u.tier_type,
            "tiers": list(u.tiers) if u.tier_type != "flat" else [],
            "measured_unit_id": u.measured_unit_id,
            "usage_percentage": None if u.usage_percentage is None else float(u.usage_percentage),
            "unit_amount": price.get("unit_amount"),
            "unit_amount_decimal": price.get("unit_amount_decimal"),
            "recording_timestamp": fmt_time(u.recording_timestamp),
            "usage_timestamp": fmt_time(u.usage_timestamp),
            "billed_at": fmt_time(u.billed_at),
            "created_at": fmt_time(u.created_at),
            "updated_at": fmt_time(u.updated_at),
        }

    @staticmethod
    def field_definition_wire(d: CustomFieldDefinitionRecord) -> dict[str, Any]:
        return {
            "id": d.id,
            "object": "custom_field_definition",
            "related_type": d.related_type,
            "name": d.name,
            "user_access": d.user_access,
            "display_name": d.name,
            "tooltip": None,
            "created_at": fmt_time(d.created_at),
            "updated_at": fmt_time(d.created_at),
            "deleted_at": None,
        }
