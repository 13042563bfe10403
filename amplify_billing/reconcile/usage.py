"""report-usage diff: counted traffic per (subscription, quota, window) vs what Recurly holds. Pure.

For every window of every billed (subscription, quota), once its count is proven (DESIGN.md §3 Completeness):
- nothing in Recurly and a non-zero count: post one usage record tagged ``amplify:{S}:{Q}:{window}`` (several,
  tagged ``…:p{k}``, when the count is over Recurly's 9 digits), dated at the window's start, or at the Recurly
  subscription's start for traffic from before it (DESIGN.md §3: billing starts when the Amplify subscription
  became active);
- a record there with the same total: nothing;
- a different total (late traffic inside ``usage.lookback``): a restatement whose kind the plan decides, so that a
  dry run shows it: an update in place (the only record of the window, unbilled), an adjustment ``…:adj{n}`` for
  the difference (billed), or a finding: a downward correction without ``allow_downward``, or a correction into a
  billed cycle of a volume or stairstep add-on, which Recurly refuses (reference/recurly-api.md §2.6).
A count that is not proven (the source could not show its answer whole) is unknown: nothing is posted or restated
from it, the watermark stops before it, and a finding says so. Zero counts are not posted (``skip_zero``) but do
advance the watermark.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from amplify_billing.actions import PostUsage, UpdateUsage, UsageRecord, known
from amplify_billing.changes import Change, ChangeKind
from amplify_billing.usage.windows import UsageWindow, merchant_tag, split_amount, window_floor

PHASE_USAGE = 70
PHASE_REPORT = 95
# Recurly accepts no usage dated into an already billed cycle for these (reference/recurly-api.md §2.6)
NO_CORRECTION_TIER_TYPES = frozenset({"volume", "stairstep"})


class CountAnswer(Protocol):
    """What a usage source answered for one range (see usage.sources.RangeCount)."""

    @property
    def counts(self) -> Mapping[tuple[str, str], int]: ...
    @property
    def why(self) -> str: ...
    def count(self, pair: tuple[str, str]) -> int | None: ...


Answers = Mapping[tuple[datetime, datetime], CountAnswer]


@dataclass(frozen=True, slots=True)
class LedgerView:
    """What the journal (refreshed from Recurly where a restatement depends on it) says one window holds."""

    base_tag: str
    base_usage_id: str | None  # the window's single base record; None when it was posted in parts
    total: Decimal  # base (or parts) + adjustments
    adjustments: int
    billed: bool  # the window's first record has been invoiced
    parts: int = 0
    probe_usage_id: str | None = None  # the record whose billing status stands for the window's (base or part 1)
    unreadable: str | None = None  # why its billing status could not be read: no restatement is planned on it


@dataclass(frozen=True, slots=True)
class AgedOut:
    """Windows of a pair that can no longer be counted: ``[start, end)``, ``windows`` of them, and why."""

    start: datetime
    end: datetime
    windows: int
    why: str


@dataclass(frozen=True, slots=True)
class BilledQuota:
    """One (subscription, quota) that is billed through a Recurly usage add-on."""

    subscription_id: str
    subscription_name: str
    quota_id: str
    recurly_uuid: str
    add_on_code: str
    windows: tuple[UsageWindow, ...]  # new windows, oldest first
    recount: tuple[UsageWindow, ...] = ()  # already reported windows inside the lookback
    billing_start: datetime | None = None  # the Recurly subscription's start: no usage is dated before it
    tier_type: str = "flat"
    before_start: tuple[UsageWindow, ...] = ()  # usage.before_billing_start: report — counted, reported, not billed
    aged_out: AgedOut | None = None


@dataclass(frozen=True)
class UsageRules:
    skip_zero: bool = True
    allow_downward: bool = False


@dataclass(frozen=True)
class UsagePlan:
    changes: tuple[Change, ...]
    # (subscription, quota) -> the watermark to store once every change of that pair succeeded
    watermarks: Mapping[tuple[str, str], datetime] = field(default_factory=dict)
    units: int = 0  # units that the posts and restatements add


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _span(start: datetime, end: datetime) -> str:
    return f"{_ts(start)}…{_ts(end)}"


@dataclass
class _PairPlanner:
    """Plans one (subscription, quota): its posts, restatements, findings and watermark."""

    quota: BilledQuota
    answers: Answers
    ledger: Mapping[str, LedgerView]
    rules: UsageRules
    changes: list[Change] = field(default_factory=list)
    units: int = 0

    @property
    def pair(self) -> tuple[str, str]:
        return (self.quota.subscription_id, self.quota.quota_id)

    @property
    def ref(self) -> str:
        q = self.quota
        return f"subscription {q.subscription_name} ({q.subscription_id}) quota {q.quota_id}"

    @property
    def target(self) -> str:
        return f"{self.quota.recurly_uuid}/{self.quota.add_on_code}"

    def count(self, window: UsageWindow) -> int | None:
        answer = self.answers.get((window.clip_start, window.clip_end))
        return None if answer is None else answer.count(self.pair)

    def why(self, window: UsageWindow) -> str:
        answer = self.answers.get((window.clip_start, window.clip_end))
        return answer.why if answer is not None and answer.why else "the source gave no answer for it"

    def plan(self) -> datetime | None:
        """Adds the pair's changes; returns its new watermark (None: unchanged)."""
        q = self.quota
        for window in q.recount:
            self._window(window, recount=True)
        watermark: datetime | None = None
        unknown: list[UsageWindow] = []
        for window in q.windows:
            if not self._window(window, recount=False):
                unknown.append(window)
            elif not unknown:
                # the watermark never passes a window whose count is unknown: the next run counts it again
                watermark = window.clip_end
        if unknown:
            self._finding(
                f"{len(unknown)} window(s) from {_span(unknown[0].clip_start, unknown[-1].clip_end)} not billed: "
                f"the count is not proven complete ({self.why(unknown[0])}); the next run counts them again",
                key_suffix="unproven",
                withholds=True,
            )
        if q.aged_out is not None:
            aged = q.aged_out
            self._finding(
                f"{aged.windows} window(s) from {_span(aged.start, aged.end)} cannot be counted any more ({aged.why})",
                key_suffix="uncountable",
                withholds=True,
            )
            if watermark is None or watermark < aged.end:
                # never countable again: the finding is its record, and the watermark moves past it (every unknown
                # window starts at or after aged.end, so none of those is passed)
                watermark = aged.end
        reported_before = self._before_start()
        if watermark is None and not unknown and reported_before is not None:
            watermark = reported_before  # those windows are reported once, not on every run
        return watermark

    def _before_start(self) -> datetime | None:
        """Reports the traffic from before the Recurly subscription started (``before_billing_start: report``);
        returns the end of what it reported when every such window was counted."""
        q = self.quota
        if not q.before_start:
            return None
        known = [(w, self.count(w)) for w in q.before_start]
        units = sum(n for _w, n in known if n)
        unknown = sum(1 for _w, n in known if n is None)
        if units or unknown:
            first, last = q.before_start[0], q.before_start[-1]
            extra = f"; {unknown} window(s) of it not proven complete" if unknown else ""
            self._finding(
                f"{units} unit(s) from {_span(first.clip_start, last.clip_end)}, before the Recurly subscription "
                f"started, not billed (usage.before_billing_start: report){extra}",
                key_suffix="before-start",
                withholds=bool(unknown),
                units=units,
            )
        return None if unknown else q.before_start[-1].clip_end

    def _window(self, window: UsageWindow, *, recount: bool) -> bool:
        """Plans one window; False when its count is unknown."""
        count = self.count(window)
        if count is None:
            if recount:
                self._finding(
                    f"re-count of {_span(window.clip_start, window.clip_end)} not proven complete "
                    f"({self.why(window)}); what was posted stands",
                    key_suffix=f"recount:{_ts(window.start)}",
                    withholds=False,
                )
            return False
        tag = merchant_tag(self.quota.subscription_id, self.quota.quota_id, window.start)
        known = self.ledger.get(tag)
        if known is None:
            if count or not self.rules.skip_zero:
                self._post(window, tag, count)
        elif Decimal(count) != known.total:
            self._restate(window, known, count)
        return True

    def _record(self, window: UsageWindow, kind: str, base_tag: str) -> tuple[UsageRecord, datetime]:
        """The ledger's view of one record, and its date: the window's start, or the Recurly subscription's start
        for traffic from before it (Recurly refuses usage dated before the subscription)."""
        q = self.quota
        dated = window.clip_start if q.billing_start is None else max(window.clip_start, q.billing_start)
        return UsageRecord(q.subscription_id, q.quota_id, window.start, window.end, base_tag, kind), dated

    def _post(self, window: UsageWindow, tag: str, count: int) -> None:
        self.units += count
        span = _span(window.clip_start, window.clip_end)
        self._records(
            ChangeKind.POST, window, tag, count, tag, lambda amount, piece: f"{amount} unit(s) for {span}{piece}"
        )

    def _records(
        self,
        kind: ChangeKind,
        window: UsageWindow,
        tag: str,
        amount: int,
        base_tag: str,
        summary: Callable[[int, str], str],
        old_total: int | None = None,
    ) -> None:
        """One usage.post per record: the amount itself, or its parts ``…:p{k}`` when over Recurly's 9 digits."""
        parts = split_amount(amount)
        adjustment = kind is ChangeKind.RESTATE
        for k, part in enumerate(parts, start=1):
            part_tag = tag if len(parts) == 1 else f"{tag}:p{k}"
            record_kind = "adjustment" if adjustment else ("base" if len(parts) == 1 else "part")
            piece = f" (part {k} of {len(parts)})" if len(parts) > 1 else ""
            record, dated = self._record(window, record_kind, base_tag)
            q = self.quota
            self.changes.append(
                Change(
                    kind,
                    "usage",
                    self.ref,
                    self.target,
                    summary(part, piece),
                    action=PostUsage(q.recurly_uuid, q.add_on_code, part_tag, part, dated, record, old_total),
                    phase=PHASE_USAGE,
                    key=part_tag,
                    amplify_id=q.subscription_id,
                    recurly_id=known(q.recurly_uuid),
                )
            )

    def _restate(self, window: UsageWindow, known: LedgerView, count: int) -> None:
        span = _span(window.clip_start, window.clip_end)
        difference = count - int(known.total)
        held = self._held_back(span, known, count, difference)
        if held is not None:
            reason, text = held
            self._finding(text, key_suffix=f"{reason}:{_ts(window.start)}", withholds=True, units=difference)
            return
        self.units += difference
        in_place = not known.billed and known.base_usage_id is not None and known.adjustments == 0 and not known.parts
        if in_place:
            record, dated = self._record(window, "base", known.base_tag)
            q = self.quota
            assert known.base_usage_id is not None and isinstance(q.recurly_uuid, str)
            update = UpdateUsage(
                known.base_usage_id,
                q.recurly_uuid,
                q.add_on_code,
                known.base_tag,
                count,
                dated,
                record,
                int(known.total),
            )
            self.changes.append(
                Change(
                    ChangeKind.RESTATE,
                    "usage",
                    self.ref,
                    self.target,
                    f"{span}: {known.total} → {count} unit(s) (late traffic), updated in place (unbilled)",
                    action=update,
                    phase=PHASE_USAGE,
                    key=known.base_tag,
                    amplify_id=q.subscription_id,
                    recurly_id=q.recurly_uuid,
                )
            )
            return
        adjustment = known.adjustments + 1
        tag = merchant_tag(self.quota.subscription_id, self.quota.quota_id, window.start, adjustment)
        corrected = " (a usage correction on the next invoice)" if known.billed else ""
        self._records(
            ChangeKind.RESTATE,
            window,
            tag,
            difference,
            known.base_tag,
            lambda amount, piece: (
                f"{span}: {known.total} → {count} unit(s) (late traffic), "
                f"adjustment {amount:+} as …:adj{adjustment}{piece}{corrected}"
            ),
            int(known.total),
        )

    def _held_back(self, span: str, known: LedgerView, count: int, difference: int) -> tuple[str, str] | None:
        """Why a restatement is not sent (the finding key's reason, the finding's text); None when it is sent."""
        if known.unreadable:
            text = f"{span}: re-counted {count} unit(s) against {known.total} posted, not restated: {known.unreadable}"
            return "unreadable", text
        if difference < 0 and not self.rules.allow_downward:
            return "downward", (
                f"{span}: re-counted {count} unit(s), {-difference} fewer than the {known.total} posted; not "
                "restated downward (set usage.allow_downward_restatement: true to send it)"
            )
        if known.billed and self.quota.tier_type in NO_CORRECTION_TIER_TYPES:
            return "billed-cycle", (
                f"{span}: {difference:+} unit(s) of late traffic not sent: the window is already invoiced and Recurly "
                f"refuses corrections into a billed cycle for {self.quota.tier_type} add-ons; bill them by hand"
            )
        return None

    def _finding(self, text: str, *, key_suffix: str, withholds: bool, units: int | None = None) -> None:
        self.changes.append(
            Change(
                ChangeKind.FINDING,
                "usage",
                self.ref,
                self.target,
                text,
                units=units,
                amplify_id=self.quota.subscription_id,
                phase=PHASE_REPORT,
                key=f"{self.quota.subscription_id}:{self.quota.quota_id}:{key_suffix}",
                withholds=withholds,
            )
        )


