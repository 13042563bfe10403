"""link-accounts and sync-subscriptions: every consumer on the right Recurly account and subscription."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from amplify_billing import safety
from amplify_billing.amplify.parse import ParseProblem, parse_timestamp
from amplify_billing.apply import Handler
from amplify_billing.commands.common import default_handlers, execute, make_report
from amplify_billing.errors import AmplifyBillingError
from amplify_billing.models import AmplifySubscription, Change, ChangeResult, CommandReport, Outcome
from amplify_billing.reconcile.accounts import (
    AccountOptions,
    OwnerDetails,
    account_code,
    diff_accounts,
    needs_billing,
)
from amplify_billing.reconcile.subscriptions import (
    STAND_IN,
    LinkedPlan,
    RecurlySubscription,
    SubscriptionInputs,
    SubscriptionOptions,
    awaiting_final_usage,
    deleted_stand_in,
    diff_subscriptions,
    ended_state,
    match_subscriptions,
)
from amplify_billing.runtime import Runtime

log = logging.getLogger(__name__)

SUBSCRIPTION_LINK = "subscription"
CREATED_LINK = "subscription-created"
# Amplify id -> when a run first missed a journal-linked subscription in the listing ("" once listed again)
MISSED_LINK = "subscription-missed"
VERB = "cancel or terminate"


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


def linked_plans(rt: Runtime) -> dict[str, LinkedPlan]:
    """Amplify plans (any state) whose Recurly plan exists and is active, with the add-ons it has."""
    snapshots = rt.snapshots()
    catalog = snapshots.amplify_catalog()
    recurly = snapshots.recurly_catalog()
    prefix = rt.settings.catalog.plan_code_prefix
    add_on_prefix = rt.settings.catalog.add_on_code_prefix
    result: dict[str, LinkedPlan] = {}
    for plan in catalog.snapshot.plans:
        code = f"{prefix}{plan.id}".lower()
        have = recurly.plans.get(code)
        if have is None or have.state != "active":
            continue
        codes = tuple(sorted(a.code for a in have.add_ons))
        quota_add_ons = {
            q.id: f"{add_on_prefix}{q.id}".lower() for q in plan.quotas if f"{add_on_prefix}{q.id}".lower() in codes
        }
        result[plan.name] = LinkedPlan(plan.name, code, have.currency, codes, quota_add_ons)
    return result


def amplify_subscriptions(
    rt: Runtime, plans: Mapping[str, LinkedPlan]
) -> tuple[list[AmplifySubscription], list[ParseProblem]]:
    return rt.snapshots().amplify_subscriptions(sorted(plans))


def recurly_subscription(data: Mapping[str, Any]) -> RecurlySubscription:
    fields = {
        str(f.get("name")): str(f.get("value"))
        for f in data.get("custom_fields") or ()
        if isinstance(f, Mapping) and f.get("value") is not None
    }
    add_ons = tuple(
        sorted(str((a.get("add_on") or {}).get("code") or a.get("code") or "") for a in data.get("add_ons") or ())
    )

    def when(name: str) -> datetime | None:
        value = data.get(name)
        if isinstance(value, datetime):
            return value
        return parse_timestamp(value)

    return RecurlySubscription(
        uuid=str(data.get("uuid")),
        account_code=str((data.get("account") or {}).get("code") or ""),
        plan_code=str((data.get("plan") or {}).get("code") or ""),
        state=str(data.get("state") or ""),
        custom_fields=fields,
        activated_at=when("activated_at"),
        canceled_at=when("canceled_at"),
        expires_at=when("expires_at"),
        add_on_codes=add_ons,
    )


# ---- link-accounts ---------------------------------------------------------------------------------


def _fetch_all(
    keys: Iterable[str], fetch: Callable[[str], Mapping[str, Any]], workers: int
) -> dict[str, Mapping[str, Any] | AmplifyBillingError]:
    """Read each key once, ``workers`` at a time (the transport's rate limiter still bounds the pace)."""

    def one(key: str) -> Mapping[str, Any] | AmplifyBillingError:
        try:
            return fetch(key)
        except AmplifyBillingError as error:
            return error

    unique = sorted(set(keys))
    if workers <= 1 or len(unique) <= 1:
        return {key: one(key) for key in unique}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="platform-reader") as pool:
        return dict(zip(unique, pool.map(one, unique), strict=True))


def _admin_of(team: Mapping[str, Any]) -> str | None:
    """The team's first human administrator (else its first human member): whose e-mail bills the team."""
    members = [u for u in team.get("users") or () if isinstance(u, Mapping)]
    humans = [u for u in members if u.get("type") != "client"]
    admin = next(
        (u for u in humans if any("admin" in str(r) for r in u.get("roles") or ())), humans[0] if humans else None
    )
    return str(admin["guid"]) if admin and admin.get("guid") else None


