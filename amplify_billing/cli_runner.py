"""How the command line runs a command: the global options, settings, the runtime, the lock, the steps under the
run history with their acknowledged findings marked, and the report (``cli_output``).

``invoke`` runs a command that bills (its steps, each recorded in the journal's run history by ``execute.recorded``);
``read_only`` one that writes nothing (no lock, no history). Every command body in ``cli`` is one call of these.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from amplify_billing import interrupt
from amplify_billing.changes import CommandReport
from amplify_billing.cli_output import current, finish_command, interrupted_exit
from amplify_billing.crash import remember_state_directory
from amplify_billing.redact import register_secrets_of
from amplify_billing.settings import Settings

if TYPE_CHECKING:
    from amplify_billing.commands.run import Recorder
    from amplify_billing.runtime import Runtime


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


@dataclass
class GlobalOptions:
    config: Path | None
    output: OutputFormat
    log_format: LogFormat
    verbose: bool
    metrics_file: Path | None
    quiet: bool = False


def options_of(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    assert isinstance(obj, GlobalOptions)
    return obj


def load_configured_settings(options: GlobalOptions) -> Settings:
    from amplify_billing.settings import load_settings, resolve_config_path

    settings = load_settings(resolve_config_path(options.config, os.environ), os.environ)
    # from here on every output hides the settings' secrets, and a crash report goes beside the journal
    register_secrets_of(settings)
    remember_state_directory(settings.state.path)
    return settings


@dataclass(frozen=True)
class WriteFlags:
    """The options every command that writes takes."""

    dry_run: bool
    exit_code: bool
    force: bool


# One step of a command: the runtime and the journal's run id in, the step's report out.
Step = Callable[["Runtime", "int | None"], CommandReport]
# A command's steps: the runtime and the recorder (which runs one step under its run-history entry) in.
Steps = Callable[["Runtime", "Recorder"], list[CommandReport]]


def invoke(
    ctx: typer.Context, command: str, steps: Steps, flags: WriteFlags, *, max_duration: float | None = None
) -> int:
    """Load settings, take the lock (real runs only), run the steps, render, write metrics, exit code."""
    from amplify_billing.journal import RunLock
    from amplify_billing.render import make_console
    from amplify_billing.runtime import Runtime

    options = options_of(ctx)
    settings = load_configured_settings(options)
    rt = Runtime(settings, make_console(), make_console(stderr=True), output=_runtime_output(options))
    invocation = current()
    if invocation is not None:
        invocation.runtime = rt
    if max_duration is not None:
        rt.deadline = rt.monotonic() + max_duration
    lock = None if flags.dry_run else RunLock.acquire(settings.state.path, command, clock=rt.clock)
    interrupt.install()  # SIGINT/SIGTERM: no new request starts, the ones in flight finish
    try:
        reports = steps(rt, _acknowledging_recorder(flags))
        interrupt.uninstall()
        code = finish_command(rt, command, reports, output=options.output.value)
    finally:
        interrupt.uninstall()
        rt.close()
        if lock is not None:
            lock.release()
    if interrupt.requested():
        # the report is out; the last line says what was still sent after the signal
        return interrupted_exit([], commands=(), started=rt.clock(), document=False)
    return code


def _runtime_output(options: GlobalOptions) -> Literal["table", "json"]:
    # the runtime's display (progress on a terminal) knows table or json; markdown is a table's sibling
    return "json" if options.output is OutputFormat.json else "table"


def _acknowledging_recorder(flags: WriteFlags) -> Recorder:
    """``execute.recorded`` with the acknowledged findings of ``findings.acknowledge`` marked in each step's report,
    and its exit code computed without them, before the run history records it."""
    from amplify_billing.acknowledge import acknowledge_report
    from amplify_billing.execute import exit_code_for, recorded

    def record(rt: Runtime, command: str, dry_run: bool, run: Callable[[int | None], CommandReport]) -> CommandReport:
        def acknowledged(run_id: int | None) -> CommandReport:
            return acknowledge_report(
                run(run_id),
                rt.settings.findings.acknowledge,
                rt.clock().date(),
                lambda results: exit_code_for(results, dry_run=dry_run, exit_code_flag=flags.exit_code),
            )

        return recorded(rt, command, dry_run, acknowledged)

    return record


def one_step(ctx: typer.Context, command: str, flags: WriteFlags, step: Step) -> int:
    """A command of one step (the four): its report under one run-history entry."""
    return invoke(
        ctx, command, lambda rt, record: [record(rt, command, flags.dry_run, lambda run_id: step(rt, run_id))], flags
    )


def read_only(ctx: typer.Context, command: Callable[[Runtime, GlobalOptions], int]) -> int:
    """Settings, consoles and a Runtime for a command that writes nothing: no lock and no run history
    (the history is of runs that change things; a report or a check in it would only hide them)."""
    from amplify_billing.render import make_console
    from amplify_billing.runtime import Runtime

    options = options_of(ctx)
    settings = load_configured_settings(options)
    rt = Runtime(settings, make_console(), make_console(stderr=True), output=_runtime_output(options))
    try:
        return command(rt, options)
    finally:
        rt.close()


__all__ = [
    "GlobalOptions",
    "LogFormat",
    "OutputFormat",
    "Step",
    "Steps",
    "WriteFlags",
    "invoke",
    "load_configured_settings",
    "one_step",
    "options_of",
    "read_only",
]
