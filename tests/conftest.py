"""Shared fixtures for end-to-end tests: both emulators on loopback, a seeded scenario, a virtual clock."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tools.driver import Cycle

# A fixed "today" keeps every end-to-end figure reproducible.
TODAY = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
# Recurly's own OpenAPI document, kept in the repository so the contract check always runs (tests/data/README.md
# says where it comes from and which version it is)
OPENAPI = Path(__file__).resolve().parent / "data" / "recurly-openapi.yaml"


@pytest.fixture
def today() -> datetime:
    return TODAY


class RecurlyContract:
    """Validates requests the Recurly emulator received against Recurly's own OpenAPI document.

    The operation must exist for the method and path, and query parameters and the JSON body must match their
    schemas. The document writes ``pattern`` as regex literals (``/^[a-z0-9_+-]+$/i``); they are turned into
    Python patterns first, else no code would ever match. A failure names the request and the schema errors.
    """

    def __init__(self, path: Path) -> None:
        import yaml
        from openapi_core import Config, OpenAPI

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        document = yaml.load(path.read_text(), Loader=loader)
        _python_patterns(document)
        _defaults_within_enums(document)
        # requests are matched by path only: the emulator's loopback address stands in for Recurly's servers
        document["servers"] = [{"url": "http://127.0.0.1"}]
        # the published document itself fails the spec validator (a default outside its enum): skip that check
        self.api = OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))
        self.checked = 0

    def violations(self, requests: list[Any]) -> list[str]:
        from openapi_core.testing import MockRequest

        problems: list[str] = []
        for r in requests:
            if r.path.startswith("/_sandbox") or _torn(r):
                continue
            query = {k: v[0] for k, v in r.query.items() if v}
            body = None if r.body is None else json.dumps(r.body)
            request = MockRequest(
                "http://127.0.0.1",
                # Recurly documents HEAD on every GET listing ("Counting with HEAD"); the document lists only the GET
                "get" if r.method == "HEAD" else r.method.lower(),
                r.path,
                args=query,
                data=body,
                content_type="application/json",
                headers={k: v for k, v in r.headers.items()},
            )
            self.checked += 1
            try:
                self.api.validate_request(request)
            except Exception as error:  # every openapi-core validation error, reported with its request
                cause = error.__cause__
                detail = [str(getattr(e, "message", e)) for e in getattr(cause, "schema_errors", ())] or [str(cause)]
                problems.append(f"{r.method} {r.path} {query or ''} {body or ''}: {error} {detail}")
        return problems


def _torn(request: Any) -> bool:
    """A request cut off by a SIGKILL of the client (the crash tests): fewer body bytes than it announced.

    It never reached Recurly as a request, so there is no contract to check; a whole request is always checked."""
    declared = next((v for k, v in request.headers.items() if k.lower() == "content-length"), None)
    if declared is None or not str(declared).isdigit() or not isinstance(request.body, str):
        return False
    return len(request.body.encode()) < int(declared)


def _defaults_within_enums(document: dict[str, Any]) -> None:
    """Drop a schema default that its own enum refuses (``InvoiceStateQueryParamEnum`` defaults to ``all``, not one
    of its values): the validator would put it in every request that leaves the parameter out, and then refuse it."""
    for schema in document.get("components", {}).get("schemas", {}).values():
        if (
            isinstance(schema, dict)
            and "enum" in schema
            and schema.get("default", schema["enum"][0]) not in schema["enum"]
        ):
            del schema["default"]


def _python_patterns(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                literal = re.fullmatch(r"/(.*)/([a-z]*)", value, re.S)
                if literal:
                    node[key] = ("(?i)" if "i" in literal.group(2) else "") + literal.group(1)
            else:
                _python_patterns(value)
    elif isinstance(node, list):
        for value in node:
            _python_patterns(value)


@pytest.fixture(scope="session")
def recurly_contract() -> RecurlyContract:
    """The contract check never skips: a missing document fails every test that needs it, saying what to do."""
    if not OPENAPI.is_file():
        pytest.fail(
            f"{OPENAPI} is missing: restore it (git checkout) or copy Recurly's OpenAPI document there, "
            "as tests/data/README.md describes",
            pytrace=False,
        )
    return RecurlyContract(OPENAPI)


def pytest_report_header() -> str:
    return f"Recurly contract check: every request to the Recurly emulator is validated against {OPENAPI}"


@pytest.fixture
def make_cycle(tmp_path: Path, recurly_contract: RecurlyContract | None) -> Iterator[Callable[..., Cycle]]:
    """``make_cycle(subscriptions=12, seed=3, days=7, today=TODAY, **config_overrides)``: a started, seeded sandbox
    whose clock stands ``days`` before ``today``; the sandbox modules are imported here so unit tests never depend on them."""
    from amplify_billing.sandbox.clock import VirtualClock
    from amplify_billing.sandbox.harness import Sandbox
    from amplify_billing.sandbox.scenario import build_scenario
    from tools.driver import Cycle

    started: list[Sandbox] = []

    def make(
        *,
        subscriptions: int = 12,
        seed: int = 3,
        days: int = 7,
        today: datetime = TODAY,
        **overrides: dict[str, Any],
    ) -> Cycle:
        clock = VirtualClock(today - timedelta(days=days))
        scenario = build_scenario(seed=seed, subscriptions=subscriptions, now=today, days_of_traffic=days)
        state = tmp_path / f"state-{len(started)}"
        state.mkdir()
        sandbox = Sandbox.start(clock=clock, state_dir=state, seed=seed)
        started.append(sandbox)
        scenario.seed_amplify(sandbox.amplify)
        return Cycle(sandbox, clock, scenario, dict(overrides))

    yield make
    for sandbox in started:
        sandbox.stop()
    if recurly_contract is not None:
        problems = [p for sandbox in started for p in recurly_contract.violations(list(sandbox.recurly.requests))]
        assert problems == [], "requests that break Recurly's OpenAPI contract:\n" + "\n".join(problems[:20])


@pytest.fixture
def small_sandbox(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """A running sandbox with 8 subscriptions and 2 days of traffic, and its config file: (sandbox, config)."""
    from amplify_billing.sandbox.harness import Sandbox
    from amplify_billing.sandbox.scenario import build_scenario

    now = datetime.now(UTC)
    sandbox = Sandbox.start(clock=lambda: datetime.now(UTC), state_dir=tmp_path, seed=5)
    build_scenario(seed=5, subscriptions=8, now=now, days_of_traffic=2).seed_amplify(sandbox.amplify)
    config = sandbox.write_config(tmp_path / "config.yaml")
    try:
        yield sandbox, config
    finally:
        sandbox.stop()
