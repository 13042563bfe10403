"""End-to-end: ``doctor`` against each tenant variant of the sandbox, over HTTP, with the production clients.

Every test counts the requests both emulators saw: doctor writes nothing to either system and creates no journal.
One test per kind of "action needed" asserts its exact evidence line.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from amplify_billing.commands.doctor import doctor
from amplify_billing.runtime import Runtime
from amplify_billing.sandbox.amplify_invoices import enable_custom_billing
from amplify_billing.sandbox.clock import VirtualClock
from amplify_billing.sandbox.harness import Sandbox
from amplify_billing.sandbox.scenario import build_scenario
from amplify_billing.sandbox.scenario_tenants import NO_TRACEABILITY_ROLE, seed_tenant
from tools.driver import Cycle, amplify_writes, recurly_writes

TODAY = datetime(2026, 11, 20, tzinfo=UTC)
# the budget for the demo catalog: one minute at the documented 25 requests a minute
DEMO_BUDGET = 25


@dataclass
class Diagnosis:
    code: int
    document: dict[str, Any]
    err: str
    amplify_requests: int

    def check(self, name: str) -> dict[str, Any]:
        [found] = [c for c in self.document["checks"] if c["check"] == name]
        return found


@pytest.fixture
def tenant(tmp_path: Path, recurly_contract: Any) -> Iterator[Callable[..., Cycle]]:
    """``tenant(name, subscriptions=40, days=7, config={section: {key: value}})``: a sandbox seeded as that tenant
    variant, its clock at ``TODAY`` (the end of the traffic)."""
    started: list[Sandbox] = []

    def make(
        name: str = "default", *, subscriptions: int = 40, days: int = 7, config: dict[str, Any] | None = None
    ) -> Cycle:
        clock = VirtualClock(TODAY)
        scenario = build_scenario(seed=7, subscriptions=subscriptions, now=TODAY, days_of_traffic=days)
        state = tmp_path / f"state-{len(started)}"
        state.mkdir()
        sandbox = Sandbox.start(clock=clock, state_dir=state, seed=7)
        started.append(sandbox)
        seed_tenant(sandbox.amplify, scenario, name)
        return Cycle(sandbox, clock, scenario, dict(config or {}))

    yield make
    for sandbox in started:
        sandbox.stop()
    problems = [p for sandbox in started for p in recurly_contract.violations(list(sandbox.recurly.requests))]
    assert problems == []


def diagnose(cycle: Cycle, **runtime: Any) -> Diagnosis:
    """doctor in-process on the cycle's clock; asserts that it wrote nothing and created no journal."""
    out, err = io.StringIO(), io.StringIO()
    settings = cycle.sandbox.settings(**cycle.overrides)
    journal_existed = settings.state.path.exists()
    marks = len(cycle.sandbox.amplify.requests), len(cycle.sandbox.recurly.requests)
    rt = Runtime(settings, Console(file=out, width=200), Console(file=err, width=200), clock=cycle.clock, **runtime)
    try:
        code = doctor(rt, output="json")
    finally:
        rt.close()
    assert amplify_writes(cycle.sandbox, marks[0]) == []
    assert recurly_writes(cycle.sandbox, marks[1]) == []
    assert settings.state.path.exists() == journal_existed
    envelope = json.loads(out.getvalue())  # the versioned envelope; the report is its ``doctor``
    assert envelope["command"] == "doctor" and envelope["exit_code"] == code
    document = envelope["doctor"]
    assert document["exit_code"] == code
    return Diagnosis(code, document, err.getvalue(), len(cycle.sandbox.amplify.requests) - marks[0])


