"""Pure tests of usage windows, merchant tags and idempotency keys (DESIGN.md §2, §3 Usage, §4)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from amplify_billing.usage.windows import (
    WINDOW_SIZES,
    MerchantTag,
    UsageWindow,
    idempotency_key,
    merchant_tag,
    parse_merchant_tag,
    reportable_windows,
    window_floor,
)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SETTLE = timedelta(hours=2)
S = "8ac98ee28ea29652018eaee2253601ac"
Q = "8ac98ee28ea29652018eaee22a6e01b0"


def t(text: str) -> datetime:
    """'2026-11-01 10:17' -> aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def windows(
    *,
    size: timedelta = HOUR,
    now: str,
    active_from: str,
    active_until: str | None = None,
    since: str | None = None,
    earliest: str = "2000-01-01 00:00",
    until: str | None = None,
    settle_delay: timedelta = SETTLE,
) -> list[UsageWindow]:
    return reportable_windows(
        size=size,
        now=t(now),
        settle_delay=settle_delay,
        active_from=t(active_from),
        active_until=t(active_until) if active_until else None,
        since=t(since) if since else None,
        earliest=t(earliest),
        until=t(until) if until else None,
    )


def w(start: str, end: str, clip_start: str | None = None, clip_end: str | None = None) -> UsageWindow:
    return UsageWindow(t(start), t(end), t(clip_start or start), t(clip_end or end))


def test_window_sizes() -> None:
    assert dict(WINDOW_SIZES) == {"hourly": HOUR, "daily": DAY}


# --- window_floor --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "size", "expected"),
    [
        (t("2026-11-01 10:17:42"), HOUR, t("2026-11-01 10:00")),
        (t("2026-11-01 10:00"), HOUR, t("2026-11-01 10:00")),
        (t("2026-11-01 23:59:59.999999"), DAY, t("2026-11-01 00:00")),
        (t("2026-11-02 00:00"), DAY, t("2026-11-02 00:00")),
        # 2026-11-02 03:00 at +05:30 is 2026-11-01 21:30 UTC: the day is the UTC day
        (datetime(2026, 11, 2, 3, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))), DAY, t("2026-11-01 00:00")),
        (datetime(2026, 11, 1, 10, 45, tzinfo=timezone(timedelta(minutes=-30))), HOUR, t("2026-11-01 11:00")),
        (t("1969-12-31 13:30"), DAY, t("1969-12-31 00:00")),
    ],
)
def test_window_floor(moment: datetime, size: timedelta, expected: datetime) -> None:
    floor = window_floor(moment, size)
    assert floor == expected
    assert floor.utcoffset() == timedelta(0)


def test_window_floor_rejects_naive_times_and_odd_sizes() -> None:
    with pytest.raises(ValueError, match="moment must be timezone-aware"):
        window_floor(datetime(2026, 11, 1), HOUR)
    with pytest.raises(ValueError, match="divide one day evenly"):
        window_floor(t("2026-11-01 00:00"), timedelta(hours=7))
    with pytest.raises(ValueError, match="positive"):
        window_floor(t("2026-11-01 00:00"), timedelta(0))


# --- reportable_windows --------------------------------------------------------------------------------------


def test_hourly_windows_partial_first_window_and_settle_delay() -> None:
    # 13:00-14:00 closes at 14:00 and settles at 16:00 > 15:30, so it waits for a later run
    assert windows(now="2026-11-01 15:30", active_from="2026-11-01 10:17") == [
        w("2026-11-01 10:00", "2026-11-01 11:00", clip_start="2026-11-01 10:17"),
        w("2026-11-01 11:00", "2026-11-01 12:00"),
        w("2026-11-01 12:00", "2026-11-01 13:00"),
    ]


def test_daily_windows_partial_first_window() -> None:
    assert windows(size=DAY, now="2026-11-02 02:00", active_from="2026-10-30 06:00") == [
        w("2026-10-30 00:00", "2026-10-31 00:00", clip_start="2026-10-30 06:00"),
        w("2026-10-31 00:00", "2026-11-01 00:00"),
        w("2026-11-01 00:00", "2026-11-02 00:00"),
    ]


def test_run_exactly_on_the_boundary() -> None:
    at_boundary = windows(size=DAY, now="2026-11-02 02:00:00", active_from="2026-11-01 00:00")
    assert at_boundary == [w("2026-11-01 00:00", "2026-11-02 00:00")]
    assert windows(size=DAY, now="2026-11-02 01:59:59", active_from="2026-11-01 00:00") == []
    assert windows(size=DAY, now="2026-11-02 01:59:59.999999", active_from="2026-11-01 00:00") == []


