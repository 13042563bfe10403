"""An emulator of the Recurly API v2021-02-25 on loopback, for the sandbox, the demo and end-to-end tests.

The real ``recurly`` Python client (4.x) talks to it unchanged once its connection is pointed here. It keeps
the site in memory (``recurly_state``, its requests checked by ``recurly_validation*``), answers with
``recurly_output`` in the wire conventions of ``recurly_wire``, and adds what the real service's HTTP layer does:

- HTTP Basic auth with the private API key as user and an empty password;
- ``Idempotency-Key`` on POST/PUT/DELETE: a repeat answers the first (successful) answer again with
  ``Idempotency-Prior: true`` and changes nothing; the same key on a different request is a 422;
- ``X-RateLimit-Limit/Remaining/Reset`` on every answer, counted over a sliding window of real wall time
  (5 minutes, all methods counted, as in a sandbox site), and 429 ``rate_limited`` over the limit when one
  is set;
- errors as ``{"error": {"type", "message", "params"}}``, also for injected faults and unknown paths;
- a subscription listing cut short on demand (``cut_listings``), its ``Recurly-Total-Records`` still true.

``state=live`` lists active, canceled and future subscriptions, never paused ones (reference §9.3); ``pause()``
seeds a paused subscription, as ``PUT /subscriptions/{id}/pause`` does at the next renewal.

It does not bill by itself: usage stays unbilled until a test calls ``bill()`` or ``POST /_sandbox/bill``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from amplify_billing.sandbox.recurly_output import RecurlyOutput
from amplify_billing.sandbox.recurly_state import RecurlyState
from amplify_billing.sandbox.recurly_wire import (
    RecurlyProblem,
    SortKey,
    bad_request,
    json_object,
    not_found,
    paginate,
    parse_list_query,
)
from amplify_billing.sandbox.server import Emulator, FaultKind, FaultRule, Handler, Request, Response

SANDBOX_PREFIX = "/_sandbox/"
DEFAULT_RATE_LIMIT = 400  # a sandbox site's published limit
RATE_WINDOW_SECONDS = 300.0  # the API computes its limit over a sliding 5-minute window
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
ID = "[^/]+"  # a path id; the client percent-encodes it, handlers decode it

FAULT_ERRORS: dict[str, tuple[int, str, str]] = {
    "429": (429, "rate_limited", "You have made too many API requests in the last 5 minutes; try again later"),
    "500": (500, "internal_server_error", "An internal server error has occurred"),
    "502": (502, "bad_gateway", "Bad gateway"),
    "503": (503, "service_unavailable", "The service is temporarily unavailable"),
}


@dataclass(frozen=True)
class _Prior:
    """The first answer to a request that carried an Idempotency-Key."""

    fingerprint: str
    status: int
    body: Any


def _fingerprint(request: Request) -> str:
    """What makes two requests "the same" for an Idempotency-Key: method, path, query and the parsed body."""
    try:
        body: Any = json.loads(request.body) if request.body else None
    except ValueError:
        body = request.body.decode(errors="replace")
    query = sorted((k, v) for k, values in request.query.items() for v in values)
    return json.dumps([request.method, request.path, query, body], sort_keys=True, default=str)


def _by(name: str) -> Callable[[Any], SortKey]:
    """Paging key of a record: its ``name`` timestamp, then its insertion sequence."""
    return lambda record: (getattr(record, name), record.seq)


class RecurlyEmulator(Emulator):
    """The emulator; ``clock`` moves the site's time, ``seed`` makes its ids reproducible.

    ``rate_limit``: requests allowed per sliding window of ``rate_window_seconds`` (wall time), answered with
    429 ``rate_limited`` beyond it. None meters nothing: the headers still come (limit 400) but always show the
    whole budget left, so a client that paces itself on them never waits on an emulator that would not refuse.
    """

    system = "recurly"

    def __init__(
        self,
        *,
        api_key: str,
        clock: Callable[[], datetime],
        seed: int = 0,
        rate_limit: int | None = None,  # None: X-RateLimit-* headers (limit 400) but never refuse
        rate_window_seconds: float = RATE_WINDOW_SECONDS,
    ) -> None:
        super().__init__(seed=seed)
        if rate_limit is not None and rate_limit < 1:
            raise ValueError("rate_limit must be at least 1 (or None for no limit)")
        self._api_key = api_key
        self.state = RecurlyState(clock=clock, seed=seed)
        self.wire = RecurlyOutput(self.state)
        self.rate_limit = rate_limit
        self.rate_window_seconds = rate_window_seconds
        self.wall_clock: Callable[[], float] = time.time  # real time: a client sleeps for real until the reset
        self._window: deque[float] = deque()
        self._priors: dict[str, _Prior] = {}
        self._request_number = 0
        # A listing cut short on demand (list route name -> records served before paging stops, `has_more: false`),
        # as a fault between pages would: Recurly-Total-Records (GET and HEAD) still gives the true total, so a
        # client that takes the count first (reference §1.10) notices, and one that trusts has_more does not.
        self.cut_listings: dict[str, int] = {}
        self._register_routes()

    # ---- seeding and inspection (deep copies in wire format) ----------------------------------------
    def seed_custom_field_definition(self, name: str, related_type: str) -> None:
        """Custom field definitions are made in Recurly's admin UI only; the sandbox seeds them here."""
        with self.lock:
            self.state.seed_field_definition(name, related_type)

    def plans(self) -> list[dict[str, Any]]:
        with self.lock:
            return self._snapshot(self.wire.plan(p) for p in self.state.plans.values())

    def add_ons(self, plan_code: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            plan_ids = None if plan_code is None else {p.id for p in self.state.plans.values() if p.code == plan_code}
            return self._snapshot(
                self.wire.add_on(a)
                for a in self.state.add_ons.values()
                if plan_ids is None or a.plan_id in plan_ids
            )

    def measured_units(self) -> list[dict[str, Any]]:
        with self.lock:
            return self._snapshot(self.wire.unit(u) for u in self.state.units.values())

    def accounts(self) -> list[dict[str, Any]]:
        with self.lock:
            self.state.advance()
            return self._snapshot(self.wire.account(a) for a in self.state.accounts.values())

    def subscriptions(self, state: str | None = None) -> list[dict[str, Any]]:
        """Subscriptions as GET would answer them now; ``state`` filters as the list endpoint does (``live``…)."""
        with self.lock:
            self.state.advance()
            try:
                chosen = self.state.subscriptions_in(state)
            except RecurlyProblem as problem:
                raise ValueError(problem.message) from None
            return self._snapshot(self.wire.subscription(s) for s in chosen)

    def usage_records(self) -> list[dict[str, Any]]:
        """Every usage record in creation order, in wire format plus ``subscription_uuid`` and ``add_on_code``
        (the wire record does not say which subscription and add-on it belongs to)."""
        with self.lock:
            records = []
            for record in sorted(self.state.usage.values(), key=lambda u: u.seq):
                wire = self.wire.usage(record)
                wire["subscription_uuid"] = self.state.subscriptions[record.subscription_id].uuid
                wire["add_on_code"] = self.state.add_ons[record.add_on_id].code
                records.append(wire)
            return copy.deepcopy(records)

    def pause(self, subscription_uuid: str, cycles: int = 1) -> dict[str, Any]:
        """Seeding: pause a subscription as if ``PUT …/pause`` had taken effect at its last renewal."""
        with self.lock:
            self.state.advance()
            try:
                record = self.state.pause_now(f"uuid-{subscription_uuid.removeprefix('uuid-')}", cycles)
            except RecurlyProblem as problem:
                raise ValueError(problem.message) from None
            return copy.deepcopy(self.wire.subscription(record))

    def bill(self, subscription_uuid: str | None = None) -> int:
        """Mark unbilled usage billed (``billed_at`` = the clock's now), as an invoice run would; the count."""
        with self.lock:
            self.state.advance()
            try:
                return self.state.bill(subscription_uuid)
            except RecurlyProblem as problem:
                raise ValueError(f"{problem.message}: pass the uuid of a subscription of this emulator") from None

    @staticmethod
    def _snapshot(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return copy.deepcopy(list(items))

    # ---- the base's error hooks, in Recurly's format --------------------------------------------------
    def not_found(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        return Response(404, RecurlyProblem(404, "not_found", f"The requested URL {request.path} was not found").body())

    def fault_response(self, kind: FaultKind) -> Response:
        if kind == "empty":
            return Response(500, b"")
        status, error_type, message = FAULT_ERRORS.get(kind, (int(kind), "internal_server_error", f"injected {kind}"))
        return Response(status, RecurlyProblem(status, error_type, message).body())

    # ---- rate limits (around every request, injected faults included) ---------------------------------
    def dispatch(self, raw: Request) -> tuple[Response | None, FaultRule | None, str]:
        if raw.path.startswith(SANDBOX_PREFIX):
            return super().dispatch(raw)
        with self.lock:
            refused = self._take_slot()
            headers = self._rate_headers()
            self._request_number += 1
            headers["X-Request-Id"] = f"emu-{self._request_number:08d}"
        if refused:
            route, _params = self._match(raw.method, raw.path)
            problem = RecurlyProblem(429, "rate_limited", FAULT_ERRORS["429"][2])
            return Response(429, problem.body(), headers), None, route.name if route else "unknown"
        response, fault, name = super().dispatch(raw)
        if fault is not None and fault.kind == "429":
            # an injected 429 stands for a budget that is back by the next whole second, not after a whole window
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Reset"] = str(math.ceil(self.wall_clock()))
        if response is not None:
            response.headers = {**headers, **response.headers}
        return response, fault, name

    def _take_slot(self) -> bool:
        """Count this request in the sliding window; True when it is over the limit (then it is not counted)."""
        now = self.wall_clock()
        while self._window and self._window[0] <= now - self.rate_window_seconds:
            self._window.popleft()
        if self.rate_limit is not None and len(self._window) >= self.rate_limit:
            return True
        self._window.append(now)
        return False

    def _rate_headers(self) -> dict[str, str]:
        now = self.wall_clock()
        if self.rate_limit is None:
            # an unmetered site: a client that paces itself on these headers must never wait here
            return {
                "X-RateLimit-Limit": str(DEFAULT_RATE_LIMIT),
                "X-RateLimit-Remaining": str(DEFAULT_RATE_LIMIT),
                "X-RateLimit-Reset": str(math.ceil(now)),
            }
        # the budget grows again when the oldest counted request leaves the window
        reset = self._window[0] + self.rate_window_seconds if self._window else now
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(0, self.rate_limit - len(self._window))),
            "X-RateLimit-Reset": str(math.ceil(reset)),
        }

    # ---- auth, idempotency and error answers around every API handler ---------------------------------
    def _authorized(self, request: Request) -> bool:
        scheme, _, encoded = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, separator, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(separator) and user == self._api_key and password == ""

    @staticmethod
    def _unauthorized() -> Response:
        problem = RecurlyProblem(
            401, "unauthorized", "Invalid API key: send your private API key as the Basic auth user name"
        )
        return Response(401, problem.body())

    def _api(self, handler: Handler) -> Handler:
        def run(request: Request) -> Response:
            if not self._authorized(request):
                return self._unauthorized()
            self.state.advance()
            key = request.header("Idempotency-Key") if request.method in WRITE_METHODS else None
            fingerprint = _fingerprint(request) if key else ""
            if key:
                prior = self._priors.get(key)
                if prior is not None and prior.fingerprint != fingerprint:
                    problem = RecurlyProblem(422, "validation", "Idempotency-Key reused with a different request")
                    return Response(422, problem.body())
                if prior is not None:
                    return Response(prior.status, copy.deepcopy(prior.body), {"Idempotency-Prior": "true"})
            try:
                response = handler(request)
            except RecurlyProblem as problem:
                response = Response(problem.status, problem.body())
            except Exception as exc:  # an emulator bug must reach the client as a 500, in the API's format
                bug = RecurlyProblem(500, "internal_server_error", f"emulator error: {type(exc).__name__}: {exc}")
                response = Response(500, bug.body())
            # only a success is remembered: a refused request changed nothing, so repeating it is harmless
            if key and 200 <= response.status < 300:
                self._priors[key] = _Prior(fingerprint, response.status, copy.deepcopy(response.body))
            return response

        return run

    # ---- request helpers -----------------------------------------------------------------------------
    @staticmethod
    def _param(request: Request, name: str) -> str:
        return unquote(request.params[name])

    @staticmethod
    def _body(request: Request) -> Mapping[str, Any]:
        try:
            parsed = request.json()
        except (ValueError, UnicodeDecodeError):
            raise bad_request("The request body is not valid JSON") from None
        return json_object(parsed)

    @staticmethod
    def _choice(request: Request, name: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
        value = request.arg(name) or default
        if value is not None and value not in choices:
            raise bad_request(f"{name} must be one of {', '.join(choices)}")
        return value

    def _list(
        self,
        request: Request,
        records: Iterable[Any],
        render: Callable[[Any], dict[str, Any]],
        *,
        sorts: tuple[str, ...] = ("created_at", "updated_at"),
        default_sort: str = "created_at",
        fields: Mapping[str, str] | None = None,
        route: str = "",
    ) -> Response:
        q = parse_list_query(request.query, sorts=sorts, default_sort=default_sort)
        page = paginate(
            records,
            q,
            key=_by((fields or {}).get(q.sort, q.sort)),
            ident=lambda r: str(r.id),
            render=render,
            path=request.path,
            query=request.query,
            cut=self.cut_listings.get(route),
        )
        if request.method == "HEAD":
            return Response(200, None, {"Recurly-Total-Records": str(page.total)})
        return Response(200, page.body, {"Recurly-Total-Records": str(page.total)})

    # ---- routes --------------------------------------------------------------------------------------
    def _register_routes(self) -> None:
        def api(method: str, pattern: str, name: str, handler: Handler) -> None:
            for verb in ("GET", "HEAD") if method == "LIST" else (method,):
                self.route(verb, pattern, name, self._api(handler))

        api("LIST", "/sites", "list_sites", self._list_sites)
        api("GET", f"/sites/(?P<site_id>{ID})", "get_site", self._get_site)
        api("LIST", "/custom_field_definitions", "list_custom_field_definitions", self._list_field_definitions)
        api(
            "GET",
            f"/custom_field_definitions/(?P<definition_id>{ID})",
            "get_custom_field_definition",
            self._get_field_definition,
        )
        api("LIST", "/measured_units", "list_measured_unit", self._list_units)
        api("POST", "/measured_units", "create_measured_unit", self._create_unit)
        api("GET", f"/measured_units/(?P<unit_id>{ID})", "get_measured_unit", self._get_unit)
        api("PUT", f"/measured_units/(?P<unit_id>{ID})", "update_measured_unit", self._update_unit)
        api("DELETE", f"/measured_units/(?P<unit_id>{ID})", "remove_measured_unit", self._remove_unit)
        api("LIST", "/plans", "list_plans", self._list_plans)
        api("POST", "/plans", "create_plan", self._create_plan)
        api("GET", f"/plans/(?P<plan_id>{ID})", "get_plan", self._get_plan)
        api("PUT", f"/plans/(?P<plan_id>{ID})", "update_plan", self._update_plan)
        api("DELETE", f"/plans/(?P<plan_id>{ID})", "remove_plan", self._remove_plan)
        api("LIST", f"/plans/(?P<plan_id>{ID})/add_ons", "list_plan_add_ons", self._list_plan_add_ons)
        api("POST", f"/plans/(?P<plan_id>{ID})/add_ons", "create_plan_add_on", self._create_add_on)
        add_on_path = f"/plans/(?P<plan_id>{ID})/add_ons/(?P<add_on_id>{ID})"
        api("GET", add_on_path, "get_plan_add_on", self._get_add_on)
        api("PUT", add_on_path, "update_plan_add_on", self._update_add_on)
        api("DELETE", add_on_path, "remove_plan_add_on", self._remove_add_on)
        api("LIST", "/add_ons", "list_add_ons", self._list_add_ons)
        api("GET", f"/add_ons/(?P<add_on_id>{ID})", "get_add_on", self._get_site_add_on)
        api("LIST", "/accounts", "list_accounts", self._list_accounts)
        api("POST", "/accounts", "create_account", self._create_account)
        api("GET", f"/accounts/(?P<account_id>{ID})", "get_account", self._get_account)
        api("PUT", f"/accounts/(?P<account_id>{ID})", "update_account", self._update_account)
        api(
            "LIST",
            f"/accounts/(?P<account_id>{ID})/subscriptions",
            "list_account_subscriptions",
            self._list_account_subscriptions,
        )
        api("LIST", "/subscriptions", "list_subscriptions", self._list_subscriptions)
        api("POST", "/subscriptions", "create_subscription", self._create_subscription)
        api("GET", f"/subscriptions/(?P<subscription_id>{ID})", "get_subscription", self._get_subscription)
        api("DELETE", f"/subscriptions/(?P<subscription_id>{ID})", "terminate_subscription", self._terminate)
        api("PUT", f"/subscriptions/(?P<subscription_id>{ID})/cancel", "cancel_subscription", self._cancel)
        api("PUT", f"/subscriptions/(?P<subscription_id>{ID})/pause", "pause_subscription", self._pause)
        api("PUT", f"/subscriptions/(?P<subscription_id>{ID})/resume", "resume_subscription", self._resume)
        usage_path = f"/subscriptions/(?P<subscription_id>{ID})/add_ons/(?P<add_on_id>{ID})/usage"
        api("LIST", usage_path, "list_usage", self._list_usage)
        api("POST", usage_path, "create_usage", self._create_usage)
        api("GET", f"/usage/(?P<usage_id>{ID})", "get_usage", self._get_usage)
        api("PUT", f"/usage/(?P<usage_id>{ID})", "update_usage", self._update_usage)
        api("DELETE", f"/usage/(?P<usage_id>{ID})", "remove_usage", self._remove_usage)
        self.route("POST", "/_sandbox/bill", "sandbox_bill", self._sandbox_bill)

    # sites and custom field definitions
    def _list_sites(self, request: Request) -> Response:
        site = self.wire.site()
        page = {"object": "list", "has_more": False, "next": None, "data": [site]}
        return Response(200, None if request.method == "HEAD" else page, {"Recurly-Total-Records": "1"})

    def _get_site(self, request: Request) -> Response:
        ref = self._param(request, "site_id")
        if ref not in (self.state.site_id, "subdomain-sandbox"):
            raise not_found("Site", ref)
        return Response(200, self.wire.site())

    def _list_field_definitions(self, request: Request) -> Response:
        related = self._choice(request, "related_type", ("account", "item", "plan", "subscription", "charge"))
        records = [d for d in self.state.field_definitions.values() if related is None or d.related_type == related]
        return self._list(request, records, self.wire.field_definition, fields={"updated_at": "created_at"})

    def _get_field_definition(self, request: Request) -> Response:
        record = self.state.field_definition(self._param(request, "definition_id"))
        return Response(200, self.wire.field_definition(record))

    # measured units
    def _list_units(self, request: Request) -> Response:
        wanted = self._choice(request, "state", ("active", "inactive"))
        records = [u for u in self.state.units.values() if wanted is None or u.state == wanted]
        return self._list(request, records, self.wire.unit)

    def _create_unit(self, request: Request) -> Response:
        return Response(201, self.wire.unit(self.state.create_unit(self._body(request))))

    def _get_unit(self, request: Request) -> Response:
        return Response(200, self.wire.unit(self.state.unit(self._param(request, "unit_id"))))

    def _update_unit(self, request: Request) -> Response:
        record = self.state.update_unit(self._param(request, "unit_id"), self._body(request))
        return Response(200, self.wire.unit(record))

    def _remove_unit(self, request: Request) -> Response:
        return Response(200, self.wire.unit(self.state.remove_unit(self._param(request, "unit_id"))))

    # plans and add-ons
    def _list_plans(self, request: Request) -> Response:
        wanted = self._choice(request, "state", ("active", "inactive"))
        records = [p for p in self.state.plans.values() if wanted is None or p.state == wanted]
        return self._list(request, records, self.wire.plan)

    def _create_plan(self, request: Request) -> Response:
        return Response(201, self.wire.plan(self.state.create_plan(self._body(request))))

    def _get_plan(self, request: Request) -> Response:
        return Response(200, self.wire.plan(self.state.plan(self._param(request, "plan_id"))))

    def _update_plan(self, request: Request) -> Response:
        plan = self.state.update_plan(self._param(request, "plan_id"), self._body(request))
        return Response(200, self.wire.plan(plan))

    def _remove_plan(self, request: Request) -> Response:
        return Response(200, self.wire.plan(self.state.remove_plan(self._param(request, "plan_id"))))

    def _list_plan_add_ons(self, request: Request) -> Response:
        plan = self.state.plan(self._param(request, "plan_id"))
        wanted = self._choice(request, "state", ("active", "inactive"))
        records = [a for a in self.state.plan_add_ons(plan) if wanted is None or a.state == wanted]
        return self._list(request, records, self.wire.add_on)

    def _create_add_on(self, request: Request) -> Response:
        record = self.state.create_add_on(self._param(request, "plan_id"), self._body(request))
        return Response(201, self.wire.add_on(record))

    def _get_add_on(self, request: Request) -> Response:
        plan = self.state.plan(self._param(request, "plan_id"))
        return Response(200, self.wire.add_on(self.state.add_on(plan, self._param(request, "add_on_id"))))

    def _update_add_on(self, request: Request) -> Response:
        record = self.state.update_add_on(
            self._param(request, "plan_id"), self._param(request, "add_on_id"), self._body(request)
        )
        return Response(200, self.wire.add_on(record))

    def _remove_add_on(self, request: Request) -> Response:
        record = self.state.remove_add_on(self._param(request, "plan_id"), self._param(request, "add_on_id"))
        return Response(200, self.wire.add_on(record))

    def _list_add_ons(self, request: Request) -> Response:
        wanted = self._choice(request, "state", ("active", "inactive"))
        records = [a for a in self.state.add_ons.values() if wanted is None or a.state == wanted]
        return self._list(request, records, self.wire.add_on)

    def _get_site_add_on(self, request: Request) -> Response:
        return Response(200, self.wire.add_on(self.state.site_add_on(self._param(request, "add_on_id"))))

    # accounts
    def _list_accounts(self, request: Request) -> Response:
        email = request.arg("email")
        subscriber = self._choice(request, "subscriber", ("true", "false"))
        records = [
            a
            for a in self.state.accounts.values()
            if (email is None or a.email == email)
            and (subscriber is None or (subscriber == "true") == self.wire.account(a)["has_live_subscription"])
        ]
        return self._list(request, records, self.wire.account)

    def _create_account(self, request: Request) -> Response:
        return Response(201, self.wire.account(self.state.create_account(self._body(request))))

    def _get_account(self, request: Request) -> Response:
        return Response(200, self.wire.account(self.state.account(self._param(request, "account_id"))))

    def _update_account(self, request: Request) -> Response:
        record = self.state.update_account(self._param(request, "account_id"), self._body(request))
        return Response(200, self.wire.account(record))

    def _list_account_subscriptions(self, request: Request) -> Response:
        account = self.state.account(self._param(request, "account_id"))
        records = self.state.subscriptions_in(request.arg("state") or None, account.id)
        return self._list(request, records, self.wire.subscription)

    # subscriptions
    def _list_subscriptions(self, request: Request) -> Response:
        records = self.state.subscriptions_in(request.arg("state") or None)
        return self._list(request, records, self.wire.subscription, route="list_subscriptions")

    def _create_subscription(self, request: Request) -> Response:
        record = self.state.create_subscription(self._body(request))
        return Response(201, self.wire.subscription(record))

    def _get_subscription(self, request: Request) -> Response:
        record = self.state.subscription(self._param(request, "subscription_id"))
        return Response(200, self.wire.subscription(record))

    def _cancel(self, request: Request) -> Response:
        record = self.state.cancel_subscription(self._param(request, "subscription_id"), self._body(request))
        return Response(200, self.wire.subscription(record))

    def _pause(self, request: Request) -> Response:
        record = self.state.pause_subscription(self._param(request, "subscription_id"), self._body(request))
        return Response(200, self.wire.subscription(record))

    def _resume(self, request: Request) -> Response:
        record = self.state.resume_subscription(self._param(request, "subscription_id"))
        return Response(200, self.wire.subscription(record))

    def _terminate(self, request: Request) -> Response:
        refund = self._choice(request, "refund", ("full", "partial", "none"), "none")
        charge = self._choice(request, "charge", ("true", "false"), "true")
        record = self.state.terminate_subscription(
            self._param(request, "subscription_id"), refund=str(refund), charge=charge == "true"
        )
        return Response(200, self.wire.subscription(record))

    # usage
    def _list_usage(self, request: Request) -> Response:
        status = self._choice(request, "billing_status", ("unbilled", "billed", "all"), "unbilled")
        records = self.state.usage_of(
            self._param(request, "subscription_id"), self._param(request, "add_on_id"), str(status)
        )
        return self._list(
            request,
            records,
            self.wire.usage,
            sorts=("usage_timestamp", "recorded_timestamp"),
            default_sort="usage_timestamp",
            fields={"recorded_timestamp": "recording_timestamp"},
        )

    def _create_usage(self, request: Request) -> Response:
        record = self.state.create_usage(
            self._param(request, "subscription_id"), self._param(request, "add_on_id"), self._body(request)
        )
        return Response(201, self.wire.usage(record))

    def _get_usage(self, request: Request) -> Response:
        return Response(200, self.wire.usage(self.state.usage_record(self._param(request, "usage_id"))))

    def _update_usage(self, request: Request) -> Response:
        record = self.state.update_usage(self._param(request, "usage_id"), self._body(request))
        return Response(200, self.wire.usage(record))

    def _remove_usage(self, request: Request) -> Response:
        self.state.remove_usage(self._param(request, "usage_id"))
        return Response(204, None)

    # emulator-only: an invoice run
    def _sandbox_bill(self, request: Request) -> Response:
        try:
            body = self._body(request)
            uuid = body.get("subscription_uuid")
            if uuid is not None and not isinstance(uuid, str):
                raise bad_request("subscription_uuid must be a string")
            self.state.advance()
            return Response(200, {"billed": self.state.bill(uuid)})
        except RecurlyProblem as problem:
            return Response(problem.status, problem.body())
