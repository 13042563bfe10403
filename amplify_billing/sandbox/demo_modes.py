"""``amplify-billing demo --mode marketplace|both``: Amplify's invoices billed through Recurly, on a virtual month.

``marketplace``: the Marketplace bills with vendor Custom (README, "Marketplace mode"). Day 0: the consumers'
subscriptions are approved and Amplify makes each one's initial invoice; the run makes each a Recurly invoice,
which automatic collection charges; the next run sees it paid and marks it paid in Amplify (the consumer's access).
At the month's end Amplify makes the period invoice with the month's consumption; a run sends it, the next sees it
paid. ``both``: a second Marketplace, in recurly mode, takes half of the subscriptions, billed by Recurly's
subscriptions and usage in the same runs. Everything runs through the production code over HTTP; only the clock is
virtual, and the emulators' invoicing job (``sandbox/amplify_invoices.py``) stands for Amplify's.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from rich.console import Console

from amplify_billing.changes import CommandReport
from amplify_billing.gather.status import gather_status
from amplify_billing.reconcile.status import build_status
from amplify_billing.render import overall_exit_code
from amplify_billing.render.envelope import demo_envelope, envelope_json
from amplify_billing.sandbox import recurly_invoices
from amplify_billing.sandbox.amplify_emulator import AmplifyEmulator
from amplify_billing.sandbox.amplify_invoices import InvoiceIssuer, enable_custom_billing, month_start
from amplify_billing.sandbox.demo import DEMO_DAYS, MID_WEEK, _run, _runtime, _writes, seeded
from amplify_billing.sandbox.harness import Sandbox
from amplify_billing.sandbox.scenario import Scenario

KIND = "SubscriptionInvoice"


def split_marketplace(amplify: AmplifyEmulator, scenario: Scenario, every: int = 2) -> str:
    """A second Marketplace, billed by Amplify's invoices, with every ``every``-th subscription (by name); returns
    its name. The scenario's own Marketplace stays in recurly mode. Also the fault soak's
    (``tools/soak_invoices.py``)."""
    name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"amplify-billing-demo:{scenario.seed}"))
    second = {**scenario.marketplace, "name": name, "title": "Partner Marketplace", "metadata": {"id": name[:32]}}
    amplify.put_resource(second)
    enable_custom_billing(amplify, second)
    for s in sorted(amplify.resources("Subscription"), key=lambda s: s["name"])[::every]:
        amplify.put_resource({**s, "marketplace": {**s["marketplace"], "name": name}})
    return name


def _invoices(amplify: AmplifyEmulator) -> list[dict[str, Any]]:
    return amplify.resources(KIND)


def _totals(invoices: list[dict[str, Any]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for i in invoices:
        total = Decimal(str(i["spec"]["cost"]["total"]))
        if not total:
            continue  # a free plan's invoice may name no currency: nothing to add, and no "0.0 ?" in the summary
        currency = str(i["spec"]["cost"]["plan"].get("currency") or "?")
        totals[currency] = totals.get(currency, Decimal(0)) + total
    return totals


def _figures(sandbox: Sandbox) -> dict[str, int | str]:
    invoices = _invoices(sandbox.amplify)
    states = Counter(i["state"]["name"] for i in invoices)
    periods = [i for i in invoices if i["spec"].get("period")]
    usage = sandbox.recurly.usage_records()
    return {
        "amplify_invoices": len(invoices),
        "amplify_period_invoices": len(periods),
        "amplify_invoices_paid": states.get("paid", 0),
        "metered_units": sum(q["units"] for i in periods for q in i["spec"].get("quotas", [])),
        "invoiced_total": ", ".join(f"{amount} {currency}" for currency, amount in sorted(_totals(invoices).items())),
        "recurly_invoices": sum(1 for r in recurly_invoices.invoices(sandbox.recurly) if r.get("po_number")),
        "recurly_subscriptions": len(sandbox.recurly.subscriptions()),
        "usage_records": len(usage),
    }


def run_invoice_demo(
    console: Console, err: Console, *, mode: str, seed: int = 7, subscriptions: int = 40, output: str = "table"
) -> int:
    """The month; exit 0 when every run exited 0, every Amplify invoice ends paid, and the last run wrote nothing."""
    month_end = month_start(datetime.now(UTC))
    day0 = month_end - timedelta(days=DEMO_DAYS)
    table = output != "json"
    with seeded(seed, subscriptions, month_end) as (sandbox, clock, scenario):
        billing: dict[str, Any]
        if mode == "both":
            billing = {"marketplaces": {split_marketplace(sandbox.amplify, scenario): "marketplace"}}
        else:
            enable_custom_billing(sandbox.amplify, scenario.marketplace)
            billing = {"mode": "marketplace"}
        sections: dict[str, dict[str, Any]] = {"billing": {**billing, "collection_method": "automatic"}}
        issuer = InvoiceIssuer(sandbox.amplify)
        runs: list[tuple[str, list[CommandReport]]] = []

        def step(name: str, title: str, before: Callable[[], object] | None = None) -> None:
            if before is not None:
                before()
            if table:
                console.rule(f"{name} ({clock():%Y-%m-%d %H:%M} UTC): {title}")
            runs.append((name, _run(sandbox, clock, console, err, table, **sections)))

        step("day 0", "accounts for the consumers; subscriptions approved")
        step(
            "day 0, later", "Amplify's initial invoices become Recurly invoices, charged", lambda: issuer.issue(clock())
        )
        step(
            "day 3",
            "Recurly says paid: Amplify marks them paid, the consumers get access",
            lambda: clock.set(day0 + MID_WEEK),
        )

        def month_end_invoices() -> None:
            clock.set(month_end + timedelta(hours=1))
            issuer.issue(clock())

        step("month end", "Amplify's period invoices, with the month's consumption, sent", month_end_invoices)
        step("month end again", "Recurly says paid: Amplify marks them paid")
        step("month end, once more", "nothing left to do")
        runtime = _runtime(sandbox, clock, console, err, **sections)
        try:
            status = build_status(gather_status(runtime, verify=True), clock())
        finally:
            runtime.close()
        figures = _figures(sandbox)
        worst = max(overall_exit_code(reports) for _, reports in runs)
        unpaid = figures["amplify_invoices"] != figures["amplify_invoices_paid"]
        code = 0 if worst == 0 and not unpaid and _writes(runs[-1][1]) == 0 else 1
        if not table:
            document = demo_envelope(runs, exit_code=code, figures=figures, status=status.to_json())
            console.file.write(envelope_json(document) + "\n")
            return code
        console.rule("What just happened")
        _explain(console, mode, figures)
        return code


def _explain(console: Console, mode: str, f: dict[str, int | str]) -> None:
    lines = [
        f"1. Amplify made {f['amplify_invoices']} invoices ({f['amplify_period_invoices']} for the month's period, "
        f"{f['metered_units']:,} metered units, {f['invoiced_total']} in all); each one with something to pay "
        f"became one Recurly invoice ({f['recurly_invoices']}), charged by automatic collection, and "
        f"{f['amplify_invoices_paid']} are paid in Amplify. No Recurly subscription or usage was made for them.",
    ]
    if mode == "both":
        lines.append(
            f"2. Side by side, the recurly-mode Marketplace's half was billed by {f['recurly_subscriptions']} Recurly "
            f"subscriptions and {f['usage_records']} usage records counted from Traceability."
        )
    lines.append(
        f"{len(lines) + 1}. For a real tenant: README, 'Marketplace mode' (billing.marketplaces, Custom billing) and "
        "'Switching a Marketplace between modes'."
    )
    for line in lines:
        console.print(line, markup=False, highlight=False)
