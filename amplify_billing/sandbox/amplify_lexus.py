"""The Traceability search of the Amplify emulator [reference §5.1, §9.1]: Lexus 0.2 over aggregated traffic.

It answers a ``count``, ungrouped or grouped by subscription id and quota id, and the ``min`` of ``@event_time``
(the oldest transaction still held). Each grouping returns only its ``params.limit`` largest terms (default 100),
``$exists`` leaves out traffic without a subscription or quota, and transactions older than the 7-day retention
are gone.

Two counts of the same traffic are kept. The API metrics count every transaction (agent-sdk
pkg/transaction/eventgenerator.go: metrics are tracked for every transaction first); Traceability holds only the
transaction *summaries*, and with sampling on, "when sampling applies and the transaction is not sampled, no summary
event is generated" (same file; sampling percentage default 0, at most 10: pkg/traceability/sampling/definitions.go).
So with ``sampling_rate`` set, the search counts a sample of that share and the unsampled leave no trace, while
``traffic()`` (the metrics, what Amplify's invoices bill) keeps the full counts.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from amplify_billing.sandbox.amplify_answers import BadRequest, json_answer
from amplify_billing.sandbox.amplify_traffic import Pair, TrafficStore, epoch_ms
from amplify_billing.sandbox.server import Response

LEXUS_VERSION = "0.2"
SUBSCRIPTION_FIELD = "transactionSummary.consumerDetails.subscription.id"
QUOTA_FIELD = "transactionSummary.quota.id"
STATUS_FIELD = "transactionSummary.status"
TIME_FIELD = "@event_time"
GROUP_FIELDS = (SUBSCRIPTION_FIELD, QUOTA_FIELD)
# Lexus 0.2 schema, group_by params.limit default (reference §9.1)
DEFAULT_GROUP_LIMIT = 100
# "Transactions data: 7 Days", no archival (DOCS network_traffic.md, reference §9.1)
TRACEABILITY_RETENTION = timedelta(days=7)


class Traceability:
    """The traffic (every transaction, as the API metrics count it) and the summaries a search counts."""

    def __init__(self, clock: Callable[[], datetime], seed: int) -> None:
        self._clock = clock
        self._metrics = TrafficStore()
        self._summaries = TrafficStore()
        self._lock = threading.Lock()
        self._sampler = random.Random(f"amplify-emulator-sampling:{seed}")
        # None: every transaction leaves a summary (the SDK's documented default); else the share that does
        self.sampling_rate: float | None = None
        # Traceability keeps transactions 7 days (reference §9.1); None keeps them for ever (a test's switch)
        self.retention: timedelta | None = TRACEABILITY_RETENTION
        # A backend cap on a grouping's asked limit, applied silently; None: the asked limit is honoured. Whether
        # Lexus has one is not documented (reference §9.1), so it is off unless a test turns it on.
        self.max_group_limit: int | None = None

    def sample(self, rate: float | None) -> None:
        """Sample summaries at ``rate`` (0 < rate ≤ 1) from now on; set it before traffic is added."""
        if rate is not None and not 0 < rate <= 1:
            raise ValueError(f"the sampling rate must be above 0 and at most 1, got {rate}")
        with self._lock:
            if len(self._metrics):
                raise ValueError("set the sampling rate before adding traffic (the summaries are drawn as it arrives)")
            self.sampling_rate = rate

    def _sampled(self, count: int) -> int:
        """How many of ``count`` transactions leave a summary: the rate's share, rounded at random (unbiased)."""
        if self.sampling_rate is None or count == 0:
            return count
        share = count * self.sampling_rate
        whole = int(share)
        return whole + (1 if self._sampler.random() < share - whole else 0)

    def add(self, subscription_id: str | None, quota_id: str | None, at_ms: int, count: int, status: str) -> None:
        with self._lock:
            self._metrics.add(subscription_id, quota_id, at_ms, count, status)
            self._summaries.add(subscription_id, quota_id, at_ms, self._sampled(count), status)

    def add_series(
        self,
        subscription_id: str | None,
        quota_id: str | None,
        start_ms: int,
        step_ms: int,
        counts: Sequence[int],
        status: str,
    ) -> None:
        with self._lock:
            self._metrics.add_series(subscription_id, quota_id, start_ms, step_ms, counts, status)
            sampled = [self._sampled(count) for count in counts] if self.sampling_rate is not None else counts
            self._summaries.add_series(subscription_id, quota_id, start_ms, step_ms, sampled, status)

    def metrics(self, start_ms: int, end_ms: int, statuses: Sequence[str]) -> dict[Pair, int]:
        """Every transaction in [start, end), whatever the sampling and the retention (ground truth)."""
        with self._lock:
            return self._metrics.count(start_ms, end_ms, statuses=frozenset(statuses))

    def search(self, body: Any) -> Response:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a Lexus query object")
        if body.get("version") != LEXUS_VERSION:
            raise BadRequest(f"Lexus version {body.get('version')!r} is not supported (use {LEXUS_VERSION!r})")
        invoke = body.get("invoke")
        oldest = invoke == {"method": "min", "field": TIME_FIELD}
        if not isinstance(invoke, dict) or (invoke.get("method") != "count" and not oldest):
            raise BadRequest(f"the emulator answers only invoke.method 'count', and 'min' of {TIME_FIELD}")
        fields, limits = self._grouping(body.get("group_by") or [])
        if oldest and fields:
            raise BadRequest(f"the emulator answers 'min' of {TIME_FIELD} ungrouped only")
        window = LexusFilter()
        window.read(body.get("filters") or {})
        if self.retention is not None:
            # "Transactions data: 7 Days", no archival (reference §9.1): older transactions are gone
            window.start = max(window.start, epoch_ms(self._clock() - self.retention))
        result = self._oldest(window) if oldest else _nest(self._counts(window), fields, limits)
        query_id = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
        return json_answer(200, [{"version": LEXUS_VERSION, "id": query_id, "result": result}])

    def _counts(self, window: LexusFilter) -> dict[Pair, int]:
        if not window.possible():
            return {}
        with self._lock:
            counts = self._summaries.count(
                window.start,
                window.end,
                statuses=window.statuses or (),
                subscriptions=window.subscriptions or (),
                quotas=window.quotas or (),
            )
        return {pair: n for pair, n in counts.items() if window.admits(pair)}

    def _oldest(self, window: LexusFilter) -> int | None:
        if not window.possible():
            return None
        with self._lock:
            return self._summaries.earliest(
                window.start,
                window.end,
                statuses=window.statuses or (),
                subscriptions=window.subscriptions or (),
                quotas=window.quotas or (),
                admits=window.admits,
            )

    def _grouping(self, group_by: Any) -> tuple[list[str], list[int]]:
        """The grouped fields and the number of terms each level returns.

        Lexus 0.2 schema (LEXUS ``schema/0.2/schema.yml``, group_by ``params.limit``, reference §9.1): "Limits on
        the amount of terms being returned in this grouping phase", default 100. A backend may also cap what it
        is asked for (``max_group_limit``, off by default: no public source names a maximum)."""
        if not isinstance(group_by, list) or not all(isinstance(g, dict) for g in group_by):
            raise BadRequest("group_by must be a list of {field, type, params}")
        fields = [g.get("field") for g in group_by]
        if any(f not in GROUP_FIELDS for f in fields) or len(set(fields)) != len(fields):
            raise BadRequest(f"the emulator groups only by {' and '.join(GROUP_FIELDS)}, each at most once")
        limits: list[int] = []
        for entry in group_by:
            params = entry.get("params") or {}
            limit = params.get("limit", DEFAULT_GROUP_LIMIT) if isinstance(params, dict) else None
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise BadRequest(f"group_by params.limit must be a whole number of at least 1, got {limit!r}")
            limits.append(limit if self.max_group_limit is None else min(limit, self.max_group_limit))
        return [str(f) for f in fields], limits


