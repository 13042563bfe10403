"""``amplify-billing doctor`` on the command line: its formats, its exit codes, and that it writes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from amplify_billing.cli import run_cli
from amplify_billing.errors import ExitCode
from tools.driver import amplify_writes, recurly_writes


def test_doctor_markdown_for_a_ticket_exit_0_and_no_write(
    small_sandbox: tuple[Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, config = small_sandbox
    state = Path(yaml.safe_load(config.read_text())["state"]["path"])

    code = run_cli(["--config", str(config), "doctor", "--output", "markdown"])

    out = capsys.readouterr().out
    assert code == ExitCode.OK
    assert out.startswith("## amplify-billing doctor: READY: nothing needs action (")
    assert "### Checks\n\n| area | check | verdict | evidence | action |\n" in out
    assert "### Literal census" in out and "### Plan mapping preview" in out
    assert out.rstrip().endswith("Nothing was written.")
    assert amplify_writes(sandbox) == [] and recurly_writes(sandbox) == []
    assert not state.exists(), "doctor creates no journal"


def test_doctor_json_takes_the_global_output_and_exits_4_when_something_needs_action(
    small_sandbox: tuple[Any, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = small_sandbox
    values = yaml.safe_load(config.read_text())
    values["amplify"]["opt_in_value"] = "chargebee"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(values))

    code = run_cli(["--config", str(changed), "-o", "json", "doctor"])

    document = json.loads(capsys.readouterr().out)
    # the versioned envelope of every command, checked against the committed schema, the report in ``doctor``
    schema = json.loads((Path(__file__).parent.parent / "docs" / "report.schema.json").read_text(encoding="utf-8"))
    assert [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(document)] == []
    assert (document["command"], document["schema_version"], document["dry_run"]) == ("doctor", 1, False)
    assert code == ExitCode.REFUSED == document["exit_code"] == 4
    doctor = document["doctor"]
    assert doctor["ready"] is False and doctor["exit_code"] == 4
    [preview] = [c for c in doctor["checks"] if c["check"] == "mapping preview"]
    assert preview["evidence"] == "no product opts in: nothing would be billed"


def test_doctor_refuses_an_unknown_format_with_exit_2(
    small_sandbox: tuple[Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = small_sandbox
    code = run_cli(["--config", str(config), "doctor", "--output", "yaml"])
    assert code == ExitCode.CONFIG
    assert "yaml" in capsys.readouterr().err
