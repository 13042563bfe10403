"""The Amplify emulator, driven by the production Amplify clients over loopback HTTP.

Every test talks to a real ``AmplifyEmulator`` on 127.0.0.1 through ``AmplifyClients`` (or ``requests``
where the exact wire answer is the point). Waits are recorded by a fake sleep, never slept.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from amplify_billing.amplify.clients import AmplifyClients
from amplify_billing.amplify.parse import parse_subscription
from amplify_billing.errors import ApiRejectedError, AuthError, NotFoundError
from amplify_billing.models import AmplifySubscription
from amplify_billing.sandbox.amplify_emulator import AmplifyEmulator, format_timestamp
from amplify_billing.sandbox.amplify_rsql import RsqlError, compile_query
from amplify_billing.sandbox.clock import VirtualClock
from amplify_billing.settings import AmplifySettings, Secret

CLIENT_ID = "sa-sandbox_6d66dc36"
SECRET = "emulator-test-secret"
TENANT = "100000000000042"
NOW = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
TOKEN_PATH = "/auth/realms/Broker/protocol/openid-connect/token"


class Waits:
    """A fake sleep that records the waits and moves an optional fake monotonic clock along."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.mono = 1000.0

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.mono += seconds

    def monotonic(self) -> float:
        return self.mono


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(NOW)


@pytest.fixture
def waits() -> Waits:
    return Waits()


def start_emulator(clock: Callable[[], datetime], **kwargs: Any) -> AmplifyEmulator:
    emulator = AmplifyEmulator(client_id=CLIENT_ID, client_secret=SECRET, tenant_id=TENANT, clock=clock, **kwargs)
    emulator.start()
    return emulator


def stop_soon(emulator: AmplifyEmulator) -> None:
    """Stop in the background: the server loop notices a shutdown only at its 0.5 s poll, per test."""
    threading.Thread(target=emulator.stop, name="stop-amplify-emulator", daemon=True).start()


@pytest.fixture
def amplify(clock: VirtualClock) -> Iterator[AmplifyEmulator]:
    emulator = start_emulator(clock)
    try:
        yield emulator
    finally:
        stop_soon(emulator)


def settings_for(emulator: AmplifyEmulator, **overrides: Any) -> AmplifySettings:
    values: dict[str, Any] = {
        "central_url": emulator.url,
        "auth_url": f"{emulator.url}/auth",
        "platform_url": emulator.url,
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": Secret(SECRET),
        "page_size": 3,
        "rate_limit_per_minute": 100_000,
        "timeout_seconds": 5,
    }
    values.update(overrides)
    return AmplifySettings(**values)


def clients_for(emulator: AmplifyEmulator, waits: Waits, **overrides: Any) -> AmplifyClients:
    return AmplifyClients.build(settings_for(emulator, **overrides), sleep=waits.sleep)


def token(emulator: AmplifyEmulator) -> str:
    answer = requests.post(
        emulator.url + TOKEN_PATH, data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, SECRET), timeout=5
    )
    assert answer.status_code == 200
    return str(answer.json()["access_token"])


def api_headers(emulator: AmplifyEmulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(emulator)}", "X-Axway-Tenant-Id": TENANT}


def product(name: str, billing: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "Product",
        "name": name,
        "title": name.title(),
        "attributes": {"billingSystem": billing} if billing else {},
        "spec": {"description": name},
        "state": "active",
        **extra,
    }


def plan(name: str, product_name: str = "weather") -> dict[str, Any]:
    return {
        "kind": "ProductPlan",
        "name": name,
        "title": name.title(),
        "spec": {
            "product": product_name,
            "type": "paid",
            "billing": {"currency": "USD", "price": 10.0, "interval": "monthly"},
        },
        "state": "active",
    }


def quota(name: str, plan_name: str) -> dict[str, Any]:
    return {
        "kind": "Quota",
        "name": name,
        "metadata": {"scope": {"kind": "ProductPlan", "name": plan_name}},
        "spec": {"unit": "transactions", "pricing": {"type": "perUnit", "cost": 0.0025}},
    }


def subscription(name: str, plan_name: str, approval: str = "pending") -> dict[str, Any]:
    return {
        "kind": "Subscription",
        "name": name,
        "owner": {"type": "team", "id": "team-1", "organization": {"id": "42"}},
        "spec": {"product": "weather", "plan": {"name": plan_name}},
        "approval": {"state": approval},
        "marketplace": {"name": "m-1", "resource": {"owner": {"type": "team", "id": "team-1"}}},
    }


def seed_catalog(emulator: AmplifyEmulator) -> None:
    for index in range(7):
        emulator.put_resource(product(f"p{index}", "recurly" if index % 2 == 0 else "stripe"))
    emulator.put_resource(product("weather", "recurly"))
    for name in ("gold", "silver", "bronze", "iron"):
        emulator.put_resource(plan(name))
    emulator.put_resource(plan("other", "p1"))
    for plan_name, count in (("gold", 4), ("silver", 2), ("other", 1)):
        for index in range(count):
            emulator.put_resource(quota(f"q{index}", plan_name))
    emulator.put_resource({"kind": "ProductPlanUnit", "name": "transactions", "title": "Transactions"})
    for index in range(8):
        emulator.put_resource(subscription(f"s{index}", ("gold", "silver", "other")[index % 3]))


