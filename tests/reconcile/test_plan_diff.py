"""Pure tests of the sync-plans diff: Amplify catalog + Recurly catalog -> exact ChangeSet."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from amplify_billing.actions import (
    CreateMeasuredUnit,
    CreatePlan,
    DeactivatePlan,
    SetAttributes,
    UpdateAddOn,
    UpdateMeasuredUnit,
    UpdatePlan,
)
from amplify_billing.amplify.parse import parse_plan, parse_product, parse_quota
from amplify_billing.changes import ChangeKind
from amplify_billing.models import MeasuredUnit, PlanUnit, Product, ProductPlan, Quota
from amplify_billing.reconcile.plan_mapping import MappingOptions, desired_plan
from amplify_billing.reconcile.plans import CatalogSnapshot, PlanSyncOptions, RecurlyCatalog, diff_plans
from amplify_billing.recurly.translate import add_on_body, plan_create_body, plan_update_body

PLAN_ID = "8ac98ee28ea29652018eaee2253601ac"
UNITS = {"transactions": PlanUnit("transactions", "API Transactions (calls)")}


def product() -> Product:
    parsed = parse_product({"name": "weather", "title": "Weather API", "metadata": {"id": "f" * 32}})
    assert isinstance(parsed, Product)
    return parsed


def quota(
    qid: str, pricing: dict[str, Any], *, unit: str = "transactions", attributes: dict[str, str] | None = None
) -> Quota:
    raw = {
        "name": f"q-{qid[:4]}",
        "title": "Calls",
        "metadata": {"id": qid, "scope": {"kind": "ProductPlan", "name": "gold"}},
        "attributes": attributes or {},
        "spec": {"unit": unit, "pricing": pricing},
    }
    parsed = parse_quota(raw)
    assert isinstance(parsed, Quota), parsed
    return parsed


def plan(
    *quotas: Quota,
    state: str = "active",
    price: Any = 49.5,
    interval: str = "monthly",
    plan_type: str = "paid",
    plan_id: str = PLAN_ID,
    attributes: dict[str, str] | None = None,
    setup: Any = None,
) -> ProductPlan:
    billing: dict[str, Any] = {"currency": "USD", "price": price, "interval": interval}
    if setup is not None:
        billing["setup"] = {"price": setup}
    raw = {
        "name": "gold",
        "title": "Gold",
        "metadata": {"id": plan_id},
        "attributes": attributes or {},
        "state": state,
        "spec": {"product": "weather", "type": plan_type, "billing": billing, "subscription": {"renewal": "automatic"}},
    }
    parsed = parse_plan(raw, product(), tuple(quotas))
    assert isinstance(parsed, ProductPlan), parsed
    return parsed


def diff(*plans: ProductPlan, recurly: RecurlyCatalog | None = None, complete: bool = True, **options: Any):
    snapshot = CatalogSnapshot(plans=tuple(plans), units=UNITS, complete=complete)
    return diff_plans(snapshot, recurly or RecurlyCatalog(plans={}, measured_units={}), PlanSyncOptions(**options))


def recurly_state_after(changeset, previous: RecurlyCatalog | None = None) -> RecurlyCatalog:
    """The Recurly catalog as it would be once the creates and updates applied (for second-run checks)."""
    from amplify_billing.recurly.parse import plan_from_recurly

    plans = dict(previous.plans) if previous else {}
    units = dict(previous.measured_units) if previous else {}
    for change in changeset.writes:
        if isinstance(change.action, CreateMeasuredUnit):
            units[change.action.name] = MeasuredUnit(change.action.name, change.action.display_name)
        if isinstance(change.action, CreatePlan):
            body = plan_create_body(change.action.plan)
            add_ons = [_wire_add_on(a) for a in body.get("add_ons", [])]
            plans[body["code"]] = plan_from_recurly(_wire(body), add_ons, {})
    return RecurlyCatalog(plans=plans, measured_units=units)


def _wire(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _wire_add_on(body: dict[str, Any]) -> dict[str, Any]:
    wire = _wire(body)
    wire["measured_unit_id"] = body["measured_unit_name"]
    return wire


CODE = f"amplify-{PLAN_ID}"


def create_body(changeset) -> dict[str, Any]:
    [create] = [c for c in changeset.changes if isinstance(c.action, CreatePlan)]
    return plan_create_body(create.action.plan)


def test_per_unit_price_below_a_cent_is_exact() -> None:
    changeset = diff(plan(quota("a" * 32, {"type": "perUnit", "cost": 0.0025})))
    body = create_body(changeset)
    assert body == {
        "code": CODE,
        "name": "Weather API - Gold",
        "currencies": [{"currency": "USD", "unit_amount": Decimal("49.5"), "setup_fee": Decimal(0)}],
        "auto_renew": True,
        "interval_unit": "months",
        "interval_length": 1,
        "add_ons": [
            {
                "code": "amplify-" + "a" * 32,
                "name": "Calls",
                "measured_unit_name": "transactions",
                "add_on_type": "usage",
                "usage_type": "price",
                "usage_calculation_type": "cumulative",
                "tier_type": "flat",
                "currencies": [{"currency": "USD", "unit_amount_decimal": Decimal("0.0025")}],
            }
        ],
    }
    assert str(body["add_ons"][0]["currencies"][0]["unit_amount_decimal"]) == "0.0025"


def test_graduated_four_tiers_last_open() -> None:
    tiers = [
        {"from": 1, "to": 1000, "cost": 0},
        {"from": 1001, "to": 10000, "cost": 0.01},
        {"from": 10001, "to": 100000, "cost": 0.005},
        {"from": 100001, "to": 999999999, "cost": 0.0025},
    ]
    changeset = diff(
        plan(quota("b" * 32, {"type": "graduated", "interval": "monthly", "limit": {"type": "tiered", "tiers": tiers}}))
    )
    add_on = create_body(changeset)["add_ons"][0]
    assert add_on["tier_type"] == "tiered"
    assert "currencies" not in add_on
    assert add_on["tiers"] == [
        {"ending_quantity": 1000, "currencies": [{"currency": "USD", "unit_amount_decimal": Decimal("0")}]},
        {"ending_quantity": 10000, "currencies": [{"currency": "USD", "unit_amount_decimal": Decimal("0.01")}]},
        {"ending_quantity": 100000, "currencies": [{"currency": "USD", "unit_amount_decimal": Decimal("0.005")}]},
        {"currencies": [{"currency": "USD", "unit_amount_decimal": Decimal("0.0025")}]},
    ]


def test_volume_tiers_with_open_last_tier_given_as_none() -> None:
    tiers = [{"from": 0, "to": 5000, "cost": "0.02"}, {"from": 5001, "cost": "0.015"}]
    changeset = diff(plan(quota("c" * 32, {"type": "volume", "limit": {"type": "tiered", "tiers": tiers}})))
    add_on = create_body(changeset)["add_ons"][0]
    assert add_on["tier_type"] == "volume"
    assert add_on["tiers"] == [
        {"ending_quantity": 5000, "currencies": [{"currency": "USD", "unit_amount_decimal": Decimal("0.02")}]},
        {"currencies": [{"currency": "USD", "unit_amount_decimal": Decimal("0.015")}]},
    ]


def test_fixed_loose_limit_becomes_free_tier_then_overage() -> None:
    pricing = {
        "type": "fixed",
        "interval": "monthly",
        "limit": {"type": "loose", "value": 10000, "overages": {"value": 0.004}},
    }
    add_on = create_body(diff(plan(quota("d" * 32, pricing))))["add_ons"][0]
    assert add_on["tier_type"] == "tiered"
    assert add_on["tiers"] == [
        {"ending_quantity": 10000, "currencies": [{"currency": "USD", "unit_amount_decimal": Decimal("0")}]},
        {"currencies": [{"currency": "USD", "unit_amount_decimal": Decimal("0.004")}]},
    ]


@pytest.mark.parametrize(
    "pricing",
    [{"type": "unlimited"}, {"type": "fixed", "interval": "monthly", "limit": {"type": "strict", "value": 100}}],
)
def test_unbillable_quotas_get_no_add_on(pricing: dict[str, Any]) -> None:
    changeset = diff(plan(quota("e" * 32, pricing)))
    body = create_body(changeset)
    assert "add_ons" not in body
    assert not [c for c in changeset.changes if c.object == "measured_unit"]
    # no add-on, so no quota link either; the plan link is there
    links = changeset.by_kind(ChangeKind.LINK)
    assert [c.object for c in links] == ["productplan"]


def test_annual_plan_with_setup_fee() -> None:
    body = create_body(diff(plan(interval="annually", price=499, setup=25)))
    assert body["interval_length"] == 12
    assert body["currencies"] == [{"currency": "USD", "unit_amount": Decimal(499), "setup_fee": Decimal(25)}]


@pytest.mark.parametrize(
    ("pricing", "unit", "reason"),
    [
        (
            {
                "type": "graduated",
                "limit": {
                    "type": "tiered",
                    "tiers": [{"from": 1, "to": 10, "cost": 1, "flatFee": 5}, {"from": 11, "cost": 0.5}],
                },
            },
            "transactions",
            "quota q-aaaa tier 1 has a flat fee (5), which Recurly usage tiers cannot charge",
        ),
        ({"type": "stairstep"}, "transactions", "quota q-aaaa has unknown pricing type 'stairstep'"),
        (
            {"type": "perUnit", "cost": 0.01},
            "x-widgets",
            "quota q-aaaa bills unit 'x-widgets', which the usage source cannot count (it counts transactions)",
        ),
        (
            {
                "type": "volume",
                "interval": "annually",
                "limit": {"type": "tiered", "tiers": [{"from": 1, "cost": 0.1}]},
            },
            "transactions",
            "quota q-aaaa prices per annually period but the plan bills monthly; tiers would not reset with the billing period",
        ),
        (
            {"type": "perUnit", "cost": "0.0000000001"},
            "transactions",
            "quota q-aaaa cost 1E-10 has more than 9 decimal places",
        ),
    ],
)
def test_unsupported_pricing_is_reported_and_nothing_is_written(
    pricing: dict[str, Any], unit: str, reason: str
) -> None:
    changeset = diff(plan(quota("a" * 32, pricing, unit=unit)))
    assert changeset.writes == ()
    [unsupported] = changeset.by_kind(ChangeKind.UNSUPPORTED)
    assert unsupported.summary == reason
    assert unsupported.amplify == f"weather/gold ({PLAN_ID})"


def test_file_source_counts_custom_units() -> None:
    options = MappingOptions(countable_units=None)
    result = desired_plan(plan(quota("a" * 32, {"type": "perUnit", "cost": 0.01}, unit="x-widgets")), UNITS, options)
    assert not hasattr(result, "reason")


def test_draft_ignored_deprecated_created_free_only_when_configured() -> None:
    draft = plan(state="draft", plan_id="1" * 32)
    deprecated = plan(state="deprecated", plan_id="2" * 32)
    free = plan(plan_type="free", price=0, plan_id="3" * 32)
    codes = {c.action.plan.code for c in diff(draft, deprecated, free).writes if isinstance(c.action, CreatePlan)}
    assert codes == {"amplify-" + "2" * 32}
    codes = {
        c.action.plan.code
        for c in diff(draft, deprecated, free, sync_free_plans=True).writes
        if isinstance(c.action, CreatePlan)
    }
    assert codes == {"amplify-" + "2" * 32, "amplify-" + "3" * 32}


def test_measured_unit_created_once_with_clean_display_name() -> None:
    changeset = diff(
        plan(quota("a" * 32, {"type": "perUnit", "cost": 0.01}), plan_id="1" * 32),
        plan(quota("b" * 32, {"type": "perUnit", "cost": 0.02}), plan_id="2" * 32),
    )
    units = [c for c in changeset.changes if c.object == "measured_unit"]
    assert [(u.kind, u.action) for u in units] == [
        (ChangeKind.CREATE, CreateMeasuredUnit("transactions", "API Transactions calls"))
    ]
    # units come before plans, plans before links
    phases = [c.phase for c in changeset.changes]
    assert phases == sorted(phases)


def test_a_measured_unit_whose_display_name_differs_is_updated() -> None:
    recurly = RecurlyCatalog(plans={}, measured_units={"transactions": MeasuredUnit("transactions", "Calls")})
    changeset = diff(plan(quota("a" * 32, {"type": "perUnit", "cost": 0.01})), recurly=recurly)
    units = [c for c in changeset.changes if c.object == "measured_unit"]
    assert [(u.kind, u.recurly, u.summary, u.action, u.key) for u in units] == [
        (
            ChangeKind.UPDATE,
            "measured unit transactions",
            "display name 'Calls' → 'API Transactions calls'",
            UpdateMeasuredUnit("transactions", "API Transactions calls"),
            "unit:transactions",
        )
    ]


def test_second_run_changes_nothing() -> None:
    plans = (
        plan(quota("a" * 32, {"type": "perUnit", "cost": 0.0025}), plan_id="1" * 32),
        plan(
            quota(
                "b" * 32,
                {
                    "type": "graduated",
                    "limit": {
                        "type": "tiered",
                        "tiers": [{"from": 1, "to": 10, "cost": 0}, {"from": 11, "to": 999999999, "cost": 0.5}],
                    },
                },
            ),
            plan_id="2" * 32,
        ),
    )
    first = diff(*plans)
    after = recurly_state_after(first)
    linked = tuple(
        plan(
            *[
                quota(q.id, dict(q.raw["spec"]["pricing"]), attributes={"recurlyAddOnCode": f"amplify-{q.id}"})
                for q in p.quotas
            ],
            plan_id=p.id,
            attributes={"recurlyPlanCode": f"amplify-{p.id}"},
        )
        for p in plans
    )
    second = diff(*linked, recurly=after)
    assert second.changes == ()


def test_changed_price_is_an_update_in_place() -> None:
    before = recurly_state_after(diff(plan(quota("a" * 32, {"type": "perUnit", "cost": 0.0025}))))
    changeset = diff(plan(quota("a" * 32, {"type": "perUnit", "cost": 0.003}), price=59), recurly=before)
    updates = changeset.by_kind(ChangeKind.UPDATE)
    assert [(u.object, type(u.action)) for u in updates] == [("plan", UpdatePlan), ("add_on", UpdateAddOn)]
    plan_update = next(u for u in updates if u.object == "plan")
    assert plan_update.action.plan.code == CODE
    assert plan_update_body(plan_update.action.plan) == {
        "name": "Weather API - Gold",
        "currencies": [{"currency": "USD", "unit_amount": Decimal(59), "setup_fee": Decimal(0)}],
        "auto_renew": True,
    }
    assert plan_update.summary == "update price 49.5 → 59"
    add_on_update = next(u for u in updates if u.object == "add_on")
    assert add_on_update.action.plan_code == CODE
    assert add_on_body(add_on_update.action.add_on, create=False) == {
        "name": "Calls",
        "measured_unit_name": "transactions",
        "currencies": [{"currency": "USD", "unit_amount_decimal": Decimal("0.003")}],
    }
    assert not changeset.by_kind(ChangeKind.CREATE)


def test_tier_type_change_is_reported_not_written() -> None:
    before = recurly_state_after(diff(plan(quota("a" * 32, {"type": "perUnit", "cost": 0.0025}))))
    tiers = {"type": "tiered", "tiers": [{"from": 1, "cost": 0.1}]}
    changeset = diff(plan(quota("a" * 32, {"type": "volume", "limit": tiers})), recurly=before)
    [finding] = changeset.by_kind(ChangeKind.FINDING)
    assert finding.summary.startswith("tier type is flat in Recurly but the quota needs volume")
    assert not [c for c in changeset.writes if c.object in ("plan", "add_on")]


def test_archived_plan_deactivated_only_without_live_subscriptions() -> None:
    live = recurly_state_after(diff(plan()))
    archived = plan(state="archived")
    changeset = diff(archived, recurly=live)
    [deactivate] = changeset.by_kind(ChangeKind.DEACTIVATE)
    assert deactivate.action == DeactivatePlan(CODE)
    assert changeset.linked_count == 1
    waiting = diff(
        archived,
        recurly=RecurlyCatalog(plans=live.plans, measured_units={}, live_subscriptions_by_plan={CODE: 3}),
    )
    assert not waiting.by_kind(ChangeKind.DEACTIVATE)
    [wait] = waiting.by_kind(ChangeKind.WAITING)
    assert wait.summary == "archived in Amplify; waiting for 3 live Recurly subscription(s) to end before deactivating"


def test_deleted_plan_deactivated_but_not_from_a_narrowed_listing() -> None:
    live = recurly_state_after(diff(plan()))
    [gone] = diff(recurly=live).by_kind(ChangeKind.DEACTIVATE)
    assert gone.amplify == f"(deleted plan) {CODE}"
    assert diff(recurly=live, complete=False).changes == ()


def test_links_written_only_when_they_differ() -> None:
    q = quota("a" * 32, {"type": "perUnit", "cost": 0.01}, attributes={"recurlyAddOnCode": "stale"})
    changeset = diff(plan(q, attributes={"recurlyPlanCode": CODE}))
    [link] = changeset.by_kind(ChangeKind.LINK)
    assert link.object == "quota"
    assert isinstance(link.action, SetAttributes)
    assert link.action.attributes == {"recurlyAddOnCode": "amplify-" + "a" * 32}
