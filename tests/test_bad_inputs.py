"""The bad-input corpus: malformed Amplify resources, malformed Recurly answers and malformed usage files.

Every case runs through the real pipeline against the sandbox emulators and must end in one of:

- a **finding** (an ``unsupported`` or ``finding`` row that names the resource and the problem), or
- a **clear error** (an ``AmplifyBillingError`` with a message that names the problem; the CLI's exit code), or
- **accepted** (the value is read exactly or sanitised as DESIGN.md §2 says, and the result is checked), or
- **ignored** (the server-side filter never returns the resource, so it belongs to nothing the tool bills);

never a traceback (any other exception), and never a write derived from the bad object; the other objects of the
same run still sync. Every Recurly request is also checked against Recurly's OpenAPI document, as in conftest.py.

Decisions the corpus pins down (each case's ``why`` says it again where it matters):
- numbers written as strings ("49.00", tier cost "0.01", limit "5000") are read exactly and accepted: a decimal
  string loses nothing, and JSON APIs often send money that way; words, "NaN", infinities, negatives are refused;
- titles keep every character (unicode, emoji, RTL) in Recurly plan and add-on names, cut at Recurly's 255;
  measured-unit display names are reduced to ``[A-Za-z0-9_ ]`` ≤ 50 (DESIGN.md §2);
- an id whose Recurly code would not be ``[a-z0-9_-]`` ≤ 50 is refused (unsupported), never mangled; an uppercase
  id is lowercased (codes are lowercase throughout, and Amplify ids are hex);
- a currency is never trimmed or guessed: "usd " and "EURO" are refused, "usd" is uppercased;
- a usage file may start with a byte order mark and use CRLF line ends (spreadsheet exports do both).

At the end one line sums the corpus up: ``bad-input corpus: N cases: …``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from amplify_billing.changes import ChangeKind, CommandReport, Outcome
from amplify_billing.errors import AmplifyBillingError, ExitCode
from amplify_billing.sandbox.clock import VirtualClock
from amplify_billing.sandbox.harness import Sandbox
from amplify_billing.sandbox.scenario import Scenario, build_scenario
from amplify_billing.sandbox.server import RecordedRequest, Request, Response
from tools.driver import Cycle, amplify_writes, failed, recurly_writes

TODAY = datetime(2026, 11, 20, tzinfo=UTC)  # as in conftest.py
CONTROL_PLAN = "weather-payg"  # a good plan synced in every case: the bad object must not stop the others
CONTROL_SUB = "0f0f0f0f-0000-4000-8000-00000000c0de"
CONTROL_SUB_ID = "c0dec0dec0dec0dec0dec0dec0dec0de"

FINDING, ERROR, ACCEPTED, IGNORED, TRACEBACK = "finding", "clear error", "accepted", "ignored", "traceback"

# What each case ended as, filled as the cases run; the last test of the module sums it up.
OUTCOMES: dict[str, str] = {}
BAD_WRITES: dict[str, int] = {}


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return build_scenario(seed=3, subscriptions=8, now=TODAY, days_of_traffic=1)


class Sandboxes:
    """Sandboxes started by one level of the corpus; stopped and checked against Recurly's contract at its end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Sandbox] = []

    def start(self, clock: VirtualClock) -> Sandbox:
        state = self.tmp / f"state-{len(self.started)}"
        state.mkdir()
        sandbox = Sandbox.start(clock=clock, state_dir=state, seed=3)
        self.started.append(sandbox)
        return sandbox

    def finish(self, contract: Any) -> None:
        for sandbox in self.started:
            sandbox.stop()
        if contract is not None:
            problems = [p for s in self.started for p in contract.violations(list(s.recurly.requests))]
            assert problems == [], "requests that break Recurly's OpenAPI contract:\n" + "\n".join(problems[:20])


