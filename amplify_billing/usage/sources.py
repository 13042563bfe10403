"""Usage sources: transaction counts per (subscription, quota) for time ranges (DESIGN.md §3 Usage).

``traceability`` (default) asks the Traceability API one grouped count per distinct range, for all
subscriptions at once. ``file`` reads rows ``(subscription_id, quota_id, window_start, count)`` from a CSV or
JSONL file, for backfills and gateways without traceability. Counts are money-bearing input: a file is
validated completely before any count is returned, and a bad row stops the run with the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from bisect import bisect_left
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from amplify_billing.errors import ConfigError, UsageInputError
from amplify_billing.settings import Settings
from amplify_billing.usage.windows import window_floor

if TYPE_CHECKING:
    from amplify_billing.amplify import AmplifyClients

Range = tuple[datetime, datetime]
Counts = dict[Range, dict[tuple[str, str], int]]

FIELDS = ("subscription_id", "quota_id", "window_start", "count")
EXTENSIONS = (".csv", ".jsonl")
_WHOLE_NUMBER = re.compile(r"[0-9]+", re.ASCII)
_FIX = "fix the row, nothing was posted from this file"


@dataclass(frozen=True)
class RangeCount:
    """The counts of one range and what the source proved about them (DESIGN.md §3 Completeness).

    A pair missing from ``counts`` had no traffic only where the answer is proven to cover it; anywhere else its
    count is unknown, and nothing that depends on absence (a zero, a downward restatement, a skipped window) may
    follow from it."""

    counts: Mapping[tuple[str, str], int]
    whole: bool  # every pair is covered: the answer is proven complete
    proven_subscriptions: frozenset[str] = frozenset()  # when not whole: subscriptions proven complete
    proven_pairs: frozenset[tuple[str, str]] = frozenset()  # when not whole: pairs proven complete
    why: str = ""  # when not whole: what could not be proven, for the finding

    def covers(self, pair: tuple[str, str]) -> bool:
        return self.whole or pair[0] in self.proven_subscriptions or pair in self.proven_pairs

    def count(self, pair: tuple[str, str]) -> int | None:
        """The pair's count, 0 when proven absent, None when unknown."""
        return self.counts.get(pair, 0) if self.covers(pair) else None


class UsageSource(Protocol):
    """Counts per range; ``queries`` is the number of count queries made so far (report and benchmarks).

    ``population`` is the subscriptions the caller bills: a source may split a query over them when one answer
    cannot be proven whole. ``retention``: how far back the source can still count (None: no limit)."""

    queries: int
    retention: timedelta | None

    def counts(self, ranges: Sequence[Range], population: Collection[str] = ()) -> dict[Range, RangeCount]: ...


class TraceabilityLike(Protocol):
    def count_by_subscription_and_quota(
        self, start: datetime, end: datetime, statuses: Sequence[str] = ()
    ) -> dict[tuple[str, str], int]: ...


def _check_ranges(ranges: Sequence[Range]) -> list[Range]:
    """The distinct ranges, oldest first; a naive or empty range is a programming error."""
    distinct = sorted(set(ranges))
    for start, end in distinct:
        for moment in (start, end):
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError(f"usage ranges must be timezone-aware, got {moment!r}")
        if start >= end:
            raise ValueError(f"usage range start {start.isoformat()} must be before its end {end.isoformat()}")
    return distinct


class TraceabilitySource:
    """One grouped count query per distinct range (never one per subscription)."""

    def __init__(self, client: TraceabilityLike, statuses: Sequence[str] = ()) -> None:
        self._client = client
        self._statuses = tuple(statuses)
        self.queries = 0

    def counts(self, ranges: Sequence[Range]) -> Counts:
        """Every distinct range of ``ranges`` -> its counts (an empty dict when nothing was counted)."""
        result: Counts = {}
        for start, end in _check_ranges(ranges):
            self.queries += 1
            result[(start, end)] = dict(self._client.count_by_subscription_and_quota(start, end, self._statuses))
        return result


