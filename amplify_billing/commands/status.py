"""status: a read-only reconciliation report of both systems and the journal.

What it shows: what is linked (plans, subscriptions), what drifted (everything a ``run --dry-run`` would
change or report, plus Recurly subscriptions no Amplify subscription claims), open journal intents, the
last run of each command, and usage per (subscription, quota) for the current billing period with
Amplify's count, the journal's reported total and (``--verify`` only) Recurly's records side by side.

The layers: ``gather.status`` (the only I/O) → ``StatusInputs`` → ``reconcile.status.build_status`` (pure)
→ ``StatusReport`` → ``render.status.render_status``. This module only parses the options and runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from amplify_billing.errors import ConfigError
from amplify_billing.gather.status import gather_status
from amplify_billing.reconcile.status import build_status
from amplify_billing.render.status import StatusOutput, render_status
from amplify_billing.runtime import Runtime


def status_output(value: str) -> StatusOutput:
    for known in ("table", "json", "markdown"):
        if value == known:
            return known
    raise ConfigError(f"--format {value!r}: use table, json or markdown")


@dataclass(frozen=True)
class StatusOptions:
    verify: bool = False
    exit_code: bool = False
    output: StatusOutput = "table"


def status(rt: Runtime, options: StatusOptions) -> int:
    """Gather, build, render; the exit code (4 with ``--exit-code`` when something is out of step)."""
    report = build_status(gather_status(rt, verify=options.verify), rt.clock())
    render_status(rt.console, report, options.output)
    return report.exit_code(options.exit_code)


__all__ = ["StatusOptions", "StatusOutput", "status", "status_output"]
