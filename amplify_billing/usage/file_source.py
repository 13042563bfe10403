"""Counts from a CSV or JSONL file of ``subscription_id, quota_id, window_start, count`` rows, for backfills and
gateways without traceability; a file proves only the pairs and windows it holds."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from amplify_billing.usage.file_rows import validated_rows
from amplify_billing.usage.range_count import Pair, Range, RangeCount, check_ranges, span_text
from amplify_billing.usage.windows import window_floor


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
        for _line, subscription_id, quota_id, start, count in validated_rows(path, size):
            by_start.setdefault(start, {})[(subscription_id, quota_id)] = count
        self._starts = sorted(by_start)
        self._by_start = by_start
        self._pairs = frozenset(pair for rows in by_start.values() for pair in rows)
        self.rows = sum(len(v) for v in by_start.values())
        # the windows the file speaks for: a caller can stop there instead of reading absent rows as zero
        self.span: Range = (self._starts[0], self._starts[-1] + size)

    def counts(self, ranges: Sequence[Range], population: Collection[str] = ()) -> dict[Range, RangeCount]:
        """Every distinct range -> its counts; ``population`` is not needed: a file is read whole."""
        return {span: self._range(span) for span in check_ranges(ranges)}

    def _range(self, span: Range) -> RangeCount:
        start, end = span
        if window_floor(start, self.size) < self.span[0] or end > self.span[1]:
            return RangeCount(
                {},
                whole=False,
                why=f"usage file {self.path} holds windows {span_text(self.span)} only, not {span_text(span)}",
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
