"""The Recurly emulator, driven by the real ``recurly`` client exactly as the production gateway drives it."""

from __future__ import annotations

import base64
import http.client
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import recurly
from recurly import errors

from amplify_billing.sandbox.clock import VirtualClock
from amplify_billing.sandbox.recurly_emulator import RecurlyEmulator

KEY = "test-private-key"
START = datetime(2024, 1, 31, 12, 0, 0, tzinfo=UTC)
CUSTOM_FIELD = "amplify_subscription_id"
WIRE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
# Recurly's own OpenAPI document, copied into the repository so the checks against it never skip (README beside it)
OPENAPI = Path(__file__).resolve().parent.parent / "data" / "recurly-openapi.yaml"


# ---- fixtures and helpers -----------------------------------------------------------------------------


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def emulator(clock: VirtualClock) -> Iterator[RecurlyEmulator]:
    emu = RecurlyEmulator(api_key=KEY, clock=clock, seed=3)
    emu.seed_custom_field_definition(CUSTOM_FIELD, "subscription")
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


def connect(emu: RecurlyEmulator, api_key: str = KEY) -> Any:
    """The real client, its connection pointed at the emulator (how the production gateway does it)."""
    client = recurly.Client(api_key, timeout=5)
    client._BaseClient__conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    return client


@pytest.fixture
def client(emulator: RecurlyEmulator) -> Any:
    return connect(emulator)


def raw(
    emu: RecurlyEmulator,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    auth: bool = True,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    sent = dict(headers or {})
    if auth:
        sent["Authorization"] = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    sent.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body, headers=sent)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def params_of(exc: pytest.ExceptionInfo[Any]) -> dict[str, str]:
    return {p["param"]: p["message"] for p in exc.value.error.params or []}


def unit_body(name: str = "transactions") -> dict[str, Any]:
    return {"name": name, "display_name": "API calls"}


def flat_add_on(code: str = "flat", price: str = "0.0025") -> dict[str, Any]:
    return {
        "code": code,
        "name": "Per call",
        "add_on_type": "usage",
        "usage_type": "price",
        "usage_calculation_type": "cumulative",
        "tier_type": "flat",
        "measured_unit_name": "transactions",
        "currencies": [{"currency": "USD", "unit_amount_decimal": price}],
    }


def tiered_add_on(code: str = "tiered", tier_type: str = "tiered") -> dict[str, Any]:
    return {
        "code": code,
        "name": "Included then overage",
        "add_on_type": "usage",
        "usage_type": "price",
        "tier_type": tier_type,
        "measured_unit_name": "transactions",
        "tiers": [
            {"ending_quantity": 1000, "currencies": [{"currency": "USD", "unit_amount_decimal": "0"}]},
            {"ending_quantity": 5000, "currencies": [{"currency": "USD", "unit_amount_decimal": "0.002"}]},
            {"currencies": [{"currency": "USD", "unit_amount_decimal": "0.001"}]},
        ],
    }


def plan_body(code: str = "amplify-gold", *add_ons: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "name": "Weather API - Gold",
        "currencies": [{"currency": "USD", "unit_amount": 49.99, "setup_fee": 5}],
        "interval_unit": "months",
        "interval_length": 1,
    }
    if add_ons:
        body["add_ons"] = list(add_ons)
    return body


def catalog(client: Any) -> Any:
    """A unit and a plan with a flat and a tiered usage add-on; the plan."""
    client.create_measured_unit(unit_body())
    return client.create_plan(plan_body("amplify-gold", flat_add_on(), tiered_add_on()))


def subscribe(client: Any, account: str = "amplify-team-1", add_ons: tuple[str, ...] = ("flat", "tiered")) -> Any:
    return client.create_subscription(
        {
            "plan_code": "amplify-gold",
            "currency": "USD",
            "account": {"code": account, "email": "ops@example.com"},
            "add_ons": [{"code": code} for code in add_ons],
            "collection_method": "manual",
            "custom_fields": [{"name": CUSTOM_FIELD, "value": "sub-1"}],
        }
    )


def post_usage(
    client: Any, uuid: str, tag: str, amount: int, when: str, add_on: str = "code-flat", **headers: str
) -> Any:
    body = {"amount": amount, "merchant_tag": tag, "usage_timestamp": when}
    return client.create_usage(f"uuid-{uuid}", add_on, body, headers=headers)


# ---- plans, add-ons, measured units -------------------------------------------------------------------


def test_plan_created_with_nested_flat_tiered_and_volume_add_ons(client: Any, emulator: RecurlyEmulator) -> None:
    unit = client.create_measured_unit(unit_body())
    plan = client.create_plan(
        plan_body("amplify-gold", flat_add_on(), tiered_add_on(), tiered_add_on("volume", tier_type="volume"))
    )

    assert re.fullmatch(r"[a-z0-9]{13}", plan.id)
    assert (plan.code, plan.state, plan.interval_unit, plan.interval_length) == ("amplify-gold", "active", "months", 1)
    assert (plan.currencies[0].currency, plan.currencies[0].unit_amount, plan.currencies[0].setup_fee) == (
        "USD",
        49.99,
        5.0,
    )
    assert plan.created_at == START
    assert plan.get_response().status == 201
    add_ons = {a["code"]: a for a in emulator.add_ons("amplify-gold")}
    assert set(add_ons) == {"flat", "tiered", "volume"}
    flat = add_ons["flat"]
    assert flat["currencies"] == [{"currency": "USD", "unit_amount": 0.0025, "unit_amount_decimal": "0.0025"}]
    assert (flat["tiers"], flat["measured_unit_id"], flat["plan_id"]) == ([], unit.id, plan.id)
    assert (flat["add_on_type"], flat["usage_type"], flat["usage_calculation_type"]) == ("usage", "price", "cumulative")
    tiered = add_ons["tiered"]
    assert tiered["currencies"] is None  # tiered pricing has no flat price (the schema allows no empty list)
    assert [t["ending_quantity"] for t in tiered["tiers"]] == [1000, 5000, 999999999]
    assert [t["currencies"][0]["unit_amount_decimal"] for t in tiered["tiers"]] == ["0", "0.002", "0.001"]
    assert add_ons["volume"]["tier_type"] == "volume"

    # read back through the client: typed resources, exact decimal strings
    by_client = {a.code: a for a in client.list_plan_add_ons("code-amplify-gold").items()}
    assert by_client["flat"].currencies[0].unit_amount_decimal == "0.0025"
    assert [t.ending_quantity for t in by_client["volume"].tiers] == [1000, 5000, 999999999]
    assert client.get_plan_add_on("code-amplify-gold", "code-tiered").id == tiered["id"]
    site_wide = list(client.list_add_ons(params={"limit": 200}).items())
    assert {(a.code, a.plan_id) for a in site_wide} == {(c, plan.id) for c in ("flat", "tiered", "volume")}


