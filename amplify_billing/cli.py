"""The command line: parse, load settings, call one runner, render, exit code. Nothing else.

``run_cli`` hands every exception to one handler (``cli_output.failure_exit``): an expected error becomes one
``Error: …`` line on stderr and the exit code of DESIGN.md §7 (and, under ``--output json``, the error envelope on
stdout); an unexpected one exit 70, a crash report and one line naming it. ``cli_output`` also renders the reports
and writes the metrics file.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from amplify_billing import __version__, interrupt
from amplify_billing.changes import CommandReport
from amplify_billing.cli_output import failure_exit, finish_command, interrupted_exit
from amplify_billing.crash import forget_state_directory, remember_state_directory
from amplify_billing.errors import ConfigError, ExitCode
from amplify_billing.execute import recorded
from amplify_billing.redact import register_secrets_of
from amplify_billing.settings import Settings


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


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


app = typer.Typer(
    name="amplify-billing",
    help="Bill Axway Amplify Marketplace subscriptions through Recurly: plans, accounts, subscriptions and usage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"amplify-billing {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Configuration file (default: $AMPLIFY_BILLING_CONFIG, else ./config.yaml)."
        ),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="Report format on stdout.")
    ] = OutputFormat.table,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", help="Diagnostics format on stderr.")
    ] = LogFormat.text,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging; tracebacks on errors.")] = False,
    metrics_file: Annotated[
        Path | None,
        typer.Option("--metrics-file", help="Write Prometheus text metrics here (node_exporter textfile collector)."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    from amplify_billing.render import configure_logging

    configure_logging(fmt=log_format.value, verbose=verbose)
    ctx.obj = GlobalOptions(config, output, log_format, verbose, metrics_file)


def _options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    assert isinstance(obj, GlobalOptions)
    return obj


def load_configured_settings(options: GlobalOptions) -> Settings:
    from amplify_billing.settings import load_settings, resolve_config_path

    settings = load_settings(resolve_config_path(options.config, os.environ), os.environ)
    _settings_loaded(settings)
    return settings


def _settings_loaded(settings: Settings) -> None:
    """From here on every output hides the settings' secrets, and a crash report goes beside the journal."""
    register_secrets_of(settings)
    remember_state_directory(settings.state.path)


# A command body gets the runtime and returns its reports.
Body = Callable[["Runtime"], list[CommandReport]]


def invoke(
    ctx: typer.Context,
    command: str,
    body: Body,
    *,
    dry_run: bool,
    max_duration: float | None = None,
    settings: Settings | None = None,
) -> int:
    """Load settings, take the lock (real runs only), run ``body``, render, write metrics, exit code."""
    from amplify_billing.journal import RunLock
    from amplify_billing.render import make_console
    from amplify_billing.runtime import Runtime

    options = _options(ctx)
    settings = settings or load_configured_settings(options)
    started = time.monotonic()
    rt = Runtime(settings, make_console(), make_console(stderr=True), output=options.output.value)
    if max_duration is not None:
        rt.deadline = started + max_duration
    lock = None if dry_run else RunLock.acquire(settings.state.path, command, clock=rt.clock)
    reports: list[CommandReport] = []
    interrupt.install()  # SIGINT/SIGTERM: no new request, the ones in flight finish, exit 130
    try:
        reports = body(rt)
    finally:
        interrupt.uninstall()
        try:
            code = finish_command(
                rt,
                command,
                reports,
                output=options.output.value,
                metrics_file=options.metrics_file,
                duration=time.monotonic() - started,
            )
        finally:
            rt.close()
            if lock is not None:
                lock.release()
    if interrupt.requested():
        return interrupted_exit([], commands=(), started=datetime.now(UTC), document=False)
    return code


# ---- commands -------------------------------------------------------------------------------------

DryRun = Annotated[bool, typer.Option("--dry-run", help="Compute and print the changes; write nothing anywhere.")]
ExitCodeFlag = Annotated[
    bool,
    typer.Option("--exit-code", help="Exit 4 when changes are pending or findings exist (for checks and alerts)."),
]
Force = Annotated[
    bool, typer.Option("--force", help="Apply even when the safety valve would refuse a mass deactivation.")
]


