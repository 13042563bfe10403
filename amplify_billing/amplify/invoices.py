"""Amplify's ``SubscriptionInvoice`` resources (catalog group, scoped to a Subscription) as typed values.

Amplify writes one for each consumer-organization subscription of a Marketplace whose billing is on with vendor
Custom: after approval (base price and setup fee), at the end of each metering period (base price and consumption)
and at cancellation (the rest of the consumption) (DOCS ``integrate_with_central/custom_billing.md``). Its fields are
those of Axway's agent SDK (``pkg/apic/apiserver/models/catalog/v1/model_subscription_invoice_*.go``):
``spec.cost {total, plan {name, cost, currency, setup {cost}, quotas[] {name, cost, items[]}}}``, ``spec.period
{from, to}``, ``spec.quotas[] {name, units, intervals[] {from, units, previousInvoiceItem}}``, ``state {name,
reason}``, ``status {level, reasons[]}`` and ``billing.payment`` (for type ``custom``: ``id, number, issueDate,
dueDate, amount {currency, total, due}, link, documentLink, customer {id}``).

``list_subscription_invoices`` is the one reader (sync-invoices and doctor use it): a malformed invoice never
raises out of here and never becomes a value with a guessed field, it becomes a ``ParseProblem``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

from amplify_billing.amplify.parse import Malformed, ParseProblem, dig, parse_timestamp, resource_id, text_at

if TYPE_CHECKING:  # the reader is pure: the plan imports its values without the HTTP stack
    from amplify_billing.amplify.resources import ListingProof

PLURAL = "subscriptioninvoices"
KIND = "SubscriptionInvoice"

# state.name values (DOCS custom_billing.md, "Invoice state and status"; reference §3.6)
DRAFT = "draft"  # made by Amplify, waiting for the billing gateway
OPEN = "open"  # made in the billing gateway, waiting for the consumer's payment
PAID = "paid"
INCOMPLETE = "incomplete"  # "set by the Billing System in case of issues"; Amplify takes no action
PAST_DUE = "pastDue"
VOID = "void"  # the consumer cancelled before paying the first invoice
STATES = frozenset({DRAFT, OPEN, PAID, INCOMPLETE, PAST_DUE, VOID})
# status.level values: the gateway's action is in progress, done, or failed (same page)
PENDING = "Pending"
SUCCESS = "Success"
ERROR = "Error"
LEVELS = frozenset({PENDING, SUCCESS, ERROR})
# billing.payment.type of the Custom vendor (model_subscription_invoice_billing_payment_type_custom.go)
CUSTOM = "custom"


@dataclass(frozen=True)
class IntervalUnits:
    """Units one quota consumed from ``start`` on (``previous_invoice_item``: carried over from an earlier invoice)."""

    start: datetime | None
    units: int
    previous_invoice_item: bool = False


@dataclass(frozen=True)
class QuotaUnits:
    """Amplify's complete count for one quota of the invoice's period (every call, not a sample), per interval."""

    name: str  # the Quota's name
    units: int
    intervals: tuple[IntervalUnits, ...] = ()


@dataclass(frozen=True)
class CostItem:
    title: str
    units: int
    item_cost: Decimal
    start: datetime | None
    end: datetime | None
    description: str = ""


@dataclass(frozen=True)
class QuotaCost:
    name: str
    cost: Decimal
    items: tuple[CostItem, ...] = ()


@dataclass(frozen=True)
class InvoicePayment:
    """``billing.payment`` as it stands. The pay link is not kept: it logs in whoever holds it."""

    type: str
    id: str | None = None
    number: str | None = None
    customer_id: str | None = None
    has_link: bool = False


@dataclass(frozen=True)
class SubscriptionInvoice:
    id: str  # metadata.id
    name: str
    title: str
    subscription_name: str  # its scope
    self_link: str
    marketplace_name: str | None
    plan_name: str | None
    currency: str | None  # spec.cost.plan.currency; absent in some samples (the plan's currency then applies)
    total: Decimal  # spec.cost.total
    plan_cost: Decimal  # the base price
    setup_cost: Decimal
    quota_costs: tuple[QuotaCost, ...]
    quotas: tuple[QuotaUnits, ...]
    period_start: datetime | None  # absent on the initial invoice
    period_end: datetime | None
    state: str | None
    state_reason: str | None
    status: str | None
    payment: InvoicePayment | None
    owner_team: str | None = None
    owner_user: str | None = None
    owner_org: str | None = None
    created_at: datetime | None = None

    def units(self) -> dict[str, int]:
        """Units per quota name: Amplify's own metered count for the period."""
        return {q.name: q.units for q in self.quotas}

    def resource(self) -> dict[str, Any]:
        """Enough of the resource for a subresource PUT (``{selfLink}/billing``, ``/state``, ``/status``)."""
        return {"kind": KIND, "name": self.name, "metadata": {"selfLink": self.self_link}}


