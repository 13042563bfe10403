"""What every command shares: a ChangeSet into results (dry or applied), the report, its exit code, and the
journal's run row."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from amplify_billing import interrupt, safety
from amplify_billing.actions import Action
from amplify_billing.amplify.executor import amplify_handlers
from amplify_billing.apply import DEADLINE_SKIP, Applier, Handler, planned
from amplify_billing.changes import REPORT_ONLY, ChangeResult, ChangeSet, CommandReport, Outcome
from amplify_billing.errors import ExitCode
from amplify_billing.journal_effects import journal_handlers
from amplify_billing.recurly.executor import recurly_handlers, usage_handlers
from amplify_billing.runtime import Runtime


def default_handlers(rt: Runtime) -> dict[type[Action], Handler]:
    """Every executor, each reaching its client or the journal only when a write needs it."""
    return {
        **recurly_handlers(rt.recurly),
        **usage_handlers(rt.recurly, rt.journal, rt.clock),
        **amplify_handlers(lambda: rt.amplify().resources),
        **journal_handlers(rt.journal),
    }


def execute(
    rt: Runtime,
    changeset: ChangeSet,
    *,
    dry_run: bool,
    force: bool,
    run_id: int | None,
    handlers: Mapping[type[Action], Handler] | None = None,
) -> tuple[list[ChangeResult], str | None]:
    """Dry run: plan. Otherwise: safety valve, then apply. Returns results and a note for the report."""
    if dry_run:
        return planned(changeset), None
    safety.check(changeset, rt.settings.safety, force=force)
    assert run_id is not None
    applier = Applier(
        handlers=handlers or default_handlers(rt),
        journal=rt.journal(),
        run_id=run_id,
        deadline=rt.deadline,
        monotonic=rt.monotonic,
        concurrency=rt.settings.recurly.concurrency,
        on_progress=rt.display.progress(changeset),
    )
    try:
        results = applier.apply(changeset)
    finally:
        rt.display.done()
    note = None
    if applier.stopped_early:
        left = sum(1 for r in results if r.outcome is Outcome.SKIPPED)
        note = f"stopped at the deadline (--max-duration); {left} change(s) left for the next run"
    return results, note


def exit_code_for(results: list[ChangeResult], *, dry_run: bool, exit_code_flag: bool) -> int:
    if any(r.outcome is Outcome.FAILED for r in results):
        return int(ExitCode.PARTIAL_FAILURE)
    if not dry_run and any(r.outcome is Outcome.REPORTED and r.change.withholds for r in results):
        # money was held back for want of a complete read: as serious as a failed change, never exit 0
        return int(ExitCode.PARTIAL_FAILURE)
    if exit_code_flag:
        pending = any(r.outcome is Outcome.PLANNED for r in results) or any(
            r.change.kind in REPORT_ONLY for r in results
        )
        if pending:
            return int(ExitCode.REFUSED)
    if any(r.outcome is Outcome.SKIPPED and r.error != DEADLINE_SKIP for r in results) and not dry_run:
        # skipped because a prerequisite failed: not done, say so (work left at the deadline is the next run's)
        return int(ExitCode.PARTIAL_FAILURE)
    return int(ExitCode.OK)


def make_report(
    command: str,
    results: list[ChangeResult],
    *,
    dry_run: bool,
    exit_code_flag: bool,
    note: str | None = None,
    figures: Mapping[str, int | str] | None = None,
) -> CommandReport:
    return CommandReport(
        command=command,
        dry_run=dry_run,
        results=tuple(results),
        figures=dict(figures or {}),
        exit_code=exit_code_for(results, dry_run=dry_run, exit_code_flag=exit_code_flag),
        note=note,
    )


def recorded(rt: Runtime, command: str, dry_run: bool, run: Callable[[int | None], CommandReport]) -> CommandReport:
    """Run one command body with its entry in the journal's run history (real runs only).

    First of all, the journal must be this Recurly site's and Amplify tenant's (exit 2 otherwise, with nothing read
    from Amplify nor written anywhere); a real run records them in a journal that has no owner yet."""
    started_at = rt.clock()
    if dry_run:
        rt.check_journal()
        with rt.display.activity(f"{command}: reading Amplify and Recurly (dry run)"):
            return replace(run(None), started_at=started_at, finished_at=rt.clock())
    journal = rt.claim_journal()
    run_id = journal.start_run(command, dry_run)
    report: CommandReport | None = None
    try:
        with rt.display.activity(f"{command}: reading Amplify and Recurly"):
            report = replace(run(run_id), run_id=run_id, started_at=started_at, finished_at=rt.clock())
        return report
    finally:
        code = report.exit_code if report is not None else int(ExitCode.PARTIAL_FAILURE)
        if interrupt.requested():
            code = int(ExitCode.INTERRUPTED)  # the run row says the run was interrupted, not that it failed
        counts: dict[str, int | str] = {k: v for k, v in (report.figures.items() if report else ())}
        if report is not None:
            for result in report.results:
                key = f"{result.change.kind.value}_{result.outcome.value}"
                counts[key] = int(counts.get(key, 0)) + 1
        journal.finish_run(run_id, code, counts)