def plan_usage(
    quotas: Sequence[BilledQuota],
    answers: Answers,
    ledger: Mapping[str, LedgerView],
    *,
    now: datetime,
    rules: UsageRules | None = None,
) -> UsagePlan:
    changes: list[Change] = []
    watermarks: dict[tuple[str, str], datetime] = {}
    units = 0
    for quota in sorted(quotas, key=lambda q: (q.subscription_id, q.quota_id)):
        planner = _PairPlanner(quota, answers, ledger, rules or UsageRules())
        mark = planner.plan()
        changes.extend(planner.changes)
        units += planner.units
        if mark is not None:
            watermarks[planner.pair] = mark
    return UsagePlan(tuple(changes), watermarks, units)


def restatement_candidates(
    quotas: Sequence[BilledQuota], answers: Answers, ledger: Mapping[str, LedgerView]
) -> list[str]:
    """Base tags of windows whose proven count differs from the ledger: the plan's restatements, whose kind
    depends on whether Recurly has billed the record (read fresh before planning, never guessed)."""
    tags = []
    for quota in quotas:
        planner = _PairPlanner(quota, answers, ledger, UsageRules())
        for window in (*quota.recount, *quota.windows):
            count = planner.count(window)
            tag = merchant_tag(quota.subscription_id, quota.quota_id, window.start)
            known = ledger.get(tag)
            if count is not None and known is not None and Decimal(count) != known.total:
                tags.append(tag)
    return tags


