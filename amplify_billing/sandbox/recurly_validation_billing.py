"""What the emulated Recurly site accepts for accounts, subscriptions and usage (the catalog: ``recurly_validation``).

As there, every reader collects all the problems of one request and raises them as one 422 before the state
changes anything, and takes ids in the order the site always has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from amplify_billing.sandbox.recurly_records import (
    AccountRecord,
    AddOnRecord,
    PlanPrice,
    PlanRecord,
    Price,
    SubscriptionAddOnRecord,
    SubscriptionRecord,
    UsageRecord,
)
from amplify_billing.sandbox.recurly_validation import (
    CURRENCY_PATTERN,
    Site,
    check_tier_ends,
    read_custom_fields,
)
from amplify_billing.sandbox.recurly_wire import OPEN_TIER_END, BodyReader, Problems, fmt_time, read_whole, validation

MAX_USAGE_AMOUNT = Decimal(999_999_999)  # whole-number quantities up to 9 digits


# ---- accounts -------------------------------------------------------------------------------------


def _read_account(site: Site, reader: BodyReader) -> AccountRecord | None:
    before = len(reader.problems.items)
    code = reader.string("code", required=True, max_length=50)
    if code is not None and any(a.code == code for a in site.accounts.values()):
        reader.problems.add(reader.param("code"), "has already been taken")
    now = site.now()
    record = AccountRecord(
        id=site.ids.id(),
        code=code or "",
        created_at=now,
        updated_at=now,
        seq=0,
        email=reader.string("email", max_length=255),
        first_name=reader.string("first_name", max_length=255),
        last_name=reader.string("last_name", max_length=255),
        company=reader.string("company", max_length=100),
        username=reader.string("username", max_length=255),
        custom_fields=read_custom_fields(site, reader, "account") or [],
    )
    return record if len(reader.problems.items) == before else None


def read_new_account(site: Site, body: Mapping[str, Any]) -> AccountRecord:
    return read_whole(body, lambda reader: _read_account(site, reader))


def read_account_update(
    site: Site, record: AccountRecord, body: Mapping[str, Any]
) -> tuple[dict[str, str | None], list[dict[str, str]] | None]:
    """The fields sent (a null clears one) and the custom fields sent, if any."""
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
    custom = read_custom_fields(site, reader, "account")
    problems.raise_if_any()
    return {name: value for name, value in values.items() if reader.has(name)}, custom


# ---- subscriptions --------------------------------------------------------------------------------


def _price_add_on(
    site: Site, reader: BodyReader, add_on: AddOnRecord, currency: str, quantity: int
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
            check_tier_ends([end for end, _ in tiers], reader.param("tiers"), problems)
        else:
            for tier in add_on.tiers:
                tier_price = tier.price(currency)
                if tier_price is None:
                    problems.add(reader.param("code"), f"add-on {add_on.code} has no tier price in {currency}")
                    return None
                tiers.append((tier.ending_quantity, Price(currency, tier_price.amount, tier_price.decimal)))
    now = site.now()
    return SubscriptionAddOnRecord(
        id=site.ids.id(),
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
    site: Site, reader: BodyReader, plan: PlanRecord, currency: str
) -> list[SubscriptionAddOnRecord]:
    result: list[SubscriptionAddOnRecord] = []
    seen: set[str] = set()
    for prefix, entry in reader.objects("add_ons") or []:
        item = BodyReader(entry, reader.problems, prefix)
        code = item.string("code", required=True)
        quantity = item.integer("quantity", minimum=0)
        if code is None:
            continue
        add_on = next((a for a in site.plan_add_ons(plan) if a.code == code and a.state == "active"), None)
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
        priced = _price_add_on(site, item, add_on, currency, 1 if quantity is None else quantity)
        if priced is not None:
            result.append(priced)
    return result


@dataclass(frozen=True)
class NewSubscription:
    """A checked subscription request: its plan, price and account (found, or ``new_account`` to store)."""

    plan: PlanRecord
    plan_price: PlanPrice
    currency: str
    account: AccountRecord | None
    new_account: AccountRecord | None
    collection_method: str
    unit_amount: Decimal | None
    quantity: int | None
    starts_at: datetime | None
    auto_renew: bool | None
    total_billing_cycles: int | None
    net_terms: int | None
    po_number: str | None
    custom_fields: list[dict[str, str]]
    add_ons: list[SubscriptionAddOnRecord]


def read_new_subscription(site: Site, body: Mapping[str, Any]) -> NewSubscription:
    problems = Problems()
    reader = BodyReader(body, problems)
    plan_code = reader.string("plan_code")
    plan_id = reader.string("plan_id")
    currency = reader.string("currency", required=True, pattern=CURRENCY_PATTERN)
    plan: PlanRecord | None = None
    if plan_id is not None:
        plan = site.plans.get(plan_id)
        if plan is None:
            problems.add("plan_id", f"{plan_id} is not a plan")
    elif plan_code is not None:
        plan = next((p for p in site.plans.values() if p.code == plan_code), None)
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
        account = next((a for a in site.accounts.values() if a.code == code), None) if code else None
        if code is not None and account is None:
            new_account = _read_account(site, account_reader)
    collection = reader.string("collection_method", choices=("automatic", "manual")) or "automatic"
    unit_amount = reader.money("unit_amount", places=2)
    quantity = reader.integer("quantity", minimum=1)
    starts_at = reader.time("starts_at")
    auto_renew = reader.boolean("auto_renew")
    cycles = reader.integer("total_billing_cycles", minimum=1)
    net_terms = reader.integer("net_terms", minimum=0)
    po_number = reader.string("po_number", max_length=50)
    custom_fields = read_custom_fields(site, reader, "subscription") or []
    add_ons = (
        _read_subscription_add_ons(site, reader, plan, currency)
        if plan is not None and plan_price is not None and currency is not None
        else []
    )
    problems.raise_if_any()
    assert plan is not None and plan_price is not None and currency is not None
    return NewSubscription(
        plan,
        plan_price,
        currency,
        account,
        new_account,
        collection,
        unit_amount,
        quantity,
        starts_at,
        auto_renew,
        cycles,
        net_terms,
        po_number,
        custom_fields,
        add_ons,
    )


def read_cancel_timeframe(body: Mapping[str, Any]) -> str:
    return read_whole(body, lambda reader: reader.string("timeframe", choices=("bill_date", "term_end")) or "term_end")


def read_pause_cycles(body: Mapping[str, Any]) -> int:
    def cycles(reader: BodyReader) -> int | None:
        value = reader.integer("remaining_pause_cycles", minimum=0)
        if value is None and not reader.problems:
            reader.problems.add("remaining_pause_cycles", "is required")
        return value

    return read_whole(body, cycles)


# ---- usage ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageFields:
    """A usage body's fields as sent (None: not sent; ``merchant_tag_sent``: a null clears the tag)."""

    amount: Decimal | None
    merchant_tag: str | None
    merchant_tag_sent: bool
    usage_timestamp: datetime | None
    recording_timestamp: datetime | None


