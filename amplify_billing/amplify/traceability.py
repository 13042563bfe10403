"""Transaction counts from the Traceability API (reference/amplify-api.md §5.1 and §9.1).

Two Lexus searches with the same filters answer a count: one grouped by subscription id and quota id, one
ungrouped total. The grouped answer alone cannot be trusted: Lexus cuts each grouping at ``params.limit`` terms
(default 100 in the 0.2 schema) and says nothing when it does, so every grouped search sends an explicit limit,
and the caller proves the answer whole by comparing it with the total (``usage/sources.py``). The answers are
money-bearing input: any shape we do not recognise is refused, never read as zero.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from amplify_billing.amplify.transport import AmplifyTransport
from amplify_billing.amplify.wire import json_body
from amplify_billing.errors import UpstreamError
from amplify_billing.settings import AmplifySettings

LEXUS_VERSION = "0.2"
SUBSCRIPTION_FIELD = "transactionSummary.consumerDetails.subscription.id"
QUOTA_FIELD = "transactionSummary.quota.id"
STATUS_FIELD = "transactionSummary.status"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INVOKE = {"method": "count", "field": "transactionId"}

Pair = tuple[str, str]


def epoch_ms(moment: datetime) -> int:
    """Exact integer milliseconds (float ``timestamp()`` can round 0.123 s down to 122 ms)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True)
class GroupedCount:
    """One grouped answer: counts per (subscription, quota) and how many terms each grouping level returned.

    ``subscription_terms`` is the number of subscription groups; ``quota_terms`` the most quota groups under one
    subscription. A level that returned as many terms as its limit may have been cut."""

    counts: dict[Pair, int]
    subscription_terms: int
    quota_terms: int

    @property
    def units(self) -> int:
        return sum(self.counts.values())


def count_filters(
    start: datetime, end: datetime, statuses: Sequence[str] = (), subscriptions: Collection[str] | None = None
) -> dict[str, Any]:
    """Transaction summaries in [start, end) that name a subscription and a quota, optionally of some statuses
    and of some subscriptions (None: every subscription)."""
    filters: list[dict[str, Any]] = [
        {"$match": {"type": ["transactionSummary"]}},
        {"$range": {"@event_time": {"gte": epoch_ms(start), "lt": epoch_ms(end)}}},
        # Traffic outside the Marketplace carries no subscription or quota: it is never billed, it falls in no
        # group, and left in the total it would keep every grouped answer from adding up.
        {"$exists": {SUBSCRIPTION_FIELD: True, QUOTA_FIELD: True}},
    ]
    if statuses:
        filters.append({"$match": {STATUS_FIELD: list(statuses)}})
    if subscriptions is not None:
        filters.append({"$match": {SUBSCRIPTION_FIELD: sorted(subscriptions)}})
    return {"$and": filters}


def grouped_query(
    start: datetime,
    end: datetime,
    *,
    limit: int,
    statuses: Sequence[str] = (),
    subscriptions: Collection[str] | None = None,
) -> dict[str, Any]:
    """The Lexus body counting per subscription and quota, with ``limit`` terms asked on both levels (Lexus
    0.2 schema, group_by ``params.limit``: default 100, reference §9.1)."""
    return {
        "version": LEXUS_VERSION,
        "filters": count_filters(start, end, statuses, subscriptions),
        "group_by": [
            {"field": field, "type": "string", "params": {"limit": limit}}
            for field in (SUBSCRIPTION_FIELD, QUOTA_FIELD)
        ],
        "invoke": dict(_INVOKE),
    }


def total_query(
    start: datetime, end: datetime, *, statuses: Sequence[str] = (), subscriptions: Collection[str] | None = None
) -> dict[str, Any]:
    """The Lexus body counting the same transactions as ``grouped_query``, ungrouped: the answer is one number."""
    filters = count_filters(start, end, statuses, subscriptions)
    return {"version": LEXUS_VERSION, "filters": filters, "invoke": dict(_INVOKE)}