def _case_id(text: str) -> str:
    """A 32-hex id per case and role, stable from run to run, like the Amplify ids it stands for."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# ---- the world: what every case shares, and each case's own copy of a plan or a subscription -------------------


def _subscription(
    scenario: Scenario, name: str, sid: str, plan: dict[str, Any], team: dict[str, Any]
) -> dict[str, Any]:
    """An approved, active subscription owned by ``team``, on ``plan``."""
    template = next(
        s
        for s in scenario.subscriptions
        if (s.get("approval") or {}).get("state") == "approved" and (s.get("state") or {}).get("name") == "active"
    )
    sub = copy.deepcopy(template)
    owner = {"type": "team", "id": team["guid"], "organization": {"id": str(scenario.org["org_id"])}}
    sub.update(name=name, title=f"{team['name']} - {plan['title']}", owner=owner)
    sub["metadata"]["id"] = sid
    sub["spec"] = {"product": plan["spec"]["product"], "plan": {"name": plan["name"]}, "data": {}}
    sub["marketplace"]["resource"]["owner"] = copy.deepcopy(owner)
    return sub


@dataclass
class Shared:
    """The good part of the catalog: the control plan, its subscriptions, the units, the owners."""

    scenario: Scenario
    products: list[dict[str, Any]]
    units: list[dict[str, Any]]
    plans: list[dict[str, Any]]
    quotas: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]

    @classmethod
    def build(cls, scenario: Scenario, subscriptions: dict[str, str] | None = None) -> Shared:
        """``subscriptions``: name -> id of the good subscriptions on the control plan (default: one)."""
        plan = copy.deepcopy(next(p for p in scenario.plans if p["name"] == CONTROL_PLAN))
        wanted = subscriptions or {CONTROL_SUB: CONTROL_SUB_ID}
        teams = scenario.teams
        return cls(
            scenario=scenario,
            products=[copy.deepcopy(p) for p in scenario.products if p["name"] == plan["spec"]["product"]],
            units=[copy.deepcopy(u) for u in scenario.units],
            plans=[plan],
            quotas=[copy.deepcopy(q) for q in scenario.quotas if q["metadata"]["scope"]["name"] == CONTROL_PLAN],
            subscriptions=[
                _subscription(scenario, name, sid, plan, teams[n % len(teams)])
                for n, (name, sid) in enumerate(wanted.items())
            ],
        )

    def quota_id(self) -> str:
        return str(self.quotas[0]["metadata"]["id"])

    def seed(self, sandbox: Sandbox) -> None:
        amplify = sandbox.amplify
        for resource in (*self.products, *self.units, self.scenario.marketplace, *self.plans, *self.quotas):
            amplify.put_resource(resource)
        for resource in self.subscriptions:
            amplify.put_resource(resource)
        amplify.add_org(self.scenario.org)
        for team in self.scenario.teams:
            amplify.add_team(team)
        for user in self.scenario.users:
            amplify.add_user(user)


@dataclass
class World:
    """One case's own objects: a product with a copy of the target plan and its quotas (none when the case is
    about a subscription, which then sits on the control plan), and a subscription to that plan."""

    case: str
    shared: Shared
    products: list[dict[str, Any]]
    plans: list[dict[str, Any]]
    quotas: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]

    def plan(self) -> dict[str, Any]:
        return (self.plans or self.shared.plans)[0]

    def quota(self) -> dict[str, Any]:
        return (self.quotas or self.shared.quotas)[0]

    def product(self) -> dict[str, Any]:
        return (self.products or self.shared.products)[0]

    def sub(self) -> dict[str, Any]:
        return self.subscriptions[0]

    def unit(self, name: str = "transactions") -> dict[str, Any]:
        return next(u for u in self.shared.units if u["name"] == name)

    def seed(self, sandbox: Sandbox) -> None:
        for resource in (*self.products, *self.plans, *self.quotas, *self.subscriptions):
            sandbox.amplify.put_resource(resource)


def make_world(shared: Shared, index: int, case_id: str, target: str) -> World:
    """Case ``index``'s objects, named ``c{index}-…`` and with ids derived from ``case_id``; the plan title
    ``[case_id]`` marks any Recurly write derived from it."""
    scenario = shared.scenario
    prefix = f"c{index:02d}"
    products: list[dict[str, Any]] = []
    plans: list[dict[str, Any]] = []
    quotas: list[dict[str, Any]] = []
    plan = shared.plans[0]
    if target != CONTROL_PLAN:
        product = copy.deepcopy(shared.products[0])
        product.update(name=f"{prefix}-api")
        product["metadata"]["id"] = _case_id(f"{case_id}/product")
        plan = copy.deepcopy(next(p for p in scenario.plans if p["name"] == target))
        plan.update(name=f"{prefix}-{target}", title=f"[{case_id}]")
        plan["metadata"]["id"] = _case_id(f"{case_id}/plan")
        plan["spec"]["product"] = product["name"]
        for n, source in enumerate(q for q in scenario.quotas if q["metadata"]["scope"]["name"] == target):
            quota = copy.deepcopy(source)
            quota["metadata"]["id"] = _case_id(f"{case_id}/quota{n}")
            quota["metadata"]["scope"]["name"] = plan["name"]
            quotas.append(quota)
        products, plans = [product], [plan]
    sub = _subscription(scenario, f"{prefix}-subscription", _case_id(f"{case_id}/sub"), plan, scenario.teams[1])
    return World(case_id, shared, products, plans, quotas, [sub])


# ---- what a run did ---------------------------------------------------------------------------------------------


def _results(reports: list[CommandReport]) -> list[Any]:
    return [r for report in reports for r in report.results]


def _reported(reports: list[CommandReport]) -> list[str]:
    """Every finding and unsupported row as one line: kind, object, Amplify identity, summary."""
    return [
        f"{r.change.kind.value} {r.change.object} {r.change.amplify}: {r.change.summary}"
        for r in _results(reports)
        if r.change.kind in (ChangeKind.FINDING, ChangeKind.UNSUPPORTED) and r.outcome is Outcome.REPORTED
    ]


def _request_text(r: RecordedRequest) -> str:
    return (r.path + " " + json.dumps(r.body, ensure_ascii=False, default=str)).lower()


def _writes_touching(requests: list[RecordedRequest], tokens: set[str]) -> list[str]:
    lowered = {t.lower() for t in tokens if t}
    return [f"{r.method} {r.path} {r.body}" for r in requests if any(t in _request_text(r) for t in lowered)]


def _live_ids(sandbox: Sandbox) -> set[str]:
    """Amplify ids of the live Recurly subscriptions (from the custom field)."""
    return {
        f["value"]
        for s in sandbox.recurly.subscriptions(state="active")
        for f in s.get("custom_fields") or ()
        if f["name"] == "amplify_subscription_id"
    }


# ---- level 1: Amplify resources ----------------------------------------------------------------------------------

Mutation = Callable[[World], None]


@dataclass(frozen=True)
class AmplifyCase:
    id: str
    mutate: Mutation
    expect: str  # FINDING | ACCEPTED | IGNORED
    names: str = "plan"  # the resource the finding must name: the case's plan, sub(scription) or product
    says: str = ""  # the problem the finding must state
    target: str = "weather-graduated"
    check: Callable[[Sandbox, World], None] | None = None  # for accepted cases: what reached Recurly
    after_seed: Callable[[Sandbox, World], None] | None = None  # a change the emulator's seeding would undo
    why: str = ""


def _set(path: str, value: Any, *, on: str = "plan") -> Mutation:
    """Set (or with ``value is DELETE`` remove) a dotted path of the target plan, quota or subscription."""

    def mutate(world: World) -> None:
        node: Any = {"plan": world.plan, "quota": world.quota, "sub": world.sub}[on]()
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        last = parts[-1]
        if value is DELETE:
            if isinstance(node, list):
                del node[int(last)]
            else:
                node.pop(last, None)
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


DELETE: Any = object()
TIERS = "spec.pricing.limit.tiers"


def _swap_tiers(world: World) -> None:
    tiers = world.quota()["spec"]["pricing"]["limit"]["tiers"]
    tiers[0], tiers[1] = tiers[1], tiers[0]


def _drop_stored_id(kind: str) -> Callable[[Sandbox, World], None]:
    """The emulator gives every seeded resource an id, as the server would; remove it after seeding."""

    def drop(sandbox: Sandbox, world: World) -> None:
        resource = {"ProductPlan": world.plan, "Subscription": world.sub, "Product": world.product}[kind]()
        with sandbox.amplify.lock:
            sandbox.amplify._store[kind][("", resource["name"])]["metadata"].pop("id")

    return drop


def _recurly_plan(sandbox: Sandbox, world: World) -> dict[str, Any]:
    code = "amplify-" + world.plan()["metadata"]["id"].lower()
    return next(p for p in sandbox.recurly.plans() if p["code"] == code)


def _expect_plan_name(name: str) -> Callable[[Sandbox, World], None]:
    def check(sandbox: Sandbox, world: World) -> None:
        assert _recurly_plan(sandbox, world)["name"] == name

    return check


def _expect_plan_price(amount: float) -> Callable[[Sandbox, World], None]:
    def check(sandbox: Sandbox, world: World) -> None:
        assert _recurly_plan(sandbox, world)["currencies"][0]["unit_amount"] == amount

    return check


def _expect_code(code: str) -> Callable[[Sandbox, World], None]:
    def check(sandbox: Sandbox, world: World) -> None:
        assert code in {p["code"] for p in sandbox.recurly.plans()}, code

    return check


def _expect_add_on(**wanted: Any) -> Callable[[Sandbox, World], None]:
    def check(sandbox: Sandbox, world: World) -> None:
        add_ons = sandbox.recurly.add_ons(_recurly_plan(sandbox, world)["code"])
        assert len(add_ons) == 1
        add_on = add_ons[0]
        for key, value in wanted.items():
            if key == "tiers":
                got = [(t.get("ending_quantity"), t["currencies"][0]["unit_amount_decimal"]) for t in add_on["tiers"]]
                assert got == value, got
            else:
                assert add_on[key] == value, add_on[key]

    return check


def _expect_unit_display(display: str) -> Callable[[Sandbox, World], None]:
    def check(sandbox: Sandbox, world: World) -> None:
        units = {u["name"]: u["display_name"] for u in sandbox.recurly.measured_units()}
        assert units["transactions"] == display, units

    return check


UNICODE_TITLE = "Über Plan 🚀 خطة עברית \u202eRTL"
LONG_TITLE = "Long " + "x" * 295
LONG_ID = "a" * 50
OPEN = 999_999_999  # how the emulator, like Recurly, answers an open last tier
UUID_ID = "3f2a9c1e-7b4d-4e8a-9c2f-1a2b3c4d5e6f"

AMPLIFY_CASES: tuple[AmplifyCase, ...] = (
    # ---- the plan
    AmplifyCase(
        "plan-spec-missing",
        _set("spec", DELETE),
        IGNORED,
        why="the listing filters on spec.product server-side: a plan without spec is in no opted-in product",
    ),
    AmplifyCase("plan-spec-empty", _set("spec", {"product": "weather-api"}), FINDING, says="spec.type is missing"),
    AmplifyCase("plan-billing-missing", _set("spec.billing", DELETE), FINDING, says="spec.billing is missing"),
    AmplifyCase(
        "plan-price-word",
        _set("spec.billing.price", "ten"),
        FINDING,
        says="spec.billing.price must be a number, got 'ten'",
    ),
    AmplifyCase("plan-price-negative", _set("spec.billing.price", -1), FINDING, says="must not be negative"),
    AmplifyCase(
        "plan-price-1e400",
        _set("spec.billing.price", float("inf")),
        FINDING,
        says="spec.billing.price must be a finite number",
        why="JSON 1e400 decodes to an infinite float; the emulator sends it as Infinity, which decodes alike",
    ),
    AmplifyCase("plan-price-nan-string", _set("spec.billing.price", "NaN"), FINDING, says="must be a finite number"),
    AmplifyCase(
        "plan-price-numeric-string",
        _set("spec.billing.price", "49.00"),
        ACCEPTED,
        check=_expect_plan_price(49),
        why="a decimal string is exact: read as 49.00",
    ),
    AmplifyCase(
        "plan-price-3-decimals", _set("spec.billing.price", 49.999), FINDING, says="more than 2 decimal places"
    ),
    AmplifyCase("plan-price-too-high", _set("spec.billing.price", 2_000_000), FINDING, says="above Recurly's maximum"),
    AmplifyCase(
        "plan-setup-price-word",
        _set("spec.billing.setup.price", "free"),
        FINDING,
        says="spec.billing.setup.price must be a number",
    ),
    AmplifyCase(
        "plan-currency-trailing-space",
        _set("spec.billing.currency", "usd "),
        FINDING,
        says="is not an ISO 4217 code",
        why="never trimmed or guessed",
    ),
    AmplifyCase(
        "plan-currency-empty", _set("spec.billing.currency", ""), FINDING, says="spec.billing.currency is missing"
    ),
    AmplifyCase(
        "plan-currency-EURO", _set("spec.billing.currency", "EURO"), FINDING, says="'EURO' is not an ISO 4217 code"
    ),
    AmplifyCase(
        "plan-currency-number",
        _set("spec.billing.currency", 840),
        FINDING,
        says="spec.billing.currency must be a string",
    ),
    AmplifyCase(
        "plan-interval-weekly",
        _set("spec.billing.interval", "weekly"),
        FINDING,
        says="unknown billing interval 'weekly'",
    ),
    AmplifyCase("plan-type-unknown", _set("spec.type", "premium"), FINDING, says="unknown plan type 'premium'"),
    AmplifyCase("plan-state-unknown", _set("state", "retired"), FINDING, says="unknown plan state 'retired'"),
    AmplifyCase("plan-state-number", _set("state", 42), FINDING, says="state must be a string, got int 42"),
    AmplifyCase(
        "plan-renewal-unknown",
        _set("spec.subscription.renewal", "sometimes"),
        FINDING,
        says="unknown renewal 'sometimes'",
    ),
    AmplifyCase(
        "plan-cycles-negative",
        _set("spec.subscription.cycles", -3),
        FINDING,
        says="spec.subscription.cycles must be a whole number ≥ 0",
    ),
    AmplifyCase(
        "plan-cycles-fraction",
        _set("spec.subscription.cycles", 1.5),
        FINDING,
        says="spec.subscription.cycles must be a whole number ≥ 0",
    ),
    AmplifyCase(
        "plan-title-unicode",
        _set("title", UNICODE_TITLE),
        ACCEPTED,
        check=_expect_plan_name(f"Weather API - {UNICODE_TITLE}"),
        why="Recurly plan names take any text: unicode, emoji and RTL reach it intact",
    ),
    AmplifyCase(
        "plan-title-300-chars",
        _set("title", LONG_TITLE),
        ACCEPTED,
        check=_expect_plan_name(f"Weather API - {LONG_TITLE}"[:255]),
        why="cut at Recurly's 255 characters: names identify nothing, codes do",
    ),
    AmplifyCase(
        "plan-id-uppercase",
        _set("metadata.id", "ABCDEF0123456789ABCDEF0123456789"),
        ACCEPTED,
        check=_expect_code("amplify-abcdef0123456789abcdef0123456789"),
        why="codes are lowercase throughout; Amplify ids are hex, so no two ids collide",
    ),
    AmplifyCase(
        "plan-id-uuid-dashes",
        _set("metadata.id", UUID_ID),
        ACCEPTED,
        check=_expect_code(f"amplify-{UUID_ID}"),
        why="44 characters of [a-z0-9-]: a valid code",
    ),
    AmplifyCase("plan-id-dots", _set("metadata.id", "abc.def"), FINDING, says="not a valid Recurly plan code"),
    AmplifyCase("plan-id-spaces", _set("metadata.id", "abc def"), FINDING, says="not a valid Recurly plan code"),
    AmplifyCase(
        "plan-id-too-long",
        _set("metadata.id", LONG_ID),
        FINDING,
        says="not a valid Recurly plan code",
        why="amplify- plus 50 characters is longer than Recurly's 50",
    ),
    AmplifyCase(
        "plan-id-missing",
        lambda w: None,
        FINDING,
        says="metadata.id is missing",
        after_seed=_drop_stored_id("ProductPlan"),
    ),
    # ---- its quota
    AmplifyCase(
        "quota-pricing-missing", _set("spec.pricing", DELETE, on="quota"), FINDING, says="spec.pricing is missing"
    ),
    AmplifyCase(
        "quota-pricing-type-unknown",
        _set("spec.pricing.type", "tieredPerUnit", on="quota"),
        FINDING,
        says="unknown pricing type 'tieredPerUnit'",
    ),
    AmplifyCase(
        "quota-pricing-type-number",
        _set("spec.pricing.type", 7, on="quota"),
        FINDING,
        says="spec.pricing.type must be a string",
    ),
    AmplifyCase("quota-unit-missing", _set("spec.unit", DELETE, on="quota"), FINDING, says="spec.unit is missing"),
    AmplifyCase(
        "quota-interval-weekly",
        _set("spec.pricing.interval", "weekly", on="quota"),
        FINDING,
        says="prices per weekly period",
    ),
    AmplifyCase("quota-tiers-out-of-order", _swap_tiers, FINDING, says="the first tier must start at 0 or 1"),
    AmplifyCase(
        "quota-tiers-overlap",
        _set(f"{TIERS}.1.from", 5_000, on="quota"),
        FINDING,
        says="starts at 5000 but the previous tier ends at 10000",
    ),
    AmplifyCase(
        "quota-tiers-gap",
        _set(f"{TIERS}.1.from", 20_000, on="quota"),
        FINDING,
        says="starts at 20000 but the previous tier ends at 10000",
    ),
    AmplifyCase(
        "quota-tier-to-below-from",
        _set(f"{TIERS}.0", {"from": 100, "to": 50, "cost": 0.004}, on="quota"),
        FINDING,
        says="ends at 50, before it starts at 100",
    ),
    AmplifyCase(
        "quota-tier-cost-string",
        _set(f"{TIERS}.0.cost", "0.01", on="quota"),
        ACCEPTED,
        check=_expect_add_on(tiers=[(10_000, "0.01"), (100_000, "0.003"), (1_000_000, "0.002"), (OPEN, "0.001")]),
        why="a decimal string is exact: the tier costs 0.01",
    ),
    AmplifyCase(
        "quota-tier-cost-word",
        _set(f"{TIERS}.0.cost", "cheap", on="quota"),
        FINDING,
        says="tiers[0].cost must be a number, got 'cheap'",
    ),
    AmplifyCase("quota-tier-flat-fee", _set(f"{TIERS}.1.flatFee", 5, on="quota"), FINDING, says="flat fee"),
    AmplifyCase("quota-tiers-empty", _set(TIERS, [], on="quota"), FINDING, says="tiers must be a non-empty list"),
    AmplifyCase(
        "quota-tiers-not-a-list",
        _set(TIERS, {"from": 1, "cost": 1}, on="quota"),
        FINDING,
        says="tiers must be a non-empty list",
    ),
    AmplifyCase(
        "quota-tier-not-an-object", _set(f"{TIERS}.1", 5, on="quota"), FINDING, says="tiers[1] must be an object"
    ),
    AmplifyCase(
        "quota-tier-middle-open",
        _set(f"{TIERS}.1.to", DELETE, on="quota"),
        FINDING,
        says="open-ended but is not the last tier",
    ),
    AmplifyCase(
        "quota-last-tier-closed",
        _set(f"{TIERS}.3.to", 5_000_000, on="quota"),
        FINDING,
        says="the last tier must be open",
    ),
    AmplifyCase(
        "quota-tier-negative-from",
        _set(f"{TIERS}.0.from", -1, on="quota"),
        FINDING,
        says="tiers[0].from must be a whole number ≥ 0",
    ),
    AmplifyCase(
        "quota-limit-value-string",
        _set("spec.pricing.limit.value", "5000", on="quota"),
        ACCEPTED,
        target="weather-standard",
        check=_expect_add_on(tiers=[(5000, "0"), (OPEN, "0.01")]),
        why="a whole-number string is exact: 5000 included units",
    ),
    AmplifyCase(
        "quota-limit-value-negative",
        _set("spec.pricing.limit.value", -5, on="quota"),
        FINDING,
        target="weather-standard",
        says="limit.value must be a whole number ≥ 0",
    ),
    AmplifyCase(
        "quota-limit-type-unknown",
        _set("spec.pricing.limit.type", "soft", on="quota"),
        FINDING,
        target="weather-standard",
        says="unknown fixed limit type 'soft'",
    ),
    AmplifyCase(
        "quota-overage-missing",
        _set("spec.pricing.limit.overages", DELETE, on="quota"),
        FINDING,
        target="weather-standard",
        says="overages is missing",
    ),
    AmplifyCase(
        "quota-cost-word",
        _set("spec.pricing.cost", "ten", on="quota"),
        FINDING,
        target="weather-annual",
        says="spec.pricing.cost must be a number, got 'ten'",
    ),
    AmplifyCase(
        "quota-cost-too-precise",
        _set("spec.pricing.cost", 1e-12, on="quota"),
        FINDING,
        target="weather-annual",
        says="more than 9 decimal places",
    ),
    AmplifyCase(
        "quota-title-unicode",
        _set("title", "API calls 📞 مكالمات", on="quota"),
        ACCEPTED,
        check=_expect_add_on(name="API calls 📞 مكالمات"),
        why="add-on names take any text",
    ),
    AmplifyCase(
        "quota-title-300-chars",
        _set("title", LONG_TITLE, on="quota"),
        ACCEPTED,
        check=_expect_add_on(name=LONG_TITLE[:255]),
        why="cut at Recurly's 255 characters",
    ),
    AmplifyCase(
        "quota-id-dots", _set("metadata.id", "calls.v2", on="quota"), FINDING, says="not a valid Recurly add-on code"
    ),
    AmplifyCase(
        "quota-id-uppercase",
        _set("metadata.id", "ABCDEF0123456789ABCDEF0123456789", on="quota"),
        ACCEPTED,
        check=_expect_add_on(code="amplify-abcdef0123456789abcdef0123456789"),
        why="lowercased, as plan codes",
    ),
    AmplifyCase(
        "unit-title-unicode",
        lambda w: w.unit().update(title="Transaktionen ✓ (Über) 🚀"),
        ACCEPTED,
        check=_expect_unit_display("Transaktionen ber"),
        why="DESIGN.md §2: the display name keeps only [A-Za-z0-9_ ], at most 50 characters",
    ),
    # ---- its product
    AmplifyCase(
        "product-title-unicode",
        lambda w: w.product().update(title="Wetter-API ☀️"),
        ACCEPTED,
        check=_expect_plan_name("Wetter-API ☀️ - [product-title-unicode]"),
        why="plan names take any text",
    ),
    AmplifyCase(
        "product-id-missing",
        lambda w: None,
        FINDING,
        names="product",
        says="metadata.id is missing",
        after_seed=_drop_stored_id("Product"),
    ),
    # ---- a subscription (on the control plan, which syncs)
    AmplifyCase(
        "sub-approval-maybe",
        _set("approval.state", "maybe", on="sub"),
        FINDING,
        target=CONTROL_PLAN,
        names="sub",
        says="unknown approval state 'maybe'",
    ),
    AmplifyCase(
        "sub-approval-number",
        _set("approval.state", 1, on="sub"),
        FINDING,
        target=CONTROL_PLAN,
        names="sub",
        says="approval.state must be a string, got int 1",
    ),
    AmplifyCase(
        "sub-state-number",
        _set("state.name", 42, on="sub"),
        FINDING,
        target=CONTROL_PLAN,
        names="sub",
        says="state.name must be a string, got int 42",
        why="a state that cannot be read is not 'no state yet': it must not start billing",
    ),
    AmplifyCase(
        "sub-state-unknown",
        _set("state.name", "paused", on="sub"),
        FINDING,
        target=CONTROL_PLAN,
        names="sub",
        says="unknown subscription state 'paused'",
    ),
    AmplifyCase(
        "sub-owner-missing",
        lambda w: _drop_owner(w.sub()),
        FINDING,
        target=CONTROL_PLAN,
        names="sub",
        says="has no owner team or user",
    ),
    AmplifyCase(
        "sub-owner-odd-id",
        lambda w: _set_owner(w.sub(), "team 7/../x"),
        FINDING,
        target=CONTROL_PLAN,
        names="sub",
        says="cannot be part of a Recurly account code",
    ),
    AmplifyCase(
        "sub-id-colon",
        _set("metadata.id", "feed:face", on="sub"),
        FINDING,
        target=CONTROL_PLAN,
        names="sub",
        says="metadata.id 'feed:face' contains ':' or a space",
    ),
    AmplifyCase(
        "sub-id-missing",
        lambda w: None,
        FINDING,
        target=CONTROL_PLAN,
        names="sub",
        says="metadata.id is missing",
        after_seed=_drop_stored_id("Subscription"),
    ),
)


def _drop_owner(sub: dict[str, Any]) -> None:
    sub.pop("owner")
    sub["marketplace"]["resource"].pop("owner")


def _set_owner(sub: dict[str, Any], team_id: str) -> None:
    sub["owner"]["id"] = team_id
    sub["marketplace"]["resource"]["owner"]["id"] = team_id


def _bad_tokens(world: World, case: AmplifyCase) -> tuple[set[str], set[str]]:
    """What a Recurly write derived from the bad object would carry, and the Amplify paths it would hit."""
    sub = world.sub()
    sub_tokens = {str(sub["metadata"].get("id")), _case_id(f"{case.id}/sub")}
    amplify = {f"/subscriptions/{sub['name']}"}
    if case.target == CONTROL_PLAN:
        return sub_tokens, amplify
    plan = world.plan()
    recurly = sub_tokens | {f"[{case.id}]", f"amplify-{plan['metadata'].get('id')}", _case_id(f"{case.id}/plan")}
    recurly |= {f"amplify-{q['metadata'].get('id')}" for q in world.quotas}
    return recurly, amplify | {f"/productplans/{plan['name']}"}


@dataclass
class AmplifyRun:
    """Every level-1 case seeded into one sandbox and run as one cycle: one bad object among many others."""

    sandbox: Sandbox
    worlds: dict[str, World]
    reports: list[CommandReport]
    crash: Exception | None
    control_plan: str


@pytest.fixture(scope="module")
def amplify_run(
    scenario: Scenario, tmp_path_factory: pytest.TempPathFactory, recurly_contract: Any
) -> Iterator[AmplifyRun]:
    boxes = Sandboxes(tmp_path_factory.mktemp("amplify"))
    shared = Shared.build(scenario)
    worlds: dict[str, World] = {}
    for index, case in enumerate(AMPLIFY_CASES):
        worlds[case.id] = world = make_world(shared, index, case.id, case.target)
        case.mutate(world)
    clock = VirtualClock(TODAY)
    sandbox = boxes.start(clock)
    shared.seed(sandbox)
    for world in worlds.values():
        world.seed(sandbox)
    for case in AMPLIFY_CASES:
        if case.after_seed:
            case.after_seed(sandbox, worlds[case.id])
    # the whole cycle (plans, accounts, subscriptions, usage): no bad object may reach Recurly by any step
    cycle = Cycle(sandbox, clock, scenario, {})
    reports: list[CommandReport] = []
    crash: Exception | None = None
    try:
        reports = cycle.run()
    except Exception as exc:  # kept for every case to report: one traceback fails them all, as it would a run
        crash = exc
    yield AmplifyRun(sandbox, worlds, reports, crash, f"amplify-{shared.plans[0]['metadata']['id']}")
    boxes.finish(recurly_contract)


@pytest.mark.parametrize("case", AMPLIFY_CASES, ids=lambda c: c.id)
def test_amplify_resource(case: AmplifyCase, amplify_run: AmplifyRun) -> None:
    key = f"amplify/{case.id}"
    OUTCOMES[key] = TRACEBACK  # until proven otherwise
    if amplify_run.crash is not None:
        raise amplify_run.crash
    sandbox, reports, world = amplify_run.sandbox, amplify_run.reports, amplify_run.worlds[case.id]
    assert [r.command for r in reports] == [
        "sync-plans",
        "link-accounts",
        "sync-subscriptions",
        "report-usage",  # sync-invoices only where a Marketplace is invoiced (billing.mode)
    ]
    bad_recurly, bad_amplify = _bad_tokens(world, case)
    failures = [f for r in reports for f in failed(r)]
    assert [f for f in failures if any(t.lower() in f.lower() for t in bad_recurly)] == []

    lines = _reported(reports)
    if case.expect == FINDING:
        name = {"plan": world.plan, "sub": world.sub, "product": world.product}[case.names]()["name"]
        hits = [line for line in lines if name in line and case.says in line]
        assert hits, f"no finding names {name!r} and says {case.says!r}: {[x for x in lines if name in x]}"
    # the good objects of the same run still sync
    assert amplify_run.control_plan in {p["code"] for p in sandbox.recurly.plans()}
    live = _live_ids(sandbox)
    assert CONTROL_SUB_ID in live
    if case.expect == ACCEPTED:
        assert case.check is not None
        case.check(sandbox, world)
        assert world.sub()["metadata"]["id"] in live, "the subscription to the accepted plan is billed"
        BAD_WRITES[key] = 0
    else:
        bad = _writes_touching(recurly_writes(sandbox), bad_recurly)
        bad += [f"{r.method} {r.path}" for r in amplify_writes(sandbox) if any(t in r.path for t in bad_amplify)]
        BAD_WRITES[key] = len(bad)
        assert bad == [], f"writes derived from the bad object: {bad}"
    OUTCOMES[key] = case.expect


# ---- level 2: Recurly answers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecurlyCase:
    id: str
    route: str  # the emulator route whose answer is spoiled
    spoil: Callable[[Response], Response]  # the good answer in, the malformed one out
    expect: str  # FINDING | ERROR | ACCEPTED
    says: str
    command: str = "sync_plans"
    pending: str = ""  # why a traceback still escapes (the fix lives outside this corpus's files)


def _json_body(response: Response) -> Any:
    body = response.body
    return json.loads(body) if isinstance(body, bytes) else copy.deepcopy(body)


def _edit_items(
    edit: Callable[[dict[str, Any]], None], *, only: Callable[[dict[str, Any]], bool]
) -> Callable[[Response], Response]:
    def spoil(response: Response) -> Response:
        body = _json_body(response)
        for item in body.get("data") or ():
            if only(item):
                edit(item)
        return Response(response.status, body, dict(response.headers))

    return spoil


def _page(data: Any) -> Callable[[Response], Response]:
    def spoil(response: Response) -> Response:
        body = _json_body(response)
        body["data"] = data
        return Response(response.status, body, dict(response.headers))

    return spoil


def _raw(status: int, body: bytes, content_type: str) -> Callable[[Response], Response]:
    def spoil(response: Response) -> Response:
        return Response(status, body, {"Content-Type": content_type, "X-Request-Id": "spoiled"})

    return spoil


def _graduated(item: dict[str, Any]) -> bool:
    return len(item.get("tiers") or ()) == 4


def _ours(item: dict[str, Any]) -> bool:
    return str(item.get("code", "")).startswith("amplify-") and item.get("currencies", [{}])[0].get("unit_amount") == 49


def _with_foreign_usage(response: Response) -> Response:
    """A usage record someone posted by hand (no merchant_tag) on the add-on the tool bills."""
    body = _json_body(response)
    stamp = _stamp(TODAY - timedelta(hours=30))
    foreign = {
        "object": "usage",
        "id": "foreignusage1",
        "amount": 999,
        "usage_type": "price",
        "usage_timestamp": stamp,
        "recording_timestamp": stamp,
        "created_at": stamp,
        "updated_at": stamp,
        "billed_at": None,
    }
    body["data"] = [*(body.get("data") or ()), foreign]
    return Response(response.status, body, dict(response.headers))


GATEWAY_FIX = "recurly_gateway.py must turn an answer the client cannot decode into an UpstreamError (see report)"

RECURLY_CASES: tuple[RecurlyCase, ...] = (
    RecurlyCase(
        "plan-without-currencies",
        "list_plans",
        _edit_items(lambda p: p.pop("currencies"), only=_ours),
        FINDING,
        "cannot read the Recurly plan: it has no currencies",
    ),
    RecurlyCase(
        "plan-unit-amount-null",
        "list_plans",
        _edit_items(lambda p: p["currencies"][0].update(unit_amount=None), only=_ours),
        FINDING,
        "cannot read the Recurly plan: USD unit_amount None is not a number",
    ),
    RecurlyCase(
        "plan-unit-amount-abc",
        "list_plans",
        _edit_items(lambda p: p["currencies"][0].update(unit_amount="abc"), only=_ours),
        ERROR,
        "cannot be read",
    ),
    RecurlyCase(
        "add-on-tier-without-ending-quantity",
        "list_add_ons",
        _edit_items(lambda a: a["tiers"][1].pop("ending_quantity"), only=_graduated),
        FINDING,
        "tier 2 has no ending_quantity but is not the last tier",
    ),
    RecurlyCase(
        "add-on-tier-price-abc",
        "list_add_ons",
        _edit_items(lambda a: a["tiers"][0]["currencies"][0].update(unit_amount_decimal="abc"), only=_graduated),
        FINDING,
        "tier 1 USD price 'abc' is not a number",
    ),
    RecurlyCase("page-data-not-a-list", "list_plans", _page({"code": "x"}), ERROR, "cannot be read"),
    RecurlyCase("page-data-null", "list_add_ons", _page(None), ERROR, "cannot be read"),
    RecurlyCase(
        "invalid-json",
        "list_plans",
        _raw(200, b'{"object": "list", "data": [', "application/json"),
        ERROR,
        "cannot be read",
    ),
    RecurlyCase(
        "html-502",
        "list_plans",
        _raw(502, b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        ERROR,
        "Recurly did not complete GET plans after 1 attempts",
    ),
    RecurlyCase(
        "json-502-without-error",
        "list_plans",
        _raw(502, b'{"message": "bad gateway"}', "application/json"),
        ERROR,
        "cannot be read",
    ),
    RecurlyCase(
        "usage-record-without-merchant-tag",
        "list_usage",
        lambda r: _with_foreign_usage(r),
        ACCEPTED,
        "not one of ours: ignored",
        command="report_usage",
    ),
)


class Spoiler:
    """Wraps the Recurly emulator's dispatch: the answers of one route go through ``spoil``."""

    def __init__(self, sandbox: Sandbox, route: str, spoil: Callable[[Response], Response]) -> None:
        self.emulator = sandbox.recurly
        self.original = self.emulator.dispatch
        self.route = route
        self.spoil = spoil
        self.spoiled = 0
        self.emulator.dispatch = self.dispatch  # type: ignore[method-assign]

    def restore(self) -> None:
        self.emulator.dispatch = self.original  # type: ignore[method-assign]

    def dispatch(self, raw: Request) -> tuple[Response | None, Any, str]:
        response, fault, route = self.original(raw)
        if response is not None and route == self.route and response.status == 200 and raw.method == "GET":
            self.spoiled += 1
            return self.spoil(response), fault, route
        return response, fault, route


