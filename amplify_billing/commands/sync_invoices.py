"""sync-invoices: marketplace mode's bill. Each Amplify SubscriptionInvoice becomes one Recurly invoice, written back
to Amplify (billing.payment, then state open), then followed as Recurly collects it (docs/architecture.md, "How to
add a command")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from amplify_billing.changes import ChangeResult, CommandReport, Outcome
from amplify_billing.collaborators import Command, Phase
from amplify_billing.execute import execute, make_report, recorded
from amplify_billing.gather.invoices import invoice_inputs, plan_options
from amplify_billing.invoice_actions import CreateInvoicePurchase
from amplify_billing.invoice_apply import sync_invoice_handlers
from amplify_billing.reconcile.invoices import diff_invoices, refusal_changes
from amplify_billing.recurly.invoice_executor import InvoiceOutcomes

COMMAND = "sync-invoices"


@dataclass(frozen=True)
class InvoiceOptions:
    dry_run: bool = False
    exit_code: bool = False
    force: bool = False


def sync_invoices(rt: Phase, options: InvoiceOptions, *, run_id: int | None) -> CommandReport:
    if not rt.settings.billing.any_invoiced:
        # no request at all: a run of recurly mode only costs what it did before this command existed
        off = "no Marketplace is in marketplace mode (billing.mode, billing.marketplaces): nothing to invoice"
        return make_report(COMMAND, [], dry_run=options.dry_run, exit_code_flag=options.exit_code, note=off)
    inputs = invoice_inputs(rt)
    changeset = diff_invoices(inputs, plan_options(rt.settings))
    outcomes = InvoiceOutcomes()
    handlers = sync_invoice_handlers(rt, outcomes)
    results, note = execute(
        rt, changeset, dry_run=options.dry_run, force=options.force, run_id=run_id, handlers=handlers
    )
    if outcomes.refused:
        # a declined card is the consumer's to fix, not a failure of the run: its create (and the write-back
        # skipped after it) is reported by the finding and the Amplify status Error the follow-up writes (never
        # retried by itself)
        results = [r for r in results if r.change.amplify_id not in outcomes.refused]
        followup, _ = execute(
            rt,
            refusal_changes(outcomes.refused, inputs.invoices),
            dry_run=False,
            force=True,
            run_id=run_id,
            handlers=handlers,
        )
        results += followup
    figures = {
        "amplify_invoices": len(inputs.invoices),
        "recurly_invoices_made": sum(1 for r in results if r.outcome is Outcome.APPLIED and _creates(r)),
        "payments_refused": len(outcomes.refused),
    }
    return make_report(
        COMMAND, results, dry_run=options.dry_run, exit_code_flag=options.exit_code, note=note, figures=figures
    )


def _creates(result: ChangeResult) -> bool:
    return isinstance(result.change.action, CreateInvoicePurchase)


def sync_invoices_body(options: InvoiceOptions) -> Callable[[Command], list[CommandReport]]:
    """The CLI's body: the command with its entry in the journal's run history."""
    return lambda rt: [recorded(rt, COMMAND, options.dry_run, lambda run_id: sync_invoices(rt, options, run_id=run_id))]
