"""The --metrics-file: parsed back exactly as Prometheus' own parser reads it, and written atomically."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from amplify_billing import interrupt
from amplify_billing.actions import DeactivatePlan
from amplify_billing.changes import Change, ChangeKind, ChangeResult, CommandReport, Outcome
from amplify_billing.errors import ConfigError
from amplify_billing.metrics import write_metrics

NOW = datetime(2026, 11, 1, 12, 0, 30, tzinfo=UTC)
LAST_SUCCESS = NOW - timedelta(minutes=15)


def result(kind: ChangeKind, outcome: Outcome, key: str = "k") -> ChangeResult:
    return ChangeResult(
        Change(kind, "plan", f"amplify {key}", f"recurly {key}", "summary", action=DeactivatePlan(key), key=key),
        outcome,
    )


def sample_reports(*, dry_run: bool = False) -> list[CommandReport]:
    plans = CommandReport(
        "sync-plans",
        dry_run,
        (
            result(ChangeKind.CREATE, Outcome.APPLIED, "a"),
            result(ChangeKind.CREATE, Outcome.APPLIED, "b"),
            result(ChangeKind.UPDATE, Outcome.FAILED, "c"),
            result(ChangeKind.FINDING, Outcome.REPORTED, "d"),
        ),
        figures={"plans_seen": 4},
        exit_code=1,
    )
    usage = CommandReport(
        "report-usage",
        dry_run,
        (
            result(ChangeKind.POST, Outcome.APPLIED, "p1"),
            result(ChangeKind.POST, Outcome.APPLIED, "p2"),
            result(ChangeKind.POST, Outcome.APPLIED, "p3"),
            result(ChangeKind.RESTATE, Outcome.APPLIED, "r1"),
            result(ChangeKind.FINDING, Outcome.REPORTED, "f1"),
            result(ChangeKind.FINDING, Outcome.REPORTED, "f2"),
        ),
        figures={
            "units_reported": 12345,
            "records_reported": 3,
            "restated": 1,
            "unbilled_units": 40,
            "count_queries": 2,
        },
    )
    return [plans, usage]


def write(path: Path, reports: list[CommandReport], *, last_success: datetime | None = LAST_SUCCESS) -> None:
    write_metrics(
        path,
        reports,
        duration_seconds=12.5,
        exit_code=max(r.exit_code for r in reports),
        api_calls={"amplify": {"GET": 10, "PUT": 2}, "recurly": {"GET": 5, "POST": 4}},
        retries={"amplify": 1, "recurly": 0},
        now=NOW,
        last_success=last_success,
    )


def parse(path: Path) -> tuple[dict[tuple[str, frozenset[tuple[str, str]]], float], dict[str, tuple[str, str]]]:
    """Samples keyed by (name, labels), and each family's (type, help)."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    families: dict[str, tuple[str, str]] = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        families[family.name] = (family.type, family.documentation)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, families


def labels(**items: str) -> frozenset[tuple[str, str]]:
    return frozenset(items.items())


def test_every_metric_is_written_with_its_value(tmp_path: Path) -> None:
    path = tmp_path / "amplify_billing.prom"
    write(path, sample_reports())
    samples, families = parse(path)

    assert samples == {
        ("amplify_billing_changes", labels(command="sync-plans", kind="create", outcome="applied")): 2,
        ("amplify_billing_changes", labels(command="sync-plans", kind="update", outcome="failed")): 1,
        ("amplify_billing_changes", labels(command="sync-plans", kind="finding", outcome="reported")): 1,
        ("amplify_billing_changes", labels(command="report-usage", kind="post", outcome="applied")): 3,
        ("amplify_billing_changes", labels(command="report-usage", kind="restate", outcome="applied")): 1,
        ("amplify_billing_changes", labels(command="report-usage", kind="finding", outcome="reported")): 2,
        ("amplify_billing_usage_units_reported", labels()): 12345,
        ("amplify_billing_usage_records_reported", labels()): 3,
        ("amplify_billing_usage_restatements", labels()): 1,
        ("amplify_billing_usage_unbilled_units", labels()): 40,
        ("amplify_billing_findings", labels(command="sync-plans")): 1,
        ("amplify_billing_findings", labels(command="report-usage")): 2,
        ("amplify_billing_command_exit_code", labels(command="sync-plans")): 1,
        ("amplify_billing_command_exit_code", labels(command="report-usage")): 0,
        ("amplify_billing_api_requests", labels(system="amplify", method="GET")): 10,
        ("amplify_billing_api_requests", labels(system="amplify", method="PUT")): 2,
        ("amplify_billing_api_requests", labels(system="recurly", method="GET")): 5,
        ("amplify_billing_api_requests", labels(system="recurly", method="POST")): 4,
        ("amplify_billing_api_retries", labels(system="amplify")): 1,
        ("amplify_billing_api_retries", labels(system="recurly")): 0,
        ("amplify_billing_backlog_seconds", labels()): 0.0,
        ("amplify_billing_run_duration_seconds", labels()): 12.5,
        ("amplify_billing_run_exit_code", labels()): 1,
        ("amplify_billing_run_timestamp_seconds", labels()): NOW.timestamp(),
        ("amplify_billing_last_success_timestamp_seconds", labels()): LAST_SUCCESS.timestamp(),
        ("amplify_billing_dry_run", labels()): 0,
    }
    # one run per file: every family a gauge, each with help text
    assert {kind for kind, _ in families.values()} == {"gauge"}
    assert all(help_text for _, help_text in families.values())


