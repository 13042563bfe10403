"""A connection problem exits 3 with one line that names the setting to check, without library text (issue 16):
a wrong base URL (a 404 where an API root must answer), a host name that does not resolve, a refused connection.

Run in-process against the sandbox. Name resolution is answered here (a ``.invalid`` name fails to resolve
without asking any resolver), and a refused connection goes to a loopback port nothing listens on.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest

import amplify_billing.amplify.transport as amplify_transport
from amplify_billing.cli import run_cli
from amplify_billing.errors import ExitCode
from amplify_billing.redact import forget_secrets

LIBRARY_TEXT = ("HTTPConnectionPool", "Max retries", "Errno", "NewConnectionError", "Caused by", "object at 0x")


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _amplify_at(base: str) -> dict[str, Any]:
    return {"amplify": {"central_url": base, "auth_url": f"{base}/auth", "platform_url": base}}


# case -> (config overrides from the sandbox's URLs, the one line expected on stderr)
def _cases(amplify: str, dead: str) -> dict[str, tuple[dict[str, Any], str]]:
    return {
        # the default api_version "auto" tries both catalog versions before it gives up
        "amplify-404": (
            {"amplify": {"central_url": f"{amplify}/not-central"}},
            r"Error: sync-plans: Amplify serves products at neither catalog/v1 nor catalog/v1alpha1 \(HTTP 404 at "
            r"both\); check amplify.central_url .*or set amplify.api_version",
        ),
        "amplify-404-pinned": (
            {"amplify": {"central_url": f"{amplify}/not-central", "api_version": "v1"}},
            r"Error: sync-plans: Amplify has no products listing at \S+/not-central/apis/catalog/v1/products \(HTTP 404\); "
            r"check amplify.central_url .* and amplify.api_version \(v1\)",
        ),
        "auth-404": (
            {"amplify": {"auth_url": f"{amplify}/not-auth"}},
            r"Error: sync-plans: the Axway IdP has no token endpoint at \S+ \(HTTP 404\); check amplify.auth_url and "
            r"amplify.realm .*",
        ),
        "amplify-dns": (
            _amplify_at("https://central.billing-test.invalid"),
            r"Error: sync-plans: Amplify at central.billing-test.invalid is unreachable: its host name does not "
            r"resolve \(DNS\); check amplify.auth_url and the network",
        ),
        "amplify-refused": (
            _amplify_at(dead),
            r"Error: sync-plans: Amplify at 127.0.0.1:\d+ is unreachable: the connection was refused .*; "
            r"check amplify.auth_url and the network",
        ),
        # a 404 on one team is trusted only once the Platform API's own listing answers at that base
        "platform-404": (
            {"amplify": {"platform_url": f"{amplify}/not-platform"}},
            r"Error: link-accounts: the Amplify Platform API is not at \S+/not-platform/api/v1 \(HTTP 404 on the team "
            r"listing\); check amplify.platform_url",
        ),
        "recurly-404": (
            {"recurly": {"api_url": amplify}},
            r"Error: sync-plans: Recurly's API is not at http://127.0.0.1:\d+: it answered GET sites with HTTP 404; "
            r"check recurly.api_url",
        ),
        "recurly-dns": (
            {"recurly": {"api_url": "https://api.billing-test.invalid"}},
            r"Error: sync-plans: Recurly at api.billing-test.invalid is unreachable: its host name does not resolve "
            r"\(DNS\) .*; check recurly.api_url and the network",
        ),
        "recurly-refused": (
            {"recurly": {"api_url": dead}},
            r"Error: sync-plans: Recurly at 127.0.0.1:\d+ is unreachable: the connection was refused .*; "
            r"check recurly.api_url and the network",
        ),
    }


CASES = list(_cases("", ""))


@pytest.fixture
def no_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    resolve = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(amplify_transport, "ATTEMPTS", 1)  # retries would only make the test slower


@pytest.mark.parametrize("case", CASES)
def test_a_connection_problem_exits_3_naming_the_setting(
    case: str, no_resolver: None, small_sandbox: tuple[Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    forget_secrets()  # another test's secret (a word such as "wrong") would hide part of a URL here
    sandbox, config = small_sandbox
    overrides, expected = _cases(sandbox.amplify.url, f"http://127.0.0.1:{_dead_port()}")[case]
    overrides.setdefault("recurly", {})["max_retries"] = 0
    sandbox.write_config(config, **overrides)
    code = run_cli(["--config", str(config), "run"])
    err = capsys.readouterr().err
    assert code == ExitCode.UPSTREAM
    error_lines = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1 and re.fullmatch(expected, error_lines[0]), error_lines
    assert not [text for text in LIBRARY_TEXT if text in error_lines[0]]


def test_a_team_gone_at_the_right_platform_url_stays_a_finding(
    small_sandbox: tuple[Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The other side of platform-404: the base URL proven by one team-listing request, a 404 on one team means
    that team is gone; its account waits with a finding naming the 404 and the rest of the run goes on."""
    sandbox, config = small_sandbox
    gone = next(iter(sandbox.amplify.platform.teams))
    del sandbox.amplify.platform.teams[gone]
    mark = len(sandbox.amplify.requests)
    code = run_cli(["--config", str(config), "run"])
    out = capsys.readouterr().out
    assert code == ExitCode.OK
    assert "its owner cannot be read from Amplify (Amplify has no " in out and f"team/{gone}" in out
    listings = [r for r in sandbox.amplify.requests[mark:] if r.path.endswith("/api/v1/team")]
    # the emulator knows no provider org: its Platform API answers "Org not found" in its own shape, which proves the
    # base URL as well as a page of teams would
    assert [r.route for r in listings] == ["platform_teams"], "one request proves the base URL"


def test_a_platform_api_that_refuses_the_service_account_exits_3_naming_the_role(
    small_sandbox: tuple[Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A 403 on a consumer's team is about the service account, not that owner: exit 3 with the role to give, not a
    'waiting' finding per account (exit 0) while no account can be made."""
    sandbox, config = small_sandbox
    sandbox.amplify.forbidden["consumers"] = "no access to consumers"
    code = run_cli(["--config", str(config), "run"])
    err = capsys.readouterr().err
    assert code == ExitCode.UPSTREAM
    [line] = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert line.startswith("Error: link-accounts: Amplify forbids GET ") and line.endswith(
        "the service account needs the organization's Administrator role on the Amplify Platform"
    ), line