# ---- ready ------------------------------------------------------------------------------------------------------
def test_the_default_sandbox_is_ready_within_the_demo_budget(tenant: Callable[..., Cycle]) -> None:
    cycle = tenant()

    found = diagnose(cycle)

    assert found.code == 0 and found.document["ready"] is True
    assert found.amplify_requests <= DEMO_BUDGET
    assert found.amplify_requests == 14  # token, 6 listings, the Marketplaces, team, user, org, 3 searches
    assert found.document["requests"]["amplify"] == {"POST": 4, "GET": 10}
    verdicts = {c["check"]: c["verdict"] for c in found.document["checks"]}
    assert verdicts["sampling"] == "unknown" and list(verdicts.values()).count("action needed") == 0
    assert found.check("sampling")["evidence"].endswith(
        "agents sample transaction summaries by default (an unsampled transaction leaves no trace in Traceability), "
        "so counts may under-bill"
    )
    census = {(r["field"], r["value"]): r for r in found.document["census"]}
    assert census[("plan type", "custom")]["known"] is True
    assert census[("subscription state", "migrating")]["count"] == 1
    preview = {(r["outcome"], r["reason"]): r["plans"] for r in found.document["preview"]}
    assert preview[("synced", "1 usage add-on(s)")] == 7 and preview[("synced", "base price only")] == 1


def test_a_2024_tenant_is_ready_with_each_kind_at_the_version_it_serves(tenant: Callable[..., Cycle]) -> None:
    found = diagnose(tenant("v1alpha1"))

    assert found.code == 0
    assert found.check("productplans")["evidence"] == "catalog/v1alpha1 (v1: HTTP 404; v1alpha1: served)"
    assert found.check("products")["evidence"] == "catalog/v1 (v1: served)"
    assert found.amplify_requests == 18 <= DEMO_BUDGET  # one 404 more for each of four kinds


