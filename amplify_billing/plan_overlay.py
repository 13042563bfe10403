"""A dry run's executor: each planned write is recorded on the overlays, never sent (docs/architecture.md,
"Dry run and the whole cycle").

Upstream actions change the forked ``Snapshots`` the way their answer would (a plan with its add-ons, an account,
a subscription), and journal actions go to the ``PlannedJournal`` through the very handlers a real run uses. A
later step of the same invocation (the next phase of ``run``, the usage reported before an end) then plans against
the state the earlier planned changes would leave. Ids a write would return are shown as "(known after apply)".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from amplify_billing.actions import (
    KNOWN_AFTER_APPLY,
    Action,
    Approve,
    CancelSubscription,
    CreateAccount,
    CreateAddOn,
    CreateMeasuredUnit,
    CreatePlan,
    CreateSubscription,
    DeactivatePlan,
    LinkSubscription,
    PostUsage,
    SetAttributes,
    TerminateSubscription,
    UpdateAddOn,
    UpdateMeasuredUnit,
    UpdatePlan,
    UpdateUsage,
    resolve,
)
from amplify_billing.apply import Handler
from amplify_billing.journal_effects import journal_handlers
from amplify_billing.journal_view import JournalView
from amplify_billing.models import RecurlyPlan

if TYPE_CHECKING:
    from amplify_billing.snapshots import Snapshots


def planned_id(key: str) -> str:
    """The stand-in for an id a write would return: unique per change, and plainly not a real id."""
    return f"{KNOWN_AFTER_APPLY} [{key}]"


def is_planned_id(value: str | None) -> bool:
    return bool(value) and str(value).startswith(KNOWN_AFTER_APPLY)


def overlay_handlers(
    journal: JournalView, snapshots: Snapshots | None, clock: Callable[[], datetime]
) -> dict[type[Action], Handler]:
    """Handlers for every action that record it on the overlays (``snapshots``: None leaves listings alone)."""

    def nothing(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        return None

    def plan_write(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        if snapshots is not None:
            _record_plan(snapshots, action)
        return None

    def account(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, CreateAccount)
        new_id = planned_id(key)
        if snapshots is not None:
            snapshots.record_recurly_account(action.code, new_id)
        return new_id

    def subscription(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, CreateSubscription)
        uuid = planned_id(key)
        if snapshots is not None:
            snapshots.record_recurly_subscription(_created_subscription(action, uuid, clock()))
        return uuid

    def end(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, CancelSubscription | TerminateSubscription)
        if snapshots is not None:
            _record_end(snapshots, action, clock())
        return action.uuid

    def post(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, PostUsage | UpdateUsage)
        uuid = resolve(action.subscription_uuid, done)
        usage_id = action.usage_id if isinstance(action, UpdateUsage) else planned_id(key)
        entry = action.record.ledger_entry(
            uuid=uuid,
            add_on=action.add_on_code,
            tag=action.merchant_tag,
            usage_id=usage_id,
            amount=action.amount,
            now=clock(),
        )
        journal.record_usage(entry)
        return usage_id

    handlers: dict[type[Action], Handler] = {
        CreateMeasuredUnit: nothing,
        UpdateMeasuredUnit: nothing,
        CreatePlan: plan_write,
        UpdatePlan: plan_write,
        DeactivatePlan: plan_write,
        CreateAddOn: plan_write,
        UpdateAddOn: plan_write,
        CreateAccount: account,
        CreateSubscription: subscription,
        CancelSubscription: end,
        TerminateSubscription: end,
        PostUsage: post,
        UpdateUsage: post,
        # Amplify writes change nothing a later phase reads from the listings it already holds
        SetAttributes: nothing,
        Approve: nothing,
        LinkSubscription: nothing,
    }
    handlers.update(journal_handlers(lambda: journal))
    return handlers


def _record_plan(snapshots: Snapshots, action: Action) -> None:
    if isinstance(action, CreatePlan | UpdatePlan):
        new = action.plan

        def with_plan(old: RecurlyPlan | None) -> RecurlyPlan:
            return replace(new, add_ons=old.add_ons if old is not None else new.add_ons, state="active")

        snapshots.record_recurly_plan(new.code, with_plan)
    elif isinstance(action, DeactivatePlan):
        snapshots.record_recurly_plan(action.plan_code, lambda old: replace(_must(old), state="inactive"))
    elif isinstance(action, CreateAddOn | UpdateAddOn):
        add_on = action.add_on

        def with_add_on(old: RecurlyPlan | None) -> RecurlyPlan:
            plan = _must(old)
            others = tuple(a for a in plan.add_ons if a.code != add_on.code)
            return replace(plan, add_ons=(*others, replace(add_on, state="active")))

        snapshots.record_recurly_plan(action.plan_code, with_add_on)


def _must(plan: RecurlyPlan | None) -> RecurlyPlan:
    if plan is None:  # the diff orders a plan's create before its add-ons and never deactivates what is not there
        raise LookupError("a planned catalog write names a plan the catalog does not hold")
    return plan


def _created_subscription(action: CreateSubscription, uuid: str, now: datetime) -> dict[str, Any]:
    """The subscription as Recurly would answer its create: active from now (future with a later ``starts_at``),
    with the plan's usage add-ons."""
    fields = [{"name": action.custom_field, "value": action.amplify_id}] if action.custom_field else []
    future = action.starts_at is not None and action.starts_at > now
    return {
        "uuid": uuid,
        "state": "future" if future else "active",
        "account": {"code": action.account_code},
        "plan": {"code": action.plan_code},
        "currency": action.currency,
        "activated_at": None if future else now.astimezone(UTC),
        "add_ons": [{"add_on": {"code": code}} for code in action.add_on_codes],
        "custom_fields": fields,
        "collection_method": action.collection_method,
    }


def _record_end(snapshots: Snapshots, action: CancelSubscription | TerminateSubscription, now: datetime) -> None:
    current = next((s for s in snapshots.recurly_subscriptions() if s.get("uuid") == action.uuid), None)
    if current is None:
        return
    ended = dict(current)
    if isinstance(action, CancelSubscription):
        ended.update(state="canceled", canceled_at=now)
    else:
        ended.update(state="expired", expires_at=now, canceled_at=now)
    snapshots.record_recurly_subscription(ended)


__all__ = ["is_planned_id", "overlay_handlers", "planned_id"]