def test_last_success_is_omitted_when_unknown_and_dry_run_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "amplify_billing.prom"
    write(path, sample_reports(dry_run=True), last_success=None)
    samples, families = parse(path)

    assert "amplify_billing_last_success_timestamp_seconds" not in families
    assert samples[("amplify_billing_dry_run", labels())] == 1


def test_usage_metrics_are_absent_when_no_usage_step_ran(tmp_path: Path) -> None:
    path = tmp_path / "amplify_billing.prom"
    write(path, sample_reports()[:1])
    _, families = parse(path)

    assert not [name for name in families if name.startswith("amplify_billing_usage_")]
    assert "amplify_billing_changes" in families


def test_label_values_are_escaped(tmp_path: Path) -> None:
    odd = 'we"ird\\command\nname'
    path = tmp_path / "amplify_billing.prom"
    write(path, [CommandReport(odd, False, (result(ChangeKind.LINK, Outcome.APPLIED),))])

    text = path.read_text(encoding="utf-8")
    assert 'command="we\\"ird\\\\command\\nname"' in text
    samples, _ = parse(path)
    assert samples[("amplify_billing_changes", labels(command=odd, kind="link", outcome="applied"))] == 1


def test_an_existing_file_is_replaced_whole_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    path = tmp_path / "amplify_billing.prom"
    path.write_text("# stale content from a previous run that was much longer than the new one\n" * 200)

    write(path, sample_reports())

    assert os.listdir(tmp_path) == ["amplify_billing.prom"]
    text = path.read_text(encoding="utf-8")
    assert "stale content" not in text
    assert text.startswith("# HELP amplify_billing_changes ")
    # prometheus_client writes every gauge value as a float ("0.0"), which node_exporter reads as 0
    assert text.endswith("amplify_billing_dry_run 0.0\n")
    # readable by node_exporter, which runs as another user
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "amplify_billing.prom"
    path.write_text("previous run\n")

    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    # prometheus_client's write_to_textfile renames its temporary file over the old one
    monkeypatch.setattr(os, "rename", full_disk)
    with pytest.raises(ConfigError) as caught:
        write(path, sample_reports())

    assert str(caught.value) == (
        f"--metrics-file {path}: cannot write it (No space left on device); check that the directory "
        f"{tmp_path} is writable by this user and has free space"
    )
    assert path.read_text() == "previous run\n"
    assert os.listdir(tmp_path) == ["amplify_billing.prom"]


