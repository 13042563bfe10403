"""link-accounts and sync-subscriptions: every consumer on the right Recurly account and subscription."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from amplify_billing import safety
from amplify_billing.actions import (
    Action,
    CancelSubscription,
    CreateAccount,
    CreateSubscription,
    SetAttributes,
    TerminateSubscription,
)
from amplify_billing.amplify.parse import ParseProblem, parse_subscription, parse_timestamp
from amplify_billing.apply import Handler
from amplify_billing.changes import ChangeResult, CommandReport, Outcome
from amplify_billing.commands.common import default_handlers, execute, make_report
from amplify_billing.errors import AmplifyBillingError, ConfigError
from amplify_billing.identity import account_code, add_on_code, plan_code
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.accounts import (
    AccountOptions,
    OwnerDetails,
    diff_accounts,
    needs_billing,
)
from amplify_billing.reconcile.subscriptions import (
    DELETED,
    ENDED_BY_OPERATOR,
    LIVE_STATES,
    STAND_IN,
    LinkedPlan,
    RecurlySubscription,
    SubscriptionInputs,
    SubscriptionOptions,
    awaiting_final_usage,
    deleted_stand_in,
    diff_subscriptions,
    ended_state,
    kept_plan,
    match_subscriptions,
    unmatched_links,
    unreadable_ids,
)
from amplify_billing.recurly.translate import subscription_body
from amplify_billing.runtime import Runtime
from amplify_billing.snapshots import CompactResource, DirectRead, Missing

log = logging.getLogger(__name__)

SUBSCRIPTION_LINK = "subscription"
CREATED_LINK = "subscription-created"
# Amplify id -> when a run first missed a journal-linked subscription that a direct read proved deleted
# ("" once listed again)
MISSED_LINK = "subscription-missed"
# Amplify id -> its name, so that one missing from a listing can be read directly (GET needs the name)
NAME_LINK = "subscription-name"
# Amplify id -> when the operator ended it (sync-subscriptions --end)
END_LINK = "subscription-end"


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


def linked_plans(rt: Runtime) -> dict[str, LinkedPlan]:
    """Amplify plans (any state) whose Recurly plan exists and is active, with the add-ons it has."""
    snapshots = rt.snapshots()
    catalog = snapshots.amplify_catalog()
    recurly = snapshots.recurly_catalog()
    prefix = rt.settings.catalog.plan_code_prefix
    add_on_prefix = rt.settings.catalog.add_on_code_prefix
    result: dict[str, LinkedPlan] = {}
    for plan in catalog.snapshot.plans:
        code = plan_code(plan.id, prefix)
        have = recurly.plans.get(code)
        if have is None or have.state != "active":
            continue
        codes = tuple(sorted(a.code for a in have.add_ons))
        quota_add_ons = {
            q.id: add_on_code(q.id, add_on_prefix) for q in plan.quotas if add_on_code(q.id, add_on_prefix) in codes
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
        expiration_reason=str(data.get("expiration_reason") or "") or None,
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


@dataclass
class _Resolved:
    """What the direct reads of the objects a listing missed add to the inputs."""

    amplify: list[AmplifySubscription]
    plans: dict[str, LinkedPlan]
    recurly: list[RecurlySubscription]
    problems: list[ParseProblem]
    lost_links: dict[str, str] = field(default_factory=dict)
    unproven_absent: dict[str, str] = field(default_factory=dict)
    kept: set[str] = field(default_factory=set)
    absent: dict[str, RecurlySubscription] = field(default_factory=dict)  # not listed, live in Recurly


def _read_lost_links(rt: Runtime, inputs: SubscriptionInputs, resolved: _Resolved) -> None:
    """A linked Recurly subscription the live listing does not show is read directly (reference §9.3): paused
    (`state=live` never lists it) it is still the customer's; ended or gone, it is never replaced unasked."""
    snapshots = rt.snapshots()
    for amplify_id, uuid in sorted(unmatched_links(inputs, subscription_options(rt)).items()):
        found = snapshots.recurly_subscription(uuid)
        if isinstance(found, Missing):
            resolved.lost_links[amplify_id] = f"its linked Recurly subscription {uuid} does not exist (HTTP 404)"
        elif isinstance(found, AmplifyBillingError):
            resolved.lost_links[amplify_id] = f"its linked Recurly subscription {uuid} could not be read ({found})"
        else:
            current = recurly_subscription(found)
            if current.state in LIVE_STATES:
                resolved.recurly.append(current)
            else:
                reason = f", {current.expiration_reason}" if current.expiration_reason else ""
                resolved.lost_links[amplify_id] = f"its linked Recurly subscription {uuid} is {current.state}{reason}"