# ---- seeding --------------------------------------------------------------------------------------------
def test_put_resource_fills_what_the_server_would(amplify: AmplifyEmulator, clock: VirtualClock) -> None:
    amplify.put_resource(plan("gold"))
    clock.advance(timedelta(minutes=5))

    stored = amplify.put_resource(quota("calls", "gold"))

    gold = amplify.resource("ProductPlan", "gold")
    metadata = stored["metadata"]
    assert len(metadata["id"]) == 32 and int(metadata["id"], 16) >= 0
    assert metadata["selfLink"] == "/catalog/v1/productplans/gold/quotas/calls"
    assert metadata["scope"] == {
        "id": gold["metadata"]["id"],
        "kind": "ProductPlan",
        "name": "gold",
        "selfLink": "/catalog/v1/productplans/gold",
    }
    assert int(metadata["resourceVersion"]) > int(gold["metadata"]["resourceVersion"])
    assert (
        metadata["audit"]["createTimestamp"] == metadata["audit"]["modifyTimestamp"] == "2026-03-08T12:05:00.000+0000"
    )
    assert (stored["group"], stored["apiVersion"], stored["kind"], stored["title"]) == (
        "catalog",
        "v1",
        "Quota",
        "calls",
    )
    assert amplify.resource("Quota", "calls", scope="gold") == stored
    stored["title"] = "changed"  # a copy: the emulator's state does not move with it
    assert amplify.resource("Quota", "calls", scope="gold")["title"] == "calls"


def test_put_resource_keeps_given_ids_and_timestamps_and_refuses_what_it_cannot_store(
    amplify: AmplifyEmulator, clock: VirtualClock
) -> None:
    given = {
        **plan("gold"),
        "metadata": {
            "id": "8ac98ee28ea29652018eaee2253601ac",
            "audit": {"createTimestamp": "2026-01-01T00:00:00.000+0000"},
        },
    }
    stored = amplify.put_resource(given)
    assert stored["metadata"]["id"] == "8ac98ee28ea29652018eaee2253601ac"
    assert stored["metadata"]["audit"]["createTimestamp"] == "2026-01-01T00:00:00.000+0000"

    clock.advance(timedelta(hours=2))
    replaced = amplify.put_resource({**stored, "title": "Gold II"})
    assert replaced["metadata"]["id"] == stored["metadata"]["id"]
    assert replaced["metadata"]["audit"]["createTimestamp"] == "2026-01-01T00:00:00.000+0000"
    assert replaced["metadata"]["audit"]["modifyTimestamp"] == "2026-03-08T14:00:00.000+0000"
    assert replaced["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"]

    with pytest.raises(ValueError, match=r"a Quota needs metadata\.scope\.name"):
        amplify.put_resource({"kind": "Quota", "name": "q", "spec": {}})
    with pytest.raises(ValueError, match="ProductPlan 'nope' does not exist; put it first"):
        amplify.put_resource(quota("q", "nope"))
    with pytest.raises(ValueError, match="unknown kind 'Widget'"):
        amplify.put_resource({"kind": "Widget", "name": "w"})
    with pytest.raises(ValueError, match="must be JSON data"):
        amplify.put_resource({**plan("x"), "spec": {"when": NOW}})
    with pytest.raises(KeyError, match="no Quota 'calls' in 'gold'"):
        amplify.resource("Quota", "calls", scope="gold")


# ---- listing ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("plural", "kind", "expected_pages"),
    [
        ("products", "Product", 3),
        ("productplans", "ProductPlan", 2),
        ("productplanunits", "ProductPlanUnit", 1),
        ("quotas", "Quota", 3),
        ("subscriptions", "Subscription", 3),
    ],
)
def test_the_resource_client_lists_every_kind_across_pages(
    amplify: AmplifyEmulator, waits: Waits, plural: str, kind: str, expected_pages: int
) -> None:
    seed_catalog(amplify)

    listed = clients_for(amplify, waits).resources.list(plural)

    assert [r["metadata"]["id"] for r in listed] == [r["metadata"]["id"] for r in amplify.resources(kind)]
    pages = [r for r in amplify.requests if r.route == f"list_{plural}"]
    assert [r.query.get("page") for r in pages] == [["1"]] + [[str(n)] for n in range(2, expected_pages + 1)]
    assert all(r.status == 200 for r in pages)


def test_a_page_carries_the_next_link_and_the_total_count(amplify: AmplifyEmulator) -> None:
    seed_catalog(amplify)
    headers = api_headers(amplify)
    query = 'attributes.billingSystem=="recurly"'

    first = requests.get(
        f"{amplify.url}/apis/catalog/v1/products", params={"query": query, "pageSize": "2"}, headers=headers, timeout=5
    )
    last = requests.get(
        f"{amplify.url}/apis/catalog/v1/products",
        params={"query": query, "pageSize": "2", "page": "3"},
        headers=headers,
        timeout=5,
    )

    assert [p["name"] for p in first.json()] == ["p0", "p2"]
    assert first.headers["X-Axway-Total-Count"] == "5"
    assert first.headers["Link"] == (
        '</apis/catalog/v1/products?query=attributes.billingSystem%3D%3D%22recurly%22&pageSize=2&page=2>; rel="next"'
    )
    assert [p["name"] for p in last.json()] == ["weather"]
    assert "Link" not in last.headers
    head = requests.head(f"{amplify.url}/apis/catalog/v1/products", params={"query": query}, headers=headers, timeout=5)
    assert (head.status_code, head.headers["X-Axway-Total-Count"], head.content) == (200, "5", b"")


def test_page_size_is_clamped_to_100(amplify: AmplifyEmulator) -> None:
    for index in range(130):
        amplify.put_resource({"kind": "ProductPlanUnit", "name": f"x-unit-{index:03d}"})

    answer = requests.get(
        f"{amplify.url}/apis/catalog/v1/productplanunits",
        params={"pageSize": 500},
        headers=api_headers(amplify),
        timeout=5,
    )

    assert len(answer.json()) == 100
    assert answer.links["next"]["url"] == "/apis/catalog/v1/productplanunits?pageSize=100&page=2"


def test_the_tools_rsql_filters_select_on_the_server(amplify: AmplifyEmulator, waits: Waits) -> None:
    seed_catalog(amplify)
    resources = clients_for(amplify, waits).resources

    products = resources.list("products", query='attributes.billingSystem=="recurly"')
    plans = resources.list("productplans", query='spec.product=in=("weather","p0")')
    quotas = resources.list("quotas", query='scopeResource.name=in=("gold","other")')
    subscriptions = resources.list("subscriptions", query='spec.plan.name=in=("silver")')

    assert [p["name"] for p in products] == ["p0", "p2", "p4", "p6", "weather"]
    assert [p["name"] for p in plans] == ["gold", "silver", "bronze", "iron"]
    assert [(q["metadata"]["scope"]["name"], q["name"]) for q in quotas] == [
        ("gold", "q0"),
        ("gold", "q1"),
        ("gold", "q2"),
        ("gold", "q3"),
        ("other", "q0"),
    ]
    assert [s["name"] for s in subscriptions] == ["s1", "s4", "s7"]