class LexusFilter:
    """What a Lexus ``filters`` tree asks for, within the subset the emulator answers."""

    def __init__(self) -> None:
        self.start = -(2**62)
        self.end = 2**62
        self.types_match = True
        self.statuses: set[str] | None = None
        self.subscriptions: set[str] | None = None
        self.quotas: set[str] | None = None
        self.exists: dict[str, bool] = {}

    def possible(self) -> bool:
        """Whether anything can match: two $match lists on one field that never intersect leave an empty set."""
        impossible = any(v is not None and not v for v in (self.statuses, self.subscriptions, self.quotas))
        return self.types_match and self.start < self.end and not impossible

    def admits(self, pair: Pair) -> bool:
        """Whether a (subscription id, quota id) pair, None where a transaction lacks the field, passes $exists."""
        present = {SUBSCRIPTION_FIELD: pair[0] is not None, QUOTA_FIELD: pair[1] is not None}
        return all(present[field] == wanted for field, wanted in self.exists.items())

    def read(self, node: Any) -> None:
        if not isinstance(node, dict):
            raise BadRequest("each Lexus filter must be an object")
        for operator, argument in node.items():
            if operator == "$and":
                if not isinstance(argument, list):
                    raise BadRequest("$and takes a list of filters")
                for child in argument:
                    self.read(child)
            elif operator == "$match":
                self._match(argument)
            elif operator == "$range":
                self._range(argument)
            elif operator == "$exists":
                self._exists(argument)
            else:
                raise BadRequest(
                    f"Lexus operator {operator!r} is not supported by the emulator: $and, $exists, $match, $range"
                )

    def _exists(self, argument: Any) -> None:
        # Lexus 0.2 schema: "$exists": {field: boolean}, "whether the field should exist"
        if not isinstance(argument, dict):
            raise BadRequest("$exists takes {field: true|false}")
        for field, wanted in argument.items():
            if field not in GROUP_FIELDS or not isinstance(wanted, bool):
                known = " and ".join(GROUP_FIELDS)
                raise BadRequest(f"$exists on {field!r}: the emulator knows {known}, each true or false")
            if self.exists.get(field, wanted) != wanted:
                self.types_match = False  # a field asked both present and absent: nothing matches
            self.exists[field] = wanted

    def _match(self, argument: Any) -> None:
        if not isinstance(argument, dict):
            raise BadRequest("$match takes {field: [values]}")
        for field, raw in argument.items():
            values = {str(v) for v in (raw if isinstance(raw, list) else [raw])}
            if field == "type":
                self.types_match = self.types_match and "transactionSummary" in values
            elif field == STATUS_FIELD:
                self.statuses = values if self.statuses is None else self.statuses & values
            elif field == SUBSCRIPTION_FIELD:
                self.subscriptions = values if self.subscriptions is None else self.subscriptions & values
            elif field == QUOTA_FIELD:
                self.quotas = values if self.quotas is None else self.quotas & values
            else:
                raise BadRequest(f"$match on {field!r} is not supported by the emulator")

    def _range(self, argument: Any) -> None:
        if not isinstance(argument, dict):
            raise BadRequest("$range takes {field: {gte|gt|lte|lt: value}}")
        for field, bounds in argument.items():
            if field != TIME_FIELD or not isinstance(bounds, dict):
                raise BadRequest(f"$range on {field!r} is not supported by the emulator (only {TIME_FIELD})")
            for bound, value in bounds.items():
                if not isinstance(value, int) or isinstance(value, bool):
                    raise BadRequest(f"$range {TIME_FIELD}.{bound} must be epoch milliseconds, got {value!r}")
                if bound == "gte":
                    self.start = max(self.start, value)
                elif bound == "gt":
                    self.start = max(self.start, value + 1)
                elif bound == "lt":
                    self.end = min(self.end, value)
                elif bound == "lte":
                    self.end = min(self.end, value + 1)
                else:
                    raise BadRequest(f"$range bound {bound!r} is not one of gt, gte, lt, lte")