@app.command("sync-plans")
def sync_plans_command(
    ctx: typer.Context,
    dry_run: DryRun = False,
    exit_code: ExitCodeFlag = False,
    force: Force = False,
    product: Annotated[
        list[str] | None, typer.Option("--product", help="Only this Amplify product (name); repeatable.")
    ] = None,
) -> int:
    """Create and update Recurly plans, usage add-ons and measured units from Amplify product plans."""
    from amplify_billing.commands.sync_plans import SyncPlansOptions, sync_plans

    options = SyncPlansOptions(dry_run=dry_run, exit_code=exit_code, force=force, products=tuple(product or ()))

    def body(rt: Runtime) -> list[CommandReport]:
        return [recorded(rt, "sync-plans", dry_run, lambda run_id: sync_plans(rt, options, run_id=run_id))]

    return invoke(ctx, "sync-plans", body, dry_run=dry_run)


@app.command("link-accounts")
def link_accounts_command(
    ctx: typer.Context,
    dry_run: DryRun = False,
    exit_code: ExitCodeFlag = False,
    force: Force = False,
) -> int:
    """Match subscription owners (team, user or org) to Recurly accounts; create missing ones if configured."""
    from amplify_billing.commands.link_accounts import link_accounts
    from amplify_billing.commands.options import SyncOptions

    options = SyncOptions(dry_run=dry_run, exit_code=exit_code, force=force)

    def body(rt: Runtime) -> list[CommandReport]:
        return [recorded(rt, "link-accounts", dry_run, lambda run_id: link_accounts(rt, options, run_id=run_id))]

    return invoke(ctx, "link-accounts", body, dry_run=dry_run)


@app.command("sync-subscriptions")
def sync_subscriptions_command(
    ctx: typer.Context,
    dry_run: DryRun = False,
    exit_code: ExitCodeFlag = False,
    force: Force = False,
    end: Annotated[
        list[str] | None,
        typer.Option(
            "--end",
            metavar="AMPLIFY_SUBSCRIPTION_ID",
            help="End this subscription on your word, after its final usage (repeatable): one whose product no "
            "longer opts in to billing, or a linked one Amplify no longer lists; the findings name them.",
        ),
    ] = None,
) -> int:
    """Create, cancel or terminate Recurly subscriptions as Amplify ones start and end; approve pending ones."""
    from amplify_billing.commands.options import SyncOptions
    from amplify_billing.commands.sync_subscriptions import sync_subscriptions

    options = SyncOptions(dry_run=dry_run, exit_code=exit_code, force=force, end=tuple(dict.fromkeys(end or ())))

    def body(rt: Runtime) -> list[CommandReport]:
        return [
            recorded(rt, "sync-subscriptions", dry_run, lambda run_id: sync_subscriptions(rt, options, run_id=run_id))
        ]

    return invoke(ctx, "sync-subscriptions", body, dry_run=dry_run)


@app.command("sync-invoices")
def sync_invoices_command(
    ctx: typer.Context, dry_run: DryRun = False, exit_code: ExitCodeFlag = False, force: Force = False
) -> int:
    """Marketplace mode: one Recurly invoice per Amplify invoice, written back to Amplify; follow Recurly's state."""
    from amplify_billing.commands.sync_invoices import InvoiceOptions, sync_invoices_body

    options = InvoiceOptions(dry_run=dry_run, exit_code=exit_code, force=force)
    return invoke(ctx, "sync-invoices", sync_invoices_body(options), dry_run=dry_run)


