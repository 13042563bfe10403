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


def month_end_invoices(make_cycle: Any) -> Cycle:
    """Marketplace mode, a first run, then Amplify's month-end period invoices (with metered units)."""
    cycle: Cycle = make_cycle(subscriptions=6, days=5, today=MONTH_END, billing={"mode": "marketplace"})
    enable_custom_billing(cycle.sandbox.amplify, cycle.scenario.marketplace)
    for report in cycle.run():
        assert failed(report) == []
    cycle.clock.advance(MONTH_END + timedelta(hours=1) - cycle.clock())
    InvoiceIssuer(cycle.sandbox.amplify).issue(cycle.clock())
    return cycle


def test_the_latest_period_invoice_of_each_subscription_beside_traceability(make_cycle: Any) -> None:
    cycle = month_end_invoices(make_cycle)
    amplify = cycle.sandbox.amplify

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


def test_filters_narrow_the_metered_section_to_the_subscription_plan_or_account(
    make_cycle: Any, tmp_path: Any, capsys: Any
) -> None:
    """Marketplace-mode subscriptions have no Recurly subscription, so the plans and subscriptions sections never
    name them: a filter naming one must still find its metered rows, and only those."""
    from amplify_billing.cli import run_cli
    from amplify_billing.render.envelope import ReportEnvelope

    cycle = month_end_invoices(make_cycle)
    amplify = cycle.sandbox.amplify
    config = cycle.sandbox.write_config(tmp_path / "config.yaml", **cycle.overrides)

    def status(*args: str) -> tuple[int, dict[str, Any], str]:
        capsys.readouterr()
        code = run_cli(["--config", str(config), "-o", "json", "status", *args])
        out, err = capsys.readouterr()
        envelope = ReportEnvelope.model_validate_json(out)
        return code, envelope.status or {}, err + str(envelope.model_dump().get("error"))

    _, whole, _ = status()
    names = {r["subscription"] for r in whole["metered"]}
    assert len(names) >= 2, whole["metered"]
    subscriptions = {s["name"]: s for s in amplify.resources("Subscription")}
    one = subscriptions[sorted(names)[0]]

    code, only, err = status("--subscription", one["metadata"]["id"])
    assert code == 0, err
    assert {r["subscription"] for r in only["metered"]} == {one["name"]}
    assert len(only["metered"]) == sum(1 for r in whole["metered"] if r["subscription"] == one["name"])

    def account(subscription: dict[str, Any]) -> str:  # identity rules (DESIGN §2): a user owner, else the team
        market_owner = subscription["marketplace"]["resource"]["owner"]
        user = market_owner.get("user", {}).get("id")
        return f"amplify-user-{user}" if user else f"amplify-team-{market_owner['id']}"

    code, by_account, err = status("--account", account(one))
    assert code == 0, err
    owned = {n for n in names if account(subscriptions[n]) == account(one)}
    assert {r["subscription"] for r in by_account["metered"]} == owned

    plan = next(p for p in amplify.resources("ProductPlan") if p["name"] == one["spec"]["plan"]["name"])
    code, by_plan, err = status("--plan", plan["metadata"]["id"])
    assert code == 0, err
    on_plan = {n for n in names if subscriptions[n]["spec"]["plan"]["name"] == plan["name"]}
    assert {r["subscription"] for r in by_plan["metered"]} == on_plan

    code, _, err = status("--subscription", "nosuch")
    assert code == 2 and "nothing matches" in err