def test_ended_subscription_last_window_is_reportable_settle_delay_after_the_end() -> None:
    args: dict[str, Any] = {"size": DAY, "active_from": "2026-10-31 00:00", "active_until": "2026-11-01 10:30"}
    last = w("2026-11-01 00:00", "2026-11-02 00:00", clip_end="2026-11-01 10:30")
    assert windows(now="2026-11-01 12:29:59", **args) == [w("2026-10-31 00:00", "2026-11-01 00:00")]
    assert windows(now="2026-11-01 12:30", **args) == [w("2026-10-31 00:00", "2026-11-01 00:00"), last]
    # long after the end: nothing past the end of the active interval
    assert windows(now="2026-12-01 00:00", **args) == [w("2026-10-31 00:00", "2026-11-01 00:00"), last]


def test_clipped_at_both_ends_of_one_window() -> None:
    assert windows(now="2026-11-01 13:00", active_from="2026-11-01 10:15", active_until="2026-11-01 10:45") == [
        w("2026-11-01 10:00", "2026-11-01 11:00", "2026-11-01 10:15", "2026-11-01 10:45")
    ]


def test_end_on_a_boundary_leaves_no_empty_window() -> None:
    assert windows(now="2026-11-02 00:00", active_from="2026-11-01 09:30", active_until="2026-11-01 11:00") == [
        w("2026-11-01 09:00", "2026-11-01 10:00", clip_start="2026-11-01 09:30"),
        w("2026-11-01 10:00", "2026-11-01 11:00"),
    ]


@pytest.mark.parametrize("until", ["2026-11-01 10:00", "2026-11-01 09:00"])
def test_empty_or_inverted_active_interval(until: str) -> None:
    assert windows(now="2026-11-02 00:00", active_from="2026-11-01 10:00", active_until=until) == []


def test_not_yet_active() -> None:
    assert windows(now="2026-11-01 10:00", active_from="2026-11-01 11:00") == []


def test_leap_day_daily_windows() -> None:
    assert windows(size=DAY, now="2028-03-02 02:00", active_from="2028-02-28 00:00") == [
        w("2028-02-28 00:00", "2028-02-29 00:00"),
        w("2028-02-29 00:00", "2028-03-01 00:00"),
        w("2028-03-01 00:00", "2028-03-02 00:00"),
    ]


def test_since_leaves_out_windows_up_to_the_watermark() -> None:
    assert windows(now="2026-11-01 16:00", active_from="2026-11-01 09:00", since="2026-11-01 12:00") == [
        w("2026-11-01 12:00", "2026-11-01 13:00"),
        w("2026-11-01 13:00", "2026-11-01 14:00"),
    ]
    # a watermark inside a window (the clipped end of a window reported earlier) leaves that window out
    ended: dict[str, Any] = {
        "active_from": "2026-11-01 09:00",
        "active_until": "2026-11-01 10:30",
        "now": "2026-11-02 00:00",
    }
    assert windows(since="2026-11-01 10:30", **ended) == []
    assert windows(since="2026-11-01 10:00", **ended) == [
        w("2026-11-01 10:00", "2026-11-01 11:00", clip_end="2026-11-01 10:30")
    ]


def test_earliest_leaves_out_old_windows_but_never_clips_one() -> None:
    common: dict[str, Any] = {"now": "2026-11-01 15:00", "active_from": "2026-11-01 09:00"}
    assert windows(earliest="2026-11-01 11:30", **common) == [
        w("2026-11-01 11:00", "2026-11-01 12:00"),  # whole, not 11:30-12:00
        w("2026-11-01 12:00", "2026-11-01 13:00"),
    ]
    # a window ending exactly at earliest is out
    assert windows(earliest="2026-11-01 12:00", **common) == [w("2026-11-01 12:00", "2026-11-01 13:00")]


def test_until_leaves_out_windows_ending_after_it() -> None:
    common: dict[str, Any] = {"now": "2026-11-01 18:00", "active_from": "2026-11-01 09:30"}
    assert windows(until="2026-11-01 11:30", **common) == [
        w("2026-11-01 09:00", "2026-11-01 10:00", clip_start="2026-11-01 09:30"),
        w("2026-11-01 10:00", "2026-11-01 11:00"),
    ]
    assert windows(until="2026-11-01 11:00", **common) == windows(until="2026-11-01 11:30", **common)
    # the clipped end counts: the last window of an ended subscription is inside an until equal to its end
    assert windows(until="2026-11-01 10:30", active_until="2026-11-01 10:30", **common) == [
        w("2026-11-01 09:00", "2026-11-01 10:00", clip_start="2026-11-01 09:30"),
        w("2026-11-01 10:00", "2026-11-01 11:00", clip_end="2026-11-01 10:30"),
    ]