def test_measured_unit_lookup_by_name_and_update(client: Any) -> None:
    created = client.create_measured_unit(unit_body())
    assert client.get_measured_unit("name-transactions").id == created.id
    updated = client.update_measured_unit(f"name-{created.name}", {"display_name": "Transactions 2"})
    assert (updated.display_name, updated.state) == ("Transactions 2", "active")
    assert [u.name for u in client.list_measured_unit().items()] == ["transactions"]


def test_plan_update_remove_and_state_filter(client: Any, clock: VirtualClock) -> None:
    catalog(client)
    clock.advance(timedelta(hours=1))
    updated = client.update_plan(
        "code-amplify-gold", {"name": "Renamed", "currencies": [{"currency": "USD", "unit_amount": 59, "setup_fee": 0}]}
    )
    assert (updated.name, updated.currencies[0].unit_amount) == ("Renamed", 59.0)
    assert updated.updated_at == START + timedelta(hours=1)
    client.create_plan(plan_body("amplify-silver"))

    removed = client.remove_plan("code-amplify-gold")

    assert (removed.state, removed.deleted_at) == ("inactive", START + timedelta(hours=1))
    assert [p.code for p in client.list_plans(params={"state": "active"}).items()] == ["amplify-silver"]
    assert [p.code for p in client.list_plans(params={"state": "inactive"}).items()] == ["amplify-gold"]
    assert client.get_plan("code-amplify-gold").state == "inactive"


def test_add_on_update_replaces_pricing(client: Any) -> None:
    catalog(client)
    flat = client.update_plan_add_on(
        "code-amplify-gold",
        "code-flat",
        {
            "name": "Per call (new)",
            "measured_unit_name": "transactions",
            "currencies": [{"currency": "USD", "unit_amount_decimal": "0.003"}],
        },
    )
    tiered = client.update_plan_add_on(
        "code-amplify-gold",
        "code-tiered",
        {
            "tiers": [
                {"ending_quantity": 10, "currencies": [{"currency": "USD", "unit_amount_decimal": "0"}]},
                {"ending_quantity": 999999999, "currencies": [{"currency": "USD", "unit_amount_decimal": "1"}]},
            ]
        },
    )

    assert (flat.name, flat.currencies[0].unit_amount_decimal) == ("Per call (new)", "0.003")
    assert [(t.ending_quantity, t.currencies[0].unit_amount_decimal) for t in tiered.tiers] == [
        (10, "0"),
        (999999999, "1"),
    ]


def test_list_paging_walks_every_page_with_a_stable_cursor(client: Any, clock: VirtualClock) -> None:
    for n in range(5):
        client.create_plan(plan_body(f"plan-{n}"))
        clock.advance(timedelta(seconds=1))

    pages = client.list_plans(params={"limit": 2, "order": "asc"}).pages()
    first = next(pages)
    client.create_plan(plan_body("plan-late"))  # created while walking: sorts after everything seen so far
    rest = list(pages)

    assert [[p.code for p in page] for page in [first, *rest]] == [
        ["plan-0", "plan-1"],
        ["plan-2", "plan-3"],
        ["plan-4", "plan-late"],
    ]
    descending = [p.code for page in client.list_plans(params={"limit": 4}).pages() for p in page]
    assert descending == ["plan-late", "plan-4", "plan-3", "plan-2", "plan-1", "plan-0"]
    assert client.list_plans(params={"limit": 4}).count() == 6


def test_list_next_link_keeps_the_original_params(client: Any, emulator: RecurlyEmulator) -> None:
    for n in range(3):
        client.create_plan(plan_body(f"plan-{n}"))
    status, _headers, body = raw(emulator, "GET", "/plans?limit=1&state=active&sort=updated_at&order=asc")
    page = json.loads(body)

    assert (status, page["object"], page["has_more"], len(page["data"])) == (200, "list", True, 1)
    assert page["next"].startswith("/plans?")
    assert {"limit=1", "state=active", "sort=updated_at", "order=asc"} <= set(page["next"].split("?")[1].split("&"))
    assert "cursor=" in page["next"]


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 201}, {"order": "up"}, {"sort": "name"}, {"begin_time": "yesterday"}]
)
def test_bad_list_params_are_bad_requests(client: Any, params: dict[str, Any]) -> None:
    with pytest.raises(errors.BadRequestError):
        next(client.list_plans(params=params).pages())


def test_a_listing_by_ids_answers_all_at_once_and_takes_no_other_parameter(
    client: Any, emulator: RecurlyEmulator
) -> None:
    """OpenAPI ``ids``: up to 200; "cannot be used with any other ordering or filtering parameters (limit, order,
    sort, begin_time, end_time, etc)"; unknown ids are ignored; "results are all returned at once"."""
    ids = [client.create_plan(plan_body(f"plan-{n}")).id for n in range(25)]  # more than a default page (20)
    status, _headers, body = raw(emulator, "GET", "/plans?ids=" + ",".join([*ids, "unknown0000"]))
    page = json.loads(body)
    assert (status, page["has_more"], sorted(p["id"] for p in page["data"])) == (200, False, sorted(ids))
    # "Records are returned in an arbitrary order": neither the order they were made in nor its reverse
    served = [p["id"] for p in page["data"]]
    assert served not in (ids, ids[::-1])
    for extra in ("limit=200", "order=asc", "sort=created_at", "begin_time=2024-01-01T00:00:00Z"):
        status, _headers, body = raw(emulator, "GET", f"/plans?ids={ids[0]}&{extra}")
        assert status == 400 and extra.split("=")[0] in json.loads(body)["error"]["message"]


def test_times_on_the_wire_have_no_fractional_seconds(
    client: Any, emulator: RecurlyEmulator, clock: VirtualClock
) -> None:
    clock.set(START + timedelta(microseconds=654321))
    client.create_plan(plan_body())
    _status, _headers, body = raw(emulator, "GET", "/plans/code-amplify-gold")
    plan = json.loads(body)
    assert WIRE_TIME.match(plan["created_at"]) and plan["created_at"] == "2024-01-31T12:00:00Z"
    assert plan["deleted_at"] is None


# ---- validation (422) ---------------------------------------------------------------------------------


def _with(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**body, **changes}


