"""report-usage diff: counted traffic per (subscription, quota, window) vs what Recurly holds. Pure.

For every window of every billed (subscription, quota):
- nothing in Recurly and a non-zero count: post one usage record tagged ``amplify:{S}:{Q}:{window}``;
- a record there with the same total: nothing;
- a different total (late traffic inside ``usage.lookback``): restate. Whether that is an in-place update
  (unbilled record) or a separate ``…:adj{n}`` record for the difference (billed) is decided when applied,
  from the record's billing status read at that moment.
Windows with a count of zero are not posted (``usage.skip_zero``) but do advance the watermark.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from amplify_billing.models import Change, ChangeKind
from amplify_billing.usage.windows import UsageWindow, merchant_tag, window_floor

PHASE_USAGE = 70
PHASE_REPORT = 95


@dataclass(frozen=True, slots=True)
class LedgerView:
    """What the journal says Recurly holds for one (subscription, quota, window)."""

    base_tag: str
    base_usage_id: str | None
    total: Decimal  # base + adjustments
    adjustments: int
    billed: bool


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


@dataclass(frozen=True)
class UsagePlan:
    changes: tuple[Change, ...]
    # (subscription, quota) -> the watermark to store once every change of that pair succeeded
    watermarks: Mapping[tuple[str, str], datetime] = field(default_factory=dict)
    units: int = 0  # units that the posts and restatements add


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_usage(
    quotas: Sequence[BilledQuota],
    counts: Mapping[tuple[datetime, datetime], Mapping[tuple[str, str], int]],
    ledger: Mapping[str, LedgerView],
    *,
    now: datetime,
    skip_zero: bool = True,
) -> UsagePlan:
    changes: list[Change] = []
    watermarks: dict[tuple[str, str], datetime] = {}
    units = 0
    for quota in sorted(quotas, key=lambda q: (q.subscription_id, q.quota_id)):
        pair = (quota.subscription_id, quota.quota_id)
        ref = f"subscription {quota.subscription_name} ({quota.subscription_id}) quota {quota.quota_id}"
        target = f"{quota.recurly_uuid}/{quota.add_on_code}"
        for window in (*quota.recount, *quota.windows):
            count = counts.get((window.clip_start, window.clip_end), {}).get(pair, 0)
            tag = merchant_tag(quota.subscription_id, quota.quota_id, window.start)
            known = ledger.get(tag)
            window_text = f"{_ts(window.clip_start)}…{_ts(window.clip_end)}"
            if known is None:
                if count == 0 and skip_zero:
                    continue
                units += count
                changes.append(
                    Change(
                        ChangeKind.POST,
                        "usage",
                        ref,
                        target,
                        f"{count} unit(s) for {window_text}",
                        action="usage.post",
                        payload={
                            "subscription_id": f"uuid-{quota.recurly_uuid}",
                            "add_on_id": f"code-{quota.add_on_code}",
                            "merchant_tag": tag,
                            "amount": count,
                            "usage_timestamp": _ts(window.clip_start),
                            "window_start": window.start,
                            "window_end": window.end,
                            "amplify_subscription_id": quota.subscription_id,
                            "quota_id": quota.quota_id,
                        },
                        phase=PHASE_USAGE,
                        key=tag,
                    )
                )
            elif Decimal(count) != known.total:
                units += count - int(known.total)
                changes.append(
                    Change(
                        ChangeKind.RESTATE,
                        "usage",
                        ref,
                        target,
                        f"{window_text}: {known.total} → {count} unit(s) (late traffic)",
                        action="usage.restate",
                        payload={
                            "subscription_id": f"uuid-{quota.recurly_uuid}",
                            "add_on_id": f"code-{quota.add_on_code}",
                            "merchant_tag": tag,
                            "usage_id": known.base_usage_id,
                            "old_total": known.total,
                            "new_total": count,
                            "adjustments": known.adjustments,
                            "usage_timestamp": _ts(window.clip_start),
                            "window_start": window.start,
                            "window_end": window.end,
                            "amplify_subscription_id": quota.subscription_id,
                            "quota_id": quota.quota_id,
                        },
                        phase=PHASE_USAGE,
                        key=tag,
                    )
                )
        if quota.windows:
            watermarks[pair] = quota.windows[-1].clip_end
    return UsagePlan(tuple(changes), watermarks, units)


def unbilled_findings(
    counts: Mapping[tuple[datetime, datetime], Mapping[tuple[str, str], int]],
    billed_pairs: set[tuple[str, str]],
    known_subscriptions: Mapping[str, str],
    reasons: Mapping[tuple[str, str], str],
    size: timedelta,
) -> list[Change]:
    """Traffic that cannot be billed, totalled per (subscription, quota): never silently dropped.

    ``known_subscriptions`` maps Amplify subscription id -> name for subscriptions on linked plans;
    ``reasons`` says why a known pair is not billed (no Recurly link, no add-on for the quota …).
    """
    # Ranges overlap: a window clipped at one subscription's start and the same window whole for another are
    # both counted. Per (pair, window) only the widest range counts (a clipped range is a subset of it).
    per_window: dict[tuple[tuple[str, str], datetime], int] = {}
    for (start, _end), per_pair in counts.items():
        window = window_floor(start, size)
        for pair, count in per_pair.items():
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
            "traffic for a subscription that is not on a plan billed through Recurly"
            if name is None
            else "not billed"
        )
        ref = f"subscription {name or '?'} ({subscription_id}) quota {quota_id}"
        changes.append(
            Change(
                ChangeKind.FINDING,
                "usage",
                ref,
                "-",
                f"{total} unit(s) not reported: {reason}",
                phase=PHASE_REPORT,
                key=f"{subscription_id}:{quota_id}",
            )
        )
    return changes