def test_a_scoped_listing_holds_one_plans_quotas_and_an_unknown_scope_is_404(
    amplify: AmplifyEmulator, waits: Waits
) -> None:
    seed_catalog(amplify)
    resources = clients_for(amplify, waits).resources

    silver = resources.list("quotas", scope="productplans/silver")
    one = resources.get("quotas", "q1", scope="productplans/gold")

    assert [(q["metadata"]["scope"]["name"], q["name"]) for q in silver] == [("silver", "q0"), ("silver", "q1")]
    assert one["metadata"]["selfLink"] == "/catalog/v1/productplans/gold/quotas/q1"
    with pytest.raises(NotFoundError) as caught:
        resources.list("quotas", scope="productplans/nope")
    assert str(caught.value) == (
        f"Amplify has no {amplify.url}/apis/catalog/v1/productplans/nope/quotas "
        '(HTTP 404: Not Found: productplans "nope" not found)'
    )


def test_an_unsupported_query_is_a_400_with_an_amplify_error_body(amplify: AmplifyEmulator, waits: Waits) -> None:
    seed_catalog(amplify)
    resources = clients_for(amplify, waits).resources

    with pytest.raises(ApiRejectedError) as caught:
        resources.list("products", query="(name==p0,name==p1);title==x")

    assert caught.value.status == 400
    assert "parenthesised groups are not supported by the emulator" in str(caught.value)
    answer = requests.get(
        f"{amplify.url}/apis/catalog/v1/products",
        params={"query": "metadata.audit.createTimestamp>1"},
        headers=api_headers(amplify),
        timeout=5,
    )
    assert answer.status_code == 400
    (error,) = answer.json()["errors"]
    assert (error["status"], error["title"]) == (400, "Bad Request")
    assert error["detail"].startswith("invalid query 'metadata.audit.createTimestamp>1': operator '>'")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('name=="P0"', {"p0"}),  # == is case-insensitive
        ("name==p*", {"p0", "p1"}),
        ("name==p_", {"p0", "p1"}),
        ("name!=p0", {"p1", "weather"}),
        ("name==p0,name==weather", {"p0", "weather"}),
        ("name==p*;attributes.billingSystem==recurly", {"p0"}),
        ("name==weather,name==p*;attributes.billingSystem==recurly", {"p0", "weather"}),  # ; binds tighter
        ("tags==beta", {"p1"}),  # a list matches when an element does
        ("attributes.missing!=x", {"p0", "p1", "weather"}),
        ("name=out=(p0,weather)", {"p1"}),
        ("name=in=('p1', \"WEATHER\")", {"p1", "weather"}),
    ],
)
def test_rsql_subset_semantics(query: str, expected: set[str]) -> None:
    resources = [
        {"name": "p0", "attributes": {"billingSystem": "recurly"}, "tags": []},
        {"name": "p1", "attributes": {"billingSystem": "stripe"}, "tags": ["alpha", "beta"]},
        {"name": "weather", "attributes": {"billingSystem": "recurly"}, "tags": []},
    ]
    predicate = compile_query(query)
    assert {r["name"] for r in resources if predicate(r)} == expected


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("", "the query is empty"),
        ("name==a;;title==b", "empty comparison"),
        ("name===a", "operator '===' in 'name===a' is not supported"),
        ("name=with=a", "operator '=with=' in 'name=with=a' is not supported"),
        ("name==a b", "must be quoted"),
        ('name=="a', "unterminated"),
        ("name=in=a", "=in= needs a parenthesised list"),
        ("==a", "expected a field name"),
        # not a listed query field (reference §9.2): the scoped list or scopeResource.name instead
        ('metadata.scope.name=in=("gold")', "'metadata.scope.name' is not a query field; filter on scopeResource"),
    ],
)
def test_rsql_refuses_what_it_does_not_evaluate(query: str, why: str) -> None:
    with pytest.raises(RsqlError, match=why):
        compile_query(query)


def test_v1alpha1_is_an_alias_with_its_own_self_links(amplify: AmplifyEmulator, waits: Waits) -> None:
    seed_catalog(amplify)
    resources = clients_for(amplify, waits, api_version="v1alpha1").resources

    quotas = resources.list("quotas", scope="productplans/silver")
    updated = resources.update_attributes(quotas[0], {"recurlyAddOnCode": "amplify-x"})

    assert quotas[0]["apiVersion"] == "v1alpha1"
    assert quotas[0]["metadata"]["selfLink"] == "/catalog/v1alpha1/productplans/silver/quotas/q0"
    assert quotas[0]["metadata"]["scope"]["selfLink"] == "/catalog/v1alpha1/productplans/silver"
    assert updated["attributes"] == {"recurlyAddOnCode": "amplify-x"}
    assert (
        amplify.resource("Quota", "q0", "silver")["metadata"]["selfLink"] == "/catalog/v1/productplans/silver/quotas/q0"
    )
    assert [r.path for r in amplify.requests if r.method == "PUT"] == [
        "/apis/catalog/v1alpha1/productplans/silver/quotas/q0"
    ]


