"""The facts of Amplify's public sources (reference §9) as the pure core reads them.

Free plans may have no ``spec.billing`` and paid ones no price; a Custom plan is never billed; Declined and Error
are not approvals; Migration scheduled, Migrating and Archival scheduled are not ends.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from amplify_billing.amplify.parse import ParseProblem, parse_plan
from amplify_billing.changes import ChangeKind
from amplify_billing.models import ProductPlan
from amplify_billing.reconcile.accounts import needs_billing
from amplify_billing.reconcile.plan_mapping import MappingOptions, Unsupported, desired_plan
from amplify_billing.reconcile.plans import RecurlyCatalog
from amplify_billing.reconcile.subscriptions import SubscriptionInputs, SubscriptionOptions, diff_subscriptions
from tests.reconcile.test_plan_diff import PLAN_ID, UNITS, diff, product, quota
from tests.reconcile.test_subscription_diff import (
    ACCOUNT,
    APPROVE,
    CANCEL,
    CREATE,
    LINK,
    PLAN,
    amplify,
    kinds,
    recurly,
)


def raw_plan(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "gold",
        "title": "Gold",
        "metadata": {"id": PLAN_ID},
        "state": "active",
        "spec": {"product": "weather", **spec},
    }


def parsed(spec: dict[str, Any]) -> ProductPlan | ParseProblem:
    return parse_plan(raw_plan(spec), product(), ())


# ---- plans ------------------------------------------------------------------------------------------------------


def test_a_free_plan_without_billing_reads_as_free_with_no_currency() -> None:
    # the "Create Plan" example of cli_product_foundry.md has no spec.billing at all
    plan = parsed({"type": "free"})

    assert isinstance(plan, ProductPlan)
    assert (plan.type, plan.currency, plan.price, plan.interval) == ("free", "", Decimal(0), "monthly")


def test_a_paid_plan_without_a_price_costs_nothing_but_must_name_currency_and_interval() -> None:
    plan = parsed({"type": "paid", "billing": {"currency": "usd", "interval": "monthly"}})
    no_currency = parsed({"type": "paid", "billing": {"interval": "monthly"}})
    no_billing = parsed({"type": "paid"})

    assert isinstance(plan, ProductPlan) and (plan.price, plan.currency) == (Decimal(0), "USD")
    assert isinstance(no_currency, ParseProblem) and no_currency.reason == "spec.billing.currency is missing"
    assert isinstance(no_billing, ParseProblem) and no_billing.reason == "spec.billing is missing"


def test_a_custom_plan_is_unsupported_and_names_its_type() -> None:
    plan = parsed({"type": "custom"})
    assert isinstance(plan, ProductPlan)

    [unsupported] = diff(plan).by_kind(ChangeKind.UNSUPPORTED)

    assert unsupported.summary == (
        "plan type 'custom': a Custom plan's pricing is negotiated outside Amplify and it carries no price to bill; "
        "bill it outside this tool, or give it a paid plan"
    )
    assert diff(plan).writes == ()


def test_a_free_plan_without_a_currency_takes_the_sites_default_or_is_unsupported() -> None:
    plan = parsed({"type": "free"})
    assert isinstance(plan, ProductPlan)

    without = desired_plan(plan, UNITS, MappingOptions())
    with_default = desired_plan(plan, UNITS, MappingOptions(default_currency="EUR"))

    assert isinstance(without, Unsupported)
    assert without.reason.startswith("it names no currency (spec.billing.currency) and the Recurly site has no default")
    assert not isinstance(with_default, Unsupported) and with_default.currency == "EUR"
    site = RecurlyCatalog(plans={}, measured_units={}, default_currency="EUR")
    [create] = diff(plan, recurly=site, sync_free_plans=True).by_kind(ChangeKind.CREATE)
    assert create.summary == "create 'Weather API - Gold' 0 EUR every 1 month(s)"


def test_a_free_plans_usage_add_ons_take_the_default_currency_too() -> None:
    q = quota("a" * 32, {"type": "perUnit", "cost": 0.01})
    plan = parse_plan(raw_plan({"type": "free"}), product(), (q,))
    assert isinstance(plan, ProductPlan)

    wanted = desired_plan(plan, UNITS, MappingOptions(default_currency="USD"))

    assert not isinstance(wanted, Unsupported)
    assert [a.currency for a in wanted.add_ons] == ["USD"]


# ---- subscriptions ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amplify_state", "recurly_state", "expected"),
    [
        (("declined", None), None, []),  # declined: ended before it began, nothing created
        (("declined", None), "active", [CANCEL]),  # a subscription made while it was pending ends
        (("approved", "migrationScheduled"), "active", [LINK]),
        (("approved", "migrating"), "active", [LINK]),
        (("approved", "archivalScheduled"), "active", [LINK]),
        (("approved", "archivalScheduled"), None, [CREATE, LINK]),  # billed until the final state
    ],
)
def test_declined_ends_and_transitional_states_do_not(
    amplify_state: tuple[str, str | None], recurly_state: str | None, expected: list[tuple[str, str]]
) -> None:
    recurly_subs = (recurly(recurly_state),) if recurly_state else ()
    assert kinds(amplify(*amplify_state), recurly_subs) == expected


@pytest.mark.parametrize("recurly_state", [None, "active"])
def test_an_approval_in_error_is_neither_approved_created_nor_ended(recurly_state: str | None) -> None:
    recurly_subs = (recurly(recurly_state),) if recurly_state else ()
    found = kinds(amplify("error", None), recurly_subs)

    assert found == [("finding", "subscription")]
    assert APPROVE not in found


def test_the_error_finding_says_it_is_not_an_approval() -> None:
    changeset = diff_subscriptions(
        SubscriptionInputs(amplify=(amplify("error", None),), plans={"gold": PLAN}, recurly=(), accounts={ACCOUNT}),
        SubscriptionOptions(),
    )

    [finding] = changeset.changes
    assert finding.summary == (
        "its approval is in error in Amplify (not an approval): nothing is billed, approved or ended for it; "
        "nothing done"
    )


@pytest.mark.parametrize(
    ("approval", "state", "billed"),
    [
        ("approved", "migrating", True),
        ("approved", "migrationScheduled", True),
        ("approved", "archivalScheduled", True),
        ("approved", "archived", False),
        ("declined", None, False),
        ("error", None, False),
        ("pending", None, True),
    ],
)
def test_accounts_are_needed_for_billed_states_only(approval: str, state: str | None, billed: bool) -> None:
    assert needs_billing(amplify(approval, state)) is billed
