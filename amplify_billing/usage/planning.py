"""Which windows of each (subscription, quota) a usage run counts, how far back it may count, and counting them
with as few queries as proof allows."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from amplify_billing.collaborators import Settled
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.billing_modes import Withheld, recurly_from
from amplify_billing.reconcile.subscriptions import RecurlySubscription, ended_state
from amplify_billing.reconcile.usage import (
    AgedOut,
    BilledQuota,
)
from amplify_billing.usage.ledger_reads import UsageLedger, UsageReads
from amplify_billing.usage.sources import Range, RangeCount, UsageSource
from amplify_billing.usage.windows import (
    UsageWindow,
    reportable_windows,
    window_ceil,
    window_floor,
)

Pair = tuple[str, str]


@dataclass(frozen=True)
class UsageOptions:
    dry_run: bool = False
    exit_code: bool = False
    force: bool = False
    start: datetime | None = None  # --from
    end: datetime | None = None  # --to
    window: str | None = None  # --window
    # Only these Amplify subscription ids (None: all). sync-subscriptions reports the last usage of ended
    # subscriptions this way before it ends them, so that nothing after the end is billed and nothing before lost.
    only: frozenset[str] | None = None


@dataclass(frozen=True)
class Horizon:
    """How far back this run may count, and why not further (for the finding)."""

    cutoff: datetime | None  # windows must start at or after it to be countable; None: no limit
    why: str


def horizon(rt: Settled, source: UsageSource, options: UsageOptions, now: datetime) -> Horizon:
    settings = rt.settings.usage
    limits: list[tuple[datetime, str]] = []
    if source.retention is not None:
        limits.append(
            (
                now - source.retention,
                f"the usage source keeps {_days(source.retention)} of transactions (usage.retention); "
                "count them from another source (usage.source: file, with report-usage --from/--to)",
            )
        )
    max_backfill = settings.max_backfill
    if max_backfill is not None and options.start is None:
        limits.append(
            (
                now - max_backfill,
                f"older than usage.max_backfill ({_days(max_backfill)}); "
                "raise it, or backfill with report-usage --from/--to",
            )
        )
    span_start = getattr(source, "span", (None, None))[0]
    if span_start is not None:
        # a file holds what it holds: windows before its first row cannot be counted from it
        limits.append(
            (span_start, f"the usage file starts at {span_start.strftime('%Y-%m-%dT%H:%M:%SZ')}; add rows for them")
        )
    if not limits:
        return Horizon(None, "")
    cutoff, why = max(limits, key=lambda limit: limit[0])
    return Horizon(cutoff, why)


def _days(span: timedelta) -> str:
    return f"{span.days} days" if span % timedelta(days=1) == timedelta(0) else str(span)


@dataclass
class Planner:
    """Builds the BilledQuota of every (subscription, quota) this run reports, and the reasons for the others."""

    rt: UsageReads
    options: UsageOptions
    ledger: UsageLedger
    size: timedelta
    now: datetime
    horizon: Horizon
    report_until: datetime | None
    blocked: set[Pair]
    stale: bool = False
    stale_note: str | None = None
    sample_reads: int = 0
    rebuilt: int = 0
    billed: list[BilledQuota] = field(default_factory=list)
    reasons: dict[Pair, str] = field(default_factory=dict)
    # subscriptions the double billing guard withholds (``reconcile/billing_modes``): a finding each Marketplace
    withheld: tuple[Withheld, ...] = ()

    def pair_windows(
        self, subscription: AmplifySubscription, current: RecurlySubscription, watermark: datetime | None
    ) -> tuple[list[UsageWindow], list[UsageWindow], AgedOut | None, list[UsageWindow]]:
        """New windows, re-count windows, the aged-out span and the before-billing-start windows of one pair."""
        settings = self.rt.settings.usage
        assert current.activated_at is not None
        # billing starts when the Amplify subscription became active, not when its Recurly
        # subscription was made (a subscription approved before the first run, or while cron was down)
        became_active = subscription.active_since or current.activated_at
        became_active = min(became_active, current.activated_at)
        # a Marketplace switched to recurly mode: Amplify's invoices billed its usage before the switch
        # (reconcile/billing_modes.recurly_from; docs/architecture.md, "Where each rule lives")
        switched = recurly_from(subscription, self.rt.settings.billing)
        if switched is not None:
            became_active = max(became_active, switched)
        report_mode = settings.before_billing_start == "report"
        active_from = current.activated_at if report_mode else became_active
        until = subscription.state_changed_at if ended_state(subscription) else None
        if current.expires_at is not None and (until is None or current.expires_at < until):
            until = current.expires_at
        backfill = self.options.start is not None or self.options.end is not None
        since = None if backfill else watermark
        floor = self.options.start or became_active
        if switched is not None:  # not even a backfill (--from) counts it twice
            floor = max(floor, switched)
        cutoff = self.horizon.cutoff
        earliest = floor if cutoff is None else max(floor, cutoff)

        def windows(start: datetime, earliest: datetime, since: datetime | None) -> list[UsageWindow]:
            return reportable_windows(
                size=self.size,
                now=self.now,
                settle_delay=settings.settle_delay,
                active_from=start,
                active_until=until,
                since=since,
                earliest=earliest,
                until=self.report_until,
            )

        countable = [w for w in windows(active_from, earliest, since) if cutoff is None or w.clip_start >= cutoff]
        aged = self._aged_out(active_from, since, until, cutoff)
        before: list[UsageWindow] = []
        if report_mode and became_active < current.activated_at:
            before = [
                w
                for w in windows(became_active, earliest, since)
                if w.clip_start < current.activated_at and (cutoff is None or w.clip_start >= cutoff)
            ]
            before = [replace(w, clip_end=min(w.clip_end, current.activated_at)) for w in before]
        recount: list[UsageWindow] = []
        if watermark is not None and not backfill:
            back = self.now - settings.lookback
            recount = [
                w
                for w in windows(active_from, max(earliest, back), None)
                if w.clip_end <= watermark and (cutoff is None or w.clip_start >= cutoff)
            ]
        return countable, recount, aged, before

    def _aged_out(
        self, active_from: datetime, since: datetime | None, until: datetime | None, cutoff: datetime | None
    ) -> AgedOut | None:
        """The span this pair should have counted but can no longer: from where counting would begin to the first
        countable window (a window that starts before the cutoff has lost some of its transactions)."""
        if cutoff is None:
            return None
        start = max(active_from, since) if since is not None else active_from
        if self.options.start is not None:
            start = max(start, self.options.start)
        if start >= cutoff:
            # counting begins inside the retention: the window holding the cutoff is clipped to start at `start`,
            # so it lost nothing (and is among the countable windows)
            return None
        boundary = window_ceil(cutoff, self.size)
        end = min(boundary, until) if until is not None else boundary
        settled = self.now - self.rt.settings.usage.settle_delay
        end = min(end, settled)
        if start >= end:
            return None
        first = start - (start - datetime(1970, 1, 1, tzinfo=start.tzinfo)) % self.size
        count = -((first - end) // self.size)
        return AgedOut(start, end, count, self.horizon.why)


def _ranges_of(quota: BilledQuota) -> list[tuple[datetime, datetime]]:
    return [(w.clip_start, w.clip_end) for w in (*quota.windows, *quota.recount, *quota.before_start)]


def count_ranges(source: UsageSource, billed: list[BilledQuota], size: timedelta) -> dict[Range, RangeCount]:
    """Every range the plan needs, counted with as few queries as proof allows.

    A subscription that became active inside a window needs that window from its activation: a range of its own,
    one more query per new subscription. Most such windows are quiet, and the whole aligned window proves it: where
    the whole window's answer is proven and holds nothing for the subscriptions that start inside it, their part of
    it holds nothing either, and it is not asked for."""
    wanted: dict[Range, set[str]] = {}
    for quota in billed:
        for span in _ranges_of(quota):
            wanted.setdefault(span, set()).add(quota.subscription_id)
    if not wanted:
        return {}
    population = sorted({q.subscription_id for q in billed})
    clipped = {
        span for span in wanted if span[0] != window_floor(span[0], size) and span[1] == _aligned_end(span, size)
    }
    aligned = {(window_floor(start, size), end) for start, end in clipped}
    answers = source.counts(sorted((set(wanted) - clipped) | aligned), population)
    left = []
    for span in sorted(clipped):
        whole = answers.get((window_floor(span[0], size), span[1]))
        starting = wanted[span]
        if whole is not None and whole.whole and not any(n and p[0] in starting for p, n in whole.counts.items()):
            answers[span] = RangeCount({}, whole=True)
        else:
            left.append(span)
    if left:
        answers.update(source.counts(left, population))
    return answers


def _aligned_end(span: Range, size: timedelta) -> datetime:
    return window_floor(span[0], size) + size