@pytest.fixture(scope="module")
def synced(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory, recurly_contract: Any) -> Iterator[Cycle]:
    """The steady state the level-2 cases spoil: the control plan and a graduated one (tiers, price 49) synced,
    subscriptions live, traffic on the control subscription waiting to be reported. No case changes it: a spoiled
    answer must end in a finding or an error that writes nothing (the one accepted case posts last)."""
    boxes = Sandboxes(tmp_path_factory.mktemp("recurly"))
    shared = Shared.build(scenario)
    world = make_world(shared, 0, "steady", "weather-graduated")
    clock = VirtualClock(TODAY - timedelta(days=2))
    sandbox = boxes.start(clock)
    shared.seed(sandbox)
    world.seed(sandbox)
    cycle = Cycle(sandbox, clock, scenario, {"recurly": {"max_retries": 0}})
    for report in cycle.run():
        assert failed(report) == []
    sandbox.amplify.add_traffic(CONTROL_SUB_ID, shared.quota_id(), TODAY - timedelta(hours=30), count=40)
    clock.set(TODAY + timedelta(hours=3))
    yield cycle
    boxes.finish(recurly_contract)


@pytest.mark.parametrize("case", RECURLY_CASES, ids=lambda c: c.id)
def test_recurly_answer(case: RecurlyCase, synced: Cycle) -> None:
    key = f"recurly/{case.id}"
    OUTCOMES[key] = TRACEBACK
    cycle = synced
    if case.command == "report_usage":
        # a lost journal makes the run read what Recurly holds (list_usage) before it posts anything
        for suffix in ("", "-wal", "-shm"):
            cycle.sandbox.state_dir.joinpath(f"amplify-billing.db{suffix}").unlink(missing_ok=True)
    mark = len(cycle.sandbox.recurly.requests)
    spoiler = Spoiler(cycle.sandbox, case.route, case.spoil)
    try:
        report: CommandReport = getattr(cycle, case.command)()
    except AmplifyBillingError as error:
        assert spoiler.spoiled
        assert case.expect == ERROR, f"a clear error where {case.expect} was expected: {error}"
        assert case.says in str(error), str(error)
        assert error.exit_code in (ExitCode.UPSTREAM, ExitCode.PARTIAL_FAILURE)
        writes = recurly_writes(cycle.sandbox, mark)
        BAD_WRITES[key] = len(writes)
        assert writes == [], "nothing is written after an unreadable answer"
        OUTCOMES[key] = ERROR
        return
    except Exception:
        if case.pending:
            pytest.xfail(case.pending)
        raise
    finally:
        spoiler.restore()
    assert spoiler.spoiled, "the spoiled route was asked"
    assert case.expect != ERROR, f"expected a clear error, the run ended with {report.exit_code}"
    writes = recurly_writes(cycle.sandbox, mark)
    if case.expect == FINDING:
        lines = _reported([report])
        assert any(case.says in line for line in lines), lines
        BAD_WRITES[key] = len(writes)
        assert writes == [], "no write from a misread Recurly object"
    else:
        posted = [w for w in writes if w.path.endswith("/usage")]
        assert [w.body["amount"] for w in posted] == [40], [w.body for w in writes]
        BAD_WRITES[key] = 0
    OUTCOMES[key] = case.expect


