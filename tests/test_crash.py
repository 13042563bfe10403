"""An unexpected exception as cron meets it: exit 70, one line on stderr, a private crash report with no secret.

Also the one redaction point every output goes through (error lines, logs, tracebacks, crash reports).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from amplify_billing import __version__
from amplify_billing.cli import run_cli
from amplify_billing.errors import ConfigError, ExitCode
from amplify_billing.redact import HIDDEN, forget_secrets, redact, register_secret, register_secrets_of
from amplify_billing.sandbox.harness import SANDBOX_CLIENT_SECRET, SANDBOX_RECURLY_KEY, Sandbox

CRASH_LINE = re.compile(
    r"amplify-billing: internal error \((?P<what>[^)]*)\); crash report: (?P<path>\S+); "
    r"please send it to the maintainers"
)


@pytest.fixture(autouse=True)
def no_secrets_left_behind() -> Iterator[None]:
    """The registry is process-wide: forget this test's secrets so they do not hide text in other tests."""
    yield
    forget_secrets()


@dataclass
class World:
    sandbox: Sandbox
    config: Path
    state_dir: Path

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run_cli(["--config", str(self.config), *args])
        out, err = capsys.readouterr()
        return code, out, err


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    sandbox = Sandbox.start(clock=lambda: datetime.now(UTC), state_dir=state_dir, seed=3)
    try:
        yield World(sandbox, sandbox.write_config(tmp_path / "config.yaml"), state_dir)
    finally:
        sandbox.stop()


def break_sync_plans(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    import amplify_billing.commands.sync_plans as module

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(module, "sync_plans", broken)


def crash_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("crash-*.txt"))


