"""--max-duration (issue 14): work left at the deadline is the next run's (exit 0), and its age is measured: a usage
window by the end of the window, any other change and a step not started by the start of the run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from amplify_billing.actions import DeactivatePlan, PostUsage, UsageRecord
from amplify_billing.apply import DEADLINE_SKIP
from amplify_billing.backlog import NOT_STARTED, backlog_seconds, stopped_line
from amplify_billing.changes import Change, ChangeKind, ChangeResult, CommandReport, Outcome
from amplify_billing.cli import run_cli
from amplify_billing.errors import ExitCode
from amplify_billing.execute import exit_code_for

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
STARTED = NOW - timedelta(minutes=13)


def _usage(window_end: datetime) -> Change:
    record = UsageRecord("sub", "quota", window_end - timedelta(days=1), window_end, "tag", "base")
    action = PostUsage("uuid", "amplify-q", "tag", 5, window_end, record)
    return Change(ChangeKind.POST, "usage", "sub", "uuid", "5 units", action=action, key=f"u{window_end}")


def _plan() -> Change:
    return Change(ChangeKind.DEACTIVATE, "plan", "gold", "amplify-gold", "deactivate", action=DeactivatePlan("g"))


def _report(command: str, *results: ChangeResult, note: str | None = None) -> CommandReport:
    return CommandReport(command, False, results, note=note, started_at=STARTED)


def test_work_left_at_the_deadline_is_not_a_failure_but_a_failed_prerequisite_is() -> None:
    left = [ChangeResult(_plan(), Outcome.SKIPPED, DEADLINE_SKIP)]
    assert exit_code_for(left, dry_run=False, exit_code_flag=False) == ExitCode.OK
    blocked = [ChangeResult(_plan(), Outcome.SKIPPED, "skipped: k failed")]
    assert exit_code_for(blocked, dry_run=False, exit_code_flag=False) == ExitCode.PARTIAL_FAILURE


def test_the_oldest_work_left_is_a_usage_window_by_its_end_else_the_run_start() -> None:
    usage = _report(
        "report-usage",
        ChangeResult(_usage(NOW - timedelta(hours=30)), Outcome.SKIPPED, DEADLINE_SKIP),
        ChangeResult(_usage(NOW - timedelta(hours=6)), Outcome.SKIPPED, DEADLINE_SKIP),
        ChangeResult(_usage(NOW - timedelta(hours=50)), Outcome.APPLIED),  # posted: not left
    )
    assert backlog_seconds([usage], NOW) == 30 * 3600
    assert stopped_line([usage], NOW) == (
        "stopped at the deadline; the next run goes on (2 change(s) left; the oldest work left is 30 h 0 min old)"
    )
    plans = _report("sync-plans", ChangeResult(_plan(), Outcome.SKIPPED, DEADLINE_SKIP))
    assert backlog_seconds([plans], NOW) == 13 * 60
    not_started = _report("report-usage", note=f"{NOT_STARTED} (report-usage left for the next run)")
    assert backlog_seconds([_report("sync-plans"), not_started], NOW) == 13 * 60
    assert stopped_line([not_started], NOW) == (
        "stopped at the deadline; the next run goes on (0 change(s) left; not started: report-usage; "
        "the oldest work left is 13 min old)"
    )


def test_a_run_that_finished_its_work_has_no_backlog() -> None:
    done = _report("sync-plans", ChangeResult(_plan(), Outcome.APPLIED))
    assert backlog_seconds([done], NOW) == 0.0 and stopped_line([done], NOW) is None


def test_a_run_stopped_at_the_deadline_exits_0_says_so_and_the_next_run_goes_on(
    small_sandbox: tuple[Any, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = small_sandbox
    metrics = tmp_path / "amplify_billing.prom"

    def backlog() -> float:
        families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
        return float(families["amplify_billing_backlog_seconds"].samples[0].value)

    code = run_cli(["--config", str(config), "--metrics-file", str(metrics), "run", "--max-duration", "0.001s"])
    out = capsys.readouterr().out
    assert code == ExitCode.OK
    assert "stopped at the deadline; the next run goes on (" in out and "the oldest work left is" in out
    assert backlog() > 0
    assert run_cli(["--config", str(config), "--metrics-file", str(metrics), "run"]) == ExitCode.OK
    assert "stopped at the deadline" not in capsys.readouterr().out
    assert backlog() == 0
