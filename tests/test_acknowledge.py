"""Acknowledged findings, pure: stable finding keys, which acknowledgement matches, expiry, and the exit code
recomputed without the acknowledged findings (``execute.exit_code_for`` stays the one rule)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from amplify_billing.acknowledge import (
    AcknowledgedResult,
    Acknowledgement,
    acknowledge_report,
    acknowledged,
    finding_key,
    mark,
)
from amplify_billing.changes import Change, ChangeKind, ChangeResult, CommandReport, Outcome
from amplify_billing.execute import exit_code_for
from amplify_billing.reconcile.status_report import DriftItem
from amplify_billing.reconcile.status_scope import acknowledge_drift

PLAN = "36cf022f21cd72adcc1d7384cccf5179"
SUB = "7e3f8ff5854646cf242e9779d538b95d"
QUOTA = "8ff38076fd8aabc933276ece0e0db140"
TODAY = date(2026, 12, 5)


@dataclass(frozen=True)
class Rule:
    kind: str
    id: str
    reason: str
    expires: date | None = None


def unsupported() -> Change:
    ref = f"weather-api/weather-flatfee ({PLAN})"
    return Change(ChangeKind.UNSUPPORTED, "plan", ref, "-", "tier 2 has a flat fee", key=ref)


def withheld() -> Change:
    return Change(
        ChangeKind.FINDING,
        "usage",
        f"subscription s ({SUB}) quota {QUOTA}",
        "-",
        "window not proven complete",
        key=f"{SUB}:{QUOTA}:unproven",
        amplify_id=SUB,
        withholds=True,
    )


def report(*changes: Change, flag: bool = False, dry_run: bool = False) -> CommandReport:
    results = [ChangeResult(c, Outcome.REPORTED) for c in changes]
    return CommandReport(
        "x", dry_run, tuple(results), exit_code=exit_code_for(results, dry_run=dry_run, exit_code_flag=flag)
    )


def rule_of(flag: bool, dry_run: bool = False) -> Callable[[list[ChangeResult]], int]:
    return lambda results: exit_code_for(results, dry_run=dry_run, exit_code_flag=flag)


def test_finding_keys_are_kind_and_the_id_of_what_they_are_about() -> None:
    assert finding_key(unsupported()) == f"unsupported:{PLAN}"
    assert finding_key(withheld()) == f"finding:{SUB}:{QUOTA}:unproven"


def test_acknowledged_findings_count_neither_for_exit_1_nor_for_exit_code() -> None:
    both = report(unsupported(), withheld(), flag=True)
    assert both.exit_code == 1  # the withheld money action
    rules = [Rule("unsupported", PLAN, "billed by hand"), Rule("finding", SUB, "test tenant")]
    done = acknowledge_report(both, rules, TODAY, rule_of(True))
    assert done.exit_code == 0
    assert all(acknowledged(r) for r in done.results)
    assert [r.acknowledgement for r in done.results if isinstance(r, AcknowledgedResult)] == [
        Acknowledgement("billed by hand", None, expired=False),
        Acknowledgement("test tenant", None, expired=False),
    ]
    # one left: it still counts
    only_plan = acknowledge_report(both, rules[:1], TODAY, rule_of(True))
    assert only_plan.exit_code == 1
    flagged = acknowledge_report(report(unsupported(), flag=True), [], TODAY, rule_of(True))
    assert flagged.exit_code == 4


def test_an_acknowledgement_holds_through_its_last_day_and_then_counts_again() -> None:
    findings = report(unsupported(), flag=True)
    rule = Rule("unsupported", PLAN, "billed by hand", expires=TODAY)
    assert acknowledge_report(findings, [rule], TODAY, rule_of(True)).exit_code == 0
    later = acknowledge_report(findings, [rule], date(2026, 12, 6), rule_of(True))
    assert later.exit_code == 4
    [result] = later.results
    assert isinstance(result, AcknowledgedResult) and result.acknowledgement is not None
    assert result.acknowledgement.describe() == "acknowledgement expired on 2026-12-05: billed by hand"
    # a current one wins over an expired one for the same finding
    current = Rule("unsupported", PLAN, "extended", expires=date(2027, 1, 31))
    [marked] = mark(findings.results, [rule, current], date(2026, 12, 6))
    assert acknowledged(marked)


def test_the_kind_must_match_and_a_code_set_for_another_reason_stands() -> None:
    findings = report(unsupported(), flag=True)
    assert acknowledge_report(findings, [Rule("finding", PLAN, "x")], TODAY, rule_of(True)).exit_code == 4
    stopped = CommandReport("x", False, findings.results, exit_code=3, note="stopped: Recurly unreachable")
    assert acknowledge_report(stopped, [Rule("unsupported", PLAN, "x")], TODAY, rule_of(True)).exit_code == 3


def test_status_drift_is_acknowledged_by_the_same_keys_and_changes_never() -> None:
    orphan = DriftItem(
        "subscriptions", "orphan", "-", "subscription u1", "unclaimed", "by hand", recurly_id="u1", key="orphan:u1"
    )
    create = DriftItem(
        "plans", "create", "p", "plan c", "create plan", "sync-plans", amplify_id=PLAN, key=f"create:{PLAN}"
    )
    rules = [Rule("orphan", "u1", "a reseller's contract"), Rule("finding", PLAN, "no")]
    marked = acknowledge_drift([orphan, create], rules, TODAY)
    assert [d.counts for d in marked] == [False, True]


def test_a_finding_that_asks_for_an_end_names_the_command_in_status() -> None:
    from amplify_billing.reconcile.status import _change_drift
    from amplify_billing.reconcile.subscriptions import END_HINT

    change = Change(
        ChangeKind.FINDING,
        "subscription",
        f"subscription s ({SUB})",
        "subscription u1",
        f"its product no longer opts in; to end it after its final usage: {END_HINT} {SUB}",
        key=SUB,
    )
    item = _change_drift("subscriptions", change)
    assert (item.next, item.key, item.amplify_id) == (f"sync-subscriptions --end {SUB}", f"finding:{SUB}", SUB)
