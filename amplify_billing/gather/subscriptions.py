"""Gathering the inputs of link-accounts, sync-subscriptions and report-usage: the listings of both systems,
with what they missed read directly (docs/architecture.md, "Completeness"). Reads only: every decision is in
``reconcile``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from amplify_billing.amplify.parse import ParseProblem, parse_subscription, parse_timestamp
from amplify_billing.compact import CompactResource
from amplify_billing.errors import AmplifyBillingError
from amplify_billing.gather.marketplaces import marketplace_billing
from amplify_billing.gather.options import subscription_options
from amplify_billing.identity import add_on_code, plan_code
from amplify_billing.links import END_LINK, MISSED_LINK, NAME_LINK, SUBSCRIPTION_LINK
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.billing_modes import billed_by_recurly, future_starts, guard_double_billing, late_starts
from amplify_billing.reconcile.subscriptions import (
    ENDED_BY_OPERATOR,
    LIVE_STATES,
    STAND_IN,
    LinkedPlan,
    RecurlySubscription,
    SubscriptionInputs,
    deleted_stand_in,
    ended_state,
    kept_plan,
    unmatched_links,
    unreadable_ids,
)
from amplify_billing.settings import Settings
from amplify_billing.snapshots import DirectRead, Missing, Snapshots

if TYPE_CHECKING:
    from amplify_billing.collaborators import Reading


class LinkReader(Protocol):
    """The part of the journal that building the subscription inputs reads."""

    def links(self, kind: str) -> dict[str, str]: ...
    def usage_watermark(self, subscription_id: str, quota_id: str) -> datetime | None: ...


@dataclass(frozen=True)
class GatherReads:
    """What gathering reads: settings, the memoised listings, the journal, the clock (``reads_of`` builds it from
    ``collaborators.Reading``; status passes a journal reader that never creates the file)."""

    settings: Settings
    snapshots: Snapshots
    journal: LinkReader
    clock: Callable[[], datetime]


def linked_plans(reads: GatherReads) -> dict[str, LinkedPlan]:
    """Amplify plans (any state) whose Recurly plan exists and is active, with the add-ons it has."""
    snapshots = reads.snapshots
    catalog = snapshots.amplify_catalog()
    recurly = snapshots.recurly_catalog()
    prefix = reads.settings.catalog.plan_code_prefix
    add_on_prefix = reads.settings.catalog.add_on_code_prefix
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
    reads: GatherReads, plans: Mapping[str, LinkedPlan]
) -> tuple[list[AmplifySubscription], list[ParseProblem]]:
    subscriptions, problems = reads.snapshots.amplify_subscriptions(sorted(plans))
    # marketplace mode (issue 15): Amplify's invoices bill these, so no Recurly subscription nor usage for them
    return billed_by_recurly(subscriptions, reads.settings.billing, reads.clock()), problems


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


def usage_reported_through(
    journal: LinkReader,
    subscriptions: Iterable[AmplifySubscription],
    plans: Mapping[str, LinkedPlan],
    attached: Mapping[str, frozenset[str]] | None = None,
    planned: Mapping[tuple[str, str], datetime] | None = None,
) -> dict[str, datetime | None]:
    """For ended subscriptions: the end of the usage reported for them (the minimum over their quotas).

    ``planned``: watermarks a dry run of report-usage would store, which the journal does not hold yet."""
    reader = journal
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


def _read_lost_links(reads: GatherReads, inputs: SubscriptionInputs, resolved: _Resolved) -> None:
    """A linked Recurly subscription the live listing does not show is read directly: paused (`state=live` never
    lists it) it is still the customer's; ended or gone, it is never replaced unasked."""
    snapshots = reads.snapshots
    for amplify_id, uuid in sorted(unmatched_links(inputs, subscription_options(reads.settings)).items()):
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


def _read_absent(reads: GatherReads, inputs: SubscriptionInputs, reader: LinkReader, resolved: _Resolved) -> None:
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
    snapshots = reads.snapshots
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
            when = parse_timestamp(missed.get(amplify_id)) or reads.clock()
            plan_name = _plan_of(reads, current, resolved)
            resolved.amplify.append(deleted_stand_in(amplify_id, plan_name, when, name=name or "(deleted)"))
        elif subscription.plan_name in inputs.plans:
            resolved.amplify.append(subscription)  # its plan is linked: missed by the listing after all
        else:
            resolved.plans.setdefault(
                subscription.plan_name, kept_plan(subscription.plan_name, current, _add_on_prefix(reads))
            )
            resolved.amplify.append(subscription)
            resolved.kept.add(amplify_id)


def _plan_of(reads: GatherReads, current: RecurlySubscription, resolved: _Resolved) -> str:
    """The Amplify plan name to bill a stand-in by: its linked plan, else one built from its Recurly subscription."""
    linked = next((p for p in resolved.plans.values() if p.code == current.plan_code), None)
    if linked is not None:
        return linked.amplify_name
    resolved.plans[current.plan_code] = kept_plan(current.plan_code, current, _add_on_prefix(reads))
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


def _add_on_prefix(reads: GatherReads) -> str:
    return reads.settings.catalog.add_on_code_prefix.lower()


def _end_requested(reads: GatherReads, resolved: _Resolved, reader: LinkReader, asked: Mapping[str, datetime]) -> None:
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
            plan_name = _plan_of(reads, resolved.absent[amplify_id], resolved)
            resolved.amplify.append(deleted_stand_in(amplify_id, plan_name, when, why=ENDED_BY_OPERATOR))
            del resolved.unproven_absent[amplify_id]


def endable(inputs: SubscriptionInputs) -> frozenset[str]:
    """Ids that ``sync-subscriptions --end`` accepts: kept subscriptions, unproven absent ones, and those it
    already ends (a repeat is harmless)."""
    stand_ins = {s.id for s in inputs.amplify if s.raw.get(STAND_IN)}
    return frozenset(inputs.kept) | frozenset(inputs.unproven_absent) | stand_ins


def subscription_inputs(reads: GatherReads, *, ends: Mapping[str, datetime] | None = None) -> SubscriptionInputs:
    """Both sides of sync-subscriptions, with what the listings missed read directly (docs/architecture.md,
    "Completeness"). ``ends``: ends the operator asks for in this run (``--end``) that the journal does not hold
    yet."""
    reader = reads.journal
    plans = linked_plans(reads)
    subscriptions, problems = amplify_subscriptions(reads, plans)
    snapshots = reads.snapshots
    marketplaces = marketplace_billing(snapshots, subscriptions)
    now = reads.clock()
    subscriptions, withheld = guard_double_billing(subscriptions, marketplaces, reads.settings.billing, now)
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
        withheld=withheld,
        starts_at=future_starts(subscriptions, reads.settings.billing, now),
        late_starts=late_starts(subscriptions, reads.settings.billing, now),
    )
    resolved = _Resolved(list(listed.amplify), dict(plans), list(listed.recurly), list(problems))
    _read_lost_links(reads, listed, resolved)
    _read_absent(reads, listed, reader, resolved)
    _end_requested(reads, resolved, reader, ends or {})
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
            reader, resolved.amplify, resolved.plans, attached=attached_add_ons(recurly, listed.journal_links)
        ),
    )


def reads_of(rt: Reading) -> GatherReads:
    """What gathering reads, from this invocation's collaborators."""
    return GatherReads(rt.settings, rt.snapshots(), rt.journal_view(), rt.clock)
