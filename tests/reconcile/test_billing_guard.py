"""The double billing guard, pure (reconcile/billing_modes.py): which subscriptions Recurly may bill when their
Marketplace's billing is on in Amplify, and the finding that names the fix."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.billing_modes import (
    MarketplaceBilling,
    future_starts,
    guard_double_billing,
    recurly_from,
    withheld_finding,
)
from amplify_billing.settings.billing import BillingSettings

RECURLY = BillingSettings()
MARKET = "6f1c2a1e-0000-4000-8000-000000000001"
OTHER = "6f1c2a1e-0000-4000-8000-000000000002"


def subscription(sid: str, marketplace: str | None) -> AmplifySubscription:
    raw: dict[str, Any] = {"name": sid, "marketplace": {"name": marketplace}} if marketplace else {"name": sid}
    return AmplifySubscription(
        id=sid,
        name=sid,
        product_name="weather",
        plan_name="gold",
        approval_state="approved",
        state_name="active",
        owner_team="t",
        owner_user=None,
        owner_org="100",
        state_changed_at=None,
        raw=raw,
    )


SUBS = [subscription("s1", MARKET), subscription("s2", MARKET), subscription("s3", OTHER), subscription("s4", None)]


def test_custom_billing_withholds_that_marketplace_only() -> None:
    read = MarketplaceBilling({MARKET: "custom", OTHER: None}, {MARKET: "Partners"})

    kept, withheld = guard_double_billing(SUBS, read, RECURLY)

    assert [s.id for s in kept] == ["s3", "s4"]
    [held] = withheld
    assert (held.marketplace, held.vendor, held.subscription_ids) == (MARKET, "custom", ("s1", "s2"))
    finding = withheld_finding(held)
    assert finding.withholds and finding.amplify_id == MARKET
    assert finding.summary == (
        f"2 subscription(s) of Marketplace Partners ({MARKET}) are not billed in Recurly: its billing is on with "
        "vendor custom, so Amplify invoices them too, and billing.mode is recurly for it (each would be billed "
        f"twice). Set billing.marketplaces: {{{MARKET}: marketplace}} to bill Amplify's invoices, or turn its Custom "
        "billing off in the Marketplace's settings"
    )


def test_a_whole_listing_without_the_marketplace_or_with_billing_off_bills_in_recurly() -> None:
    kept, withheld = guard_double_billing(SUBS, MarketplaceBilling({OTHER: None}), RECURLY)

    assert [s.id for s in kept] == ["s1", "s2", "s3", "s4"] and withheld == ()


def test_an_unproven_listing_withholds_what_it_did_not_show() -> None:
    read = MarketplaceBilling({OTHER: None}, unproven="the Marketplaces could not be read (HTTP 403)")

    kept, withheld = guard_double_billing(SUBS, read, RECURLY)

    assert [s.id for s in kept] == ["s3", "s4"]
    [held] = withheld
    assert held.vendor is None
    assert withheld_finding(held).summary == (
        f"2 subscription(s) of Marketplace {MARKET} are not billed in Recurly: whether Amplify invoices them too "
        "(billing on in the Marketplace) is unknown: the Marketplaces could not be read (HTTP 403); absence proves "
        "nothing. Give the service account read access to Marketplaces (the Engage (Central) Admin role), or set "
        f"billing.marketplaces: {{{MARKET}: marketplace}} if Amplify bills it"
    )


def test_another_vendor_bills_twice_too() -> None:
    _kept, [held] = guard_double_billing(SUBS, MarketplaceBilling({MARKET: "stripe"}), RECURLY)

    assert withheld_finding(held).summary.endswith(
        "(each would be billed twice). Turn its stripe billing off in the Marketplace's settings to bill it in Recurly"
    )


# ---- switching marketplace -> recurly at billing.switch_at (README, "Switching a Marketplace between modes") -----

SWITCH = datetime(2026, 12, 1, tzinfo=UTC)
TO_RECURLY = BillingSettings(marketplaces={MARKET: "recurly"}, switch_at={MARKET: SWITCH})


def test_before_a_switch_to_recurly_amplify_billing_is_expected_so_the_guard_lets_recurly_prepare() -> None:
    read = MarketplaceBilling({MARKET: "custom", OTHER: None})

    kept, withheld = guard_double_billing(SUBS, read, TO_RECURLY, now=SWITCH - timedelta(hours=1))
    assert [s.id for s in kept] == ["s1", "s2", "s3", "s4"] and withheld == ()

    # from the switch on, Custom billing still on is double billing again: withheld until it is turned off
    kept, withheld = guard_double_billing(SUBS, read, TO_RECURLY, now=SWITCH)
    assert [s.id for s in kept] == ["s3", "s4"] and [w.marketplace for w in withheld] == [MARKET]


def test_recurly_bills_a_marketplace_switched_to_it_from_the_switch_only() -> None:
    assert recurly_from(SUBS[0], TO_RECURLY) == SWITCH
    assert recurly_from(SUBS[2], TO_RECURLY) is None  # another Marketplace: billed from its start
    assert recurly_from(SUBS[0], BillingSettings(mode="marketplace", switch_at=SWITCH)) is None  # leaving Recurly
    # its Recurly subscriptions are created before the switch to start at it (Recurly's starts_at)
    assert future_starts(SUBS, TO_RECURLY, SWITCH - timedelta(days=1)) == {"s1": SWITCH, "s2": SWITCH}
    assert future_starts(SUBS, TO_RECURLY, SWITCH) == {}  # from the switch on, a create starts at once


def test_doctor_expects_custom_billing_until_a_switch_to_recurly_then_asks_to_turn_it_off() -> None:
    from amplify_billing.reconcile.doctor_billing import billing_mode_check
    from amplify_billing.reconcile.doctor_checks import Verdict

    read = MarketplaceBilling({MARKET: "custom", OTHER: None}, {MARKET: "Partners"})
    before = billing_mode_check(TO_RECURLY, read, "", now=SWITCH - timedelta(days=1))
    assert before.verdict is Verdict.OK
    assert "Amplify bills Marketplace Partners" in before.evidence and "2026-12-01T00:00:00Z" in before.evidence
    after = billing_mode_check(TO_RECURLY, read, "", now=SWITCH)
    assert after.verdict is Verdict.ACTION and "billed twice" in after.evidence


def test_a_recurly_subscription_made_after_the_switch_leaves_a_base_price_gap_that_is_named() -> None:
    from amplify_billing.reconcile.billing_modes import late_starts

    now = SWITCH + timedelta(days=2)
    active_after = replace(subscription("s5", MARKET), active_since=SWITCH + timedelta(days=1))
    late = late_starts([*SUBS, active_after], TO_RECURLY, now)
    assert late == {"s1": (SWITCH, now), "s2": (SWITCH, now)}  # s5 became active after the switch: no gap
    assert late_starts(SUBS, TO_RECURLY, SWITCH - timedelta(hours=1)) == {}  # before it: made to start at it