def _primary_of(org: Mapping[str, Any]) -> str | None:
    users = [u for u in org.get("users") or () if isinstance(u, Mapping)]
    primary = next((u for u in users if u.get("primary")), users[0] if users else None)
    return str(primary["guid"]) if primary and primary.get("guid") else None


def _owner_details(rt: Runtime, codes: set[str], subscriptions: list[AmplifySubscription]) -> dict[str, OwnerDetails]:
    """Platform API lookups for accounts we are about to create (only those: they cost Amplify budget).

    Each team, org and user is read once, and the reads overlap (``recurly.concurrency`` at a time) in two
    rounds: the owners first, then the people whose e-mail and names the accounts need."""
    platform = rt.amplify().platform
    owner_mode = rt.settings.accounts.owner
    workers = rt.settings.recurly.concurrency
    owners: dict[str, AmplifySubscription] = {}
    for subscription in subscriptions:
        code = account_code(subscription, owner_mode)
        if code is not None and code in codes and code not in owners:
            owners[code] = subscription

    groups: dict[str, Mapping[str, Any] | AmplifyBillingError] = {}
    if owner_mode == "org":
        groups = _fetch_all((str(s.owner_org) for s in owners.values()), platform.get_org, workers)
    else:
        groups = _fetch_all((s.owner_team for s in owners.values() if s.owner_team), platform.get_team, workers)

    def person_of(s: AmplifySubscription) -> str | None:
        if owner_mode == "org":
            org = groups.get(str(s.owner_org))
            return _primary_of(org) if isinstance(org, Mapping) else None
        if s.owner_user:
            return s.owner_user
        team = groups.get(str(s.owner_team))
        return _admin_of(team) if isinstance(team, Mapping) else None

    people = _fetch_all((g for g in map(person_of, owners.values()) if g), platform.get_user, workers)

    details: dict[str, OwnerDetails] = {}
    for code, s in owners.items():
        group_key = str(s.owner_org) if owner_mode == "org" else str(s.owner_team)
        group = groups.get(group_key)
        guid = person_of(s)
        user = people.get(guid) if guid else None
        problem = next((e for e in (group, user) if isinstance(e, AmplifyBillingError)), None)
        if problem is not None and (owner_mode == "org" or not s.owner_user or isinstance(user, AmplifyBillingError)):
            details[code] = OwnerDetails(None, None, None, None, problem=str(problem))
            continue
        found = user if isinstance(user, Mapping) else {}
        company = group.get("name") if isinstance(group, Mapping) else None
        details[code] = OwnerDetails(
            email=found.get("email") or None,
            first_name=found.get("firstname") or None,
            last_name=found.get("lastname") or None,
            company=str(company) if company else None,
        )
    return details


def link_accounts(rt: Runtime, options: SyncOptions, *, run_id: int | None) -> CommandReport:
    snapshots = rt.snapshots()
    plans = linked_plans(rt)
    subscriptions, _problems = amplify_subscriptions(rt, plans)
    existing = snapshots.recurly_accounts()
    account_options = AccountOptions(
        owner=rt.settings.accounts.owner,
        create_missing=rt.settings.accounts.create_missing,
        link_attribute=rt.settings.accounts.link_attribute,
    )
    needed = {account_code(s, account_options.owner) for s in subscriptions if needs_billing(s)}
    missing = {c for c in needed if c and c not in existing}
    details = _owner_details(rt, missing, subscriptions) if missing and account_options.create_missing else {}
    changeset = diff_accounts(subscriptions, set(existing), details, account_options)
    if not options.account_links:
        changeset = replace(
            changeset, changes=tuple(c for c in changeset.changes if c.action != "amplify.set_attributes")
        )
    results, note = execute(
        rt, changeset, dry_run=options.dry_run, force=options.force, destructive_verb="change", run_id=run_id
    )
    for result in results:
        if result.outcome is Outcome.APPLIED and result.change.action == "recurly.create_account":
            code = str(result.change.payload["body"]["code"])
            existing[code] = {"code": code, "id": result.result_id}
    figures = {"subscriptions_billed": len([s for s in subscriptions if needs_billing(s)]), "accounts": len(needed)}
    return make_report(
        "link-accounts", results, dry_run=options.dry_run, exit_code_flag=options.exit_code, note=note, figures=figures
    )


# ---- sync-subscriptions ----------------------------------------------------------------------------