# ---- writing -----------------------------------------------------------------------------------------------
def test_update_attributes_writes_back_and_changes_the_resource_version(
    amplify: AmplifyEmulator, waits: Waits, clock: VirtualClock
) -> None:
    seed_catalog(amplify)
    resources = clients_for(amplify, waits).resources
    (gold,) = resources.list("productplans", query="name==gold")
    clock.advance(timedelta(hours=1))

    updated = resources.update_attributes(gold, {"recurlyPlanCode": "amplify-abc"})

    stored = amplify.resource("ProductPlan", "gold")
    assert updated == stored
    assert stored["attributes"] == {"recurlyPlanCode": "amplify-abc"}
    assert stored["spec"] == gold["spec"] and stored["state"] == "active"
    assert stored["metadata"]["resourceVersion"] != gold["metadata"]["resourceVersion"]
    assert stored["metadata"]["audit"]["modifyTimestamp"] == "2026-03-08T13:00:00.000+0000"
    assert stored["metadata"]["audit"]["createTimestamp"] == gold["metadata"]["audit"]["createTimestamp"]
    # a second call with the same value spends no request
    resources.update_attributes(updated, {"recurlyPlanCode": "amplify-abc"})
    assert amplify.count("PUT") == 1


def test_a_stale_resource_version_is_428_and_the_adapter_rereads_and_retries(
    amplify: AmplifyEmulator, waits: Waits
) -> None:
    seed_catalog(amplify)
    resources = clients_for(amplify, waits).resources
    (listed,) = resources.list("subscriptions", query="name==s0")
    amplify.set_subscription_state("s0", "active")  # someone else wrote since we listed

    updated = resources.update_attributes(listed, {"recurlyAccountCode": "amplify-team-team-1"})

    writes = [(r.route, r.status) for r in amplify.requests if r.route.endswith("_subscription")]
    assert writes == [("put_subscription", 428), ("get_subscription", 200), ("put_subscription", 200)]
    assert updated["attributes"] == {"recurlyAccountCode": "amplify-team-team-1"}
    assert updated["state"]["name"] == "active"  # the other writer's change survived


def test_put_checks_the_version_and_ignores_subresources(amplify: AmplifyEmulator) -> None:
    seed_catalog(amplify)
    headers = api_headers(amplify)
    url = f"{amplify.url}/apis/catalog/v1/subscriptions/s0"
    current = amplify.resource("Subscription", "s0")

    stale = requests.put(
        url, json={**current, "metadata": {**current["metadata"], "resourceVersion": "1"}}, headers=headers, timeout=5
    )
    forced = requests.put(
        url,
        json={"name": "s0", "spec": current["spec"], "approval": {"state": "approved"}, "attributes": {"a": "b"}},
        headers=headers,
        timeout=5,
    )
    renamed = requests.put(url, json={**current, "name": "other"}, headers=headers, timeout=5)
    not_strings = requests.put(url, json={"spec": current["spec"], "attributes": {"n": 1}}, headers=headers, timeout=5)

    assert stale.status_code == 428
    assert stale.json()["errors"][0]["title"] == "Precondition Required"
    assert stale.json()["errors"][0]["detail"].startswith("metadata.resourceVersion 1 is stale")
    assert forced.status_code == 200  # no resourceVersion: overwrite
    stored = amplify.resource("Subscription", "s0")
    assert stored["approval"] == {"state": "pending"}  # a subresource is not written by the main PUT
    assert stored["attributes"] == {"a": "b"}
    assert "owner" not in stored  # a full-body PUT replaces owner; this body had none
    assert renamed.status_code == 400 and "names are immutable" in renamed.json()["errors"][0]["detail"]
    assert not_strings.status_code == 400
    assert not_strings.json()["errors"][0]["detail"] == "attributes must be an object of string values"


def test_approving_a_pending_subscription_activates_it(
    amplify: AmplifyEmulator, waits: Waits, clock: VirtualClock
) -> None:
    seed_catalog(amplify)
    resources = clients_for(amplify, waits).resources
    (pending,) = resources.list("subscriptions", query="name==s0")
    clock.advance(timedelta(minutes=30))

    answer = resources.put_subresource(pending, "approval", {"state": "approved", "reason": "billing is in place"})

    stored = amplify.resource("Subscription", "s0")
    assert answer == stored
    assert stored["approval"] == {
        "state": "approved",
        "reason": "billing is in place",
        "userId": amplify.service_user_id,
        "previousState": "pending",
    }
    assert stored["state"] == {"name": "active", "when": {"timestamp": "2026-03-08T12:30:00.000+0000"}}
    assert stored["metadata"]["resourceVersion"] != pending["metadata"]["resourceVersion"]
    assert [r.route for r in amplify.requests if r.method == "PUT"] == ["put_subscription_approval"]
    parsed = parse_subscription(stored)
    assert isinstance(parsed, AmplifySubscription)
    assert (parsed.approval_state, parsed.state_name) == ("approved", "active")


def test_a_rejection_leaves_no_state_and_a_bad_approval_is_400(amplify: AmplifyEmulator) -> None:
    seed_catalog(amplify)
    headers = api_headers(amplify)
    url = f"{amplify.url}/apis/catalog/v1/subscriptions/s1/approval"

    rejected = requests.put(url, json={"approval": {"state": "rejected", "reason": "no"}}, headers=headers, timeout=5)
    unknown = requests.put(url, json={"approval": {"state": "maybe"}}, headers=headers, timeout=5)
    unwrapped = requests.put(url, json={"state": "approved"}, headers=headers, timeout=5)

    assert rejected.status_code == 200 and "state" not in rejected.json()
    assert rejected.json()["approval"]["state"] == "rejected"
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["detail"] == "approval.state must be one of pending, approved, rejected"
    assert (
        unwrapped.status_code == 400 and unwrapped.json()["errors"][0]["detail"] == 'the body must be {"approval": …}'
    )


def test_set_subscription_state_is_a_timestamped_write(amplify: AmplifyEmulator, clock: VirtualClock) -> None:
    seed_catalog(amplify)
    before = amplify.resource("Subscription", "s2")
    clock.advance(timedelta(days=2))

    after = amplify.set_subscription_state("s2", "cancelled", reason="Cancelled by the consumer")

    assert after["state"] == {
        "name": "cancelled",
        "reason": "Cancelled by the consumer",
        "when": {"timestamp": "2026-03-10T12:00:00.000+0000"},
    }
    assert after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
    parsed = parse_subscription(after)
    assert isinstance(parsed, AmplifySubscription)
    assert parsed.state_changed_at == NOW + timedelta(days=2)
    with pytest.raises(KeyError, match="no Subscription 'nope'"):
        amplify.set_subscription_state("nope", "cancelled")


