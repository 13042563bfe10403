"""Amplify resources (wire dicts) -> frozen models.

A malformed resource never raises out of here and never becomes a model with a guessed value: it
becomes a ``ParseProblem`` that the reconcilers report as a finding (or an ``unsupported`` plan).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from amplify_billing.amplify import literals
from amplify_billing.models import AmplifySubscription, AmplifyTier, PlanUnit, Product, ProductPlan, Quota, QuotaPricing


@dataclass(frozen=True)
class ParseProblem:
    kind: str  # product | productplan | quota | subscription
    name: str
    reason: str
    # metadata.id when it could be read: a resource that exists but cannot be read must never pass for deleted
    id: str | None = None


def resource_id(raw: Mapping[str, Any]) -> str | None:
    """The resource's metadata.id when it is a non-empty string, else None."""
    value = dig(raw, "metadata.id")
    return value if isinstance(value, str) and value else None


class Malformed(Exception):
    """A value of the wrong type or missing where required (turned into a ParseProblem naming the resource)."""


# Owner ids become Recurly account codes ``amplify-team-{id}`` (≤ 50 characters; Recurly documents
# letters, digits, "@", "-", "_" and "." for account codes), so an id outside that is unusable.
_OWNER_ID = re.compile(r"[A-Za-z0-9@._-]+", re.ASCII)
ACCOUNT_CODE_MAX = 50


def _text(value: Any, what: str) -> str | None:
    """A value that must be a string when present: a number or an object there is malformed, not absent."""
    if value is None or isinstance(value, str):
        return value
    raise Malformed(f"{what} must be a string, got {type(value).__name__} {value!r}")


def dig(raw: Any, path: str) -> Any:
    """The value at a dotted path, None where any step is absent or not an object."""
    node: Any = raw
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def text_at(raw: Any, path: str, *, required: bool = True) -> str | None:
    """A string at a dotted path: absent or empty is None (or Malformed when required), another type is Malformed."""
    value = dig(raw, path)
    if value is None or value == "":
        if required:
            raise Malformed(f"{path} is missing")
        return None
    if not isinstance(value, str):
        raise Malformed(f"{path} must be a string, got {type(value).__name__} {value!r}")
    return value


