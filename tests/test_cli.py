"""The command line as an operator meets it: exit codes, key lines, JSON, help text, and every refusal.

These run ``run_cli`` in-process against the sandbox emulators on the real clock, with a config file on disk,
exactly as cron would (but without a subprocess, to keep them fast).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer

from amplify_billing.cli import app, run_cli
from amplify_billing.errors import ExitCode
from amplify_billing.journal import RunLock
from amplify_billing.render.envelope import ReportEnvelope


@dataclass
class Setup:
    sandbox: Any
    config: Path
    tmp: Path

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        code = run_cli(["--config", str(self.config), *args])
        out, err = capsys.readouterr()
        return code, out, err


@pytest.fixture
def setup(small_sandbox: tuple[Any, Path], tmp_path: Path) -> Setup:
    sandbox, config = small_sandbox
    return Setup(sandbox, config, tmp_path)


def _writes(sandbox: Any) -> int:
    return sum(1 for r in sandbox.recurly.requests if r.method in ("POST", "PUT", "DELETE"))


def test_every_command_and_option_has_help_text() -> None:
    root = typer.main.get_command(app)
    missing: list[str] = []

    def walk(command: Any, path: str) -> None:
        if not (command.help or "").strip():
            missing.append(path)
        for param in command.params:
            is_option = getattr(param, "param_type_name", "") == "option"
            if is_option and param.name != "help" and not (getattr(param, "help", "") or "").strip():
                missing.append(f"{path} {param.opts[0]}")
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, f"{path} {name}")

    walk(root, "amplify-billing")
    assert missing == []
    names = set(getattr(root, "commands", {}))
    expected = {"sync-plans", "link-accounts", "sync-subscriptions", "report-usage", "run", "status", "demo", "config"}
    assert expected <= names


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--help"]) == 0
    assert "sync-plans" in capsys.readouterr().out
    assert run_cli(["--version"]) == 0
    assert capsys.readouterr().out.startswith("amplify-billing ")


def test_missing_config_file_exits_2_and_says_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AMPLIFY_BILLING_CONFIG", raising=False)
    assert run_cli(["sync-plans"]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "config.yaml" in err and "Traceback" not in err


def test_unknown_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["sync-plans", "--bogus"]) == ExitCode.CONFIG
    assert "--bogus" in capsys.readouterr().err


def test_sync_plans_dry_run_exit_code_then_apply_then_json(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = setup.cli(capsys, "sync-plans", "--dry-run", "--exit-code")
    assert code == ExitCode.REFUSED
    assert "(dry run) sync-plans:" in out and "planned" in out
    assert _writes(setup.sandbox) == 0

    code, out, _ = setup.cli(capsys, "sync-plans")
    assert code == ExitCode.OK
    assert "sync-plans:" in out and "applied" in out

    code, out, _ = setup.cli(capsys, "--output", "json", "sync-plans")
    document = json.loads(out)
    assert code == ExitCode.OK and document["command"] == "sync-plans" and document["exit_code"] == 0
    assert document["counts"]["applied"] == 0
    assert document["changes"] == []
    kinds = {c["kind"] for c in document["findings"]}
    assert kinds == {"unsupported"}, "only the finding about the flat-fee plan is left"


def test_run_json_then_again_writes_nothing(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = setup.cli(capsys, "--output", "json", "run")
    assert code == ExitCode.OK, err
    document = json.loads(out)
    assert document["command"] == "run" and document["schema_version"] == 1
    assert [r["command"] for r in document["steps"]] == [
        "sync-plans",
        "link-accounts",
        "sync-subscriptions",
        "report-usage",  # sync-invoices only where a Marketplace is invoiced (billing.mode)
    ]
    before = _writes(setup.sandbox)
    code, out, _ = setup.cli(capsys, "run")
    assert code == ExitCode.OK
    assert _writes(setup.sandbox) == before
    assert out.splitlines()[-1].startswith("Applied: 0 created, 0 updated, 0 ended, 0 usage records posted; ")
    assert out.splitlines()[-1].endswith("; exit 0")


def test_metrics_file_is_written(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    metrics = setup.tmp / "amplify_billing.prom"
    code, _, _ = setup.cli(capsys, "--metrics-file", str(metrics), "run")
    assert code == ExitCode.OK
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    assert families["amplify_billing_run_exit_code"].samples[0].value == 0
    assert families["amplify_billing_last_success_timestamp_seconds"].samples[0].value > 0
    requests = {
        (s.labels["system"], s.labels["method"]): s.value for s in families["amplify_billing_api_requests"].samples
    }
    assert requests[("recurly", "POST")] > 0 and requests[("amplify", "GET")] > 0


def test_second_run_while_one_holds_the_lock_exits_75(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    state = setup.tmp / "amplify-billing.db"
    with RunLock.acquire(state, "run", clock=lambda: datetime.now(UTC)):
        code, _, err = setup.cli(capsys, "run")
    assert code == ExitCode.LOCKED
    assert "pid" in err and "`run`" in err
    assert _writes(setup.sandbox) == 0


def test_recurly_unreachable_exits_3_and_writes_nothing(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    setup.sandbox.write_config(setup.config, recurly={"max_retries": 1})  # one retry keeps the test quick
    setup.sandbox.recurly.inject("503")  # every request, every retry
    code, _, err = setup.cli(capsys, "sync-plans")
    setup.sandbox.recurly.clear_faults()
    assert code == ExitCode.UPSTREAM
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: Recurly did not complete GET") and "recurly.api_url" in last
    assert "Traceback" not in err
    assert _writes(setup.sandbox) == 0
    assert [r for r in setup.sandbox.amplify.requests if r.method == "PUT"] == []


def test_wrong_recurly_key_exits_3_naming_the_key(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    text = setup.config.read_text().replace("sandbox-recurly-key", "wrong-key")
    setup.config.write_text(text)
    code, _, err = setup.cli(capsys, "sync-plans")
    assert code == ExitCode.UPSTREAM
    assert "recurly.api_key" in err and "wrong-key" not in err


def test_safety_valve_refuses_mass_deactivation_unless_forced(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    assert setup.cli(capsys, "sync-plans")[0] == ExitCode.OK
    linked = [
        r for r in setup.sandbox.amplify.resources("ProductPlan") if (r.get("attributes") or {}).get("recurlyPlanCode")
    ]
    assert len(linked) >= 5
    # a lost permission looks like this: the plans are gone from the listing
    for plan in linked:
        setup.sandbox.amplify.delete_resource("ProductPlan", plan["name"])
    code, _, err = setup.cli(capsys, "sync-plans")
    assert code == ExitCode.REFUSED
    assert "--force" in err and "nothing was written" in err
    assert [r for r in setup.sandbox.recurly.requests if r.method == "DELETE"] == []
    code, _, _ = setup.cli(capsys, "sync-plans", "--force")
    assert code == ExitCode.OK
    assert len([r for r in setup.sandbox.recurly.requests if r.method == "DELETE"]) == len(linked)


def test_sync_subscriptions_end_refuses_an_id_it_may_not_end_with_exit_2(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    assert setup.cli(capsys, "sync-plans")[0] == ExitCode.OK
    listed = next(
        s["metadata"]["id"]
        for s in setup.sandbox.amplify.resources("Subscription")
        if (s.get("approval") or {}).get("state") == "approved"
    )
    before = _writes(setup.sandbox)
    code, _, err = setup.cli(capsys, "sync-subscriptions", "--end", listed, "--end", "no-such-subscription")
    assert code == ExitCode.CONFIG
    assert f"--end {listed} no-such-subscription: not a subscription this tool keeps billing" in err
    assert "End a listed subscription in Amplify instead" in err
    assert _writes(setup.sandbox) == before, "refused before anything was written"
    code, _, _ = setup.cli(capsys, "sync-subscriptions", "--dry-run", "--end", listed)
    assert code == ExitCode.CONFIG


def test_report_usage_bad_range_and_bad_usage_file_exit_2(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = setup.cli(capsys, "report-usage", "--from", "2026-11-02", "--to", "2026-11-01")
    assert code == ExitCode.CONFIG and "--from" in err
    code, _, err = setup.cli(capsys, "report-usage", "--from", "yesterday")
    assert code == ExitCode.CONFIG and "ISO 8601" in err

    usage = setup.tmp / "usage.csv"
    usage.write_text("subscription_id,quota_id,window_start,count\nabc,def,2026-11-01T00:00:00Z,ten\n")
    text = setup.config.read_text() + f"usage:\n  source: file\n  file_path: {usage}\n"
    setup.config.write_text(text)
    assert setup.cli(capsys, "run")[0] in (ExitCode.OK, ExitCode.CONFIG)
    code, _, err = setup.cli(capsys, "report-usage")
    assert code == ExitCode.CONFIG
    assert "usage.csv:2" in err and "count" in err
    assert [r for r in setup.sandbox.recurly.requests if r.path.endswith("/usage") and r.method == "POST"] == []


def test_max_duration_stops_between_changes_and_says_what_is_left(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = setup.cli(capsys, "run", "--max-duration", "0.001s")
    assert code == ExitCode.OK, "work left at the deadline is the next run's (issue 14)"
    assert "--max-duration" in out and "stopped at the deadline; the next run goes on" in out
    code, _, _ = setup.cli(capsys, "run")
    assert code == ExitCode.OK, "the next run finishes what was left"


def test_bad_max_duration_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["run", "--max-duration", "soon"]) == ExitCode.CONFIG
    assert "--max-duration" in capsys.readouterr().err


def test_ctrl_c_exits_130(setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import amplify_billing.commands.sync_plans as module

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "sync_plans", interrupted)
    code, _, err = setup.cli(capsys, "sync-plans")
    assert code == ExitCode.INTERRUPTED
    assert "Interrupted" in err


def test_unexpected_bug_is_one_line_without_traceback_unless_verbose(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import amplify_billing.commands.sync_plans as module

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(module, "sync_plans", broken)
    code, _, err = setup.cli(capsys, "sync-plans")
    # 70, not 1 (some changes failed): a bug, with a crash report beside the journal (tests/test_crash.py)
    assert code == ExitCode.INTERNAL
    assert "internal error (ZeroDivisionError: boom); crash report: " in err and "Traceback" not in err
    code, _, err = setup.cli(capsys, "--verbose", "sync-plans")
    assert "Traceback" in err


def test_demo_exits_0_and_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["demo", "--subscriptions", "6"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "What just happened" in out and "every call is" in out
    # the way on: check the configuration, ask doctor, then a dry run; and the other billing mode
    flat = " ".join(out.split())
    assert "`amplify-billing doctor`" in flat and "run --dry-run" in flat and "demo --mode marketplace" in flat
    assert run_cli(["--output", "json", "demo", "--subscriptions", "6"]) == ExitCode.OK
    out = capsys.readouterr().out
    # the report envelope of every command: one step per run (its note names the day), each with its four steps
    envelope = ReportEnvelope.model_validate_json(out)
    document = json.loads(out)
    assert document["exit_code"] == 0 and document["figures"]["usage_records"] > 0
    assert [run.note for run in envelope.steps] == ["day 0", "day 3", "day 7", "day 7 again"]
    last = document["steps"][-1]["steps"]
    assert len(last) == 4 and all(r["counts"]["applied"] == 0 for r in last), "the last run writes nothing"
    assert envelope.status is not None and "summary" in envelope.status


@pytest.mark.parametrize("mode", ["marketplace", "both"])
def test_demo_of_amplify_invoices_bills_a_month_through_recurly(mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--output", "json", "demo", "--mode", mode, "--subscriptions", "8"]) == ExitCode.OK
    document = json.loads(capsys.readouterr().out)
    figures = document["figures"]
    assert document["exit_code"] == 0
    # approval -> initial invoice -> paid -> period invoice with consumption -> paid
    assert [run["note"] for run in document["steps"]] == [
        "day 0",
        "day 0, later",
        "day 3",
        "month end",
        "month end again",
        "month end, once more",
    ]
    assert figures["amplify_period_invoices"] > 0 and figures["metered_units"] > 0
    assert figures["amplify_invoices_paid"] == figures["amplify_invoices"] > figures["amplify_period_invoices"]
    assert 0 < figures["recurly_invoices"] <= figures["amplify_invoices"]
    last = document["steps"][-1]["steps"]
    assert all(r["counts"]["applied"] == 0 for r in last), "the last run writes nothing"
    if mode == "both":  # the recurly-mode Marketplace beside it: Recurly subscriptions and usage
        assert figures["recurly_subscriptions"] > 0 and figures["usage_records"] > 0
    else:
        assert figures["recurly_subscriptions"] == 0 and figures["usage_records"] == 0
    assert run_cli(["demo", "--mode", mode, "--subscriptions", "8"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "What just happened" in out
    assert " ?" not in out.split("What just happened")[1], "a total in no currency"


def test_dry_run_takes_no_lock_and_writes_no_run_history(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    state = setup.tmp / "amplify-billing.db"
    with RunLock.acquire(state, "run", clock=lambda: datetime.now(UTC)):
        code, _, _ = setup.cli(capsys, "run", "--dry-run")
    assert code == ExitCode.OK
    assert _writes(setup.sandbox) == 0
    assert not (setup.tmp / "amplify-billing.db").exists() or _no_runs(setup.tmp / "amplify-billing.db")


def _no_runs(path: Path) -> bool:
    from amplify_billing.journal import Journal

    journal = Journal.open(path, clock=lambda: datetime.now(UTC))
    try:
        return journal.recent_runs(10) == []
    finally:
        journal.close()


def test_each_command_in_turn_with_json_reports(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    expected = {
        "sync-plans": {"create"},
        "link-accounts": {"create", "link"},
        "sync-subscriptions": {"create", "approve", "link"},
        "report-usage": set(),
    }
    for command, kinds in expected.items():
        code, out, err = setup.cli(capsys, "--output", "json", command)
        document = json.loads(out)
        assert code == ExitCode.OK, (command, err)
        assert document["command"] == command and document["dry_run"] is False
        applied_kinds = {c["kind"] for c in document["changes"] if c["outcome"] == "applied"}
        assert kinds <= applied_kinds, (command, applied_kinds)
        assert all(c["error"] is None for c in document["changes"])
    code, out, _ = setup.cli(capsys, "report-usage")
    assert code == ExitCode.OK and out.splitlines()[1].startswith("report-usage:")
    code, out, _ = setup.cli(capsys, "--output", "json", "status")
    assert code == ExitCode.OK and json.loads(out)["command"] == "status"