def usage_reported_through(
    rt: Runtime,
    subscriptions: Iterable[AmplifySubscription],
    plans: Mapping[str, LinkedPlan],
    planned: Mapping[tuple[str, str], datetime] | None = None,
    attached: Mapping[str, frozenset[str]] | None = None,
    journal: LinkReader | None = None,
) -> dict[str, datetime | None]:
    """For ended subscriptions: the end of the usage reported for them (the minimum over their quotas).

    ``planned``: watermarks a dry run of report-usage would store, which the journal does not hold yet.
    ``journal``: where to read (status passes a reader that never creates the file); default the run's journal."""
    reader: LinkReader = journal if journal is not None else rt.journal()
    result: dict[str, datetime | None] = {}
    for subscription in subscriptions:
        if not ended_state(subscription):
            continue
        plan = plans.get(subscription.plan_name)
        on_recurly = (attached or {}).get(subscription.id)
        # a quota added to the plan after the Recurly subscription was created has no add-on on it, so no usage
        # is ever reported for it: waiting for its watermark would keep the subscription from ending for ever
        quotas = [
            q for q, code in (plan.quota_add_ons if plan else {}).items() if on_recurly is None or code in on_recurly
        ]
        if plan and on_recurly is not None and not quotas:
            result[subscription.id] = subscription.state_changed_at  # nothing on it is billed by usage
            continue
        marks = [
            (planned or {}).get((subscription.id, q)) or reader.usage_watermark(subscription.id, q) for q in quotas
        ]
        result[subscription.id] = (
            None if not marks or any(m is None for m in marks) else min(m for m in marks if m is not None)
        )
    return result


