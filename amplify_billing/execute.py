"""What every command shares: a ChangeSet into results (dry or applied), the report, its exit code, and the
journal's run row."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from amplify_billing import interrupt, safety
from amplify_billing.actions import Action
from amplify_billing.apply import DEADLINE_SKIP, Applier, Handler
from amplify_billing.changes import REPORT_ONLY, Change, ChangeKind, ChangeResult, ChangeSet, CommandReport, Outcome
from amplify_billing.collaborators import Engine, Recording
from amplify_billing.errors import ExitCode
from amplify_billing.plan_overlay import planned_id


class _NoAudit:
    """Planning writes no audit rows: nothing is written."""

    def audit(self, run_id: int, system: str, action: str, key: str, **_: Any) -> None:
        return None


def execute(
    rt: Engine,
    changeset: ChangeSet,
    *,
    dry_run: bool,
    force: bool,
    run_id: int | None,
    handlers: Mapping[type[Action], Handler] | None = None,
) -> tuple[list[ChangeResult], str | None]:
    """Dry run: the plan applied to the overlays (``Engine.plan_on_overlays``), with what the safety valve would
    say. Otherwise: safety valve, then apply. Returns results and a note for the report."""
    if dry_run or rt.planning:
        return _plan(rt, changeset, force=force, handlers=handlers)
    safety.check(changeset, rt.settings.safety, force=force)
    assert run_id is not None
    applier = Applier(
        handlers=handlers or rt.handlers(),
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


def record(rt: Engine, command: str, changes: Sequence[Change], *, run_id: int | None) -> list[ChangeResult]:
    """Apply journal effects now (to the journal, or to its overlay while planning), audited like any write: the
    steps after them read what they recorded. Returns their results for the report."""
    if not changes:
        return []
    results, _note = execute(rt, ChangeSet.of(command, list(changes)), dry_run=rt.planning, force=True, run_id=run_id)
    return results


def _plan(
    rt: Engine, changeset: ChangeSet, *, force: bool, handlers: Mapping[type[Action], Handler] | None
) -> tuple[list[ChangeResult], str | None]:
    """Every write applied to the overlays, in the order and with the dependencies a real run has (so a later step
    plans against what this one would leave); reported as planned. Nothing reaches either system or the journal."""
    rt.plan_on_overlays()
    rt.planned_sets.append(changeset)
    refused = safety.refusal(changeset, rt.settings.safety, force=force)
    # never a command's own (real) handlers: an action the overlays do not model is recorded as planned, no more
    overlay = {kind: _planned_only for kind in (handlers or {})} | rt.handlers()
    applier = Applier(handlers=overlay, journal=_NoAudit(), run_id=0, planning=True)
    results = [_as_planned(r) for r in applier.apply(changeset)]
    return results, (f"a real run would stop here: {refused}" if refused else None)


def _planned_only(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
    return planned_id(key)


def _as_planned(result: ChangeResult) -> ChangeResult:
    if result.outcome is Outcome.APPLIED:
        return replace(result, outcome=Outcome.PLANNED, result_id=None)
    return result


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
    # Journal effects are counted, not listed: one line per watermark would bury the changes an operator reads.
    # One that failed (or was skipped after its own write) stays a result, and counts for the exit code.
    records = [r for r in results if _recorded(r)]
    results = [r for r in results if not _recorded(r)]
    return CommandReport(
        command=command,
        dry_run=dry_run,
        results=tuple(results),
        figures={**(figures or {}), "journal_records": len(records)},
        exit_code=exit_code_for(results, dry_run=dry_run, exit_code_flag=exit_code_flag),
        note=note,
    )


def _recorded(result: ChangeResult) -> bool:
    return result.change.kind is ChangeKind.RECORD and result.outcome in (Outcome.APPLIED, Outcome.PLANNED)


def recorded(rt: Recording, command: str, dry_run: bool, run: Callable[[int | None], CommandReport]) -> CommandReport:
    """Run one command body with its entry in the journal's run history (real runs only).

    First of all, the journal must be this Recurly site's and Amplify tenant's (exit 2 otherwise, with nothing read
    from Amplify nor written anywhere); a real run records them in a journal that has no owner yet."""
    started_at = rt.clock()
    if dry_run:
        rt.plan_on_overlays()  # checks the journal is ours; writes go to overlays from here on
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