def test_deleting_a_plan_takes_its_quotas(amplify: AmplifyEmulator) -> None:
    seed_catalog(amplify)
    amplify.delete_resource("ProductPlan", "gold")
    assert [q["metadata"]["scope"]["name"] for q in amplify.resources("Quota")] == ["silver", "silver", "other"]
    with pytest.raises(KeyError):
        amplify.resource("ProductPlan", "gold")


# ---- tokens and access ---------------------------------------------------------------------------------------
def test_token_by_client_secret_in_basic_auth_or_form_fields(amplify: AmplifyEmulator, waits: Waits) -> None:
    seed_catalog(amplify)
    clients = clients_for(amplify, waits)

    clients.resources.get("productplans", "gold")
    form = requests.post(
        amplify.url + TOKEN_PATH,
        data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET},
        timeout=5,
    )

    (call,) = [r for r in amplify.requests if r.route == "token"][:1]
    basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    assert call.headers["Authorization"] == f"Basic {basic}"
    assert form.status_code == 200
    body = form.json()
    assert (body["expires_in"], body["token_type"], body["refresh_expires_in"]) == (1800, "bearer", 0)
    assert amplify.tokens_issued == 2


def test_a_wrong_secret_is_an_auth_error_with_keycloaks_answer(amplify: AmplifyEmulator, waits: Waits) -> None:
    clients = AmplifyClients.build(settings_for(amplify, client_secret=Secret("wrong")), sleep=waits.sleep)

    with pytest.raises(AuthError) as caught:
        clients.resources.list("products")

    assert str(caught.value) == (
        "the Axway IdP refused the service-account credentials (HTTP 401: unauthorized_client: "
        "Invalid client secret); check amplify.client_id and amplify.client_secret"
    )
    assert amplify.count(route="list_products") == 0
    unknown = requests.post(
        amplify.url + TOKEN_PATH, data={"grant_type": "client_credentials"}, auth=("someone-else", SECRET), timeout=5
    )
    realm = requests.post(
        amplify.url + "/auth/realms/Other/protocol/openid-connect/token",
        data={"grant_type": "client_credentials"},
        auth=(CLIENT_ID, SECRET),
        timeout=5,
    )
    grant = requests.post(
        amplify.url + TOKEN_PATH, data={"grant_type": "password"}, auth=(CLIENT_ID, SECRET), timeout=5
    )
    assert (unknown.status_code, unknown.json()["error"]) == (401, "invalid_client")
    assert (realm.status_code, realm.json()["error"]) == (404, "Realm does not exist")
    assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")


def _pem_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_token_by_key_pair_jwt_and_a_foreign_key_is_refused(clock: VirtualClock, waits: Waits) -> None:
    private, public = _pem_pair()
    other_private, _ = _pem_pair()
    emulator = start_emulator(clock, public_key_pem=public)
    try:
        emulator.put_resource(product("weather", "recurly"))
        good = AmplifyClients.build(
            settings_for(emulator, client_secret=None, private_key=Secret(private)), sleep=waits.sleep
        )
        bad = AmplifyClients.build(
            settings_for(emulator, client_secret=None, private_key=Secret(other_private)), sleep=waits.sleep
        )

        assert [p["name"] for p in good.resources.list("products")] == ["weather"]
        with pytest.raises(AuthError) as caught:
            bad.resources.list("products")

        (form,) = [r.body for r in emulator.requests if r.route == "token" and r.status == 200]
        assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        assert "client_secret" not in form
        assert "Client authentication with signed JWT failed: Signature verification failed" in str(caught.value)
        assert str(caught.value).endswith(
            "check amplify.client_id and amplify.private_key_file (the key registered for that service account)"
        )
    finally:
        stop_soon(emulator)


def test_api_calls_need_an_issued_token_and_the_right_tenant(amplify: AmplifyEmulator) -> None:
    url = f"{amplify.url}/apis/catalog/v1/products"

    missing = requests.get(url, timeout=5)
    forged = requests.get(url, headers={"Authorization": "Bearer forged"}, timeout=5)
    other_tenant = requests.get(url, headers={**api_headers(amplify), "X-Axway-Tenant-Id": "1"}, timeout=5)
    no_tenant = requests.get(url, headers={"Authorization": api_headers(amplify)["Authorization"]}, timeout=5)
    platform = requests.get(f"{amplify.url}/api/v1/user/u-1", timeout=5)

    assert missing.status_code == forged.status_code == 401
    assert missing.json() == {"errors": [{"status": 401, "title": "Unauthorized", "detail": "missing bearer token"}]}
    assert forged.json()["errors"][0]["detail"] == "invalid or expired access token"
    assert other_tenant.status_code == 403
    assert no_tenant.status_code == 200  # the API server does not require the header from a service account
    assert platform.status_code == 401 and platform.json()["success"] is False


def test_a_revoked_token_is_renewed_once_by_the_adapter(amplify: AmplifyEmulator, waits: Waits) -> None:
    seed_catalog(amplify)
    clients = clients_for(amplify, waits)
    clients.resources.get("productplans", "gold")
    amplify.revoke_tokens()

    assert clients.resources.get("productplans", "gold")["name"] == "gold"
    assert [r.status for r in amplify.requests if r.route == "get_productplan"] == [200, 401, 200]
    assert amplify.tokens_issued == 2


