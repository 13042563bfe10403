"""The JSON report envelope: the committed JSON Schema is the models' own, and every command's JSON output, dry and
real, errors included, validates against the models (pydantic, ``extra="forbid"``: an undeclared key fails too).

The commands run through ``run_cli`` against the sandbox emulators, with a config file on disk, as cron runs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from amplify_billing import __version__
from amplify_billing.cli import run_cli
from amplify_billing.errors import ExitCode
from amplify_billing.journal import RunLock
from amplify_billing.render.envelope import SCHEMA_VERSION, ReportEnvelope, report_json_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "report.schema.json"
WRITING_COMMANDS = ("sync-plans", "link-accounts", "sync-subscriptions", "report-usage", "sync-invoices")
REPORT_ONLY_KINDS = {"finding", "unsupported", "waiting"}
REGENERATE = (
    "python -c \"from amplify_billing.render.envelope import schema_text; print(schema_text(), end='')\" "
    "> docs/report.schema.json"
)


@dataclass
class Setup:
    sandbox: Any
    config: Path
    tmp: Path

    def json(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, ReportEnvelope, str]:
        code = run_cli(["--config", str(self.config), "--output", "json", *args])
        out, err = capsys.readouterr()
        return code, ReportEnvelope.model_validate_json(out), err


@pytest.fixture
def setup(small_sandbox: tuple[Any, Path], tmp_path: Path) -> Setup:
    sandbox, config = small_sandbox
    return Setup(sandbox, config, tmp_path)


def test_committed_schema_is_the_models_schema() -> None:
    committed = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert committed == report_json_schema(), (
        "docs/report.schema.json is stale: regenerate it with "
        f"`{REGENERATE}` (and bump SCHEMA_VERSION when an existing field changes meaning or goes away)"
    )
    assert committed["properties"]["schema_version"]["const"] == SCHEMA_VERSION


def _times_are_ordered(document: ReportEnvelope) -> None:
    assert document.started_at is not None and document.finished_at is not None
    assert document.started_at.endswith("Z") and document.finished_at.endswith("Z")
    assert datetime.fromisoformat(document.started_at) <= datetime.fromisoformat(document.finished_at)


def test_every_command_dry_and_real_validates(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    for dry in (True, False):
        flags = ("--dry-run",) if dry else ()
        for command in (*WRITING_COMMANDS, "run"):
            code, document, err = setup.json(capsys, command, *flags)
            assert code == ExitCode.OK, (command, dry, err)
            assert (document.command, document.dry_run, document.exit_code) == (command, dry, 0)
            assert document.schema_version == SCHEMA_VERSION and document.tool_version == __version__
            assert document.error is None
            _times_are_ordered(document)
            for entry in document.changes:
                assert entry.kind not in REPORT_ONLY_KINDS, entry
            for entry in document.findings:
                assert entry.kind in REPORT_ONLY_KINDS and entry.outcome == "reported", entry
            if command == "run":
                # sync-invoices is a step of run only where a Marketplace is invoiced (billing.mode)
                assert [s.command for s in document.steps] == list(WRITING_COMMANDS[:4])
                assert document.changes == [] and document.findings == []
                assert document.started_at == document.steps[0].started_at
                assert document.finished_at == document.steps[-1].finished_at
                assert document.counts.planned == sum(s.counts.planned for s in document.steps)
                # each step is its own row in the journal's run history; a dry run writes none
                run_ids = [s.run_id for s in document.steps]
                if dry:
                    assert run_ids == [None] * len(document.steps)
                else:
                    ids = [i for i in run_ids if i is not None]
                    assert ids == sorted(set(ids)) and len(ids) == len(document.steps), run_ids
                    assert document.run_id is None, "a run id per step, not one"
            else:
                assert document.steps == []
                assert (document.run_id is None) == dry, (command, document.run_id)


def test_typed_ids_sit_next_to_the_display_text(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    _, dry_plans, _ = setup.json(capsys, "sync-plans", "--dry-run")
    planned = [c for c in dry_plans.changes if c.object == "plan" and c.kind == "create"]
    assert planned and all(c.outcome == "planned" and c.result_id is None for c in planned)
    for entry in planned:
        assert entry.recurly_code is not None and entry.recurly_code.startswith("amplify-")
        assert entry.recurly == f"plan {entry.recurly_code}" and entry.key == entry.recurly_code
        assert entry.amplify_id is not None and entry.amplify_id in entry.amplify
        assert entry.recurly_uuid is None

    setup.json(capsys, "sync-plans")
    setup.json(capsys, "link-accounts")
    code, subscriptions, err = setup.json(capsys, "sync-subscriptions")
    assert code == ExitCode.OK, err
    created = [c for c in subscriptions.changes if c.object == "subscription" and c.kind == "create"]
    assert created
    for entry in created:
        assert entry.outcome == "applied" and entry.recurly_uuid is not None
        assert entry.recurly_uuid == entry.result_id
        assert entry.amplify_id is not None and entry.amplify_id in entry.amplify
    created_uuids = {c.recurly_uuid for c in created}
    # an approval or a link of a subscription created in the same run names the uuid the create returned
    followers = [c for c in subscriptions.changes if c.kind in ("approve", "link")]
    assert {c.kind for c in followers} == {"approve", "link"}
    for entry in followers:
        assert entry.amplify_name and entry.amplify_id and entry.recurly_uuid in created_uuids, entry

    code, usage, err = setup.json(capsys, "report-usage")
    assert code == ExitCode.OK, err
    posted = [c for c in usage.changes if c.kind == "post"]
    in_recurly = {s["uuid"] for s in setup.sandbox.recurly.subscriptions()}
    assert posted and all(c.amplify_id and c.recurly_uuid in in_recurly for c in posted), posted


def test_errors_under_json_are_an_envelope_on_stdout(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMPLIFY_BILLING_CONFIG", raising=False)
    (tmp_path / "elsewhere").mkdir()  # the sandbox's config.yaml sits in tmp_path itself
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert run_cli(["--output", "json", "sync-plans", "--dry-run"]) == ExitCode.CONFIG
    out, err = capsys.readouterr()
    missing = ReportEnvelope.model_validate_json(out)
    assert (missing.command, missing.dry_run, missing.exit_code) == ("sync-plans", True, ExitCode.CONFIG)
    assert missing.error is not None and "config.yaml" in missing.error and missing.error in err
    assert missing.changes == [] and missing.run_id is None

    with RunLock.acquire(setup.tmp / "amplify-billing.db", "run", clock=lambda: datetime.now(UTC)):
        code = run_cli(["--config", str(setup.config), "-o", "json", "run"])
    locked = ReportEnvelope.model_validate_json(capsys.readouterr().out)
    assert code == locked.exit_code == ExitCode.LOCKED
    assert locked.command == "run" and locked.error is not None

    assert run_cli(["--output=json", "sync-plans", "--bogus"]) == ExitCode.CONFIG
    usage_error = ReportEnvelope.model_validate_json(capsys.readouterr().out)
    assert usage_error.exit_code == ExitCode.CONFIG and usage_error.error and "--bogus" in usage_error.error


def test_a_crash_under_json_names_the_crash_report(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import amplify_billing.commands.sync_plans as module

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(module, "sync_plans", broken)
    code, document, err = setup.json(capsys, "sync-plans")
    assert code == document.exit_code == ExitCode.INTERNAL
    assert document.error is not None and "crash report: " in document.error and document.error in err


def test_undeclared_keys_are_refused() -> None:
    document = {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "command": "sync-plans",
        "run_id": None,
        "started_at": "2026-12-05T10:00:00Z",
        "finished_at": "2026-12-05T10:00:01Z",
        "dry_run": True,
        "exit_code": 0,
        "note": None,
        "error": None,
        "figures": {},
        "counts": {"planned": 0, "applied": 0, "failed": 0, "skipped": 0, "reported": 0},
        "changes": [],
        "findings": [],
        "steps": [],
    }
    ReportEnvelope.model_validate(document)
    with pytest.raises(ValueError, match="surprise"):
        ReportEnvelope.model_validate({**document, "surprise": 1})
    with pytest.raises(ValueError, match="started_at"):
        ReportEnvelope.model_validate({**document, "started_at": "2026-12-05T11:00:00+01:00"})


# ---- the committed JSON Schema over every command's output, errors included ----------------------------------


def test_every_command_and_every_error_validates_against_the_committed_schema(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import jsonschema

    import amplify_billing.commands.sync_plans as module

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
    config = ["--config", str(setup.config)]

    def document(args: list[str], expected: int) -> dict[str, Any]:
        capsys.readouterr()
        code = run_cli([*args, "--output", "json"])
        out = capsys.readouterr().out
        found = json.loads(out)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(found)]
        assert errors == [], (args, errors)
        assert (code, found["exit_code"]) == (expected, expected), (args, found.get("error"))
        return found

    ok = int(ExitCode.OK)
    for command in (*WRITING_COMMANDS, "run"):
        document([*config, command, "--dry-run"], ok)
    document([*config, "run"], ok)
    acknowledged = setup.sandbox.write_config(
        setup.tmp / "ack.yaml", findings={"acknowledge": [{"kind": "unsupported", "id": "x", "reason": "r"}]}
    )
    document(["--config", str(acknowledged), "run", "--dry-run", "--exit-code"], int(ExitCode.REFUSED))
    status = document([*config, "status"], ok)
    assert status["command"] == "status" and status["status"]["command"] == "status"
    assert status["findings"] and all(f["finding_key"] for f in status["findings"] if f["kind"] == "unsupported")
    document([*config, "status", "--offline"], ok)
    linked = next(s for s in status["status"]["subscriptions"] if s["recurly_subscription"])
    document([*config, "status", "--subscription", linked["amplify_id"]], ok)
    checks = document([*config, "config", "check"], ok)
    assert checks["command"] == "config check" and {c["name"] for c in checks["checks"]} >= {"amplify", "recurly"}
    document([*config, "config", "check", "--offline"], ok)
    demo = document(["demo", "--subscriptions", "3"], ok)
    assert [s["command"] for s in demo["steps"]] == ["run"] * 4

    # errors: each an envelope with `error` and its exit code
    config_error = int(ExitCode.CONFIG)
    for args in (
        ["--config", str(setup.tmp / "missing.yaml"), "run"],
        [*config, "sync-plans", "--product", "nosuch"],
        [*config, "report-usage", "--from", "2999-01-01"],
        [*config, "status", "--subscription", "nosuch"],
        [*config, "status", "--format", "json"],
        [*config, "run", "--max-duration", "soon"],
    ):
        assert document(args, config_error)["error"]
    bad_key = setup.sandbox.write_config(setup.tmp / "bad.yaml", recurly={"api_key": "wrong"})
    assert document(["--config", str(bad_key), "sync-plans"], int(ExitCode.UPSTREAM))["error"]
    assert document(["--config", str(bad_key), "status"], int(ExitCode.UPSTREAM))["status"]["unavailable"]
    with RunLock.acquire(setup.tmp / "amplify-billing.db", "run", clock=lambda: datetime.now(UTC)):
        assert document([*config, "run"], int(ExitCode.LOCKED))["error"]

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "sync_plans", interrupted)
    assert document([*config, "sync-plans"], int(ExitCode.INTERRUPTED))["error"]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(module, "sync_plans", broken)
    assert "crash report" in document([*config, "sync-plans"], int(ExitCode.INTERNAL))["error"]