def _text(raw: Any, path: str, *, required: bool = False) -> str | None:
    return text_at(raw, path, required=required)


def _money(raw: Any, path: str) -> Decimal:
    """An amount: absent is 0 (the SDK's ``omitempty`` drops zero costs); a float goes through its shortest repr."""
    value = dig(raw, path)
    if value is None:
        return Decimal(0)
    try:
        if isinstance(value, bool):
            raise InvalidOperation
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        raise Malformed(f"{path} must be a number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise Malformed(f"{path} must be a number of 0 or more, got {value!r}")
    return number


def _count(raw: Any, path: str) -> int:
    value = dig(raw, path)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != int(value):
        raise Malformed(f"{path} must be a whole number of 0 or more, got {value!r}")
    return int(value)


def _time(raw: Any, path: str) -> datetime | None:
    value = dig(raw, path)
    if value is None or value == "":
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        raise Malformed(f"{path} is not a timestamp: {value!r}")
    return parsed


def _list(raw: Any, path: str) -> list[Any]:
    value = dig(raw, path)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(f"{path} must be a list")
    return value


def _quota_costs(raw: Mapping[str, Any]) -> tuple[QuotaCost, ...]:
    costs = []
    for index, quota in enumerate(_list(raw, "spec.cost.plan.quotas")):
        where = f"spec.cost.plan.quotas[{index}]"
        items = tuple(
            CostItem(
                title=_text(item, "title") or "",
                units=_count(item, "units"),
                item_cost=_money(item, "itemCost"),
                start=_time(item, "from"),
                end=_time(item, "to"),
                description=_text(item, "description") or "",
            )
            for item in _list(quota, "items")
        )
        name = _text(quota, "name")
        if name is None:
            raise Malformed(f"{where}.name is missing")
        costs.append(QuotaCost(name, _money(quota, "cost"), items))
    return tuple(costs)


def _quota_units(raw: Mapping[str, Any]) -> tuple[QuotaUnits, ...]:
    result = []
    for index, quota in enumerate(_list(raw, "spec.quotas")):
        name = _text(quota, "name")
        if name is None:
            raise Malformed(f"spec.quotas[{index}].name is missing")
        intervals = tuple(
            IntervalUnits(_time(i, "from"), _count(i, "units"), dig(i, "previousInvoiceItem") is True)
            for i in _list(quota, "intervals")
        )
        result.append(QuotaUnits(name, _count(quota, "units"), intervals))
    return tuple(result)


def _payment(raw: Mapping[str, Any]) -> InvoicePayment | None:
    payment = dig(raw, "billing.payment")
    if not isinstance(payment, Mapping):
        return None
    return InvoicePayment(
        type=_text(payment, "type") or "",
        id=_text(payment, "id"),
        number=_text(payment, "number"),
        customer_id=_text(payment, "customer.id"),
        has_link=bool(_text(payment, "link")),
    )


def _owner(raw: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(team, user, org) of the consumer, read as a subscription's owner is (``marketplace.resource.owner``, else
    ``owner``): the invoice carries the same owner as its subscription (DOCS custom_billing.md sample)."""
    market = dig(raw, "marketplace.resource.owner")
    market = market if isinstance(market, Mapping) else {}
    owner = raw.get("owner") if isinstance(raw.get("owner"), Mapping) else {}
    team = market.get("id") if market.get("type", "team") == "team" else None
    team = team or dig(owner, "id")
    user = dig(market, "user.id")
    org = dig(market, "organization.id") or dig(owner, "organization.id")
    return (str(team) if team else None, str(user) if user else None, str(org) if org else None)


def _reference(raw: Mapping[str, Any], kind: str) -> str | None:
    for reference in _list(raw, "metadata.references"):
        if isinstance(reference, Mapping) and reference.get("kind") == kind and isinstance(reference.get("name"), str):
            return str(reference["name"])
    return None


def parse_invoice(raw: Mapping[str, Any]) -> SubscriptionInvoice | ParseProblem:
    name = str(raw.get("name") or "?")
    try:
        state = dig(raw, "state")
        team, user, org = _owner(raw)
        currency = _text(raw, "spec.cost.plan.currency")
        return SubscriptionInvoice(
            id=_text(raw, "metadata.id", required=True) or "",
            name=_text(raw, "name", required=True) or "",
            title=_text(raw, "title") or name,
            subscription_name=_text(raw, "metadata.scope.name", required=True) or "",
            self_link=_text(raw, "metadata.selfLink", required=True) or "",
            marketplace_name=_text(raw, "marketplace.name") or _reference(raw, "Marketplace"),
            plan_name=_text(raw, "spec.cost.plan.name") or _reference(raw, "ProductPlan"),
            currency=currency.upper() if currency else None,
            total=_money(raw, "spec.cost.total"),
            plan_cost=_money(raw, "spec.cost.plan.cost"),
            setup_cost=_money(raw, "spec.cost.plan.setup.cost"),
            quota_costs=_quota_costs(raw),
            quotas=_quota_units(raw),
            period_start=_time(raw, "spec.period.from"),
            period_end=_time(raw, "spec.period.to"),
            state=_text(state, "name") if isinstance(state, Mapping) else _text(raw, "state"),
            state_reason=_text(state, "reason") if isinstance(state, Mapping) else None,
            status=_text(raw, "status.level"),
            payment=_payment(raw),
            owner_team=team,
            owner_user=user,
            owner_org=org,
            created_at=_time(raw, "metadata.audit.createTimestamp"),
        )
    except Malformed as bad:
        return ParseProblem("subscriptioninvoice", name, str(bad), resource_id(raw))


class InvoiceLister(Protocol):
    def listing(
        self, plural: str, *, query: str | None = None, scope: str | None = None, group: str = "catalog"
    ) -> tuple[list[dict[str, Any]], ListingProof]: ...


@dataclass(frozen=True)
class InvoiceListing:
    invoices: tuple[SubscriptionInvoice, ...]
    problems: tuple[ParseProblem, ...]
    proof: ListingProof


def parse_invoices(raws: Iterable[Mapping[str, Any]]) -> tuple[list[SubscriptionInvoice], list[ParseProblem]]:
    invoices: list[SubscriptionInvoice] = []
    problems: list[ParseProblem] = []
    for raw in raws:
        parsed = parse_invoice(raw)
        if isinstance(parsed, ParseProblem):
            problems.append(parsed)
        else:
            invoices.append(parsed)
    return invoices, problems


def list_subscription_invoices(
    resources: InvoiceLister, *, query: str | None = None, subscription: str | None = None
) -> InvoiceListing:
    """Every SubscriptionInvoice (of one subscription when ``subscription`` names it) matching the RSQL ``query``,
    parsed, with what the listing proved about its completeness (``X-Axway-Total-Count``).

    Listable across all subscriptions at ``/catalog/v1/subscriptioninvoices`` (reference §3.6)."""
    scope = f"subscriptions/{subscription}" if subscription is not None else None
    raws, proof = resources.listing(PLURAL, query=query, scope=scope)
    invoices, problems = parse_invoices(raws)
    return InvoiceListing(tuple(invoices), tuple(problems), proof)


# The invoices the gateway acts on (DOCS custom_billing.md, "Troubleshooting": the documented filter is
# ``billing.payment.type==custom;state.name==draft;status.level==Pending``): drafts to create, open and past-due
# ones to follow until paid, and voids Amplify has just raised (status Pending). Paid, incomplete and handled voids
# are final and never listed again.
ACTIONABLE_QUERY = (
    f"billing.payment.type=={CUSTOM};state.name=in=({DRAFT},{OPEN},{PAST_DUE}),"
    f"billing.payment.type=={CUSTOM};state.name=={VOID};status.level=={PENDING}"
)
# The drafts waiting for the gateway alone: the documented filter itself
TO_SEND_QUERY = f"billing.payment.type=={CUSTOM};state.name=={DRAFT};status.level=={PENDING}"