PLAN_422 = [
    ("code charset", plan_body("bad code!"), {"code": "is invalid"}),
    ("code length", plan_body("a" * 51), {"code": "is too long (maximum is 50 characters)"}),
    ("no currencies", _with(plan_body(), currencies=[]), {"currencies": "can't be blank"}),
    ("no name", _with(plan_body(), name=None), {"name": "can't be blank"}),
    (
        "duplicate add-on code",
        plan_body("p", flat_add_on("x"), flat_add_on("x")),
        {"add_ons[1].code": "has already been taken"},
    ),
    ("add-on code charset", plan_body("p", flat_add_on("no spaces")), {"add_ons[0].code": "is invalid"}),
    (
        "add-on code length",
        plan_body("p", flat_add_on("x" * 51)),
        {"add_ons[0].code": "is too long (maximum is 50 characters)"},
    ),
    (
        "flat without currencies",
        plan_body("p", _with(flat_add_on(), currencies=None)),
        {"add_ons[0].currencies": "can't be blank"},
    ),
    (
        "flat with an empty currency list",
        plan_body("p", _with(flat_add_on(), currencies=[])),
        {"add_ons[0].currencies": "can't be blank"},
    ),
    (
        "tier with an empty currency list",
        plan_body(
            "p",
            _with(
                tiered_add_on(),
                tiers=[
                    {"ending_quantity": 5, "currencies": []},
                    {"currencies": [{"currency": "USD", "unit_amount": 1}]},
                ],
            ),
        ),
        {"add_ons[0].tiers[0].currencies": "can't be blank"},
    ),
    (
        "price without an amount",
        plan_body("p", _with(flat_add_on(), currencies=[{"currency": "USD"}])),
        {"add_ons[0].currencies[0].unit_amount": "can't be blank"},
    ),
    (
        "flat with tiers",
        plan_body("p", _with(flat_add_on(), tiers=tiered_add_on()["tiers"])),
        {"add_ons[0].tiers": "must be blank for flat pricing"},
    ),
    (
        "tiered without tiers",
        plan_body("p", _with(tiered_add_on(), tiers=None)),
        {"add_ons[0].tiers": "can't be blank"},
    ),
    (
        "tiered with currencies",
        plan_body("p", _with(tiered_add_on(), currencies=flat_add_on()["currencies"])),
        {"add_ons[0].currencies": "must be blank for tiered pricing"},
    ),
    (
        "tier without currencies",
        plan_body(
            "p",
            _with(
                tiered_add_on(), tiers=[{"ending_quantity": 5}, {"currencies": [{"currency": "USD", "unit_amount": 1}]}]
            ),
        ),
        {"add_ons[0].tiers[0].currencies": "can't be blank"},
    ),
    (
        "two open tiers",
        plan_body(
            "p",
            _with(
                tiered_add_on("v", "volume"),
                tiers=[
                    {"currencies": [{"currency": "USD", "unit_amount": 1}]},
                    {"currencies": [{"currency": "USD", "unit_amount": 2}]},
                ],
            ),
        ),
        {"add_ons[0].tiers": "must have exactly one tier without ending_quantity (or 999999999), the last one"},
    ),
    (
        "no open tier",
        plan_body(
            "p",
            _with(
                tiered_add_on(), tiers=[{"ending_quantity": 5, "currencies": [{"currency": "USD", "unit_amount": 1}]}]
            ),
        ),
        {"add_ons[0].tiers": "must have exactly one tier without ending_quantity (or 999999999), the last one"},
    ),
    (
        "tiers not ascending",
        plan_body(
            "p",
            _with(
                tiered_add_on(),
                tiers=[
                    {"ending_quantity": 50, "currencies": [{"currency": "USD", "unit_amount": 1}]},
                    {"ending_quantity": 10, "currencies": [{"currency": "USD", "unit_amount": 1}]},
                    {"currencies": [{"currency": "USD", "unit_amount": 1}]},
                ],
            ),
        ),
        {"add_ons[0].tiers": "ending_quantity must be ascending"},
    ),
    (
        "usage add-on without unit",
        plan_body("p", _with(flat_add_on(), measured_unit_name=None)),
        {"add_ons[0].measured_unit_id": "or measured_unit_name is required for usage add-ons"},
    ),
    (
        "unknown unit",
        plan_body("p", _with(flat_add_on(), measured_unit_name="bytes")),
        {"add_ons[0].measured_unit_name": "bytes is not a measured unit"},
    ),
    (
        "usage add-on without usage_type",
        plan_body("p", _with(flat_add_on(), usage_type=None)),
        {"add_ons[0].usage_type": "can't be blank"},
    ),
    (
        "add-on currency not on the plan",
        plan_body("p", _with(flat_add_on(), currencies=[{"currency": "EUR", "unit_amount_decimal": "0.1"}])),
        {"add_ons[0].currencies[0].currency": "EUR is not offered by plan p"},
    ),
    (
        "unit_amount with sub-cents",
        plan_body("p", _with(flat_add_on(), currencies=[{"currency": "USD", "unit_amount": 0.0025}])),
        {"add_ons[0].currencies[0].unit_amount": "must have at most 2 decimal places"},
    ),
]


@pytest.mark.parametrize(("case", "body", "expected"), PLAN_422, ids=[c[0] for c in PLAN_422])
def test_plan_validation(
    client: Any, emulator: RecurlyEmulator, case: str, body: dict[str, Any], expected: dict[str, str]
) -> None:
    client.create_measured_unit(unit_body())
    with pytest.raises(errors.ValidationError) as exc:
        client.create_plan(body)
    assert params_of(exc) == expected
    assert exc.value.error.type == "validation"
    assert emulator.plans() == [] and emulator.add_ons() == []  # a refused request leaves no trace


def test_duplicate_codes_and_names_are_refused(client: Any) -> None:
    catalog(client)
    client.create_account({"code": "amplify-team-1"})
    cases = [
        (lambda: client.create_plan(plan_body("amplify-gold")), {"code": "has already been taken"}),
        (lambda: client.create_plan_add_on("code-amplify-gold", flat_add_on()), {"code": "has already been taken"}),
        (lambda: client.create_account({"code": "amplify-team-1"}), {"code": "has already been taken"}),
        (lambda: client.create_account({"code": "a" * 51}), {"code": "is too long (maximum is 50 characters)"}),
        (lambda: client.create_measured_unit(unit_body()), {"name": "has already been taken"}),
        (
            lambda: client.create_measured_unit({"name": "u2", "display_name": "No-dashes!"}),
            {"display_name": "is invalid"},
        ),
        (
            lambda: client.create_measured_unit({"name": "u3", "display_name": "x" * 51}),
            {"display_name": "is too long (maximum is 50 characters)"},
        ),
    ]
    for call, expected in cases:
        with pytest.raises(errors.ValidationError) as exc:
            call()
        assert params_of(exc) == expected
    # the same add-on code on another plan is fine: codes are unique per plan
    client.create_plan(plan_body("amplify-silver", flat_add_on()))