class FileSource:
    """Counts from a CSV or JSONL file of ``subscription_id, quota_id, window_start, count`` rows.

    The whole file is read and validated at construction; nothing is returned from a file with one bad row.
    A row with window_start t counts toward a range (a, b) when ``window_floor(a) <= t < b``, so a window
    clipped at a subscription's start (a inside the window) still gets the row of its aligned window.

    ``queries`` stays 0: it measures load on the counting service, and a file costs none after it is read.
    ``rows`` is the number of rows read; ``span`` is ``(first window start, last window end)`` of the file.
    """

    def __init__(self, path: Path, size: timedelta) -> None:
        self.path = path
        self.size = size
        self.queries = 0
        # fail on a bad size now, not at the first row (window_floor validates it)
        window_floor(datetime(1970, 1, 1, tzinfo=UTC), size)
        by_start: dict[datetime, dict[tuple[str, str], int]] = {}
        for _line, subscription_id, quota_id, start, count in _validated_rows(path, size):
            by_start.setdefault(start, {})[(subscription_id, quota_id)] = count
        self._starts = sorted(by_start)
        self._by_start = by_start
        self.rows = sum(len(v) for v in by_start.values())
        # the windows the file speaks for: a caller can stop there instead of reading absent rows as zero
        self.span: Range = (self._starts[0], self._starts[-1] + size)

    def counts(self, ranges: Sequence[Range]) -> Counts:
        result: Counts = {}
        for start, end in _check_ranges(ranges):
            lo = bisect_left(self._starts, window_floor(start, self.size))
            hi = bisect_left(self._starts, end.astimezone(UTC))
            totals: dict[tuple[str, str], int] = {}
            for window_start in self._starts[lo:hi]:
                for pair, count in self._by_start[window_start].items():
                    totals[pair] = totals.get(pair, 0) + count
            result[(start, end)] = totals
        return result


def _window_name(size: timedelta) -> str:
    if size == timedelta(days=1):
        return "a daily window (00:00:00 UTC)"
    if size == timedelta(hours=1):
        return "an hourly window (the top of an hour, UTC)"
    return f"a {size} window (aligned from 00:00:00 UTC)"


class _RowError(Exception):
    """A problem with one field of one row; turned into a UsageInputError with the file and line."""


