"""Usage sources: the file source's validation and attribution, the traceability source's query count."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from amplify_billing.amplify.traceability import GroupedCount
from amplify_billing.errors import ConfigError, UsageInputError
from amplify_billing.settings import AmplifySettings, RecurlySettings, Secret, Settings, UsageSettings
from amplify_billing.usage.sources import FileSource, RangeCount, TraceabilitySource, UsageSource, build_source

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
FIX = "fix the row, nothing was posted from this file"


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def plain(answers: dict[tuple[datetime, datetime], RangeCount]) -> dict[tuple[datetime, datetime], dict[Any, int]]:
    return {r: dict(a.counts) for r, a in answers.items()}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- FileSource: valid files ---------------------------------------------------------------------------------

CSV = """subscription_id,quota_id,window_start,count
s1,q1,2026-11-01T10:00:00Z,5
s1,q1,2026-11-01T11:00:00Z,7
s1,q2,2026-11-01T10:00:00Z,3
s2,q1,2026-11-01T11:00:00+01:00,11
s2,q1,2026-11-01T12:00:00Z,0
"""

JSONL = """{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T10:00:00Z", "count": 5}
{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": 7}

{"subscription_id": "s1", "quota_id": "q2", "window_start": "2026-11-01T10:00:00Z", "count": 3}
{"window_start": "2026-11-01T11:00:00+01:00", "count": 11, "quota_id": "q1", "subscription_id": "s2"}
{"subscription_id": "s2", "quota_id": "q1", "window_start": "2026-11-01T12:00:00Z", "count": 0}
"""


@pytest.mark.parametrize(("name", "text"), [("usage.csv", CSV), ("usage.jsonl", JSONL), ("USAGE.CSV", CSV)])
def test_valid_file_counts_per_window(tmp_path: Path, name: str, text: str) -> None:
    source: UsageSource = FileSource(write(tmp_path, name, text), HOUR)
    ten, eleven, twelve = (
        (t("2026-11-01 10:00"), t("2026-11-01 11:00")),
        (
            t("2026-11-01 11:00"),
            t("2026-11-01 12:00"),
        ),
        (t("2026-11-01 12:00"), t("2026-11-01 13:00")),
    )
    empty = (t("2026-11-01 13:00"), t("2026-11-01 14:00"))
    # the 11:00+01:00 row of s2 is the 10:00 UTC window
    assert plain(source.counts([ten, eleven, twelve, empty, ten])) == {
        ten: {("s1", "q1"): 5, ("s1", "q2"): 3, ("s2", "q1"): 11},
        eleven: {("s1", "q1"): 7},
        twelve: {("s2", "q1"): 0},
        empty: {},
    }
    assert source.queries == 0  # a file costs no count queries
    assert isinstance(source, FileSource)
    assert source.rows == 5
    assert source.span == (t("2026-11-01 10:00"), t("2026-11-01 13:00"))


def test_csv_header_in_any_order_with_bom_crlf_blank_lines_and_padding(tmp_path: Path) -> None:
    path = tmp_path / "usage.csv"
    path.write_bytes(
        "\ufeffcount, window_start ,quota_id,subscription_id\r\n\r\n 12 ,2026-11-01T00:00:00Z, q1 ,s1\r\n".encode()
    )
    source = FileSource(path, DAY)
    day = (t("2026-11-01 00:00"), t("2026-11-02 00:00"))
    assert plain(source.counts([day])) == {day: {("s1", "q1"): 12}}


def test_attribution_of_clipped_and_longer_ranges(tmp_path: Path) -> None:
    source = FileSource(write(tmp_path, "usage.csv", CSV), HOUR)
    started_late = (t("2026-11-01 10:17"), t("2026-11-01 11:00"))  # subscription started 10:17
    ended_early = (t("2026-11-01 11:00"), t("2026-11-01 11:30"))  # subscription ended 11:30
    both = (t("2026-11-01 10:15"), t("2026-11-01 10:45"))
    span = (t("2026-11-01 10:30"), t("2026-11-01 12:00"))  # windows 10:00 and 11:00 together
    before = (t("2026-11-01 09:00"), t("2026-11-01 10:00"))  # ends where the 10:00 row starts
    assert plain(source.counts([started_late, ended_early, both, span, before])) == {
        started_late: {("s1", "q1"): 5, ("s1", "q2"): 3, ("s2", "q1"): 11},
        ended_early: {("s1", "q1"): 7},
        both: {("s1", "q1"): 5, ("s1", "q2"): 3, ("s2", "q1"): 11},
        span: {("s1", "q1"): 12, ("s1", "q2"): 3, ("s2", "q1"): 11},
        before: {},
    }


def test_daily_attribution_of_a_subscription_ended_mid_day(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "usage.jsonl",
        '{"subscription_id": "s1", "quota_id": "q1", "window_start": "2028-02-29T00:00:00Z", "count": 40}\n'
        '{"subscription_id": "s1", "quota_id": "q1", "window_start": "2028-03-01T00:00:00Z", "count": 1}\n',
    )
    leap_day_until_noon = (t("2028-02-29 00:00"), t("2028-02-29 12:00"))
    assert plain(FileSource(path, DAY).counts([leap_day_until_noon])) == {leap_day_until_noon: {("s1", "q1"): 40}}


def test_returned_counts_do_not_share_state(tmp_path: Path) -> None:
    source = FileSource(write(tmp_path, "usage.csv", CSV), HOUR)
    ten = (t("2026-11-01 10:00"), t("2026-11-01 11:00"))
    cast(dict[tuple[str, str], int], source.counts([ten])[ten].counts)[("s1", "q1")] = 999
    assert source.counts([ten])[ten].count(("s1", "q1")) == 5


def test_a_file_proves_only_the_pairs_and_windows_it_holds(tmp_path: Path) -> None:
    path = write(tmp_path, "usage.csv", CSV)  # windows 10:00 to 12:00; pairs (s1, q1), (s1, q2), (s2, q1)
    source = FileSource(path, HOUR)
    eleven = (t("2026-11-01 11:00"), t("2026-11-01 12:00"))
    clipped = (t("2026-11-01 12:30"), t("2026-11-01 13:00"))
    before = (t("2026-11-01 09:00"), t("2026-11-01 10:00"))
    across = (t("2026-11-01 12:00"), t("2026-11-01 14:00"))

    answers = source.counts([eleven, clipped, before, across], ["s1", "s2", "s3"])

    inside = answers[eleven]
    assert inside.count(("s1", "q1")) == 7
    assert inside.count(("s1", "q2")) == 0, "a pair the file names, without a row in this window, is 0"
    assert inside.count(("s2", "q1")) == 0
    assert inside.count(("s3", "q1")) is None, "a pair the file never names is unknown"
    assert inside.count(("s1", "q3")) is None
    assert not inside.whole
    assert inside.why == f"usage file {path} has no row for this subscription and quota in any window"
    assert answers[clipped].count(("s2", "q1")) == 0  # inside the last window of the file
    for outside in (before, across):
        assert answers[outside].count(("s1", "q1")) is None and not answers[outside].counts
    assert answers[across].why == (
        f"usage file {path} holds windows 2026-11-01T10:00:00Z – 2026-11-01T13:00:00Z only, "
        "not 2026-11-01T12:00:00Z – 2026-11-01T14:00:00Z"
    )
    assert source.queries == 0 and source.retention is None


# --- FileSource: every validation error ----------------------------------------------------------------------

HEADER = "subscription_id,quota_id,window_start,count\n"
GOOD = "s1,q1,2026-11-01T10:00:00Z,5\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (GOOD + "s1,q1,2026-11-01T11:00:00Z,ten\n", f"3: count: 'ten' is not a whole number ≥ 0; {FIX}"),
        (GOOD + "s1,q1,2026-11-01T11:00:00Z,-1\n", f"3: count: '-1' is not a whole number ≥ 0; {FIX}"),
        (GOOD + "s1,q1,2026-11-01T11:00:00Z,2.5\n", f"3: count: '2.5' is not a whole number ≥ 0; {FIX}"),
        (GOOD + "s1,q1,2026-11-01T11:00:00Z,\n", f"3: count: '' is not a whole number ≥ 0; {FIX}"),
        (
            GOOD + "s1,q1,2026-11-01T11:00:00,4\n",
            f"3: window_start: '2026-11-01T11:00:00' has no time zone; add Z for UTC, e.g. 2026-11-01T11:00:00Z; {FIX}",
        ),
        (
            GOOD + "s1,q1,2026-11-01,4\n",
            f"3: window_start: '2026-11-01' has no time zone; add Z for UTC, e.g. 2026-11-01T00:00:00Z; {FIX}",
        ),
        (
            GOOD + "s1,q1,yesterday,4\n",
            f"3: window_start: 'yesterday' is not an ISO 8601 time such as 2026-11-01T00:00:00Z; {FIX}",
        ),
        (
            GOOD + "s1,q1,2026-11-01T11:30:00Z,4\n",
            f"3: window_start: '2026-11-01T11:30:00Z' is not the start of an hourly window (the top of an hour, UTC); {FIX}",
        ),
        (
            # 11:00 at +05:30 is 05:30 UTC
            GOOD + "s1,q1,2026-11-01T11:00:00+05:30,4\n",
            f"3: window_start: '2026-11-01T11:00:00+05:30' is not the start of an hourly window (the top of an hour, UTC); {FIX}",
        ),
        (GOOD + ",q1,2026-11-01T11:00:00Z,4\n", f"3: subscription_id: is empty; {FIX}"),
        (GOOD + "s1,  ,2026-11-01T11:00:00Z,4\n", f"3: quota_id: is empty; {FIX}"),
        (
            GOOD + "s:1,q1,2026-11-01T11:00:00Z,4\n",
            f"3: subscription_id: 's:1' contains ':' or a space, which a merchant_tag cannot hold; {FIX}",
        ),
        (
            GOOD + "s1,q 1,2026-11-01T11:00:00Z,4\n",
            f"3: quota_id: 'q 1' contains ':' or a space, which a merchant_tag cannot hold; {FIX}",
        ),
        (
            GOOD + "s1,q1,2026-11-01T11:00:00Z\n",
            f"3: expected 4 fields (subscription_id,quota_id,window_start,count), found 3; {FIX}",
        ),
        (
            GOOD + "s1,q1,2026-11-01T11:00:00Z,4,x\n",
            f"3: expected 4 fields (subscription_id,quota_id,window_start,count), found 5; {FIX}",
        ),
        (
            GOOD + "s1,q2,2026-11-01T10:00:00Z,1\n\ns1,q1,2026-11-01T11:00:00+01:00,6\n",
            "5: duplicate of line 2 (subscription_id s1, quota_id q1, window_start 2026-11-01T10:00:00Z); "
            "keep one row per window, nothing was posted from this file",
        ),
        (GOOD + 's1,"q1,2026-11-01T11:00:00Z,4\n', f"3: not valid CSV (unexpected end of data); {FIX}"),
    ],
)
def test_csv_row_errors(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, "usage.csv", HEADER + body)
    with pytest.raises(UsageInputError) as caught:
        FileSource(path, HOUR)
    assert str(caught.value) == f"{path}:{message}"


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("subscription_id,quota_id,window_start", "missing count"),
        ("subscription_id,quota_id,window_start,count,region", "unexpected 'region'"),
        ("subscription_id,quota_id,window_start,count,count", "repeated count"),
        (
            "s1,q1,2026-11-01T10:00:00Z,5",
            "missing subscription_id, quota_id, window_start, count; "
            "unexpected 's1', 'q1', '2026-11-01T10:00:00Z', '5'",
        ),
    ],
)
def test_csv_header_errors(tmp_path: Path, header: str, problem: str) -> None:
    path = write(tmp_path, "usage.csv", f"{header}\n{GOOD}")
    with pytest.raises(UsageInputError) as caught:
        FileSource(path, HOUR)
    assert str(caught.value) == (
        f"{path}:1: the first line must be the header subscription_id,quota_id,window_start,count ({problem}); "
        "fix the header, nothing was posted from this file"
    )


def test_daily_alignment_error_names_midnight_utc(tmp_path: Path) -> None:
    path = write(tmp_path, "usage.csv", HEADER + "s1,q1,2026-11-01T10:00:00Z,5\n")
    with pytest.raises(UsageInputError) as caught:
        FileSource(path, DAY)
    assert str(caught.value) == (
        f"{path}:2: window_start: '2026-11-01T10:00:00Z' is not the start of a daily window (00:00:00 UTC); {FIX}"
    )


JSON_GOOD = '{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T10:00:00Z", "count": 5}\n'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": "ten"}',
            f'count: "ten" is a string; write the number without quotes; {FIX}',
        ),
        (
            '{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": 2.0}',
            f"count: 2.0 is not a whole number ≥ 0; {FIX}",
        ),
        (
            '{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": -3}',
            f"count: -3 is not a whole number ≥ 0; {FIX}",
        ),
        (
            '{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": true}',
            f"count: true is not a whole number ≥ 0; {FIX}",
        ),
        (
            '{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": null}',
            f"count: null is not a whole number ≥ 0; {FIX}",
        ),
        (
            '{"subscription_id": 7, "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": 1}',
            f"subscription_id: 7 is not a string; {FIX}",
        ),
        (
            '{"subscription_id": "s1", "quota_id": "q1", "window_start": 1793527200, "count": 1}',
            f"window_start: 1793527200 is not an ISO 8601 time string; {FIX}",
        ),
        (
            '{"subscription_id": "s1", "quota_id": "q1", "count": 1}',
            f"the object must have exactly the keys subscription_id, quota_id, window_start, count (missing window_start); {FIX}",
        ),
        (
            '{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": 1, "note": "x"}',
            f"the object must have exactly the keys subscription_id, quota_id, window_start, count (unexpected 'note'); {FIX}",
        ),
        (
            '["s1", "q1", "2026-11-01T11:00:00Z", 1]',
            f"expected a JSON object with keys subscription_id, quota_id, window_start, count, found list; {FIX}",
        ),
        (
            '{"subscription_id": "s1", "quota_id": "q1",',
            f"not valid JSON (Expecting property name enclosed in double quotes at column 44); {FIX}",
        ),
    ],
)
def test_jsonl_row_errors(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, "usage.jsonl", JSON_GOOD + "\n" + line + "\n")
    with pytest.raises(UsageInputError) as caught:
        FileSource(path, HOUR)
    assert str(caught.value) == f"{path}:3: {message}"


def test_a_bad_row_at_the_end_stops_the_whole_file(tmp_path: Path) -> None:
    rows = "".join(f"s{i},q1,2026-11-01T10:00:00Z,{i}\n" for i in range(1000))
    path = write(tmp_path, "usage.csv", HEADER + rows + "s1000,q1,2026-11-01T10:00:00Z,many\n")
    with pytest.raises(UsageInputError, match=r":1002: count: 'many'"):
        FileSource(path, HOUR)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "usage.csv",
            "",
            "usage file {path} is empty; it needs a row (subscription_id, quota_id, window_start, count) per counted window. Nothing was posted from this file",
        ),
        (
            "usage.jsonl",
            "\n  \n",
            "usage file {path} is empty; it needs a row (subscription_id, quota_id, window_start, count) per counted window. Nothing was posted from this file",
        ),
        (
            "usage.csv",
            HEADER,
            "usage file {path} has no usage rows; it needs a row (subscription_id, quota_id, window_start, count) per counted window. Nothing was posted from this file",
        ),
        (
            "usage.txt",
            HEADER + GOOD,
            "usage file {path}: unsupported extension '.txt'; usage.file_path must name a .csv or .jsonl file",
        ),
        (
            "usage",
            HEADER + GOOD,
            "usage file {path}: unsupported extension '(none)'; usage.file_path must name a .csv or .jsonl file",
        ),
        (
            "usage.json",
            JSON_GOOD,
            "usage file {path}: unsupported extension '.json'; usage.file_path must name a .csv or .jsonl file",
        ),
    ],
)
def test_file_level_errors(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(UsageInputError) as caught:
        FileSource(path, HOUR)
    assert str(caught.value) == message.format(path=path)


def test_missing_file_names_the_path_and_the_config_key(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "usage.csv"
    with pytest.raises(UsageInputError) as caught:
        FileSource(path, HOUR)
    assert str(caught.value) == (
        f"usage file {path} does not exist; set usage.file_path to an existing .csv or .jsonl file"
    )
    assert caught.value.exit_code == 2


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "usage.csv"
    path.write_bytes(HEADER.encode() + b"s1,q1,2026-11-01T10:00:00Z,\xff\n")
    with pytest.raises(UsageInputError) as caught:
        FileSource(path, HOUR)
    assert str(caught.value) == f"{path}:2: not UTF-8 text (invalid start byte); save the file as UTF-8"


# --- TraceabilitySource --------------------------------------------------------------------------------------


class FakeLexus:
    """A Traceability backend in memory, with Lexus's behaviour: each grouping keeps its ``limit`` largest terms
    (by count, then key) and says nothing; ``cap`` lowers any larger limit asked; ``phantom`` units are counted by
    the ungrouped total but fall in no group (a backend fault no split can fix); ``late`` units land between the
    first total and its groups. Every request is recorded as (kind, start, end, subscriptions, limit)."""

    def __init__(
        self,
        traffic: dict[tuple[str, str], dict[datetime, int]],
        *,
        cap: int | None = None,
        phantom: dict[tuple[str, datetime], int] | None = None,
        late: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self.traffic = traffic
        self.cap = cap
        self.phantom = phantom or {}
        self.late = dict(late or {})
        self.calls: list[tuple[str, datetime, datetime, tuple[str, ...] | None, int | None]] = []
        self.statuses: list[tuple[str, ...]] = []

    def _matching(self, start: datetime, end: datetime, subscriptions: Any) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for pair, hours in self.traffic.items():
            if subscriptions is None or pair[0] in subscriptions:
                total = sum(n for at, n in hours.items() if start <= at < end)
                if total:
                    counts[pair] = total
        return counts

    def total_count(
        self, start: datetime, end: datetime, *, statuses: Sequence[str] = (), subscriptions: Any = None
    ) -> int:
        self.calls.append(("total", start, end, None if subscriptions is None else tuple(subscriptions), None))
        self.statuses.append(tuple(statuses))
        extra = sum(
            n
            for (s, at), n in self.phantom.items()
            if (subscriptions is None or s in subscriptions) and start <= at < end
        )
        return sum(self._matching(start, end, subscriptions).values()) + extra

    def grouped_count(
        self, start: datetime, end: datetime, *, limit: int, statuses: Sequence[str] = (), subscriptions: Any = None
    ) -> GroupedCount:
        self.calls.append(("grouped", start, end, None if subscriptions is None else tuple(subscriptions), limit))
        counts = self._matching(start, end, subscriptions)
        for pair, n in self.late.items():  # late traffic is there from the first grouped answer on
            counts[pair] = counts.get(pair, 0) + n
            self.traffic.setdefault(pair, {})[start] = self.traffic.get(pair, {}).get(start, 0) + n
        self.late.clear()
        terms = limit if self.cap is None else min(limit, self.cap)
        by_subscription: dict[str, dict[str, int]] = {}
        for (s, q), n in counts.items():
            by_subscription.setdefault(s, {})[q] = n
        top = sorted(by_subscription.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:terms]
        kept = {
            (s, q): n for s, quotas in top for q, n in sorted(quotas.items(), key=lambda kv: (-kv[1], kv[0]))[:terms]
        }
        return GroupedCount(kept, len(top), max((min(len(q), terms) for _, q in top), default=0))


DAY_ONE = (t("2026-11-01 00:00"), t("2026-11-02 00:00"))


def hourly(pairs: dict[tuple[str, str], int], at: datetime = DAY_ONE[0]) -> dict[tuple[str, str], dict[datetime, int]]:
    return {pair: {at: n} for pair, n in pairs.items()}


def subscribers(n: int) -> dict[tuple[str, str], int]:
    """``n`` subscriptions with traffic, each a different amount (so that the largest terms are well defined)."""
    return {(f"s{i:04d}", "q1"): 1 + i for i in range(n)}


def kinds(fake: FakeLexus) -> list[tuple[str, int | None]]:
    """The requests made: kind and how many subscriptions each named (None: every subscription)."""
    return [(kind, None if subs is None else len(subs)) for kind, _s, _e, subs, _limit in fake.calls]


def test_one_range_costs_a_total_and_one_grouped_query_while_the_population_fits() -> None:
    ten = (t("2026-11-01 10:00"), t("2026-11-01 11:00"))
    late = (t("2026-11-01 10:17"), t("2026-11-01 11:00"))
    eleven = (t("2026-11-01 11:00"), t("2026-11-01 12:00"))
    fake = FakeLexus({("s1", "q1"): {ten[0]: 5, late[0]: 1}, ("s2", "q1"): {ten[0]: 2}})
    source: UsageSource = TraceabilitySource(fake, ["Success"])
    # 10,000 subscriptions share these three ranges: the ranges, not the subscriptions, set the query count
    answers = source.counts([eleven, ten, late, ten, eleven] * 100, [f"s{i}" for i in range(10_000)])

    assert {r: dict(a.counts) for r, a in answers.items()} == {
        ten: {("s1", "q1"): 6, ("s2", "q1"): 2},
        late: {("s1", "q1"): 1},
        eleven: {},
    }
    assert all(a.whole for a in answers.values())
    assert answers[eleven].count(("s9", "q1")) == 0, "a proven answer makes absence a zero"
    # a range with no traffic at all needs no grouped query
    assert kinds(fake) == [("total", None), ("grouped", None), ("total", None), ("grouped", None), ("total", None)]
    assert {limit for kind, *_r, limit in fake.calls if kind == "grouped"} == {1000}
    assert set(fake.statuses) == {("Success",)}
    assert source.queries == 5
    assert source.retention == timedelta(days=7)
    assert source.counts([]) == {} and source.queries == 5


@pytest.mark.parametrize(
    ("with_traffic", "cap", "queries"),
    [
        (10, None, 2),
        (150, None, 2),
        (1000, None, 6),  # 1,000 groups is as many as the limit: cut, by rule; two halves of 500
        (10, 100, 2),
        (150, 100, 6),  # 100 of 150 come back: two chunks of 75
        (1000, 100, 24),  # eleven chunks of at most 99
    ],
)
def test_a_cut_answer_is_split_over_the_population_until_every_unit_is_counted(
    with_traffic: int, cap: int | None, queries: int
) -> None:
    traffic = subscribers(with_traffic)
    fake = FakeLexus(hourly(traffic), cap=cap)
    source = TraceabilitySource(fake)
    population = sorted({s for s, _q in traffic})

    (answer,) = source.counts([DAY_ONE], population).values()

    assert all(answer.count(pair) == n for pair, n in traffic.items()), "every unit counted"
    assert dict(answer.counts) == traffic
    assert source.queries == queries == len(fake.calls)
    if queries == 2:
        assert answer.whole
    else:
        # split over the billed population: those are proven, anyone else is unknown
        assert not answer.whole and answer.proven_subscriptions == frozenset(population)
        assert answer.count(("someone-else", "q1")) is None
        assert answer.why.startswith(
            "the grouped count of 2026-11-01T00:00:00Z – 2026-11-02T00:00:00Z did not add up ("
        )
        assert all(limit is None or limit == 1000 for *_x, limit in fake.calls)
        chunks = [n for kind, n in kinds(fake)[2:] if kind == "grouped"]
        assert max(chunks) < (cap or 1000) and sum(chunks) == with_traffic


def test_as_many_terms_as_the_limit_is_cut_even_when_the_groups_add_up() -> None:
    traffic = subscribers(3)
    fake = FakeLexus(hourly(traffic))
    source = TraceabilitySource(fake, group_limit=3)

    (answer,) = source.counts([DAY_ONE], sorted(s for s, _q in traffic)).values()

    assert dict(answer.counts) == traffic and answer.proven_subscriptions == {"s0000", "s0001", "s0002"}
    assert kinds(fake) == [
        ("total", None),
        ("grouped", None),
        ("total", 2),
        ("grouped", 2),
        ("total", 1),
        ("grouped", 1),
    ]
    assert "3 subscription groups, as many as the limit" in answer.why


def test_groups_summing_to_less_than_the_total_are_unproven() -> None:
    # a backend that caps at 2, asked for 1000: nothing in the answer says it was cut, only the total does
    fake = FakeLexus(hourly(subscribers(3)), cap=2)
    source = TraceabilitySource(fake)

    (answer,) = source.counts([DAY_ONE], ["s0000", "s0001", "s0002"]).values()

    assert dict(answer.counts) == subscribers(3)
    assert answer.why.startswith(
        "the grouped count of 2026-11-01T00:00:00Z – 2026-11-02T00:00:00Z did not add up "
        "(the groups of 2 subscription(s) sum to 5 of 6 transactions)"
    )
    # chunks smaller than the 2 terms the cut answer returned: one subscription each
    assert kinds(fake)[2:] == [("total", 1), ("grouped", 1)] * 3


def test_traffic_landing_between_the_total_and_its_groups_halves_the_population() -> None:
    traffic = subscribers(40)
    fake = FakeLexus(hourly(traffic), late={("s0003", "q1"): 2})
    source = TraceabilitySource(fake)

    (answer,) = source.counts([DAY_ONE], sorted(s for s, _q in traffic)).values()

    assert answer.count(("s0003", "q1")) == 4 + 2, "the late units are counted once proven"
    # a race, not a cut: two halves, not 39-subscription chunks
    assert kinds(fake) == [
        ("total", None),
        ("grouped", None),
        ("total", 20),
        ("grouped", 20),
        ("total", 20),
        ("grouped", 20),
    ]


def test_a_single_subscription_is_counted_again_over_halves_of_its_range() -> None:
    # one subscription with two quotas in the day and a limit of 2: a full grouping; each half holds one quota
    morning, evening = t("2026-11-01 03:00"), t("2026-11-01 20:00")
    fake = FakeLexus({("s1", "q1"): {morning: 7}, ("s1", "q2"): {evening: 4}})
    source = TraceabilitySource(fake, group_limit=2)

    (answer,) = source.counts([DAY_ONE], ["s1"]).values()

    assert dict(answer.counts) == {("s1", "q1"): 7, ("s1", "q2"): 4}
    assert answer.covers(("s1", "q1")) and answer.count(("s1", "q3")) == 0
    ranges = [(s.strftime("%H"), e.strftime("%H")) for kind, s, e, _subs, _l in fake.calls if kind == "total"]
    assert ranges == [("00", "00"), ("00", "00"), ("00", "12"), ("12", "00")]
    assert source.queries == 8


def test_an_answer_that_never_adds_up_is_not_covered_and_says_why() -> None:
    # s0007's transactions in the 13:00 hour are counted by the total but fall in no group: no split can fix that
    traffic = subscribers(12)
    fake = FakeLexus(hourly(traffic), phantom={("s0007", t("2026-11-01 13:20")): 3})
    source = TraceabilitySource(fake)
    population = sorted(s for s, _q in traffic)

    (answer,) = source.counts([DAY_ONE], population).values()

    assert not answer.whole
    assert answer.proven_subscriptions == frozenset(population) - {"s0007"}
    assert answer.count(("s0007", "q1")) is None and answer.count(("s0006", "q1")) == 7
    assert ("s0007", "q1") not in answer.counts, "an unproven count is not handed out"
    assert answer.why == (
        "Traceability could not prove the counts of 1 of 12 billed subscription(s) in 2026-11-01T00:00:00Z – "
        "2026-11-02T00:00:00Z even one subscription and one hour at a time: subscription s0007 in "
        "2026-11-01T13:00:00Z – 2026-11-01T14:00:00Z: the groups of 0 subscription(s) sum to 0 of 3 transactions"
    )


def test_without_a_population_an_unproven_answer_is_split_over_time_only() -> None:
    # two subscriptions, each with traffic in its own half of the day, and a backend that returns one term
    fake = FakeLexus({("s1", "q1"): {t("2026-11-01 02:00"): 5}, ("s2", "q1"): {t("2026-11-01 14:00"): 6}}, cap=1)
    source = TraceabilitySource(fake)
    (answer,) = source.counts([DAY_ONE]).values()
    assert answer.whole and dict(answer.counts) == {("s1", "q1"): 5, ("s2", "q1"): 6}

    stuck = FakeLexus({("s1", "q1"): {t("2026-11-01 02:00"): 5}, ("s2", "q1"): {t("2026-11-01 02:30"): 6}}, cap=1)
    (unproven,) = TraceabilitySource(stuck).counts([DAY_ONE]).values()
    assert not unproven.whole and unproven.counts == {} and unproven.count(("s1", "q1")) is None
    assert unproven.why == (
        "Traceability could not prove the counts of all subscriptions in 2026-11-01T02:00:00Z – "
        "2026-11-01T03:00:00Z: the groups of 1 subscription(s) sum to 6 of 11 transactions"
    )


def test_traceability_source_rejects_naive_or_empty_ranges() -> None:
    source = TraceabilitySource(FakeLexus({}))
    with pytest.raises(ValueError, match="timezone-aware"):
        source.counts([(datetime(2026, 11, 1, 10), datetime(2026, 11, 1, 11))])
    with pytest.raises(ValueError, match="must be before its end"):
        source.counts([(t("2026-11-01 11:00"), t("2026-11-01 11:00"))])


# --- build_source --------------------------------------------------------------------------------------------


def settings(**usage: Any) -> Settings:
    return Settings(
        amplify=AmplifySettings(
            central_url="http://127.0.0.1:1",
            auth_url="http://127.0.0.1:1",
            platform_url="http://127.0.0.1:1",
            tenant_id="t",
            client_id="c",
        ),
        recurly=RecurlySettings(api_key=Secret("k")),
        usage=UsageSettings(**usage),
        source="config.yaml",
    )


def test_build_source_traceability_uses_the_configured_statuses_limit_and_retention() -> None:
    window = (t("2026-11-01 10:00"), t("2026-11-01 11:00"))
    fake = FakeLexus({("s1", "q1"): {window[0]: 1}})
    configured = settings(statuses=("Success", "Failure"), group_limit=250, retention=timedelta(days=3))
    source = build_source(configured, cast(Any, SimpleNamespace(traceability=fake)), HOUR)
    assert isinstance(source, TraceabilitySource)
    source.counts([window])
    assert fake.calls == [("total", *window, None, None), ("grouped", *window, None, 250)]
    assert set(fake.statuses) == {("Success", "Failure")}
    assert source.retention == timedelta(days=3)


def test_build_source_file(tmp_path: Path) -> None:
    path = write(tmp_path, "usage.csv", CSV)
    source = build_source(settings(source="file", file_path=path, window="hourly"), None, HOUR)
    assert isinstance(source, FileSource)
    ten = (t("2026-11-01 10:00"), t("2026-11-01 11:00"))
    assert source.counts([ten])[ten].count(("s1", "q1")) == 5
    assert source.retention is None


def test_build_source_file_without_a_path() -> None:
    with pytest.raises(ConfigError) as caught:
        build_source(settings(source="file"), None, DAY)
    assert str(caught.value) == (
        "config.yaml: usage.source is file but usage.file_path is not set; "
        "set usage.file_path to a .csv or .jsonl file of usage rows"
    )
