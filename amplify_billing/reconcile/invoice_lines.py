"""The Recurly purchase an Amplify invoice becomes: its key, its line items, and the proof its money adds up. Pure.

One line per cost of the Amplify invoice: the plan's base price, its setup fee, and each quota's cost, in the
invoice's currency, exactly (Decimal from the wire to the request). The pre-tax subtotal, counted in the currency's
smallest unit, must equal the Amplify total: Recurly may add tax on top, nothing else may differ. An amount that
is not a whole number of that unit, or a total the lines do not add up to, sends nothing (a finding says why).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from amplify_billing.amplify.invoices import SubscriptionInvoice
from amplify_billing.invoice_actions import PurchaseLine

# Recurly limits (LineItemCreate, PurchaseCreate in Recurly's OpenAPI document, v2021-02-25)
PO_NUMBER_MAX = 50
PRODUCT_CODE_MAX = 50
DESCRIPTION_MAX = 255
PO_PREFIX = "amplify-inv-"


def _codes(text: str) -> list[str]:
    return text.split()


# Digits after the decimal point of each currency's smallest unit: ISO 4217 "minor unit" (list one, SIX Group,
# www.six-group.com/en/products-services/financial-information/data-standards.html). A currency not listed here is
# unknown: its invoices are findings, never a guess at its smallest unit.
MINOR_UNITS: Mapping[str, int] = {
    **dict.fromkeys(
        _codes(
            "AED ARS AUD BAM BDT BGN BOB BRL BWP BZD CAD CHF CNY COP CRC CZK DKK DOP DZD EGP ETB EUR FJD GBP GEL GHS "
            "GTQ HKD HNL HUF IDR ILS INR JMD KES KZT LKR MAD MDL MKD MXN MYR NGN NOK NZD PAB PEN PHP PKR PLN QAR RON "
            "RSD RUB SAR SEK SGD THB TRY TTD TWD TZS UAH USD UYU UZS ZAR"
        ),
        2,
    ),
    **dict.fromkeys(_codes("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"), 0),
    **dict.fromkeys(_codes("BHD IQD JOD KWD LYD OMR TND"), 3),
}


def po_number(amplify_invoice_id: str) -> str:
    """The key that ties a Recurly invoice to its Amplify invoice: ``amplify-inv-{metadata.id}`` (44 characters for
    Amplify's 32-hex ids), or a digest of the id when that would pass Recurly's 50."""
    candidate = PO_PREFIX + amplify_invoice_id.lower()
    if len(candidate) <= PO_NUMBER_MAX and all(c.isalnum() or c in "-_" for c in amplify_invoice_id):
        return candidate
    return PO_PREFIX + hashlib.sha256(amplify_invoice_id.encode()).hexdigest()[:32]


def product_code(po: str, suffix: str) -> str:
    """A line's product code: the purchase's key and what the line bills (``base``, ``setup``, ``q1``…)."""
    return f"{po[: PRODUCT_CODE_MAX - len(suffix) - 1]}-{suffix}"


def minor_units(amount: Decimal, currency: str) -> int | None:
    """``amount`` in the currency's smallest unit, or None when it is not a whole number of it (or unknown)."""
    digits = MINOR_UNITS.get(currency)
    if digits is None:
        return None
    scaled = amount.scaleb(digits)
    return int(scaled) if scaled == scaled.to_integral_value() else None


@dataclass(frozen=True)
class Purchase:
    currency: str
    lines: tuple[PurchaseLine, ...]
    total_minor: int


def _clip(text: str) -> str:
    return text if len(text) <= DESCRIPTION_MAX else text[: DESCRIPTION_MAX - 1] + "…"


def _lines(invoice: SubscriptionInvoice, po: str) -> list[PurchaseLine]:
    plan = invoice.plan_name or "its plan"
    start, end = invoice.period_start, invoice.period_end
    lines = []
    if invoice.plan_cost:
        lines.append(
            PurchaseLine(
                product_code(po, "base"), _clip(f"{invoice.title}: {plan}, base price"), invoice.plan_cost, start, end
            )
        )
    if invoice.setup_cost:
        lines.append(
            PurchaseLine(product_code(po, "setup"), _clip(f"{invoice.title}: {plan}, setup fee"), invoice.setup_cost)
        )
    units = invoice.units()
    for index, quota in enumerate(invoice.quota_costs, start=1):
        if not quota.cost:
            continue
        counted = units.get(quota.name)
        text = f"{invoice.title}: {quota.name}" + (f", {counted:,} units" if counted is not None else "")
        lines.append(PurchaseLine(product_code(po, f"q{index}"), _clip(text), quota.cost, start, end))
    return lines


def purchase_of(invoice: SubscriptionInvoice, currency: str) -> Purchase | str:
    """The purchase for ``invoice`` in ``currency``, or why nothing may be sent for it."""
    if currency not in MINOR_UNITS:
        return f"its currency {currency!r} is not one this tool knows the smallest unit of (ISO 4217)"
    po = po_number(invoice.id)
    lines = _lines(invoice, po)
    amounts: list[int] = []
    for line in lines:
        minor = minor_units(line.unit_amount, currency)
        if minor is None:
            return (
                f"{line.description!r} costs {line.unit_amount} {currency}, which is not a whole number of the "
                f"currency's smallest unit: Recurly cannot bill it exactly"
            )
        amounts.append(minor)
    total = minor_units(invoice.total, currency)
    if total is None:
        return f"its total {invoice.total} {currency} is not a whole number of the currency's smallest unit"
    if sum(amounts) != total:
        added = sum((line.unit_amount for line in lines), Decimal(0))
        return (
            f"its items add up to {added} {currency} (base {invoice.plan_cost}, setup {invoice.setup_cost}, quotas "
            f"{sum((q.cost for q in invoice.quota_costs), Decimal(0))}), not its total {invoice.total} {currency}"
        )
    return Purchase(currency, tuple(lines), total)
