"""Switching a Marketplace between modes (billing.switch_at), pure: which side bills each Amplify invoice, so that
no period is billed twice and none is left unbilled (reconcile/mode_switch.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from amplify_billing.reconcile.mode_switch import AMPLIFY_SIDE, RECURLY_SIDE, SPLIT, invoice_side

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
