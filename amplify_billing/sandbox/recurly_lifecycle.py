"""How an emulated Recurly subscription moves through time: billing periods, terms, pauses, expiry.

Functions of one ``SubscriptionRecord`` and a moment, with no clock of their own: ``recurly_state`` calls
``advance`` with its injected clock's now before it answers, and ``recurly_output`` shows the current term.
``advance`` activates a future subscription at its start, expires a canceled one at its ``expires_at`` (and a
non-renewing one after ``total_billing_cycles``), rolls an active one into the next billing period, and starts
and ends pauses at renewals.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from amplify_billing.sandbox.recurly_records import SubscriptionRecord
from amplify_billing.sandbox.recurly_wire import validation


def add_interval(start: datetime, unit: str, count: int) -> datetime:
    """``count`` days or months after ``start``; a month end clamps (Jan 31 + 1 month = Feb 28/29)."""
    if unit == "days":
        return start + timedelta(days=count)
    months = start.month - 1 + count
    year, month = start.year + months // 12, months % 12 + 1
    return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))


def term_ends_at(s: SubscriptionRecord) -> datetime:
    if s.total_billing_cycles is None:
        return s.current_period_ends_at
    periods_left = s.total_billing_cycles - s.period % s.total_billing_cycles
    return add_interval(s.anchor, s.interval_unit, (s.period + periods_left) * s.interval_length)


def term_started_at(s: SubscriptionRecord) -> datetime:
    if s.total_billing_cycles is None:
        return s.current_period_started_at
    first = s.period - s.period % s.total_billing_cycles
    return add_interval(s.anchor, s.interval_unit, first * s.interval_length)


def resume(s: SubscriptionRecord, when: datetime) -> None:
    s.state, s.paused_at, s.remaining_pause_cycles, s.updated_at = "active", None, None, when
    # a resumed subscription starts a new billing period then
    s.anchor, s.period, s.current_period_started_at = when, 0, when
    s.current_period_ends_at = add_interval(when, s.interval_unit, s.interval_length)


def advance(s: SubscriptionRecord, now: datetime) -> None:
    """Bring one subscription to ``now`` (see the module docstring)."""
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
                resume(s, end)  # the pause is over at this renewal
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


def pause_now(s: SubscriptionRecord, cycles: int, now: datetime) -> SubscriptionRecord:
    """Seeding: a subscription whose pause took effect at its last renewal and lasts ``cycles`` periods counted from
    the current one (as if paused earlier with ``PUT …/pause``)."""
    if s.state != "active" or cycles < 1:
        raise validation("subscription", f"is {s.state}; only an active subscription can be paused, for 1+ cycles")
    s.state, s.paused_at, s.remaining_pause_cycles = "paused", s.current_period_started_at, cycles
    s.updated_at = now
    return s


def expire_after_dunning(s: SubscriptionRecord, now: datetime) -> SubscriptionRecord:
    """Seeding: a subscription that dunning expired (every retry of a past-due invoice failed), as Recurly ends one
    without this tool (reference §9.3); it leaves ``state=live`` and is still read by uuid."""
    if s.state not in ("active", "paused", "canceled"):
        raise validation("subscription", f"is {s.state}; only a live subscription can expire")
    s.state, s.expires_at, s.updated_at, s.expiration_reason = "expired", now, now, "nonpayment"
    return s
