"""The Amplify adapters against `responses`: wire formats, paging, tokens, throttle, retries, errors.

Nothing here touches the network (the *.test hosts are answered by `responses`) and nothing really
sleeps: the clocks and sleep are fakes that record every wait.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from responses import matchers

from amplify_billing.amplify.clients import AmplifyClients
from amplify_billing.errors import (
    ApiRejectedError,
    AuthError,
    ConflictError,
    ExitCode,
    NotFoundError,
    UnreachableError,
    UpstreamError,
)
from amplify_billing.settings import AmplifySettings, Secret

CENTRAL = "https://central.test"
AUTH = "https://login.test/auth"
PLATFORM = "https://platform.test"
TOKEN_URL = f"{AUTH}/realms/Broker/protocol/openid-connect/token"
TENANT = "419190740785802"
CLIENT_ID = "sa-test_6d66dc36"
CLIENT_SECRET = "not-a-real-secret-value"
PRODUCTS = f"{CENTRAL}/apis/catalog/v1/products"
SEARCH = f"{CENTRAL}/api/traceability/v1/traceability/search"


class FakeTime:
    """Wall clock, monotonic clock and sleep in one; sleeping advances both clocks."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.mono = 500.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.mono += seconds


def make_settings(**overrides: Any) -> AmplifySettings:
    values: dict[str, Any] = {
        "central_url": CENTRAL,
        "auth_url": AUTH,
        "platform_url": PLATFORM,
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": Secret(CLIENT_SECRET),
        "page_size": 2,
        "rate_limit_per_minute": 1000,
        "timeout_seconds": 12.5,
        # a pinned version: these tests name exact URLs (auto's probes have their own tests)
        "api_version": "v1",
    }
    values.update(overrides)
    return AmplifySettings(**values)


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def build(fake: FakeTime, **overrides: Any) -> AmplifyClients:
    return AmplifyClients.build(make_settings(**overrides), clock=fake.time, monotonic=fake.monotonic, sleep=fake.sleep)


def add_token(mock: responses.RequestsMock, token: str = "tok-1", expires_in: int = 1800) -> None:
    mock.post(TOKEN_URL, json={"access_token": token, "expires_in": expires_in, "token_type": "bearer"})


def api_calls(mock: responses.RequestsMock) -> list[Any]:
    return [c for c in mock.calls if c.request.url and not c.request.url.startswith(TOKEN_URL)]


def resource(name: str, version: str = "4824", attributes: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "group": "catalog",
        "kind": "ProductPlan",
        "name": name,
        "title": name.title(),
        "metadata": {
            "id": "8ac98ee28ea29652018eaee2253601ac",
            "resourceVersion": version,
            "selfLink": f"/catalog/v1/productplans/{name}",
        },
        "attributes": attributes if attributes is not None else {"keep": "me"},
        "spec": {"product": "weather", "type": "paid"},
    }


