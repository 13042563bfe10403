"""config check: run the checks (``config_checks``), print what each found, exit with the worst failure's code."""

from __future__ import annotations

from amplify_billing.config_checks import Level, exit_code_for, run_checks
from amplify_billing.render import Column, render_rows
from amplify_billing.render.diagnostics import console_line
from amplify_billing.runtime import Runtime


def config_check(rt: Runtime, *, offline: bool, output: str = "table") -> int:
    """Run the checks, print what each found, return the exit code."""
    checks = run_checks(rt, offline=offline)
    render_rows(
        rt.console,
        "Configuration check",
        [Column("check"), Column("result"), Column("detail")],
        [(c.name, c.level.value, c.detail) for c in checks],
        output=output,
    )
    for check in checks:
        if check.level is Level.FAIL:
            console_line(f"Error: {check.name}: {check.detail}")  # redacted; a JSON record under --log-format json
    return exit_code_for(checks)