def _read_absent(rt: Runtime, inputs: SubscriptionInputs, reader: LinkReader, resolved: _Resolved) -> None:
    """Journal-linked subscriptions Amplify did not list, whose Recurly subscription is live: read directly.

    Found (by id, whatever its plan) it still exists: billed as listed when its plan is linked, else kept on its
    Recurly subscription (its product left the opted-in catalog). Not found, it is read by name: 404 proves it
    deleted (a stand-in: final usage, then the end); anything else is unproven and ends nothing. One proven
    deleted before (its first miss is remembered) needs no read again: Amplify ids never come back."""
    listed = {s.id for s in inputs.amplify}
    live = {r.uuid: r for r in resolved.recurly if r.state in LIVE_STATES}  # listed, and read directly
    unreadable = unreadable_ids(inputs)
    absent = {
        amplify_id: live[uuid]
        for amplify_id, uuid in inputs.journal_links.items()
        if amplify_id not in listed and amplify_id not in unreadable and uuid in live
    }
    if not absent or inputs.amplify_unproven:
        return  # nothing to read; or a listing cut short: each would cost a read, and nothing ends (a finding)
    resolved.absent.update(absent)
    missed = reader.links(MISSED_LINK)
    names = reader.links(NAME_LINK)
    snapshots = rt.snapshots()
    to_read = sorted(i for i in absent if not missed.get(i))
    found, problems = snapshots.amplify_subscriptions_by_id(to_read)
    resolved.problems.extend(problems)
    for amplify_id, current in sorted(absent.items()):
        name = names.get(amplify_id)
        subscription = found.get(amplify_id)
        if subscription is None and amplify_id in to_read:
            if not name:
                resolved.unproven_absent[amplify_id] = "this journal does not know its name, so it cannot be read"
                continue
            subscription = _read_by_name(snapshots.amplify_subscription(name), amplify_id, resolved)
            if amplify_id in resolved.unproven_absent:
                continue
        if subscription is None:  # proven deleted, now or by an earlier run
            when = parse_timestamp(missed.get(amplify_id)) or rt.clock()
            plan_name = _plan_of(rt, current, resolved)
            resolved.amplify.append(deleted_stand_in(amplify_id, plan_name, when, name=name or "(deleted)"))
        elif subscription.plan_name in inputs.plans:
            resolved.amplify.append(subscription)  # its plan is linked: missed by the listing after all
        else:
            resolved.plans.setdefault(
                subscription.plan_name, kept_plan(subscription.plan_name, current, _add_on_prefix(rt))
            )
            resolved.amplify.append(subscription)
            resolved.kept.add(amplify_id)


def _plan_of(rt: Runtime, current: RecurlySubscription, resolved: _Resolved) -> str:
    """The Amplify plan name to bill a stand-in by: its linked plan, else one built from its Recurly subscription."""
    linked = next((p for p in resolved.plans.values() if p.code == current.plan_code), None)
    if linked is not None:
        return linked.amplify_name
    resolved.plans[current.plan_code] = kept_plan(current.plan_code, current, _add_on_prefix(rt))
    return current.plan_code


def _read_by_name(answer: DirectRead, amplify_id: str, resolved: _Resolved) -> AmplifySubscription | None:
    """The subscription a GET by name answered; None when it is gone: 404, or its name now names another
    resource (a name is a resource's identity, so the one we linked was deleted)."""
    if isinstance(answer, Missing):
        return None
    if isinstance(answer, AmplifyBillingError):
        resolved.unproven_absent[amplify_id] = f"reading it failed ({answer})"
        return None
    parsed = parse_subscription(answer)
    if isinstance(parsed, ParseProblem):
        resolved.unproven_absent[amplify_id] = f"its resource cannot be read ({parsed.reason})"
        return None
    return replace(parsed, raw=CompactResource.of(answer)) if parsed.id == amplify_id else None


def _add_on_prefix(rt: Runtime) -> str:
    return rt.settings.catalog.add_on_code_prefix.lower()


