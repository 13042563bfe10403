"""Issue 16 against the sandbox: reports an operator can grep (an opening line, one closing total, ids never split,
ids in every change event), ``--quiet``, acknowledged findings, global options anywhere, help with examples,
completion, and options that are never a silent no-op.

Each runs ``run_cli`` in-process against the emulators with a config file on disk, as cron does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer

from amplify_billing import __version__
from amplify_billing.cli import app, run_cli
from amplify_billing.errors import ExitCode

STAMP = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"
STEADY_TOTAL = (
    "Applied: 0 created, 0 updated, 0 ended, 0 usage records posted; {n} findings ({k} acknowledged); exit {code}"
)


@dataclass
class Setup:
    sandbox: Any
    config: Path
    tmp: Path

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str, config: Path | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run_cli(["--config", str(config or self.config), *args])
        out, err = capsys.readouterr()
        return code, out, err

    def findings(self, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
        """Every finding a dry run reports, from its JSON report."""
        code, out, _ = self.cli(capsys, "-o", "json", "run", "--dry-run")
        assert code == 0
        return [f for step in json.loads(out)["steps"] for f in step["findings"]]

    def acknowledging(self, *entries: dict[str, Any]) -> Path:
        return self.sandbox.write_config(self.tmp / "ack.yaml", findings={"acknowledge": list(entries)})


@pytest.fixture
def setup(small_sandbox: tuple[Any, Path], tmp_path: Path) -> Setup:
    sandbox, config = small_sandbox
    return Setup(sandbox, config, tmp_path)


def _steady(setup: Setup, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Run until there is nothing left to do; the findings that stay."""
    assert setup.cli(capsys, "run")[0] == ExitCode.OK
    findings = setup.findings(capsys)
    assert findings, "the sandbox has permanent findings (an unsupported plan, unbilled traffic)"
    return findings


def _acknowledge_all(findings: list[dict[str, Any]], *, expires: date | None = None) -> list[dict[str, Any]]:
    entries = []
    for f in findings:
        kind, _, ident = f["finding_key"].partition(":")
        entry: dict[str, Any] = {"kind": kind, "id": ident, "reason": f"known: {kind}"}
        if expires is not None:
            entry["expires"] = expires.isoformat()
        entries.append(entry)
    return entries


# ---- reports -----------------------------------------------------------------------------------------------