def oldest_query(statuses: Sequence[str] = ()) -> dict[str, Any]:
    """The Lexus body asking for the time of the oldest transaction summary still held that names a subscription
    and a quota (Lexus 0.2 ``invoke`` method ``min`` on ``@event_time``)."""
    filters: list[dict[str, Any]] = [
        {"$match": {"type": ["transactionSummary"]}},
        {"$exists": {SUBSCRIPTION_FIELD: True, QUOTA_FIELD: True}},
    ]
    if statuses:
        filters.append({"$match": {STATUS_FIELD: list(statuses)}})
    return {"version": LEXUS_VERSION, "filters": {"$and": filters}, "invoke": {"method": "min", "field": "@event_time"}}


class TraceabilityClient:
    def __init__(self, transport: AmplifyTransport, settings: AmplifySettings) -> None:
        self._transport = transport
        self._url = f"{settings.central_url.rstrip('/')}/api/traceability/v1/traceability/search"

    def grouped_count(
        self,
        start: datetime,
        end: datetime,
        *,
        limit: int,
        statuses: Sequence[str] = (),
        subscriptions: Collection[str] | None = None,
    ) -> GroupedCount:
        """Transactions in [start, end) per (subscription id, quota id); pairs without traffic are absent."""
        _check(start, end)
        body = grouped_query(start, end, limit=limit, statuses=statuses, subscriptions=subscriptions)
        return parse_counts(self._search(body), _range_text(start, end))

    def total_count(
        self,
        start: datetime,
        end: datetime,
        *,
        statuses: Sequence[str] = (),
        subscriptions: Collection[str] | None = None,
    ) -> int:
        """Transactions in [start, end) matched by the same filters as ``grouped_count``, in one number."""
        _check(start, end)
        body = total_query(start, end, statuses=statuses, subscriptions=subscriptions)
        return parse_total(self._search(body), _range_text(start, end))

    def oldest(self, *, statuses: Sequence[str] = ()) -> datetime | None:
        """When the oldest transaction still held happened (what the retention has left), or None if none is."""
        result = _result(self._search(oldest_query(statuses)), "the oldest transaction")
        if result is None:
            return None
        if not _count(result):
            raise _bad("the oldest transaction", f"the time {result!r} is not epoch milliseconds")
        return _EPOCH + timedelta(milliseconds=result)

    def _search(self, body: dict[str, Any]) -> Any:
        # a search only reads, so the transport may repeat it after a transient failure
        return json_body(self._transport.request("POST", self._url, json=body, safe_to_repeat=True))


def _check(start: datetime, end: datetime) -> None:
    for name, moment in (("start", start), ("end", end)):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    if start >= end:
        raise ValueError(f"start {start.isoformat()} must be before end {end.isoformat()}")


def _range_text(start: datetime, end: datetime) -> str:
    return f"{start.isoformat()} – {end.isoformat()}"


def _bad(window: str, why: str) -> UpstreamError:
    return UpstreamError(
        f"the Traceability API answered the count for {window} in an unexpected shape ({why}); "
        "no usage is reported for that window",
        system="amplify",
    )


def _result(body: Any, window: str) -> Any:
    if not isinstance(body, list) or len(body) != 1 or not isinstance(body[0], dict):
        raise _bad(window, "expected a list holding one query result")
    return body[0].get("result")


def _count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_counts(body: Any, window: str) -> GroupedCount:
    """``[{"version", "id", "result": {subscription: {quota: count}}}]`` -> counts; any other shape raises."""
    result = _result(body, window)
    if not isinstance(result, dict):
        raise _bad(window, "'result' is not an object keyed by subscription id")
    counts: dict[Pair, int] = {}
    quota_terms = 0
    for subscription_id, by_quota in result.items():
        if not isinstance(by_quota, dict):
            raise _bad(window, f"subscription {subscription_id} is not an object keyed by quota id")
        quota_terms = max(quota_terms, len(by_quota))
        for quota_id, count in by_quota.items():
            if not _count(count):
                raise _bad(window, f"count {count!r} for subscription {subscription_id}, quota {quota_id}")
            counts[(str(subscription_id), str(quota_id))] = count
    return GroupedCount(counts, len(result), quota_terms)


def parse_total(body: Any, window: str) -> int:
    """``[{"version", "id", "result": N}]`` -> N; any other shape raises."""
    result = _result(body, window)
    if not _count(result):
        raise _bad(window, f"the total {result!r} is not a whole number")
    return result