# ---- faults and rate limit -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["503", "empty", "drop_before"])
def test_a_transient_fault_is_retried_by_the_adapter(amplify: AmplifyEmulator, waits: Waits, kind: str) -> None:
    seed_catalog(amplify)
    amplify.inject(kind, route="list_productplans", times=1)  # type: ignore[arg-type]

    plans = clients_for(amplify, waits).resources.list("productplans")

    assert len(plans) == 5
    statuses = [(r.status, r.fault) for r in amplify.requests if r.route == "list_productplans"]
    assert statuses[0] == ({"503": 503, "empty": 500, "drop_before": None}[kind], kind)
    assert all(status == 200 for status, _ in statuses[1:])
    assert len(waits.waits) == 1


def test_fault_bodies_speak_amplifys_error_format(amplify: AmplifyEmulator) -> None:
    amplify.inject("429", route="list_products", times=1)
    answer = requests.get(f"{amplify.url}/apis/catalog/v1/products", headers=api_headers(amplify), timeout=5)
    unknown = requests.get(f"{amplify.url}/apis/catalog/v1/widgets", headers=api_headers(amplify), timeout=5)
    wrong_method = requests.post(f"{amplify.url}/apis/catalog/v1/products", headers=api_headers(amplify), timeout=5)

    assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"
    assert answer.json() == {"errors": [{"status": 429, "title": "Too Many Requests", "detail": "injected fault 429"}]}
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["title"] == "Not Found"
    assert wrong_method.status_code == 405


def test_the_rate_limit_answers_429_with_retry_after_and_the_adapter_waits(clock: VirtualClock, waits: Waits) -> None:
    emulator = start_emulator(clock, rate_limit_per_minute=3, monotonic=waits.monotonic)
    try:
        emulator.put_resource(plan("gold"))
        clients = clients_for(emulator, waits, api_version="v1")  # no version probe: only the GETs counted below
        for _ in range(3):
            clients.resources.get("productplans", "gold")
        waits.mono += 20  # the first three calls are now 20 s old

        clients.resources.get("productplans", "gold")

        assert [r.status for r in emulator.requests if r.route == "get_productplan"] == [200, 200, 200, 429, 200]
        assert waits.waits == [40.0]
    finally:
        stop_soon(emulator)


# ---- platform -------------------------------------------------------------------------------------------------
def test_platform_reads_teams_users_and_orgs(amplify: AmplifyEmulator, waits: Waits) -> None:
    amplify.add_org({"org_id": 42, "guid": "org-guid", "name": "Acme", "users": [{"guid": "u-1", "primary": True}]})
    for index in range(5):
        amplify.add_team(
            {
                "guid": f"t-{index}",
                "name": f"Team {index}",
                "org_guid": "org-guid",
                "users": [{"guid": "u-1", "type": "user", "roles": ["administrator"]}],
            }
        )
    amplify.add_team({"guid": "elsewhere", "name": "Other org", "org_guid": "other"})
    amplify.add_user({"guid": "u-1", "email": "ada@example.test", "firstname": "Ada"})
    platform = clients_for(amplify, waits, page_size=2, tenant_id=TENANT).platform

    assert platform.get_team("t-3")["name"] == "Team 3"
    assert platform.get_user("u-1")["email"] == "ada@example.test"
    assert platform.get_org("42")["name"] == platform.get_org("org-guid")["name"] == "Acme"
    with pytest.raises(NotFoundError, match="User not found"):
        platform.get_user("u-404")
    answer = requests.get(
        f"{amplify.url}/api/v1/team",
        params={"org_id": "42", "limit": "2", "page": "3"},
        headers=api_headers(amplify),
        timeout=5,
    )
    assert answer.json() == {"success": True, "result": [amplify_team(amplify, "t-4")]}


def amplify_team(amplify: AmplifyEmulator, guid: str) -> dict[str, Any]:
    answer = requests.get(f"{amplify.url}/api/v1/team/{guid}", headers=api_headers(amplify), timeout=5)
    result: dict[str, Any] = answer.json()["result"]
    return result


def test_platform_team_listing_pages_until_a_short_page(amplify: AmplifyEmulator, waits: Waits) -> None:
    amplify.add_org({"org_id": int(TENANT), "guid": "provider"})
    for index in range(5):
        amplify.add_team({"guid": f"t-{index}", "name": f"Team {index}", "org_guid": "provider"})

    teams = clients_for(amplify, waits, page_size=2).platform.list_teams()

    assert [t["guid"] for t in teams] == ["t-0", "t-1", "t-2", "t-3", "t-4"]
    assert [r.query["page"] for r in amplify.requests if r.route == "platform_teams"] == [["1"], ["2"], ["3"]]


# ---- traceability ----------------------------------------------------------------------------------------------
START = datetime(2026, 3, 7, tzinfo=UTC)  # a day and a half before NOW: inside Traceability's 7-day retention
START_MS = 1772841600000
SUBSCRIPTION_FIELD = "transactionSummary.consumerDetails.subscription.id"
QUOTA_FIELD = "transactionSummary.quota.id"
HOUR_RANGE = {"$range": {"@event_time": {"gte": START_MS, "lt": START_MS + 3_600_000}}}


def test_traceability_counts_per_subscription_and_quota_in_the_window(amplify: AmplifyEmulator, waits: Waits) -> None:
    amplify.add_traffic("s1", "q1", START, 5)  # at the start: inside
    amplify.add_traffic("s1", "q1", START + timedelta(minutes=59, seconds=59), 2)
    amplify.add_traffic("s1", "q1", START + timedelta(minutes=10), 1)  # out of order: still counted
    amplify.add_traffic("s1", "q1", START + timedelta(minutes=10), 1)  # same instant: merged
    amplify.add_traffic("s1", "q1", START + timedelta(minutes=20), 3, status="Failure")
    amplify.add_traffic("s1", "q2", START + timedelta(hours=1), 7)  # at the end: outside
    amplify.add_traffic("s2", "q1", START - timedelta(milliseconds=1), 9)  # before: outside
    amplify.add_traffic_series("s2", "q1", START, 900, [1, 0, 2, 4, 8])  # every 15 min; the last one is at the end
    traceability = clients_for(amplify, waits).traceability
    hour = (START, START + timedelta(hours=1))

    everything = traceability.grouped_count(*hour, limit=1000).counts
    succeeded = traceability.grouped_count(*hour, limit=1000, statuses=["Success"]).counts

    assert everything == {("s1", "q1"): 12, ("s2", "q1"): 7}
    assert succeeded == {("s1", "q1"): 9, ("s2", "q1"): 7}
    assert traceability.total_count(*hour) == 19 and traceability.total_count(*hour, statuses=["Success"]) == 16
    assert traceability.total_count(*hour, subscriptions=["s2", "s3"]) == 7
    assert amplify.traffic(*hour) == everything and amplify.traffic(*hour, ["Success"]) == succeeded
    assert amplify.traffic(START, START + timedelta(hours=2)) == {("s1", "q1"): 12, ("s1", "q2"): 7, ("s2", "q1"): 15}
    searches = [r for r in amplify.requests if r.route == "traceability_search"]
    assert len(searches) == 5 and all(r.headers["X-Axway-Tenant-Id"] == TENANT for r in searches)