def test_add_on_update_cannot_change_its_kind(client: Any) -> None:
    catalog(client)
    with pytest.raises(errors.ValidationError) as exc:
        client.update_plan_add_on("code-amplify-gold", "code-flat", {"tier_type": "volume"})
    assert params_of(exc) == {"tier_type": "cannot be changed; create an add-on with a new code instead"}
    # sending the unchanged value is not a change
    same = client.update_plan_add_on("code-amplify-gold", "code-flat", {"tier_type": "flat", "name": "N"})
    assert (same.tier_type, same.name) == ("flat", "N")


def test_lookups_of_missing_objects_are_404(client: Any, emulator: RecurlyEmulator) -> None:
    with pytest.raises(errors.NotFoundError) as exc:
        client.get_plan("code-missing")
    assert exc.value.error.type == "not_found"
    assert "Couldn't find Plan with code = missing" in str(exc.value)
    for call in (
        lambda: client.get_account("code-nobody"),
        lambda: client.get_subscription("uuid-" + "0" * 32),
        lambda: client.get_usage("nousage"),
        lambda: client.get_measured_unit("name-none"),
    ):
        with pytest.raises(errors.NotFoundError):
            call()
    status, _headers, body = raw(emulator, "GET", "/no/such/path")
    assert (status, json.loads(body)["error"]["type"]) == (404, "not_found")


def test_unparsable_json_is_a_bad_request(emulator: RecurlyEmulator) -> None:
    status, _headers, body = raw(emulator, "POST", "/plans", b"{not json")
    assert (status, json.loads(body)["error"]["type"]) == (400, "bad_request")
    assert emulator.plans() == []


# ---- accounts and subscriptions -----------------------------------------------------------------------


def test_subscription_create_attaches_only_listed_add_ons_and_creates_the_account(
    client: Any, emulator: RecurlyEmulator
) -> None:
    catalog(client)
    client.create_account({"code": "amplify-team-2"})

    sub = subscribe(client, add_ons=("flat",))
    other = subscribe(client, account="amplify-team-2", add_ons=())

    assert re.fullmatch(r"[0-9a-f]{32}", sub.uuid)
    assert (sub.state, sub.currency, sub.unit_amount, sub.collection_method) == ("active", "USD", 49.99, "manual")
    assert (sub.account.code, sub.plan.code, sub.plan.name) == ("amplify-team-1", "amplify-gold", "Weather API - Gold")
    assert [(a.add_on.code, a.add_on.usage_type, a.quantity, a.tier_type) for a in sub.add_ons] == [
        ("flat", "price", 1, "flat")
    ]
    assert sub.add_ons[0].unit_amount_decimal == "0.0025"
    assert [(f.name, f.value) for f in sub.custom_fields] == [(CUSTOM_FIELD, "sub-1")]
    assert (sub.activated_at, sub.current_period_started_at, sub.current_period_ends_at) == (
        START,
        START,
        datetime(2024, 2, 29, 12, tzinfo=UTC),
    )
    assert other.add_ons == []
    assert {a["code"] for a in emulator.accounts()} == {"amplify-team-1", "amplify-team-2"}
    account = client.get_account("code-amplify-team-1")
    assert (account.email, account.has_live_subscription) == ("ops@example.com", True)
    assert [s.uuid for s in client.list_account_subscriptions("code-amplify-team-1").items()] == [sub.uuid]
    assert client.get_subscription(f"uuid-{sub.uuid}").id == sub.id


SUBSCRIPTION_422 = [
    ("unknown plan", {"plan_code": "nope"}, {"plan_code": "nope is not a plan"}),
    ("currency not offered", {"currency": "EUR"}, {"currency": "EUR is not offered by plan amplify-gold"}),
    (
        "undefined custom field",
        {"custom_fields": [{"name": "other", "value": "1"}]},
        {"custom_fields[0].name": "other is not a custom field defined for subscriptions"},
    ),
    (
        "add-on not on the plan",
        {"add_ons": [{"code": "gold-extra"}]},
        {"add_ons[0].code": "gold-extra is not an add-on of plan amplify-gold"},
    ),
    (
        "usage quantity",
        {"add_ons": [{"code": "flat", "quantity": 3}]},
        {"add_ons[0].quantity": "must be 1 for usage add-ons"},
    ),
    ("account without code", {"account": {"email": "x@example.com"}}, {"account.code": "can't be blank"}),
]


@pytest.mark.parametrize(("case", "changes", "expected"), SUBSCRIPTION_422, ids=[c[0] for c in SUBSCRIPTION_422])
def test_subscription_validation(
    client: Any, emulator: RecurlyEmulator, case: str, changes: dict[str, Any], expected: dict[str, str]
) -> None:
    catalog(client)
    body = {"plan_code": "amplify-gold", "currency": "USD", "account": {"code": "amplify-team-9"}, **changes}
    with pytest.raises(errors.ValidationError) as exc:
        client.create_subscription(body)
    assert params_of(exc) == expected
    assert emulator.subscriptions() == [] and emulator.accounts() == []


def test_cancel_then_expiry_as_the_clock_moves(client: Any, emulator: RecurlyEmulator, clock: VirtualClock) -> None:
    catalog(client)
    sub = subscribe(client)
    clock.advance(timedelta(days=3))

    canceled = client.cancel_subscription(f"uuid-{sub.uuid}", body={"timeframe": "term_end"})

    assert (canceled.state, canceled.canceled_at, canceled.expires_at) == (
        "canceled",
        START + timedelta(days=3),
        datetime(2024, 2, 29, 12, tzinfo=UTC),
    )
    assert [s["uuid"] for s in emulator.subscriptions("live")] == [sub.uuid]
    with pytest.raises(errors.ValidationError):
        client.cancel_subscription(f"uuid-{sub.uuid}")  # only active or future subscriptions can be canceled

    clock.set(datetime(2024, 2, 29, 12, tzinfo=UTC))
    expired = client.get_subscription(f"uuid-{sub.uuid}")
    assert (expired.state, expired.expires_at) == ("expired", datetime(2024, 2, 29, 12, tzinfo=UTC))
    assert [s.uuid for s in client.list_subscriptions(params={"state": "expired"}).items()] == [sub.uuid]
    assert list(client.list_subscriptions(params={"state": "live"}).items()) == []


def test_active_subscription_rolls_into_the_next_period(client: Any, clock: VirtualClock) -> None:
    catalog(client)
    sub = subscribe(client)
    clock.set(datetime(2024, 4, 1, tzinfo=UTC))

    current = client.get_subscription(sub.id)

    # periods are counted from the start, so the 31st is not lost after February
    assert (current.state, current.current_period_started_at, current.current_period_ends_at) == (
        "active",
        datetime(2024, 3, 31, 12, tzinfo=UTC),
        datetime(2024, 4, 30, 12, tzinfo=UTC),
    )