class WindowChoice(StrEnum):
    hourly = "hourly"
    daily = "daily"


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{option} {value!r}: not an ISO 8601 time; use e.g. 2026-11-01 or 2026-11-01T00:00:00Z"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@app.command("report-usage")
def report_usage_command(
    ctx: typer.Context,
    dry_run: DryRun = False,
    exit_code: ExitCodeFlag = False,
    force: Force = False,
    start: Annotated[
        str | None,
        typer.Option(
            "--from", help="Backfill from this UTC time (ISO 8601); windows already posted are checked, not re-posted."
        ),
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Backfill up to this UTC time (exclusive).")] = None,
    window: Annotated[
        WindowChoice | None,
        typer.Option("--window", help="Window size (default: usage.window from the configuration)."),
    ] = None,
) -> int:
    """Report each subscription's API traffic as Recurly usage, exactly once per (subscription, quota, window)."""
    from amplify_billing.commands.report_usage import UsageOptions, report_usage

    options = UsageOptions(
        dry_run=dry_run,
        exit_code=exit_code,
        force=force,
        start=_parse_time(start, "--from"),
        end=_parse_time(end, "--to"),
        window=window.value if window else None,
    )
    if options.start and options.end and options.start >= options.end:
        raise ConfigError(f"--from {start} is not before --to {end}; give a range that ends after it starts")

    def body(rt: Runtime) -> list[CommandReport]:
        return [recorded(rt, "report-usage", dry_run, lambda run_id: report_usage(rt, options, run_id=run_id))]

    return invoke(ctx, "report-usage", body, dry_run=dry_run)


def _read_only(ctx: typer.Context, command: Callable[[Runtime], int]) -> int:
    """Settings, consoles and a Runtime for a command that writes nothing: no lock and no run history
    (the history is of runs that change things; a report or a check in it would only hide them)."""
    from amplify_billing.render import make_console
    from amplify_billing.runtime import Runtime

    options = _options(ctx)
    settings = load_configured_settings(options)
    rt = Runtime(settings, make_console(), make_console(stderr=True), output=options.output.value)
    try:
        return command(rt)
    finally:
        rt.close()


class StatusFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


@app.command("status")
def status_command(
    ctx: typer.Context,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Read every usage record and open intent in Recurly instead of trusting the journal."
        ),
    ] = False,
    exit_code: ExitCodeFlag = False,
    fmt: Annotated[
        StatusFormat | None,
        typer.Option("--format", help="table, json, or markdown to paste into a ticket (default: --output)."),
    ] = None,
) -> int:
    """Read-only reconciliation report: links, drift, orphans, pending items, open intents, last runs, usage."""
    from amplify_billing.commands.status import StatusOptions, status, status_output

    options = StatusOptions(
        verify=verify,
        exit_code=exit_code,
        output=status_output(fmt.value if fmt is not None else _options(ctx).output.value),
    )
    return _read_only(ctx, lambda rt: status(rt, options))


@app.command("doctor")
def doctor_command(
    ctx: typer.Context,
    fmt: Annotated[StatusFormat | None, typer.Option("--output", "-o", help="table, json or markdown.")] = None,
) -> int:
    """Read-only first contact with a tenant: what works and what needs action (exit 4); writes nothing."""
    from amplify_billing.commands.doctor import doctor, doctor_output

    output = doctor_output(fmt.value if fmt is not None else _options(ctx).output.value)
    return _read_only(ctx, lambda rt: doctor(rt, output=output))


config_app = typer.Typer(help="Validate the configuration and prove its credentials.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check_command(
    ctx: typer.Context,
    offline: Annotated[
        bool, typer.Option("--offline", help="Validate the file, credentials' form and journal; contact no system.")
    ] = False,
) -> int:
    """Validate the file and, unless --offline, prove each credential with one cheap call; print what was found."""
    from amplify_billing.commands.config_check import config_check

    output = _options(ctx).output.value
    return _read_only(ctx, lambda rt: config_check(rt, offline=offline, output=output))


def _parse_duration(value: str | None) -> float | None:
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    text = value.strip().lower()
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        raise ConfigError(f"--max-duration {value!r}: use seconds or a number with s, m or h (e.g. 15m)") from None
    if seconds <= 0:
        raise ConfigError(f"--max-duration {value!r}: must be more than zero")
    return seconds


