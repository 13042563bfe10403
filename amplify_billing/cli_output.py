"""What the command line leaves behind once a command ends: its report on stdout, the metrics file, and, when it
fails, one ``Error: …`` line on stderr with the exit code of DESIGN.md §7.

Under ``--output json`` a failure is also a JSON document on stdout: the report envelope with ``error`` set
(``render.envelope``), so a script that parses stdout always gets one document. An unexpected exception exits 70
with a crash report (``crash``). Every line passes ``redact`` first.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from typer.exceptions import TyperException

from amplify_billing import interrupt
from amplify_billing.backlog import stopped_line
from amplify_billing.changes import CommandReport
from amplify_billing.crash import handle_crash, redacted_traceback
from amplify_billing.errors import AmplifyBillingError, ExitCode
from amplify_billing.interrupt import Interrupted
from amplify_billing.redact import redact
from amplify_billing.render.diagnostics import console_line

if TYPE_CHECKING:
    from amplify_billing.runtime import Runtime

log = logging.getLogger("amplify_billing")

INTERRUPTED_LINE = "Interrupted; nothing more was written. Run again to finish."


# ---- after a command ran ------------------------------------------------------------------------------------


def finish_command(
    rt: Runtime,
    command: str,
    reports: Sequence[CommandReport],
    *,
    output: str,
    metrics_file: Path | None,
    duration: float,
) -> int:
    """Render the reports, write the metrics file when asked, and return the worst exit code."""
    from amplify_billing.render import render_report, render_reports

    if reports:
        if command == "run":
            render_reports(rt.console, reports, output=output)
        else:
            for report in reports:
                render_report(rt.console, report, output=output)
    now = datetime.now(UTC)
    stopped = stopped_line(reports, now, started=now - timedelta(seconds=duration))
    if stopped is not None:
        # the run ends cleanly (exit 0); the report and the diagnostics both say what was left and how old it is
        if output == "table":
            rt.console.print(stopped, markup=False, highlight=False, soft_wrap=True)
        log.warning("%s", stopped)
    code = max((int(r.exit_code) for r in reports), default=int(ExitCode.OK))
    if metrics_file is not None and reports:
        try:
            _write_metrics(rt, metrics_file, reports, duration, code)
        except AmplifyBillingError as error:
            # the run's own outcome stands; a stale metrics file is what the alert on
            # last_success_timestamp catches, and this line says why
            log.error("metrics not written: %s", error)
    return code


def _write_metrics(rt: Runtime, path: Path, reports: Sequence[CommandReport], duration: float, code: int) -> None:
    from amplify_billing.metrics import write_metrics

    now = datetime.now(UTC)
    last_success = now if code == 0 else None
    if last_success is None:
        try:
            successes = [r for r in rt.journal().recent_runs(200) if r.exit_code == 0 and r.finished_at]
            last_success = max((r.finished_at for r in successes if r.finished_at), default=None)
        except AmplifyBillingError:
            last_success = None
    write_metrics(
        path,
        reports,
        duration_seconds=duration,
        exit_code=code,
        api_calls=rt.api_calls(),
        retries=rt.retries(),
        now=now,
        last_success=last_success,
    )


# ---- when a command failed ----------------------------------------------------------------------------------


def failure_exit(raised: BaseException, args: Sequence[str], *, commands: Collection[str], started: datetime) -> int:
    """The one handler: an exception out of the command line becomes its line(s), its document and exit code."""
    if isinstance(raised, typer.Exit):
        return int(raised.exit_code)
    if isinstance(raised, typer.Abort | KeyboardInterrupt | Interrupted):
        return interrupted_exit(args, commands=commands, started=started)
    as_json = json_logs_requested(args)
    if isinstance(raised, TyperException):
        # a usage error (unknown option, bad value): typer's own message, with the usage line
        message, code = raised.format_message(), int(ExitCode.CONFIG)
        said = io.StringIO()
        show = getattr(raised, "show", None)
        if callable(show):
            show(file=said)
        else:
            said.write(f"Error: {message}\n")
        console_line(said.getvalue().strip("\n"), as_json=as_json)
    elif isinstance(raised, AmplifyBillingError):
        # an upstream error may echo a credential back: the one redaction point applies
        message, code = redact(str(raised)), int(raised.exit_code)
        trace = redacted_traceback(raised) if _verbose(args) else ""
        console_line(f"Error: {message}", traceback=trace, as_json=as_json)
    else:
        # exit 70, not 1: 1 means "some changes failed", which an operator handles differently from a bug
        said = io.StringIO()
        code = handle_crash(raised, argv=list(args), verbose=_verbose(args), stderr=said)
        lines = said.getvalue().rstrip("\n").splitlines()
        message = lines[-1]
        console_line(message, level=logging.CRITICAL, traceback="\n".join(lines[:-1]), as_json=as_json)
    _error_document(args, commands=commands, started=started, error=message, code=code)
    return code


def interrupted_exit(
    args: Sequence[str], *, commands: Collection[str], started: datetime, document: bool = True
) -> int:
    """Exit 130 with the line that says what the interrupted command still sent (``interrupt.summary``) and,
    when asked (``document``: the command left no report), the error envelope."""
    line = interrupt.summary() if interrupt.requested() else INTERRUPTED_LINE
    console_line(line, level=logging.WARNING, as_json=json_logs_requested(args) if args else None)
    code = int(ExitCode.INTERRUPTED)
    if document:
        _error_document(args, commands=commands, started=started, error=line, code=code)
    return code


def _error_document(
    args: Sequence[str], *, commands: Collection[str], started: datetime, error: str, code: int
) -> None:
    """Under --output json, the error envelope on stdout as well (the report a script parses did not come)."""
    if not json_requested(args):
        return
    from amplify_billing.render.envelope import envelope_json, error_envelope

    envelope = error_envelope(
        command_named(args, commands),
        dry_run="--dry-run" in args,
        exit_code=code,
        error=error,
        started_at=started,
        finished_at=datetime.now(UTC),
    )
    sys.stdout.write(envelope_json(envelope) + "\n")
    sys.stdout.flush()


def json_requested(args: Sequence[str]) -> bool:
    """Whether the arguments ask for --output json (read from the raw arguments: parsing may be what failed)."""
    for index, arg in enumerate(args):
        if arg in ("--output", "-o") and index + 1 < len(args) and args[index + 1] == "json":
            return True
        if arg in ("--output=json", "-ojson", "-o=json"):
            return True
    return False


def json_logs_requested(args: Sequence[str]) -> bool:
    """Whether the arguments ask for --log-format json (read from the raw arguments, like ``json_requested``)."""
    for index, arg in enumerate(args):
        if arg == "--log-format" and index + 1 < len(args) and args[index + 1] == "json":
            return True
        if arg == "--log-format=json":
            return True
    return False


def command_named(args: Sequence[str], commands: Collection[str]) -> str:
    """The command the arguments name; ``amplify-billing`` when none is recognised."""
    return next((arg for arg in args if arg in commands), "amplify-billing")


def _verbose(args: Sequence[str]) -> bool:
    return "--verbose" in args or "-v" in args


__all__ = [
    "INTERRUPTED_LINE",
    "command_named",
    "failure_exit",
    "finish_command",
    "interrupted_exit",
    "json_logs_requested",
    "json_requested",
]
