"""config check: run the checks (``config_checks``), print what each found, exit with the worst failure's code.

Like every report: an opening line (time, version, command), the checks, one closing total; ``quiet`` shows only
the checks that did not pass (all passed: one line); ``--output json`` is the report envelope with ``checks``.
"""

from __future__ import annotations

from typing import Protocol

from amplify_billing import __version__
from amplify_billing.collaborators import Clocked, Consoles
from amplify_billing.config_checks import Check, Checkable, Level, exit_code_for, run_checks
from amplify_billing.render import Column, render_rows
from amplify_billing.render.diagnostics import console_line
from amplify_billing.render.envelope import checks_envelope, envelope_json
from amplify_billing.render.tables import iso, print_line, write_raw


class ConfigCheck(Checkable, Clocked, Consoles, Protocol):
    """What config check uses: what the checks use (``config_checks.Checkable``), the clock and the console."""


def _total(checks: list[Check], code: int) -> str:
    counts = {level: sum(1 for c in checks if c.level is level) for level in Level}
    parts = ", ".join(f"{counts[level]} {level.value}" for level in (Level.OK, Level.WARN, Level.FAIL, Level.SKIPPED))
    return f"Checks: {parts}; exit {code}"


def config_check(rt: ConfigCheck, *, offline: bool, output: str = "table", quiet: bool = False) -> int:
    """Run the checks, print what each found, return the exit code."""
    started = rt.clock()
    checks = run_checks(rt, offline=offline)
    code = exit_code_for(checks)
    if output == "json":
        rows = [(c.name, c.level.value, c.detail, c.exit_code) for c in checks]
        write_raw(
            rt.console, envelope_json(checks_envelope(rows, exit_code=code, started_at=started, finished_at=rt.clock()))
        )
    else:
        opening = f"{iso(started.replace(microsecond=0))} amplify-billing {__version__} config check" + (
            " --offline" if offline else ""
        )
        shown = [c for c in checks if not quiet or c.level in (Level.WARN, Level.FAIL)]
        if not shown:
            print_line(rt.console, f"{opening}: {_total(checks, code)}")
        else:
            write_raw(rt.console, f"## {opening}\n") if output == "markdown" else print_line(rt.console, opening)
            render_rows(
                rt.console,
                "Configuration check",
                [Column("check"), Column("result"), Column("detail")],
                [(c.name, c.level.value, c.detail) for c in shown],
                output=output,
            )
            total = _total(checks, code)
            write_raw(rt.console, f"\n**{total}**") if output == "markdown" else print_line(rt.console, total)
    for check in checks:
        if check.level is Level.FAIL:
            console_line(f"Error: {check.name}: {check.detail}")  # redacted; a JSON record under --log-format json
    return code
