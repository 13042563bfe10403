"""The command line: parse, load settings, call one runner, render, exit code. Nothing else.

``run_cli`` hands every exception to one handler (``cli_output.failure_exit``): an expected error becomes one
``Error: …`` line on stderr and the exit code of DESIGN.md §7 (and, under ``--output json``, the error envelope on
stdout); an unexpected one exit 70, a crash report and one line naming it. ``cli_output`` also renders the reports
and writes the metrics file. Global options may come before or after the command (``cli_args``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from amplify_billing import __version__, interrupt
from amplify_billing.changes import CommandReport
from amplify_billing.cli_args import hoist_global_options, parse_duration, parse_time
from amplify_billing.cli_output import begin, current, failure_exit, interrupted_exit
from amplify_billing.cli_runner import (
    GlobalOptions,
    LogFormat,
    OutputFormat,
    Step,
    WriteFlags,
    invoke,
    one_step,
    options_of,
    read_only,
)
from amplify_billing.crash import forget_state_directory
from amplify_billing.errors import ConfigError, ExitCode

app = typer.Typer(
    name="amplify-billing",
    help="Bill Axway Amplify Marketplace subscriptions through Recurly: plans, accounts, subscriptions and usage. "
    "Global options may come before or after the command.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"amplify-billing {__version__}")
        raise typer.Exit(0)


@app.callback(epilog="\b\nExample:\n  amplify-billing --config /etc/amplify-billing/config.yaml run --dry-run")
def _global(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help="Configuration file (default: $AMPLIFY_BILLING_CONFIG, else ./config.yaml).",
        ),
    ] = None,
    output: Annotated[
        OutputFormat,
        typer.Option("--output", "-o", help="Report format on stdout: table, json (one document) or markdown."),
    ] = OutputFormat.table,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", help="Diagnostics format on stderr: text or json (one per line).")
    ] = LogFormat.text,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging; tracebacks on errors.")] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Only changes, findings not acknowledged, and errors; nothing to do is one line."
        ),
    ] = False,
    metrics_file: Annotated[
        Path | None,
        typer.Option(
            "--metrics-file",
            metavar="FILE",
            help="Write Prometheus text metrics here on every exit (node_exporter textfile collector).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    from amplify_billing.render import configure_logging

    configure_logging(fmt=log_format.value, verbose=verbose)
    ctx.obj = GlobalOptions(config, output, log_format, verbose, metrics_file, quiet)
    invocation = current()
    if invocation is not None:
        invocation.quiet = quiet and output is OutputFormat.table


# ---- the commands that bill ------------------------------------------------------------------------------------

DryRun = Annotated[bool, typer.Option("--dry-run", help="Compute and print the changes; write nothing anywhere.")]
ExitCodeFlag = Annotated[
    bool,
    typer.Option(
        "--exit-code", help="Exit 4 when changes are pending or findings not acknowledged exist (checks, alerts)."
    ),
]
Force = Annotated[
    bool, typer.Option("--force", help="Apply even when the safety valve would refuse a mass deactivation.")
]


def _example(*lines: str) -> str:
    """A command's epilog: its examples, kept as written (``\\b`` stops click rewrapping them)."""
    return "\b\nExample:\n" + "\n".join(f"  {line}" for line in lines)


@app.command("sync-plans", epilog=_example("amplify-billing sync-plans --dry-run --product weather-api"))
def sync_plans_command(
    ctx: typer.Context,
    dry_run: DryRun = False,
    exit_code: ExitCodeFlag = False,
    force: Force = False,
    product: Annotated[
        list[str] | None,
        typer.Option("--product", metavar="NAME", help="Only this opted-in Amplify product (its name); repeatable."),
    ] = None,
) -> int:
    """Create and update Recurly plans, usage add-ons and measured units from Amplify product plans."""
    from amplify_billing.cli_checks import check_products
    from amplify_billing.commands import sync_plans as module

    flags = WriteFlags(dry_run, exit_code, force)
    options = module.SyncPlansOptions(dry_run, exit_code, force, products=tuple(product or ()))

    def step(rt: Runtime, run_id: int | None) -> CommandReport:
        check_products(rt, options.products)
        return module.sync_plans(rt, options, run_id=run_id)

    return one_step(ctx, "sync-plans", flags, step)


