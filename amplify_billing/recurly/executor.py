"""Typed Recurly actions -> gateway calls (docs/architecture.md, "Executors").

Each handler performs exactly one upstream write and returns the id of what it wrote. Here, and only here, the
domain's plain ids become the SDK's ``code-`` / ``uuid-`` / ``name-`` forms. Usage posts are the exactly-once
path: an intent in the journal, then the write with its Idempotency-Key, then the ledger and the intent closed;
a lost answer is resolved by looking the merchant_tag up in Recurly, never by a resend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from amplify_billing.actions import (
    Action,
    CancelSubscription,
    CreateAccount,
    CreateAddOn,
    CreateMeasuredUnit,
    CreatePlan,
    CreateSubscription,
    DeactivatePlan,
    PostUsage,
    TerminateSubscription,
    UpdateAddOn,
    UpdateMeasuredUnit,
    UpdatePlan,
    UpdateUsage,
    UsageRecord,
    resolve,
)
from amplify_billing.apply import Handler
from amplify_billing.journal import UsageLedgerEntry
from amplify_billing.recurly.gateway import RecurlyGateway
from amplify_billing.recurly.translate import (
    account_body,
    add_on_body,
    plan_create_body,
    plan_update_body,
    subscription_body,
)
from amplify_billing.usage.windows import idempotency_key as usage_idempotency_key

# the journal's intent kind for usage posts (open intents are resolved by report-usage's next run)
USAGE_INTENT = "usage"


class UsageJournal(Protocol):
    """The journal writes a usage post makes around its Recurly call."""

    def begin_intent(self, key: str, kind: str, payload: Mapping[str, Any]) -> None: ...
    def complete_intent(self, key: str, result_id: str | None) -> None: ...
    def record_usage(self, entry: UsageLedgerEntry) -> None: ...


def _id_of(answer: Mapping[str, Any]) -> str | None:
    for key in ("uuid", "id", "code"):
        if answer.get(key):
            return str(answer[key])
    return None


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _intent_payload(action: PostUsage, subscription_id: str, add_on_id: str, when: str) -> dict[str, Any]:
    """What the next run needs to look the record up if this post's answer is lost (its format is the journal's)."""
    return {
        "subscription_id": subscription_id,
        "add_on_id": add_on_id,
        "merchant_tag": action.merchant_tag,
        "amount": str(action.amount),
        "usage_timestamp": when,
        "amplify_subscription_id": action.record.amplify_subscription_id,
        "quota_id": action.record.quota_id,
    }


def _stored_usage(
    gateway: RecurlyGateway, subscription_id: str, add_on_id: str, tag: str, when: str
) -> Mapping[str, Any] | None:
    """The record with ``tag`` if Recurly already holds it: asked before a repeat of a post whose answer was lost."""
    records = gateway.list_usage(
        subscription_id, add_on_id, {"billing_status": "all", "begin_time": when, "end_time": when}
    )
    return next((r for r in records if r.get("merchant_tag") == tag), None)


def recurly_handlers(
    gateway: Callable[[], RecurlyGateway],
    on_subscription: Callable[[Mapping[str, Any]], None] | None = None,
    on_account: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[type[Action], Handler]:
    """Catalog, account and subscription writes. ``gateway`` is called per write: one client per worker thread.
    ``on_subscription`` gets each subscription write's answer (the subscription as Recurly now holds it): the
    runtime keeps its memoised listing current with it, so the next phase needs no second listing.
    ``on_account`` likewise gets each created account (with its hosted login token and card on file, which
    sync-invoices needs for the pay link: no read of it follows)."""

    def run(call: Callable[[RecurlyGateway, Any, str], Mapping[str, Any]]) -> Handler:
        def handle(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
            return _id_of(call(gateway(), action, key))

        return handle

    def answered(
        call: Callable[[RecurlyGateway, Any, str], Mapping[str, Any]], hook: Callable[[Mapping[str, Any]], None] | None
    ) -> Handler:
        def handle(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
            answer = call(gateway(), action, key)
            if hook is not None:
                hook(answer)
            return _id_of(answer)

        return handle

    def subscription(call: Callable[[RecurlyGateway, Any, str], Mapping[str, Any]]) -> Handler:
        return answered(call, on_subscription)

    def account(call: Callable[[RecurlyGateway, Any, str], Mapping[str, Any]]) -> Handler:
        return answered(call, on_account)

    return {
        CreateMeasuredUnit: run(
            lambda g, a, k: g.create_measured_unit({"name": a.name, "display_name": a.display_name}, idempotency_key=k)
        ),
        UpdateMeasuredUnit: run(
            lambda g, a, k: g.update_measured_unit(
                f"name-{a.name}", {"display_name": a.display_name}, idempotency_key=k
            )
        ),
        CreatePlan: run(lambda g, a, k: g.create_plan(plan_create_body(a.plan), idempotency_key=k)),
        UpdatePlan: run(
            lambda g, a, k: g.update_plan(f"code-{a.plan.code}", plan_update_body(a.plan), idempotency_key=k)
        ),
        DeactivatePlan: run(lambda g, a, k: g.remove_plan(f"code-{a.plan_code}", idempotency_key=k)),
        CreateAddOn: run(
            lambda g, a, k: g.create_plan_add_on(f"code-{a.plan_code}", add_on_body(a.add_on), idempotency_key=k)
        ),
        UpdateAddOn: run(
            lambda g, a, k: g.update_plan_add_on(
                f"code-{a.plan_code}", f"code-{a.add_on.code}", add_on_body(a.add_on, create=False), idempotency_key=k
            )
        ),
        CreateAccount: account(lambda g, a, k: g.create_account(account_body(a), idempotency_key=k)),
        CreateSubscription: subscription(
            lambda g, a, k: g.create_subscription(subscription_body(a), idempotency_key=k)
        ),
        CancelSubscription: subscription(
            lambda g, a, k: g.cancel_subscription(f"uuid-{a.uuid}", {"timeframe": "term_end"}, idempotency_key=k)
        ),
        TerminateSubscription: subscription(
            lambda g, a, k: g.terminate_subscription(
                f"uuid-{a.uuid}", {"refund": a.refund, "charge": True}, idempotency_key=k
            )
        ),
    }


def usage_handlers(
    gateway: Callable[[], RecurlyGateway], journal: Callable[[], UsageJournal], clock: Callable[[], datetime]
) -> dict[type[Action], Handler]:
    """Usage posts and in-place updates, each recorded in the journal's ledger once Recurly has it."""

    def entry(record: UsageRecord, uuid: str, add_on: str, tag: str, usage_id: str, amount: int) -> UsageLedgerEntry:
        return record.ledger_entry(uuid=uuid, add_on=add_on, tag=tag, usage_id=usage_id, amount=amount, now=clock())

    def post(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        """Base records, parts and adjustments alike: intent, write with its Idempotency-Key, ledger."""
        assert isinstance(action, PostUsage)
        uuid = resolve(action.subscription_uuid, done)
        when = _timestamp(action.usage_timestamp)
        subscription_id, add_on_id, tag = f"uuid-{uuid}", f"code-{action.add_on_code}", action.merchant_tag
        journal().begin_intent(tag, USAGE_INTENT, _intent_payload(action, subscription_id, add_on_id, when))
        created = gateway().create_usage(
            subscription_id,
            add_on_id,
            {"amount": action.amount, "merchant_tag": tag, "usage_timestamp": when},
            idempotency_key=usage_idempotency_key(tag, "create"),
            already_stored=lambda: _stored_usage(gateway(), subscription_id, add_on_id, tag, when),
        )
        usage_id = str(created.get("id"))
        journal().record_usage(entry(action.record, uuid, action.add_on_code, tag, usage_id, action.amount))
        journal().complete_intent(tag, usage_id)
        return usage_id

    def update(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, UpdateUsage)
        gateway().update_usage(
            action.usage_id,
            {"amount": action.amount},
            idempotency_key=usage_idempotency_key(f"{action.merchant_tag}={action.amount}", "update"),
        )
        journal().record_usage(
            entry(
                action.record,
                action.subscription_uuid,
                action.add_on_code,
                action.merchant_tag,
                action.usage_id,
                action.amount,
            )
        )
        return action.usage_id

    return {PostUsage: post, UpdateUsage: update}
