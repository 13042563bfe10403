"""The sandbox's tenant variants (``amplify-billing sandbox --tenant``) and the Recurly ends the sandbox can seed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from amplify_billing.cli import run_cli
from amplify_billing.errors import ExitCode
from amplify_billing.sandbox.harness import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, SANDBOX_TENANT, Sandbox
from amplify_billing.sandbox.scenario import build_scenario
from amplify_billing.sandbox.scenario_tenants import (
    NO_TRACEABILITY_ROLE,
    TENANTS,
    UNKNOWN_PRICING_TYPE,
    UNKNOWN_SUBSCRIPTION_STATE,
    seed_tenant,
)

NOW = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture
def sandbox(tmp_path: Path) -> Any:
    started = Sandbox.start(clock=lambda: NOW, state_dir=tmp_path, seed=4)
    yield started
    started.stop()


def _headers(sandbox: Sandbox) -> dict[str, str]:
    answer = requests.post(
        f"{sandbox.amplify.url}/auth/realms/Broker/protocol/openid-connect/token",
        data={"grant_type": "client_credentials"},
        auth=(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET),
        timeout=5,
    )
    return {"Authorization": f"Bearer {answer.json()['access_token']}", "X-Axway-Tenant-Id": SANDBOX_TENANT}


def _get(sandbox: Sandbox, path: str) -> requests.Response:
    return requests.get(f"{sandbox.amplify.url}{path}", headers=_headers(sandbox), timeout=5)


def test_the_v1alpha1_tenant_serves_plans_and_subscriptions_only_as_v1alpha1(sandbox: Sandbox) -> None:
    seed_tenant(sandbox.amplify, build_scenario(seed=4, subscriptions=12, now=NOW), "v1alpha1")

    assert _get(sandbox, "/apis/catalog/v1/products").status_code == 200
    assert _get(sandbox, "/apis/catalog/v1/productplans").status_code == 404
    assert len(_get(sandbox, "/apis/catalog/v1alpha1/subscriptions").json()) == 16


def test_the_sampled_tenant_counts_a_tenth_of_the_traffic(sandbox: Sandbox) -> None:
    scenario = build_scenario(seed=4, subscriptions=12, now=NOW, days_of_traffic=2)
    seed_tenant(sandbox.amplify, scenario, "sampled")
    day = (NOW - timedelta(days=1), NOW)
    body = {
        "version": "0.2",
        "invoke": {"method": "count", "field": "transactionId"},
        "filters": {
            "$and": [
                {
                    "$range": {
                        "@event_time": {"gte": int(day[0].timestamp() * 1000), "lt": int(day[1].timestamp() * 1000)}
                    }
                },
                {
                    "$exists": {
                        "transactionSummary.quota.id": True,
                        "transactionSummary.consumerDetails.subscription.id": True,
                    }
                },
            ]
        },
    }

    counted = requests.post(
        f"{sandbox.amplify.url}/api/traceability/v1/traceability/search",
        json=body,
        headers=_headers(sandbox),
        timeout=5,
    ).json()[0]["result"]

    full = sum(sandbox.amplify.traffic(*day).values())
    assert full == sum(scenario.expected_traffic(*day).values()) > 1000
    assert 0.07 * full < counted < 0.13 * full


def test_the_restricted_tenant_refuses_traceability_and_consumers_naming_the_role(sandbox: Sandbox) -> None:
    scenario = build_scenario(seed=4, subscriptions=12, now=NOW)
    seed_tenant(sandbox.amplify, scenario, "restricted")

    search = requests.post(
        f"{sandbox.amplify.url}/api/traceability/v1/traceability/search", json={}, headers=_headers(sandbox), timeout=5
    )
    user = _get(sandbox, f"/api/v1/user/{scenario.users[0]['guid']}")

    assert search.status_code == 403 and search.json()["errors"][0]["detail"] == NO_TRACEABILITY_ROLE
    assert user.status_code == 403 and user.json()["success"] is False
    assert _get(sandbox, f"/api/v1/team/{scenario.teams[0]['guid']}").status_code == 200


def test_the_odd_values_tenant_holds_values_the_tool_does_not_know(sandbox: Sandbox) -> None:
    scenario = build_scenario(seed=4, subscriptions=12, now=NOW)
    seed_tenant(sandbox.amplify, scenario, "odd-values")

    subscriptions = sandbox.amplify.resources("Subscription")
    quotas = sandbox.amplify.resources("Quota")
    assert [s["state"]["name"] for s in subscriptions if s.get("state", {}).get("name") == "suspended"] == [
        UNKNOWN_SUBSCRIPTION_STATE
    ]
    assert [s["approval"]["state"] for s in subscriptions].count("error") == 1
    assert [q["spec"]["pricing"]["type"] for q in quotas].count(UNKNOWN_PRICING_TYPE) == 1


def test_the_default_tenant_holds_transitional_states_and_a_free_plan_without_billing(sandbox: Sandbox) -> None:
    scenario = build_scenario(seed=4, subscriptions=12, now=NOW)
    seed_tenant(sandbox.amplify, scenario)

    states = {s["state"]["name"] for s in sandbox.amplify.resources("Subscription") if "state" in s}
    free = sandbox.amplify.resource("ProductPlan", "weather-free")
    assert {"migrationScheduled", "migrating", "archivalScheduled"} <= states
    assert len(scenario.transitional_subscriptions) == 3
    assert "billing" not in free["spec"]


def test_every_tenant_is_named_in_the_sandbox_help_and_an_unknown_one_is_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run_cli(["sandbox", "--help"])
    out = capsys.readouterr().out
    assert code == ExitCode.OK
    assert all(name in out for name in TENANTS)

    code = run_cli(["sandbox", "--tenant", "v2", "--write-config", "/nonexistent/x.yaml"])
    err = capsys.readouterr().err
    assert code == ExitCode.CONFIG
    assert "--tenant 'v2': choose one of default, v1alpha1, sampled, restricted, odd-values" in err


def test_a_subscription_dunning_expired_leaves_the_live_listing_and_reads_by_uuid(sandbox: Sandbox) -> None:
    recurly = sandbox.recurly
    account = {"code": "amplify-team-x", "email": "x@example.test"}
    plan = {"code": "amplify-p", "name": "P", "currencies": [{"currency": "USD", "unit_amount": 10}]}
    headers = {"Accept": "application/vnd.recurly.v2021-02-25+json"}
    auth = ("sandbox-recurly-key", "")
    for path, body in (("/accounts", account), ("/plans", plan)):
        assert requests.post(recurly.url + path, json=body, auth=auth, headers=headers, timeout=5).status_code < 300
    created = requests.post(
        recurly.url + "/subscriptions",
        json={"plan_code": "amplify-p", "currency": "USD", "account": {"code": "amplify-team-x"}},
        auth=auth,
        headers=headers,
        timeout=5,
    ).json()

    with recurly.lock:
        recurly.state.expire_after_dunning(f"uuid-{created['uuid']}")

    assert created["uuid"] not in {s["uuid"] for s in recurly.subscriptions("live")}
    read = requests.get(f"{recurly.url}/subscriptions/uuid-{created['uuid']}", auth=auth, headers=headers, timeout=5)
    assert (read.json()["state"], read.json()["expiration_reason"]) == ("expired", "nonpayment")
