"""link-accounts and sync-subscriptions: every consumer on the right Recurly account and subscription."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from amplify_billing import safety
from amplify_billing.actions import (
    Action,
    CancelSubscription,
    CreateAccount,
    CreateSubscription,
    SetAttributes,
    TerminateSubscription,
)
from amplify_billing.apply import Handler
from amplify_billing.changes import ChangeResult, CommandReport, Outcome
from amplify_billing.errors import ConfigError
from amplify_billing.execute import default_handlers, execute, make_report
from amplify_billing.gather.options import subscription_options
from amplify_billing.gather.owners import owner_details
from amplify_billing.gather.subscriptions import (
    GatherReads,
    amplify_subscriptions,
    attached_add_ons,
    endable,
    linked_plans,
    subscription_inputs,
    usage_reported_through,
)
from amplify_billing.identity import account_code
from amplify_billing.links import CREATED_LINK, END_LINK, MISSED_LINK, NAME_LINK, SUBSCRIPTION_LINK
from amplify_billing.reconcile.accounts import AccountOptions, diff_accounts, needs_billing
from amplify_billing.reconcile.subscriptions import (
    DELETED,
    STAND_IN,
    SubscriptionInputs,
    SubscriptionOptions,
    awaiting_final_usage,
    diff_subscriptions,
    match_subscriptions,
)
from amplify_billing.recurly.translate import subscription_body
from amplify_billing.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncOptions:
    dry_run: bool = False
    exit_code: bool = False
    force: bool = False
    # link-accounts on its own writes the account link attribute on each subscription. Within `run`,
    # sync-subscriptions writes it anyway, together with the subscription's uuid, in one PUT after the
    # approvals: writing it first too would spend a second Amplify request per subscription (of 25 a minute)
    # and spend it before the approvals.
    account_links: bool = True
    # --end: Amplify ids the operator ends (kept subscriptions whose product left the opted-in catalog, or linked
    # ones Amplify no longer lists whose deletion cannot be proven): their usage up to now, then the end
    end: tuple[str, ...] = ()


# ---- link-accounts ---------------------------------------------------------------------------------


def link_accounts(rt: Runtime, options: SyncOptions, *, run_id: int | None) -> CommandReport:
    snapshots = rt.snapshots()
    plans = linked_plans(reads_of(rt))
    subscriptions, _problems = amplify_subscriptions(reads_of(rt), plans)
    existing = snapshots.recurly_accounts()
    account_options = AccountOptions(
        owner=rt.settings.accounts.owner,
        create_missing=rt.settings.accounts.create_missing,
        link_attribute=rt.settings.accounts.link_attribute,
    )
    needed = {account_code(s, account_options.owner) for s in subscriptions if needs_billing(s)}
    missing = {c for c in needed if c and c not in existing}
    wanted = missing and account_options.create_missing
    details = owner_details(rt.amplify().platform, rt.settings, missing, subscriptions) if wanted else {}
    changeset = diff_accounts(subscriptions, set(existing), details, account_options)
    if not options.account_links:
        changeset = replace(
            changeset, changes=tuple(c for c in changeset.changes if not isinstance(c.action, SetAttributes))
        )
    results, note = execute(
        rt, changeset, dry_run=options.dry_run, force=options.force, run_id=run_id
    )
    for result in results:
        if result.outcome is Outcome.APPLIED and isinstance(result.change.action, CreateAccount):
            code = result.change.action.code
            existing[code] = {"code": code, "id": result.result_id}
    figures = {"subscriptions_billed": len([s for s in subscriptions if needs_billing(s)]), "accounts": len(needed)}
    return make_report(
        "link-accounts", results, dry_run=options.dry_run, exit_code_flag=options.exit_code, note=note, figures=figures
    )


# ---- sync-subscriptions ----------------------------------------------------------------------------


def _remember_missed(rt: Runtime, inputs: SubscriptionInputs) -> None:
    """Keep the moment a subscription was proven deleted, so later runs end its usage there (real runs only)."""
    journal = rt.journal()
    missed = journal.links(MISSED_LINK)
    for s in inputs.amplify:
        deleted = s.raw.get(STAND_IN) == DELETED
        if deleted and not missed.get(s.id) and s.state_changed_at is not None:
            journal.set_link(MISSED_LINK, s.id, s.state_changed_at.isoformat())
        elif not deleted and missed.get(s.id):
            journal.set_link(MISSED_LINK, s.id, "")  # listed again (a listing glitch): not deleted after all


def reads_of(rt: Runtime) -> GatherReads:
    """What gathering reads, from this invocation's runtime."""
    return GatherReads(rt.settings, rt.snapshots(), rt.journal(), rt.clock)


