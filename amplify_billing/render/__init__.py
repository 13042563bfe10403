"""What the operator sees: the report on stdout (table, JSON or Markdown) and diagnostics on stderr.

Everything renders on an injected rich ``Console``; nothing here writes to a system or decides an exit
code. Free text that can come from upstream (summaries, errors, notes) passes through the same
redaction as log records, so a secret echoed back in an error message is not printed either.

Modules by job: ``tables`` (consoles, columns, cells, tables/JSON/Markdown of rows), ``reports``
(command reports), ``envelope`` (the versioned JSON report of every command), ``status`` (the status
report), ``diagnostics`` (logging and secret redaction).
This package re-exports the names callers use, so ``from amplify_billing.render import …`` keeps working.
"""

from amplify_billing.render.diagnostics import (
    HIDDEN,
    LOGGER_NAME,
    THIRD_PARTY_LOGGERS,
    DiagnosticsHandler,
    JsonFormatter,
    SecretRedactor,
    TextFormatter,
    configure_logging,
    current_redaction,
    redact,
    register_secret,
)
from amplify_billing.render.envelope import (
    SCHEMA_VERSION,
    ReportEnvelope,
    command_document,
    envelope_json,
    error_envelope,
    report_envelope,
    steps_document,
)
from amplify_billing.render.reports import (
    EXIT_MEANINGS,
    KIND_ORDER,
    MAX_ROWS_PER_KIND,
    OUTCOME_ORDER,
    change_rows,
    closing_total,
    opening_line,
    overall_exit_code,
    render_command,
    render_report,
    render_reports,
    report_counts,
    report_heading,
)
from amplify_billing.render.tables import (
    NO_WRAP_WIDTH,
    PLAIN_WIDTH,
    Cell,
    Column,
    cell_text,
    json_value,
    make_console,
    print_table,
    render_rows,
    rows_markdown,
    rows_table,
)

__all__ = [
    "EXIT_MEANINGS",
    "HIDDEN",
    "KIND_ORDER",
    "LOGGER_NAME",
    "MAX_ROWS_PER_KIND",
    "NO_WRAP_WIDTH",
    "OUTCOME_ORDER",
    "PLAIN_WIDTH",
    "SCHEMA_VERSION",
    "THIRD_PARTY_LOGGERS",
    "Cell",
    "Column",
    "DiagnosticsHandler",
    "JsonFormatter",
    "ReportEnvelope",
    "SecretRedactor",
    "TextFormatter",
    "cell_text",
    "change_rows",
    "closing_total",
    "command_document",
    "configure_logging",
    "current_redaction",
    "envelope_json",
    "error_envelope",
    "json_value",
    "make_console",
    "opening_line",
    "overall_exit_code",
    "print_table",
    "redact",
    "register_secret",
    "render_command",
    "render_report",
    "render_reports",
    "render_rows",
    "report_counts",
    "report_envelope",
    "report_heading",
    "rows_markdown",
    "rows_table",
    "steps_document",
]
