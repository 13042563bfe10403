"""Typed actions: what one planned change does, with typed fields (docs/architecture.md, "Changes").

One small frozen dataclass per action. The pure core makes them; the executors turn them into calls
(``recurly/executor.py`` for Recurly, ``amplify/executor.py`` for Amplify, ``journal_effects.py`` for the journal).
Recurly ids are plain (``amplify-8ac9…``, a uuid), never the SDK's ``code-`` / ``uuid-`` forms: the executor adds
those. A value that exists only once an earlier change of the same plan is applied (the uuid of a subscription
this run creates) is a ``Later`` naming that change; a dry run shows it as "(known after apply)", and the
executor resolves it from the earlier change's result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from amplify_billing.models import RecurlyAddOn, RecurlyPlan

if TYPE_CHECKING:  # the journal module opens SQLite: the pure core names its ledger row without loading it
    from amplify_billing.journal import UsageLedgerEntry

KNOWN_AFTER_APPLY = "(known after apply)"


@dataclass(frozen=True, slots=True)
class Later:
    """A value known only after the change keyed ``key`` is applied (its result id)."""

    key: str

    def __str__(self) -> str:
        return KNOWN_AFTER_APPLY


def resolve(value: str | Later, done: Mapping[str, str | None]) -> str:
    """The value itself, or the result of the earlier change a ``Later`` names."""
    if isinstance(value, Later):
        result = done.get(value.key)
        if not result:
            # the Applier runs a change only after those it requires succeeded, so this is a planning bug
            raise LookupError(f"{value.key} has no result to take the value from")
        return result
    return value


def known(value: str | Later | None) -> str | None:
    """The value when it is known at planning time; None for a ``Later`` (or nothing)."""
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Action:
    """Base: ``system`` is where the write goes (recurly | amplify | journal), for the audit log and for which
    writes may run side by side (Applier)."""

    system: ClassVar[str] = "recurly"

    @property
    def verb(self) -> str:
        """The action's name for logs and the audit log, e.g. ``CreatePlan``."""
        return type(self).__name__

    def identity(self) -> dict[str, Any]:
        """The fields that make two actions the same write (idempotency keys); raw resources count by selfLink."""
        result: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "resource" and isinstance(value, Mapping):
                metadata = value.get("metadata")
                value = metadata.get("selfLink") if isinstance(metadata, Mapping) else None
            result[f.name] = str(value) if isinstance(value, Later) else value
        return result


# ---- Recurly catalog -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateMeasuredUnit(Action):
    name: str
    display_name: str


@dataclass(frozen=True, slots=True)
class UpdateMeasuredUnit(Action):
    name: str
    display_name: str


@dataclass(frozen=True, slots=True)
class CreatePlan(Action):
    plan: RecurlyPlan


@dataclass(frozen=True, slots=True)
class UpdatePlan(Action):
    plan: RecurlyPlan


@dataclass(frozen=True, slots=True)
class DeactivatePlan(Action):
    plan_code: str


@dataclass(frozen=True, slots=True)
class CreateAddOn(Action):
    plan_code: str
    add_on: RecurlyAddOn


@dataclass(frozen=True, slots=True)
class UpdateAddOn(Action):
    plan_code: str
    add_on: RecurlyAddOn


# ---- Recurly accounts and subscriptions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateAccount(Action):
    code: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None


@dataclass(frozen=True, slots=True)
class CreateSubscription(Action):
    amplify_id: str
    account_code: str
    plan_code: str
    currency: str
    add_on_codes: tuple[str, ...] = ()
    collection_method: str = "automatic"
    # the Recurly custom field that carries the Amplify id (None: not configured)
    custom_field: str | None = None
    # the Recurly subscription it was linked to before (not live any more): counted by the safety valve
    replaces: str | None = None
    # Recurly's starts_at: a Marketplace switching to recurly mode bills nothing in Recurly before its switch
    starts_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CancelSubscription(Action):
    """Ends at the term's end (the paid period runs out)."""

    uuid: str