def to_decimal(value: Any, what: str) -> Decimal:
    """Exact decimal from a JSON value; floats go through their shortest repr (0.0025 stays 0.0025)."""
    if isinstance(value, bool) or value is None:
        raise Malformed(f"{what} must be a number, got {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise Malformed(f"{what} must be a number, got {value!r}") from None
    else:
        raise Malformed(f"{what} must be a number, got {type(value).__name__}")
    if not result.is_finite():
        raise Malformed(f"{what} must be a finite number, got {value!r}")
    if result < 0:
        raise Malformed(f"{what} must not be negative, got {value!r}")
    return result


def _int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise Malformed(f"{what} must be a whole number, got {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise Malformed(f"{what} must be a whole number, got {value!r}") from None
    if number != number.to_integral_value() or number < 0:
        raise Malformed(f"{what} must be a whole number ≥ 0, got {value!r}")
    return int(number)


def parse_timestamp(value: Any) -> datetime | None:
    """Amplify timestamps look like 2024-04-05T15:30:40.054+0000 (or +00:00, or Z)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _attributes(raw: Mapping[str, Any]) -> dict[str, str]:
    attrs = raw.get("attributes")
    if not isinstance(attrs, Mapping):
        return {}
    return {str(k): str(v) for k, v in attrs.items() if v is not None}


def _state_string(raw: Mapping[str, Any]) -> str | None:
    state = raw.get("state")
    if isinstance(state, Mapping):  # some kinds nest it as {name: ...}
        return _text(state.get("name"), "state.name")
    # a state that is not text would otherwise read as "no state" and be reported as '' (or ignored)
    return _text(state, "state")


def parse_product(raw: Mapping[str, Any]) -> Product | ParseProblem:
    name = str(raw.get("name") or "?")
    try:
        return Product(
            id=text_at(raw, "metadata.id") or "",
            name=text_at(raw, "name") or "",
            title=text_at(raw, "title", required=False) or name,
            state=_state_string(raw),
        )
    except Malformed as bad:
        return ParseProblem("product", name, str(bad), resource_id(raw))


def parse_unit(raw: Mapping[str, Any]) -> PlanUnit | None:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        return None
    title = raw.get("title")
    return PlanUnit(name, title if isinstance(title, str) and title else name)


def _tiers(limit: Mapping[str, Any], what: str) -> tuple[AmplifyTier, ...]:
    tiers = limit.get("tiers")
    if not isinstance(tiers, list) or not tiers:
        raise Malformed(f"{what}.tiers must be a non-empty list")
    result = []
    for index, tier in enumerate(tiers):
        if not isinstance(tier, Mapping):
            raise Malformed(f"{what}.tiers[{index}] must be an object")
        fee = tier.get("flatFee")
        result.append(
            AmplifyTier(
                start=_int(tier.get("from"), f"{what}.tiers[{index}].from"),
                end=_int(tier.get("to"), f"{what}.tiers[{index}].to"),
                cost=to_decimal(tier.get("cost"), f"{what}.tiers[{index}].cost"),
                flat_fee=None if fee is None else to_decimal(fee, f"{what}.tiers[{index}].flatFee"),
            )
        )
    return tuple(result)


def parse_pricing(pricing: Any) -> QuotaPricing:
    what = "spec.pricing"
    if not isinstance(pricing, Mapping):
        raise Malformed(f"{what} is missing")
    kind = _text(pricing.get("type"), f"{what}.type")
    if not kind:
        raise Malformed(f"{what}.type is missing")
    interval = pricing.get("interval") if isinstance(pricing.get("interval"), str) else None
    if kind not in literals.PRICING_TYPES:
        return QuotaPricing(type=kind, interval=interval)
    limit = pricing.get("limit")
    if kind == literals.PRICING_UNLIMITED:
        return QuotaPricing(type=kind, interval=interval)
    if kind == literals.PRICING_PER_UNIT:
        return QuotaPricing(type=kind, interval=interval, cost=to_decimal(pricing.get("cost"), f"{what}.cost"))
    if not isinstance(limit, Mapping):
        raise Malformed(f"{what}.limit is missing")
    limit_type = limit.get("type")
    if kind == literals.PRICING_FIXED:
        overages = limit.get("overages")
        overage = None
        if limit_type == literals.LIMIT_LOOSE:
            if not isinstance(overages, Mapping):
                raise Malformed(f"{what}.limit.overages is missing for a loose limit")
            overage = to_decimal(overages.get("value"), f"{what}.limit.overages.value")
        return QuotaPricing(
            type=kind,
            interval=interval,
            limit_type=limit_type if isinstance(limit_type, str) else None,
            limit_value=_int(limit.get("value"), f"{what}.limit.value"),
            overage_cost=overage,
        )
    return QuotaPricing(
        type=kind,
        interval=interval,
        limit_type=limit_type if isinstance(limit_type, str) else None,
        tiers=_tiers(limit, f"{what}.limit"),
    )


def parse_quota(raw: Mapping[str, Any]) -> Quota | ParseProblem:
    name = str(raw.get("name") or "?")
    try:
        plan_name = text_at(raw, "metadata.scope.name") or ""
        return Quota(
            id=text_at(raw, "metadata.id") or "",
            name=text_at(raw, "name") or "",
            plan_name=plan_name,
            title=text_at(raw, "title", required=False) or name,
            unit=text_at(raw, "spec.unit") or "",
            pricing=parse_pricing(dig(raw, "spec.pricing")),
            attributes=_attributes(raw),
            raw=raw,
        )
    except Malformed as bad:
        return ParseProblem("quota", name, str(bad), resource_id(raw))


def parse_plan(raw: Mapping[str, Any], product: Product, quotas: tuple[Quota, ...]) -> ProductPlan | ParseProblem:
    """A plan, read as Amplify documents it: a free plan may have no ``spec.billing`` at all (the "Create Plan"
    example of docs.axway.com amplify-central, integrate_with_central/cli_central/cli_product_foundry.md), and
    ``spec.billing.price`` is optional with default 0 (agent-sdk models/catalog/v1/model_product_plan_spec_billing.go,
    ``price,omitempty``), so a paid plan with usage pricing only may omit it. A plan without a currency reads with
    currency "" (the mapping decides whether a default applies); a paid plan must name its currency and interval."""
    name = str(raw.get("name") or "?")
    try:
        plan_type = text_at(raw, "spec.type") or ""
        billed = plan_type == literals.PLAN_TYPE_PAID
        billing = dig(raw, "spec.billing")
        if billing is None and not billed:
            billing = {}
        if not isinstance(billing, Mapping):
            # say what is missing, not the first field read from it
            raise Malformed("spec.billing is missing" if billing is None else "spec.billing must be an object")
        setup = dig(billing, "setup.price")
        price = billing.get("price")
        cycles = dig(raw, "spec.subscription.cycles")
        return ProductPlan(
            id=text_at(raw, "metadata.id") or "",
            name=text_at(raw, "name") or "",
            title=text_at(raw, "title", required=False) or name,
            product_name=product.name,
            product_title=product.title,
            type=plan_type,
            state=_state_string(raw) or "",
            currency=(text_at(raw, "spec.billing.currency", required=billed) or "").upper(),
            price=Decimal(0) if price is None else to_decimal(price, "spec.billing.price"),
            setup_price=None if setup is None else to_decimal(setup, "spec.billing.setup.price"),
            interval=text_at(raw, "spec.billing.interval", required=billed) or "monthly",
            renewal=text_at(raw, "spec.subscription.renewal", required=False),
            cycles=_int(cycles, "spec.subscription.cycles") or None,
            quotas=quotas,
            attributes=_attributes(raw),
            raw=raw,
        )
    except Malformed as bad:
        return ParseProblem("productplan", name, str(bad), resource_id(raw))


def parse_subscription(raw: Mapping[str, Any]) -> AmplifySubscription | ParseProblem:
    name = str(raw.get("name") or "?")
    try:
        owner_value = raw.get("owner")
        owner: Mapping[str, Any] = owner_value if isinstance(owner_value, Mapping) else {}
        market_owner = dig(raw, "marketplace.resource.owner")
        market_owner = market_owner if isinstance(market_owner, Mapping) else {}
        team = dig(market_owner, "id") if market_owner.get("type", "team") == "team" else None
        team = team or dig(owner, "id")
        user = dig(market_owner, "user.id")
        org = dig(market_owner, "organization.id") or dig(owner, "organization.id")
        # A state or approval that is present but not text is malformed: read as "none" it would make an
        # approved subscription look active and start billing it (DESIGN.md §3: unknown values are findings).
        approval = _text(dig(raw, "approval.state"), "approval.state")
        state = _state_string(raw)
        for kind, owner_id, prefix in (
            ("team", team, "amplify-team-"),
            ("user", user, "amplify-user-"),
            ("organization", org, "amplify-org-"),
        ):
            _check_owner_id(kind, owner_id, prefix)
        subscription_id = text_at(raw, "metadata.id") or ""
        if ":" in subscription_id or any(c.isspace() for c in subscription_id):
            # the id is part of every usage merchant_tag, whose parts are separated by ':'
            raise Malformed(
                f"metadata.id {subscription_id!r} contains ':' or a space, which a merchant_tag cannot hold"
            )
        migrated_from = dig(raw, "references.subscription")
        if isinstance(migrated_from, Mapping):
            migrated_from = migrated_from.get("name")
        return AmplifySubscription(
            id=subscription_id,
            name=text_at(raw, "name") or "",
            product_name=text_at(raw, "spec.product", required=False) or "",
            plan_name=text_at(raw, "spec.plan.name") or "",
            approval_state=approval,
            state_name=state,
            owner_team=str(team) if team else None,
            owner_user=str(user) if user else None,
            owner_org=str(org) if org else None,
            migrated_from=migrated_from if isinstance(migrated_from, str) else None,
            created_at=parse_timestamp(dig(raw, "metadata.audit.createTimestamp")),
            state_changed_at=parse_timestamp(dig(raw, "state.when.timestamp"))
            or parse_timestamp(dig(raw, "metadata.audit.modifyTimestamp")),
            attributes=_attributes(raw),
            raw=raw,
            # a transitional state (migration or archival scheduled) is billed too: it was usable from then at least
            active_since=(
                parse_timestamp(dig(raw, "state.when.timestamp")) if state in literals.BILLED_STATES else None
            ),
        )
    except Malformed as bad:
        return ParseProblem("subscription", name, str(bad), resource_id(raw))


def _check_owner_id(kind: str, value: Any, prefix: str) -> None:
    if not value:
        return
    text = str(value)
    if not _OWNER_ID.fullmatch(text) or len(prefix) + len(text) > ACCOUNT_CODE_MAX:
        raise Malformed(
            f"owner {kind} id {text!r} cannot be part of a Recurly account code "
            f"({prefix}{{id}}: letters, digits, '@', '.', '_' and '-', at most {ACCOUNT_CODE_MAX} characters)"
        )
