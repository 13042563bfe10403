"""Diagnostics on stderr (logging), every record passed through the one redaction point.

Logging state (the handler and its format) lives on the ``amplify_billing`` logger itself, in the one
``DiagnosticsHandler`` installed there: ``configure_logging`` finds that handler (or installs it once)
through ``_diagnostics_handler()``. The secrets it hides are ``amplify_billing.redact``'s; ``redact`` and
``register_secret`` are re-exported here for the callers that import them from ``render``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# the one redaction point (amplify_billing.redact): logs, reports, error lines and crash reports share it
from amplify_billing.redact import HIDDEN, redact, register_secret

LOGGER_NAME = "amplify_billing"

# Loggers of libraries under us. They get our handler (so a urllib3 warning is a JSON line like ours,
# and redacted), but only warnings unless --verbose: their INFO/DEBUG is per-connection noise.
THIRD_PARTY_LOGGERS = ("urllib3", "requests")


class SecretRedactor(logging.Filter):
    """A logging filter that passes every record through ``amplify_billing.redact``.

    It rewrites the record itself (message, string extras, exception and stack text), so every
    handler after ours, pytest's caplog included, sees the redacted record too.
    """

    def __init__(self) -> None:
        super().__init__()
        self._exception_formatter = logging.Formatter()

    def add(self, value: str) -> None:
        register_secret(value)

    def redact(self, text: str) -> str:
        return redact(text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for the formatter, which reports it as such
            return True
        record.msg = self.redact(message)
        record.args = None
        for key, value in _extras(record).items():
            if isinstance(value, str):
                setattr(record, key, self.redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exception_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class DiagnosticsHandler(logging.Handler):
    """Writes formatted records to the *current* ``sys.stderr`` (tests swap it between CLI calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.redactor = SecretRedactor()
        self.addFilter(self.redactor)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # a second pass over the finished line catches what a formatter added (e.g. a str() of a dict extra)
            line = self.redactor.redact(self.format(record))
            stream = sys.stderr
            stream.write(line + "\n")
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


_RESERVED_ATTRIBUTES = frozenset(
    (*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime", "taskName")
)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record (identities such as action and key)."""
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED_ATTRIBUTES and not k.startswith("_")}


def _record_time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Extras a text line ends with, as key=value: the ids a change event touched, so that grep finds every event
# about one Amplify or Recurly object.
TEXT_EXTRAS = ("amplify_id", "recurly_id")


class TextFormatter(logging.Formatter):
    """``2026-11-01T12:00:00.123Z WARNING message amplify_id=… recurly_id=…`` (the ids of a change event; plus
    the traceback, if any, on the lines after)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_record_time(record)} {record.levelname} {record.getMessage()}"
        ids = [(key, getattr(record, key)) for key in TEXT_EXTRAS if getattr(record, key, None) is not None]
        if ids:
            line += "".join(f" {key}={value}" for key, value in ids)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, event, then the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "timestamp": _record_time(record),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in _extras(record).items():
            if key not in document:
                document[key] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def _diagnostics_handler() -> DiagnosticsHandler:
    """The handler on the ``amplify_billing`` logger, installed on first use (one per process)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in logger.handlers:
        if isinstance(handler, DiagnosticsHandler):
            return handler
    handler = DiagnosticsHandler()
    handler.setFormatter(TextFormatter())
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return handler


def configure_logging(*, fmt: str, verbose: bool, quiet: bool = False) -> None:
    """Diagnostics on stderr as text or JSON lines; INFO, DEBUG with ``verbose``, WARNING with ``quiet``
    (the demo, whose report already says what was written). Safe to call again."""
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}; use text or json")
    handler = _diagnostics_handler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.getLogger(LOGGER_NAME).setLevel(level)
    for name in THIRD_PARTY_LOGGERS:
        third_party = logging.getLogger(name)
        third_party.setLevel(logging.DEBUG if verbose else logging.WARNING)
        if handler not in third_party.handlers:
            third_party.addHandler(handler)


def json_logs() -> bool:
    """Whether diagnostics are JSON lines now (``--log-format json``)."""
    return isinstance(_diagnostics_handler().formatter, JsonFormatter)


def console_line(text: str, *, level: int = logging.ERROR, traceback: str = "", as_json: bool | None = None) -> None:
    """A line for the operator on stderr (``Error: …``, the interrupted line, a crash's line), redacted.

    Under ``--log-format json`` it is a JSON log record instead (``event`` the line, ``exception`` the
    traceback), so that stderr carries only JSON lines there. ``as_json`` overrides the configured format, for
    the one handler that runs when the arguments (and so the log format) may not have been parsed at all.
    """
    text, traceback = redact(text), redact(traceback).rstrip("\n")
    if json_logs() if as_json is None else as_json:
        record = logging.LogRecord(LOGGER_NAME, level, "", 0, text, None, None)
        record.exc_text = traceback or None
        line = JsonFormatter().format(record)
    else:
        line = f"{traceback}\n{text}" if traceback else text
    stream = sys.stderr
    stream.write(redact(line) + "\n")
    stream.flush()


def current_redaction() -> Callable[[str], str]:
    """The redaction in force (``amplify_billing.redact.redact``), for callers that look it up once."""
    return redact


__all__ = [
    "HIDDEN",
    "LOGGER_NAME",
    "THIRD_PARTY_LOGGERS",
    "DiagnosticsHandler",
    "JsonFormatter",
    "SecretRedactor",
    "TextFormatter",
    "configure_logging",
    "console_line",
    "current_redaction",
    "json_logs",
    "redact",
    "register_secret",
]
