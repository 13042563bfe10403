"""Each output the tool keeps or prints passes the one redaction point (issue 14): the journal's audit table and
run counts, the metrics file's labels, and the operator's lines on stderr, which under ``--log-format json`` are
JSON log records like every other diagnostic. (The end-to-end matrix is tests/e2e/test_secret_matrix.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from amplify_billing.changes import CommandReport
from amplify_billing.cli import run_cli
from amplify_billing.errors import ExitCode
from amplify_billing.journal import Journal
from amplify_billing.metrics import write_metrics
from amplify_billing.redact import HIDDEN, forget_secrets, register_secret
from amplify_billing.render.diagnostics import configure_logging, console_line

SECRET = "s3cr3t-value-of-a-key"
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    register_secret(SECRET)
    yield
    forget_secrets()
    configure_logging(fmt="text", verbose=False)


def test_the_audit_table_and_run_counts_keep_no_secret(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.db", clock=lambda: NOW)
    try:
        run_id = journal.start_run("sync-plans", False)
        journal.audit(
            run_id,
            "recurly",
            "CreatePlan",
            f"plan-{SECRET}",
            detail={"outcome": "failed", "error": f"Recurly rejected key {SECRET}", "nested": [{"e": SECRET}]},
        )
        journal.finish_run(run_id, 1, {"note": f"stopped: {SECRET}", "plans": 3})
        (entry,) = journal.audit_entries(run_id)
        (run,) = journal.recent_runs(1)
    finally:
        journal.close()
    assert entry.key == f"plan-{HIDDEN}"
    assert entry.detail == {"outcome": "failed", "error": f"Recurly rejected key {HIDDEN}", "nested": [{"e": HIDDEN}]}
    assert run.counts == {"note": f"stopped: {HIDDEN}", "plans": 3}
    assert SECRET.encode() not in (tmp_path / "journal.db").read_bytes()


def test_metric_labels_are_redacted(tmp_path: Path) -> None:
    path = tmp_path / "amplify_billing.prom"
    write_metrics(
        path,
        [CommandReport(f"sync-plans {SECRET}", False, ())],
        duration_seconds=1.0,
        exit_code=0,
        api_calls={},
        retries={},
        now=NOW,
        last_success=None,
    )
    text = path.read_text()
    assert SECRET not in text and f'command="sync-plans {HIDDEN}"' in text


def test_an_operator_line_is_text_or_one_json_record(capsys: pytest.CaptureFixture[str]) -> None:
    console_line(f"Error: refused {SECRET}", as_json=False)
    assert capsys.readouterr().err == f"Error: refused {HIDDEN}\n"
    console_line(f"Error: refused {SECRET}", traceback=f"Traceback …\nValueError: {SECRET}\n", as_json=True)
    (line,) = capsys.readouterr().err.splitlines()
    document = json.loads(line)
    assert (document["level"], document["event"]) == ("ERROR", f"Error: refused {HIDDEN}")
    assert document["exception"] == f"Traceback …\nValueError: {HIDDEN}"


def test_under_json_logs_a_usage_error_and_a_config_error_are_json_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["--log-format", "json", "sync-plans", "--no-such-option"]) == ExitCode.CONFIG
    (line,) = capsys.readouterr().err.splitlines()
    assert "No such option" in json.loads(line)["event"]

    missing = tmp_path / "missing.yaml"
    assert run_cli(["--log-format", "json", "--config", str(missing), "--verbose", "sync-plans"]) == ExitCode.CONFIG
    lines = capsys.readouterr().err.splitlines()
    documents = [json.loads(line) for line in lines]
    assert documents[-1]["event"].startswith("Error: ") and "exception" in documents[-1]