# ---- level 3: usage files ---------------------------------------------------------------------------------------

# The CLI runs on the real clock: the usage windows are laid out around the real today.
REAL_DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAY1, DAY2 = REAL_DAY - timedelta(days=3), REAL_DAY - timedelta(days=2)
HEADER = "subscription_id,quota_id,window_start,count"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class UsageCase:
    id: str
    build: Callable[[str, str], tuple[str, str]]  # (subscription id, quota id) -> (file suffix, text)
    expect: str  # ERROR | ACCEPTED | FINDING
    says: str = ""  # in the error line, or in the finding
    posted: tuple[int, ...] = ()  # accepted: the amounts posted, in window order
    encoding: str = "utf-8"
    # the error line itself says that nothing was posted (a file that is not text at all just says so)
    says_nothing_posted: bool = True


def _csv(*rows: str, header: str = HEADER, newline: str = "\n") -> Callable[[str, str], tuple[str, str]]:
    def build(sub: str, quota: str) -> tuple[str, str]:
        lines = [header, *(r.format(s=sub, q=quota, d1=_stamp(DAY1), d2=_stamp(DAY2)) for r in rows)]
        return ".csv", newline.join(lines) + newline

    return build


def _jsonl(*rows: str) -> Callable[[str, str], tuple[str, str]]:
    def build(sub: str, quota: str) -> tuple[str, str]:
        lines = [r.replace("{s}", sub).replace("{q}", quota).replace("{d1}", _stamp(DAY1)) for r in rows]
        return ".jsonl", "\n".join(lines) + "\n"

    return build