def test_an_unexpected_exception_exits_70_with_one_line_naming_a_private_crash_report(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    break_sync_plans(monkeypatch, RuntimeError(f"boom secret={SANDBOX_CLIENT_SECRET}"))

    code, out, err = world.cli(capsys, "sync-plans")

    assert code == ExitCode.INTERNAL == 70
    lines = err.splitlines()
    assert len(lines) == 1, err
    match = CRASH_LINE.fullmatch(lines[0])
    assert match is not None, lines[0]
    assert match["what"] == f"RuntimeError: boom secret={HIDDEN}"
    report = Path(match["path"])
    assert report.parent == world.state_dir
    assert re.fullmatch(r"crash-\d{8}T\d{6}Z-\d+(-\d+)?\.txt", report.name)
    assert crash_files(world.state_dir) == [report]
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    text = report.read_text(encoding="utf-8")
    assert f"amplify-billing {__version__}" in text
    assert re.search(r"^python: 3\.\d+", text, re.MULTILINE), text
    assert re.search(r"^command: amplify-billing --config \S+ sync-plans$", text, re.MULTILINE), text
    assert re.search(r"^time: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", text, re.MULTILINE), text
    assert "Traceback (most recent call last):" in text
    assert f"RuntimeError: boom secret={HIDDEN}" in text
    for secret in (SANDBOX_CLIENT_SECRET, SANDBOX_RECURLY_KEY):
        assert secret not in text and secret not in err and secret not in out
    assert "Traceback" not in out and "Traceback" not in err


def test_verbose_prints_the_redacted_traceback_as_well(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    break_sync_plans(monkeypatch, RuntimeError(f"boom secret={SANDBOX_CLIENT_SECRET}"))

    code, out, err = world.cli(capsys, "--verbose", "sync-plans")

    assert code == ExitCode.INTERNAL
    assert "Traceback (most recent call last):" in err
    assert f"RuntimeError: boom secret={HIDDEN}" in err
    assert CRASH_LINE.fullmatch(err.splitlines()[-1]), err
    assert SANDBOX_CLIENT_SECRET not in err + out
    assert len(crash_files(world.state_dir)) == 1


def test_an_unwritable_crash_report_puts_the_traceback_on_stderr_and_says_so(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import amplify_billing.crash as crash

    def refused(path: Path) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(crash, "_create_private_file", refused)
    break_sync_plans(monkeypatch, RuntimeError(f"boom secret={SANDBOX_CLIENT_SECRET}"))

    code, _, err = world.cli(capsys, "sync-plans")

    assert code == ExitCode.INTERNAL
    assert "Traceback (most recent call last):" in err
    assert f"RuntimeError: boom secret={HIDDEN}" in err
    last = err.splitlines()[-1]
    assert re.fullmatch(
        r"amplify-billing: internal error \(RuntimeError: boom secret=<hidden>\); no crash report "
        rf"\(cannot write {re.escape(str(world.state_dir))}/crash-\S+\.txt: Permission denied\), "
        r"the traceback is above; please send it to the maintainers",
        last,
    ), last
    assert SANDBOX_CLIENT_SECRET not in err
    assert crash_files(world.state_dir) == []


def test_a_crash_before_the_settings_load_writes_its_report_in_the_current_directory(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a first run loads the settings (and so knows the state directory); the second must not reuse it
    break_sync_plans(monkeypatch, RuntimeError("first"))
    assert world.cli(capsys, "sync-plans")[0] == ExitCode.INTERNAL
    import amplify_billing.settings as settings_module

    def broken_loader(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("amplify")

    monkeypatch.setattr(settings_module, "load_settings", broken_loader)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    code, _, err = world.cli(capsys, "sync-plans")

    assert code == ExitCode.INTERNAL
    match = CRASH_LINE.fullmatch(err.strip())
    assert match is not None, err
    assert match["what"] == "KeyError: 'amplify'"
    assert Path(match["path"]).parent == elsewhere
    assert crash_files(elsewhere) == [Path(match["path"])]


def test_an_expected_error_keeps_its_exit_code_and_hides_the_secret_it_echoes(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    break_sync_plans(monkeypatch, ConfigError(f"recurly refused key {SANDBOX_RECURLY_KEY}; fix recurly.api_key"))

    code, _, err = world.cli(capsys, "--verbose", "sync-plans")

    assert code == ExitCode.CONFIG
    assert err.splitlines()[-1] == f"Error: recurly refused key {HIDDEN}; fix recurly.api_key"
    assert "Traceback" in err, "--verbose shows the traceback of an expected error too"
    assert SANDBOX_RECURLY_KEY not in err
    assert crash_files(world.state_dir) == []


# ---- redact() ---------------------------------------------------------------------------------------------


def test_registered_values_are_hidden_longest_first_and_short_ones_are_not_searched_alone() -> None:
    register_secret("rk_live_9f8e7d6c5b4a")
    register_secret("rk_live_9f8e7d6c5b4a39281706")
    register_secret("abc")

    assert redact("key rk_live_9f8e7d6c5b4a39281706 and rk_live_9f8e7d6c5b4a") == f"key {HIDDEN} and {HIDDEN}"
    assert redact("Basic plan abcdef") == "Basic plan abcdef"


def test_forgotten_secrets_are_shown_again() -> None:
    register_secret("temporary-secret-value")
    forget_secrets()
    assert redact("temporary-secret-value") == "temporary-secret-value"


def test_a_pem_key_is_hidden_whole_and_line_by_line() -> None:
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    register_secret(f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
    assert redact(f"bad key line: {body}") == f"bad key line: {HIDDEN}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{'Authorization': 'Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig'}", "{'Authorization': 'Bearer <hidden>'}"),
        ("Authorization: Basic cmtfbGl2ZV85ZjhlN2Q2YzViNGE6", "Authorization: Basic <hidden>"),
        ("token bearer abcdefgh12345678", "token bearer <hidden>"),
        (
            "POST /auth client_secret=s3cr3t&grant_type=client_credentials",
            "POST /auth client_secret=<hidden>&grant_type=client_credentials",
        ),
        ("GET https://api:secretpw@example.com/x", "GET https://<hidden>@example.com/x"),
        ("?api_key=k123&x=1", "?api_key=<hidden>&x=1"),
        # a Recurly API key quoted in a dict or JSON document (a settings dump, a request echoed back)
        ("{'api_key': '83749879bbde395b5fe0cc1a5abf8e5b'}", "{'api_key': '<hidden>'}"),
        ('{"api_key": "83749879bbde395b5fe0cc1a5abf8e5b"}', '{"api_key": "<hidden>"}'),
        # ordinary text, ids and configuration errors about those keys are left alone
        ("Basic plan abcdef, bearer of news", "Basic plan abcdef, bearer of news"),
        ("config.yaml:12: recurly.api_key: expected a string", "config.yaml:12: recurly.api_key: expected a string"),
        ("subscription 8a2e8d6c7b9f4e1a8a2e8d6c7b9f4e1a", "subscription 8a2e8d6c7b9f4e1a8a2e8d6c7b9f4e1a"),
    ],
)
def test_credential_patterns_are_hidden_without_registration(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_registered_recurly_key_is_hidden_in_its_basic_auth_form_too() -> None:
    key = "83749879bbde395b5fe0cc1a5abf8e5b"
    register_secret(key)
    encoded = base64.b64encode(f"{key}:".encode()).decode()
    assert redact(f"headers {{'auth': '{encoded}'}}") == f"headers {{'auth': '{HIDDEN}'}}"


def test_the_secrets_of_loaded_settings_are_all_registered(world: World) -> None:
    from amplify_billing.settings import load_settings

    settings = load_settings(world.config, {})
    register_secrets_of(settings)

    assert redact(f"{SANDBOX_CLIENT_SECRET} {SANDBOX_RECURLY_KEY}") == f"{HIDDEN} {HIDDEN}"
    assert redact(str(world.state_dir)) == str(world.state_dir), "only secrets, not every setting"


def test_logs_in_text_and_json_go_through_the_same_redaction(capsys: pytest.CaptureFixture[str]) -> None:
    from amplify_billing.render import configure_logging

    register_secret("logged-secret-value")
    log = logging.getLogger("amplify_billing.test_crash")
    try:
        configure_logging(fmt="text", verbose=False)
        log.warning("text line with logged-secret-value")
        configure_logging(fmt="json", verbose=False)
        log.warning("json line with logged-secret-value", extra={"key": "idem-logged-secret-value"})
    finally:
        configure_logging(fmt="text", verbose=False)
    text_line, json_line = capsys.readouterr().err.splitlines()

    assert text_line.endswith(f" WARNING text line with {HIDDEN}")
    document = json.loads(json_line)
    assert (document["event"], document["key"]) == (f"json line with {HIDDEN}", f"idem-{HIDDEN}")