def test_recount_of_the_lookback_as_report_usage_asks_for_it() -> None:
    # report-usage recounts the windows between now - lookback and the watermark
    now = "2026-11-04 12:00"
    recount = windows(
        size=DAY, now=now, active_from="2026-10-01 00:00", earliest="2026-11-01 12:00", until="2026-11-04 00:00"
    )
    assert [x.start for x in recount] == [t("2026-11-01 00:00"), t("2026-11-02 00:00"), t("2026-11-03 00:00")]


def test_offsets_are_normalised_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    result = reportable_windows(
        size=HOUR,
        now=datetime(2026, 11, 1, 16, 0, tzinfo=plus2),
        settle_delay=SETTLE,
        active_from=datetime(2026, 11, 1, 12, 17, tzinfo=plus2),
        active_until=None,
        since=None,
        earliest=datetime(2000, 1, 1, tzinfo=plus2),
        until=None,
    )
    assert result == [
        w("2026-11-01 10:00", "2026-11-01 11:00", clip_start="2026-11-01 10:17"),
        w("2026-11-01 11:00", "2026-11-01 12:00"),
    ]
    assert all(x.start.utcoffset() == timedelta(0) and x.clip_start.tzinfo is UTC for x in result)


@pytest.mark.parametrize("name", ["now", "active_from", "active_until", "since", "earliest", "until"])
def test_naive_arguments_are_a_programming_error(name: str) -> None:
    args: dict[str, Any] = {
        "size": HOUR,
        "now": t("2026-11-01 15:00"),
        "settle_delay": SETTLE,
        "active_from": t("2026-11-01 09:00"),
        "active_until": t("2026-11-01 14:00"),
        "since": t("2026-11-01 10:00"),
        "earliest": t("2026-11-01 00:00"),
        "until": t("2026-11-01 14:00"),
    }
    args[name] = args[name].replace(tzinfo=None)
    with pytest.raises(ValueError, match=f"{name} must be timezone-aware"):
        reportable_windows(**args)


def test_negative_settle_delay_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="settle_delay"):
        windows(now="2026-11-01 15:00", active_from="2026-11-01 09:00", settle_delay=-HOUR)


def test_a_week_of_hourly_windows_for_10000_subscriptions() -> None:
    now = t("2026-11-08 03:00")
    begin = time.perf_counter()
    total = 0
    for i in range(10_000):
        total += len(
            reportable_windows(
                size=HOUR,
                now=now,
                settle_delay=SETTLE,
                active_from=t("2025-01-01 00:00") + timedelta(minutes=i % 60),
                active_until=None,
                since=None,
                earliest=now - timedelta(days=7),
                until=None,
            )
        )
    elapsed = time.perf_counter() - begin
    print(f"10,000 subscriptions x a week of hourly windows: {total} windows in {elapsed:.2f} s")
    # the week holds windows 03:00 of 11-01 (end after earliest) .. 00:00-01:00 of 11-08 (settled at 03:00)
    assert total == 10_000 * 166


# --- merchant tags -------------------------------------------------------------------------------------------