def test_a_steady_state_run_opens_with_one_line_and_closes_with_one_total(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    findings = _steady(setup, capsys)
    code, out, _ = setup.cli(capsys, "run")
    lines = out.splitlines()
    assert code == 0
    assert re.fullmatch(rf"{STAMP} amplify-billing {re.escape(__version__)} run \(run ids \d+-\d+\)", lines[0])
    assert lines[-1] == STEADY_TOTAL.format(n=len(findings), k=0, code=0)
    # piped without COLUMNS: nothing wraps, so every id of every finding is on one line, whole
    for finding in findings:
        assert any(finding["amplify"] in line for line in lines), finding["amplify"]

    code, out, _ = setup.cli(capsys, "run", "--dry-run")
    lines = out.splitlines()
    assert re.fullmatch(
        rf"{STAMP} amplify-billing {re.escape(__version__)} run --dry-run \(nothing written\)", lines[0]
    )
    assert lines[-1] == (
        f"Plan: 0 to create, 0 to update, 0 to end, 0 usage records to post; {len(findings)} findings (0 acknowledged); "
        "exit 0"
    )


def test_piped_output_honours_columns_and_a_narrow_width_gets_key_value_lines(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    findings = _steady(setup, capsys)
    monkeypatch.setenv("COLUMNS", "70")
    code, out, _ = setup.cli(capsys, "sync-plans", "--dry-run")
    assert code == 0
    unsupported = next(f for f in findings if f["kind"] == "unsupported")
    assert "│" not in out, "70 columns cannot hold the ids side by side"
    assert f"  Amplify: {unsupported['amplify']}" in out.splitlines()
    assert "Kind: unsupported" in out.splitlines()
    monkeypatch.setenv("COLUMNS", "400")
    code, out, _ = setup.cli(capsys, "sync-plans", "--dry-run")
    assert "│" in out and max(len(line) for line in out.splitlines()) <= 400


def test_every_change_event_names_the_amplify_id_and_the_recurly_id(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = setup.cli(capsys, "run")
    assert code == 0
    events = [
        line
        for line in err.splitlines()
        if re.match(rf"{STAMP[:-1]}\.\d{{3}}Z INFO (Create|Post|Set|Approve|Link)", line)
    ]
    assert events
    for line in events:
        ids = dict(re.findall(r" (amplify_id|recurly_id)=(\S+)", line))
        assert set(ids) == {"amplify_id", "recurly_id"}, line
    plans = [line for line in events if " CreatePlan " in line]
    assert plans
    for line in plans:
        amplify_id = re.search(r"amplify_id=(\S+)", line)
        assert amplify_id is not None and f"recurly_id=amplify-{amplify_id.group(1)}" in line, line
    subscriptions = [line for line in events if " CreateSubscription " in line]
    assert subscriptions and all(re.search(r"recurly_id=[0-9a-f]{32}$", line) for line in subscriptions)


# ---- --quiet and acknowledged findings ---------------------------------------------------------------------


def test_quiet_with_every_finding_acknowledged_is_one_line(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    findings = _steady(setup, capsys)
    config = setup.acknowledging(*_acknowledge_all(findings))
    code, out, _ = setup.cli(capsys, "run", "--quiet", "--exit-code", config=config)
    assert code == 0
    [line] = out.splitlines()
    total = STEADY_TOTAL.format(n=len(findings), k=len(findings), code=0)
    assert re.fullmatch(
        rf"{STAMP} amplify-billing {re.escape(__version__)} run \(run ids \d+-\d+\): {re.escape(total)}", line
    )

    # without the acknowledgements, quiet still shows the findings (they count) and the same total
    code, out, _ = setup.cli(capsys, "-q", "run")
    assert code == 0 and len(out.splitlines()) > 1
    assert out.splitlines()[-1] == STEADY_TOTAL.format(n=len(findings), k=0, code=0)


def test_acknowledged_findings_count_neither_for_exit_code_nor_status(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    findings = _steady(setup, capsys)
    assert setup.cli(capsys, "run", "--exit-code")[0] == ExitCode.REFUSED
    unsupported = next(f for f in findings if f["kind"] == "unsupported")
    # the stable key: the kind and the plan's Amplify id, which the display text ends with
    assert unsupported["finding_key"] == f"unsupported:{unsupported['amplify_id']}"
    assert unsupported["amplify"].endswith(f"({unsupported['amplify_id']})")

    config = setup.acknowledging(*_acknowledge_all(findings, expires=date.today() + timedelta(days=30)))
    code, out, _ = setup.cli(capsys, "-o", "json", "run", "--exit-code", config=config)
    assert code == 0
    marked = [f for step in json.loads(out)["steps"] for f in step["findings"]]
    until = (date.today() + timedelta(days=30)).isoformat()
    assert {(f["finding_key"], json.dumps(f["acknowledged"], sort_keys=True)) for f in marked} == {
        (
            f["finding_key"],
            json.dumps({"expired": False, "expires": until, "reason": f"known: {f['kind']}"}, sort_keys=True),
        )
        for f in findings
    }
    code, out, _ = setup.cli(capsys, "run", config=config)
    lines = out.splitlines()
    assert f"acknowledged: known: unsupported (until {until})" in " ".join(lines)

    # status: in step, the finding shown as acknowledged
    code, out, _ = setup.cli(capsys, "status", "--exit-code", config=config)
    assert code == 0
    unsupported_plans = sum(1 for f in findings if f["kind"] == "unsupported")  # each a drift item of status
    assert out.splitlines()[-1].startswith(
        f"Everything is in step: 0 drift item(s), {unsupported_plans} acknowledged, 0 open intent(s);"
    )
    drift = out[out.index("Drift") : out.index("Open journal intents")]
    assert f"acknowledged: known: unsupported (until {until}) (else: by hand)" in drift
    code, out, _ = setup.cli(capsys, "status", "--exit-code", "--quiet", config=config)
    assert code == 0 and len(out.splitlines()) == 1


def test_an_expired_acknowledgement_turns_back_into_a_finding(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    findings = _steady(setup, capsys)
    yesterday = date.today() - timedelta(days=1)
    config = setup.acknowledging(*_acknowledge_all(findings, expires=yesterday))
    code, out, _ = setup.cli(capsys, "run", "--exit-code", config=config)
    assert code == ExitCode.REFUSED
    assert out.splitlines()[-1].startswith("Applied: 0 created")
    assert f"({0} acknowledged)" in out.splitlines()[-1]
    assert f"acknowledgement expired on {yesterday}: known: unsupported" in out
    code, out, _ = setup.cli(capsys, "status", "--exit-code", config=config)
    unsupported_plans = sum(1 for f in findings if f["kind"] == "unsupported")
    assert code == ExitCode.REFUSED
    assert f"NOT in step: {unsupported_plans} drift item(s), 0 acknowledged" in out.splitlines()[-1]


def test_an_acknowledgement_may_name_the_object_and_a_bad_one_is_exit_2(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    findings = _steady(setup, capsys)
    usage = next(f for f in findings if f["kind"] == "finding" and f["amplify_id"])
    # the subscription's own id covers every finding of that kind about it
    config = setup.acknowledging({"kind": "finding", "id": usage["amplify_id"], "reason": "test tenant"})
    code, out, _ = setup.cli(capsys, "-o", "json", "report-usage", "--dry-run", config=config)
    marked = {f["finding_key"]: f["acknowledged"] for f in json.loads(out)["findings"]}
    assert marked[usage["finding_key"]] == {"reason": "test tenant", "expires": None, "expired": False}

    bad = setup.acknowledging({"kind": "unsupported", "id": "x", "reason": "r", "expires": "next week"})
    code, _, err = setup.cli(capsys, "run", config=bad)
    assert code == ExitCode.CONFIG
    assert "findings.acknowledge[0].expires: expected a date such as 2027-01-31, got 'next week'" in err
    bad = setup.acknowledging({"kind": "orphans", "id": "x", "reason": "r"})
    code, _, err = setup.cli(capsys, "run", config=bad)
    assert "findings.acknowledge[0].kind: expected one of finding, unsupported, waiting, orphan, got 'orphans'" in err


# ---- options ---------------------------------------------------------------------------------------------------


def test_global_options_before_or_after_the_command(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["run", "--dry-run", "--output", "json"], ["--output=json", "run", "--dry-run"], ["run", "-ojson"]):
        code, out, err = setup.cli(capsys, *args)
        assert code == 0, (args, err)
        assert json.loads(out)["command"] == "run"
    code, out, _ = setup.cli(capsys, "status", "-o", "markdown")
    assert out.startswith("## ") and "| area | kind | Amplify | Recurly | detail | next |" in out
    code, out, _ = setup.cli(capsys, "config", "check", "--offline", "-q")
    assert code == 0 and re.fullmatch(
        rf"{STAMP} amplify-billing {re.escape(__version__)} config check --offline: "
        r"Checks: 4 ok, 0 warn, 0 fail, 2 skipped; exit 0",
        out.strip(),
    )
    # status's own --format is gone: one --output everywhere
    code, _, err = setup.cli(capsys, "status", "--format", "json")
    assert code == ExitCode.CONFIG and "No such option: --format" in err


def test_every_command_has_an_example_and_readable_placeholders(capsys: pytest.CaptureFixture[str]) -> None:
    root = typer.main.get_command(app)
    missing: list[str] = []

    def walk(command: Any, path: str) -> None:
        subcommands = getattr(command, "commands", None) or {}
        runs_itself = not subcommands or path in ("amplify-billing", "amplify-billing sandbox")
        if runs_itself and "Example:" not in (command.epilog or ""):
            missing.append(path)
        for param in command.params:
            metavar = param.make_metavar(typer.Context(command)) if hasattr(param, "make_metavar") else ""
            assert "<list" not in metavar and "<str" not in metavar and "<int" not in metavar, (path, metavar)
        for name, sub in subcommands.items():
            walk(sub, f"{path} {name}")

    walk(root, "amplify-billing")
    assert missing == []
    assert run_cli(["sync-plans", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--product NAME" in text and "Example:\n    amplify-billing sync-plans --dry-run --product" in text
    assert run_cli(["report-usage", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--from DATE|TIME" in text and "--to DATE|TIME" in text


def test_install_completion_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SHELL", "/bin/bash")
    assert run_cli(["--install-completion", "bash"]) == 0
    script = tmp_path / ".bash_completions" / "amplify-billing.sh"
    assert script.is_file() and "_AMPLIFY_BILLING_COMPLETE" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()


# ---- no silent no-op ---------------------------------------------------------------------------------------------


def test_an_unknown_product_is_exit_2_naming_the_products_that_exist(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = setup.cli(capsys, "sync-plans", "--dry-run", "--product", "nosuch")
    assert code == ExitCode.CONFIG and out == ""
    names = sorted(
        {
            p["name"]
            for p in setup.sandbox.amplify.resources("Product")
            if (p.get("attributes") or {}).get("billingSystem") == "recurly"
        }
    )
    assert err.strip() == (
        f"Error: --product nosuch: no opted-in Amplify product has this name; the opted-in products are: "
        f"{', '.join(names)} (a product is opted in by its attribute billingSystem=recurly)"
    )
    code, _, _ = setup.cli(capsys, "sync-plans", "--dry-run", "--product", names[0])
    assert code == 0


def test_a_future_or_unsettled_range_says_so_and_an_empty_one_notes_it(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    future = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    code, out, err = setup.cli(capsys, "report-usage", "--dry-run", "--from", future)
    assert code == ExitCode.CONFIG and out == ""
    assert err.startswith(f"Error: --from {future}T00:00:00Z is in the future (now ")
    assert err.rstrip().endswith("nothing can be counted there yet: give a range in the past")
    recent = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, _, err = setup.cli(capsys, "report-usage", "--dry-run", "--from", recent)
    assert code == ExitCode.CONFIG and "nothing in this range has settled yet (usage.settle_delay 2h" in err

    code, out, _ = setup.cli(capsys, "report-usage", "--dry-run", "--from", "2020-01-01", "--to", "2020-01-02")
    assert code == 0
    assert (
        "note: --from 2020-01-01T00:00:00Z --to 2020-01-02T00:00:00Z: no window of a billed subscription falls in "
        "this range; nothing was counted"
    ) in out.splitlines()