# ---- listing ----------------------------------------------------------------------------------------
def test_list_follows_link_headers_to_the_last_page(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    query = 'attributes.billingSystem=="recurly"'
    page2 = f"{PRODUCTS}?pageSize=2&page=2&query=attributes.billingSystem%3D%3D%22recurly%22"
    mock.get(
        PRODUCTS,
        json=[{"name": "a"}, {"name": "b"}],
        headers={"Link": f'<{page2}>; rel="next"'},
        match=[matchers.query_param_matcher({"pageSize": "2", "page": "1", "query": query})],
    )
    # the second page's link is path-relative
    mock.get(
        PRODUCTS,
        json=[{"name": "c"}, {"name": "d"}],
        headers={"Link": '</apis/catalog/v1/products?pageSize=2&page=3&query=x>; rel="next"'},
        match=[matchers.query_param_matcher({"pageSize": "2", "page": "2", "query": query})],
    )
    mock.get(
        PRODUCTS,
        json=[{"name": "e"}],
        match=[matchers.query_param_matcher({"pageSize": "2", "page": "3", "query": "x"})],
    )

    items = build(fake).resources.list("products", query=query)

    assert [i["name"] for i in items] == ["a", "b", "c", "d", "e"]
    calls = api_calls(mock)
    assert len(calls) == 3
    for call in calls:
        assert call.request.headers["Authorization"] == "Bearer tok-1"
        assert call.request.headers["X-Axway-Tenant-Id"] == TENANT
        assert call.request.req_kwargs["timeout"] == (10.0, 12.5)  # (connect, read)


def _pages(mock: responses.RequestsMock, pages: list[tuple[list[str], str | None]]) -> None:
    """Serve ``pages`` of products in turn: names and the X-Axway-Total-Count of each (None: no header)."""
    for number, (names, total) in enumerate(pages, start=1):
        headers = {} if total is None else {"X-Axway-Total-Count": total}
        if number < len(pages):
            headers["Link"] = f'<{PRODUCTS}?pageSize=2&page={number + 1}>; rel="next"'
        mock.get(
            PRODUCTS,
            json=[{"name": n, "metadata": {"id": f"id-{n}"}} for n in names],
            headers=headers,
            match=[matchers.query_param_matcher({"pageSize": "2", "page": str(number)})],
        )


@pytest.mark.parametrize(
    ("pages", "complete", "says"),
    [
        ([(["a", "b"], "3"), (["c"], "3")], True, "listed 3 of 3 products (X-Axway-Total-Count)"),
        ([([], "0")], True, "listed 0 of 0 products (X-Axway-Total-Count)"),
        # no Link after the first page, yet the total says there is more: a listing cut short
        ([(["a", "b"], "5")], False, "listed 2 of 5 products (X-Axway-Total-Count)"),
        (
            [(["a", "b"], "3"), (["c"], None)],
            False,
            "listed 3 products; Amplify sent no X-Axway-Total-Count to prove that is all",
        ),
        ([(["a", "b"], "4"), (["c"], "3")], False, "listed 3 products while X-Axway-Total-Count changed (4 then 3)"),
        # a resource that moved pages while the walk went on is counted once
        ([(["a", "b"], "3"), (["b", "c"], "3")], True, "listed 3 of 3 products (X-Axway-Total-Count)"),
    ],
)
def test_a_listing_is_proven_complete_only_by_its_total(
    fake: FakeTime, mock: responses.RequestsMock, pages: list[tuple[list[str], str | None]], complete: bool, says: str
) -> None:
    add_token(mock)
    _pages(mock, pages)

    items, proof = build(fake).resources.listing("products")

    assert len(items) == sum(len(names) for names, _total in pages)
    assert (proof.complete, proof.describe()) == (complete, says)


def test_a_listing_left_before_its_last_page_is_not_complete(fake: FakeTime, mock: responses.RequestsMock) -> None:
    from amplify_billing.amplify.resources import ListingProof

    add_token(mock)
    # the first page links to a second one that the caller never asks for
    mock.get(
        PRODUCTS,
        json=[{"name": "a"}, {"name": "b"}],
        headers={"X-Axway-Total-Count": "3", "Link": f'<{PRODUCTS}?pageSize=2&page=2>; rel="next"'},
    )
    proof = ListingProof("products")

    first = next(iter(build(fake).resources.pages("products", proof=proof)))

    assert [i["name"] for i in first] == ["a", "b"]
    assert (proof.listed, proof.total, proof.complete) == (2, 3, False)


def test_list_within_a_scope_uses_the_scoped_path_and_api_version(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    url = f"{CENTRAL}/apis/catalog/v1alpha1/productplans/gold/quotas"
    mock.get(url, json=[{"name": "q1"}], match=[matchers.query_param_matcher({"pageSize": "2", "page": "1"})])

    items = build(fake, api_version="v1alpha1").resources.list("quotas", scope="productplans/gold")

    assert items == [{"name": "q1"}]


def test_list_refuses_a_body_that_is_not_a_list(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.get(PRODUCTS, json={"items": []})
    with pytest.raises(UpstreamError, match="other than a list of resources"):
        build(fake).resources.list("products")


def test_get_reads_one_resource(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.get(f"{CENTRAL}/apis/catalog/v1/productplans/gold", json=resource("gold"))
    assert build(fake).resources.get("productplans", "gold") == resource("gold")


# ---- writing ----------------------------------------------------------------------------------------
PLAN_URL = f"{CENTRAL}/apis/catalog/v1/productplans/gold"


def test_update_attributes_sends_nothing_when_the_values_are_already_set(fake: FakeTime) -> None:
    current = resource("gold", attributes={"recurlyPlanCode": "amplify-abc", "keep": "me"})
    with responses.RequestsMock() as mock:  # any request at all would fail: nothing is registered
        result = build(fake).resources.update_attributes(current, {"recurlyPlanCode": "amplify-abc"})
        assert len(mock.calls) == 0
    assert result == current


def test_update_attributes_puts_the_full_body_with_merged_attributes(
    fake: FakeTime, mock: responses.RequestsMock
) -> None:
    add_token(mock)
    listed = resource("gold")
    expected_body = {**listed, "attributes": {"keep": "me", "recurlyPlanCode": "amplify-abc"}}
    server_answer = {**expected_body, "metadata": {**listed["metadata"], "resourceVersion": "4825"}}
    mock.put(PLAN_URL, json=server_answer, match=[matchers.json_params_matcher(expected_body)])

    result = build(fake).resources.update_attributes(listed, {"recurlyPlanCode": "amplify-abc"})

    assert result == server_answer
    assert json.loads(api_calls(mock)[0].request.body)["metadata"]["resourceVersion"] == "4824"


def test_update_attributes_rereads_once_after_a_stale_resource_version(
    fake: FakeTime, mock: responses.RequestsMock
) -> None:
    add_token(mock)
    stale = resource("gold", version="4824")
    fresh = resource("gold", version="4830", attributes={"keep": "me", "other": "x"})
    stale_body = {**stale, "attributes": {"keep": "me", "recurlyPlanCode": "amplify-abc"}}
    fresh_body = {**fresh, "attributes": {"keep": "me", "other": "x", "recurlyPlanCode": "amplify-abc"}}
    mock.put(
        PLAN_URL,
        status=428,
        json={"errors": [{"status": 428, "title": "Precondition Required"}]},
        match=[matchers.json_params_matcher(stale_body)],
    )
    mock.get(PLAN_URL, json=fresh)
    mock.put(PLAN_URL, json=fresh_body, match=[matchers.json_params_matcher(fresh_body)])

    result = build(fake).resources.update_attributes(stale, {"recurlyPlanCode": "amplify-abc"})

    assert result == fresh_body
    assert [c.request.method for c in api_calls(mock)] == ["PUT", "GET", "PUT"]


def test_update_attributes_gives_up_after_a_second_stale_resource_version(
    fake: FakeTime, mock: responses.RequestsMock
) -> None:
    add_token(mock)
    mock.put(PLAN_URL, status=428, json={"errors": [{"status": 428, "title": "Precondition Required"}]})
    mock.get(PLAN_URL, json=resource("gold", version="4830"))

    with pytest.raises(ConflictError) as caught:
        build(fake).resources.update_attributes(resource("gold"), {"recurlyPlanCode": "amplify-abc"})

    assert [c.request.method for c in api_calls(mock)] == ["PUT", "GET", "PUT"]
    assert caught.value.exit_code == ExitCode.PARTIAL_FAILURE
    assert str(caught.value) == (
        f"Amplify {PLAN_URL} changed twice while its attributes were being written (HTTP 428); "
        "the next run will try again"
    )


def test_put_subresource_writes_the_approval(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    subscription = {"kind": "Subscription", "name": "s1", "metadata": {"selfLink": "/catalog/v1/subscriptions/s1"}}
    approval = {"state": "approved", "reason": "billing is in place"}
    mock.put(
        f"{CENTRAL}/apis/catalog/v1/subscriptions/s1/approval",
        json={**subscription, "approval": approval},
        match=[matchers.json_params_matcher({"approval": approval})],
    )

    result = build(fake).resources.put_subresource(subscription, "approval", approval)

    assert result["approval"] == approval


# ---- tokens -----------------------------------------------------------------------------------------
def test_client_secret_token_request_uses_basic_auth_and_is_cached_until_80_percent(
    fake: FakeTime, mock: responses.RequestsMock
) -> None:
    add_token(mock, "tok-1", expires_in=1800)
    add_token(mock, "tok-2", expires_in=1800)
    mock.get(f"{CENTRAL}/apis/catalog/v1/productplans/gold", json=resource("gold"))
    clients = build(fake)

    clients.resources.get("productplans", "gold")
    fake.now += 1439  # just under 80 % of 1800 s
    clients.resources.get("productplans", "gold")
    fake.now += 2  # past 1440 s
    clients.resources.get("productplans", "gold")

    token_calls = [c for c in mock.calls if c.request.url == TOKEN_URL]
    assert len(token_calls) == 2
    assert parse_qs(token_calls[0].request.body) == {"grant_type": ["client_credentials"]}
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token_calls[0].request.headers["Authorization"] == f"Basic {basic}"
    assert [c.request.headers["Authorization"] for c in api_calls(mock)] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_an_api_401_renews_the_token_and_retries_once(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock, "tok-1")
    add_token(mock, "tok-2")
    mock.get(PLAN_URL, status=401, json={"errors": [{"status": 401, "title": "Unauthorized"}]})
    mock.get(PLAN_URL, json=resource("gold"))

    assert build(fake).resources.get("productplans", "gold")["name"] == "gold"
    assert [c.request.headers["Authorization"] for c in api_calls(mock)] == ["Bearer tok-1", "Bearer tok-2"]


def test_a_second_401_is_an_auth_error(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.get(PLAN_URL, status=401, json={"errors": [{"status": 401, "title": "Unauthorized"}]})

    with pytest.raises(AuthError) as caught:
        build(fake).resources.get("productplans", "gold")

    assert len(api_calls(mock)) == 2
    assert caught.value.exit_code == ExitCode.UPSTREAM
    assert str(caught.value) == (
        f"Amplify refused the access token for GET {PLAN_URL} (HTTP 401: Unauthorized) even after renewing it; "
        "check amplify.client_id and amplify.client_secret"
    )


def test_refused_credentials_name_the_keys_to_check_but_never_the_secret(
    fake: FakeTime, mock: responses.RequestsMock
) -> None:
    mock.post(
        TOKEN_URL, status=401, json={"error": "unauthorized_client", "error_description": "Invalid client secret"}
    )

    with pytest.raises(AuthError) as caught:
        build(fake).resources.get("productplans", "gold")

    assert caught.value.exit_code == ExitCode.UPSTREAM
    assert str(caught.value) == (
        "the Axway IdP refused the service-account credentials (HTTP 401: unauthorized_client: "
        "Invalid client secret); check amplify.client_id and amplify.client_secret"
    )
    assert CLIENT_SECRET not in str(caught.value)


def test_key_pair_assertion_is_a_verifiable_rs256_jwt(fake: FakeTime, mock: responses.RequestsMock) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    add_token(mock)
    clients = build(fake, client_secret=None, private_key=Secret(pem))

    assert clients.transport.tokens.token() == "tok-1"

    request = mock.calls[0].request
    assert "Authorization" not in request.headers
    form = {k: v[0] for k, v in parse_qs(request.body).items()}
    assert form["grant_type"] == "client_credentials"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assertion = form["client_assertion"]
    claims = jwt.decode(
        assertion,
        key.public_key(),
        algorithms=["RS256"],
        audience=TOKEN_URL,
        options={"verify_exp": False, "verify_iat": False},  # signed at the fake clock's time
    )
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == TOKEN_URL
    assert claims["iat"] == int(fake.now)
    assert claims["exp"] == claims["iat"] + 60
    assert uuid.UUID(claims["jti"]).version == 4
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    expected_kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == "RS256"
    assert header["kid"] == expected_kid


# ---- throttle and retries ---------------------------------------------------------------------------
def test_the_fourth_call_in_a_minute_waits_when_the_limit_is_three(
    fake: FakeTime, mock: responses.RequestsMock
) -> None:
    add_token(mock)
    mock.get(PLAN_URL, json=resource("gold"))
    clients = build(fake, rate_limit_per_minute=3)

    for _ in range(4):
        clients.resources.get("productplans", "gold")

    assert fake.sleeps == [60.0]
    assert clients.transport.stats == {"POST": 1, "GET": 4}
    assert clients.transport.calls == 5


def test_429_waits_for_retry_after_then_succeeds(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.get(PLAN_URL, status=429, headers={"Retry-After": "7"}, json={"errors": [{"title": "Too Many Requests"}]})
    mock.get(PLAN_URL, json=resource("gold"))
    clients = build(fake)

    assert clients.resources.get("productplans", "gold")["name"] == "gold"
    assert fake.sleeps == [7.0]
    assert clients.transport.stats == {"POST": 1, "GET": 2, "retries": 1}


def test_503_twice_then_success(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.get(PLAN_URL, status=503)
    mock.get(PLAN_URL, status=503)
    mock.get(PLAN_URL, json=resource("gold"))
    clients = build(fake)

    assert clients.resources.get("productplans", "gold")["name"] == "gold"
    assert len(fake.sleeps) == 2
    assert all(0 <= s <= 30 for s in fake.sleeps)
    assert clients.transport.stats["retries"] == 2


def test_connection_errors_exhaust_the_retries_into_unreachable(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.get(PLAN_URL, body=requests.ConnectionError(ConnectionRefusedError(111, "Connection refused")))
    clients = build(fake)

    with pytest.raises(UnreachableError) as caught:
        clients.resources.get("productplans", "gold")

    assert caught.value.exit_code == ExitCode.UPSTREAM == 3
    assert caught.value.system == "amplify"
    assert str(caught.value) == (
        "Amplify at central.test is unreachable: the connection was refused (nothing listens at that address and "
        "port); check amplify.central_url and the network"
    )
    assert clients.transport.stats == {"POST": 1, "GET": 5, "retries": 4}
    assert len(fake.sleeps) == 4


def test_an_unreachable_idp_names_the_auth_url(fake: FakeTime, mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, body=requests.ConnectTimeout("timed out"))

    with pytest.raises(UnreachableError) as caught:
        build(fake).resources.get("productplans", "gold")

    assert str(caught.value) == (
        "Amplify at login.test is unreachable: no connection within 10 s (amplify.connect_timeout_seconds); "
        "check amplify.auth_url and the network"
    )
    assert len(mock.calls) == 5


def test_a_post_that_writes_is_not_repeated_after_a_503(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.post(PRODUCTS, status=503)
    clients = build(fake)

    with pytest.raises(UnreachableError, match="HTTP 503"):
        clients.transport.request("POST", PRODUCTS, json={"name": "new"})

    assert len(api_calls(mock)) == 1
    assert fake.sleeps == []


# ---- refusals ---------------------------------------------------------------------------------------
def test_403_says_which_role_the_service_account_needs(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.get(PLAN_URL, status=403, json={"errors": [{"status": 403, "title": "Forbidden", "detail": "no access"}]})

    with pytest.raises(AuthError) as caught:
        build(fake).resources.get("productplans", "gold")

    assert caught.value.exit_code == ExitCode.UPSTREAM
    assert str(caught.value) == (
        f"Amplify forbids GET {PLAN_URL} (HTTP 403: Forbidden: no access); "
        "the service account needs the Engage/Central Admin role"
    )


def test_404_is_not_found_with_amplifys_detail(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.get(PLAN_URL, status=404, json={"errors": [{"status": 404, "title": "Not Found", "detail": "gold"}]})

    with pytest.raises(NotFoundError) as caught:
        build(fake).resources.get("productplans", "gold")

    assert caught.value.status == 404
    assert caught.value.exit_code == ExitCode.PARTIAL_FAILURE
    assert str(caught.value) == f"Amplify has no {PLAN_URL} (HTTP 404: Not Found: gold)"


def test_other_4xx_is_rejected_with_status_and_detail(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.put(PLAN_URL, status=400, json={"errors": [{"status": 400, "title": "Bad Request", "detail": "bad spec"}]})

    with pytest.raises(ApiRejectedError) as caught:
        build(fake).resources.update_attributes(resource("gold"), {"recurlyPlanCode": "x"})

    assert type(caught.value) is ApiRejectedError
    assert caught.value.status == 400
    assert str(caught.value) == f"Amplify rejected PUT {PLAN_URL} (HTTP 400: Bad Request: bad spec)"


# ---- traceability -----------------------------------------------------------------------------------
START = datetime(2026, 3, 1, tzinfo=UTC)
END = START + timedelta(days=1)


SUBSCRIPTION = "transactionSummary.consumerDetails.subscription.id"
QUOTA = "transactionSummary.quota.id"


def lexus_filters(statuses: list[str] | None = None, subscriptions: list[str] | None = None) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [
        {"$match": {"type": ["transactionSummary"]}},
        {"$range": {"@event_time": {"gte": 1772323200000, "lt": 1772409600000}}},
        {"$exists": {SUBSCRIPTION: True, QUOTA: True}},
    ]
    if statuses:
        filters.append({"$match": {"transactionSummary.status": statuses}})
    if subscriptions is not None:
        filters.append({"$match": {SUBSCRIPTION: subscriptions}})
    return {"$and": filters}


@pytest.mark.parametrize(("statuses", "subscriptions"), [([], None), (["Success"], ["s2", "s1"])])
def test_traceability_sends_a_grouped_count_with_a_limit_on_every_level_and_parses_it(
    fake: FakeTime, mock: responses.RequestsMock, statuses: list[str], subscriptions: list[str] | None
) -> None:
    add_token(mock)
    answer = [{"version": "0.2", "id": "9f2c", "result": {"s1": {"q1": 12, "q2": 0}, "s2": {"q1": 3}}}]
    mock.post(SEARCH, json=answer)

    grouped = build(fake).traceability.grouped_count(
        START, END, limit=250, statuses=statuses, subscriptions=subscriptions
    )

    assert grouped.counts == {("s1", "q1"): 12, ("s1", "q2"): 0, ("s2", "q1"): 3}
    assert (grouped.subscription_terms, grouped.quota_terms, grouped.units) == (2, 2, 15)
    (call,) = api_calls(mock)
    assert json.loads(call.request.body) == {
        "version": "0.2",
        # without $exists, traffic outside the Marketplace would sit in the total and never in a group
        "filters": lexus_filters(statuses, None if subscriptions is None else sorted(subscriptions)),
        # Lexus 0.2 cuts a grouping at 100 terms unless told otherwise: the limit is always explicit
        "group_by": [
            {"field": SUBSCRIPTION, "type": "string", "params": {"limit": 250}},
            {"field": QUOTA, "type": "string", "params": {"limit": 250}},
        ],
        "invoke": {"method": "count", "field": "transactionId"},
    }
    assert call.request.headers["X-Axway-Tenant-Id"] == TENANT


def test_traceability_total_has_the_same_filters_and_no_grouping(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.post(SEARCH, json=[{"version": "0.2", "id": "x", "result": 15}])

    assert build(fake).traceability.total_count(START, END, statuses=["Success"], subscriptions=["s1"]) == 15
    (call,) = api_calls(mock)
    assert json.loads(call.request.body) == {
        "version": "0.2",
        "filters": lexus_filters(["Success"], ["s1"]),
        "invoke": {"method": "count", "field": "transactionId"},
    }


def test_traceability_search_is_retried_because_it_only_reads(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.post(SEARCH, status=502)
    mock.post(SEARCH, json=[{"version": "0.2", "id": "x", "result": {}}])

    assert build(fake).traceability.grouped_count(START, END, limit=1000).counts == {}
    assert len(api_calls(mock)) == 2


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ([{"version": "0.2", "id": "x", "result": {"s1": {"q1": "12"}}}], "count '12'"),
        ([{"version": "0.2", "id": "x", "result": {"s1": {"q1": -1}}}], "count -1"),
        ([{"version": "0.2", "id": "x", "result": {"s1": {"q1": 1.5}}}], "count 1.5"),
        ([{"version": "0.2", "id": "x", "result": {"s1": {"q1": True}}}], "count True"),
        ([{"version": "0.2", "id": "x", "result": {"s1": 12}}], "subscription s1 is not an object"),
        ([{"version": "0.2", "id": "x", "result": 12}], "'result' is not an object"),
        ([], "expected a list holding one query result"),
        ({"result": {}}, "expected a list holding one query result"),
    ],
)
def test_a_malformed_traceability_answer_is_refused(
    fake: FakeTime, mock: responses.RequestsMock, answer: Any, why: str
) -> None:
    add_token(mock)
    mock.post(SEARCH, json=answer)

    with pytest.raises(UpstreamError) as caught:
        build(fake).traceability.grouped_count(START, END, limit=1000)

    assert why in str(caught.value)
    assert str(caught.value).startswith("the Traceability API answered the count for 2026-03-01T00:00:00+00:00")
    assert str(caught.value).endswith("no usage is reported for that window")


@pytest.mark.parametrize("result", [{"s1": 3}, -1, 2.5, True, "7", None])
def test_a_malformed_traceability_total_is_refused(fake: FakeTime, mock: responses.RequestsMock, result: Any) -> None:
    add_token(mock)
    mock.post(SEARCH, json=[{"version": "0.2", "id": "x", "result": result}])

    with pytest.raises(UpstreamError, match=r"the total .* is not a whole number"):
        build(fake).traceability.total_count(START, END)


def test_traceability_refuses_naive_datetimes(fake: FakeTime) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build(fake).traceability.grouped_count(datetime(2026, 3, 1), END, limit=1000)
    with pytest.raises(ValueError, match="must be before end"):
        build(fake).traceability.total_count(END, START)


# ---- platform ---------------------------------------------------------------------------------------
def test_platform_unwraps_the_result(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    team = {"guid": "d9120f39-88d1-4977-bc56-5dd7d7335a18", "name": "Consumers"}
    mock.get(f"{PLATFORM}/api/v1/team/{team['guid']}", json={"success": True, "result": team})
    mock.get(f"{PLATFORM}/api/v1/user/u-1", json={"success": True, "result": {"guid": "u-1", "email": "a@b.test"}})
    mock.get(f"{PLATFORM}/api/v1/org/{TENANT}", json={"success": True, "result": {"org_id": int(TENANT)}})
    platform = build(fake).platform

    assert platform.get_team(team["guid"]) == team
    assert platform.get_user("u-1") == {"guid": "u-1", "email": "a@b.test"}
    assert platform.get_org(TENANT) == {"org_id": int(TENANT)}


def test_platform_lists_teams_until_a_short_page(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    teams = f"{PLATFORM}/api/v1/team"
    mock.get(
        teams,
        json={"success": True, "result": [{"guid": "t1"}, {"guid": "t2"}]},
        match=[matchers.query_param_matcher({"org_id": TENANT, "limit": "2", "page": "1"})],
    )
    mock.get(
        teams,
        json={"success": True, "result": [{"guid": "t3"}]},
        match=[matchers.query_param_matcher({"org_id": TENANT, "limit": "2", "page": "2"})],
    )

    assert [t["guid"] for t in build(fake).platform.list_teams()] == ["t1", "t2", "t3"]


def test_platform_without_success_is_an_upstream_error(fake: FakeTime, mock: responses.RequestsMock) -> None:
    add_token(mock)
    mock.get(f"{PLATFORM}/api/v1/user/u-1", json={"success": False, "message": "nope"})

    with pytest.raises(UpstreamError, match="without a successful result"):
        build(fake).platform.get_user("u-1")


def test_unreachable_names_the_most_specific_setting_when_one_host_serves_everything() -> None:
    from amplify_billing.amplify.wire import setting_for

    shared = make_settings(
        central_url="http://127.0.0.1:8080", platform_url="http://127.0.0.1:8080", auth_url="http://127.0.0.1:8080/auth"
    )
    assert setting_for("http://127.0.0.1:8080/apis/catalog/v1/products", shared) == "amplify.central_url"
    assert setting_for("http://127.0.0.1:8080/api/v1/team", shared) == "amplify.central_url"
    assert (
        setting_for("http://127.0.0.1:8080/auth/realms/Broker/protocol/openid-connect/token", shared)
        == "amplify.auth_url"
    )
    assert setting_for(f"{PLATFORM}/api/v1/team", make_settings()) == "amplify.platform_url"


def test_token_provider_on_its_own_caches_until_invalidated(fake: FakeTime, mock: responses.RequestsMock) -> None:
    from amplify_billing.amplify.auth import TokenProvider

    add_token(mock, "tok-1")
    add_token(mock, "tok-2")
    session = requests.Session()
    provider = TokenProvider(make_settings(), session, clock=fake.time)

    assert [provider.token(), provider.token()] == ["tok-1", "tok-1"]
    provider.invalidate()
    assert provider.token() == "tok-2"
    assert mock.calls[0].request.req_kwargs["timeout"] == (10.0, 12.5)  # (connect, read)


def test_a_next_page_link_to_another_origin_is_refused_and_the_token_never_leaves(
    fake: FakeTime, mock: responses.RequestsMock
) -> None:
    add_token(mock)
    elsewhere = "http://collector.invalid/apis/catalog/v1/products?page=2"
    mock.get(PRODUCTS, json=[{"name": "a"}], headers={"Link": f'<{elsewhere}>; rel="next"'})

    with pytest.raises(UpstreamError) as raised:
        build(fake).resources.list("products")

    assert "collector.invalid" in str(raised.value) and "another origin" in str(raised.value)
    assert raised.value.exit_code is ExitCode.UPSTREAM  # exit 3: the next run retries, nothing was written
    assert [c.request.url.split("?")[0] for c in api_calls(mock)] == [PRODUCTS]
