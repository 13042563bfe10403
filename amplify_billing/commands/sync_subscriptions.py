"""sync-subscriptions: every billed Amplify subscription on its Recurly subscription; the final usage of ended
ones first, then their end (docs/architecture.md, "Data flow of one command")."""

from __future__ import annotations

from amplify_billing.changes import CommandReport
from amplify_billing.commands.options import SyncOptions
from amplify_billing.execute import execute, make_report
from amplify_billing.gather.options import subscription_options
from amplify_billing.gather.subscriptions import reads_of, subscription_inputs
from amplify_billing.reconcile.subscriptions import diff_subscriptions
from amplify_billing.runtime import Runtime
from amplify_billing.subscription_journal import operator_ends, remember_links, remember_missed, subscription_handlers
from amplify_billing.usage.final import report_final_usage


def sync_subscriptions(rt: Runtime, options: SyncOptions, *, run_id: int | None) -> CommandReport:
    inputs = subscription_inputs(reads_of(rt), ends=operator_ends(rt, options))
    sub_options = subscription_options(rt.settings)
    if not options.dry_run:
        remember_missed(rt, inputs)
    inputs, usage_results = report_final_usage(rt, inputs, sub_options, options, run_id)
    changeset = diff_subscriptions(inputs, sub_options)
    results, note = execute(
        rt,
        changeset,
        dry_run=options.dry_run,
        force=options.force,
        run_id=run_id,
        handlers=subscription_handlers(rt),
    )
    results = usage_results + results
    if not options.dry_run:
        # the handlers kept the memoised Recurly listing current with every write: nothing to re-list
        remember_links(rt, inputs, sub_options)
    figures = {"amplify_subscriptions": len(inputs.amplify), "recurly_subscriptions": len(inputs.recurly)}
    return make_report(
        "sync-subscriptions",
        results,
        dry_run=options.dry_run,
        exit_code_flag=options.exit_code,
        note=note,
        figures=figures,
    )
