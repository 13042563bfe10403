"""What a usage source answers: counts per (subscription, quota) for one range, and what the read proved.

Counts are money-bearing input: a pair missing from an answer is 0 only where the answer is proven to cover it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

Range = tuple[datetime, datetime]
Pair = tuple[str, str]


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


def check_ranges(ranges: Sequence[Range]) -> list[Range]:
    """The distinct ranges, oldest first; a naive or empty range is a programming error."""
    distinct = sorted(set(ranges))
    for start, end in distinct:
        for moment in (start, end):
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError(f"usage ranges must be timezone-aware, got {moment!r}")
        if start >= end:
            raise ValueError(f"usage range start {start.isoformat()} must be before its end {end.isoformat()}")
    return distinct


def span_text(span: Range) -> str:
    return " – ".join(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for moment in span)
