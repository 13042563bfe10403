"""The pure report-usage plan (reconcile/usage.py): what is posted, restated or reported from which counts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from amplify_billing.actions import PostUsage, UpdateUsage
from amplify_billing.changes import ChangeKind
from amplify_billing.reconcile.usage import (
    AgedOut,
    BilledQuota,
    LedgerView,
    UsageRules,
    plan_usage,
    restatement_candidates,
)
from amplify_billing.usage.windows import UsageWindow, merchant_tag

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)
S, Q = "sub1", "quota1"


@dataclass(frozen=True)
class Answer:
    counts: Mapping[tuple[str, str], int] = field(default_factory=dict)
    whole: bool = True
    why: str = ""

    def count(self, pair: tuple[str, str]) -> int | None:
        return self.counts.get(pair, 0) if self.whole else None


def window(day: int, clip_start: datetime | None = None) -> UsageWindow:
    start = T0 + day * DAY
    return UsageWindow(start, start + DAY, clip_start or start, start + DAY)


def quota(*windows: UsageWindow, recount: tuple[UsageWindow, ...] = (), **kwargs: object) -> BilledQuota:
    return BilledQuota(S, "name", Q, "uuid1", "amplify-quota1", tuple(windows), recount, **kwargs)  # type: ignore[arg-type]


def answers(*pairs: tuple[UsageWindow, Answer]) -> dict[tuple[datetime, datetime], Answer]:
    return {(w.clip_start, w.clip_end): a for w, a in pairs}


def view(w: UsageWindow, total: int, *, billed: bool = False, adjustments: int = 0, parts: int = 0) -> LedgerView:
    return LedgerView(
        merchant_tag(S, Q, w.start),
        None if parts else "u1",
        Decimal(total),
        adjustments,
        billed,
        parts=parts,
        probe_usage_id="u1",
    )


def test_a_proven_count_is_posted_dated_at_the_billing_start_when_the_window_began_before_it() -> None:
    w = window(0)
    started = T0 + timedelta(hours=5)
    plan = plan_usage([quota(w, billing_start=started)], answers((w, Answer({(S, Q): 40}))), {}, now=T0 + 3 * DAY)
    (post,) = plan.changes
    assert post.kind is ChangeKind.POST and post.action.amount == 40
    assert post.action.usage_timestamp == datetime(2026, 11, 1, 5, tzinfo=UTC)
    assert post.action.merchant_tag == merchant_tag(S, Q, T0)
    assert plan.watermarks == {(S, Q): w.clip_end}


def test_an_unknown_count_is_never_zero_and_the_watermark_stops_before_it() -> None:
    w0, w1, w2 = window(0), window(1), window(2)
    counts = answers(
        (w0, Answer({(S, Q): 5})), (w1, Answer(whole=False, why="cut at 100 terms")), (w2, Answer({(S, Q): 7}))
    )
    plan = plan_usage([quota(w0, w1, w2)], counts, {}, now=T0 + 5 * DAY)
    posts = [c.action.amount for c in plan.changes if c.kind is ChangeKind.POST]
    assert posts == [5, 7], "proven windows are posted, the unknown one is not"
    (finding,) = [c for c in plan.changes if c.kind is ChangeKind.FINDING]
    assert finding.withholds and "1 window(s)" in finding.summary and "cut at 100 terms" in finding.summary
    assert plan.watermarks == {(S, Q): w0.clip_end}


def test_an_unproven_re_count_leaves_what_was_posted_and_says_so() -> None:
    w = window(0)
    plan = plan_usage(
        [quota(recount=(w,))], answers((w, Answer(whole=False))), {merchant_tag(S, Q, T0): view(w, 9)}, now=T0 + 2 * DAY
    )
    (finding,) = plan.changes
    assert finding.kind is ChangeKind.FINDING and not finding.withholds and "what was posted stands" in finding.summary


def test_a_lower_re_count_is_a_withholding_finding_unless_allowed() -> None:
    w = window(0)
    ledger = {merchant_tag(S, Q, T0): view(w, 100)}
    counts = answers((w, Answer({(S, Q): 90})))
    (finding,) = plan_usage([quota(recount=(w,))], counts, ledger, now=T0 + 2 * DAY).changes
    assert finding.kind is ChangeKind.FINDING and finding.withholds and finding.units == -10
    allowed = plan_usage([quota(recount=(w,))], counts, ledger, now=T0 + 2 * DAY, rules=UsageRules(allow_downward=True))
    (update,) = allowed.changes
    assert update.kind is ChangeKind.RESTATE and isinstance(update.action, UpdateUsage)
    assert update.action.usage_id == "u1" and update.action.amount == 90


def test_late_traffic_into_a_billed_window_is_an_adjustment_or_for_volume_a_finding() -> None:
    w = window(0)
    ledger = {merchant_tag(S, Q, T0): view(w, 100, billed=True, adjustments=1)}
    counts = answers((w, Answer({(S, Q): 130})))
    (adjustment,) = plan_usage([quota(recount=(w,), tier_type="tiered")], counts, ledger, now=T0 + 2 * DAY).changes
    assert isinstance(adjustment.action, PostUsage) and adjustment.action.amount == 30
    assert adjustment.action.merchant_tag == merchant_tag(S, Q, T0, 2)
    for tier_type in ("volume", "stairstep"):
        (finding,) = plan_usage([quota(recount=(w,), tier_type=tier_type)], counts, ledger, now=T0 + 2 * DAY).changes
        assert finding.kind is ChangeKind.FINDING and finding.withholds and finding.units == 30


def test_an_unbilled_window_in_parts_is_corrected_by_an_adjustment_not_in_place() -> None:
    w = window(0)
    ledger = {merchant_tag(S, Q, T0): view(w, 2_000_000_000, parts=3)}
    (change,) = plan_usage(
        [quota(recount=(w,))], answers((w, Answer({(S, Q): 2_000_000_004}))), ledger, now=T0 + 2 * DAY
    ).changes
    assert isinstance(change.action, PostUsage) and change.action.merchant_tag.endswith(":adj1")


def test_a_count_over_nine_digits_is_posted_in_parts() -> None:
    w = window(0)
    plan = plan_usage([quota(w)], answers((w, Answer({(S, Q): 2_500_000_000}))), {}, now=T0 + 2 * DAY)
    tags = [c.action.merchant_tag for c in plan.changes]
    base = merchant_tag(S, Q, T0)
    assert tags == [f"{base}:p1", f"{base}:p2", f"{base}:p3"]
    assert [c.action.amount for c in plan.changes] == [999_999_999, 999_999_999, 500_000_002]
    assert {c.action.record.base_tag for c in plan.changes} == {base}


def test_aged_out_windows_are_reported_once_and_passed() -> None:
    w = window(9)
    aged = AgedOut(T0, T0 + 2 * DAY, 2, "the usage source keeps 7 days")
    plan = plan_usage([quota(w, aged_out=aged)], answers((w, Answer({(S, Q): 3}))), {}, now=T0 + 11 * DAY)
    (finding,) = [c for c in plan.changes if c.kind is ChangeKind.FINDING]
    assert finding.withholds and "2 window(s)" in finding.summary and "keeps 7 days" in finding.summary
    assert plan.watermarks == {(S, Q): w.clip_end}
    nothing_countable = plan_usage([quota(aged_out=aged)], {}, {}, now=T0 + 11 * DAY)
    assert nothing_countable.watermarks == {(S, Q): aged.end}


def test_restatement_candidates_are_the_windows_whose_proven_count_differs() -> None:
    w0, w1 = window(0), window(1)
    ledger = {merchant_tag(S, Q, T0): view(w0, 5), merchant_tag(S, Q, T0 + DAY): view(w1, 6)}
    counts = answers((w0, Answer({(S, Q): 5})), (w1, Answer({(S, Q): 8})))
    assert restatement_candidates([quota(recount=(w0, w1))], counts, ledger) == [merchant_tag(S, Q, T0 + DAY)]


def test_a_restatement_held_back_is_one_withholding_finding_keyed_by_its_reason() -> None:
    w = window(0)
    tag = merchant_tag(S, Q, T0)
    cases = [
        (
            replace(view(w, 100), unreadable="Recurly answered 500"),
            130,
            "unreadable",
            "re-counted 130 unit(s) against 100 posted, not restated: Recurly answered 500",
        ),
        (view(w, 100), 90, "downward", "re-counted 90 unit(s), 10 fewer than the 100 posted; not restated downward"),
        (view(w, 100, billed=True), 130, "billed-cycle", "+30 unit(s) of late traffic not sent"),
    ]
    for known, count, reason, text in cases:
        plan = plan_usage(
            [quota(recount=(w,), tier_type="volume")],
            answers((w, Answer({(S, Q): count}))),
            {tag: known},
            now=T0 + 2 * DAY,
        )
        (finding,) = plan.changes
        assert (finding.kind, finding.withholds, finding.units) == (ChangeKind.FINDING, True, count - 100)
        assert finding.key == f"{S}:{Q}:{reason}:2026-11-01T00:00:00Z"
        assert text in finding.summary
