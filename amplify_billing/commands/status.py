"""status: a read-only reconciliation report of both systems and the journal.

What it shows: what is linked (plans, subscriptions), what drifted (everything a ``run --dry-run`` would
change or report, plus Recurly subscriptions no Amplify subscription claims), open journal intents, the
last run of each command, and usage per (subscription, quota) for the current billing period with
Amplify's count, the journal's reported total and (``--verify`` only) Recurly's records side by side.
Acknowledged findings (``findings.acknowledge``) are shown as such and keep it in step; ``--subscription``,
``--plan`` and ``--account`` narrow it to what they name.

``--offline`` shows the journal's view (last runs, links, open intents) and contacts nothing. When one system
cannot be read, status shows the journal's view and what the other system says, names what it could not read,
and exits 3.

The layers: ``gather.status`` (the only I/O) → ``StatusInputs`` → ``reconcile.status.build_status`` (pure)
→ ``StatusReport`` → ``render.status.render_status``. This module only parses the options and runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from amplify_billing.collaborators import Consoles
from amplify_billing.errors import ConfigError, ExitCode, UpstreamError
from amplify_billing.gather.status import StatusReads, gather_status, journal_view, readable_side
from amplify_billing.reconcile.status import StatusFilter, StatusReport, build_status
from amplify_billing.reconcile.status_offline import journal_status
from amplify_billing.render.status import render_status


class Status(StatusReads, Consoles, Protocol):
    """What status uses: its reads (``gather.status``) and the consoles its report and errors go to."""


@dataclass(frozen=True)
class StatusOptions:
    verify: bool = False
    exit_code: bool = False
    output: str = "table"
    quiet: bool = False
    offline: bool = False
    only: StatusFilter | None = None


def _report(rt: Status, options: StatusOptions) -> StatusReport:
    if options.offline:
        return journal_status(journal_view(rt), rt.clock(), only=options.only)
    try:
        gathered = gather_status(rt, verify=options.verify)
    except UpstreamError as error:
        # one system is down: the journal's view, what the other system says, and what could not be read
        extra, also = readable_side(rt, error.system)
        unavailable = [f"{error.system.capitalize()}: {error}", *also]
        return journal_status(journal_view(rt, extra), rt.clock(), unavailable=unavailable, only=options.only)
    report = build_status(gathered, rt.clock(), rules=rt.settings.findings.acknowledge, only=options.only)
    if options.only is not None and not any(
        s.rows for s in report.sections if s.name in ("plans", "subscriptions", "metered")
    ):
        raise ConfigError(
            f"status {options.only.describe()}: nothing matches; give an Amplify subscription id, an Amplify plan id "
            "(or its Recurly plan code) or a Recurly account code as `status` or `status --output json` shows them"
        )
    return report


def status(rt: Status, options: StatusOptions) -> int:
    """Gather, build, render; the exit code (4 with ``--exit-code`` when something is out of step; 3 when a system
    could not be read)."""
    started = rt.clock()
    report = _report(rt, options)
    code = int(ExitCode.UPSTREAM) if report.unavailable else report.exit_code(options.exit_code)
    render_status(rt.console, report, options.output, quiet=options.quiet, started_at=started, exit_code=code)
    for what in report.unavailable:
        rt.err_console.print(f"Error: could not read {what}", markup=False, highlight=False, soft_wrap=True)
    return code


__all__ = ["StatusFilter", "StatusOptions", "status"]
