"""The emulated Recurly site's records as the API answers them (v2021-02-25 JSON).

``RecurlyOutput`` renders from the state's records and never changes them. Money goes out as the API sends it:
``unit_amount`` a JSON number, ``unit_amount_decimal`` exact text where it was given so; times as
``recurly_wire.fmt_time`` writes them; the open last tier as ``ending_quantity`` 999999999.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from amplify_billing.sandbox import recurly_lifecycle as lifecycle
from amplify_billing.sandbox.recurly_cards import account_payment_fields
from amplify_billing.sandbox.recurly_records import (
    AccountRecord,
    AddOnRecord,
    CustomFieldDefinitionRecord,
    MeasuredUnitRecord,
    PlanRecord,
    Price,
    SubscriptionAddOnRecord,
    SubscriptionRecord,
    Tier,
    UsageRecord,
)
from amplify_billing.sandbox.recurly_state import RecurlyState
from amplify_billing.sandbox.recurly_wire import OPEN_TIER_END, decimal_text, fmt_time

# An account's `has_live_subscription` does count paused ones ("active, canceled, future, or paused", ROAS Account).
ACCOUNT_LIVE_STATES = frozenset({"active", "canceled", "future", "paused"})


# the times every catalog resource and account ends with
LIFETIME = ("created_at", "updated_at", "deleted_at")


def copied(record: object, *names: str) -> dict[str, Any]:
    """Fields the API answers with under the record's own name, as the record holds them."""
    return {name: getattr(record, name) for name in names}


def times(record: object, *names: str) -> dict[str, Any]:
    """Times the API answers with under the record's own name, as ``fmt_time`` writes them (None stays null)."""
    return {name: fmt_time(getattr(record, name)) for name in names}


