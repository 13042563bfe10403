"""End-to-end: status shows Amplify's metered units next to Traceability's count, in marketplace mode only
(issue 15; reconcile/status_invoices.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from amplify_billing.gather.status import gather_status
from amplify_billing.reconcile.status import build_status
from amplify_billing.sandbox.amplify_invoices import InvoiceIssuer, enable_custom_billing
from tools.driver import Cycle, failed

MONTH_END = datetime(2026, 12, 1, tzinfo=UTC)


def status_of(cycle: Cycle) -> Any:
    rt = cycle.runtime()
    try:
        return build_status(gather_status(rt, verify=False), cycle.clock())
    finally:
        rt.close()


def test_the_latest_period_invoice_of_each_subscription_beside_traceability(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=6, days=5, today=MONTH_END, billing={"mode": "marketplace"})
    amplify = cycle.sandbox.amplify
    enable_custom_billing(amplify, cycle.scenario.marketplace)
    for report in cycle.run():
        assert failed(report) == []
    cycle.clock.advance(MONTH_END + timedelta(hours=1) - cycle.clock())
    InvoiceIssuer(amplify).issue(cycle.clock())

    report = status_of(cycle)

    [section] = [s for s in report.sections if s.name == "metered"]
    rows = section.records()
    periods = [i for i in amplify.resources("SubscriptionInvoice") if i["spec"].get("quotas")]
    assert len(rows) == sum(len(i["spec"]["quotas"]) for i in periods) > 0
    metered = {(i["metadata"]["scope"]["name"], q["name"]): q["units"] for i in periods for q in i["spec"]["quotas"]}
    assert {(r["subscription"], r["quota"]): r["metered_units"] for r in rows} == metered
    counted = [r for r in rows if r["traced_units"] is not None]
    assert counted, [r["traced_share"] for r in rows]
    assert any(r["metered_units"] > 0 for r in counted)
    for row in counted:  # Traceability's summaries never count more than Amplify metered
        assert row["traced_units"] <= row["metered_units"]
        assert row["traced_share"].endswith("%") or row["traced_share"] == "nothing metered"


def test_recurly_mode_status_has_no_section_and_reads_no_invoice(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=4, days=2)
    for report in cycle.run():
        assert failed(report) == []
    since = len(cycle.sandbox.amplify.requests)

    report = status_of(cycle)

    assert "metered" not in {s.name for s in report.sections}
    paths = [r.path for r in cycle.sandbox.amplify.requests[since:]]
    assert paths and not [p for p in paths if "subscriptioninvoices" in p]
