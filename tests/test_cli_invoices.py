"""sync-invoices on the command line: its settings' errors, its cost in recurly mode (none), its JSON report."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from amplify_billing.cli import run_cli
from amplify_billing.errors import ExitCode
from amplify_billing.render.envelope import ReportEnvelope
from amplify_billing.sandbox.amplify_invoices import InvoiceIssuer, enable_custom_billing
from amplify_billing.sandbox.recurly_cards import hosted_login_token

MARKET = "8275212a-fb48-4b55-9305-473fbd507817"


def _with_billing(config: Path, billing: Any) -> Path:
    data = yaml.safe_load(config.read_text())
    data["billing"] = billing
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


@pytest.mark.parametrize(
    ("billing", "message"),
    [
        ({"mode": "both"}, "billing.mode: expected one of recurly, marketplace, got 'both'"),
        (
            {"marketplaces": {MARKET: "stripe"}},
            f"billing.marketplaces.{MARKET}: expected one of recurly, marketplace, got 'stripe'",
        ),
        ({"collection_method": "card"}, "billing.collection_method: expected one of automatic, manual, got 'card'"),
        ({"modes": "marketplace"}, "billing.modes: unknown key; did you mean billing.mode?"),
    ],
)
def test_a_bad_billing_setting_names_its_line_and_exits_2(
    small_sandbox: tuple[Any, Path], capsys: pytest.CaptureFixture[str], billing: Any, message: str
) -> None:
    _sandbox, config = small_sandbox
    _with_billing(config, billing)

    assert run_cli(["--config", str(config), "sync-invoices"]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert message in err
    assert f"{config}:" in err  # file:line


def test_in_recurly_mode_it_asks_nothing_of_anyone(
    small_sandbox: tuple[Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, config = small_sandbox
    before = len(sandbox.amplify.requests), len([r for r in sandbox.recurly.requests if r.path != "/sites"])

    assert run_cli(["--config", str(config), "sync-invoices"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "no Marketplace is in marketplace mode" in out
    assert len(sandbox.amplify.requests) == before[0]
    assert len([r for r in sandbox.recurly.requests if r.path != "/sites"]) == before[1]


def test_marketplace_mode_reports_in_the_envelope_without_the_pay_link_token(
    small_sandbox: tuple[Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, config = small_sandbox
    market = next(m for m in sandbox.amplify.resources("Marketplace"))
    enable_custom_billing(sandbox.amplify, market)
    _with_billing(config, {"mode": "marketplace", "collection_method": "manual"})
    assert run_cli(["--config", str(config), "link-accounts"]) == ExitCode.OK
    InvoiceIssuer(sandbox.amplify).issue(datetime.now(UTC))
    capsys.readouterr()

    code = run_cli(["--config", str(config), "--output", "json", "sync-invoices"])

    out, err = capsys.readouterr()
    assert code == ExitCode.OK, err
    envelope = ReportEnvelope.model_validate_json(out)
    document = json.loads(out)
    assert envelope.command == "sync-invoices"
    kinds = {c["kind"] for c in document["changes"]}
    assert {"create", "link", "update"} <= kinds
    tokens = [hosted_login_token(sandbox.recurly.state, a) for a in sandbox.recurly.state.accounts.values()]
    assert tokens and not any(t in out or t in err for t in tokens)