@app.command("link-accounts", epilog=_example("amplify-billing link-accounts --dry-run"))
def link_accounts_command(
    ctx: typer.Context, dry_run: DryRun = False, exit_code: ExitCodeFlag = False, force: Force = False
) -> int:
    """Match subscription owners (team, user or org) to Recurly accounts; create missing ones if configured."""
    from amplify_billing.commands import link_accounts as module
    from amplify_billing.commands.options import SyncOptions

    options = SyncOptions(dry_run=dry_run, exit_code=exit_code, force=force)
    step: Step = lambda rt, run_id: module.link_accounts(rt, options, run_id=run_id)  # noqa: E731
    return one_step(ctx, "link-accounts", WriteFlags(dry_run, exit_code, force), step)


@app.command(
    "sync-subscriptions",
    epilog=_example(
        "amplify-billing sync-subscriptions --dry-run",
        "amplify-billing sync-subscriptions --end 8a2e0f5c7d1b4e3f9a6c2d8b0e4f1a7c",
    ),
)
def sync_subscriptions_command(
    ctx: typer.Context,
    dry_run: DryRun = False,
    exit_code: ExitCodeFlag = False,
    force: Force = False,
    end: Annotated[
        list[str] | None,
        typer.Option(
            "--end",
            metavar="ID",
            help="End this Amplify subscription on your word, after its final usage (repeatable): one whose product "
            "no longer opts in to billing, or a linked one Amplify no longer lists; the findings name them.",
        ),
    ] = None,
) -> int:
    """Create, cancel or terminate Recurly subscriptions as Amplify ones start and end; approve pending ones."""
    from amplify_billing.commands import sync_subscriptions as module
    from amplify_billing.commands.options import SyncOptions

    options = SyncOptions(dry_run=dry_run, exit_code=exit_code, force=force, end=tuple(dict.fromkeys(end or ())))
    step: Step = lambda rt, run_id: module.sync_subscriptions(rt, options, run_id=run_id)  # noqa: E731
    return one_step(ctx, "sync-subscriptions", WriteFlags(dry_run, exit_code, force), step)


@app.command("sync-invoices", epilog=_example("amplify-billing sync-invoices --dry-run"))
def sync_invoices_command(
    ctx: typer.Context, dry_run: DryRun = False, exit_code: ExitCodeFlag = False, force: Force = False
) -> int:
    """Marketplace mode: one Recurly invoice per Amplify invoice, written back to Amplify; follow Recurly's state."""
    from amplify_billing.commands import sync_invoices as module

    options = module.InvoiceOptions(dry_run=dry_run, exit_code=exit_code, force=force)
    step: Step = lambda rt, run_id: module.sync_invoices(rt, options, run_id=run_id)  # noqa: E731
    return one_step(ctx, "sync-invoices", WriteFlags(dry_run, exit_code, force), step)


class WindowChoice(StrEnum):
    hourly = "hourly"
    daily = "daily"


class DemoMode(StrEnum):
    recurly = "recurly"
    marketplace = "marketplace"
    both = "both"


@app.command(
    "report-usage",
    epilog=_example(
        "amplify-billing report-usage --dry-run",
        "amplify-billing report-usage --from 2026-11-01 --to 2026-11-08T00:00:00Z",
    ),
)
def report_usage_command(
    ctx: typer.Context,
    dry_run: DryRun = False,
    exit_code: ExitCodeFlag = False,
    force: Force = False,
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="DATE|TIME",
            help="Backfill from this UTC date or time (ISO 8601); windows already posted are checked, not re-posted.",
        ),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", metavar="DATE|TIME", help="Backfill up to this UTC date or time (exclusive).")
    ] = None,
    window: Annotated[
        WindowChoice | None,
        typer.Option("--window", help="Window size: hourly or daily (default: usage.window from the configuration)."),
    ] = None,
) -> int:
    """Report each subscription's API traffic as Recurly usage, exactly once per (subscription, quota, window)."""
    from amplify_billing.cli_checks import check_range, empty_range_note
    from amplify_billing.commands import report_usage as module

    options = module.UsageOptions(
        dry_run=dry_run,
        exit_code=exit_code,
        force=force,
        start=parse_time(start, "--from"),
        end=parse_time(end, "--to"),
        window=window.value if window else None,
    )
    if options.start and options.end and options.start >= options.end:
        raise ConfigError(f"--from {start} is not before --to {end}; give a range that ends after it starts")

    def step(rt: Runtime, run_id: int | None) -> CommandReport:
        check_range(options.start, options.end, rt.clock(), rt.settings.usage.settle_delay)
        return empty_range_note(module.report_usage(rt, options, run_id=run_id), options.start, options.end)

    return one_step(ctx, "report-usage", WriteFlags(dry_run, exit_code, force), step)