def _thousand_and_one_bad(sub: str, quota: str) -> tuple[str, str]:
    rows = [HEADER, f"{sub},{quota},{_stamp(DAY1)},7", f"{sub},{quota},{_stamp(DAY2)},5"]
    # 998 more good rows for other (unknown) subscriptions, then one bad one in the middle
    rows += [f"other{n:04d},{quota},{_stamp(DAY1)},{n}" for n in range(998)]
    rows.insert(500, f"{sub}x,{quota},{_stamp(DAY1)},-1")
    return ".csv", "\n".join(rows) + "\n"


GOOD = ("{s},{q},{d1},7", "{s},{q},{d2},5")
UNKNOWN_SUB = "ffffffffffffffffffffffffffffffff"

USAGE_CASES: tuple[UsageCase, ...] = (
    UsageCase("good-file", _csv(*GOOD), ACCEPTED, posted=(7, 5)),
    UsageCase(
        "bad-header",
        _csv(*GOOD, header="subscription,quota,start,count"),
        ERROR,
        "the first line must be the header subscription_id,quota_id,window_start,count",
    ),
    UsageCase("extra-column-in-header", _csv("{s},{q},{d1},7,x", header=HEADER + ",note"), ERROR, "unexpected 'note'"),
    UsageCase("extra-column-in-row", _csv("{s},{q},{d1},7,x"), ERROR, "expected 4 fields"),
    UsageCase(
        "naive-timestamp",
        _csv("{s},{q},%s,7".replace("%s", DAY1.strftime("%Y-%m-%dT%H:%M:%S"))),
        ERROR,
        "has no time zone",
    ),
    UsageCase(
        "misaligned-window",
        _csv("{s},{q},%s,7".replace("%s", _stamp(DAY1 + timedelta(hours=3)))),
        ERROR,
        "is not the start of a daily window",
    ),
    UsageCase("negative-count", _csv("{s},{q},{d1},-7"), ERROR, "'-7' is not a whole number ≥ 0"),
    UsageCase("float-count", _csv("{s},{q},{d1},7.5"), ERROR, "'7.5' is not a whole number ≥ 0"),
    UsageCase(
        "float-count-jsonl",
        _jsonl('{"subscription_id": "{s}", "quota_id": "{q}", "window_start": "{d1}", "count": 7.0}'),
        ERROR,
        "7.0 is not a whole number ≥ 0",
    ),
    UsageCase(
        "string-count-jsonl",
        _jsonl('{"subscription_id": "{s}", "quota_id": "{q}", "window_start": "{d1}", "count": "7"}'),
        ERROR,
        "is a string; write the number without quotes",
    ),
    UsageCase("duplicate-row", _csv(*GOOD, GOOD[0]), ERROR, "duplicate of line 2"),
    UsageCase("bom-at-start", _csv(*GOOD), ACCEPTED, posted=(7, 5), encoding="utf-8-sig"),
    UsageCase("crlf-line-ends", _csv(*GOOD, newline="\r\n"), ACCEPTED, posted=(7, 5)),
    UsageCase("empty-file", lambda s, q: (".csv", ""), ERROR, "is empty"),
    UsageCase("header-only", lambda s, q: (".csv", HEADER + "\n"), ERROR, "has no usage rows"),
    UsageCase(
        "not-utf8",
        lambda s, q: (".csv", HEADER + "\nÿ"),
        ERROR,
        "not UTF-8",
        encoding="latin-1",
        says_nothing_posted=False,
    ),
    UsageCase(
        "unknown-subscription",
        _csv(*GOOD, UNKNOWN_SUB + ",{q},{d1},9"),
        FINDING,
        "9 unit(s) not reported",
        posted=(7, 5),
    ),
    UsageCase("one-bad-row-in-1000", _thousand_and_one_bad, ERROR, ":501: count: '-1' is not a whole number"),
)


