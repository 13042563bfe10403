"""config check: offline validation, and each credential proved against the sandbox, with exact exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from amplify_billing.config_checks import Check, Level, custom_field_check, exit_code_for
from amplify_billing.errors import ConfigError
from amplify_billing.render.envelope import ReportEnvelope

SECRETS = {"AMPLIFY_CLIENT_SECRET": "cs-not-a-real-secret-1", "RECURLY_API_KEY": "rk-not-a-real-key-2"}


def write_config(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    data: dict[str, Any] = {
        # nothing listens here: an offline check must not try
        "amplify": {
            "tenant_id": "100000000000001",
            "client_id": "sa_1",
            "client_secret": "${AMPLIFY_CLIENT_SECRET}",
            "central_url": "http://127.0.0.1:9",
            "auth_url": "http://127.0.0.1:9/auth",
            "platform_url": "http://127.0.0.1:9",
        },
        "recurly": {"api_key": "${RECURLY_API_KEY}", "api_url": "http://127.0.0.1:9"},
        "state": {"path": str(tmp_path / "state" / "amplify-billing.db")},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from amplify_billing.cli import run_cli

    capsys.readouterr()
    code = run_cli(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def rows(out: str) -> dict[str, dict[str, Any]]:
    """The checks of the report envelope by name, as ``check``, ``result`` and ``detail``."""
    document = ReportEnvelope.model_validate_json(out).model_dump()
    assert document["command"] == "config check" and document["checks"] is not None
    return {c["name"]: {"check": c["name"], "result": c["result"], "detail": c["detail"]} for c in document["checks"]}


# ---- offline ----------------------------------------------------------------------------------------


def test_offline_validates_without_contacting_anything(
    tmp_path: Path, secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    code, out, err = cli(capsys, "--config", str(config), "--output", "json", "config", "check", "--offline")
    assert (code, err) == (0, "")
    found = rows(out)
    assert found["configuration"]["result"] == "ok"
    assert found["configuration"]["detail"].startswith(
        f"{config} is valid: Amplify tenant 100000000000001 at http://127.0.0.1:9 (API auto), "
        "service account sa_1 with a client secret; Recurly at http://127.0.0.1:9;"
    )
    assert found["credentials"]["detail"] == "a client secret is set for service account sa_1"
    assert (
        found["journal"]["detail"]
        == f"{tmp_path / 'state' / 'amplify-billing.db'} does not exist yet; the first run creates it"
    )
    assert (found["amplify"]["result"], found["recurly"]["result"]) == ("skipped", "skipped")
    assert not (tmp_path / "state").exists(), "a check creates nothing"
    assert SECRETS["RECURLY_API_KEY"] not in out and SECRETS["AMPLIFY_CLIENT_SECRET"] not in out


def test_an_invalid_file_is_reported_as_the_cli_reports_it(
    tmp_path: Path, secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, recurly={"surprise": 1})
    code, out, err = cli(capsys, "--config", str(config), "config", "check", "--offline")
    assert code == 2
    assert out == ""
    assert err.startswith("Error: ") and "recurly.surprise" in err


def test_a_journal_that_cannot_be_created_fails_offline(
    tmp_path: Path, secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = write_config(tmp_path, state={"path": str(blocker / "state" / "amplify-billing.db")})
    code, out, err = cli(capsys, "--config", str(config), "config", "check", "--offline")
    assert code == 2
    assert "journal" in out and "fail" in out
    assert err == (
        f"Error: journal: state.path {blocker / 'state' / 'amplify-billing.db'}: cannot be created, {blocker} is not "
        "a writable directory; make it writable or point state.path at a writable place\n"
    )


def test_a_bad_usage_file_fails_offline_with_its_line(
    tmp_path: Path, secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    usage = tmp_path / "usage.csv"
    usage.write_text("subscription_id,quota_id,window_start,count\nsub-1,q-1,2026-11-01T00:00:00Z,-4\n")
    config = write_config(tmp_path, usage={"source": "file", "file_path": str(usage)})
    code, out, _err = cli(capsys, "--config", str(config), "--output", "json", "config", "check", "--offline")
    assert code == 2
    found = rows(out)["usage source"]
    assert found["result"] == "fail"
    assert found["detail"].startswith(f"{usage}:2: count: '-4' is not a whole number")

    usage.write_text("subscription_id,quota_id,window_start,count\nsub-1,q-1,2026-11-01T00:00:00Z,4\n")
    code, out, _ = cli(capsys, "--config", str(config), "--output", "json", "config", "check", "--offline")
    assert code == 0
    assert rows(out)["usage source"]["detail"] == f"usage file {usage}: 1 valid row(s)"


# ---- the custom field, pure --------------------------------------------------------------------------


def test_custom_field_definition_found_missing_or_editable() -> None:
    definition = {
        "name": "amplify_id",
        "related_type": "subscription",
        "display_name": "Amplify",
        "user_access": "api_only",
    }
    assert custom_field_check([{**definition, "user_access": "read_only"}], "amplify_id", "c.yaml") == (
        Level.OK,
        "subscription custom field amplify_id exists (display name 'Amplify', read_only)",
    )
    assert custom_field_check([definition], "amplify_id", "c.yaml") == (
        Level.OK,
        "subscription custom field amplify_id exists (display name 'Amplify', api_only); "
        "'Read only' would also show it to admin users",
    )
    level, detail = custom_field_check([{**definition, "user_access": "write"}], "amplify_id", "c.yaml")
    # the README and this check agree: user access governs the admin UI only, and Read only is recommended
    assert level is Level.WARN and detail.endswith(
        "admin users can edit it: set its User access to 'Read only' (user access governs Recurly's admin UI only: "
        "admins see the Amplify id, and only the API edits it)"
    )
    for others in (
        [{**definition, "related_type": "account"}],
        [{**definition, "deleted_at": "2026-01-01T00:00:00Z"}],
        [],
    ):
        with pytest.raises(ConfigError) as missing:
            custom_field_check(others, "amplify_id", "c.yaml")
        assert str(missing.value).startswith(
            "Recurly has no custom field 'amplify_id' on subscriptions (subscriptions.custom_field in c.yaml); "
            "Recurly's API cannot create one: in the Recurly admin UI open Configuration > Custom Fields"
        )


def test_exit_code_is_the_highest_of_the_failures() -> None:
    assert exit_code_for([Check("a", Level.OK, ""), Check("b", Level.WARN, "")]) == 0
    assert exit_code_for([Check("a", Level.FAIL, "", 2), Check("b", Level.FAIL, "", 3)]) == 3


# ---- online, against the sandbox ---------------------------------------------------------------------


def test_online_proves_each_credential_and_says_what_it_found(
    make_cycle: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    cycle = make_cycle(subscriptions=2, days=1)
    sandbox = cycle.sandbox
    config = sandbox.write_config(sandbox.state_dir / "config.yaml")
    marks = (len(sandbox.amplify.requests), len(sandbox.recurly.requests))
    code, out, err = cli(capsys, "--config", str(config), "--output", "json", "config", "check")
    assert (code, err) == (0, "")
    found = rows(out)
    products = ", ".join(sorted(cycle.scenario.opted_in_products))
    assert found["amplify"] == {
        "check": "amplify",
        "result": "ok",
        "detail": f"token issued to sandbox-client; tenant 100000000000001 answered; "
        f"{len(cycle.scenario.opted_in_products)} opted-in product(s): {products}",
    }
    assert found["recurly"]["detail"].startswith("site sandbox (id ")
    assert found["recurly"]["detail"].endswith("sandbox mode); test gateway, invoices are not charged")
    # the sandbox's definition is editable in the admin UI: it works, with a warning
    assert found["custom field"] == {
        "check": "custom field",
        "result": "warn",
        "detail": "subscription custom field amplify_subscription_id exists (display name 'amplify_subscription_id', "
        "write); admin users can edit it: set its User access to 'Read only' (user access governs Recurly's admin "
        "UI only: admins see the Amplify id, and only the API edits it)",
    }
    # cheap: the calls named, and nothing written anywhere
    amplify_calls = sandbox.amplify.requests[marks[0] :]
    recurly_calls = sandbox.recurly.requests[marks[1] :]
    assert [r.method for r in recurly_calls] == ["GET", "GET"]
    assert all(r.method in ("GET", "POST") for r in amplify_calls)
    assert len(amplify_calls) <= 2 + 1  # a token, one product listing (one page), at most one more page

    # the table names every check
    code, out, _ = cli(capsys, "--config", str(config), "config", "check")
    assert code == 0
    for name in ("configuration", "credentials", "journal", "usage source", "amplify", "recurly", "custom field"):
        assert name in out


def test_a_missing_custom_field_says_what_to_create(make_cycle: Any, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox = make_cycle(subscriptions=2, days=1).sandbox
    config = sandbox.write_config(sandbox.state_dir / "config.yaml", subscriptions={"custom_field": "amplify_sub"})
    code, _out, err = cli(capsys, "--config", str(config), "config", "check")
    assert code == 2
    assert "Field name (API name) 'amplify_sub'" in err
    assert err.startswith("Error: custom field: Recurly has no custom field 'amplify_sub' on subscriptions")


def test_refused_credentials_exit_3_and_the_other_system_is_still_checked(
    make_cycle: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = make_cycle(subscriptions=2, days=1).sandbox
    config = sandbox.write_config(sandbox.state_dir / "config.yaml", recurly={"api_key": "not-the-key"})
    code, out, err = cli(capsys, "--config", str(config), "--output", "json", "config", "check")
    assert code == 3
    found = rows(out)
    assert found["amplify"]["result"] == "ok"
    assert found["recurly"]["result"] == "fail" and "Recurly refused the API key" in found["recurly"]["detail"]
    assert found["custom field"] == {
        "check": "custom field",
        "result": "skipped",
        "detail": "Recurly not reachable (see above)",
    }
    assert "not-the-key" not in out + err

    config = sandbox.write_config(sandbox.state_dir / "config.yaml", amplify={"client_secret": "wrong"})
    code, out, err = cli(capsys, "--config", str(config), "--output", "json", "config", "check")
    assert code == 3
    found = rows(out)
    assert (
        found["amplify"]["result"] == "fail" and "refused the service-account credentials" in found["amplify"]["detail"]
    )
    assert found["recurly"]["result"] == "ok"