def _subscription_handlers(rt: Runtime) -> dict[type[Action], Handler]:
    handlers = default_handlers(rt)

    def create(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, CreateSubscription)
        created = rt.recurly().create_subscription(subscription_body(action), idempotency_key=key)
        uuid = str(created.get("uuid"))
        journal = rt.journal()
        journal.set_link(SUBSCRIPTION_LINK, action.amplify_id, uuid)
        # created by this journal: every usage record on it goes through this journal's ledger, so report-usage
        # need not read Recurly to learn what is already there
        journal.set_link(CREATED_LINK, action.amplify_id, uuid)
        rt.snapshots().record_recurly_subscription(created)
        return uuid

    def end(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        if isinstance(action, CancelSubscription):
            answer = rt.recurly().cancel_subscription(
                f"uuid-{action.uuid}", {"timeframe": "term_end"}, idempotency_key=key
            )
        else:
            assert isinstance(action, TerminateSubscription)
            answer = rt.recurly().terminate_subscription(
                f"uuid-{action.uuid}", {"refund": action.refund, "charge": True}, idempotency_key=key
            )
        rt.snapshots().record_recurly_subscription(answer)
        return str(answer.get("uuid") or "") or None

    handlers[CreateSubscription] = create
    handlers[CancelSubscription] = end
    handlers[TerminateSubscription] = end
    return handlers


def _report_final_usage(
    rt: Runtime, inputs: SubscriptionInputs, sub_options: SubscriptionOptions, options: SyncOptions, run_id: int | None
) -> tuple[SubscriptionInputs, list[ChangeResult]]:
    """Report the last usage of ended subscriptions (up to their end) before the diff may end them.

    DESIGN.md §3: usage up to the end is reported first, then the Recurly subscription ends. `run` calls
    sync-subscriptions before report-usage, so without this the end would always wait for the next run.
    A usage change that fails leaves the watermark where it was, so that subscription waits (not ended).
    """
    ending = awaiting_final_usage(inputs, sub_options)
    if not ending:
        return inputs, []
    if not options.dry_run:
        # the safety valve judges the ends this run would make, before the usage is written, so that a refusal
        # still means "nothing was written"
        ends = {s.id: s.state_changed_at for s in inputs.amplify if s.id in ending}
        assumed = replace(inputs, usage_reported_through={**inputs.usage_reported_through, **ends})
        safety.check(diff_subscriptions(assumed, sub_options), rt.settings.safety, force=options.force)
    from amplify_billing.usage.reporting import UsageOptions, report_usage_with_watermarks

    usage, moved = report_usage_with_watermarks(
        rt, UsageOptions(dry_run=options.dry_run, force=options.force, only=frozenset(ending)), run_id=run_id
    )
    chosen = [s for s in inputs.amplify if s.id in ending]
    through = usage_reported_through(
        rt.journal(), chosen, inputs.plans, attached_add_ons(inputs.recurly, inputs.journal_links), planned=moved
    )
    return replace(inputs, usage_reported_through={**inputs.usage_reported_through, **through}), list(usage.results)


def _operator_ends(rt: Runtime, options: SyncOptions) -> dict[str, datetime]:
    """--end: each id must be one the tool cannot end by itself (else exit 2 naming it); kept in the journal on a
    real run, so later runs finish the end (its final usage must settle first)."""
    if not options.end:
        return {}
    now = rt.clock()
    asked = {amplify_id: now for amplify_id in options.end}
    allowed = endable(subscription_inputs(reads_of(rt), ends=asked))
    wrong = sorted(set(options.end) - allowed)
    if wrong:
        raise ConfigError(
            f"--end {' '.join(wrong)}: not a subscription this tool keeps billing without Amplify's word (one whose "
            "product left the opted-in catalog, or a linked one Amplify no longer lists). End a listed subscription "
            "in Amplify instead; see the findings of sync-subscriptions for the ids --end accepts"
        )
    if options.dry_run:
        return asked
    journal = rt.journal()
    recorded = journal.links(END_LINK)
    for amplify_id in sorted(asked):
        if not recorded.get(amplify_id):
            journal.set_link(END_LINK, amplify_id, now.isoformat())
    return {}


def _remember_names(rt: Runtime, inputs: SubscriptionInputs, links: Mapping[str, str]) -> None:
    """The name of each linked subscription: a later run that misses it in a listing reads it by name."""
    journal = rt.journal()
    names = journal.links(NAME_LINK)
    for s in inputs.amplify:
        if s.id in links and not s.raw.get(STAND_IN) and names.get(s.id) != s.name:
            journal.set_link(NAME_LINK, s.id, s.name)


def sync_subscriptions(rt: Runtime, options: SyncOptions, *, run_id: int | None) -> CommandReport:
    inputs = subscription_inputs(reads_of(rt), ends=_operator_ends(rt, options))
    sub_options = subscription_options(rt.settings)
    if not options.dry_run:
        _remember_missed(rt, inputs)
    inputs, usage_results = _report_final_usage(rt, inputs, sub_options, options, run_id)
    changeset = diff_subscriptions(inputs, sub_options)
    results, note = execute(
        rt,
        changeset,
        dry_run=options.dry_run,
        force=options.force,
        run_id=run_id,
        handlers=_subscription_handlers(rt),
    )
    results = usage_results + results
    if not options.dry_run:
        journal = rt.journal()
        for amplify_id, uuid in match_subscriptions(inputs, sub_options).items():
            if inputs.journal_links.get(amplify_id) != uuid:
                journal.set_link(SUBSCRIPTION_LINK, amplify_id, uuid)
        _remember_names(rt, inputs, journal.links(SUBSCRIPTION_LINK))
        # the handlers kept the memoised Recurly listing current with every write: nothing to re-list
    figures = {"amplify_subscriptions": len(inputs.amplify), "recurly_subscriptions": len(inputs.recurly)}
    return make_report(
        "sync-subscriptions",
        results,
        dry_run=options.dry_run,
        exit_code_flag=options.exit_code,
        note=note,
        figures=figures,
    )
