"""run: the four commands in order in one process, sharing one Runtime (and so one set of listings).

The whole cycle is planned before its first write (docs/architecture.md, "Dry run and the whole cycle"): every
phase is planned on the overlays, each against the state the earlier phases' planned changes would leave, and
the safety valve judges that whole plan. A dry run stops there and shows it. A real run then applies phase by
phase, each re-planned against the real state (a write's answer, a new uuid, is known only then)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from amplify_billing import safety
from amplify_billing.backlog import NOT_STARTED
from amplify_billing.changes import ChangeSet, CommandReport
from amplify_billing.commands.link_accounts import link_accounts
from amplify_billing.commands.options import SyncOptions
from amplify_billing.commands.report_usage import UsageOptions, report_usage
from amplify_billing.commands.sync_invoices import InvoiceOptions, sync_invoices
from amplify_billing.commands.sync_plans import SyncPlansOptions, sync_plans
from amplify_billing.commands.sync_subscriptions import sync_subscriptions
from amplify_billing.errors import AmplifyBillingError, LockHeldError, SafetyValveError
from amplify_billing.render.diagnostics import console_line
from amplify_billing.runtime import Runtime

log = logging.getLogger(__name__)

Recorder = Callable[[Runtime, str, bool, Callable[[int | None], CommandReport]], CommandReport]
Step = tuple[str, Callable[[int | None], CommandReport]]


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    exit_code: bool = False
    force: bool = False


def _steps(rt: Runtime, options: RunOptions) -> list[Step]:
    dry_run, exit_code, force = options.dry_run, options.exit_code, options.force
    sync = SyncOptions(dry_run=dry_run, exit_code=exit_code, force=force)
    plans = SyncPlansOptions(dry_run=dry_run, exit_code=exit_code, force=force)
    usage = UsageOptions(dry_run=dry_run, exit_code=exit_code, force=force)
    invoicing = InvoiceOptions(dry_run=dry_run, exit_code=exit_code, force=force)
    return [
        ("sync-plans", lambda run_id: sync_plans(rt, plans, run_id=run_id)),
        # sync-subscriptions writes the account link together with the uuid: one Amplify PUT, not two
        ("link-accounts", lambda run_id: link_accounts(rt, replace(sync, account_links=False), run_id=run_id)),
        ("sync-subscriptions", lambda run_id: sync_subscriptions(rt, sync, run_id=run_id)),
        ("report-usage", lambda run_id: report_usage(rt, usage, run_id=run_id)),
    ] + (
        # only where a Marketplace is invoiced: in recurly mode the step would say "nothing to invoice" every run
        [("sync-invoices", lambda run_id: sync_invoices(rt, invoicing, run_id=run_id))]
        if rt.settings.billing.any_invoiced
        else []
    )


def run_all(rt: Runtime, options: RunOptions, recorded: Recorder) -> list[CommandReport]:
    """Each step gets its own entry in the run history; a step that cannot run stops the ones after it."""
    if options.dry_run:
        reports = _run_steps(rt, _steps(rt, options), options, recorded)
        refused = judge_cycle(rt, rt.planned_sets, options)
        if refused and reports:
            note = f"a real run would refuse the whole cycle before its first write: {refused}"
            reports[0] = replace(reports[0], note="; ".join(n for n in (reports[0].note, note) if n))
        return reports
    try:
        _judge_whole_plan(rt, options)
    except SafetyValveError as error:
        return [_stopped(rt, "run", options, error, "nothing was written; not run: " + ", ".join(_names(rt)))]
    return _run_steps(rt, _steps(rt, options), options, recorded)


def _judge_whole_plan(rt: Runtime, options: RunOptions) -> None:
    """Plan every phase on the overlays (no write, no run row), then let the valve judge it all."""
    planning = replace(options, dry_run=True)
    try:
        rt.claim_journal()
        for _name, step in _steps(rt, planning):
            rt.plan_on_overlays()
            step(None)
    except AmplifyBillingError as error:
        # the real pass meets the same error at the same step and reports it (a journal of another site: at its
        # first step, before anything is read from Amplify); judge what was planned before it
        log.info("planning the cycle stopped early: %s", error)
    finally:
        plan = rt.stop_planning()
    refused = judge_cycle(rt, plan, options)
    if refused:
        raise SafetyValveError(refused)


def judge_cycle(rt: Runtime, plan: Sequence[ChangeSet], options: RunOptions) -> str | None:
    """Refused if any phase alone would be, or the phases together: no phase of a real run then stops at the valve
    after an earlier one wrote."""
    candidates: list[Sequence[ChangeSet]] = [[s] for s in plan] + [plan]
    for candidate in candidates:
        reason = safety.refusal(candidate, rt.settings.safety, force=options.force)
        if reason:
            return reason
    return None


def _names(rt: Runtime) -> list[str]:
    return [name for name, _ in _steps(rt, RunOptions())]


def _run_steps(rt: Runtime, steps: list[Step], options: RunOptions, recorded: Recorder) -> list[CommandReport]:
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
            rest = ", ".join(n for n, _ in steps[index + 1 :])
            reports.append(_stopped(rt, name, options, error, f"not run: {rest}" if rest else ""))
            break
    return reports


def _stopped(rt: Runtime, name: str, options: RunOptions, error: AmplifyBillingError, rest: str) -> CommandReport:
    log.error("%s stopped: %s", name, error)
    console_line(f"Error: {name}: {error}")  # redacted; a JSON record under --log-format json
    note = f"stopped: {error}" + (f"; {rest}" if rest else "")
    return CommandReport(name, options.dry_run, (), exit_code=int(error.exit_code), note=note)
