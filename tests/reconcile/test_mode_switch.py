"""Switching a Marketplace between modes (billing.switch_at), pure: which side bills each Amplify invoice, so that
no period is billed twice and none is left unbilled (reconcile/mode_switch.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from amplify_billing.reconcile.mode_switch import (
    AMPLIFY_SIDE,
    RECURLY_SIDE,
    SPLIT,
    PaidTerm,
    base_overlap,
    invoice_side,
)

T = datetime(2027, 1, 1, tzinfo=UTC)
DEC = (datetime(2026, 12, 1, tzinfo=UTC), T)
JAN = (T, datetime(2027, 2, 1, tzinfo=UTC))
STRADDLE = (datetime(2026, 12, 15, tzinfo=UTC), datetime(2027, 1, 15, tzinfo=UTC))
BEFORE, AFTER = datetime(2026, 12, 10, tzinfo=UTC), datetime(2027, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("mode", "period", "created", "side"),
    [
        # recurly -> marketplace at T: Recurly billed everything before T
        ("marketplace", DEC, AFTER, RECURLY_SIDE),
        ("marketplace", JAN, AFTER, AMPLIFY_SIDE),
        ("marketplace", None, BEFORE, RECURLY_SIDE),  # the initial invoice of a subscription approved before T
        ("marketplace", None, AFTER, AMPLIFY_SIDE),
        ("marketplace", STRADDLE, AFTER, SPLIT),
        # marketplace -> recurly at T: Amplify's invoices bill everything before T, Recurly from T
        ("recurly", DEC, AFTER, AMPLIFY_SIDE),
        ("recurly", JAN, AFTER, RECURLY_SIDE),
        ("recurly", None, BEFORE, AMPLIFY_SIDE),
        ("recurly", None, AFTER, RECURLY_SIDE),
        ("recurly", STRADDLE, AFTER, SPLIT),
    ],
)
def test_each_period_has_one_side(
    mode: str, period: tuple[datetime, datetime] | None, created: datetime, side: str
) -> None:
    start, end = period if period else (None, None)
    assert invoice_side(mode, T, start, end, created).side == side


def test_an_initial_invoice_without_a_time_is_split_never_guessed() -> None:
    verdict = invoice_side("marketplace", T, None, None, None)
    assert verdict.side == SPLIT
    assert verdict.reason == (
        "it has neither a period nor a creation time, so which side of billing.switch_at 2027-01-01T00:00:00Z it "
        "bills cannot be told"
    )


def test_the_reasons_name_the_switch() -> None:
    assert invoice_side("marketplace", T, *DEC, AFTER).reason == (
        "billed in Recurly: its period 2026-12-01T00:00:00Z to 2027-01-01T00:00:00Z ends by billing.switch_at "
        "2027-01-01T00:00:00Z, before which Recurly billed this Marketplace"
    )
    assert invoice_side("recurly", T, *JAN, AFTER).reason == (
        "billed in Recurly: its period 2027-01-01T00:00:00Z to 2027-02-01T00:00:00Z starts at or after "
        "billing.switch_at 2027-01-01T00:00:00Z, from which Recurly bills this Marketplace"
    )
    assert invoice_side("marketplace", T, *STRADDLE, AFTER).reason == (
        "its period 2026-12-15T00:00:00Z to 2027-01-15T00:00:00Z straddles billing.switch_at 2027-01-01T00:00:00Z: "
        "Recurly billed this Marketplace before it and Amplify's invoices after it, so nothing is sent. Bill the "
        "part Recurly did not by hand, then set this invoice's state in Amplify"
    )


# ---- the base price a Recurly term paid in advance already covered (recurly -> marketplace) --------------------

UUID = "a" * 32


def test_a_period_overlapping_a_recurly_term_paid_in_advance_names_the_overlap_and_its_amount() -> None:
    # January (31 days) at 31.00: the Recurly term paid to Jan 10 covered 9 days of it, worth 9.00
    term = PaidTerm(UUID, datetime(2027, 1, 10, tzinfo=UTC))
    reason = base_overlap(T, JAN[0], JAN[1], None, Decimal("31.00"), "USD", term)
    assert reason == (
        f"its base price 31.00 USD covers 2027-01-01T00:00:00Z to 2027-01-10T00:00:00Z, which Recurly subscription "
        f"{UUID} was billed for in advance up to 2027-01-10T00:00:00Z: 9.00 USD of it would be billed twice, so "
        "nothing is sent. Bill it by hand less 9.00 USD (or credit 9.00 USD in Recurly), then set this invoice's "
        "state in Amplify"
    )


def test_a_zero_decimal_currency_is_rounded_to_its_smallest_unit() -> None:
    term = PaidTerm(UUID, datetime(2027, 1, 2, tzinfo=UTC))  # 1 day of 31 at 1000 JPY: 32.258... -> 32
    assert "32 JPY of it would be billed twice" in (base_overlap(T, *JAN, None, Decimal(1000), "JPY", term) or "")


@pytest.mark.parametrize(
    "term",
    [
        None,  # no Recurly subscription was linked to it: Recurly never billed it
        PaidTerm(UUID, T),  # paid up to the switch exactly
        PaidTerm(UUID, datetime(2026, 12, 20, tzinfo=UTC)),
    ],
)
def test_no_overlap_no_reason(term: PaidTerm | None) -> None:
    assert base_overlap(T, *JAN, None, Decimal(31), "USD", term) is None


def test_no_base_price_nothing_to_bill_twice() -> None:
    assert base_overlap(T, *JAN, None, Decimal(0), "USD", PaidTerm(UUID, AFTER)) is None


def test_an_initial_invoice_after_the_switch_inside_a_paid_term_holds_its_whole_base_price() -> None:
    reason = base_overlap(
        T, None, None, AFTER, Decimal("20.00"), "USD", PaidTerm(UUID, datetime(2027, 1, 20, tzinfo=UTC))
    )
    assert reason is not None and "20.00 USD of it would be billed twice" in reason


def test_an_unreadable_term_withholds_it_absence_proves_nothing() -> None:
    reason = base_overlap(T, *JAN, None, Decimal(31), "USD", PaidTerm(UUID, None, "Recurly answered 503"))
    assert reason == (
        f"whether Recurly subscription {UUID}, billed in advance before billing.switch_at 2027-01-01T00:00:00Z, "
        "already covered part of its base price cannot be told (Recurly answered 503): nothing is sent; the next run "
        "reads it again"
    )


def _listed(uuid: str, plan: str, amplify_id: str | None, ends: str = "2026-12-15T00:00:00Z") -> dict[str, Any]:
    fields = [{"name": "amplify_subscription_id", "value": amplify_id}] if amplify_id else []
    return {"uuid": uuid, "plan": {"code": plan}, "custom_fields": fields, "current_period_ends_at": ends}


def test_the_owner_account_proves_which_term_was_paid_or_that_none_was() -> None:
    from amplify_billing.reconcile.mode_switch import paid_term_from_account

    def term(listed: list[dict[str, Any]], incomplete: str = "", field: str | None = "amplify_subscription_id") -> Any:
        return paid_term_from_account("S1", "acc", listed, incomplete, custom_field=field, plan_prefix="amplify-")

    # the field names it: that one, whatever else the account holds
    found = term([_listed("u1", "amplify-p", "S1"), _listed("u2", "amplify-p", "S2")])
    assert (found.uuid, found.paid_until) == ("u1", datetime(2026, 12, 15, tzinfo=UTC))
    # only other subscriptions' (or another product's plans): Recurly never billed it
    assert term([_listed("u2", "amplify-p", "S2"), _listed("u3", "other-p", None)]) is None
    assert term([]) is None
    # one of ours that nothing rules out: it
    assert term([_listed("u4", "amplify-p", None)], field=None).uuid == "u4"
    # two that cannot be told apart: withheld, naming both, never a guess
    both = term([_listed("u4", "amplify-p", None), _listed("u5", "amplify-q", None)], field=None)
    assert both.paid_until is None and "u4, u5" in both.why
    # a listing not proven whole proves nothing
    cut = term([], incomplete="1 of 2 listed (Recurly-Total-Records)")
    assert cut.paid_until is None and "1 of 2 listed" in cut.why