def lexus(filters: list[dict[str, Any]], group_by: list[str], limit: int | None = None) -> dict[str, Any]:
    params = {} if limit is None else {"params": {"limit": limit}}
    return {
        "version": "0.2",
        "filters": {"$and": filters},
        "group_by": [{"field": f, "type": "string", **params} for f in group_by],
        "invoke": {"method": "count", "field": "transactionId"},
    }


def searcher(amplify: AmplifyEmulator) -> Callable[..., requests.Response]:
    url = f"{amplify.url}/api/traceability/v1/traceability/search"
    headers = api_headers(amplify)

    def search(body: dict[str, Any], **extra: Any) -> requests.Response:
        return requests.post(url, json=body, headers={**headers, **extra}, timeout=5)

    return search


def test_traceability_answers_lexus_shapes_and_refuses_the_rest(amplify: AmplifyEmulator) -> None:
    amplify.add_traffic("s1", "q1", START, 5)
    amplify.add_traffic("s1", "q2", START, 2)
    amplify.add_traffic("s2", "q1", START, 1, status="Failure")
    search = searcher(amplify)
    sub, quota_field = SUBSCRIPTION_FIELD, QUOTA_FIELD
    in_window = {"$range": {"@event_time": {"gte": START_MS, "lte": START_MS}}}

    by_subscription = search(lexus([in_window], [sub])).json()
    by_quota_then_subscription = search(lexus([in_window], [quota_field, sub])).json()
    total = search(lexus([in_window, {"$match": {"type": ["transactionSummary"]}}], [])).json()
    events = search(lexus([{"$match": {"type": ["transactionEvent"]}}], [sub])).json()
    one_subscription = search(lexus([{"$match": {sub: ["s1"]}}], [sub, quota_field])).json()

    assert by_subscription[0]["result"] == {"s1": 7, "s2": 1}
    assert by_subscription[0]["version"] == "0.2" and len(by_subscription[0]["id"]) == 32
    assert by_quota_then_subscription[0]["result"] == {"q1": {"s1": 5, "s2": 1}, "q2": {"s1": 2}}
    assert total[0]["result"] == 8
    assert events[0]["result"] == {}
    assert one_subscription[0]["result"] == {"s1": {"q1": 5, "q2": 2}}
    refused = {
        "prefix": search(lexus([{"$prefix": {sub: "s"}}], [sub])),
        "field": search(lexus([{"$match": {"transactionSummary.proxy.id": ["p"]}}], [sub])),
        "group": search(lexus([], ["transactionSummary.status"])),
        "method": search({**lexus([], [sub]), "invoke": {"method": "sum", "field": "duration"}}),
        "range": search(lexus([{"$range": {"@event_time": {"gte": "yesterday"}}}], [sub])),
        "limit": search(lexus([], [sub], limit=0)),
        "exists": search(lexus([{"$exists": {"transactionSummary.proxy.id": True}}], [sub])),
        "tenant": requests.post(
            f"{amplify.url}/api/traceability/v1/traceability/search",
            json=lexus([], [sub]),
            headers={"Authorization": api_headers(amplify)["Authorization"]},
            timeout=5,
        ),
    }
    assert {k: r.status_code for k, r in refused.items()} == dict.fromkeys(refused, 400)
    assert refused["tenant"].json()["errors"][0]["detail"] == "the X-Axway-Tenant-Id header is required"
    assert refused["prefix"].json()["errors"][0]["detail"] == (
        "Lexus operator '$prefix' is not supported by the emulator: $and, $exists, $match, $range"
    )
    assert refused["limit"].json()["errors"][0]["detail"] == (
        "group_by params.limit must be a whole number of at least 1, got 0"
    )


def seed_subscribers(amplify: AmplifyEmulator, count: int, at: datetime = START) -> dict[tuple[str, str], int]:
    """``count`` subscriptions with traffic, s000 the busiest: s{i} has count - i calls on q1 (and s000 one on q2)."""
    traffic = {(f"s{i:03d}", "q1"): count - i for i in range(count)}
    traffic[("s000", "q2")] = 1
    for (subscription_id, quota_id), calls in traffic.items():
        amplify.add_traffic(subscription_id, quota_id, at, calls)
    return traffic