@dataclass
class UsageWorld:
    sandbox: Sandbox
    tmp: Path
    quota_id: str
    subscription_ids: dict[str, str]  # case id -> the Amplify id of its own subscription


@pytest.fixture(scope="module")
def usage_world(
    scenario: Scenario, tmp_path_factory: pytest.TempPathFactory, recurly_contract: Any
) -> Iterator[UsageWorld]:
    """One good subscription per case on the control plan, billed since the day before the file's windows;
    each case reports its own subscription's file with its own journal, so accepted cases do not meet."""
    tmp = tmp_path_factory.mktemp("usage")
    boxes = Sandboxes(tmp)
    ids = {case.id: _case_id(f"usage/{case.id}") for case in USAGE_CASES}
    shared = Shared.build(scenario, {f"u{n:02d}-subscription": sid for n, sid in enumerate(ids.values())})
    clock = VirtualClock(DAY1 - timedelta(hours=12))
    sandbox = boxes.start(clock)
    shared.seed(sandbox)
    cycle = Cycle(sandbox, clock, scenario, {})
    for report in (cycle.sync_plans(), cycle.link_accounts(), cycle.sync_subscriptions()):
        assert failed(report) == []
    clock.set(datetime.now(UTC))
    yield UsageWorld(sandbox, tmp, shared.quota_id(), ids)
    boxes.finish(recurly_contract)