def _nest(counts: Mapping[Pair, int], fields: Sequence[str], limits: Sequence[int]) -> Any:
    """Lexus nests a grouped result one level per group_by field, keyed by the group value.

    Each level keeps only its ``limit`` largest terms (by count, descending; ties by key), silently, as the
    Elasticsearch terms aggregation behind Lexus does; a transaction without a grouped field falls in no group,
    but an ungrouped count counts it."""
    if not fields:
        return sum(counts.values())
    keyed: dict[tuple[str, ...], int] = {}
    for (subscription_id, quota_id), count in counts.items():
        keys = [subscription_id if f == SUBSCRIPTION_FIELD else quota_id for f in fields]
        if all(k is not None for k in keys):
            key = tuple(str(k) for k in keys)
            keyed[key] = keyed.get(key, 0) + count
    return _top_terms(keyed, limits)


def _top_terms(counts: Mapping[tuple[str, ...], int], limits: Sequence[int]) -> Any:
    if not limits:
        return sum(counts.values())
    groups: dict[str, dict[tuple[str, ...], int]] = {}
    for key, count in counts.items():
        groups.setdefault(key[0], {})[key[1:]] = count
    ranked = sorted(groups.items(), key=lambda item: (-sum(item[1].values()), item[0]))[: limits[0]]
    return {term: _top_terms(rest, limits[1:]) for term, rest in ranked}
