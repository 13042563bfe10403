"""An unexpected exception (a bug): a private crash report on disk and one line on stderr, exit 70.

Under cron nobody sees a traceback on a terminal, and a log line is not enough to find a bug, so the
report keeps what a maintainer needs (tool and Python versions, command line, UTC time, traceback),
every part of it passed through the one redaction point first. It is written next to the journal: the
state directory, the parent of ``state.path``, once the settings have loaded. A crash before that (or in
the loading itself) has no state directory yet, so its report goes to the current working directory,
which under cron is the user's home. The file is created 0600: even redacted, a traceback shows paths,
ids and customers' names.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from amplify_billing import __version__
from amplify_billing.errors import ExitCode
from amplify_billing.redact import redact

PROGRAM = "amplify-billing"
# the error's own message in the one line is cut here; the report holds it whole
MAX_SUMMARY_LENGTH = 200
# two crashes of one process in one second (tests) get -2, -3 …: a report is never overwritten
MAX_NAME_ATTEMPTS = 100


class _StateDirectory:
    """Where the loaded settings keep their state, noted when they load (``remember_state_directory``).

    The crash handler runs in ``run_cli`` after the command framework has torn down its context, so the
    one fact it needs from the settings is kept here, per process; ``run_cli`` forgets it before each run.
    """

    def __init__(self) -> None:
        self.path: Path | None = None


_STATE_DIRECTORY = _StateDirectory()


def remember_state_directory(state_path: Path) -> None:
    """Note that the settings loaded and their journal is ``state_path``: reports go to its directory."""
    _STATE_DIRECTORY.path = state_path.absolute().parent


def forget_state_directory() -> None:
    _STATE_DIRECTORY.path = None


def report_directory() -> Path:
    """The state directory once the settings loaded, else the current working directory."""
    return _STATE_DIRECTORY.path or Path.cwd()


def summary(error: BaseException) -> str:
    """``Type: first line of the message``, redacted and short enough for one line."""
    lines = str(error).strip().splitlines()
    message = redact(lines[0]) if lines else ""
    if len(message) > MAX_SUMMARY_LENGTH:
        message = message[: MAX_SUMMARY_LENGTH - 1] + "…"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def redacted_traceback(error: BaseException) -> str:
    """The full traceback (chained causes included), redacted, ending with a newline."""
    return redact("".join(traceback.format_exception(error)))


def report_text(error: BaseException, argv: Sequence[str], now: datetime) -> str:
    command = shlex.join([PROGRAM, *argv])
    header = (
        f"{PROGRAM} crash report: please send this file to the maintainers (secrets are shown as <hidden>)\n"
        "\n"
        f"version: {PROGRAM} {__version__}\n"
        f"python: {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}\n"
        f"command: {command}\n"
        f"time: {now.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
        f"error: {summary(error)}\n"
        "\n"
    )
    return redact(header) + redacted_traceback(error)


def _create_private_file(path: Path) -> int:
    """Open a new file readable by its owner only; never an existing one (O_EXCL)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(descriptor, 0o600)  # whatever the umask
    return descriptor


def write_report(text: str, directory: Path, now: datetime) -> Path:
    """Write ``text`` to a new ``crash-<UTC time>-<pid>.txt`` in ``directory``; raises ``OSError``."""
    stem = f"crash-{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}-{os.getpid()}"
    for attempt in range(1, MAX_NAME_ATTEMPTS + 1):
        path = directory / (f"{stem}.txt" if attempt == 1 else f"{stem}-{attempt}.txt")
        try:
            descriptor = _create_private_file(path)
        except FileExistsError:
            continue
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
        return path
    raise FileExistsError(17, "too many crash reports from this process in one second", str(directory))


def handle_crash(error: BaseException, *, argv: Sequence[str], verbose: bool, stderr: TextIO | None = None) -> int:
    """Write the crash report, print the one line (and the traceback when asked or when it cannot be
    written), and return exit code 70."""
    stream = stderr if stderr is not None else sys.stderr
    now = datetime.now(UTC)
    directory = report_directory()
    intended = directory / f"crash-{now.strftime('%Y%m%dT%H%M%SZ')}-{os.getpid()}.txt"
    try:
        written: Path | None = write_report(report_text(error, argv, now), directory, now)
        where = f"crash report: {written}"
    except OSError as failure:
        written = None
        where = (
            f"no crash report (cannot write {failure.filename or intended}: {failure.strerror or failure}), "
            "the traceback is above"
        )
    if verbose or written is None:
        stream.write(redacted_traceback(error))
    print(
        f"{PROGRAM}: internal error ({summary(error)}); {redact(where)}; please send it to the maintainers",
        file=stream,
    )
    return int(ExitCode.INTERNAL)


__all__ = [
    "forget_state_directory",
    "handle_crash",
    "redacted_traceback",
    "remember_state_directory",
    "report_directory",
    "report_text",
    "summary",
    "write_report",
]