def _end_requested(rt: Runtime, resolved: _Resolved, reader: LinkReader, asked: Mapping[str, datetime]) -> None:
    """Ends the operator asked for (sync-subscriptions --end, kept in the journal) of subscriptions the tool
    cannot end by itself: kept ones (their product left the opted-in catalog) and unproven absent ones. Each
    becomes a stand-in ended at that moment: its usage up to then first, then the end in Recurly."""
    requested = {k: t for k, v in reader.links(END_LINK).items() if (t := parse_timestamp(v)) is not None}
    requested.update(asked)
    for amplify_id, when in sorted(requested.items()):
        if amplify_id in resolved.kept:
            index, s = next((i, s) for i, s in enumerate(resolved.amplify) if s.id == amplify_id)
            if ended_state(s):
                continue  # ended in Amplify meanwhile: that end applies
            resolved.amplify[index] = deleted_stand_in(s.id, s.plan_name, when, why=ENDED_BY_OPERATOR, name=s.name)
            resolved.kept.discard(amplify_id)
        elif amplify_id in resolved.unproven_absent:
            plan_name = _plan_of(rt, resolved.absent[amplify_id], resolved)
            resolved.amplify.append(deleted_stand_in(amplify_id, plan_name, when, why=ENDED_BY_OPERATOR))
            del resolved.unproven_absent[amplify_id]


def endable(inputs: SubscriptionInputs) -> frozenset[str]:
    """Ids that ``sync-subscriptions --end`` accepts: kept subscriptions, unproven absent ones, and those it
    already ends (a repeat is harmless)."""
    stand_ins = {s.id for s in inputs.amplify if s.raw.get(STAND_IN)}
    return frozenset(inputs.kept) | frozenset(inputs.unproven_absent) | stand_ins


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


class LinkReader(Protocol):
    """The part of the journal that building the subscription inputs reads."""

    def links(self, kind: str) -> dict[str, str]: ...
    def usage_watermark(self, subscription_id: str, quota_id: str) -> datetime | None: ...


def subscription_inputs(
    rt: Runtime, journal: LinkReader | None = None, *, ends: Mapping[str, datetime] | None = None
) -> SubscriptionInputs:
    """Both sides of sync-subscriptions, with what the listings missed read directly (DESIGN.md §3
    Completeness). ``journal``: a reader to use instead of the run's journal (status). ``ends``: ends the operator
    asks for in this run (``--end``) that the journal does not hold yet (a dry run)."""
    reader: LinkReader = journal if journal is not None else rt.journal()
    plans = linked_plans(rt)
    subscriptions, problems = amplify_subscriptions(rt, plans)
    snapshots = rt.snapshots()
    amplify_read = snapshots.amplify_subscriptions_read(sorted(plans))
    recurly_read = snapshots.recurly_subscriptions_read()
    listed = SubscriptionInputs(
        amplify=tuple(subscriptions),
        plans=plans,
        recurly=tuple(recurly_subscription(r) for r in snapshots.recurly_subscriptions()),
        accounts=set(snapshots.recurly_accounts()),
        journal_links=reader.links(SUBSCRIPTION_LINK),
        problems=tuple(problems),
        recurly_unproven="" if recurly_read.complete else recurly_read.why,
        amplify_unproven="" if amplify_read.complete else amplify_read.why,
    )
    resolved = _Resolved(list(listed.amplify), dict(plans), list(listed.recurly), list(problems))
    _read_lost_links(rt, listed, resolved)
    _read_absent(rt, listed, reader, resolved)
    _end_requested(rt, resolved, reader, ends or {})
    recurly = tuple(resolved.recurly)
    return replace(
        listed,
        amplify=tuple(resolved.amplify),
        plans=resolved.plans,
        recurly=recurly,
        problems=tuple(resolved.problems),
        lost_links=resolved.lost_links,
        unproven_absent=resolved.unproven_absent,
        kept=frozenset(resolved.kept),
        usage_reported_through=usage_reported_through(
            rt,
            resolved.amplify,
            resolved.plans,
            attached=attached_add_ons(recurly, listed.journal_links),
            journal=reader,
        ),
    )


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


def _operator_ends(rt: Runtime, options: SyncOptions) -> dict[str, datetime]:
    """--end: each id must be one the tool cannot end by itself (else exit 2 naming it); kept in the journal on a
    real run, so later runs finish the end (its final usage must settle first)."""
    if not options.end:
        return {}
    now = rt.clock()
    asked = {amplify_id: now for amplify_id in options.end}
    allowed = endable(subscription_inputs(rt, ends=asked))
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
    inputs = subscription_inputs(rt, ends=_operator_ends(rt, options))
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
