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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from amplify_billing.sandbox.recurly_invoices import InvoiceRoutes
from amplify_billing.sandbox.recurly_output import RecurlyOutput
from amplify_billing.sandbox.recurly_routes import ID, RecurlyRoutes, json_body
from amplify_billing.sandbox.recurly_state import RecurlyState
from amplify_billing.sandbox.recurly_wire import RecurlyProblem, bad_request
from amplify_billing.sandbox.server import Emulator, FaultKind, FaultRule, Handler, Request, Response

SANDBOX_PREFIX = "/_sandbox/"
DEFAULT_RATE_LIMIT = 400  # a sandbox site's published limit
RATE_WINDOW_SECONDS = 300.0  # the API computes its limit over a sliding 5-minute window
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})

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
                self.wire.add_on(a) for a in self.state.add_ons.values() if plan_ids is None or a.plan_id in plan_ids
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

    # ---- routes (the API's in recurly_routes.py, each wrapped by _api) --------------------------------
    def _register_routes(self) -> None:
        def api(method: str, pattern: str, name: str, handler: Handler) -> None:
            for verb in ("GET", "HEAD") if method == "LIST" else (method,):
                self.route(verb, pattern, name, self._api(handler))

        RecurlyRoutes(self.state, self.wire, lambda route: self.cut_listings.get(route)).register(api)
        InvoiceRoutes(self.state).register(api)  # purchases and invoices (marketplace mode, issue 15)
        self.route("POST", "/_sandbox/bill", "sandbox_bill", self._sandbox_bill)

    # emulator-only: an invoice run
    def _sandbox_bill(self, request: Request) -> Response:
        try:
            body = json_body(request)
            uuid = body.get("subscription_uuid")
            if uuid is not None and not isinstance(uuid, str):
                raise bad_request("subscription_uuid must be a string")
            self.state.advance()
            return Response(200, {"billed": self.state.bill(uuid)})
        except RecurlyProblem as problem:
            return Response(problem.status, problem.body())


__all__ = ["ID", "RecurlyEmulator"]