def test_the_rate_limit_is_kept_with_a_progress_line_while_waiting(tenant: Callable[..., Cycle]) -> None:
    cycle = tenant(config={"amplify": {"rate_limit_per_minute": 5}})
    mono = [1000.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        mono[0] += seconds

    found = diagnose(cycle, monotonic=lambda: mono[0], sleep=sleep)

    assert found.code == 0
    assert len(waits) == 2  # 12 rate-limited requests at 5 a minute: the 6th and the 11th wait for the next minute
    # the token request is sent too, but the IdP is not one of the rate-limited APIs
    assert found.err.splitlines() == [
        "Waiting 60 s for Amplify's rate limit (5 requests a minute); 6 request(s) sent so far",
        "Waiting 60 s for Amplify's rate limit (5 requests a minute); 11 request(s) sent so far",
    ]


# ---- action needed, one kind each ----------------------------------------------------------------------------------
def test_a_pinned_version_the_tenant_does_not_serve(tenant: Callable[..., Cycle]) -> None:
    found = diagnose(tenant("v1alpha1", config={"amplify": {"api_version": "v1"}}))

    assert found.code == 4
    check = found.check("productplans")
    assert (check["verdict"], check["evidence"]) == (
        "action needed",
        "catalog/v1/productplans answered 404: the tenant does not serve it there",
    )
    assert check["action"] == "set amplify.api_version: auto (each kind at the version the tenant serves)"


def test_a_missing_role_is_named(tenant: Callable[..., Cycle]) -> None:
    cycle = tenant("restricted")

    found = diagnose(cycle)

    assert found.code == 4
    traceability = found.check("Traceability")
    url = f"{cycle.sandbox.amplify.url}/api/traceability/v1/traceability/search"
    assert traceability["evidence"] == (
        f"refused: Amplify forbids POST {url} (HTTP 403: Forbidden: {NO_TRACEABILITY_ROLE}); the service account "
        "needs the Engage/Central Admin role"
    )
    assert traceability["action"] == (
        "give the service account the Engage (Central) Admin role, which the Traceability API requires"
    )
    consumers = found.check("consumer users and orgs")
    assert consumers["verdict"] == "action needed"
    assert consumers["evidence"].endswith(
        "the service account needs the organization's Administrator role on the Amplify Platform"
    )
    assert found.check("traceability count")["verdict"] == "unknown"


def test_values_the_tool_does_not_know_name_what_they_hold_back(tenant: Callable[..., Cycle]) -> None:
    cycle = tenant("odd-values")
    live = [n for n in cycle.scenario.live_subscriptions if n not in cycle.scenario.pending_subscriptions]

    found = diagnose(cycle)

    assert found.code == 4
    assert found.check("literals")["evidence"] == (
        "quota pricing type 'stairstep' holds back 1 plan(s): weather-volume; "
        f"subscription state 'suspended' holds back 1 subscription(s): {live[0]}"
    )
    census = {(r["field"], r["value"]): r for r in found.document["census"]}
    assert census[("approval state", "error")]["known"] is True  # known, and not an approval


def test_summaries_sampled_under_the_invoiced_units(tenant: Callable[..., Cycle]) -> None:
    cycle = tenant("sampled", subscriptions=12, days=3)
    counted, invoiced, intervals = _bill_three_days_and_invoice_them(cycle)

    found = diagnose(cycle)

    assert found.code == 4
    check = found.check("sampling")
    ratio = counted / invoiced
    assert 0.05 < ratio < 0.15
    assert check["evidence"] == (
        f"summaries are sampled: this source under-bills; Traceability counted {counted} of {invoiced} units Amplify "
        f"invoiced over {intervals} interval(s) ({ratio:.1%})"
    )
    assert check["action"] == (
        "use the Marketplace billing mode, or usage.source: file fed by the gateway's own counts"
    )


def test_unsampled_summaries_match_the_invoiced_units(tenant: Callable[..., Cycle]) -> None:
    cycle = tenant(subscriptions=12, days=3)
    counted, invoiced, intervals = _bill_three_days_and_invoice_them(cycle)

    found = diagnose(cycle)

    assert counted == invoiced
    assert found.check("sampling") == {
        "area": "usage source",
        "check": "sampling",
        "verdict": "ok",
        "action": "",
        "evidence": f"Traceability counted {counted} of {invoiced} units Amplify invoiced over {intervals} "
        "interval(s) (100.0%): not sampled",
    }


def test_a_plan_currency_the_site_does_not_accept(tenant: Callable[..., Cycle]) -> None:
    cycle = tenant(subscriptions=4)
    plan = cycle.sandbox.amplify.resource("ProductPlan", "weather-annual")
    plan["spec"]["billing"]["currency"] = "GBP"
    cycle.sandbox.amplify.put_resource(plan)

    found = diagnose(cycle)

    check = found.check("currencies")
    assert (found.code, check["verdict"]) == (4, "action needed")
    assert check["evidence"] == (
        "plans bill in currencies site sandbox does not accept (EUR, USD): GBP (weather-api/weather-annual)"
    )


def test_a_configured_custom_field_recurly_does_not_have(tenant: Callable[..., Cycle]) -> None:
    found = diagnose(tenant(subscriptions=4, config={"subscriptions": {"custom_field": "amplify_id"}}))

    check = found.check("custom field")
    assert (found.code, check["verdict"]) == (4, "action needed")
    assert check["evidence"].startswith(
        "Recurly has no custom field 'amplify_id' on subscriptions (subscriptions.custom_field in "
    )


def test_refused_credentials_stop_at_the_token(tenant: Callable[..., Cycle]) -> None:
    cycle = tenant(subscriptions=4, config={"amplify": {"client_secret": "wrong"}})

    found = diagnose(cycle)

    assert found.code == 4
    assert found.check("token")["verdict"] == "action needed"
    assert "Invalid client secret" in found.check("token")["evidence"]
    assert found.amplify_requests == 1  # the token request alone; every other Amplify check is unknown
    assert {c["verdict"] for c in found.document["checks"] if c["area"] == "api version"} == set()


def test_no_product_that_opts_in(tenant: Callable[..., Cycle]) -> None:
    found = diagnose(tenant(subscriptions=4, config={"amplify": {"opt_in_value": "chargebee"}}))

    check = found.check("mapping preview")
    assert (found.code, check["evidence"]) == (4, "no product opts in: nothing would be billed")


# ---- helpers --------------------------------------------------------------------------------------------------------
def _bill_three_days_and_invoice_them(cycle: Cycle) -> tuple[int, int, int]:
    """Run the cycle from the start of the traffic and report its three days; then give each subscription with usage
    an invoice of Amplify's full daily counts (what the agents' metrics count). The journal's and the invoices'
    units over the same days."""
    scenario = cycle.scenario
    cycle.clock.set(scenario.traffic_start)
    assert all(r.exit_code == 0 for r in cycle.run())
    cycle.clock.set(TODAY + timedelta(hours=3))
    assert cycle.report_usage().exit_code == 0
    days = [scenario.traffic_start + timedelta(days=d) for d in range(3)]
    quota_names = {q["metadata"]["id"]: q["name"] for q in scenario.quotas}
    by_id = {s["metadata"]["id"]: s for s in scenario.subscriptions}
    settings = cycle.sandbox.settings(**cycle.overrides)
    from amplify_billing.journal import Journal

    journal = Journal.open(settings.state.path, clock=cycle.clock)
    ledger = journal.usage_entries()
    journal.close()
    counted = invoiced = intervals = 0
    pairs = sorted({(e.subscription_id, e.quota_id) for e in ledger})
    for subscription_id, quota_id in pairs:
        full = [
            cycle.sandbox.amplify.traffic(day, day + timedelta(days=1)).get((subscription_id, quota_id), 0)
            for day in days
        ]
        cycle.sandbox.amplify.put_resource(
            {
                "kind": "SubscriptionInvoice",
                "name": f"{subscription_id[:16]}{quota_id[:16]}",
                "metadata": {"scope": {"kind": "Subscription", "name": by_id[subscription_id]["name"]}},
                "spec": {
                    "period": {"from": _stamp(days[0]), "to": _stamp(days[-1] + timedelta(days=1))},
                    "quotas": [
                        {
                            "name": quota_names[quota_id],
                            "units": sum(full),
                            "intervals": [
                                {"from": _stamp(day), "units": units} for day, units in zip(days, full, strict=True)
                            ],
                        }
                    ],
                },
                "state": {"name": "draft"},
            }
        )
        # the journal speaks for a pair from its first reported window (a day counted 0 is not recorded)
        entries = [e for e in ledger if (e.subscription_id, e.quota_id) == (subscription_id, quota_id)]
        first = min(e.window_start for e in entries)
        compared = [day for day, units in zip(days, full, strict=True) if units and day >= first]
        invoiced += sum(full[days.index(day)] for day in compared)
        intervals += len(compared)
        counted += int(sum(e.amount for e in entries if e.window_start in compared))
    return counted, invoiced, intervals


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def test_a_custom_billed_marketplace_in_recurly_mode_would_bill_twice(tenant: Callable[..., Cycle]) -> None:
    cycle = tenant(subscriptions=4)
    marketplace = cycle.scenario.marketplace
    enable_custom_billing(cycle.sandbox.amplify, marketplace)

    found = diagnose(cycle)

    check = found.check("billing modes")
    name = marketplace["name"]
    assert (found.code, check["verdict"]) == (4, "action needed")
    assert check["evidence"] == (
        f"Marketplace Sandbox Marketplace ({name}) bills with vendor custom in Amplify and billing.mode is recurly "
        "for it: each of its subscriptions would be billed twice (run, sync-subscriptions and report-usage skip them)"
    )
    assert check["action"] == (
        f"set billing.marketplaces: {{{name}: marketplace}} to bill Amplify's invoices, or turn its Custom billing off "
        "in the Marketplace's settings"
    )


def test_marketplace_mode_without_custom_billing_bills_nothing(tenant: Callable[..., Cycle]) -> None:
    cycle = tenant(subscriptions=4, config={"billing": {"mode": "marketplace"}})
    name = cycle.scenario.marketplace["name"]

    found = diagnose(cycle)

    check = found.check("billing modes")
    assert (found.code, check["verdict"]) == (4, "action needed")
    assert check["evidence"] == (
        f"billing.mode is marketplace for Marketplace Sandbox Marketplace ({name}) but its billing is off in Amplify: "
        "Amplify makes no invoice, so nothing bills its subscriptions"
    )


def test_each_marketplace_billed_once_is_ready(tenant: Callable[..., Cycle]) -> None:
    cycle = tenant(subscriptions=4)
    name = cycle.scenario.marketplace["name"]
    enable_custom_billing(cycle.sandbox.amplify, cycle.scenario.marketplace)
    cycle.overrides["billing"] = {"marketplaces": {name: "marketplace"}}

    found = diagnose(cycle)

    check = found.check("billing modes")
    assert check["verdict"] == "ok"
    assert check["evidence"] == "1 Marketplace(s): 0 billed in Recurly, 1 by Amplify's invoices (vendor Custom)"
