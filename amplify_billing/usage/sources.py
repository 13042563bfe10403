"""Usage sources: transaction counts per (subscription, quota) for time ranges (DESIGN.md §3 Usage).

Counts come with what they prove (``RangeCount``): an action that depends on absence or on a total needs a read
proven complete. ``traceability`` (default) asks the Traceability API one grouped count and its total per
distinct range, for all subscriptions at once, and splits only an answer that does not add up. ``file`` reads
rows ``(subscription_id, quota_id, window_start, count)`` from a CSV or JSONL file, for backfills and gateways
without traceability, and proves only the pairs and windows it holds.
Counts are money-bearing input: a file is validated completely before any count is returned, and a bad row
stops the run with the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from bisect import bisect_left
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from amplify_billing.amplify.traceability import GroupedCount
from amplify_billing.errors import ConfigError, UsageInputError
from amplify_billing.settings import Settings, UsageSettings
from amplify_billing.usage.windows import window_floor

if TYPE_CHECKING:
    from amplify_billing.amplify.clients import AmplifyClients

Range = tuple[datetime, datetime]
Pair = tuple[str, str]

FIELDS = ("subscription_id", "quota_id", "window_start", "count")
EXTENSIONS = (".csv", ".jsonl")
_WHOLE_NUMBER = re.compile(r"[0-9]+", re.ASCII)
_FIX = "fix the row, nothing was posted from this file"
# the shortest range a count is split into when one subscription's answer still does not add up
SMALLEST_SPLIT = timedelta(hours=1)
# failures a RangeCount's why names one by one; the rest are counted
WHY_EXAMPLES = 3
# the settings' defaults, for sources built without settings (tests, the bench)
_DEFAULTS = UsageSettings()


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
    def grouped_count(
        self,
        start: datetime,
        end: datetime,
        *,
        limit: int,
        statuses: Sequence[str] = (),
        subscriptions: Collection[str] | None = None,
    ) -> GroupedCount: ...

    def total_count(
        self,
        start: datetime,
        end: datetime,
        *,
        statuses: Sequence[str] = (),
        subscriptions: Collection[str] | None = None,
    ) -> int: ...


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


def _text(span: Range) -> str:
    return " – ".join(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for moment in span)


@dataclass(frozen=True)
class _Answer:
    """A grouped count and its ungrouped total, asked with the same filters."""

    counts: dict[Pair, int]
    terms: int  # subscription groups returned
    cut: bool  # groups are missing (they sum to less than the total, or a grouping is full)
    shortfall: str  # "" when the answer is proven whole; else what did not add up, with its numbers


@dataclass(frozen=True)
class _Proof:
    """What a chunk of subscriptions proved over one range."""

    counts: dict[Pair, int]
    proven: frozenset[str]
    failures: tuple[str, ...] = ()

    @staticmethod
    def union(proofs: Iterable[_Proof]) -> _Proof:
        counts: dict[Pair, int] = {}
        proven: set[str] = set()
        failures: list[str] = []
        for proof in proofs:
            counts.update(proof.counts)  # chunks hold disjoint subscriptions
            proven |= proof.proven
            failures.extend(proof.failures)
        return _Proof(counts, frozenset(proven), tuple(failures))


class TraceabilitySource:
    """Counts per range from Traceability, each answer proven whole before it is used (DESIGN.md §3).

    Lexus cuts a grouping at its term limit without a word (reference §9.1), so a grouped answer counts only when
    no grouping returned as many terms as its limit and its groups sum to the ungrouped total of the same filters.
    One grouped query and its total per range while the population fits; an answer that does not add up is split
    over chunks of ``population`` (fewer subscriptions than the terms the cut answer returned, halved again while
    still unproven), then a single subscription's range into halves down to an hour. What still does not add up
    is left uncovered (``RangeCount.whole`` False, with what was proven and why), never guessed."""

    def __init__(
        self,
        client: TraceabilityLike,
        statuses: Sequence[str] = (),
        *,
        group_limit: int = _DEFAULTS.group_limit,
        retention: timedelta | None = _DEFAULTS.retention,
    ) -> None:
        if group_limit < 2:
            raise ValueError(f"group_limit must be at least 2, got {group_limit}")
        self._client = client
        self._statuses = tuple(statuses)
        self._limit = group_limit
        self.retention = retention
        self.queries = 0

    def counts(self, ranges: Sequence[Range], population: Collection[str] = ()) -> dict[Range, RangeCount]:
        """Every distinct range of ``ranges`` -> its counts and what they prove."""
        billed = tuple(sorted(set(population)))
        return {span: self._range(span, billed) for span in _check_ranges(ranges)}

    def _range(self, span: Range, population: tuple[str, ...]) -> RangeCount:
        answer = self._ask(span, None)
        if not answer.shortfall:
            return RangeCount(answer.counts, whole=True)
        if not population:
            counts, failure = self._over_time(span, None, answer)
            if counts is not None:
                return RangeCount(counts, whole=True)
            return RangeCount({}, whole=False, why=f"Traceability could not prove the counts of {failure}")
        size = _chunk_size(answer, len(population))
        proof = _Proof.union(self._prove(span, chunk) for chunk in _chunks(population, size))
        return RangeCount(
            proof.counts, whole=False, proven_subscriptions=proof.proven, why=_why(span, population, answer, proof)
        )

    def _prove(self, span: Range, chunk: tuple[str, ...]) -> _Proof:
        """The counts of ``chunk`` over ``span``, halving the chunk while its answer does not add up."""
        answer = self._ask(span, chunk)
        if not answer.shortfall:
            return _Proof(answer.counts, frozenset(chunk))
        if len(chunk) > 1:
            middle = (len(chunk) + 1) // 2
            return _Proof.union((self._prove(span, chunk[:middle]), self._prove(span, chunk[middle:])))
        counts, failure = self._over_time(span, chunk, answer)
        if counts is None:
            return _Proof({}, frozenset(), (failure,))
        return _Proof(counts, frozenset(chunk))

    def _over_time(
        self, span: Range, chunk: tuple[str, ...] | None, answer: _Answer
    ) -> tuple[dict[Pair, int] | None, str]:
        """``answer`` for ``span`` if proven, else the sum of its halves, each proven the same way, down to an
        hour; None and what did not add up when a piece never does."""
        if not answer.shortfall:
            return answer.counts, ""
        halves = _halves(span)
        if halves is None:
            subject = "all subscriptions" if chunk is None else f"subscription {chunk[0]}"
            return None, f"{subject} in {_text(span)}: {answer.shortfall}"
        total: dict[Pair, int] = {}
        for piece in halves:
            counts, failure = self._over_time(piece, chunk, self._ask(piece, chunk))
            if counts is None:
                return None, failure  # one unproven piece leaves the whole range unproven: stop asking
            for pair, count in counts.items():
                total[pair] = total.get(pair, 0) + count
        return total, ""

    def _ask(self, span: Range, chunk: tuple[str, ...] | None) -> _Answer:
        """The total first, then the groups: traffic that lands in between makes the groups sum to more than the
        total (a race, not a cut); groups that sum to less were cut. A total of 0 needs no groups."""
        start, end = span
        total = self._client.total_count(start, end, statuses=self._statuses, subscriptions=chunk)
        self.queries += 1
        if total == 0:
            return _Answer({}, 0, cut=False, shortfall="")
        grouped = self._client.grouped_count(
            start, end, limit=self._limit, statuses=self._statuses, subscriptions=chunk
        )
        self.queries += 1
        problems = []
        # a backend may cap the limit it was asked for: a grouping as long as its limit may have been cut
        if grouped.subscription_terms >= self._limit:
            problems.append(f"{grouped.subscription_terms} subscription groups, as many as the limit")
        if grouped.quota_terms >= self._limit:
            problems.append(f"{grouped.quota_terms} quota groups under one subscription, as many as the limit")
        if grouped.units != total:
            problems.append(
                f"the groups of {grouped.subscription_terms} subscription(s) sum to {grouped.units} of "
                f"{total} transactions"
            )
        cut = bool(problems) and grouped.units <= total
        return _Answer(grouped.counts, grouped.subscription_terms, cut, "; ".join(problems))


def _chunk_size(answer: _Answer, population: int) -> int:
    """Subscriptions per query after an unproven answer: fewer than the terms a cut answer returned (a backend
    that cut there cannot cut a smaller chunk), else half of them (the groups outgrew the total: traffic landed
    between the two queries)."""
    if answer.cut and answer.terms > 1:
        return answer.terms - 1
    return max(1, (population + 1) // 2)


def _chunks(population: tuple[str, ...], size: int) -> list[tuple[str, ...]]:
    """``population`` in even chunks of at most ``size``."""
    count = -(-len(population) // size)
    even = -(-len(population) // count)
    return [population[i : i + even] for i in range(0, len(population), even)]


def _halves(span: Range) -> tuple[Range, Range] | None:
    """``span`` split at an hour boundary near its middle; None when it is an hour or less."""
    start, end = span
    if end - start <= SMALLEST_SPLIT:
        return None
    middle = window_floor(start + (end - start) / 2, SMALLEST_SPLIT)
    if middle <= start:
        middle = window_floor(start, SMALLEST_SPLIT) + SMALLEST_SPLIT
    return (start, middle), (middle, end)


def _why(span: Range, population: tuple[str, ...], answer: _Answer, proof: _Proof) -> str:
    failed = len(population) - len(proof.proven)
    if not failed:
        return (
            f"the grouped count of {_text(span)} did not add up ({answer.shortfall}), so it was counted again per "
            f"chunk of the {len(population)} billed subscription(s); other subscriptions were not counted"
        )
    named = "; ".join(proof.failures[:WHY_EXAMPLES])
    more = f"; and {len(proof.failures) - WHY_EXAMPLES} more" if len(proof.failures) > WHY_EXAMPLES else ""
    return (
        f"Traceability could not prove the counts of {failed} of {len(population)} billed subscription(s) in "
        f"{_text(span)} even one subscription and one hour at a time: {named}{more}"
    )


class FileSource:
    """Counts from a CSV or JSONL file of ``subscription_id, quota_id, window_start, count`` rows.

    The whole file is read and validated at construction; nothing is returned from a file with one bad row.
    A row with window_start t counts toward a range (a, b) when ``window_floor(a) <= t < b``, so a window
    clipped at a subscription's start (a inside the window) still gets the row of its aligned window.

    A file proves only what it holds: inside its span (first window start to last window end), a pair it names
    anywhere is covered (a window without its row is 0); a pair it never names, and any range reaching outside
    the span, is not covered (unknown, never 0).

    ``queries`` stays 0: it measures load on the counting service, and a file costs none after it is read.
    ``rows`` is the number of rows read; ``span`` is ``(first window start, last window end)`` of the file.
    """

    retention: timedelta | None = None  # a file keeps what it holds

    def __init__(self, path: Path, size: timedelta) -> None:
        self.path = path
        self.size = size
        self.queries = 0
        # fail on a bad size now, not at the first row (window_floor validates it)
        window_floor(datetime(1970, 1, 1, tzinfo=UTC), size)
        by_start: dict[datetime, dict[Pair, int]] = {}
        for _line, subscription_id, quota_id, start, count in _validated_rows(path, size):
            by_start.setdefault(start, {})[(subscription_id, quota_id)] = count
        self._starts = sorted(by_start)
        self._by_start = by_start
        self._pairs = frozenset(pair for rows in by_start.values() for pair in rows)
        self.rows = sum(len(v) for v in by_start.values())
        # the windows the file speaks for: a caller can stop there instead of reading absent rows as zero
        self.span: Range = (self._starts[0], self._starts[-1] + size)

    def counts(self, ranges: Sequence[Range], population: Collection[str] = ()) -> dict[Range, RangeCount]:
        """Every distinct range -> its counts; ``population`` is not needed: a file is read whole."""
        return {span: self._range(span) for span in _check_ranges(ranges)}

    def _range(self, span: Range) -> RangeCount:
        start, end = span
        if window_floor(start, self.size) < self.span[0] or end > self.span[1]:
            return RangeCount(
                {}, whole=False, why=f"usage file {self.path} holds windows {_text(self.span)} only, not {_text(span)}"
            )
        lo = bisect_left(self._starts, window_floor(start, self.size))
        hi = bisect_left(self._starts, end.astimezone(UTC))
        totals: dict[Pair, int] = {}
        for window_start in self._starts[lo:hi]:
            for pair, count in self._by_start[window_start].items():
                totals[pair] = totals.get(pair, 0) + count
        return RangeCount(
            totals,
            whole=False,
            proven_pairs=self._pairs,
            why=f"usage file {self.path} has no row for this subscription and quota in any window",
        )


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
    return TraceabilitySource(
        amplify.traceability, usage.statuses, group_limit=usage.group_limit, retention=usage.retention
    )


__all__ = [
    "FileSource",
    "Range",
    "RangeCount",
    "TraceabilityLike",
    "TraceabilitySource",
    "UsageSource",
    "build_source",
]