@app.command("run")
def run_command(
    ctx: typer.Context,
    dry_run: DryRun = False,
    exit_code: ExitCodeFlag = False,
    force: Force = False,
    max_duration: Annotated[
        str | None,
        typer.Option(
            "--max-duration", help="Stop cleanly between changes after this long (e.g. 15m); the next run goes on."
        ),
    ] = None,
) -> int:
    """sync-plans, link-accounts, sync-subscriptions and report-usage in order, sharing one set of listings."""
    from amplify_billing.commands.run import RunOptions, run_all

    options = RunOptions(dry_run=dry_run, exit_code=exit_code, force=force)

    def body(rt: Runtime) -> list[CommandReport]:
        return run_all(rt, options, recorded)

    return invoke(ctx, "run", body, dry_run=dry_run, max_duration=_parse_duration(max_duration))


@app.command("demo")
def demo_command(
    ctx: typer.Context,
    seed: Annotated[int, typer.Option("--seed", help="Scenario seed (same seed, same scenario).")] = 7,
    subscriptions: Annotated[int, typer.Option("--subscriptions", help="Subscriptions in the scenario.", min=1)] = 40,
) -> int:
    """Run the whole cycle against built-in emulators of Amplify and Recurly and show what it did."""
    from amplify_billing.render import configure_logging, make_console
    from amplify_billing.sandbox.demo import run_demo

    options = _options(ctx)
    # the report says what was written; per-write log lines would bury it (--verbose brings them back)
    configure_logging(fmt=options.log_format.value, verbose=options.verbose, quiet=not options.verbose)
    return run_demo(
        make_console(), make_console(stderr=True), seed=seed, subscriptions=subscriptions, output=options.output.value
    )


sandbox_app = typer.Typer(
    help="Run the Amplify and Recurly emulators with a seeded scenario, for exploring by hand.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.callback()
def sandbox_command(
    ctx: typer.Context,
    seed: Annotated[int, typer.Option("--seed", help="Scenario seed.")] = 7,
    subscriptions: Annotated[int, typer.Option("--subscriptions", help="Subscriptions in the scenario.", min=1)] = 40,
    config_out: Annotated[
        Path, typer.Option("--write-config", help="Where to write the configuration that points at the emulators.")
    ] = Path("sandbox-config.yaml"),
    state_dir: Annotated[Path, typer.Option("--state-dir", help="Directory for the sandbox journal.")] = Path(
        "sandbox-state"
    ),
    tenant: Annotated[str, typer.Option("--tenant", help="default|v1alpha1|sampled|restricted|odd-values")] = "default",
) -> int:
    """Start both emulators on free loopback ports, seed them, write a config file, serve until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return 0
    from amplify_billing.sandbox.serve import serve

    return serve(seed=seed, subscriptions=subscriptions, config_path=config_out, state_dir=state_dir, tenant=tenant)


# ---- entry point ----------------------------------------------------------------------------------


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code instead of exiting (tests call this)."""
    args = list(sys.argv[1:] if argv is None else argv)
    started = datetime.now(UTC)
    commands = _command_names()
    forget_state_directory()  # a previous in-process run's settings are not this run's
    try:
        result = app(args=args, prog_name="amplify-billing", standalone_mode=False)
    except (Exception, KeyboardInterrupt) as raised:  # the one place every exception becomes an exit code
        return failure_exit(raised, args, commands=commands, started=started)
    code = int(result) if isinstance(result, int) else int(ExitCode.OK)
    if code == ExitCode.INTERRUPTED:  # typer answers Ctrl-C by returning 130 when not standalone
        return interrupted_exit(args, commands=commands, started=started)
    return code


def _command_names() -> frozenset[str]:
    """The top-level commands and groups, to name the command of an error document."""
    names = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    return frozenset(n for n in names if n)


def main() -> None:
    sys.exit(run_cli())


if __name__ == "__main__":  # pragma: no cover
    main()


# late import for type annotations used in nested functions above
from amplify_billing.runtime import Runtime  # noqa: E402

__all__ = ["ConfigError", "Runtime", "app", "main", "run_cli"]
