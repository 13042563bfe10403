"""link-accounts: every consumer that is billed has its Recurly account (created from its owner's details)."""

from __future__ import annotations

from dataclasses import replace

from amplify_billing.actions import CreateAccount, SetAttributes
from amplify_billing.changes import CommandReport, Outcome
from amplify_billing.collaborators import Phase
from amplify_billing.commands.options import SyncOptions
from amplify_billing.execute import execute, make_report
from amplify_billing.gather.invoices import awaiting_invoices, invoiced_subscriptions
from amplify_billing.gather.owners import owner_details
from amplify_billing.gather.subscriptions import amplify_subscriptions, linked_plans, reads_of
from amplify_billing.identity import account_code
from amplify_billing.reconcile.accounts import AccountOptions, diff_accounts, needs_billing


def link_accounts(rt: Phase, options: SyncOptions, *, run_id: int | None) -> CommandReport:
    snapshots = rt.snapshots()
    plans = linked_plans(reads_of(rt))
    subscriptions, _problems = amplify_subscriptions(reads_of(rt), plans)
    invoiced = invoiced_subscriptions(rt)  # marketplace mode: their invoices go to the owner's account too
    subscriptions += invoiced
    existing = snapshots.recurly_accounts()
    account_options = AccountOptions(
        owner=rt.settings.accounts.owner,
        create_missing=rt.settings.accounts.create_missing,
        link_attribute=rt.settings.accounts.link_attribute,
    )
    # ... even once one ended, while Amplify still has an invoice of it to send
    owner = account_options.owner
    owing = awaiting_invoices(
        rt, [s for s in invoiced if not needs_billing(s) and account_code(s, owner) not in existing]
    )
    needed = {account_code(s, owner) for s in subscriptions if needs_billing(s) or s.name in owing}
    missing = {c for c in needed if c and c not in existing}
    wanted = missing and account_options.create_missing
    # read once per invocation: ``run`` plans the cycle first, then applies it (the owners do not change between)
    details = (
        snapshots.remember(
            "owners:" + ",".join(sorted(missing)),
            lambda: owner_details(rt.amplify().platform, rt.settings, missing, subscriptions),
        )
        if wanted
        else {}
    )
    changeset = diff_accounts(subscriptions, set(existing), details, account_options, owing=owing)
    if not options.account_links:
        changeset = replace(
            changeset, changes=tuple(c for c in changeset.changes if not isinstance(c.action, SetAttributes))
        )
    results, note = execute(rt, changeset, dry_run=options.dry_run, force=options.force, run_id=run_id)
    for result in results:
        if result.outcome is Outcome.APPLIED and isinstance(result.change.action, CreateAccount):
            code = result.change.action.code
            existing[code] = {"code": code, "id": result.result_id}
    figures = {"subscriptions_billed": len([s for s in subscriptions if needs_billing(s)]), "accounts": len(needed)}
    return make_report(
        "link-accounts", results, dry_run=options.dry_run, exit_code_flag=options.exit_code, note=note, figures=figures
    )