@pytest.mark.parametrize("case", USAGE_CASES, ids=lambda c: c.id)
def test_usage_file(case: UsageCase, usage_world: UsageWorld, capsys: pytest.CaptureFixture[str]) -> None:
    from amplify_billing.cli import run_cli

    key = f"usage/{case.id}"
    OUTCOMES[key] = TRACEBACK
    sandbox = usage_world.sandbox
    suffix, text = case.build(usage_world.subscription_ids[case.id], usage_world.quota_id)
    usage_file = usage_world.tmp / f"{case.id}{suffix}"
    usage_file.write_bytes(text.encode(case.encoding))
    config = sandbox.write_config(
        usage_world.tmp / f"{case.id}.yaml",
        usage={"source": "file", "file_path": str(usage_file)},
        state={"path": str(usage_world.tmp / f"{case.id}.db")},
    )
    mark = len(sandbox.recurly.requests)
    capsys.readouterr()
    code = run_cli(["--config", str(config), "--output", "json", "report-usage"])
    out, err = capsys.readouterr()

    assert "Traceback" not in err and "unexpected internal error" not in err, err
    posted = [w for w in recurly_writes(sandbox, mark) if w.path.endswith("/usage")]
    if case.expect == ERROR:
        assert code == ExitCode.CONFIG, (code, err)
        line = err.strip().splitlines()[-1]
        assert line.startswith("Error: ") and case.says in line and str(usage_file) in line, line
        assert "nothing was posted" in line.lower() or not case.says_nothing_posted, line
        BAD_WRITES[key] = len(posted)
        assert posted == [], "nothing is posted from a file with a bad row"
    else:
        # a file proves only the pairs it names: the other subscriptions of this shared sandbox are held back (exit 1
        # with their findings), never this case's own subscription
        withheld = [r for r in _json_results(json.loads(out)) if r.get("withholds")]
        own = usage_world.subscription_ids[case.id]
        assert code == (ExitCode.PARTIAL_FAILURE if withheld else ExitCode.OK), (code, err)
        # its own windows before the file's first row are reported as not countable from this file, nothing else
        assert [
            r["summary"]
            for r in withheld
            if own in str(r.get("amplify")) and "the usage file starts at" not in r["summary"]
        ] == []
        got = [w.body["amount"] for w in sorted(posted, key=lambda w: w.body["usage_timestamp"])]
        assert got == list(case.posted)
        BAD_WRITES[key] = 0
        if case.expect == FINDING:
            findings = [
                r["summary"]
                for r in _json_results(json.loads(out))
                if r.get("kind") == "finding" and UNKNOWN_SUB in str(r.get("amplify"))
            ]
            assert any(case.says in f for f in findings), findings
    OUTCOMES[key] = case.expect


