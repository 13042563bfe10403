"""A secret an upstream echoes back in an error body is never printed nor kept (issue 14, "Show").

Each of the four systems the tool talks to (Amplify's token endpoint, Amplify's API, the Platform API and
Recurly) answers with an error whose body quotes the configured credentials, under every combination of
``--output table|json``, ``--log-format text|json`` and ``--verbose``. The secrets must appear in none of stdout,
stderr, the journal (every table), a crash report or the metrics file; under ``--log-format json`` every stderr
line is a JSON document. One more row turns the echoed text into an unexpected exception (a bug), so that a
crash report is written and checked too.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from amplify_billing.cli import run_cli
from amplify_billing.redact import forget_secrets
from amplify_billing.sandbox.harness import SANDBOX_CLIENT_SECRET, SANDBOX_RECURLY_KEY
from amplify_billing.sandbox.recurly_wire import RecurlyProblem
from amplify_billing.sandbox.server import Request, Response

SECRETS = (SANDBOX_CLIENT_SECRET, SANDBOX_RECURLY_KEY)
ECHO = f"invalid credentials {SANDBOX_CLIENT_SECRET} for key {SANDBOX_RECURLY_KEY}"


def _idp(raw: Request) -> Response | None:
    if raw.method == "POST" and raw.path.endswith("/openid-connect/token"):
        return Response(401, {"error": "invalid_client", "error_description": ECHO})
    return None


def _amplify_api(raw: Request) -> Response | None:
    # a write (the plan's link attribute), so the failure is audited in the journal as well
    if raw.method == "PUT" and raw.path.startswith("/apis/"):
        return Response(400, {"errors": [{"status": 400, "title": "Bad Request", "detail": ECHO}]})
    return None


def _platform(raw: Request) -> Response | None:
    if raw.path.startswith("/api/v1/"):
        return Response(400, {"success": False, "message": ECHO, "code": 400})
    return None


def _recurly(raw: Request) -> Response | None:
    if raw.method == "POST":
        return Response(422, RecurlyProblem(422, "validation", ECHO).body())
    return None


# system -> (which emulator, the echoing answer for the requests it replaces)
ECHOES: dict[str, tuple[str, Callable[[Request], Response | None]]] = {
    "amplify-token": ("amplify", _idp),
    "amplify-api": ("amplify", _amplify_api),
    "platform": ("amplify", _platform),
    "recurly": ("recurly", _recurly),
}


def _echo_from(emulator: Any, answer: Callable[[Request], Response | None], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every route of ``emulator`` answers with the echo where ``answer`` gives one (the emulator's own headers,
    rate limits and request log stay as they are)."""

    def echoing(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        return lambda request: answer(request) or handler(request)

    routes = [dataclasses.replace(route, handler=echoing(route.handler)) for route in emulator._routes]
    monkeypatch.setattr(emulator, "_routes", routes)


def _journal_text(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return "\n".join(db.iterdump())


@pytest.fixture(autouse=True)
def _forget_secrets() -> Any:
    yield
    forget_secrets()


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("output", ["table", "json"])
@pytest.mark.parametrize("system", [*ECHOES, "bug"])
def test_an_echoed_secret_is_in_no_output(
    system: str,
    output: str,
    log_format: str,
    verbose: bool,
    small_sandbox: tuple[Any, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox, config = small_sandbox
    monkeypatch.chdir(tmp_path)  # a crash before the settings load would write its report here
    if system == "bug":
        import amplify_billing.recurly.transport as transport

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"unexpected answer: {ECHO}")

        _echo_from(sandbox.recurly, _recurly, monkeypatch)
        monkeypatch.setattr(transport, "error_text", broken)
    else:
        which, answer = ECHOES[system]
        _echo_from(getattr(sandbox, which), answer, monkeypatch)
    metrics = tmp_path / "amplify_billing.prom"
    args = ["--config", str(config), "--output", output, "--log-format", log_format, "--metrics-file", str(metrics)]
    code = run_cli([*args, *(["--verbose"] if verbose else []), "run"])
    out, err = capsys.readouterr()

    # a Platform error is a finding about the owner (its account is not created); the others fail the run
    assert code != 0 or system == "platform"
    kept = {
        "stdout": out,
        "stderr": err,
        "journal": _journal_text(tmp_path / "amplify-billing.db"),
        "metrics": metrics.read_text() if metrics.exists() else "",
        **{f"crash report {p.name}": p.read_text() for p in tmp_path.glob("crash-*.txt")},
    }
    leaks = [where for where, text in kept.items() for secret in SECRETS if secret in text]
    assert leaks == []
    assert "<hidden>" in out + err, "the error itself is still shown, redacted"
    if system == "bug":
        assert any(name.startswith("crash report") for name in kept)
    if system in ("amplify-api", "recurly"):
        assert "<hidden>" in kept["journal"], "the failed write is audited, redacted"
    if log_format == "json":
        for line in err.splitlines():
            assert isinstance(json.loads(line), dict), f"not a JSON line on stderr: {line!r}"
