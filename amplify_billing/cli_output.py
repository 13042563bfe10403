"""What the command line leaves behind once a command ends: its report on stdout, the metrics file, and, when it
fails, one ``Error: …`` line on stderr with the exit code of DESIGN.md §7.

Under ``--output json`` a failure is also a JSON document on stdout: the report envelope with ``error`` set
(``render.envelope``), so a script that parses stdout always gets one document. An unexpected exception exits 70
with a crash report (``crash``). Every line passes ``redact`` first.

The metrics file (``--metrics-file``) is written on every exit of a command that bills (the four and ``run``):
its report's figures when there is one, else the exit code alone (a bad configuration, a held lock, Ctrl-C,
SIGTERM). ``last_success`` moves only when the whole invocation exited 0 and was no dry run; on every other exit it
is carried forward from the file as it was, so "the last success is stale" is true while runs keep failing.
"""

from __future__ import annotations

import io
import logging
import signal
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
# 128 + SIGTERM, as a shell reports a process that SIGTERM ended
TERMINATED = 128 + int(signal.SIGTERM)

# The commands that bill, and so write the metrics file; the others (status, config check, demo, sandbox) leave
# the last run's figures alone.
BILLING_COMMANDS = frozenset({"sync-plans", "link-accounts", "sync-subscriptions", "report-usage", "run"})


# ---- one invocation ------------------------------------------------------------------------------------------


@dataclass
class Invocation:
    """What the command line knows of the invocation under way, for its report and its metrics on any exit."""

    args: list[str]
    command: str
    started: datetime
    started_monotonic: float
    metrics_file: Path | None
    runtime: Runtime | None = None
    metrics_written: bool = False
    quiet: bool = False
    reports: list[CommandReport] = field(default_factory=list)

    @property
    def dry_run(self) -> bool:
        return "--dry-run" in self.args


_current: Invocation | None = None


def begin(args: Sequence[str], commands: Collection[str]) -> Invocation:
    """Start the record of an invocation (the previous in-process one is forgotten)."""
    global _current
    _current = Invocation(
        list(args), command_named(args, commands), datetime.now(UTC), time.monotonic(), _metrics_file(args)
    )
    return _current


def current() -> Invocation | None:
    return _current


# ---- after a command ran ------------------------------------------------------------------------------------


def finish_command(rt: Runtime, command: str, reports: Sequence[CommandReport], *, output: str) -> int:
    """Render the reports, write the metrics file when asked, and return the worst exit code."""
    from amplify_billing.render import render_command

    invocation = _current
    if reports:
        render_command(
            rt.console,
            command,
            reports,
            output=output,
            quiet=invocation.quiet if invocation else False,
            started_at=invocation.started if invocation else None,
        )
    now = datetime.now(UTC)
    started = invocation.started if invocation else now
    stopped = stopped_line(reports, now, started=started)
    if stopped is not None:
        # the run ends cleanly (exit 0); the report and the diagnostics both say what was left and how old it is
        if output == "table":
            rt.console.print(stopped, markup=False, highlight=False, soft_wrap=True)
        log.warning("%s", stopped)
    code = interrupted_code() if interrupt.requested() else max((int(r.exit_code) for r in reports), default=0)
    if invocation is not None and reports:
        invocation.reports = list(reports)
        write_exit_metrics(invocation, code)
    return code


def write_exit_metrics(invocation: Invocation, code: int) -> None:
    """The metrics file of this exit, once per invocation, when asked for and the command bills."""
    path = invocation.metrics_file
    if path is None or invocation.metrics_written or invocation.command not in BILLING_COMMANDS | {"amplify-billing"}:
        return
    invocation.metrics_written = True
    from amplify_billing.metrics import read_last_success, write_metrics

    now = datetime.now(UTC)
    rt = invocation.runtime
    # no report (a bad configuration, a held lock, Ctrl-C): the command's exit code stands for it
    reports = invocation.reports or [CommandReport(invocation.command, invocation.dry_run, (), exit_code=code)]
    try:
        success = code == 0 and not invocation.dry_run
        write_metrics(
            path,
            reports,
            duration_seconds=time.monotonic() - invocation.started_monotonic,
            exit_code=code,
            api_calls=rt.api_calls() if rt is not None else {},
            retries=rt.retries() if rt is not None else {},
            now=now,
            last_success=now if success else read_last_success(path),
        )
    except AmplifyBillingError as error:
        # the run's own outcome stands; a stale metrics file is what the alert on
        # last_success_timestamp catches, and this line says why
        log.error("metrics not written: %s", error)


# ---- when a command failed ----------------------------------------------------------------------------------


def failure_exit(raised: BaseException, args: Sequence[str], *, commands: Collection[str], started: datetime) -> int:
    """The one handler: an exception out of the command line becomes its line(s), its document and exit code."""
    if isinstance(raised, typer.Exit):
        if raised.exit_code and _current is not None:
            write_exit_metrics(_current, int(raised.exit_code))
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
    if _current is not None:
        write_exit_metrics(_current, code)
    return code


def interrupted_code() -> int:
    """143 after SIGTERM (as a shell reports a process SIGTERM ended), else 130 (DESIGN.md §7, interrupted)."""
    return TERMINATED if interrupt.signal_name() == "SIGTERM" else int(ExitCode.INTERRUPTED)


def interrupted_exit(
    args: Sequence[str], *, commands: Collection[str], started: datetime, document: bool = True
) -> int:
    """SIGINT (130) or SIGTERM (143, as a shell reports a process SIGTERM ended): the line that says what the
    command still sent after the signal (``interrupt.summary``), the error envelope under --output json when the
    command left no report (``document``), and the metrics file."""
    line = interrupt.summary() if interrupt.requested() else INTERRUPTED_LINE
    console_line(line, level=logging.WARNING, as_json=json_logs_requested(args) if args else None)
    code = interrupted_code()
    if document:
        _error_document(args, commands=commands, started=started, error=line, code=code)
    if _current is not None:
        write_exit_metrics(_current, code)
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


def _metrics_file(args: Sequence[str]) -> Path | None:
    """``--metrics-file`` read from the raw arguments (parsing may be what failed)."""
    for index, arg in enumerate(args):
        if arg == "--metrics-file" and index + 1 < len(args):
            return Path(args[index + 1])
        if arg.startswith("--metrics-file="):
            return Path(arg.split("=", 1)[1])
    return None


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
    """The command the arguments name (``config check`` with its subcommand); ``amplify-billing`` when none is
    recognised."""
    for index, arg in enumerate(args):
        if arg in commands:
            following = args[index + 1] if index + 1 < len(args) else ""
            return f"{arg} {following}" if arg == "config" and following == "check" else arg
    return "amplify-billing"


def _verbose(args: Sequence[str]) -> bool:
    return "--verbose" in args or "-v" in args


__all__ = [
    "BILLING_COMMANDS",
    "INTERRUPTED_LINE",
    "TERMINATED",
    "Invocation",
    "begin",
    "command_named",
    "current",
    "failure_exit",
    "finish_command",
    "interrupted_exit",
    "json_logs_requested",
    "json_requested",
    "write_exit_metrics",
]
