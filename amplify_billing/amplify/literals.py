"""Amplify enum strings the tool relies on (DESIGN.md §3 "Amplify literals").

The reference marks several of them unconfirmed, so they live here and nowhere else. Any other value
met at run time is a *finding* reported to the operator, never silently mapped to a default.
"""

from __future__ import annotations

PLAN_TYPES = frozenset({"paid", "free"})
PLAN_STATES = frozenset({"draft", "active", "deprecated", "archived"})
PLAN_STATES_IN_RECURLY = frozenset({"active", "deprecated"})
BILLING_INTERVAL_MONTHS = {"monthly": 1, "annually": 12}
RENEWAL_AUTO_RENEW = {"automatic": True, "manual": False}

PRICING_UNLIMITED = "unlimited"
PRICING_FIXED = "fixed"
PRICING_PER_UNIT = "perUnit"
PRICING_GRADUATED = "graduated"
PRICING_VOLUME = "volume"
PRICING_TYPES = frozenset({PRICING_UNLIMITED, PRICING_FIXED, PRICING_PER_UNIT, PRICING_GRADUATED, PRICING_VOLUME})
LIMIT_STRICT = "strict"
LIMIT_LOOSE = "loose"
LIMIT_TIERED = "tiered"

# A last tier "to" of this value (or none) means open-ended, on both sides.
OPEN_TIER_END = 999_999_999

APPROVAL_PENDING = "pending"
APPROVAL_APPROVED = "approved"
APPROVAL_REJECTED = "rejected"
APPROVAL_STATES = frozenset({APPROVAL_PENDING, APPROVAL_APPROVED, APPROVAL_REJECTED})

STATE_ACTIVE = "active"
STATE_CANCELLED = "cancelled"
STATE_ARCHIVED = "archived"
STATE_MIGRATED = "migrated"
SUBSCRIPTION_STATES = frozenset({STATE_ACTIVE, STATE_CANCELLED, STATE_ARCHIVED, STATE_MIGRATED})
ENDED_STATES = frozenset({STATE_CANCELLED, STATE_ARCHIVED, STATE_MIGRATED})

# The unit the traceability source can count (transactions); custom units start with "x-".
TRANSACTIONS_UNIT = "transactions"