def percentage(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def price_wire(price: Price, *, with_currency: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"currency": price.currency} if with_currency else {}
    body["unit_amount"] = float(price.amount)
    body["unit_amount_decimal"] = decimal_text(price.amount) if price.decimal else None
    return body


def tier_wire(tier: Tier) -> dict[str, Any]:
    return {
        "ending_quantity": OPEN_TIER_END if tier.ending_quantity is None else tier.ending_quantity,
        "currencies": [price_wire(p) for p in tier.prices],
    }


def priced_tiers_wire(tiers: list[tuple[int | None, Price]]) -> list[dict[str, Any]]:
    """A subscription add-on's (or a usage record's) tiers, each priced in the one currency of the subscription."""
    return [
        {"ending_quantity": OPEN_TIER_END if end is None else end, **price_wire(price, with_currency=False)}
        for end, price in tiers
    ]


class RecurlyOutput:
    """One method per object the API answers with, named after it: ``output.plan(record)``."""

    def __init__(self, state: RecurlyState) -> None:
        self.state = state

    def site(self) -> dict[str, Any]:
        return {
            "id": self.state.site_id,
            "object": "site",
            "subdomain": "sandbox",
            "public_api_key": f"ewr1-{self.state.site_id}",
            "mode": "sandbox",
            "address": {"country": "US"},
            "settings": {
                "billing_address_requirement": "none",
                # the sandbox site accepts the scenario's currencies (USD, EUR), and any a plan was created in
                "accepted_currencies": sorted(
                    {p.currency for plan in self.state.plans.values() for p in plan.prices} | {"USD", "EUR"}
                ),
                "default_currency": "USD",
            },
            "features": [],
            "created_at": fmt_time(self.state.site_created_at),
            "updated_at": fmt_time(self.state.site_created_at),
            "deleted_at": None,
        }

    @staticmethod
    def unit(u: MeasuredUnitRecord) -> dict[str, Any]:
        return {
            "id": u.id,
            "object": "measured_unit",
            **copied(u, "name", "display_name", "state", "description"),
            **times(u, *LIFETIME),
        }

    @staticmethod
    def plan(p: PlanRecord) -> dict[str, Any]:
        return {
            "id": p.id,
            "object": "plan",
            **copied(p, "code", "state", "name", "description", "interval_unit", "interval_length"),
            **copied(p, "trial_unit", "trial_length"),
            "trial_requires_billing_info": True,
            **copied(p, "total_billing_cycles", "auto_renew"),
            "pricing_model": "fixed",
            "accounting_code": p.accounting_code,
            "tax_exempt": False,
            "custom_fields": [dict(f) for f in p.custom_fields],
            "currencies": [
                {"currency": c.currency, "setup_fee": float(c.setup_fee), "unit_amount": float(c.unit_amount)}
                for c in p.prices
            ],
            "allow_any_item_on_subscriptions": False,
            **times(p, *LIFETIME),
        }

    @staticmethod
    def add_on(a: AddOnRecord) -> dict[str, Any]:
        return {
            **copied(a, "id", "plan_id"),
            "object": "add_on",
            **copied(a, "code", "state", "name", "add_on_type", "usage_type", "usage_calculation_type"),
            "usage_timeframe": a.usage_timeframe,
            "usage_percentage": percentage(a.usage_percentage),
            **copied(a, "measured_unit_id", "accounting_code", "display_quantity", "default_quantity", "optional"),
            # the schema allows no empty list here: tiered pricing has no flat currencies at all
            "currencies": [price_wire(p) for p in a.prices] or None,
            "tier_type": a.tier_type,
            "tiers": [tier_wire(t) for t in a.tiers],
            **times(a, *LIFETIME),
        }

    def account(self, a: AccountRecord) -> dict[str, Any]:
        states = {s.state for s in self.state.subscriptions.values() if s.account_id == a.id}
        return {
            "id": a.id,
            "object": "account",
            **copied(a, "code", "state", "email", "first_name", "last_name", "company", "username"),
            "bill_to": "self",
            "tax_exempt": False,
            "has_live_subscription": bool(states & ACCOUNT_LIVE_STATES),
            "has_active_subscription": "active" in states,
            "has_future_subscription": "future" in states,
            "has_canceled_subscription": "canceled" in states,
            "has_paused_subscription": "paused" in states,
            "has_past_due_invoice": False,
            "custom_fields": [dict(f) for f in a.custom_fields],
            **times(a, *LIFETIME),
            **account_payment_fields(self.state, a),  # the card on file and the hosted login token (issue 15)
        }

    def _subscription_add_on(self, s: SubscriptionRecord, attached: SubscriptionAddOnRecord) -> dict[str, Any]:
        add_on = self.state.add_ons[attached.add_on_id]
        return {
            "id": attached.id,
            "object": "subscription_add_on",
            "subscription_id": s.id,
            "add_on": {
                "id": add_on.id,
                "object": "add_on",
                **copied(add_on, "code", "name", "add_on_type", "usage_type"),
                "usage_percentage": percentage(add_on.usage_percentage),
                **copied(add_on, "measured_unit_id", "accounting_code"),
            },
            "add_on_source": "plan_add_on",
            "quantity": attached.quantity,
            **(
                price_wire(attached.unit_price, with_currency=False)
                if attached.unit_price
                else {"unit_amount": None, "unit_amount_decimal": None}
            ),
            **copied(attached, "tier_type", "usage_calculation_type", "usage_timeframe"),
            "tiers": priced_tiers_wire(attached.tiers) or None,
            "usage_percentage": percentage(attached.usage_percentage),
            **times(attached, "created_at", "updated_at"),
            "expired_at": fmt_time(s.expires_at) if s.state == "expired" else None,
        }

    def subscription(self, s: SubscriptionRecord) -> dict[str, Any]:
        account = self.state.accounts[s.account_id]
        plan = self.state.plans[s.plan_id]
        add_ons = [self._subscription_add_on(s, attached) for attached in s.add_ons]
        live = s.state in ("active", "canceled", "paused")
        return {
            "id": s.id,
            "object": "subscription",
            "uuid": s.uuid,
            "account": {
                "id": account.id,
                "object": "account",
                **copied(account, "code", "email", "first_name", "last_name", "company"),
                "parent_account_id": None,
                "bill_to": "self",
            },
            "plan": {"id": plan.id, "object": "plan", "code": plan.code, "name": plan.name},
            **copied(s, "state", "currency"),
            "unit_amount": float(s.unit_amount),
            "quantity": s.quantity,
            "add_ons": add_ons,
            "add_ons_total": 0.0,
            "subtotal": float(s.unit_amount * s.quantity),
            **copied(s, "collection_method", "net_terms", "po_number", "auto_renew", "total_billing_cycles"),
            "remaining_billing_cycles": (
                None if s.total_billing_cycles is None else s.total_billing_cycles - s.period % s.total_billing_cycles
            ),
            "custom_fields": [dict(f) for f in s.custom_fields],
            **times(s, "activated_at", "canceled_at", "expires_at"),
            "expiration_reason": s.expiration_reason if s.state == "expired" else None,
            **times(s, "current_period_started_at", "current_period_ends_at"),
            "current_term_started_at": fmt_time(lifecycle.term_started_at(s)) if live or s.state == "future" else None,
            "current_term_ends_at": fmt_time(lifecycle.term_ends_at(s)) if live or s.state == "future" else None,
            "trial_started_at": None,
            "trial_ends_at": None,
            "paused_at": fmt_time(s.paused_at),
            "remaining_pause_cycles": s.remaining_pause_cycles,
            **times(s, "created_at", "updated_at"),
        }

    @staticmethod
    def usage(u: UsageRecord) -> dict[str, Any]:
        price = price_wire(u.unit_price, with_currency=False) if u.unit_price else {}
        return {
            "id": u.id,
            "object": "usage",
            "merchant_tag": u.merchant_tag,
            "amount": float(u.amount),
            **copied(u, "usage_type", "tier_type"),
            "tiers": priced_tiers_wire(u.tiers) if u.tier_type != "flat" else [],
            "measured_unit_id": u.measured_unit_id,
            "usage_percentage": percentage(u.usage_percentage),
            "unit_amount": price.get("unit_amount"),
            "unit_amount_decimal": price.get("unit_amount_decimal"),
            **times(u, "recording_timestamp", "usage_timestamp", "billed_at", "created_at", "updated_at"),
        }

    @staticmethod
    def field_definition(d: CustomFieldDefinitionRecord) -> dict[str, Any]:
        return {
            "id": d.id,
            "object": "custom_field_definition",
            **copied(d, "related_type", "name", "user_access"),
            "display_name": d.name,
            "tooltip": None,
            "created_at": fmt_time(d.created_at),
            "updated_at": fmt_time(d.created_at),
            "deleted_at": None,
        }
