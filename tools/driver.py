"""Drive the tool in-process against the sandbox on a virtual clock (tests, the demo, benchmarks).

The tool runs its production code (the real ``recurly`` client and ``requests`` over HTTP to the emulators);
only the clock is virtual, so a caller can create subscriptions on day 0 and report a week of traffic on day 7
within a second. Also: which requests an emulator saw were writes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from amplify_billing.changes import CommandReport, Outcome
from amplify_billing.runtime import Runtime
from amplify_billing.sandbox.clock import VirtualClock
from amplify_billing.sandbox.harness import Sandbox
from amplify_billing.sandbox.scenario import Scenario
from amplify_billing.sandbox.server import RecordedRequest

AMPLIFY_READ_POSTS = ("token", "traceability")


def recurly_writes(sandbox: Sandbox, since: int = 0) -> list[RecordedRequest]:
    return [r for r in sandbox.recurly.requests[since:] if r.method in ("POST", "PUT", "DELETE")]


def amplify_writes(sandbox: Sandbox, since: int = 0) -> list[RecordedRequest]:
    """PUTs, and POSTs other than the token request and the traceability search (which only read)."""
    return [
        r
        for r in sandbox.amplify.requests[since:]
        if r.method in ("PUT", "DELETE", "PATCH")
        or (r.method == "POST" and not any(word in r.route for word in AMPLIFY_READ_POSTS))
    ]


Body = Callable[[Runtime, int | None], CommandReport]


@dataclass
class Cycle:
    """Runs the tool's commands in-process against the sandbox on a virtual clock."""

    sandbox: Sandbox
    clock: VirtualClock
    scenario: Scenario
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    output: io.StringIO = field(default_factory=io.StringIO)

    def recurly_by_hand(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A request to the Recurly emulator as an operator in Recurly's UI or API would make it (not the tool's)."""
        import requests

        from amplify_billing.sandbox.harness import SANDBOX_RECURLY_KEY

        response = requests.request(
            method,
            self.sandbox.recurly.url + path,
            json=body,
            auth=(SANDBOX_RECURLY_KEY, ""),
            headers={"Accept": "application/vnd.recurly.v2021-02-25+json"},
            timeout=10,
        )
        assert response.status_code < 300, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def runtime(self) -> Runtime:
        console = Console(file=self.output, width=160, color_system=None)
        return Runtime(self.sandbox.settings(**self.overrides), console, console, clock=self.clock)

    def _go(self, name: str, dry_run: bool, body: Body) -> CommandReport:
        from amplify_billing.execute import recorded

        rt = self.runtime()
        try:
            return recorded(rt, name, dry_run, lambda run_id: body(rt, run_id))
        finally:
            rt.close()

    def sync_plans(self, *, dry_run: bool = False) -> CommandReport:
        from amplify_billing.commands.sync_plans import SyncPlansOptions, sync_plans

        options = SyncPlansOptions(dry_run=dry_run)
        return self._go("sync-plans", dry_run, lambda rt, run_id: sync_plans(rt, options, run_id=run_id))

    def link_accounts(self, *, dry_run: bool = False) -> CommandReport:
        from amplify_billing.commands.link_accounts import link_accounts
        from amplify_billing.commands.options import SyncOptions

        options = SyncOptions(dry_run=dry_run)
        return self._go("link-accounts", dry_run, lambda rt, run_id: link_accounts(rt, options, run_id=run_id))

    def sync_subscriptions(self, *, dry_run: bool = False) -> CommandReport:
        from amplify_billing.commands.options import SyncOptions
        from amplify_billing.commands.sync_subscriptions import sync_subscriptions

        options = SyncOptions(dry_run=dry_run)
        return self._go(
            "sync-subscriptions", dry_run, lambda rt, run_id: sync_subscriptions(rt, options, run_id=run_id)
        )

    def report_usage(self, *, dry_run: bool = False, **kwargs: Any) -> CommandReport:
        from amplify_billing.commands.report_usage import UsageOptions, report_usage

        options = UsageOptions(dry_run=dry_run, **kwargs)
        return self._go("report-usage", dry_run, lambda rt, run_id: report_usage(rt, options, run_id=run_id))

    def run(self, *, dry_run: bool = False) -> list[CommandReport]:
        from amplify_billing.commands.run import RunOptions, run_all
        from amplify_billing.execute import recorded

        rt = self.runtime()
        try:
            return run_all(rt, RunOptions(dry_run=dry_run), recorded)
        finally:
            rt.close()


def applied(report: CommandReport) -> list[tuple[str, str, str]]:
    return [
        (r.change.kind.value, r.change.object, r.change.recurly) for r in report.results if r.outcome is Outcome.APPLIED
    ]


def planned(report: CommandReport) -> list[tuple[str, str, str]]:
    return [
        (r.change.kind.value, r.change.object, r.change.recurly) for r in report.results if r.outcome is Outcome.PLANNED
    ]


def failed(report: CommandReport) -> list[str]:
    return [f"{r.change.action} {r.change.recurly}: {r.error}" for r in report.results if r.outcome is Outcome.FAILED]
