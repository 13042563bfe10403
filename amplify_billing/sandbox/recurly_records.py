"""The records of the emulated Recurly site, and the seeded ids they get.

Plain data shared by the three jobs of the emulator's site: ``recurly_validation`` reads request bodies into
them, ``recurly_state`` keeps and changes them, ``recurly_output`` renders them as the API answers.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

ID_ALPHABET = string.ascii_lowercase + string.digits


class Ids:
    """Deterministic ids from a seed: 13 characters of [a-z0-9] for ids, 32 hex digits for uuids."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self._used: set[str] = set()
        self._seq = 0

    def id(self) -> str:
        while True:
            value = "".join(self._random.choice(ID_ALPHABET) for _ in range(13))
            if value not in self._used:
                self._used.add(value)
                return value

    def uuid(self) -> str:
        while True:
            value = f"{self._random.getrandbits(128):032x}"
            if value not in self._used:
                self._used.add(value)
                return value

    def seq(self) -> int:
        """Insertion order: the tie-breaker that keeps paging stable among records of the same second."""
        self._seq += 1
        return self._seq


# ---- records --------------------------------------------------------------------------------------


@dataclass
class Price:
    currency: str
    amount: Decimal
    decimal: bool  # given as unit_amount_decimal (sub-cent prices of usage add-ons)


@dataclass
class Tier:
    ending_quantity: int | None  # None: the open last tier
    prices: list[Price]

    def price(self, currency: str) -> Price | None:
        return next((p for p in self.prices if p.currency == currency), None)


@dataclass
class MeasuredUnitRecord:
    id: str
    name: str
    display_name: str
    description: str | None
    created_at: datetime
    updated_at: datetime
    seq: int
    state: str = "active"
    deleted_at: datetime | None = None


@dataclass
class PlanPrice:
    currency: str
    unit_amount: Decimal
    setup_fee: Decimal


@dataclass
class PlanRecord:
    id: str
    code: str
    name: str
    prices: list[PlanPrice]
    interval_unit: str
    interval_length: int
    created_at: datetime
    updated_at: datetime
    seq: int
    description: str | None = None
    auto_renew: bool = True
    total_billing_cycles: int | None = None
    trial_unit: str = "months"
    trial_length: int = 0
    accounting_code: str | None = None
    custom_fields: list[dict[str, str]] = field(default_factory=list)
    state: str = "active"
    deleted_at: datetime | None = None

    def price(self, currency: str) -> PlanPrice | None:
        return next((p for p in self.prices if p.currency == currency), None)


@dataclass
class AddOnRecord:
    id: str
    plan_id: str
    code: str
    name: str
    add_on_type: str
    tier_type: str
    created_at: datetime
    updated_at: datetime
    seq: int
    usage_type: str | None = None
    usage_calculation_type: str | None = None
    usage_timeframe: str | None = None
    usage_percentage: Decimal | None = None
    measured_unit_id: str | None = None
    prices: list[Price] = field(default_factory=list)
    tiers: list[Tier] = field(default_factory=list)
    optional: bool = True
    default_quantity: int = 1
    display_quantity: bool = False
    accounting_code: str | None = None
    state: str = "active"
    deleted_at: datetime | None = None


@dataclass
class AccountRecord:
    id: str
    code: str
    created_at: datetime
    updated_at: datetime
    seq: int
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    username: str | None = None
    custom_fields: list[dict[str, str]] = field(default_factory=list)
    state: str = "active"
    deleted_at: datetime | None = None


@dataclass
class SubscriptionAddOnRecord:
    """A plan add-on on one subscription, priced in the subscription's currency when it was attached."""

    id: str
    add_on_id: str
    quantity: int
    tier_type: str
    created_at: datetime
    updated_at: datetime
    usage_calculation_type: str | None
    usage_timeframe: str | None
    usage_percentage: Decimal | None
    unit_price: Price | None  # flat
    tiers: list[tuple[int | None, Price]]  # non-flat: (ending_quantity, price)


@dataclass
class SubscriptionRecord:
    id: str
    uuid: str
    account_id: str
    plan_id: str
    state: str
    currency: str
    unit_amount: Decimal
    quantity: int
    collection_method: str
    interval_unit: str
    interval_length: int
    anchor: datetime  # start of period 0; periods are counted from here so month ends do not drift
    period: int
    current_period_started_at: datetime
    current_period_ends_at: datetime
    created_at: datetime
    updated_at: datetime
    seq: int
    auto_renew: bool = True
    total_billing_cycles: int | None = None
    net_terms: int = 0
    add_ons: list[SubscriptionAddOnRecord] = field(default_factory=list)
    custom_fields: list[dict[str, str]] = field(default_factory=list)
    activated_at: datetime | None = None
    canceled_at: datetime | None = None
    expires_at: datetime | None = None
    expiration_reason: str | None = None
    po_number: str | None = None
    # a pause asked for: it starts at the renewal on or after paused_at and lasts remaining_pause_cycles periods
    paused_at: datetime | None = None
    remaining_pause_cycles: int | None = None
    # usage dated before this has been invoiced (the last invoice run, see bill())
    billed_through: datetime | None = None


@dataclass
class UsageRecord:
    id: str
    subscription_id: str
    add_on_id: str  # the plan add-on
    amount: Decimal
    merchant_tag: str | None
    usage_type: str | None
    tier_type: str
    measured_unit_id: str | None
    usage_percentage: Decimal | None
    unit_price: Price | None
    tiers: list[tuple[int | None, Price]]  # the subscription add-on's tiers when it was recorded
    usage_timestamp: datetime
    recording_timestamp: datetime
    created_at: datetime
    updated_at: datetime
    seq: int
    billed_at: datetime | None = None


@dataclass
class CustomFieldDefinitionRecord:
    id: str
    name: str
    related_type: str
    created_at: datetime
    seq: int
    user_access: str = "write"


# ---- calendar -------------------------------------------------------------------------------------