def test_a_missing_directory_is_a_configuration_error_naming_the_option(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "amplify_billing.prom"

    with pytest.raises(ConfigError) as caught:
        write(path, sample_reports())

    assert str(caught.value).startswith(
        f"--metrics-file {path}: the directory {tmp_path / 'no-such-dir'} does not exist; create it"
    )
    assert caught.value.exit_code == 2
    assert os.listdir(tmp_path) == []


def test_naive_times_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        write_metrics(
            tmp_path / "m.prom",
            [],
            duration_seconds=1.0,
            exit_code=0,
            api_calls={},
            retries={},
            now=datetime(2026, 11, 1, 12, 0),
            last_success=None,
        )
    assert os.listdir(tmp_path) == []


# ---- on every exit, end to end -----------------------------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def alert_rules() -> dict[str, str]:
    """The README's alert rules, by alert name: the ones operators copy."""
    import yaml

    text = README.read_text(encoding="utf-8")
    block = next(b for b in text.split("```yaml\n")[1:] if "alert:" in b).split("```")[0]
    return {rule["alert"]: rule["expr"] for group in yaml.safe_load(block)["groups"] for rule in group["rules"]}


def evaluate(expr: str, samples: dict[str, float], at: float) -> bool:
    """The README's instant expressions over one scrape of the file: ``time()``, gauges, ``absent(x)``, ``or``,
    ``and``, comparisons and arithmetic (enough for these rules; a range function is refused)."""
    import re as regex

    assert "[" not in expr, f"not an instant expression: {expr}"

    def value(name: str) -> str:
        return repr(samples[name]) if name in samples else "None"

    text = regex.sub(r"absent\((\w+)\)", lambda m: str(m.group(1) not in samples), expr)
    text = text.replace("time()", repr(at))
    text = regex.sub(r"\bamplify_billing_\w+", lambda m: value(m.group(0)), text)
    parts = []
    for alternative in text.split(" or "):
        # a comparison with a missing series is no sample at all: false, as in Prometheus
        parts.append("None" not in alternative and bool(eval(alternative, {"__builtins__": {}})))
    return any(parts)


def scrape(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    return {name: value for (name, labels_), value in parse(path)[0].items() if not labels_}


def test_last_success_moves_only_when_a_whole_run_exits_0_and_every_exit_writes_the_file(
    small_sandbox: tuple[object, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import signal
    import time

    import amplify_billing.commands.sync_plans as module
    from amplify_billing.cli import run_cli

    _, config = small_sandbox
    metrics = tmp_path / "m.prom"
    base = ["--config", str(config), "--metrics-file", str(metrics)]

    def run(*args: str) -> dict[str, float]:
        run_cli([*base, *args])
        capsys.readouterr()
        return scrape(metrics)

    first = run("run")
    success = first["amplify_billing_last_success_timestamp_seconds"]
    assert first["amplify_billing_run_exit_code"] == 0 and success == first["amplify_billing_run_timestamp_seconds"]

    def carried(after: dict[str, float], code: int) -> None:
        assert after["amplify_billing_run_exit_code"] == code
        assert after["amplify_billing_last_success_timestamp_seconds"] == success, code
        assert after["amplify_billing_run_timestamp_seconds"] > success

    time.sleep(0.01)
    carried(run("run", "--exit-code"), 4)  # the sandbox's findings are pending
    carried(run("sync-plans", "--product", "nosuch"), 2)
    carried(run("run", "--dry-run"), 0)  # a dry run bills nothing: no success either
    carried(run("run", "--max-duration", "soon"), 2)  # refused before anything ran

    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "sync_plans", interrupted)
    carried(run("sync-plans"), 130)

    def terminated(*args: object, **kwargs: object) -> object:
        os.kill(os.getpid(), signal.SIGTERM)
        interrupt.check("GET products")  # the next request the command would start
        raise AssertionError("SIGTERM did not end the command")

    monkeypatch.setattr(module, "sync_plans", terminated)
    assert run_cli([*base, "sync-plans"]) == 143
    assert "Interrupted by SIGTERM: no new request was started after it" in capsys.readouterr().err
    carried(scrape(metrics), 143)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the handler is the CLI's only while it runs"


def test_a_failing_run_makes_the_stale_success_alert_true(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from amplify_billing.cli import run_cli

    rules = alert_rules()
    stale, absent = rules["AmplifyBillingNoRecentSuccess"], rules["AmplifyBillingMetricsAbsent"]
    metrics = tmp_path / "m.prom"
    now = datetime.now(UTC)
    # nothing written yet: the file's absence is what fires
    assert evaluate(absent, scrape(metrics), now.timestamp()) is True
    assert evaluate(stale, scrape(metrics), now.timestamp()) is True

    # the last success two hours ago, then a run that fails (here: its configuration is gone)
    write(metrics, sample_reports(), last_success=now - timedelta(hours=2))
    assert run_cli(["--config", str(tmp_path / "gone.yaml"), "--metrics-file", str(metrics), "run"]) == 2
    capsys.readouterr()
    after = scrape(metrics)
    scraped_at = after["amplify_billing_run_timestamp_seconds"]
    assert after["amplify_billing_run_exit_code"] == 2
    assert evaluate(stale, after, scraped_at) is True
    assert evaluate(absent, after, scraped_at) is False
    assert evaluate(rules["AmplifyBillingNotRunning"], after, scraped_at) is False

    # a fresh success turns it off
    write(metrics, sample_reports(), last_success=now)
    assert evaluate(stale, scrape(metrics), now.timestamp() + 60) is False
    # the backlog rule watches the backlog gauge (written by report-usage)
    assert "amplify_billing_backlog_seconds" in rules["AmplifyBillingBacklogGrowing"]