def test_terms_of_several_periods(client: Any, clock: VirtualClock) -> None:
    client.create_plan({**plan_body("amplify-term"), "total_billing_cycles": 3})
    client.create_plan({**plan_body("amplify-once"), "total_billing_cycles": 2, "auto_renew": False})
    term = client.create_subscription({"plan_code": "amplify-term", "currency": "USD", "account": {"code": "a1"}})
    once = client.create_subscription({"plan_code": "amplify-once", "currency": "USD", "account": {"code": "a2"}})
    clock.set(datetime(2024, 2, 5, tzinfo=UTC))

    canceled = client.cancel_subscription(term.id, body={"timeframe": "term_end"})

    assert canceled.expires_at == datetime(2024, 4, 30, 12, tzinfo=UTC)  # the end of the 3-month term
    clock.set(datetime(2024, 3, 15, tzinfo=UTC))
    midway = client.get_subscription(term.id)
    assert (midway.state, midway.current_period_started_at) == ("canceled", datetime(2024, 2, 29, 12, tzinfo=UTC))
    clock.set(datetime(2024, 4, 30, 12, tzinfo=UTC))
    assert client.get_subscription(term.id).state == "expired"
    ended = client.get_subscription(once.id)
    assert (ended.state, ended.expires_at) == ("expired", datetime(2024, 3, 31, 12, tzinfo=UTC))


def test_an_expired_subscription_leaves_the_live_listing_but_a_direct_get_still_answers(
    client: Any, clock: VirtualClock
) -> None:
    # reference §9.3: ended by total_billing_cycles without renewal (or dunning, or an operator), it is gone from
    # `state=live`, and GET /subscriptions/uuid-… still returns it with why it expired
    client.create_plan({**plan_body("amplify-once"), "total_billing_cycles": 1, "auto_renew": False})
    once = client.create_subscription({"plan_code": "amplify-once", "currency": "USD", "account": {"code": "a1"}})
    live = client.list_subscriptions(params={"state": "live"})
    assert [s.uuid for s in live.items()] == [once.uuid] and live.count() == 1

    clock.set(datetime(2024, 2, 29, 12, tzinfo=UTC))

    gone = client.list_subscriptions(params={"state": "live"})
    assert list(gone.items()) == [] and gone.count() == 0
    ended = client.get_subscription(f"uuid-{once.uuid}")
    assert (ended.state, ended.expiration_reason, ended.expires_at) == (
        "expired",
        "nonrenewing",
        datetime(2024, 2, 29, 12, tzinfo=UTC),
    )


def test_a_paused_subscription_is_not_live_but_is_still_there(
    client: Any, emulator: RecurlyEmulator, clock: VirtualClock
) -> None:
    catalog(client)
    sub = subscribe(client)
    clock.advance(timedelta(days=3))

    asked = client.pause_subscription(f"uuid-{sub.uuid}", {"remaining_pause_cycles": 2})

    # the pause starts at the next renewal (ROAS pause_subscription)
    assert (asked.state, asked.paused_at, asked.remaining_pause_cycles) == (
        "active",
        datetime(2024, 2, 29, 12, tzinfo=UTC),
        2,
    )
    clock.set(datetime(2024, 3, 1, tzinfo=UTC))
    paused = client.get_subscription(f"uuid-{sub.uuid}")
    assert paused.state == "paused"
    # reference §9.3: `state=live` lists active, canceled, future and in-trial subscriptions, never paused ones,
    # and neither does any other filter value; the account still counts it as live
    for state in ("live", "active", "canceled", "future", "in_trial", "expired"):
        listing = client.list_subscriptions(params={"state": state})
        assert (list(listing.items()), listing.count()) == ([], 0), state
    assert [s.uuid for s in client.list_subscriptions().items()] == [sub.uuid]
    assert emulator.accounts()[0]["has_live_subscription"] is True
    assert emulator.accounts()[0]["has_paused_subscription"] is True
    # usage may still be recorded on it; it cannot be canceled, only terminated
    post_usage(client, sub.uuid, "while-paused", 4, "2024-03-01T00:00:00Z")
    with pytest.raises(errors.ValidationError):
        client.cancel_subscription(f"uuid-{sub.uuid}")

    # after its two paused periods it renews as active again
    clock.set(datetime(2024, 5, 1, tzinfo=UTC))
    resumed = client.get_subscription(f"uuid-{sub.uuid}")
    assert (resumed.state, resumed.paused_at, resumed.remaining_pause_cycles) == ("active", None, None)
    assert [s.uuid for s in client.list_subscriptions(params={"state": "live"}).items()] == [sub.uuid]


def test_resume_and_the_pause_seeding_helper(client: Any, emulator: RecurlyEmulator, clock: VirtualClock) -> None:
    catalog(client)
    sub = subscribe(client)
    with pytest.raises(errors.ValidationError):
        client.resume_subscription(f"uuid-{sub.uuid}")  # only a paused subscription can be resumed
    with pytest.raises(errors.ValidationError):
        client.pause_subscription(f"uuid-{sub.uuid}", {"remaining_pause_cycles": None})  # it is required

    seeded = emulator.pause(sub.uuid, cycles=3)

    assert (seeded["state"], seeded["remaining_pause_cycles"]) == ("paused", 3)
    assert emulator.subscriptions("live") == []
    clock.advance(timedelta(days=1))
    resumed = client.resume_subscription(f"uuid-{sub.uuid}")
    assert (resumed.state, resumed.current_period_started_at) == ("active", START + timedelta(days=1))
    client.terminate_subscription(f"uuid-{sub.uuid}", params={"refund": "none"})
    with pytest.raises(errors.ValidationError):
        client.pause_subscription(f"uuid-{sub.uuid}", {"remaining_pause_cycles": 1})
    with pytest.raises(ValueError, match="expired"):
        emulator.pause(sub.uuid)


def test_a_listing_cut_short_on_demand_keeps_its_true_total(client: Any, emulator: RecurlyEmulator) -> None:
    catalog(client)
    for n in range(5):
        subscribe(client, account=f"amplify-team-{n}")
    emulator.cut_listings["list_subscriptions"] = 3

    listing = client.list_subscriptions(params={"state": "live", "limit": 2})
    served = [s.uuid for page in listing.pages() for s in page]

    assert len(served) == 3, "paging ends early, with has_more false"
    assert listing.count() == 5, "HEAD still counts every match"
    status, headers, body = raw(emulator, "GET", "/subscriptions?state=live&limit=200")
    assert (status, headers["Recurly-Total-Records"], len(json.loads(body)["data"])) == (200, "5", 3)
    assert json.loads(body)["has_more"] is False
    assert len(list(client.list_plans().items())) == 1, "other listings are whole"


