"""Amplify enum strings the tool relies on (DESIGN.md §3 "Amplify literals").

The reference marks several of them unconfirmed, so they live here and nowhere else. Any other value
met at run time is a *finding* reported to the operator, never silently mapped to a default.
"""

from __future__ import annotations

PLAN_TYPE_PAID = "paid"
PLAN_TYPE_FREE = "free"
# A Custom plan (since June 2026): "pricing is negotiated outside of Engage. No charge or billing is configured within
# the platform" (docs.axway.com amplify-central, manage_product_foundry/manage_product_plans.md, "Custom plans").
# The API literal is not published; "custom" is the UI label in the spelling of "paid" and "free". Known, so that it
# is named in findings, but never billed: it carries no price to bill.
PLAN_TYPE_CUSTOM = "custom"
PLAN_TYPES = frozenset({PLAN_TYPE_PAID, PLAN_TYPE_FREE})  # the plan types that can become a Recurly plan
KNOWN_PLAN_TYPES = PLAN_TYPES | {PLAN_TYPE_CUSTOM}
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
# The Marketplace shows four approval states: Pending, Approved, Declined ("declined by the provider") and Error ("an
# error in processing the subscription request. Typically, a system error") (docs.axway.com amplify-central,
# manage_marketplace/consumer_experience/subscription_management.md, "Subscription approval states"). Only pending,
# approved and rejected are attested API values; "declined" and "error" are the UI labels, lower case. Neither is an
# approval: a declined request ends like a rejected one; one in error is neither billed nor ended.
APPROVAL_DECLINED = "declined"
APPROVAL_ERROR = "error"
APPROVAL_STATES = frozenset({APPROVAL_PENDING, APPROVAL_APPROVED, APPROVAL_REJECTED, APPROVAL_DECLINED, APPROVAL_ERROR})
# approvals refused for good: the subscription ended before it began
REFUSED_APPROVALS = frozenset({APPROVAL_REJECTED, APPROVAL_DECLINED})

STATE_ACTIVE = "active"
STATE_CANCELLED = "cancelled"
STATE_ARCHIVED = "archived"
STATE_MIGRATED = "migrated"
# Transitional states (same page, "Subscription status"): Migration scheduled, Migrating, Archival scheduled. The
# subscription is still usable in each, so billing goes on until the final state (Migrated, Archived). The API
# literals are not published; these are the UI labels in the camelCase of other Amplify enums (``pastDue``).
STATE_MIGRATION_SCHEDULED = "migrationScheduled"
STATE_MIGRATING = "migrating"
STATE_ARCHIVAL_SCHEDULED = "archivalScheduled"
TRANSITIONAL_STATES = frozenset({STATE_MIGRATION_SCHEDULED, STATE_MIGRATING, STATE_ARCHIVAL_SCHEDULED})
ENDED_STATES = frozenset({STATE_CANCELLED, STATE_ARCHIVED, STATE_MIGRATED})
# the states of an approved subscription that is billed (None, no state yet, counts as active too)
BILLED_STATES = frozenset({STATE_ACTIVE}) | TRANSITIONAL_STATES
SUBSCRIPTION_STATES = BILLED_STATES | ENDED_STATES

# The unit the traceability source can count (transactions); custom units start with "x-".
TRANSACTIONS_UNIT = "transactions"