def attached_add_ons(recurly: Iterable[RecurlySubscription], links: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """Amplify id -> the add-on codes on its journal-linked Recurly subscription."""
    by_uuid = {r.uuid: r for r in recurly}
    return {amplify_id: frozenset(by_uuid[uuid].add_on_codes) for amplify_id, uuid in links.items() if uuid in by_uuid}


def subscription_options(rt: Runtime) -> SubscriptionOptions:
    s = rt.settings.subscriptions
    return SubscriptionOptions(
        owner=rt.settings.accounts.owner,
        custom_field=s.custom_field,
        collection_method=s.collection_method,
        approve_pending=s.approve_pending,
        on_cancel=s.on_cancel,
        link_attribute=s.link_attribute,
        account_link_attribute=rt.settings.accounts.link_attribute,
    )


def _deleted_stand_ins(
    rt: Runtime,
    listed: list[AmplifySubscription],
    plans: Mapping[str, LinkedPlan],
    recurly: tuple[RecurlySubscription, ...],
    links: Mapping[str, str],
    unreadable: frozenset[str] = frozenset(),
    journal: LinkReader | None = None,
) -> list[AmplifySubscription]:
    """Journal-linked subscriptions missing from the listing whose live Recurly subscription is on a linked plan:
    ended at the moment a run first missed them (see deleted_stand_in)."""
    listed_ids = {s.id for s in listed}
    by_uuid = {r.uuid: r for r in recurly}
    by_code = {p.code: p for p in plans.values()}
    missed = (journal or rt.journal()).links(MISSED_LINK)
    stand_ins = []
    for amplify_id, uuid in sorted(links.items()):
        current = by_uuid.get(uuid)
        plan = by_code.get(current.plan_code) if current else None
        if amplify_id in listed_ids or plan is None or amplify_id in unreadable:
            continue  # an unreadable subscription is reported as a finding, never taken for deleted
        when = parse_timestamp(missed.get(amplify_id)) or rt.clock()
        stand_ins.append(deleted_stand_in(amplify_id, plan.amplify_name, when))
    return stand_ins


def _remember_missed(rt: Runtime, inputs: SubscriptionInputs) -> None:
    """Keep the moment a subscription was first missed, so later runs end its usage there (real runs only)."""
    journal = rt.journal()
    missed = journal.links(MISSED_LINK)
    for s in inputs.amplify:
        stand_in = bool(s.raw.get(STAND_IN))
        if stand_in and not missed.get(s.id) and s.state_changed_at is not None:
            journal.set_link(MISSED_LINK, s.id, s.state_changed_at.isoformat())
        elif not stand_in and missed.get(s.id):
            journal.set_link(MISSED_LINK, s.id, "")  # listed again (a listing glitch): not deleted after all


class LinkReader(Protocol):
    """The part of the journal that building the subscription inputs reads."""

    def links(self, kind: str) -> dict[str, str]: ...
    def usage_watermark(self, subscription_id: str, quota_id: str) -> datetime | None: ...


def subscription_inputs(rt: Runtime, journal: LinkReader | None = None) -> SubscriptionInputs:
    """Both sides of sync-subscriptions. ``journal``: a reader to use instead of the run's journal (status)."""
    reader: LinkReader = journal if journal is not None else rt.journal()
    plans = linked_plans(rt)
    subscriptions, problems = amplify_subscriptions(rt, plans)
    snapshots = rt.snapshots()
    recurly = tuple(recurly_subscription(r) for r in snapshots.recurly_subscriptions())
    links = reader.links(SUBSCRIPTION_LINK)
    unreadable = frozenset(p.id for p in problems if p.id)
    catalog_unreadable = bool(snapshots.amplify_catalog().snapshot.problems)
    if not catalog_unreadable:
        subscriptions = [
            *subscriptions,
            *_deleted_stand_ins(rt, subscriptions, plans, recurly, links, unreadable, journal),
        ]
    return SubscriptionInputs(
        amplify=tuple(subscriptions),
        plans=plans,
        recurly=recurly,
        accounts=set(snapshots.recurly_accounts()),
        journal_links=links,
        usage_reported_through=usage_reported_through(
            rt, subscriptions, plans, attached=attached_add_ons(recurly, links)
        ),
        problems=tuple(problems),
        catalog_unreadable=catalog_unreadable,
    )


def _subscription_handlers(rt: Runtime) -> dict[str, Handler]:
    handlers = default_handlers(rt)

    def create(change: Change, key: str, done: Mapping[str, str | None]) -> str | None:
        created = rt.recurly().create_subscription(change.payload["body"], idempotency_key=key)
        uuid = str(created.get("uuid"))
        amplify_id = str(change.payload["amplify_id"])
        journal = rt.journal()
        journal.set_link(SUBSCRIPTION_LINK, amplify_id, uuid)
        # created by this journal: every usage record on it goes through this journal's ledger, so report-usage
        # need not read Recurly to learn what is already there
        journal.set_link(CREATED_LINK, amplify_id, uuid)
        rt.snapshots().record_recurly_subscription(created)
        return uuid

    def ended(method: str) -> Handler:
        def end(change: Change, key: str, done: Mapping[str, str | None]) -> str | None:
            answer = getattr(rt.recurly(), method)(**change.payload, idempotency_key=key)
            rt.snapshots().record_recurly_subscription(answer)
            return str(answer.get("uuid") or "") or None

        return end

    def link(change: Change, key: str, done: Mapping[str, str | None]) -> str | None:
        uuid = change.payload.get("uuid") or done.get(str(change.payload.get("uuid_from")))
        attributes = dict(change.payload["attributes"])
        if uuid:
            attributes[str(change.payload["uuid_attribute"])] = str(uuid)
        else:
            attributes.pop(str(change.payload["uuid_attribute"]), None)
        rt.wrote(rt.amplify().resources.update_attributes(rt.newest(change.payload["resource"]), attributes))
        return None

    handlers["recurly.create_subscription"] = create
    handlers["recurly.cancel_subscription"] = ended("cancel_subscription")
    handlers["recurly.terminate_subscription"] = ended("terminate_subscription")
    handlers["amplify.link_subscription"] = link
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
        safety.check(diff_subscriptions(assumed, sub_options), rt.settings.safety, force=options.force, what=VERB)
    # imported here: report_usage builds on this module's inputs
    from amplify_billing.commands.report_usage import UsageOptions, report_usage_with_watermarks

    usage, moved = report_usage_with_watermarks(
        rt, UsageOptions(dry_run=options.dry_run, force=options.force, only=frozenset(ending)), run_id=run_id
    )
    chosen = [s for s in inputs.amplify if s.id in ending]
    through = usage_reported_through(
        rt, chosen, inputs.plans, moved, attached=attached_add_ons(inputs.recurly, inputs.journal_links)
    )
    return replace(inputs, usage_reported_through={**inputs.usage_reported_through, **through}), list(usage.results)


def sync_subscriptions(rt: Runtime, options: SyncOptions, *, run_id: int | None) -> CommandReport:
    inputs = subscription_inputs(rt)
    sub_options = subscription_options(rt)
    if not options.dry_run:
        _remember_missed(rt, inputs)
    inputs, usage_results = _report_final_usage(rt, inputs, sub_options, options, run_id)
    changeset = diff_subscriptions(inputs, sub_options)
    results, note = execute(
        rt,
        changeset,
        dry_run=options.dry_run,
        force=options.force,
        destructive_verb=VERB,
        run_id=run_id,
        handlers=_subscription_handlers(rt),
    )
    results = usage_results + results
    if not options.dry_run:
        journal = rt.journal()
        for amplify_id, uuid in match_subscriptions(inputs, sub_options).items():
            if inputs.journal_links.get(amplify_id) != uuid:
                journal.set_link(SUBSCRIPTION_LINK, amplify_id, uuid)
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