def test_a_grouping_returns_100_terms_unless_told_otherwise_and_no_more_than_asked(amplify: AmplifyEmulator) -> None:
    # Lexus 0.2 schema: group_by params.limit, "Limits on the amount of terms being returned", default 100
    traffic = seed_subscribers(amplify, 150)
    amplify.add_traffic("a-tie", "q1", START, 51)  # ties with s099 (51 calls): the smaller key wins
    search = searcher(amplify)

    default = search(lexus([HOUR_RANGE], [SUBSCRIPTION_FIELD, QUOTA_FIELD])).json()[0]["result"]
    asked = search(lexus([HOUR_RANGE], [SUBSCRIPTION_FIELD, QUOTA_FIELD], limit=1000)).json()[0]["result"]
    one_quota = search(lexus([HOUR_RANGE], [SUBSCRIPTION_FIELD, QUOTA_FIELD], limit=2)).json()[0]["result"]
    one_term = {**lexus([HOUR_RANGE], [SUBSCRIPTION_FIELD, QUOTA_FIELD])}
    one_term["group_by"] = [
        {**one_term["group_by"][0], "params": {"limit": 3}},
        {**one_term["group_by"][1], "params": {"limit": 1}},
    ]
    largest_quota = search(one_term).json()[0]["result"]

    assert len(default) == 100, "silently cut at the default 100 terms"
    assert list(default)[:3] == ["s000", "s001", "s002"] and "a-tie" in default and "s099" not in default
    assert default["s000"] == {"q1": 150, "q2": 1}
    assert len(asked) == 151 and sum(n for q in asked.values() for n in q.values()) == sum(traffic.values()) + 51
    assert list(one_quota) == ["s000", "s001"]
    assert largest_quota == {"s000": {"q1": 150}, "s001": {"q1": 149}, "s002": {"q1": 148}}


def test_a_backend_cap_lowers_a_larger_limit_silently(amplify: AmplifyEmulator) -> None:
    seed_subscribers(amplify, 150)
    amplify.max_group_limit = 100
    search = searcher(amplify)

    capped = search(lexus([HOUR_RANGE], [SUBSCRIPTION_FIELD, QUOTA_FIELD], limit=1000)).json()[0]["result"]
    smaller = search(lexus([HOUR_RANGE], [SUBSCRIPTION_FIELD, QUOTA_FIELD], limit=20)).json()[0]["result"]
    total = search(lexus([HOUR_RANGE], [])).json()[0]["result"]

    assert len(capped) == 100 and len(smaller) == 20
    assert total == sum(range(1, 151)) + 1, "the ungrouped count is never cut"


def test_exists_leaves_out_traffic_without_a_subscription_or_a_quota(amplify: AmplifyEmulator, waits: Waits) -> None:
    amplify.add_traffic("s1", "q1", START, 5)
    amplify.add_traffic(None, "q1", START, 4)  # a call outside the Marketplace: no subscription
    amplify.add_traffic("s1", None, START, 3)  # no quota
    amplify.add_traffic(None, None, START, 2)
    search = searcher(amplify)
    exists = {"$exists": {SUBSCRIPTION_FIELD: True, QUOTA_FIELD: True}}

    assert search(lexus([HOUR_RANGE], [])).json()[0]["result"] == 14
    assert search(lexus([HOUR_RANGE, exists], [])).json()[0]["result"] == 5
    assert search(lexus([HOUR_RANGE, {"$exists": {SUBSCRIPTION_FIELD: False}}], [])).json()[0]["result"] == 6
    # a grouping leaves out what lacks its fields, so without $exists the groups never add up to the total
    assert search(lexus([HOUR_RANGE], [SUBSCRIPTION_FIELD, QUOTA_FIELD])).json()[0]["result"] == {"s1": {"q1": 5}}
    assert search(lexus([HOUR_RANGE], [SUBSCRIPTION_FIELD])).json()[0]["result"] == {"s1": 8}
    both_ways = {"$exists": {SUBSCRIPTION_FIELD: True}}, {"$exists": {SUBSCRIPTION_FIELD: False}}
    assert search(lexus([HOUR_RANGE, *both_ways], [])).json()[0]["result"] == 0
    traceability = clients_for(amplify, waits).traceability
    hour = (START, START + timedelta(hours=1))
    assert traceability.total_count(*hour) == 5 == traceability.grouped_count(*hour, limit=10).units
    assert amplify.traffic(*hour) == {("s1", "q1"): 5}, "ground truth holds only what can be billed"


def test_transactions_older_than_seven_days_are_gone(
    amplify: AmplifyEmulator, clock: VirtualClock, waits: Waits
) -> None:
    # "Transactions data: 7 Days", no archival (DOCS network_traffic.md, reference §9.1)
    cutoff = NOW - timedelta(days=7)
    amplify.add_traffic("s1", "q1", cutoff - timedelta(milliseconds=1), 5)
    amplify.add_traffic("s1", "q1", cutoff, 3)
    amplify.add_traffic("s1", "q1", NOW - timedelta(hours=1), 2)
    traceability = clients_for(amplify, waits).traceability
    week = (cutoff - timedelta(days=1), NOW)

    assert traceability.total_count(*week) == 5 and traceability.grouped_count(*week, limit=10).counts == {
        ("s1", "q1"): 5
    }
    clock.advance(timedelta(hours=1))
    assert traceability.total_count(*week) == 2, "an hour later, the cutoff's hour is gone too"
    assert amplify.traffic(*week) == {("s1", "q1"): 10}, "ground truth is what happened, whatever the retention"
    amplify.traceability_retention = None
    assert traceability.total_count(*week) == 10


def test_the_traceability_source_counts_every_unit_from_a_backend_that_caps_at_100(
    amplify: AmplifyEmulator, waits: Waits
) -> None:
    from amplify_billing.usage.sources import TraceabilitySource

    traffic = seed_subscribers(amplify, 150)
    amplify.add_traffic(None, "q1", START, 40)  # outside the Marketplace: never counted, never in the way
    amplify.max_group_limit = 100
    source = TraceabilitySource(clients_for(amplify, waits).traceability)
    population = sorted({s for s, _q in traffic})
    hour = (START, START + timedelta(hours=1))

    (answer,) = source.counts([hour], population).values()

    assert dict(answer.counts) == traffic == amplify.traffic(*hour)
    assert answer.proven_subscriptions == frozenset(population)
    # one total and one grouped query for everyone (cut at 100), then the same for two chunks of 75
    assert source.queries == 6 == len([r for r in amplify.requests if r.route == "traceability_search"])


def test_format_timestamp_is_amplifys() -> None:
    assert format_timestamp(datetime(2024, 4, 5, 15, 30, 40, 54321, tzinfo=UTC)) == "2024-04-05T15:30:40.054+0000"