@app.command(
    "run",
    epilog=_example("amplify-billing --quiet --metrics-file /var/lib/node_exporter/ab.prom run --max-duration 13m"),
)
def run_command(
    ctx: typer.Context,
    dry_run: DryRun = False,
    exit_code: ExitCodeFlag = False,
    force: Force = False,
    max_duration: Annotated[
        str | None,
        typer.Option(
            "--max-duration",
            metavar="DURATION",
            help="Stop cleanly between changes after this long (e.g. 13m, 90s); the next run goes on.",
        ),
    ] = None,
) -> int:
    """sync-plans, link-accounts, sync-subscriptions and report-usage in order, then sync-invoices where a
    Marketplace is in marketplace mode (billing.mode), sharing one set of listings."""
    from amplify_billing.commands.run import RunOptions, run_all

    options = RunOptions(dry_run=dry_run, exit_code=exit_code, force=force)
    flags = WriteFlags(dry_run, exit_code, force)
    return invoke(
        ctx, "run", lambda rt, record: run_all(rt, options, record), flags, max_duration=parse_duration(max_duration)
    )


# ---- read-only commands ---------------------------------------------------------------------------------------


@app.command(
    "status",
    epilog=_example(
        "amplify-billing status --subscription 8a2e0f5c7d1b4e3f9a6c2d8b0e4f1a7c",
        "amplify-billing --output markdown status --verify",
        "amplify-billing status --offline",
    ),
)
def status_command(
    ctx: typer.Context,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Read every usage record and open intent in Recurly instead of trusting the journal."
        ),
    ] = False,
    exit_code: ExitCodeFlag = False,
    subscription: Annotated[
        list[str] | None,
        typer.Option("--subscription", metavar="ID", help="Only this Amplify subscription (id); repeatable."),
    ] = None,
    plan: Annotated[
        list[str] | None,
        typer.Option("--plan", metavar="ID", help="Only this Amplify plan (id, or its Recurly plan code); repeatable."),
    ] = None,
    account: Annotated[
        list[str] | None,
        typer.Option(
            "--account", metavar="CODE", help="Only subscriptions billed to this Recurly account; repeatable."
        ),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option("--offline", help="The journal's view only (last runs, links, open intents); contact no system."),
    ] = False,
) -> int:
    """Read-only reconciliation report: links, drift, orphans, pending items, open intents, last runs, usage."""
    from amplify_billing.commands.status import StatusFilter, StatusOptions, status

    def command(rt: Runtime, options: GlobalOptions) -> int:
        return status(
            rt,
            StatusOptions(
                verify=verify,
                exit_code=exit_code,
                output=options.output.value,
                quiet=options.quiet,
                offline=offline,
                only=StatusFilter.of(subscription, plan, account),
            ),
        )

    return read_only(ctx, command)


@app.command("doctor", epilog=_example("amplify-billing doctor --output markdown > first-contact.md"))
def doctor_command(ctx: typer.Context) -> int:
    """Read-only first contact with a tenant: what works and what needs action (exit 4); writes nothing."""
    from amplify_billing.commands.doctor import doctor, doctor_output

    return read_only(ctx, lambda rt, options: doctor(rt, output=doctor_output(options.output.value)))


config_app = typer.Typer(help="Validate the configuration and prove its credentials.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check", epilog=_example("amplify-billing --config config.yaml config check"))
def config_check_command(
    ctx: typer.Context,
    offline: Annotated[
        bool, typer.Option("--offline", help="Validate the file, credentials' form and journal; contact no system.")
    ] = False,
) -> int:
    """Validate the file and, unless --offline, prove each credential with one cheap call; print what was found."""
    from amplify_billing.commands.config_check import config_check

    return read_only(
        ctx, lambda rt, options: config_check(rt, offline=offline, output=options.output.value, quiet=options.quiet)
    )


