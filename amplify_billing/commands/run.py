"""run: the four commands in order in one process, sharing one Runtime (and so one set of listings)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from amplify_billing.backlog import NOT_STARTED
from amplify_billing.changes import CommandReport
from amplify_billing.commands.link_accounts import link_accounts
from amplify_billing.commands.options import SyncOptions
from amplify_billing.commands.report_usage import UsageOptions, report_usage
from amplify_billing.commands.sync_plans import SyncPlansOptions, sync_plans
from amplify_billing.commands.sync_subscriptions import sync_subscriptions
from amplify_billing.errors import AmplifyBillingError, LockHeldError
from amplify_billing.render.diagnostics import console_line
from amplify_billing.runtime import Runtime

log = logging.getLogger(__name__)

Recorder = Callable[[Runtime, str, bool, Callable[[int | None], CommandReport]], CommandReport]


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    exit_code: bool = False
    force: bool = False


def run_all(rt: Runtime, options: RunOptions, recorded: Recorder) -> list[CommandReport]:
    """Each step gets its own entry in the run history; a step that cannot run stops the ones after it."""
    sync = SyncOptions(dry_run=options.dry_run, exit_code=options.exit_code, force=options.force)
    steps: list[tuple[str, Callable[[int | None], CommandReport]]] = [
        (
            "sync-plans",
            lambda run_id: sync_plans(
                rt,
                SyncPlansOptions(dry_run=options.dry_run, exit_code=options.exit_code, force=options.force),
                run_id=run_id,
            ),
        ),
        # sync-subscriptions writes the account link together with the uuid: one Amplify PUT, not two
        ("link-accounts", lambda run_id: link_accounts(rt, replace(sync, account_links=False), run_id=run_id)),
        ("sync-subscriptions", lambda run_id: sync_subscriptions(rt, sync, run_id=run_id)),
        (
            "report-usage",
            lambda run_id: report_usage(
                rt,
                UsageOptions(dry_run=options.dry_run, exit_code=options.exit_code, force=options.force),
                run_id=run_id,
            ),
        ),
    ]
    reports: list[CommandReport] = []
    for index, (name, step) in enumerate(steps):
        if rt.deadline is not None and rt.monotonic() >= rt.deadline:
            left = ", ".join(n for n, _ in steps[index:])
            reports.append(
                CommandReport(
                    name, options.dry_run, (), exit_code=0, note=f"{NOT_STARTED} ({left} left for the next run)"
                )
            )
            break
        try:
            reports.append(recorded(rt, name, options.dry_run, step))
        except LockHeldError:
            raise
        except AmplifyBillingError as error:
            # the later steps build on this one (plans before subscriptions before usage): stop here
            log.error("%s stopped: %s", name, error)
            console_line(f"Error: {name}: {error}")  # redacted; a JSON record under --log-format json
            rest = ", ".join(n for n, _ in steps[index + 1 :])
            reports.append(
                CommandReport(
                    name,
                    options.dry_run,
                    (),
                    exit_code=int(error.exit_code),
                    note=f"stopped: {error}" + (f"; not run: {rest}" if rest else ""),
                )
            )
            break
    return reports
