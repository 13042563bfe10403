"""Transaction counts from the Traceability API (reference/amplify-api.md §5.1), one query per window.

A single Lexus search groups the window's transaction summaries by subscription id and quota id and
counts them, so the cost of a window does not grow with the number of subscriptions. The answer is
money-bearing input: any shape we do not recognise is refused, never read as zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from amplify_billing.amplify.transport import AmplifyTransport
from amplify_billing.amplify.wire import json_body
from amplify_billing.errors import UpstreamError
from amplify_billing.settings import AmplifySettings

LEXUS_VERSION = "0.2"
SUBSCRIPTION_FIELD = "transactionSummary.consumerDetails.subscription.id"
QUOTA_FIELD = "transactionSummary.quota.id"
STATUS_FIELD = "transactionSummary.status"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    """Exact integer milliseconds (float ``timestamp()`` can round 0.123 s down to 122 ms)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def count_query(start: datetime, end: datetime, statuses: Sequence[str] = ()) -> dict[str, Any]:
    """The Lexus body: transaction summaries in [start, end), counted per subscription and quota."""
    filters: list[dict[str, Any]] = [
        {"$match": {"type": ["transactionSummary"]}},
        {"$range": {"@event_time": {"gte": epoch_ms(start), "lt": epoch_ms(end)}}},
    ]
    if statuses:
        filters.append({"$match": {STATUS_FIELD: list(statuses)}})
    return {
        "version": LEXUS_VERSION,
        "filters": {"$and": filters},
        "group_by": [{"field": SUBSCRIPTION_FIELD, "type": "string"}, {"field": QUOTA_FIELD, "type": "string"}],
        "invoke": {"method": "count", "field": "transactionId"},
    }


class TraceabilityClient:
    def __init__(self, transport: AmplifyTransport, settings: AmplifySettings) -> None:
        self._transport = transport
        self._url = f"{settings.central_url.rstrip('/')}/api/traceability/v1/traceability/search"

    def count_by_subscription_and_quota(
        self, start: datetime, end: datetime, statuses: Sequence[str] = ()
    ) -> dict[tuple[str, str], int]:
        """Transactions in [start, end) per (subscription id, quota id); pairs without traffic are absent."""
        for name, moment in (("start", start), ("end", end)):
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
        if start >= end:
            raise ValueError(f"start {start.isoformat()} must be before end {end.isoformat()}")
        # a search only reads, so the transport may repeat it after a transient failure
        response = self._transport.request(
            "POST", self._url, json=count_query(start, end, statuses), safe_to_repeat=True
        )
        return parse_counts(json_body(response), f"{start.isoformat()} – {end.isoformat()}")


def parse_counts(body: Any, window: str) -> dict[tuple[str, str], int]:
    """``[{"version", "id", "result": {subscription: {quota: count}}}]`` -> counts; any other shape raises."""

    def bad(why: str) -> UpstreamError:
        return UpstreamError(
            f"the Traceability API answered the count for {window} in an unexpected shape ({why}); "
            "no usage is reported for that window",
            system="amplify",
        )

    if not isinstance(body, list) or len(body) != 1 or not isinstance(body[0], dict):
        raise bad("expected a list holding one query result")
    result = body[0].get("result")
    if not isinstance(result, dict):
        raise bad("'result' is not an object keyed by subscription id")
    counts: dict[tuple[str, str], int] = {}
    for subscription_id, by_quota in result.items():
        if not isinstance(by_quota, dict):
            raise bad(f"subscription {subscription_id} is not an object keyed by quota id")
        for quota_id, count in by_quota.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise bad(f"count {count!r} for subscription {subscription_id}, quota {quota_id}")
            counts[(str(subscription_id), str(quota_id))] = count
    return counts
