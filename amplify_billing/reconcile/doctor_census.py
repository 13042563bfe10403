"""doctor's literal census: every distinct value the tool relies on, counted across the opted-in catalog. Pure.

Several Amplify literals are unconfirmed (reference §8, §9.2), so the census shows what the tenant actually holds:
each plan type, billing interval, renewal, quota pricing and limit type, subscription state and approval state,
with a count, one example and whether the tool knows it. An unknown value names what it holds back: the plans it
keeps out of Recurly, the subscriptions nothing is done for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from amplify_billing.amplify import literals
from amplify_billing.reconcile.doctor_checks import CensusRow, Check, Verdict

NONE = "(none)"
# names listed in a finding; more are counted
MAX_NAMED = 5

# field -> (where it is read, the values the tool knows; NONE known when absence is fine)
PLAN_FIELDS: Mapping[str, tuple[str, frozenset[str]]] = {
    "plan type": ("spec.type", literals.KNOWN_PLAN_TYPES),
    "billing interval": ("spec.billing.interval", frozenset(literals.BILLING_INTERVAL_MONTHS) | {NONE}),
    "renewal": ("spec.subscription.renewal", frozenset(literals.RENEWAL_AUTO_RENEW) | {NONE}),
}
QUOTA_FIELDS: Mapping[str, tuple[str, frozenset[str]]] = {
    "quota pricing type": ("spec.pricing.type", literals.PRICING_TYPES),
    "limit type": (
        "spec.pricing.limit.type",
        frozenset({literals.LIMIT_STRICT, literals.LIMIT_LOOSE, literals.LIMIT_TIERED, NONE}),
    ),
}
SUBSCRIPTION_FIELDS: Mapping[str, tuple[str, frozenset[str]]] = {
    "subscription state": ("state.name", literals.SUBSCRIPTION_STATES | {NONE}),
    "approval state": ("approval.state", literals.APPROVAL_STATES),
}


def _dig(raw: Mapping[str, Any], path: str) -> str:
    node: Any = raw
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return NONE if node is None or node == "" else str(node)


def _rows(
    field: str,
    path: str,
    known: frozenset[str],
    items: Iterable[Mapping[str, Any]],
    name_of: Callable[[Mapping[str, Any]], str],
    held_of: Callable[[Mapping[str, Any]], str],
) -> list[CensusRow]:
    found: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        found.setdefault(_dig(item, path), []).append(item)
    return [
        CensusRow(
            field,
            value,
            len(holders),
            name_of(holders[0]),
            value in known,
            () if value in known else tuple(sorted({held_of(h) for h in holders})),
        )
        for value, holders in sorted(found.items())
    ]


def _name(raw: Mapping[str, Any]) -> str:
    return str(raw.get("name") or "?")


def census(
    plans: Sequence[Mapping[str, Any]],
    quotas: Sequence[Mapping[str, Any]],
    subscriptions: Sequence[Mapping[str, Any]],
) -> list[CensusRow]:
    """The census of opted-in plans, their quotas, and the subscriptions on them (raw resources)."""

    def quota_plan(raw: Mapping[str, Any]) -> str:
        return _dig(raw, "metadata.scope.name")

    rows: list[CensusRow] = []
    for field, (path, known) in PLAN_FIELDS.items():
        rows += _rows(field, path, known, plans, _name, _name)
    for field, (path, known) in QUOTA_FIELDS.items():
        rows += _rows(field, path, known, quotas, lambda q: f"{quota_plan(q)}/{_name(q)}", quota_plan)
    for field, (path, known) in SUBSCRIPTION_FIELDS.items():
        rows += _rows(field, path, known, subscriptions, _name, _name)
    return rows


def census_check(rows: Sequence[CensusRow]) -> Check:
    """Action needed when any value is unknown: it names the value and what it holds back."""
    unknown = [row for row in rows if not row.known]
    if not unknown:
        fields = len({row.field for row in rows})
        return Check("census", "literals", Verdict.OK, f"{len(rows)} distinct values over {fields} fields, all known")
    parts = []
    for row in unknown:
        kind = "subscription(s)" if row.field in SUBSCRIPTION_FIELDS else "plan(s)"
        named = ", ".join(row.holds_back[:MAX_NAMED])
        more = f" and {len(row.holds_back) - MAX_NAMED} more" if len(row.holds_back) > MAX_NAMED else ""
        parts.append(f"{row.field} {row.value!r} holds back {len(row.holds_back)} {kind}: {named}{more}")
    return Check(
        "census",
        "literals",
        Verdict.ACTION,
        "; ".join(parts),
        "nothing is written for what an unknown value holds back; report the values to the maintainers, or change "
        "them in Amplify",
    )
