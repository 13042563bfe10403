"""Frozen values for both sides' objects and for the changes between them.

No SDK or HTTP types here: adapters turn wire data into these, the pure reconcilers compare them,
and ``apply`` executes the resulting ``Change``s. ``raw`` fields keep the Amplify resource exactly
as listed, because a write-back PUT needs the full body with its ``resourceVersion``; they are
excluded from comparison and repr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

# ---------------------------------------------------------------------------------------------
# Amplify side


@dataclass(frozen=True)
class AmplifyTier:
    start: int | None  # Amplify "from"
    end: int | None  # Amplify "to"; None = open
    cost: Decimal
    flat_fee: Decimal | None = None


@dataclass(frozen=True)
class QuotaPricing:
    type: str  # unlimited | fixed | perUnit | graduated | volume (anything else is unsupported)
    interval: str | None = None
    limit_type: str | None = None  # fixed: strict | loose; graduated/volume: tiered
    limit_value: int | None = None
    overage_cost: Decimal | None = None
    cost: Decimal | None = None
    tiers: tuple[AmplifyTier, ...] = ()


@dataclass(frozen=True)
class Quota:
    id: str
    name: str
    plan_name: str
    title: str
    unit: str
    pricing: QuotaPricing
    attributes: Mapping[str, str] = field(default_factory=dict, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    title: str
    state: str | None = None


@dataclass(frozen=True)
class PlanUnit:
    name: str
    title: str


@dataclass(frozen=True)
class ProductPlan:
    id: str
    name: str
    title: str
    product_name: str
    product_title: str
    type: str  # paid | free
    state: str  # draft | active | deprecated | archived
    currency: str
    price: Decimal
    setup_price: Decimal | None
    interval: str  # monthly | annually
    renewal: str | None
    cycles: int | None
    quotas: tuple[Quota, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AmplifySubscription:
    id: str
    name: str
    product_name: str
    plan_name: str
    approval_state: str | None  # pending | approved | rejected
    state_name: str | None  # active | cancelled | archived | migrated; None until approved
    owner_team: str | None
    owner_user: str | None
    owner_org: str | None
    migrated_from: str | None = None  # name of the subscription this one replaced
    created_at: datetime | None = None
    state_changed_at: datetime | None = None
    attributes: Mapping[str, str] = field(default_factory=dict, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # when it became active (state.when.timestamp while the state is active): where its billing starts
    active_since: datetime | None = None


# ---------------------------------------------------------------------------------------------
# Recurly side


@dataclass(frozen=True)
class RecurlyTier:
    ending_quantity: int | None  # None = the open last tier
    unit_amount_decimal: Decimal


@dataclass(frozen=True)
class RecurlyAddOn:
    code: str
    name: str
    measured_unit_name: str
    tier_type: str  # flat | tiered | volume
    currency: str
    unit_amount_decimal: Decimal | None = None  # flat only
    tiers: tuple[RecurlyTier, ...] = ()  # tiered / volume only
    id: str | None = field(default=None, compare=False)
    state: str = field(default="active", compare=False)


@dataclass(frozen=True)
class RecurlyPlan:
    code: str
    name: str
    currency: str
    unit_amount: Decimal
    setup_fee: Decimal
    interval_length: int
    auto_renew: bool
    total_billing_cycles: int | None
    add_ons: tuple[RecurlyAddOn, ...] = ()
    interval_unit: str = "months"
    id: str | None = field(default=None, compare=False)
    state: str = field(default="active", compare=False)


@dataclass(frozen=True)
class MeasuredUnit:
    name: str
    display_name: str
    id: str | None = field(default=None, compare=False)


# ---------------------------------------------------------------------------------------------
# Changes


class ChangeKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DEACTIVATE = "deactivate"
    CANCEL = "cancel"
    TERMINATE = "terminate"
    APPROVE = "approve"
    LINK = "link"
    POST = "post"  # usage records
    RESTATE = "restate"
    UNSUPPORTED = "unsupported"
    WAITING = "waiting"
    FINDING = "finding"


# Kinds that only report: they never write anything.
REPORT_ONLY = frozenset({ChangeKind.UNSUPPORTED, ChangeKind.WAITING, ChangeKind.FINDING})
DESTRUCTIVE = frozenset({ChangeKind.DEACTIVATE, ChangeKind.CANCEL, ChangeKind.TERMINATE})


@dataclass(frozen=True, slots=True)
class Change:
    """One difference to act on (or, for report-only kinds, to show).

    ``action`` names the operation ``apply`` performs (e.g. ``recurly.create_plan``); ``payload`` holds
    its arguments as plain data. ``amplify`` and ``recurly`` are the identities shown side by side.
    """

    kind: ChangeKind
    object: str  # measured_unit | plan | add_on | account | subscription | usage | approval | ...
    amplify: str  # Amplify identity, e.g. "plan gold (8ac9…)"
    recurly: str  # Recurly identity, e.g. "plan amplify-8ac9…"
    summary: str
    action: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    # stable ordering inside a phase; phases run in the order of PHASES
    phase: int = 50
    key: str = ""
    # keys of changes in the same set that must have succeeded first (a plan before its add-ons)
    requires: tuple[str, ...] = ()
    # a finding that holds back a money action (an unproven read, an uncountable window, a stuck intent, a
    # restatement not sent): the run exits 1 as for a failed change (DESIGN.md §7)
    withholds: bool = False

    @property
    def writes(self) -> bool:
        return self.kind not in REPORT_ONLY and self.action is not None

    @property
    def destructive(self) -> bool:
        return self.kind in DESTRUCTIVE


@dataclass(frozen=True)
class ChangeSet:
    command: str
    changes: tuple[Change, ...]
    # denominator of the safety valve: linked objects that a destructive change could hit
    linked_count: int = 0

    @staticmethod
    def of(command: str, changes: list[Change], *, linked_count: int = 0) -> ChangeSet:
        ordered = sorted(changes, key=lambda c: (c.phase, c.object, c.key or c.recurly, c.kind.value))
        return ChangeSet(command, tuple(ordered), linked_count)

    @property
    def writes(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.writes)

    @property
    def destructive(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.destructive)

    def by_kind(self, kind: ChangeKind) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.kind == kind)


class Outcome(StrEnum):
    PLANNED = "planned"  # dry run: would be applied
    APPLIED = "applied"
    FAILED = "failed"
    SKIPPED = "skipped"  # not attempted (a prerequisite failed, or --max-duration reached)
    REPORTED = "reported"  # report-only kinds (findings, unsupported, waiting)


@dataclass(frozen=True, slots=True)
class ChangeResult:
    change: Change
    outcome: Outcome
    error: str | None = None
    result_id: str | None = None  # Recurly id / uuid / usage id, when a write returned one


@dataclass(frozen=True)
class CommandReport:
    """What one command did: the input to rendering, metrics and the exit code."""

    command: str
    dry_run: bool
    results: tuple[ChangeResult, ...]
    # extra figures for the summary, e.g. {"units_reported": 1234}
    figures: Mapping[str, int | str] = field(default_factory=dict)
    exit_code: int = 0
    note: str | None = None  # e.g. "stopped at --max-duration; 12 changes left for the next run"

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)