def _read_amount(reader: BodyReader, *, required: bool) -> Decimal | None:
    raw = reader.body.get("amount")
    if raw is None:
        if required:
            reader.problems.add("amount", "can't be blank")
        return None
    amount = reader.money("amount", places=30, minimum=-MAX_USAGE_AMOUNT, maximum=MAX_USAGE_AMOUNT)
    # without the Decimal Quantity feature the API strips the digits after the decimal point
    return None if amount is None else amount.to_integral_value(rounding=ROUND_DOWN)


def _read_usage(reader: BodyReader, *, required: bool) -> UsageFields:
    amount = _read_amount(reader, required=required)
    merchant_tag = reader.string("merchant_tag")
    usage_timestamp = reader.time("usage_timestamp")
    recording_timestamp = reader.time("recording_timestamp")
    return UsageFields(amount, merchant_tag, reader.has("merchant_tag"), usage_timestamp, recording_timestamp)


def _check_usage_time(s: SubscriptionRecord, when: datetime | None, problems: Problems) -> None:
    if when is not None and (s.activated_at is None or when < s.activated_at):
        started = fmt_time(s.activated_at) if s.activated_at else "not yet"
        problems.add("usage_timestamp", f"must not be before the subscription was activated ({started})")


def _check_correction(s: SubscriptionRecord, add_on: AddOnRecord, when: datetime, problems: Problems) -> None:
    # usage dated into an invoiced period becomes a usage correction on the next invoice, for fixed and tiered
    # add-ons only: it is rejected for volume and stairstep (reference/recurly-api.md §2.6)
    if add_on.tier_type in ("volume", "stairstep") and s.billed_through is not None and when < s.billed_through:
        problems.add(
            "usage_timestamp",
            f"falls in a period already invoiced; usage corrections are not supported for {add_on.tier_type} add-ons",
        )


def read_new_usage(s: SubscriptionRecord, add_on: AddOnRecord, body: Mapping[str, Any], now: datetime) -> UsageFields:
    """A usage record for ``add_on`` on ``s``; unsent times are ``now``, as the API records them."""
    if add_on.add_on_type != "usage":
        raise validation("add_on_id", f"add-on {add_on.code} is not a usage add-on")
    if s.state == "expired":
        raise validation("subscription", f"{s.uuid} is expired; usage cannot be recorded on it")
    problems = Problems()
    fields = _read_usage(BodyReader(body, problems), required=True)
    _check_usage_time(s, fields.usage_timestamp or now, problems)
    _check_correction(s, add_on, fields.usage_timestamp or now, problems)
    problems.raise_if_any()
    assert fields.amount is not None
    return fields


def read_usage_update(record: UsageRecord, s: SubscriptionRecord, body: Mapping[str, Any]) -> UsageFields:
    """Billed usage keeps its amount and times: only its merchant_tag may change."""
    problems = Problems()
    fields = _read_usage(BodyReader(body, problems), required=False)
    if record.billed_at is not None:
        changed = [
            name
            for name, new, old in (
                ("amount", fields.amount, record.amount),
                ("usage_timestamp", fields.usage_timestamp, record.usage_timestamp),
                ("recording_timestamp", fields.recording_timestamp, record.recording_timestamp),
            )
            if new is not None and new != old
        ]
        for name in changed:
            problems.add(name, "cannot be changed on billed usage; only merchant_tag can")
    _check_usage_time(s, fields.usage_timestamp, problems)
    problems.raise_if_any()
    return fields
