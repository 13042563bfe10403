"""The Recurly site the emulator serves: its records in memory and the transitions the real service makes.

HTTP-free and lock-free: the emulator calls in under its lock. Every operation has its request checked whole
before it changes anything (``recurly_validation``, ``recurly_validation_billing``: a 422 leaves no trace)
and raises ``RecurlyProblem`` for an error answer; ``recurly_output`` renders the records as the API answers.
Money is Decimal from the request body to the answer; times are whole UTC seconds from the injected clock.
Time moves only with that clock: ``advance()`` brings every subscription to its now, by the rules of
``recurly_lifecycle`` (periods, terms, pauses, expiry).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from amplify_billing.sandbox import recurly_lifecycle as lifecycle
from amplify_billing.sandbox import recurly_validation as catalog
from amplify_billing.sandbox import recurly_validation_billing as billing
from amplify_billing.sandbox.recurly_records import (
    AccountRecord,
    AddOnRecord,
    CustomFieldDefinitionRecord,
    Ids,
    MeasuredUnitRecord,
    PlanRecord,
    SubscriptionAddOnRecord,
    SubscriptionRecord,
    UsageRecord,
)
from amplify_billing.sandbox.recurly_wire import RecurlyProblem, not_found, validation, whole_seconds

# What `state=live` lists: "active, canceled, or future state or are in trial" (ROAS `state` parameter,
# reference §9.3): NOT paused, and no filter value lists paused subscriptions at all.
LISTED_AS_LIVE = frozenset({"active", "canceled", "future"})
SUBSCRIPTION_FILTERS = ("active", "canceled", "expired", "future", "in_trial", "live")
R = TypeVar("R")


def _lookup(kind: str, ref: str, records: Mapping[str, R], natural: tuple[str, Callable[[R], str]] | None = None) -> R:
    """A record by its id, or by a prefixed natural key (``code-…``, ``name-…``, ``uuid-…``) where the API takes one;
    a 404 naming ``kind`` and ``ref`` when there is none."""
    if natural is not None and ref.startswith(natural[0]):
        key, wanted = natural[1], ref.removeprefix(natural[0])
        found = next((r for r in records.values() if key(r) == wanted), None)
    else:
        found = records.get(ref)
    if found is None:
        raise not_found(kind, ref)
    return found


# ---- the site -------------------------------------------------------------------------------------


class RecurlyState:
    def __init__(self, *, clock: Callable[[], datetime], seed: int) -> None:
        self._clock = clock
        self.ids = Ids(seed)
        created = self.now()
        self.site_id = self.ids.id()
        self.site_created_at = created
        self.units: dict[str, MeasuredUnitRecord] = {}
        self.plans: dict[str, PlanRecord] = {}
        self.add_ons: dict[str, AddOnRecord] = {}
        self.accounts: dict[str, AccountRecord] = {}
        self.subscriptions: dict[str, SubscriptionRecord] = {}
        self.usage: dict[str, UsageRecord] = {}
        self.field_definitions: dict[str, CustomFieldDefinitionRecord] = {}

    def now(self) -> datetime:
        return whole_seconds(self._clock())

    # ---- lookups ------------------------------------------------------------------------------------
    def unit(self, ref: str) -> MeasuredUnitRecord:
        return _lookup("MeasuredUnit", ref, self.units, ("name-", lambda u: u.name))

    def plan(self, ref: str) -> PlanRecord:
        return _lookup("Plan", ref, self.plans, ("code-", lambda p: p.code))

    def plan_add_ons(self, plan: PlanRecord) -> list[AddOnRecord]:
        return [a for a in self.add_ons.values() if a.plan_id == plan.id]

    def add_on(self, plan: PlanRecord, ref: str) -> AddOnRecord:
        """An add-on of ``plan`` (by id or ``code-``); ``site_add_on`` looks across every plan."""
        candidates = {a.id: a for a in self.plan_add_ons(plan)}
        return _lookup("AddOn", ref, candidates, ("code-", lambda a: a.code))

    def site_add_on(self, ref: str) -> AddOnRecord:
        return _lookup("AddOn", ref, self.add_ons, ("code-", lambda a: a.code))

    def account(self, ref: str) -> AccountRecord:
        return _lookup("Account", ref, self.accounts, ("code-", lambda a: a.code))

    def subscription(self, ref: str) -> SubscriptionRecord:
        return _lookup("Subscription", ref, self.subscriptions, ("uuid-", lambda s: s.uuid))

    def usage_record(self, ref: str) -> UsageRecord:
        return _lookup("Usage", ref, self.usage)

    def field_definition(self, ref: str) -> CustomFieldDefinitionRecord:
        return _lookup("CustomFieldDefinition", ref, self.field_definitions)

    # ---- custom fields ------------------------------------------------------------------------------
    def seed_field_definition(self, name: str, related_type: str) -> CustomFieldDefinitionRecord:
        catalog.check_field_definition(self, name, related_type)
        record = CustomFieldDefinitionRecord(self.ids.id(), name, related_type, self.now(), self.ids.seq())
        self.field_definitions[record.id] = record
        return record

    @staticmethod
    def _merge_custom_fields(current: list[dict[str, str]], changes: list[dict[str, str]]) -> list[dict[str, str]]:
        """Partial semantics of the API: only named fields change; an empty value clears one."""
        merged = {f["name"]: f["value"] for f in current}
        for change in changes:
            if change["value"]:
                merged[change["name"]] = change["value"]
            else:
                merged.pop(change["name"], None)
        return [{"name": k, "value": v} for k, v in merged.items()]

    # ---- measured units -----------------------------------------------------------------------------
    def create_unit(self, body: Mapping[str, Any]) -> MeasuredUnitRecord:
        fields = catalog.read_unit(self, body, None)
        assert fields.name is not None and fields.display_name is not None
        now = self.now()
        record = MeasuredUnitRecord(
            self.ids.id(), fields.name, fields.display_name, fields.description, now, now, self.ids.seq()
        )
        self.units[record.id] = record
        return record

    def update_unit(self, ref: str, body: Mapping[str, Any]) -> MeasuredUnitRecord:
        record = self.unit(ref)
        fields = catalog.read_unit(self, body, record)
        record.name = fields.name or record.name
        record.display_name = fields.display_name or record.display_name
        if fields.description_sent:
            record.description = fields.description
        record.updated_at = self.now()
        return record

    def remove_unit(self, ref: str) -> MeasuredUnitRecord:
        record = self.unit(ref)
        in_use = any(
            a.measured_unit_id == record.id and a.state == "active" and self.plans[a.plan_id].state == "active"
            for a in self.add_ons.values()
        )
        if in_use or record.state != "active":
            raise validation("measured_unit", "is used by an active plan or may already be inactive")
        now = self.now()
        record.state, record.deleted_at, record.updated_at = "inactive", now, now
        return record

    # ---- plans --------------------------------------------------------------------------------------
    def create_plan(self, body: Mapping[str, Any]) -> PlanRecord:
        plan, add_ons = catalog.read_new_plan(self, body)
        plan.seq = self.ids.seq()
        self.plans[plan.id] = plan
        for add_on in add_ons:
            add_on.seq = self.ids.seq()
            self.add_ons[add_on.id] = add_on
        return plan

    def update_plan(self, ref: str, body: Mapping[str, Any]) -> PlanRecord:
        plan = self.plan(ref)
        values = catalog.read_plan_update(self, plan, body)
        for name in (
            "code",
            "name",
            "description",
            "accounting_code",
            "auto_renew",
            "total_billing_cycles",
            "trial_unit",
            "trial_length",
        ):
            if values[name] is not None:
                setattr(plan, name, values[name])
        if values["prices"] is not None:
            plan.prices = values["prices"]
        if values["custom_fields"] is not None:
            plan.custom_fields = self._merge_custom_fields(plan.custom_fields, values["custom_fields"])
        plan.updated_at = self.now()
        return plan

    def remove_plan(self, ref: str) -> PlanRecord:
        plan = self.plan(ref)
        if plan.state != "active":
            raise validation("plan", "is already inactive")
        now = self.now()
        plan.state, plan.deleted_at, plan.updated_at = "inactive", now, now
        return plan

    # ---- add-ons ------------------------------------------------------------------------------------
    def create_add_on(self, plan_ref: str, body: Mapping[str, Any]) -> AddOnRecord:
        record = catalog.read_new_add_on(self, self.plan(plan_ref), body)
        record.seq = self.ids.seq()
        self.add_ons[record.id] = record
        return record

    def update_add_on(self, plan_ref: str, ref: str, body: Mapping[str, Any]) -> AddOnRecord:
        plan = self.plan(plan_ref)
        record = self.add_on(plan, ref)
        update = catalog.read_add_on_update(self, plan, record, body)
        record.code = update.code or record.code
        record.name = update.name or record.name
        record.usage_calculation_type = update.usage_calculation_type or record.usage_calculation_type
        record.measured_unit_id = update.measured_unit_id or record.measured_unit_id
        if update.optional is not None:
            record.optional = update.optional
        if update.default_quantity is not None:
            record.default_quantity = update.default_quantity
        if update.display_quantity is not None:
            record.display_quantity = update.display_quantity
        priced = update.priced
        record.prices, record.tiers, record.usage_percentage = priced.prices, priced.tiers, priced.usage_percentage
        record.updated_at = self.now()
        return record

    def remove_add_on(self, plan_ref: str, ref: str) -> AddOnRecord:
        record = self.add_on(self.plan(plan_ref), ref)
        if record.state != "active":
            raise validation("add_on", "is already inactive")
        now = self.now()
        record.state, record.deleted_at, record.updated_at = "inactive", now, now
        return record

    # ---- accounts -----------------------------------------------------------------------------------
    def create_account(self, body: Mapping[str, Any]) -> AccountRecord:
        record = billing.read_new_account(self, body)
        record.seq = self.ids.seq()
        self.accounts[record.id] = record
        return record

    def update_account(self, ref: str, body: Mapping[str, Any]) -> AccountRecord:
        record = self.account(ref)
        values, custom = billing.read_account_update(self, record, body)
        for name, value in values.items():
            setattr(record, name, value)
        if custom is not None:
            record.custom_fields = self._merge_custom_fields(record.custom_fields, custom)
        record.updated_at = self.now()
        return record

    # ---- subscriptions ------------------------------------------------------------------------------
    def create_subscription(self, body: Mapping[str, Any]) -> SubscriptionRecord:
        request = billing.read_new_subscription(self, body)
        plan, account = request.plan, request.account
        if request.new_account is not None:
            request.new_account.seq = self.ids.seq()
            self.accounts[request.new_account.id] = request.new_account
            account = request.new_account
        assert account is not None
        now = self.now()
        starts_at = request.starts_at
        start = starts_at if starts_at is not None and starts_at > now else now
        subscription = SubscriptionRecord(
            id=self.ids.id(),
            uuid=self.ids.uuid(),
            account_id=account.id,
            plan_id=plan.id,
            state="future" if start > now else "active",
            currency=request.currency,
            unit_amount=request.plan_price.unit_amount if request.unit_amount is None else request.unit_amount,
            quantity=request.quantity or 1,
            collection_method=request.collection_method,
            interval_unit=plan.interval_unit,
            interval_length=plan.interval_length,
            anchor=start,
            period=0,
            current_period_started_at=start,
            current_period_ends_at=lifecycle.add_interval(start, plan.interval_unit, plan.interval_length),
            created_at=now,
            updated_at=now,
            seq=self.ids.seq(),
            auto_renew=plan.auto_renew if request.auto_renew is None else request.auto_renew,
            total_billing_cycles=(
                plan.total_billing_cycles if request.total_billing_cycles is None else request.total_billing_cycles
            ),
            net_terms=request.net_terms or 0,
            add_ons=request.add_ons,
            custom_fields=request.custom_fields,
            activated_at=None if start > now else now,
            po_number=request.po_number,
        )
        self.subscriptions[subscription.id] = subscription
        return subscription

    def cancel_subscription(self, ref: str, body: Mapping[str, Any]) -> SubscriptionRecord:
        s = self.subscription(ref)
        timeframe = billing.read_cancel_timeframe(body)
        if s.state not in ("active", "future"):
            raise validation("subscription", f"is {s.state}; only active or future subscriptions can be canceled")
        now = self.now()
        if s.state == "future":
            # a future subscription that is canceled never starts
            s.expires_at = s.current_period_started_at
        else:
            s.expires_at = s.current_period_ends_at if timeframe == "bill_date" else lifecycle.term_ends_at(s)
        s.state, s.canceled_at, s.updated_at = "canceled", now, now
        return s

    def terminate_subscription(self, ref: str, *, refund: str, charge: bool) -> SubscriptionRecord:
        s = self.subscription(ref)
        if s.state == "expired":
            raise validation("subscription", "is already expired")
        now = self.now()
        if not charge:
            # charge=false: Recurly zeroes the period's unbilled usage with one negative record per add-on
            for sub_add_on in s.add_ons:
                unbilled = [
                    u
                    for u in self.usage.values()
                    if u.subscription_id == s.id
                    and u.add_on_id == sub_add_on.add_on_id
                    and u.billed_at is None
                    and u.usage_timestamp >= s.current_period_started_at
                ]
                total = sum((u.amount for u in unbilled), Decimal(0))
                if total:
                    add_on = self.add_ons[sub_add_on.add_on_id]
                    self._store_usage(s, add_on, sub_add_on, -total, None, now, now)
        s.state, s.expires_at, s.updated_at, s.expiration_reason = "expired", now, now, "terminated"
        if s.canceled_at is None:
            s.canceled_at = now
        return s

    def pause_subscription(self, ref: str, body: Mapping[str, Any]) -> SubscriptionRecord:
        """PUT /subscriptions/{id}/pause (ROAS `pause_subscription`): the pause starts at the next renewal and
        lasts ``remaining_pause_cycles`` periods; 0 cancels a pending pause, or resumes a paused subscription."""
        s = self.subscription(ref)
        cycles = billing.read_pause_cycles(body)
        if s.state not in ("active", "paused"):
            raise validation("subscription", f"is {s.state}; only active or paused subscriptions can be paused")
        if cycles == 0 and s.state == "paused":
            return self.resume_subscription(ref)
        now = self.now()
        if cycles == 0:
            s.paused_at, s.remaining_pause_cycles = None, None
        else:
            s.paused_at = s.paused_at if s.state == "paused" else s.current_period_ends_at
            s.remaining_pause_cycles = cycles
        s.updated_at = now
        return s

    def resume_subscription(self, ref: str) -> SubscriptionRecord:
        """PUT /subscriptions/{id}/resume: a paused subscription is active again at once, in a new period."""
        s = self.subscription(ref)
        if s.state != "paused":
            raise validation("subscription", f"is {s.state}; only a paused subscription can be resumed")
        lifecycle.resume(s, self.now())
        return s

    # seeding: states reached in time without this tool (``recurly_lifecycle``)
    def pause_now(self, ref: str, cycles: int) -> SubscriptionRecord:
        return lifecycle.pause_now(self.subscription(ref), cycles, self.now())

    def expire_after_dunning(self, ref: str) -> SubscriptionRecord:
        return lifecycle.expire_after_dunning(self.subscription(ref), self.now())

    def advance(self) -> None:
        """Bring every subscription to the clock's now (``recurly_lifecycle``)."""
        now = self.now()
        for s in self.subscriptions.values():
            lifecycle.advance(s, now)

    def subscriptions_in(self, state: str | None, account_id: str | None = None) -> list[SubscriptionRecord]:
        if state is not None and state not in SUBSCRIPTION_FILTERS:
            raise RecurlyProblem(400, "bad_request", f"state must be one of {', '.join(SUBSCRIPTION_FILTERS)}")
        result = []
        for s in self.subscriptions.values():
            if account_id is not None and s.account_id != account_id:
                continue
            if state == "live":
                matches = s.state in LISTED_AS_LIVE
            elif state == "in_trial":
                matches = False  # the emulator starts no trials
            else:
                matches = state is None or s.state == state
            if matches:
                result.append(s)
        return result

    # ---- usage --------------------------------------------------------------------------------------
    def _usage_target(
        self, sub_ref: str, add_on_ref: str
    ) -> tuple[SubscriptionRecord, AddOnRecord, SubscriptionAddOnRecord]:
        s = self.subscription(sub_ref)
        plan = self.plans[s.plan_id]
        by_sub_add_on = next((a for a in s.add_ons if a.id == add_on_ref), None)
        add_on = self.add_ons[by_sub_add_on.add_on_id] if by_sub_add_on else self.add_on(plan, add_on_ref)
        attached = next((a for a in s.add_ons if a.add_on_id == add_on.id), None)
        if attached is None:
            raise validation("add_on_id", f"add-on {add_on.code} is not on subscription {s.uuid}")
        return s, add_on, attached

    def _store_usage(
        self,
        s: SubscriptionRecord,
        add_on: AddOnRecord,
        attached: SubscriptionAddOnRecord,
        amount: Decimal,
        merchant_tag: str | None,
        usage_timestamp: datetime,
        recording_timestamp: datetime,
    ) -> UsageRecord:
        now = self.now()
        record = UsageRecord(
            id=self.ids.id(),
            subscription_id=s.id,
            add_on_id=add_on.id,
            amount=amount,
            merchant_tag=merchant_tag,
            usage_type=add_on.usage_type,
            tier_type=attached.tier_type,
            measured_unit_id=add_on.measured_unit_id,
            usage_percentage=attached.usage_percentage,
            unit_price=attached.unit_price,
            tiers=list(attached.tiers),
            usage_timestamp=usage_timestamp,
            recording_timestamp=recording_timestamp,
            created_at=now,
            updated_at=now,
            seq=self.ids.seq(),
        )
        self.usage[record.id] = record
        return record

    def create_usage(self, sub_ref: str, add_on_ref: str, body: Mapping[str, Any]) -> UsageRecord:
        s, add_on, attached = self._usage_target(sub_ref, add_on_ref)
        now = self.now()
        fields = billing.read_new_usage(s, add_on, body, now)
        assert fields.amount is not None
        return self._store_usage(
            s,
            add_on,
            attached,
            fields.amount,
            fields.merchant_tag,
            fields.usage_timestamp or now,
            fields.recording_timestamp or now,
        )

    def update_usage(self, ref: str, body: Mapping[str, Any]) -> UsageRecord:
        record = self.usage_record(ref)
        fields = billing.read_usage_update(record, self.subscriptions[record.subscription_id], body)
        if fields.amount is not None:
            record.amount = fields.amount
        if fields.merchant_tag_sent:
            record.merchant_tag = fields.merchant_tag
        record.usage_timestamp = fields.usage_timestamp or record.usage_timestamp
        record.recording_timestamp = fields.recording_timestamp or record.recording_timestamp
        record.updated_at = self.now()
        return record

    def remove_usage(self, ref: str) -> None:
        record = self.usage_record(ref)
        if record.billed_at is not None:
            raise validation("usage", "has been billed and cannot be deleted")
        del self.usage[record.id]

    def usage_of(self, sub_ref: str, add_on_ref: str, billing_status: str) -> list[UsageRecord]:
        s, add_on, _attached = self._usage_target(sub_ref, add_on_ref)
        if billing_status not in ("unbilled", "billed", "all"):
            raise RecurlyProblem(400, "bad_request", "billing_status must be unbilled, billed or all")
        return [
            u
            for u in self.usage.values()
            if u.subscription_id == s.id
            and u.add_on_id == add_on.id
            and (billing_status == "all" or (billing_status == "billed") == (u.billed_at is not None))
        ]

    def bill(self, subscription_uuid: str | None) -> int:
        target: SubscriptionRecord | None = None
        if subscription_uuid is not None:
            uuid = subscription_uuid.removeprefix("uuid-")
            target = next((s for s in self.subscriptions.values() if s.uuid == uuid), None)
            if target is None:
                raise not_found("Subscription", f"uuid-{uuid}")
        now = self.now()
        billed = 0
        for s in self.subscriptions.values():
            if target is None or s is target:
                s.billed_through = now
        for record in self.usage.values():
            if record.billed_at is None and (target is None or record.subscription_id == target.id):
                record.billed_at, record.updated_at = now, now
                billed += 1
        return billed
