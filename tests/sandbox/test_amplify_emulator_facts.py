"""The Amplify emulator's switches for the facts of Amplify's public sources (reference §9).

A tenant that serves some kinds only as ``v1alpha1``; Traceability summaries sampled at a rate (the unsampled leave
no trace, the metrics keep every transaction); the oldest transaction still held; areas a service account has no
role for; SubscriptionInvoices scoped to their subscription.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests

from amplify_billing.errors import AuthError
from amplify_billing.sandbox.amplify_catalog import SERVED_IN_2024
from amplify_billing.sandbox.amplify_emulator import AmplifyEmulator
from tests.sandbox.test_amplify_emulator import (
    START,
    START_MS,
    Waits,
    amplify,
    api_headers,
    clients_for,
    clock,
    lexus,
    searcher,
    seed_catalog,
    subscription,
    waits,
)

__all__ = ["amplify", "clock", "waits"]  # fixtures, used by name


def test_a_2024_tenant_serves_plans_and_subscriptions_only_as_v1alpha1(amplify: AmplifyEmulator, waits: Waits) -> None:
    seed_catalog(amplify)
    amplify.serve_versions(SERVED_IN_2024)
    headers = api_headers(amplify)

    def status(path: str) -> int:
        return requests.get(f"{amplify.url}/apis/catalog/{path}", headers=headers, timeout=5).status_code

    assert [status(p) for p in ("v1/products", "v1alpha1/products", "v1/quotas")] == [200, 200, 200]
    assert [status(p) for p in ("v1/productplans", "v1/productplans/gold", "v1/subscriptions")] == [404, 404, 404]
    assert [status(p) for p in ("v1alpha1/productplans", "v1alpha1/subscriptions")] == [200, 200]
    unserved = requests.get(f"{amplify.url}/apis/catalog/v1/productplans", headers=headers, timeout=5)
    assert unserved.json()["errors"][0]["detail"] == "/apis/catalog/v1/productplans not found"
    # the production client with api_version auto reads every kind where it is served
    resources = clients_for(amplify, waits, api_version="auto").resources
    assert len(resources.list("productplans")) == 5 and len(resources.list("subscriptions")) == 8
    versions = {plural: choice.version for plural, choice in resources.versions.choices().items()}
    assert versions == {"productplans": "v1alpha1", "subscriptions": "v1alpha1"}


def test_sampled_summaries_count_a_share_and_the_unsampled_leave_no_trace(amplify: AmplifyEmulator) -> None:
    amplify.sample_summaries(0.1)  # the SDK's maximum sampling percentage is 10
    for hour in range(24):
        amplify.add_traffic("s1", "q1", START + timedelta(hours=hour), 1000)
    amplify.add_traffic("s2", "q1", START, 3)
    search = searcher(amplify)
    day = {"$range": {"@event_time": {"gte": START_MS, "lt": START_MS + 86_400_000}}}

    counted = search(lexus([day], ["transactionSummary.consumerDetails.subscription.id"])).json()[0]["result"]

    assert 2300 <= counted["s1"] <= 2500  # about a tenth of 24,000
    assert counted.get("s2", 0) <= 3
    assert amplify.traffic(START, START + timedelta(days=1)) == {("s1", "q1"): 24_000, ("s2", "q1"): 3}
    with pytest.raises(ValueError, match="before adding traffic"):
        amplify.sample_summaries(0.5)


def test_the_oldest_transaction_held_is_the_min_of_event_time(amplify: AmplifyEmulator, clock: Any) -> None:
    amplify.add_traffic("s1", "q1", START - timedelta(days=9), 4)  # beyond the 7-day retention: gone
    amplify.add_traffic("s1", "q1", START + timedelta(hours=3), 2)
    amplify.add_traffic(None, None, START + timedelta(hours=1), 1)  # outside the Marketplace
    search = searcher(amplify)
    body: dict[str, Any] = {
        "version": "0.2",
        "filters": {"$match": {"type": ["transactionSummary"]}},
        "invoke": {"method": "min", "field": "@event_time"},
    }
    marketplace = {"$exists": {"transactionSummary.consumerDetails.subscription.id": True}}

    oldest = search(body).json()[0]["result"]
    oldest_billable = search({**body, "filters": {"$and": [body["filters"], marketplace]}}).json()[0]["result"]
    none = search({**body, "filters": {"$match": {"type": ["transactionEvent"]}}}).json()[0]["result"]

    assert oldest == START_MS + 3_600_000
    assert oldest_billable == START_MS + 3 * 3_600_000
    assert none is None
    grouped = search({**lexus([], ["transactionSummary.quota.id"]), "invoke": body["invoke"]})
    assert grouped.status_code == 400


def test_a_forbidden_area_is_403_in_its_services_shape_and_the_rest_still_answers(
    amplify: AmplifyEmulator, waits: Waits
) -> None:
    seed_catalog(amplify)
    amplify.add_team({"guid": "team-1", "name": "Blue", "org_guid": "org-guid"})
    amplify.forbidden["traceability"] = "the service account lacks the Engage Admin role"
    amplify.forbidden["consumers"] = "no access to users of other organizations"
    clients = clients_for(amplify, waits)

    with pytest.raises(AuthError, match="HTTP 403: Forbidden: the service account lacks the Engage Admin role"):
        clients.traceability.total_count(START, START + timedelta(hours=1))
    with pytest.raises(AuthError, match="no access to users of other organizations"):
        clients.platform.get_user("user-1")
    assert clients.platform.get_team("team-1")["name"] == "Blue"
    assert len(clients.resources.list("products")) == 8


def test_subscription_invoices_live_under_their_subscription_and_list_across_all(
    amplify: AmplifyEmulator, waits: Waits
) -> None:
    amplify.put_resource({"kind": "ProductPlan", "name": "gold", "spec": {"product": "weather", "type": "paid"}})
    amplify.put_resource(subscription("s1", "gold", approval="approved"))
    invoice = {
        "kind": "SubscriptionInvoice",
        "name": "8ac9" * 8,
        "metadata": {"scope": {"kind": "Subscription", "name": "s1"}},
        "spec": {
            "quotas": [
                {"name": "calls", "units": 12, "intervals": [{"from": "2026-03-01T00:00:00.000+0000", "units": 12}]}
            ]
        },
        "state": {"name": "draft"},
    }
    stored = amplify.put_resource(invoice)
    resources = clients_for(amplify, waits).resources

    assert stored["metadata"]["selfLink"] == f"/catalog/v1/subscriptions/s1/subscriptioninvoices/{'8ac9' * 8}"
    assert [i["name"] for i in resources.list("subscriptioninvoices")] == ["8ac9" * 8]
    assert [i["name"] for i in resources.list("subscriptioninvoices", scope="subscriptions/s1")] == ["8ac9" * 8]
    with pytest.raises(ValueError, match="does not exist; put it first"):
        amplify.put_resource({**invoice, "metadata": {"scope": {"kind": "Subscription", "name": "nope"}}})
