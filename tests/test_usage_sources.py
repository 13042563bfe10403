"""Usage sources: the file source's validation and attribution, the traceability source's query count."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from amplify_billing.errors import ConfigError, UsageInputError
from amplify_billing.settings import AmplifySettings, RecurlySettings, Secret, Settings, UsageSettings
from amplify_billing.usage.sources import FileSource, TraceabilitySource, UsageSource, build_source

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
FIX = "fix the row, nothing was posted from this file"


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


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
    ten, eleven, twelve = (t("2026-11-01 10:00"), t("2026-11-01 11:00")), (
        t("2026-11-01 11:00"),
        t("2026-11-01 12:00"),
    ), (t("2026-11-01 12:00"), t("2026-11-01 13:00"))
    empty = (t("2026-11-01 13:00"), t("2026-11-01 14:00"))
    # the 11:00+01:00 row of s2 is the 10:00 UTC window
    assert source.counts([ten, eleven, twelve, empty, ten]) == {
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
    assert source.counts([day]) == {day: {("s1", "q1"): 12}}


def test_attribution_of_clipped_and_longer_ranges(tmp_path: Path) -> None:
    source = FileSource(write(tmp_path, "usage.csv", CSV), HOUR)
    started_late = (t("2026-11-01 10:17"), t("2026-11-01 11:00"))  # subscription started 10:17
    ended_early = (t("2026-11-01 11:00"), t("2026-11-01 11:30"))  # subscription ended 11:30
    both = (t("2026-11-01 10:15"), t("2026-11-01 10:45"))
    span = (t("2026-11-01 10:30"), t("2026-11-01 12:00"))  # windows 10:00 and 11:00 together
    before = (t("2026-11-01 09:00"), t("2026-11-01 10:00"))  # ends where the 10:00 row starts
    assert source.counts([started_late, ended_early, both, span, before]) == {
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
    assert FileSource(path, DAY).counts([leap_day_until_noon]) == {leap_day_until_noon: {("s1", "q1"): 40}}


def test_returned_counts_do_not_share_state(tmp_path: Path) -> None:
    source = FileSource(write(tmp_path, "usage.csv", CSV), HOUR)
    ten = (t("2026-11-01 10:00"), t("2026-11-01 11:00"))
    source.counts([ten])[ten][("s1", "q1")] = 999
    assert source.counts([ten])[ten][("s1", "q1")] == 5


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
        (GOOD + "s1,q1,2026-11-01T11:00:00Z\n", f"3: expected 4 fields (subscription_id,quota_id,window_start,count), found 3; {FIX}"),
        (GOOD + "s1,q1,2026-11-01T11:00:00Z,4,x\n", f"3: expected 4 fields (subscription_id,quota_id,window_start,count), found 5; {FIX}"),
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
        ("s1,q1,2026-11-01T10:00:00Z,5", "missing subscription_id, quota_id, window_start, count; "
         "unexpected 's1', 'q1', '2026-11-01T10:00:00Z', '5'"),
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
        ('{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": "ten"}', f'count: "ten" is a string; write the number without quotes; {FIX}'),
        ('{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": 2.0}', f"count: 2.0 is not a whole number ≥ 0; {FIX}"),
        ('{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": -3}', f"count: -3 is not a whole number ≥ 0; {FIX}"),
        ('{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": true}', f"count: true is not a whole number ≥ 0; {FIX}"),
        ('{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": null}', f"count: null is not a whole number ≥ 0; {FIX}"),
        ('{"subscription_id": 7, "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": 1}', f"subscription_id: 7 is not a string; {FIX}"),
        ('{"subscription_id": "s1", "quota_id": "q1", "window_start": 1793527200, "count": 1}', f"window_start: 1793527200 is not an ISO 8601 time string; {FIX}"),
        ('{"subscription_id": "s1", "quota_id": "q1", "count": 1}', f"the object must have exactly the keys subscription_id, quota_id, window_start, count (missing window_start); {FIX}"),
        ('{"subscription_id": "s1", "quota_id": "q1", "window_start": "2026-11-01T11:00:00Z", "count": 1, "note": "x"}', f"the object must have exactly the keys subscription_id, quota_id, window_start, count (unexpected 'note'); {FIX}"),
        ('["s1", "q1", "2026-11-01T11:00:00Z", 1]', f"expected a JSON object with keys subscription_id, quota_id, window_start, count, found list; {FIX}"),
        ('{"subscription_id": "s1", "quota_id": "q1",', f"not valid JSON (Expecting property name enclosed in double quotes at column 44); {FIX}"),
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
        ("usage.csv", "", "usage file {path} is empty; it needs a row (subscription_id, quota_id, window_start, count) per counted window. Nothing was posted from this file"),
        ("usage.jsonl", "\n  \n", "usage file {path} is empty; it needs a row (subscription_id, quota_id, window_start, count) per counted window. Nothing was posted from this file"),
        ("usage.csv", HEADER, "usage file {path} has no usage rows; it needs a row (subscription_id, quota_id, window_start, count) per counted window. Nothing was posted from this file"),
        ("usage.txt", HEADER + GOOD, "usage file {path}: unsupported extension '.txt'; usage.file_path must name a .csv or .jsonl file"),
        ("usage", HEADER + GOOD, "usage file {path}: unsupported extension '(none)'; usage.file_path must name a .csv or .jsonl file"),
        ("usage.json", JSON_GOOD, "usage file {path}: unsupported extension '.json'; usage.file_path must name a .csv or .jsonl file"),
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


class FakeTraceability:
    def __init__(self, answers: dict[tuple[datetime, datetime], dict[tuple[str, str], int]]) -> None:
        self.answers = answers
        self.calls: list[tuple[datetime, datetime, tuple[str, ...]]] = []

    def count_by_subscription_and_quota(
        self, start: datetime, end: datetime, statuses: Sequence[str] = ()
    ) -> dict[tuple[str, str], int]:
        self.calls.append((start, end, tuple(statuses)))
        return dict(self.answers.get((start, end), {}))


def test_traceability_source_makes_one_query_per_distinct_range() -> None:
    ten = (t("2026-11-01 10:00"), t("2026-11-01 11:00"))
    late = (t("2026-11-01 10:17"), t("2026-11-01 11:00"))
    eleven = (t("2026-11-01 11:00"), t("2026-11-01 12:00"))
    fake = FakeTraceability({ten: {("s1", "q1"): 5, ("s2", "q1"): 2}, late: {("s3", "q1"): 1}})
    source: UsageSource = TraceabilitySource(fake, ["Success"])
    # 10,000 subscriptions share these three ranges: the ranges, not the subscriptions, set the query count
    counts = source.counts([eleven, ten, late, ten, eleven] * 100)
    assert counts == {ten: {("s1", "q1"): 5, ("s2", "q1"): 2}, late: {("s3", "q1"): 1}, eleven: {}}
    assert fake.calls == [(*ten, ("Success",)), (*late, ("Success",)), (*eleven, ("Success",))]
    assert source.queries == 3
    source.counts([ten])
    assert source.queries == 4
    assert source.counts([]) == {} and source.queries == 4


def test_traceability_source_rejects_naive_or_empty_ranges() -> None:
    source = TraceabilitySource(FakeTraceability({}))
    with pytest.raises(ValueError, match="timezone-aware"):
        source.counts([(datetime(2026, 11, 1, 10), datetime(2026, 11, 1, 11))])
    with pytest.raises(ValueError, match="must be before its end"):
        source.counts([(t("2026-11-01 11:00"), t("2026-11-01 11:00"))])


# --- build_source --------------------------------------------------------------------------------------------


def settings(**usage: Any) -> Settings:
    return Settings(
        amplify=AmplifySettings(
            central_url="http://127.0.0.1:1", auth_url="http://127.0.0.1:1", platform_url="http://127.0.0.1:1",
            tenant_id="t", client_id="c",
        ),
        recurly=RecurlySettings(api_key=Secret("k")),
        usage=UsageSettings(**usage),
        source="config.yaml",
    )


def test_build_source_traceability_uses_the_configured_statuses() -> None:
    fake = FakeTraceability({})
    source = build_source(settings(statuses=("Success", "Failure")), cast(Any, SimpleNamespace(traceability=fake)), HOUR)
    assert isinstance(source, TraceabilitySource)
    window = (t("2026-11-01 10:00"), t("2026-11-01 11:00"))
    source.counts([window])
    assert fake.calls == [(*window, ("Success", "Failure"))]


def test_build_source_file(tmp_path: Path) -> None:
    path = write(tmp_path, "usage.csv", CSV)
    source = build_source(settings(source="file", file_path=path, window="hourly"), None, HOUR)
    assert isinstance(source, FileSource)
    ten = (t("2026-11-01 10:00"), t("2026-11-01 11:00"))
    assert source.counts([ten])[ten][("s1", "q1")] == 5


def test_build_source_file_without_a_path() -> None:
    with pytest.raises(ConfigError) as caught:
        build_source(settings(source="file"), None, DAY)
    assert str(caught.value) == (
        "config.yaml: usage.source is file but usage.file_path is not set; "
        "set usage.file_path to a .csv or .jsonl file of usage rows"
    )
