"""sync-subscriptions: every billed Amplify subscription on its Recurly subscription; the final usage of ended
ones first, then their end (docs/architecture.md, "Data flow of one command")."""

from __future__ import annotations

from amplify_billing import subscription_journal
from amplify_billing.changes import CommandReport
from amplify_billing.collaborators import Phase
from amplify_billing.commands.options import SyncOptions
from amplify_billing.execute import execute, make_report, record
from amplify_billing.gather.options import subscription_options
from amplify_billing.gather.subscriptions import reads_of, subscription_inputs
from amplify_billing.reconcile.subscriptions import diff_subscriptions
from amplify_billing.usage.final import report_final_usage

COMMAND = "sync-subscriptions"


def sync_subscriptions(rt: Phase, options: SyncOptions, *, run_id: int | None) -> CommandReport:
    results = record(rt, COMMAND, subscription_journal.operator_ends(rt, options), run_id=run_id)
    inputs = subscription_inputs(reads_of(rt))
    results += record(rt, COMMAND, subscription_journal.missed(rt.journal_view(), inputs), run_id=run_id)
    sub_options = subscription_options(rt.settings)
    inputs, usage_results = report_final_usage(rt, inputs, sub_options, options, run_id)
    # the subscription writes keep the memoised Recurly listing current (the engine's handlers): nothing to re-list
    changes, note = execute(
        rt, diff_subscriptions(inputs, sub_options), dry_run=options.dry_run, force=options.force, run_id=run_id
    )
    links = subscription_journal.links(rt.journal_view(), inputs, sub_options)
    results += usage_results + changes + record(rt, COMMAND, links, run_id=run_id)
    figures = {"amplify_subscriptions": len(inputs.amplify), "recurly_subscriptions": len(inputs.recurly)}
    return make_report(
        COMMAND, results, dry_run=options.dry_run, exit_code_flag=options.exit_code, note=note, figures=figures
    )
