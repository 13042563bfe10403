"""doctor's billing modes check: each Marketplace billed exactly once. Pure.

A Marketplace whose billing is on in Amplify (vendor Custom) while ``billing.mode`` is recurly for it would bill
each subscription twice (run skips them: ``billing_modes.guard_double_billing``); one in mode marketplace whose
billing is off gets no invoice from Amplify, so nothing bills it (docs/architecture.md, "Where each rule lives").
"""

from __future__ import annotations

from datetime import datetime

from amplify_billing.reconcile.billing_modes import CUSTOM_VENDOR, MarketplaceBilling
from amplify_billing.reconcile.doctor_checks import Check, Verdict
from amplify_billing.settings.billing import BillingSettings

NAME = "billing modes"


def _label(marketplaces: MarketplaceBilling, name: str) -> str:
    title = marketplaces.titles.get(name)
    return f"Marketplace {title} ({name})" if title else f"Marketplace {name}"


def billing_mode_check(
    billing: BillingSettings, marketplaces: MarketplaceBilling | None, why_none: str, now: datetime | None = None
) -> Check:
    """One check over every Marketplace listed; ``marketplaces`` None: not read (``why_none`` says why). A
    Marketplace switching to recurly mode at a ``billing.switch_at`` after ``now`` is Amplify's to bill until then,
    as the double billing guard lets it be (``billing_modes.guard_double_billing``)."""
    if marketplaces is None or marketplaces.unproven:
        why = why_none if marketplaces is None else marketplaces.unproven
        return Check(
            "billing",
            NAME,
            Verdict.ACTION if marketplaces else Verdict.UNKNOWN,
            f"whether each Marketplace is billed once is unknown: {why}",
            "give the service account read access to Marketplaces (the Engage (Central) Admin role)"
            if marketplaces
            else "",
        )
    problems: list[str] = []
    fixes: list[str] = []
    invoiced = 0
    notes: list[str] = []
    for name, vendor in sorted(marketplaces.vendors.items()):
        label = _label(marketplaces, name)
        if billing.invoiced(name):
            invoiced += 1
            if vendor != CUSTOM_VENDOR:
                state = "off" if vendor is None else f"on with vendor {vendor}"
                problems.append(
                    f"billing.mode is marketplace for {label} but its billing is {state} in Amplify: "
                    "Amplify makes no invoice, so nothing bills its subscriptions"
                )
                fixes.append(
                    f"turn its Custom billing on in the Marketplace's settings, or set "
                    f"billing.marketplaces: {{{name}: recurly}}"
                )
        elif vendor is not None and now is not None and (at := billing.switch_of(name)) is not None and now < at:
            moment = at.isoformat().replace("+00:00", "Z")
            notes.append(f"; Amplify bills {label} until its switch to recurly at billing.switch_at {moment}")
        elif vendor is not None:
            problems.append(
                f"{label} bills with vendor {vendor} in Amplify and billing.mode is recurly for it: "
                "each of its subscriptions would be billed twice (run, sync-subscriptions and "
                "report-usage skip them)"
            )
            fixes.append(
                f"set billing.marketplaces: {{{name}: marketplace}} to bill Amplify's invoices, or turn its "
                "Custom billing off in the Marketplace's settings"
                if vendor == CUSTOM_VENDOR
                else f"turn its {vendor} billing off in the Marketplace's settings"
            )
    if problems:
        return Check("billing", NAME, Verdict.ACTION, "; ".join(problems), "; ".join(fixes))
    count = len(marketplaces.vendors)
    return Check(
        "billing",
        NAME,
        Verdict.OK,
        f"{count} Marketplace(s): {count - invoiced} billed in Recurly, "
        f"{invoiced} by Amplify's invoices (vendor Custom)" + "".join(notes),
    )