@dataclass(frozen=True, slots=True)
class TerminateSubscription(Action):
    uuid: str
    refund: str = "none"  # none | partial | full


# ---- Recurly usage (each post goes through a journal intent: exactly once) -------------------------------------


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """Which window of which (subscription, quota) a record bills, for the ledger."""

    amplify_subscription_id: str
    quota_id: str
    window_start: datetime
    window_end: datetime
    base_tag: str
    record_kind: str  # base | part | adjustment

    def ledger_entry(
        self, *, uuid: str, add_on: str, tag: str, usage_id: str | None, amount: int, now: datetime
    ) -> UsageLedgerEntry:
        """The ledger row of a usage record Recurly holds (posted or updated at ``now``) or, planned, would hold."""
        from amplify_billing.journal import UsageLedgerEntry

        return UsageLedgerEntry(
            merchant_tag=tag,
            subscription_id=self.amplify_subscription_id,
            quota_id=self.quota_id,
            window_start=self.window_start,
            window_end=self.window_end,
            recurly_subscription_id=uuid,
            add_on_code=add_on,
            amount=Decimal(amount),
            usage_id=usage_id,
            billed=False,
            kind=self.record_kind,
            base_tag=None if self.record_kind == "base" else self.base_tag,
            recorded_at=now,
            updated_at=now,
        )


@dataclass(frozen=True, slots=True)
class PostUsage(Action):
    subscription_uuid: str | Later
    add_on_code: str
    merchant_tag: str
    amount: int
    usage_timestamp: datetime
    record: UsageRecord
    # the window's total before this restatement (adjustments only), for the figures
    old_total: int | None = None


@dataclass(frozen=True, slots=True)
class UpdateUsage(Action):
    """The window's only record, unbilled: its amount changes in place."""

    usage_id: str
    subscription_uuid: str
    add_on_code: str
    merchant_tag: str
    amount: int
    usage_timestamp: datetime
    record: UsageRecord
    old_total: int


# ---- Amplify -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetAttributes(Action):
    system: ClassVar[str] = "amplify"
    resource: Mapping[str, Any] = field(repr=False, compare=False)
    attributes: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Approve(Action):
    system: ClassVar[str] = "amplify"
    resource: Mapping[str, Any] = field(repr=False, compare=False)
    reason: str


@dataclass(frozen=True, slots=True)
class LinkSubscription(Action):
    """The account code and the Recurly uuid as attributes of the Amplify subscription (the uuid may be Later)."""

    system: ClassVar[str] = "amplify"
    resource: Mapping[str, Any] = field(repr=False, compare=False)
    attributes: Mapping[str, str]
    uuid_attribute: str
    uuid: str | Later | None = None


# ---- the journal (local writes are planned and audited like the others) --------------------------------------


@dataclass(frozen=True, slots=True)
class SetLink(Action):
    system: ClassVar[str] = "journal"
    kind: str
    key: str
    value: str | Later


@dataclass(frozen=True, slots=True)
class RecordUsage(Action):
    """A usage record Recurly holds, into the ledger (found by an intent's lookup or a first-contact read)."""

    system: ClassVar[str] = "journal"
    entry: UsageLedgerEntry


@dataclass(frozen=True, slots=True)
class CompleteIntent(Action):
    """An intent a killed run left open whose record Recurly holds: done (its record is in the ledger)."""

    system: ClassVar[str] = "journal"
    key: str
    usage_id: str | None


@dataclass(frozen=True, slots=True)
class AbandonIntent(Action):
    """An intent a killed run left open whose write never landed: closed, so its window is planned afresh."""

    system: ClassVar[str] = "journal"
    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class SetSampleCursor(Action):
    """Where the stale-journal sample stopped: the next run reads the pairs after it."""

    system: ClassVar[str] = "journal"
    last_key: str


@dataclass(frozen=True, slots=True)
class AdvanceWatermark(Action):
    """The pair's usage is reported through ``mark``: the next run counts from there."""

    system: ClassVar[str] = "journal"
    amplify_subscription_id: str
    quota_id: str
    mark: datetime
