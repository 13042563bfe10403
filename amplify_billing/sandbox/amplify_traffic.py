"""Aggregated API traffic for the Amplify emulator's Traceability search.

A week of hourly traffic for ten thousand subscriptions is millions of transactions, so nothing
here holds one object per transaction: each (subscription, quota, status) keeps two parallel
integer arrays, event times in epoch milliseconds (sorted) and the number of transactions at that
instant. A count over [start, end) is two binary searches and a sum per series.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, insort
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(moment: datetime) -> int:
    """Exact integer milliseconds of an aware datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"traffic times must be timezone-aware, got {moment!r}")
    return (moment - _EPOCH) // _MS


@dataclass
class _Series:
    times: array[int] = field(default_factory=lambda: array("q"))
    counts: array[int] = field(default_factory=lambda: array("q"))

    def add(self, at_ms: int, count: int) -> None:
        times = self.times
        if not times or at_ms > times[-1]:  # the common case: traffic arrives in time order
            times.append(at_ms)
            self.counts.append(count)
            return
        index = bisect_left(times, at_ms)
        if index < len(times) and times[index] == at_ms:
            self.counts[index] += count
            return
        insort(times, at_ms)
        self.counts.insert(index, count)

    def total(self, start_ms: int, end_ms: int) -> int:
        times = self.times
        if not times or times[0] >= end_ms or times[-1] < start_ms:
            return 0
        return sum(self.counts[bisect_left(times, start_ms) : bisect_left(times, end_ms)])

    def earliest(self, start_ms: int, end_ms: int) -> int | None:
        """The first event time in [start, end) that carries a transaction, or None."""
        times = self.times
        for index in range(bisect_left(times, start_ms), bisect_left(times, end_ms)):
            if self.counts[index]:
                return times[index]
        return None


Pair = tuple[str | None, str | None]  # (subscription id, quota id); None where a transaction lacks the field


class TrafficStore:
    """Transaction counts keyed by (subscription id, quota id, status). Not thread-safe: callers lock."""

    def __init__(self) -> None:
        self._series: dict[tuple[str | None, str | None, str], _Series] = {}

    def add(self, subscription_id: str | None, quota_id: str | None, at_ms: int, count: int, status: str) -> None:
        if count < 0:
            raise ValueError(f"a transaction count cannot be negative, got {count}")
        if count == 0:
            return
        key = (subscription_id, quota_id, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        series.add(at_ms, count)

    def add_series(
        self,
        subscription_id: str | None,
        quota_id: str | None,
        start_ms: int,
        step_ms: int,
        counts: Iterable[int],
        status: str,
    ) -> None:
        """Counts at start, start+step, …; zeros are skipped."""
        values = list(counts)
        if any(count < 0 for count in values):
            raise ValueError("a transaction count cannot be negative")
        key = (subscription_id, quota_id, status)
        series = self._series.get(key)
        if series is None or not series.times or start_ms > series.times[-1]:
            # the seeding path: a new or later series appends in one go, no per-point search
            series = series or self._series.setdefault(key, _Series())
            points = [(start_ms + i * step_ms, count) for i, count in enumerate(values) if count]
            series.times.extend(t for t, _ in points)
            series.counts.extend(c for _, c in points)
            return
        at = start_ms
        for count in values:
            if count:
                self.add(subscription_id, quota_id, at, count, status)
            at += step_ms

    def count(
        self,
        start_ms: int,
        end_ms: int,
        *,
        statuses: Collection[str] = (),
        subscriptions: Collection[str] = (),
        quotas: Collection[str] = (),
    ) -> dict[Pair, int]:
        """Transactions in [start, end) per (subscription, quota); empty filters match everything (and a filter
        on a field leaves out traffic without it)."""
        totals: dict[Pair, int] = {}
        for pair, series in self._filtered(statuses, subscriptions, quotas):
            total = series.total(start_ms, end_ms)
            if total:
                totals[pair] = totals.get(pair, 0) + total
        return totals

    def earliest(
        self,
        start_ms: int,
        end_ms: int,
        *,
        statuses: Collection[str] = (),
        subscriptions: Collection[str] = (),
        quotas: Collection[str] = (),
        admits: Callable[[Pair], bool] = lambda pair: True,
    ) -> int | None:
        """The time of the first transaction in [start, end) that the filters admit (as ``count``), or None."""
        found: list[int] = []
        for pair, series in self._filtered(statuses, subscriptions, quotas):
            first = series.earliest(start_ms, end_ms) if admits(pair) else None
            if first is not None:
                found.append(first)
        return min(found, default=None)

    def _filtered(
        self, statuses: Collection[str], subscriptions: Collection[str], quotas: Collection[str]
    ) -> Iterator[tuple[Pair, _Series]]:
        """Each series the filters admit, by its (subscription, quota); an empty filter admits everything."""
        for (subscription_id, quota_id, status), series in self._series.items():
            if statuses and status not in statuses:
                continue
            if subscriptions and subscription_id not in subscriptions:
                continue
            if quotas and quota_id not in quotas:
                continue
            yield (subscription_id, quota_id), series

    def statuses(self) -> set[str]:
        return {status for _, _, status in self._series}

    def __len__(self) -> int:
        return sum(len(series.times) for series in self._series.values())
