"""``amplify.api_version: auto``: each catalog kind at the version the tenant serves it, learned once per run.

A 2024 tenant served plans, plan units, subscriptions and invoices only as ``v1alpha1`` (reference §9.2), so the
choice is per kind: ``v1`` first, ``v1alpha1`` when ``v1`` answers 404. An unscoped listing is its own probe.
"""

from __future__ import annotations

import pytest
import responses
from responses import matchers

from amplify_billing.errors import ExitCode, UpstreamError
from tests.amplify.test_amplify_adapters import CENTRAL, FakeTime, add_token, api_calls, build, fake, mock, resource

__all__ = ["fake", "mock"]  # the fixtures, used by name

V1 = f"{CENTRAL}/apis/catalog/v1"
ALPHA = f"{CENTRAL}/apis/catalog/v1alpha1"
NOT_FOUND = {"errors": [{"status": 404, "title": "Not Found", "detail": "not found"}]}


def test_auto_lists_at_v1_with_no_extra_request_when_v1_answers(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.get(f"{V1}/productplans", json=[{"name": "gold"}])
    mock.get(f"{V1}/productplans/gold", json=resource("gold"))
    resources = build(fake, api_version="auto").resources

    assert resources.list("productplans") == [{"name": "gold"}]
    assert resources.get("productplans", "gold") == resource("gold")

    assert [c.request.url.split("?")[0] for c in api_calls(mock)] == [f"{V1}/productplans", f"{V1}/productplans/gold"]
    assert resources.versions.choices()["productplans"].how == "v1: served"


def test_auto_falls_back_to_v1alpha1_per_kind_and_remembers_it(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.get(f"{V1}/products", json=[{"name": "weather"}])
    mock.get(f"{V1}/subscriptions", status=404, json=NOT_FOUND)
    mock.get(f"{ALPHA}/subscriptions", json=[{"name": "s1"}])
    resources = build(fake, api_version="auto").resources

    assert resources.list("products") == [{"name": "weather"}]
    assert resources.list("subscriptions") == [{"name": "s1"}]
    assert resources.list("subscriptions") == [{"name": "s1"}]  # the second listing asks v1alpha1 at once

    urls = [c.request.url.split("?")[0] for c in api_calls(mock)]
    assert urls == [f"{V1}/products", f"{V1}/subscriptions", f"{ALPHA}/subscriptions", f"{ALPHA}/subscriptions"]
    choices = resources.versions.choices()
    assert (choices["products"].version, choices["subscriptions"].version) == ("v1", "v1alpha1")
    assert choices["subscriptions"].how == "v1: HTTP 404; v1alpha1: served"


def test_a_read_of_a_kind_not_listed_yet_probes_once_with_a_one_item_page(
    fake: FakeTime, mock: responses.RequestsMock
) -> None:
    add_token(mock)
    mock.get(f"{V1}/quotas", status=404, json=NOT_FOUND, match=[matchers.query_param_matcher({"pageSize": "1"})])
    mock.get(f"{ALPHA}/quotas", json=[], match=[matchers.query_param_matcher({"pageSize": "1"})])
    mock.get(f"{ALPHA}/productplans/gold/quotas", json=[{"name": "q1"}])
    mock.get(f"{ALPHA}/productplans/gold/quotas/q1", json={"name": "q1"})
    resources = build(fake, api_version="auto").resources

    assert resources.list("quotas", scope="productplans/gold") == [{"name": "q1"}]
    assert resources.get("quotas", "q1", scope="productplans/gold") == {"name": "q1"}

    assert len(api_calls(mock)) == 4  # two probes, then each read once


def test_a_kind_served_at_neither_version_is_an_upstream_error_not_a_deletion(
    fake: FakeTime, mock: responses.RequestsMock
) -> None:
    add_token(mock)
    mock.get(f"{V1}/subscriptioninvoices", status=404, json=NOT_FOUND)
    mock.get(f"{ALPHA}/subscriptioninvoices", status=404, json=NOT_FOUND)

    with pytest.raises(UpstreamError) as caught:
        build(fake, api_version="auto").resources.list("subscriptioninvoices")

    assert str(caught.value) == (
        "Amplify serves subscriptioninvoices at neither catalog/v1 nor catalog/v1alpha1 (HTTP 404 at both); check "
        "amplify.central_url and that the tenant has the Marketplace, or set amplify.api_version"
    )
    assert caught.value.exit_code == ExitCode.UPSTREAM


def test_a_configured_version_is_used_as_it_is_without_a_probe(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.get(f"{ALPHA}/productplans/gold", json=resource("gold"))

    resources = build(fake, api_version="v1alpha1").resources

    assert resources.get("productplans", "gold") == resource("gold")
    assert len(api_calls(mock)) == 1
    assert resources.versions.choices() == {}