def test_terminate_expires_now(client: Any, emulator: RecurlyEmulator, clock: VirtualClock) -> None:
    catalog(client)
    sub = subscribe(client)
    clock.advance(timedelta(days=1))

    ended = client.terminate_subscription(f"uuid-{sub.uuid}", params={"refund": "partial", "charge": True})

    assert (ended.state, ended.expires_at) == ("expired", START + timedelta(days=1))
    assert emulator.subscriptions("expired")[0]["uuid"] == sub.uuid
    with pytest.raises(errors.ValidationError):
        client.terminate_subscription(f"uuid-{sub.uuid}", params={"refund": "none", "charge": True})
    with pytest.raises(errors.BadRequestError):
        client.terminate_subscription(f"uuid-{sub.uuid}", params={"refund": "some"})


def test_terminate_without_charge_zeroes_unbilled_usage(client: Any, emulator: RecurlyEmulator) -> None:
    catalog(client)
    sub = subscribe(client)
    post_usage(client, sub.uuid, "a", 70, "2024-01-31T13:00:00Z")
    client.terminate_subscription(f"uuid-{sub.uuid}", params={"refund": "none", "charge": False})
    assert [(u["merchant_tag"], u["amount"]) for u in emulator.usage_records()] == [("a", 70.0), (None, -70.0)]


# ---- usage --------------------------------------------------------------------------------------------


def test_usage_create_list_filters_update_and_remove(
    client: Any, emulator: RecurlyEmulator, clock: VirtualClock
) -> None:
    catalog(client)
    sub = subscribe(client)
    clock.advance(timedelta(days=2))
    first = post_usage(client, sub.uuid, "amplify:s:q:20240131T000000Z", 120, "2024-01-31T13:00:00Z")
    second = post_usage(client, sub.uuid, "amplify:s:q:20240201T000000Z", 80, "2024-02-01T00:00:00Z")
    post_usage(client, sub.uuid, "amplify:s:q:20240201T000000Z", 80, "2024-02-01T00:00:00Z")  # no dedup in Recurly
    post_usage(client, sub.uuid, "tiered-1", 5, "2024-02-01T00:00:00Z", add_on="code-tiered")

    assert (first.amount, first.usage_type, first.tier_type, first.unit_amount_decimal) == (
        120.0,
        "price",
        "flat",
        "0.0025",
    )
    assert (first.usage_timestamp, first.recording_timestamp, first.billed_at) == (
        datetime(2024, 1, 31, 13, tzinfo=UTC),
        START + timedelta(days=2),
        None,
    )
    records = emulator.usage_records()
    assert [(r["merchant_tag"], r["subscription_uuid"], r["add_on_code"]) for r in records][-1] == (
        "tiered-1",
        sub.uuid,
        "tiered",
    )
    tags = [r["merchant_tag"] for r in records]
    assert tags.count("amplify:s:q:20240201T000000Z") == 2

    listed = client.list_usage(f"uuid-{sub.uuid}", "code-flat", params={"order": "asc"})
    assert [u.amount for u in listed.items()] == [120.0, 80.0, 80.0]
    exact = client.list_usage(
        f"uuid-{sub.uuid}",
        "code-flat",
        params={"billing_status": "all", "begin_time": "2024-02-01T00:00:00Z", "end_time": "2024-02-01T00:00:00Z"},
    )
    assert [u.merchant_tag for u in exact.items()] == ["amplify:s:q:20240201T000000Z"] * 2
    tiered = list(client.list_usage(f"uuid-{sub.uuid}", "code-tiered").items())
    assert [(u.tier_type, [t.ending_quantity for t in u.tiers]) for u in tiered] == [
        ("tiered", [1000, 5000, 999999999])
    ]

    updated = client.update_usage(second.id, {"amount": 95.7})
    assert updated.amount == 95.0  # digits after the decimal point are stripped
    assert client.get_usage(second.id).amount == 95.0
    assert isinstance(client.remove_usage(first.id), recurly.resource.Empty)
    with pytest.raises(errors.NotFoundError):
        client.get_usage(first.id)


USAGE_422 = [
    (
        "before activation",
        {"usage_timestamp": "2024-01-31T11:59:59Z"},
        {"usage_timestamp": "must not be before the subscription was activated (2024-01-31T12:00:00Z)"},
    ),
    ("no amount", {"amount": None}, {"amount": "can't be blank"}),
]


@pytest.mark.parametrize(("case", "changes", "expected"), USAGE_422, ids=[c[0] for c in USAGE_422])
def test_usage_validation(
    client: Any, emulator: RecurlyEmulator, case: str, changes: dict[str, Any], expected: dict[str, str]
) -> None:
    catalog(client)
    sub = subscribe(client)
    body = {"amount": 1, "merchant_tag": "t", "usage_timestamp": "2024-01-31T12:00:00Z", **changes}
    with pytest.raises(errors.ValidationError) as exc:
        client.create_usage(f"uuid-{sub.uuid}", "code-flat", body)
    assert params_of(exc) == expected
    assert emulator.usage_records() == []


def test_usage_refused_on_a_missing_add_on_and_an_expired_subscription(client: Any, emulator: RecurlyEmulator) -> None:
    catalog(client)
    sub = subscribe(client, add_ons=("flat",))
    with pytest.raises(errors.ValidationError) as exc:
        post_usage(client, sub.uuid, "t", 1, "2024-01-31T12:00:00Z", add_on="code-tiered")
    assert params_of(exc) == {"add_on_id": f"add-on tiered is not on subscription {sub.uuid}"}
    with pytest.raises(errors.NotFoundError):
        post_usage(client, sub.uuid, "t", 1, "2024-01-31T12:00:00Z", add_on="code-unknown")

    client.terminate_subscription(sub.id, params={"refund": "none", "charge": True})
    with pytest.raises(errors.ValidationError) as exc:
        post_usage(client, sub.uuid, "t", 1, "2024-01-31T12:00:00Z")
    assert params_of(exc) == {"subscription": f"{sub.uuid} is expired; usage cannot be recorded on it"}
    assert emulator.usage_records() == []