def test_merchant_tag_format() -> None:
    start = t("2026-11-01 00:00")
    assert merchant_tag(S, Q, start) == f"amplify:{S}:{Q}:20261101T000000Z"
    assert merchant_tag(S, Q, t("2026-11-01 13:00"), 2) == f"amplify:{S}:{Q}:20261101T130000Z:adj2"
    # the same instant written with an offset is the same tag
    local = datetime(2026, 11, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    assert merchant_tag(S, Q, local) == merchant_tag(S, Q, start)


@pytest.mark.parametrize("adjustment", [None, 1, 2, 17])
def test_merchant_tag_round_trip(adjustment: int | None) -> None:
    start = t("2028-02-29 00:00")
    text = merchant_tag(S, Q, start, adjustment)
    parsed = parse_merchant_tag(text)
    assert parsed == MerchantTag(S, Q, start, adjustment)
    assert parsed is not None and parsed.window_start.tzinfo is UTC
    assert parsed.text() == text


@pytest.mark.parametrize(
    "foreign",
    [
        "",
        "order-1234",
        f"amplify:{S}:{Q}",
        f"amplify:{S}:{Q}:2026-11-01T00:00:00Z",
        f"amplify:{S}:{Q}:20261101T000000",
        f"amplify:{S}:{Q}:20261399T000000Z",
        f"amplify:{S}:{Q}:20261101T000000Z:adj0",
        f"amplify:{S}:{Q}:20261101T000000Z:adj01",
        f"amplify:{S}:{Q}:20261101T000000Z:adj",
        f"amplify:{S}:{Q}:20261101T000000Z:extra",
        f"amplify:{S}:{Q}:20261101T000000Z ",
        f"AMPLIFY:{S}:{Q}:20261101T000000Z",
        f"other:{S}:{Q}:20261101T000000Z",
        f"amplify::{Q}:20261101T000000Z",
        f"amplify:{S}:x:y:20261101T000000Z",
    ],
)
def test_parse_merchant_tag_rejects_foreign_tags(foreign: str) -> None:
    assert parse_merchant_tag(foreign) is None


def test_merchant_tag_rejects_what_would_make_it_ambiguous() -> None:
    start = t("2026-11-01 00:00")
    with pytest.raises(ValueError, match="subscription_id must be non-empty without ':'"):
        merchant_tag("a:b", Q, start)
    with pytest.raises(ValueError, match="quota_id must be non-empty"):
        merchant_tag(S, "", start)
    with pytest.raises(ValueError, match="window_start must be timezone-aware"):
        merchant_tag(S, Q, datetime(2026, 11, 1))
    with pytest.raises(ValueError, match="whole second"):
        merchant_tag(S, Q, start + timedelta(microseconds=1))
    with pytest.raises(ValueError, match="adjustment must be None or a number ≥ 1"):
        merchant_tag(S, Q, start, 0)


# --- idempotency keys ----------------------------------------------------------------------------------------


def test_idempotency_key_is_deterministic_distinct_and_short() -> None:
    tag = merchant_tag(S, Q, t("2026-11-01 00:00"))
    key = idempotency_key(tag, "create")
    # pinned: a key that changed between versions would not deduplicate a resend after an upgrade
    assert key == "amplify-create-ad8d06054bdbe4ca79d9c0658e0d3eb1"
    assert idempotency_key(tag, "create") == key
    others = {
        idempotency_key(tag, "update"),
        idempotency_key(merchant_tag(S, Q, t("2026-11-02 00:00")), "create"),
        idempotency_key(merchant_tag(S, Q, t("2026-11-01 00:00"), 1), "create"),
        idempotency_key(f"{tag}=12", "update"),
        idempotency_key(f"{tag}=13", "update"),
    }
    assert key not in others and len(others) == 5
    long_tag = merchant_tag("s" * 500, "q" * 500, t("2026-11-01 00:00"), 99)
    for k in (key, *others, idempotency_key(long_tag, "create"), idempotency_key(tag, "x" * 16)):
        assert len(k) <= 64
        assert re.fullmatch(r"[A-Za-z0-9:_-]+", k)


@pytest.mark.parametrize("operation", ["", "Create", "create usage", "x" * 17])
def test_idempotency_key_rejects_odd_operations(operation: str) -> None:
    with pytest.raises(ValueError, match="operation must be"):
        idempotency_key("amplify:s:q:20261101T000000Z", operation)


def _reference(
    size: timedelta,
    now: datetime,
    settle: timedelta,
    active_from: datetime,
    active_until: datetime | None,
    since: datetime | None,
    earliest: datetime,
    until: datetime | None,
) -> list[UsageWindow]:
    """The specification read literally, over every window of a bounded span."""
    result = []
    start = t("2026-10-25 00:00")
    while start < t("2026-11-10 00:00"):
        end = start + size
        clip_start = max(start, active_from)
        clip_end = min(end, active_until) if active_until else end
        if (
            clip_start < clip_end
            and clip_end + settle <= now
            and (since is None or clip_end > since)
            and end > earliest
            and (until is None or clip_end <= until)
        ):
            result.append(UsageWindow(start, end, clip_start, clip_end))
        start = end
    return result


def test_matches_the_literal_specification_on_random_cases() -> None:
    import random

    rng = random.Random(20261101)
    base = t("2026-11-01 00:00")

    def moment() -> datetime:
        # minutes, with a bias to window boundaries, where the off-by-one mistakes live
        minutes = rng.randrange(-3 * 1440, 5 * 1440)
        return base + timedelta(minutes=minutes - minutes % 60 if rng.random() < 0.5 else minutes)

    for _ in range(2000):
        size = rng.choice([HOUR, DAY])
        settle = timedelta(minutes=rng.choice([0, 30, 120, 1440]))
        active_from = moment()
        active_until = moment() if rng.random() < 0.5 else None
        since = moment() if rng.random() < 0.5 else None
        until = moment() if rng.random() < 0.3 else None
        earliest, now = moment(), moment()
        args = (size, now, settle, active_from, active_until, since, earliest, until)
        got = reportable_windows(
            size=size,
            now=now,
            settle_delay=settle,
            active_from=active_from,
            active_until=active_until,
            since=since,
            earliest=earliest,
            until=until,
        )
        assert got == _reference(*args), args
