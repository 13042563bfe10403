"""Domain values and typed actions -> Recurly request bodies (docs/architecture.md, "Layers").

Pure (no SDK import): the executor sends what these build, and the contract test checks them against Recurly's
OpenAPI document. Lengths are cut where Recurly limits them (account names 255, company 100).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from amplify_billing.actions import CreateAccount, CreateSubscription
from amplify_billing.models import RecurlyAddOn, RecurlyPlan


def add_on_body(add_on: RecurlyAddOn, *, create: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"name": add_on.name, "measured_unit_name": add_on.measured_unit_name}
    if create:
        body = {
            "code": add_on.code,
            **body,
            "add_on_type": "usage",
            "usage_type": "price",
            "usage_calculation_type": "cumulative",
            "tier_type": add_on.tier_type,
        }
    if add_on.tier_type == "flat":
        body["currencies"] = [{"currency": add_on.currency, "unit_amount_decimal": add_on.unit_amount_decimal}]
    else:
        body["tiers"] = [
            {
                **({} if tier.ending_quantity is None else {"ending_quantity": tier.ending_quantity}),
                "currencies": [{"currency": add_on.currency, "unit_amount_decimal": tier.unit_amount_decimal}],
            }
            for tier in add_on.tiers
        ]
    return body


def plan_update_body(plan: RecurlyPlan) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": plan.name,
        "currencies": [{"currency": plan.currency, "unit_amount": plan.unit_amount, "setup_fee": plan.setup_fee}],
        "auto_renew": plan.auto_renew,
    }
    if plan.total_billing_cycles is not None:
        body["total_billing_cycles"] = plan.total_billing_cycles
    return body


def plan_create_body(plan: RecurlyPlan) -> dict[str, Any]:
    body = {
        "code": plan.code,
        **plan_update_body(plan),
        "interval_unit": plan.interval_unit,
        "interval_length": plan.interval_length,
    }
    if plan.add_ons:
        body["add_ons"] = [add_on_body(a) for a in plan.add_ons]
    return body


def account_body(action: CreateAccount) -> dict[str, str]:
    body = {"code": action.code}
    if action.email:
        body["email"] = action.email[:255]
    if action.first_name:
        body["first_name"] = action.first_name[:255]
    if action.last_name:
        body["last_name"] = action.last_name[:255]
    if action.company:
        body["company"] = action.company[:100]
    return body


def subscription_body(action: CreateSubscription) -> dict[str, Any]:
    body: dict[str, Any] = {
        "plan_code": action.plan_code,
        "currency": action.currency,
        "account": {"code": action.account_code},
        "collection_method": action.collection_method,
    }
    if action.add_on_codes:
        # the API attaches no add-on by itself: list every usage add-on explicitly
        body["add_ons"] = [{"code": add_on} for add_on in action.add_on_codes]
    if action.custom_field:
        body["custom_fields"] = [{"name": action.custom_field, "value": action.amplify_id}]
    if action.starts_at is not None:
        # a future start: the subscription is "future" until then and Recurly bills nothing before it
        body["starts_at"] = action.starts_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return body
