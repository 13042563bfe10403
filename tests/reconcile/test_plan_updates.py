"""An active plan brought in line: each changed field is named in the update's summary as ``label old → new``."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from amplify_billing.amplify.parse import parse_plan, parse_product
from amplify_billing.changes import ChangeKind
from amplify_billing.models import Product, ProductPlan, RecurlyAddOn, RecurlyPlan, RecurlyTier
from amplify_billing.reconcile.plan_updates import active_plan_changes

ADD_ON = RecurlyAddOn("calls", "Calls", "transactions", "tiered", "USD", None, (RecurlyTier(None, Decimal("0.002")),))
FLAT = RecurlyAddOn("data", "Data", "megabytes", "flat", "USD", Decimal("0.0001"))
RECURLY = RecurlyPlan("amplify-p1", "Gold", "USD", Decimal("49.5"), Decimal(0), 1, True, None, (ADD_ON, FLAT))


def _plan() -> ProductPlan:
    product = parse_product({"name": "weather", "title": "Weather API", "metadata": {"id": "f" * 32}})
    assert isinstance(product, Product)
    raw = {
        "name": "gold",
        "title": "Gold",
        "metadata": {"id": "p1"},
        "state": "active",
        "spec": {
            "product": "weather",
            "type": "paid",
            "billing": {"currency": "USD", "price": 49.5, "interval": "monthly"},
        },
    }
    parsed = parse_plan(raw, product, ())
    assert isinstance(parsed, ProductPlan), parsed
    return parsed


def _summaries(have: RecurlyPlan) -> list[tuple[ChangeKind, str, str]]:
    return [(c.kind, c.recurly, c.summary) for c in active_plan_changes(_plan(), RECURLY, have)]


def test_every_changed_plan_field_is_named() -> None:
    have = replace(
        RECURLY,
        name="Old",
        currency="EUR",
        unit_amount=Decimal(40),
        setup_fee=Decimal(5),
        auto_renew=False,
        total_billing_cycles=12,
    )
    assert _summaries(have) == [
        (
            ChangeKind.UPDATE,
            "plan amplify-p1",
            "update name 'Old' → 'Gold'; currency EUR → USD; price 40 → 49.5; setup fee 5 → 0; "
            "auto renew False → True; billing cycles 12 → None",
        )
    ]


def test_every_changed_add_on_field_is_named() -> None:
    old_tiers = (RecurlyTier(1000, Decimal("0.003")), RecurlyTier(None, Decimal("0.001")))
    have = replace(
        RECURLY,
        add_ons=(
            replace(ADD_ON, name="Old", measured_unit_name="calls", tiers=old_tiers, currency="EUR"),
            replace(FLAT, unit_amount_decimal=Decimal("0.0002")),
        ),
    )
    assert _summaries(have) == [
        (
            ChangeKind.UPDATE,
            "add-on amplify-p1/calls",
            "update name 'Old' → 'Calls'; unit calls → transactions; tiers [≤1000@0.003, ≤∞@0.001] → [≤∞@0.002]; "
            "currency EUR → USD",
        ),
        (ChangeKind.UPDATE, "add-on amplify-p1/data", "update price 0.0002 → 0.0001 USD"),
    ]


def test_a_plan_as_it_must_be_has_no_change() -> None:
    assert _summaries(RECURLY) == []