def _validated_rows(path: Path, size: timedelta) -> Iterator[tuple[int, str, str, datetime, int]]:
    """(line, subscription id, quota id, window start UTC, count) for every row; raises at the first bad one."""
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise UsageInputError(
            f"usage file {path}: unsupported extension {path.suffix or '(none)'!r}; "
            f"usage.file_path must name a {' or '.join(EXTENSIONS)} file"
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageInputError(
            f"usage file {path} does not exist; set usage.file_path to an existing .csv or .jsonl file"
        ) from None
    except OSError as err:
        raise UsageInputError(
            f"usage file {path} cannot be read ({err.strerror or err}); check usage.file_path and its permissions"
        ) from None
    try:
        text = data.decode("utf-8-sig")  # -sig: spreadsheet exports often start with a byte order mark
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise UsageInputError(f"{path}:{line}: not UTF-8 text ({err.reason}); save the file as UTF-8") from None
    if not text.strip():
        raise UsageInputError(
            f"usage file {path} is empty; it needs a row (subscription_id, quota_id, window_start, count) "
            "per counted window. Nothing was posted from this file"
        )
    raw_rows = _csv_rows(path, text) if suffix == ".csv" else _jsonl_rows(path, text)
    seen: dict[tuple[str, str, datetime], int] = {}
    rows = 0
    for line, row in raw_rows:
        field = ""
        try:
            field = "subscription_id"
            subscription_id = _id(row["subscription_id"])
            field = "quota_id"
            quota_id = _id(row["quota_id"])
            field = "window_start"
            start = _window_start(row["window_start"], size)
            field = "count"
            count = _count(row["count"], text_allowed=suffix == ".csv")
        except _RowError as err:
            raise UsageInputError(f"{path}:{line}: {field}: {err}; {_FIX}") from None
        key = (subscription_id, quota_id, start)
        if key in seen:
            raise UsageInputError(
                f"{path}:{line}: duplicate of line {seen[key]} (subscription_id {subscription_id}, "
                f"quota_id {quota_id}, window_start {start.strftime('%Y-%m-%dT%H:%M:%SZ')}); "
                f"keep one row per window, nothing was posted from this file"
            )
        seen[key] = line
        rows += 1
        yield line, subscription_id, quota_id, start, count
    if rows == 0:
        # a header alone would count every window as zero and move the watermarks past them
        raise UsageInputError(
            f"usage file {path} has no usage rows; it needs a row (subscription_id, quota_id, window_start, count) "
            "per counted window. Nothing was posted from this file"
        )


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header: list[str] | None = None
        for values in reader:
            line = reader.line_num
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # blank line
            if header is None:
                header = [v.strip() for v in values]
                _check_header(path, line, header)
                continue
            if len(values) != len(header):
                raise UsageInputError(
                    f"{path}:{line}: expected {len(header)} fields ({','.join(header)}), found {len(values)}; {_FIX}"
                )
            yield line, dict(zip(header, values, strict=True))
    except csv.Error as err:
        raise UsageInputError(f"{path}:{reader.line_num}: not valid CSV ({err}); {_FIX}") from None


def _check_header(path: Path, line: int, header: list[str]) -> None:
    missing = [f for f in FIELDS if f not in header]
    extra = [f for f in header if f not in FIELDS]
    repeated = sorted({f for f in header if header.count(f) > 1})
    if missing or extra or repeated:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected {', '.join(repr(f) for f in extra)}")
        if repeated:
            problems.append(f"repeated {', '.join(repeated)}")
        raise UsageInputError(
            f"{path}:{line}: the first line must be the header {','.join(FIELDS)} ({'; '.join(problems)}); "
            "fix the header, nothing was posted from this file"
        )


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    # split on \n only: str.splitlines would also split at U+2028, which JSON strings may hold
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as err:
            raise UsageInputError(f"{path}:{line}: not valid JSON ({err.msg} at column {err.colno}); {_FIX}") from None
        if not isinstance(row, dict):
            raise UsageInputError(
                f"{path}:{line}: expected a JSON object with keys {', '.join(FIELDS)}, found {type(row).__name__}; "
                f"{_FIX}"
            )
        missing = [f for f in FIELDS if f not in row]
        extra = [k for k in row if k not in FIELDS]
        if missing or extra:
            problems = [f"missing {', '.join(missing)}"] if missing else []
            if extra:
                problems.append(f"unexpected {', '.join(repr(k) for k in extra)}")
            raise UsageInputError(
                f"{path}:{line}: the object must have exactly the keys {', '.join(FIELDS)} ({'; '.join(problems)}); "
                f"{_FIX}"
            )
        yield line, row


def _id(value: Any) -> str:
    if not isinstance(value, str):
        raise _RowError(f"{value!r} is not a string")
    text = value.strip()
    if not text:
        raise _RowError("is empty")
    if ":" in text or any(c.isspace() for c in text):
        # ids go into merchant_tags, whose parts are separated by ':'
        raise _RowError(f"{text!r} contains ':' or a space, which a merchant_tag cannot hold")
    return text


def _window_start(value: Any, size: timedelta) -> datetime:
    if not isinstance(value, str):
        raise _RowError(f"{value!r} is not an ISO 8601 time string")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _RowError(f"{text!r} is not an ISO 8601 time such as 2026-11-01T00:00:00Z") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _RowError(f"{text!r} has no time zone; add Z for UTC, e.g. {moment.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    moment = moment.astimezone(UTC)
    if window_floor(moment, size) != moment:
        raise _RowError(f"{text!r} is not the start of {_window_name(size)}")
    return moment


def _count(value: Any, *, text_allowed: bool) -> int:
    if isinstance(value, str) and not text_allowed:
        raise _RowError(f"{json.dumps(value)} is a string; write the number without quotes")
    if isinstance(value, str):
        text = value.strip()
        if _WHOLE_NUMBER.fullmatch(text):
            return int(text)
        raise _RowError(f"{text!r} is not a whole number ≥ 0")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _RowError(f"{json.dumps(value)} is not a whole number ≥ 0")


def build_source(settings: Settings, amplify: AmplifyClients | None, size: timedelta) -> UsageSource:
    """The source named by ``usage.source``; ``amplify`` is required for ``traceability`` (None for ``file``)."""
    usage = settings.usage
    if usage.source == "file":
        if usage.file_path is None:
            raise ConfigError(
                f"{settings.source}: usage.source is file but usage.file_path is not set; "
                "set usage.file_path to a .csv or .jsonl file of usage rows"
            )
        return FileSource(usage.file_path, size)
    if amplify is None:
        raise ValueError("the traceability usage source needs the Amplify clients")
    return TraceabilitySource(amplify.traceability, usage.statuses)


__all__ = [
    "Counts",
    "FileSource",
    "Range",
    "RangeCount",
    "TraceabilityLike",
    "TraceabilitySource",
    "UsageSource",
    "build_source",
]
