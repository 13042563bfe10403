"""Counts from the Traceability API, each grouped answer proven whole by its ungrouped total before it is used."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from amplify_billing.amplify.traceability import GroupedCount
from amplify_billing.settings import UsageSettings
from amplify_billing.usage.range_count import Pair, Range, RangeCount, check_ranges, span_text
from amplify_billing.usage.windows import window_floor

# the shortest range a count is split into when one subscription's answer still does not add up
SMALLEST_SPLIT = timedelta(hours=1)
# failures a RangeCount's why names one by one; the rest are counted
WHY_EXAMPLES = 3
# the settings' defaults, for sources built without settings (tests, the bench)
_DEFAULTS = UsageSettings()


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
        return {span: self._range(span, billed) for span in check_ranges(ranges)}

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
            return None, f"{subject} in {span_text(span)}: {answer.shortfall}"
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
            f"the grouped count of {span_text(span)} did not add up ({answer.shortfall}), so it was counted again per "
            f"chunk of the {len(population)} billed subscription(s); other subscriptions were not counted"
        )
    named = "; ".join(proof.failures[:WHY_EXAMPLES])
    more = f"; and {len(proof.failures) - WHY_EXAMPLES} more" if len(proof.failures) > WHY_EXAMPLES else ""
    return (
        f"Traceability could not prove the counts of {failed} of {len(population)} billed subscription(s) in "
        f"{span_text(span)} even one subscription and one hour at a time: {named}{more}"
    )