@app.command("demo", epilog=_example("amplify-billing demo --mode both --subscriptions 12"))
def demo_command(
    ctx: typer.Context,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Scenario seed (same seed, same scenario).")] = 7,
    subscriptions: Annotated[
        int, typer.Option("--subscriptions", metavar="N", help="Subscriptions in the scenario.", min=1)
    ] = 40,
    mode: Annotated[
        DemoMode,
        typer.Option(
            "--mode",
            help="recurly: a week of Recurly subscriptions and usage; marketplace: a month of Amplify's invoices "
            "billed through Recurly; both: two Marketplaces side by side, one in each mode.",
        ),
    ] = DemoMode.recurly,
) -> int:
    """Run the whole cycle against built-in emulators of Amplify and Recurly and show what it did."""
    from amplify_billing.render import PLAIN_WIDTH, configure_logging, make_console
    from amplify_billing.sandbox.demo import run_demo

    options = options_of(ctx)
    # the report says what was written; per-write log lines would bury it (--verbose brings them back)
    configure_logging(fmt=options.log_format.value, verbose=options.verbose, quiet=not options.verbose)
    # the demo draws rules across the width: piped, it keeps a width a page can hold
    console = make_console(plain_default=PLAIN_WIDTH)
    err = make_console(stderr=True)
    if mode is not DemoMode.recurly:
        from amplify_billing.sandbox.demo_modes import run_invoice_demo

        return run_invoice_demo(
            console, err, mode=mode.value, seed=seed, subscriptions=subscriptions, output=options.output.value
        )
    return run_demo(console, err, seed=seed, subscriptions=subscriptions, output=options.output.value)


sandbox_app = typer.Typer(
    help="Run the Amplify and Recurly emulators with a seeded scenario, for exploring by hand.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.callback(epilog=_example("amplify-billing sandbox --write-config sandbox-config.yaml"))
def sandbox_command(
    ctx: typer.Context,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Scenario seed.")] = 7,
    subscriptions: Annotated[
        int, typer.Option("--subscriptions", metavar="N", help="Subscriptions in the scenario.", min=1)
    ] = 40,
    config_out: Annotated[
        Path,
        typer.Option(
            "--write-config", metavar="FILE", help="Where to write the configuration that points at the emulators."
        ),
    ] = Path("sandbox-config.yaml"),
    state_dir: Annotated[
        Path, typer.Option("--state-dir", metavar="DIR", help="Directory for the sandbox journal.")
    ] = Path("sandbox-state"),
    tenant: Annotated[
        str, typer.Option("--tenant", metavar="NAME", help="default|v1alpha1|sampled|restricted|odd-values")
    ] = "default",
) -> int:
    """Start both emulators on free loopback ports, seed them, write a config file, serve until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return 0
    from amplify_billing.sandbox.serve import serve

    return serve(seed=seed, subscriptions=subscriptions, config_path=config_out, state_dir=state_dir, tenant=tenant)


# ---- entry point ----------------------------------------------------------------------------------


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code instead of exiting (tests call this)."""
    root = typer.main.get_command(app)
    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv), root)
    commands = _command_names()
    invocation = begin(args, commands)
    forget_state_directory()  # a previous in-process run's settings are not this run's
    interrupt.forget()
    try:
        result = app(args=args, prog_name="amplify-billing", standalone_mode=False)
    except SystemExit as done:  # --install-completion and --show-completion exit by themselves
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    except (Exception, KeyboardInterrupt) as raised:  # the one place every exception becomes an exit code
        return failure_exit(raised, args, commands=commands, started=invocation.started)
    code = int(result) if isinstance(result, int) else int(ExitCode.OK)
    if code == ExitCode.INTERRUPTED and not interrupt.requested():
        # typer answers Ctrl-C by returning 130 when not standalone (a signal the command handled said its line)
        return interrupted_exit(args, commands=commands, started=invocation.started)
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