def test_usage_dated_into_an_invoiced_period_is_refused_for_volume_add_ons_only(
    client: Any, emulator: RecurlyEmulator, clock: VirtualClock
) -> None:
    client.create_measured_unit(unit_body())
    client.create_plan(plan_body("amplify-gold", tiered_add_on(), tiered_add_on("volume", tier_type="volume")))
    sub = subscribe(client, add_ons=("tiered", "volume"))
    when = "2024-01-31T12:00:00Z"
    post_usage(client, sub.uuid, "v", 10, when, add_on="code-volume")
    post_usage(client, sub.uuid, "t", 10, when, add_on="code-tiered")
    clock.advance(timedelta(days=30))
    assert emulator.bill(sub.uuid) == 2
    # reference/recurly-api.md §2.6: a correction into a billed cycle is taken for tiered, rejected for volume
    with pytest.raises(errors.ValidationError) as exc:
        post_usage(client, sub.uuid, "v:adj1", 2, when, add_on="code-volume")
    assert "usage corrections are not supported for volume add-ons" in params_of(exc)["usage_timestamp"]
    assert post_usage(client, sub.uuid, "t:adj1", 2, when, add_on="code-tiered").amount == 2
    later = (START + timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
    clock.advance(timedelta(days=2))
    assert post_usage(client, sub.uuid, "v2", 3, later, add_on="code-volume").amount == 3


def test_billed_usage_is_frozen_except_its_merchant_tag(
    client: Any, emulator: RecurlyEmulator, clock: VirtualClock
) -> None:
    catalog(client)
    sub = subscribe(client)
    other = subscribe(client, account="amplify-team-2")
    record = post_usage(client, sub.uuid, "tag", 10, "2024-01-31T12:00:00Z")
    post_usage(client, other.uuid, "other", 3, "2024-01-31T12:00:00Z")
    clock.advance(timedelta(days=30))

    assert emulator.bill(sub.uuid) == 1

    billed = client.get_usage(record.id)
    assert billed.billed_at == START + timedelta(days=30)
    with pytest.raises(errors.ValidationError) as exc:
        client.update_usage(record.id, {"amount": 11})
    assert params_of(exc) == {"amount": "cannot be changed on billed usage; only merchant_tag can"}
    with pytest.raises(errors.ValidationError):
        client.remove_usage(record.id)
    assert client.update_usage(record.id, {"merchant_tag": "tag:restated", "amount": 10}).merchant_tag == "tag:restated"
    flat = f"uuid-{sub.uuid}"
    assert [u.id for u in client.list_usage(flat, "code-flat", params={"billing_status": "billed"}).items()] == [
        record.id
    ]
    assert list(client.list_usage(flat, "code-flat").items()) == []  # default: unbilled only
    # the HTTP form bills the rest, without credentials
    status, _headers, body = raw(emulator, "POST", "/_sandbox/bill", b"{}", auth=False)
    assert (status, json.loads(body)) == (200, {"billed": 1})
    assert all(u["billed_at"] is not None for u in emulator.usage_records())
    with pytest.raises(ValueError, match="Couldn't find Subscription"):
        emulator.bill("0" * 32)


# ---- idempotency, auth, faults, rate limits ------------------------------------------------------------


def test_idempotency_key_replays_the_first_answer(client: Any, emulator: RecurlyEmulator) -> None:
    catalog(client)
    sub = subscribe(client)

    first = post_usage(client, sub.uuid, "tag", 10, "2024-01-31T12:00:00Z", **{"Idempotency-Key": "usage:tag"})
    again = post_usage(client, sub.uuid, "tag", 10, "2024-01-31T12:00:00Z", **{"Idempotency-Key": "usage:tag"})

    assert again.id == first.id
    assert len(emulator.usage_records()) == 1
    # the client exposes no accessor for other headers; its Response keeps them all
    assert first.get_response()._Response__headers.get("Idempotency-Prior") is None
    assert again.get_response()._Response__headers.get("Idempotency-Prior") == "true"
    with pytest.raises(errors.ValidationError, match="Idempotency-Key reused with a different request"):
        post_usage(client, sub.uuid, "tag", 11, "2024-01-31T12:00:00Z", **{"Idempotency-Key": "usage:tag"})
    assert len(emulator.usage_records()) == 1


def test_a_refused_request_is_not_remembered_under_its_key(client: Any) -> None:
    body = plan_body("p", flat_add_on())
    with pytest.raises(errors.ValidationError):
        client.create_plan(body, headers={"Idempotency-Key": "plan:p"})  # the measured unit is missing
    client.create_measured_unit(unit_body())
    assert client.create_plan(body, headers={"Idempotency-Key": "plan:p"}).code == "p"


def test_wrong_api_key_is_unauthorized(emulator: RecurlyEmulator) -> None:
    with pytest.raises(errors.UnauthorizedError) as exc:
        connect(emulator, "wrong-key").get_plan("code-x")
    assert exc.value.error.type == "unauthorized"
    status, _headers, _body = raw(emulator, "GET", "/plans", auth=False)
    assert status == 401


def test_injected_server_errors_speak_the_api_format(client: Any, emulator: RecurlyEmulator) -> None:
    emulator.inject("503", nth=1)
    with pytest.raises(errors.ServiceUnavailableError):
        client.get_site("subdomain-sandbox")
    assert client.get_site("subdomain-sandbox").subdomain == "sandbox"  # only the first request failed

    emulator.inject("empty", route="list_plans", times=1)
    with pytest.raises(recurly.ApiError) as exc:
        next(client.list_plans().pages())
    assert type(exc.value) is recurly.ApiError and exc.value.error is None

    emulator.inject("502", method="GET", path="^/sites$", times=1)
    with pytest.raises(errors.BadGatewayError):
        next(client.list_sites().pages())


def test_dropped_connection_after_a_usage_post_loses_the_answer_not_the_record(
    client: Any, emulator: RecurlyEmulator
) -> None:
    catalog(client)
    sub = subscribe(client)
    emulator.inject("drop_after", route="create_usage", times=1)

    with pytest.raises(recurly.NetworkError):
        post_usage(client, sub.uuid, "tag", 10, "2024-01-31T12:00:00Z", **{"Idempotency-Key": "usage:tag"})

    stored = emulator.usage_records()
    assert [r["merchant_tag"] for r in stored] == ["tag"]
    # a retry with the same key (on a new connection, as the gateway makes one) gets the stored answer
    retried = post_usage(
        connect(emulator), sub.uuid, "tag", 10, "2024-01-31T12:00:00Z", **{"Idempotency-Key": "usage:tag"}
    )
    assert retried.id == stored[0]["id"]
    assert len(emulator.usage_records()) == 1


def test_rate_limit_headers_and_refusal(clock: VirtualClock) -> None:
    emu = RecurlyEmulator(api_key=KEY, clock=clock, rate_limit=3)
    now = [1_700_000_000.0]
    emu.wall_clock = lambda: now[0]
    with emu:
        client = connect(emu)
        remaining = [client.get_site("subdomain-sandbox").get_response().rate_limit_remaining for _ in range(3)]
        assert remaining == [2, 1, 0]
        with pytest.raises(errors.RateLimitedError) as exc:
            client.get_site("subdomain-sandbox")
        # the first counted request leaves the window 300 s after it was made (the client answers naive UTC)
        assert exc.value.error.get_response().rate_limit_reset == datetime(2023, 11, 14, 22, 18, 20)
        assert emu.count(route="get_site") == 4

        now[0] += 300  # the sliding window has moved past every counted request
        answer = client.get_site("subdomain-sandbox").get_response()
        assert (answer.rate_limit, answer.rate_limit_remaining) == (3, 2)


def test_unlimited_emulator_still_sends_rate_limit_headers(client: Any, emulator: RecurlyEmulator) -> None:
    for _ in range(3):
        response = client.get_site("subdomain-sandbox").get_response()
    assert (response.rate_limit, response.rate_limit_remaining) == (400, 400)  # nothing metered, nothing to wait for
    assert response.rate_limit_reset is not None and response.request_id

    emulator.inject("429", nth=1)
    with pytest.raises(errors.RateLimitedError) as exc:
        client.get_site("subdomain-sandbox")
    refused = exc.value.error.get_response()
    assert refused.rate_limit_remaining == 0
    # an injected 429 is a short squeeze: the budget is back within a second, not after the 5-minute window
    assert refused.rate_limit_reset <= datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1)


