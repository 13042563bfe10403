"""Frozen values for both sides' objects and for the changes between them.

No SDK or HTTP types here: adapters turn wire data into these, the pure reconcilers compare them,
and ``changes`` holds what is planned between them. ``raw`` fields keep the Amplify resource exactly
as listed, because a write-back PUT needs the full body with its ``resourceVersion``; they are
excluded from comparison and repr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
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