# the units of a marketplace-mode subscription: Amplify meters them and its invoices bill them (sync-invoices)
BILLED_BY_INVOICES = (
    "its Marketplace is in marketplace mode: Amplify's invoices bill this traffic (sync-invoices), not Recurly usage"
)


def unbilled_findings(
    answers: Answers,
    billed_pairs: set[tuple[str, str]],
    known_subscriptions: Mapping[str, str],
    reasons: Mapping[tuple[str, str], str],
    size: timedelta,
    *,
    invoiced: Mapping[str, str] | None = None,
) -> list[Change]:
    """Traffic that cannot be billed, totalled per (subscription, quota): never silently dropped.

    ``known_subscriptions`` maps Amplify subscription id -> name for subscriptions on linked plans;
    ``reasons`` says why a known pair is not billed (no Recurly link, no add-on for the quota …);
    ``invoiced``: id -> name of the subscriptions Amplify's invoices bill (marketplace mode), whose units are
    still listed, with where they are billed.
    """
    invoiced = invoiced or {}
    # Ranges overlap: a window clipped at one subscription's start and the same window whole for another are
    # both counted. Per (pair, window) only the widest range counts (a clipped range is a subset of it).
    per_window: dict[tuple[tuple[str, str], datetime], int] = {}
    for (start, _end), answer in answers.items():
        window = window_floor(start, size)
        for pair, count in answer.counts.items():
            if pair not in billed_pairs and count:
                key = (pair, window)
                per_window[key] = max(per_window.get(key, 0), count)
    totals: dict[tuple[str, str], int] = {}
    for (pair, _window), count in per_window.items():
        totals[pair] = totals.get(pair, 0) + count
    changes = []
    for (subscription_id, quota_id), total in sorted(totals.items()):
        name = known_subscriptions.get(subscription_id)
        reason = reasons.get((subscription_id, quota_id)) or (
            "not billed"
            if name is not None
            else BILLED_BY_INVOICES
            if subscription_id in invoiced
            else "traffic for a subscription that is not on a plan billed through Recurly"
        )
        name = name or invoiced.get(subscription_id)
        ref = f"subscription {name or '?'} ({subscription_id}) quota {quota_id}"
        changes.append(
            Change(
                ChangeKind.FINDING,
                "usage",
                ref,
                "-",
                f"{total} unit(s) not reported: {reason}",
                units=total,
                phase=PHASE_REPORT,
                key=f"{subscription_id}:{quota_id}",
                amplify_id=subscription_id,
            )
        )
    return changes