def test_future_subscription_starts_with_the_clock(client: Any, clock: VirtualClock) -> None:
    catalog(client)
    body = {
        "plan_code": "amplify-gold",
        "currency": "USD",
        "account": {"code": "a1"},
        "add_ons": [{"code": "flat"}],
        "starts_at": "2024-02-10T00:00:00Z",
    }
    future = client.create_subscription(body)
    assert (future.state, future.activated_at, future.current_period_started_at) == (
        "future",
        None,
        datetime(2024, 2, 10, tzinfo=UTC),
    )
    with pytest.raises(errors.ValidationError):
        post_usage(client, future.uuid, "early", 1, "2024-02-01T00:00:00Z")

    clock.set(datetime(2024, 2, 10, 1, tzinfo=UTC))

    started = client.get_subscription(future.id)
    assert (started.state, started.activated_at) == ("active", datetime(2024, 2, 10, tzinfo=UTC))
    assert post_usage(client, future.uuid, "on time", 1, "2024-02-10T00:30:00Z").amount == 1.0
    never = client.create_subscription({**body, "account": {"code": "a2"}, "starts_at": "2024-03-01T00:00:00Z"})
    canceled = client.cancel_subscription(never.id)
    assert (canceled.state, canceled.expires_at) == ("canceled", datetime(2024, 3, 1, tzinfo=UTC))


def test_ids_are_reproducible_from_the_seed(clock: VirtualClock) -> None:
    ids = []
    for _ in range(2):
        with RecurlyEmulator(api_key=KEY, clock=clock, seed=42) as emu:
            client = connect(emu)
            client.create_measured_unit(unit_body())
            plan = client.create_plan(plan_body("p", flat_add_on()))
            sub = client.create_subscription({"plan_code": "p", "currency": "USD", "account": {"code": "a"}})
            ids.append((plan.id, sub.id, sub.uuid))
    assert ids[0] == ids[1]


def test_custom_field_definitions_and_sites(client: Any, emulator: RecurlyEmulator) -> None:
    emulator.seed_custom_field_definition("plan_ref", "plan")
    subscription_fields = client.list_custom_field_definitions(params={"related_type": "subscription"}).items()
    assert [(d.name, d.related_type) for d in subscription_fields] == [(CUSTOM_FIELD, "subscription")]
    site = next(client.list_sites(params={"limit": 1}).pages())[0]
    assert (site.subdomain, site.mode) == ("sandbox", "sandbox")
    assert client.get_site(site.id).id == site.id
    with pytest.raises(ValueError, match="already defined"):
        emulator.seed_custom_field_definition("plan_ref", "plan")


# ---- the answers match Recurly's own schemas -----------------------------------------------------------


def _schemas() -> dict[str, Any]:
    """``components`` of Recurly's OpenAPI document, its ``/…/i`` regex literals made Python patterns."""
    import yaml

    document = yaml.load(OPENAPI.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))

    def convert(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                literal = (
                    re.fullmatch(r"/(.*)/([a-z]*)", value, re.S)
                    if key == "pattern" and isinstance(value, str)
                    else None
                )
                if literal:
                    node[key] = ("(?i)" if "i" in literal.group(2) else "") + literal.group(1)
                else:
                    convert(value)
        elif isinstance(node, list):
            for value in node:
                convert(value)

    convert(document["components"])
    return dict(document["components"])


def _without_nulls(value: Any) -> Any:
    """The document declares no field nullable, yet the API answers null for unset fields: compare the rest."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_the_contract_check_always_has_recurlys_document(recurly_contract: Any) -> None:
    """The document ships with the tests: the request contract check (conftest) and the schema check below run
    in every checkout, with nothing next to the project."""
    import yaml

    assert OPENAPI.is_file(), f"{OPENAPI} is missing: copy Recurly's OpenAPI document there (see tests/data/README.md)"
    info = yaml.load(OPENAPI.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["info"]
    assert (info["title"], info["version"]) == ("Recurly V3 API", "v2021-02-25")
    assert recurly_contract is not None and recurly_contract.api is not None


def test_answers_match_the_openapi_schemas(client: Any, emulator: RecurlyEmulator) -> None:
    import jsonschema

    components = _schemas()
    catalog(client)
    sub = subscribe(client)
    usage = post_usage(client, sub.uuid, "tag", 3, "2024-01-31T12:00:00Z", add_on="code-tiered")
    client.cancel_subscription(sub.id)
    emulator.bill()
    answers = {
        "Plan": "/plans/code-amplify-gold",
        "PlanList": "/plans",
        "AddOnList": "/add_ons",
        "AddOn": "/plans/code-amplify-gold/add_ons/code-flat",
        "MeasuredUnitList": "/measured_units",
        "AccountList": "/accounts",
        "Account": "/accounts/code-amplify-team-1",
        "SubscriptionList": "/subscriptions?state=live",
        "Subscription": f"/subscriptions/uuid-{sub.uuid}",
        "UsageList": f"/subscriptions/{sub.id}/add_ons/code-tiered/usage?billing_status=all",
        "Usage": f"/usage/{usage.id}",
        "SiteList": "/sites",
        "CustomFieldDefinitionList": "/custom_field_definitions",
    }
    problems = []
    for schema, path in answers.items():
        status, _headers, body = raw(emulator, "GET", path)
        assert status == 200, path
        validator = jsonschema.Draft4Validator({"$ref": f"#/components/schemas/{schema}", "components": components})
        problems += [
            f"{schema} {list(e.path)}: {e.message}" for e in validator.iter_errors(_without_nulls(json.loads(body)))
        ]
    status, _headers, body = raw(emulator, "GET", "/plans/code-missing")
    error_schema = {"$ref": "#/components/schemas/Error", "components": components}
    problems += [e.message for e in jsonschema.Draft4Validator(error_schema).iter_errors(json.loads(body)["error"])]
    assert problems == []
