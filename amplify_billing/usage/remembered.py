"""Reads made once per invocation, whichever pass asks (docs/architecture.md, "Dry run and the whole cycle").

``run`` plans the whole cycle on overlays, then applies it phase by phase, re-planning against the real state:
the second pass would repeat every read the listings do not cover. These wrappers keep the answers of reads that
no write of the run changes before the second pass uses them (``Snapshots.remember``, shared by the fork):
counts of settled usage windows, and the few Recurly usage listings of the stale-journal sample and the lookups
of open intents. First-contact reads of a pair's usage are not kept: a lost journal may need thousands of them,
and they are made once per pass only when the journal does not know the pair.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from amplify_billing.usage.range_count import Range, RangeCount, UsageSource, check_ranges

Remember = Callable[[str, Callable[[], Any]], Any]


@dataclass
class RememberedCounts:
    """A usage source whose answers are kept per (range, population). ``queries``: the count queries behind the
    answers this pass used, asked now or by the earlier pass (what the report says the counting cost)."""

    source: UsageSource
    remember: Remember
    queries: int = 0
    retention: timedelta | None = None

    def __post_init__(self) -> None:
        self.retention = self.source.retention

    @property
    def span(self) -> tuple[Any, Any]:
        value: tuple[Any, Any] = getattr(self.source, "span", (None, None))
        return value

    def counts(self, ranges: Sequence[Range], population: Collection[str] = ()) -> dict[Range, RangeCount]:
        billed = tuple(sorted(set(population)))
        who = hashlib.sha256(",".join(billed).encode()).hexdigest()[:16]
        answers: dict[Range, RangeCount] = {}
        for span in check_ranges(ranges):

            def load(span: Range = span) -> tuple[RangeCount, int]:
                before = self.source.queries
                answer = self.source.counts([span], billed)[span]
                return answer, self.source.queries - before

            answer, cost = self.remember(f"usage-count:{span[0].isoformat()}:{span[1].isoformat()}:{who}", load)
            self.queries += cost
            answers[span] = answer
        return answers


@dataclass
class RememberedUsage:
    """Recurly usage listings kept per (subscription, add-on, query)."""

    gateway: Any  # a RecurlyGateway: anything with list_usage
    remember: Remember

    def list_usage(
        self, subscription_id: str, add_on_id: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        key = json.dumps([subscription_id, add_on_id, dict(params or {})], sort_keys=True, default=str)
        result: list[dict[str, Any]] = self.remember(
            "recurly-usage:" + key, lambda: self.gateway.list_usage(subscription_id, add_on_id, params)
        )
        return result