def _json_results(document: Any) -> list[dict[str, Any]]:
    """Result rows of the CLI's JSON report, wherever the renderer nests them."""
    found: list[dict[str, Any]] = []
    if isinstance(document, dict):
        if "kind" in document and "summary" in document:
            found.append(document)
        for value in document.values():
            found += _json_results(value)
    elif isinstance(document, list):
        for value in document:
            found += _json_results(value)
    return found


# ---- level 1b: a synced resource that goes bad --------------------------------------------------------------------

SUBSCRIPTIONS_FIX = (
    "reconcile/subscription_ends.py ends journal-linked subscriptions that the listing misses even when their plan or "
    "the subscription itself exists but cannot be read (see report)"
)


@dataclass(frozen=True)
class WentBadCase:
    id: str
    spoil: Callable[[Sandbox, World, Shared], None]  # edits the stored Amplify resources after the first sync
    says: str
    keep_subscription: bool = True  # False: the plan has no live subscription (so it could be deactivated)
    pending: str = ""


def _edit(
    kind: str, name: Callable[[World, Shared], str], edit: Callable[[dict[str, Any]], None]
) -> Callable[[Sandbox, World, Shared], None]:
    def spoil(sandbox: Sandbox, world: World, shared: Shared) -> None:
        with sandbox.amplify.lock:
            edit(sandbox.amplify._store[kind][("", name(world, shared))])

    return spoil


def _plan_name(world: World, shared: Shared) -> str:
    return str(world.plan()["name"])


WENT_BAD_CASES: tuple[WentBadCase, ...] = (
    WentBadCase(
        "plan-price-becomes-word-without-subscribers",
        _edit("ProductPlan", _plan_name, lambda p: p["spec"]["billing"].update(price="ten")),
        "spec.billing.price must be a number, got 'ten'",
        keep_subscription=False,
    ),
    WentBadCase(
        "product-loses-its-id-without-subscribers",
        _edit("Product", lambda w, s: str(w.product()["name"]), lambda p: p["metadata"].pop("id")),
        "metadata.id is missing",
        keep_subscription=False,
    ),
    WentBadCase(
        "plan-price-becomes-word",
        _edit("ProductPlan", _plan_name, lambda p: p["spec"]["billing"].update(price="ten")),
        "spec.billing.price must be a number, got 'ten'",
    ),
    WentBadCase(
        "subscription-state-becomes-number",
        _edit("Subscription", lambda w, s: str(w.sub()["name"]), lambda r: r["state"].update(name=42)),
        "state.name must be a string, got int 42",
    ),
)


@pytest.mark.parametrize("case", WENT_BAD_CASES, ids=lambda c: c.id)
def test_synced_resource_goes_bad(case: WentBadCase, scenario: Scenario, tmp_path: Path, recurly_contract: Any) -> None:
    """Synced and billed, then unreadable: it is reported, and nothing of it is deactivated, cancelled or
    terminated (an unreadable resource is not a deleted one). Two runs: the second comes after usage is reported,
    when an ended subscription would be ended in Recurly."""
    key = f"went-bad/{case.id}"
    OUTCOMES[key] = TRACEBACK
    boxes = Sandboxes(tmp_path)
    try:
        shared = Shared.build(scenario)
        world = make_world(shared, 0, case.id, "weather-graduated")
        if not case.keep_subscription:
            world.subscriptions = []
        clock = VirtualClock(TODAY - timedelta(days=2))
        sandbox = boxes.start(clock)
        shared.seed(sandbox)
        world.seed(sandbox)
        cycle = Cycle(sandbox, clock, scenario, {})
        for report in cycle.run():
            assert failed(report) == []
        mark = len(sandbox.recurly.requests)
        case.spoil(sandbox, world, shared)
        reports: list[CommandReport] = []
        for hours in (0, 30):
            clock.set(TODAY + timedelta(hours=hours))
            reports += cycle.run()
        lines = _reported(reports)
        assert any(case.says in line for line in lines), lines
        destructive = [
            f"{w.method} {w.path}"
            for w in recurly_writes(sandbox, mark)
            if w.method == "DELETE" or w.path.endswith("/cancel")
        ]
        BAD_WRITES[key] = len(destructive)
        if destructive and case.pending:
            OUTCOMES[key] = "bad write (pending)"
            pytest.xfail(case.pending)
        assert destructive == [], "an unreadable resource is not a deleted one"
        OUTCOMES[key] = FINDING
    finally:
        boxes.finish(recurly_contract)


# ---- the sum ----------------------------------------------------------------------------------------------------


def test_zz_corpus_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """One line for the whole corpus, computed from the cases that ran (run the module whole to see all)."""
    total = len(AMPLIFY_CASES) + len(RECURLY_CASES) + len(USAGE_CASES) + len(WENT_BAD_CASES)
    ran = Counter(OUTCOMES.values())
    pending = sorted(k for k, v in OUTCOMES.items() if v not in (FINDING, ERROR, ACCEPTED, IGNORED))
    bad_writes = sum(BAD_WRITES.values())
    line = (
        f"bad-input corpus: {len(OUTCOMES)} cases"
        + (f" (of {total})" if len(OUTCOMES) != total else "")
        + f": {ran[FINDING]} findings, {ran[ERROR]} clear errors, {ran[ACCEPTED]} accepted (exact or sanitised), "
        f"{ran[IGNORED]} ignored (not listed); {ran[TRACEBACK]} tracebacks, {bad_writes} writes from bad values"
        + (f"; still pending a fix outside the corpus's files: {', '.join(pending)}" if pending else "")
    )
    with capsys.disabled():
        print("\n" + line)
    # only the cases marked pending (xfail) may still end in a traceback or a bad write
    unexplained = [k for k in pending if not any(k.endswith("/" + c.id) and c.pending for c in _pending_cases())]
    assert unexplained == []


def _pending_cases() -> list[RecurlyCase | WentBadCase]:
    return [c for c in (*RECURLY_CASES, *WENT_BAD_CASES) if c.pending]
