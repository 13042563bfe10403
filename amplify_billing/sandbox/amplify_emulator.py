"""An emulator of the Amplify APIs the tool uses, with their real paths and wire formats, on loopback.

What it serves (reference/amplify-api.md, section numbers in brackets), one module each:
- the Axway IdP token endpoint [§1.1–1.3] (``amplify_idp``);
- the API server's catalog group [§2–3] as ``v1`` and ``v1alpha1``, or only some kinds at some versions
  (``amplify_catalog``; RSQL in ``amplify_rsql``);
- the Platform API [§6]: team, user and org by id, and the team listing (``amplify_platform``);
- the Traceability search [§5.1, §9.1] over aggregated traffic, with the 7-day retention, Lexus's default of 100
  terms per grouping and, when asked, sampled summaries (``amplify_lexus``).

Every API call needs ``Authorization: Bearer`` with a token this emulator issued. The tenant header
``X-Axway-Tenant-Id`` is required by the Traceability API and optional elsewhere (the OAS says service
accounts need not send it); a value naming another tenant is refused with 403 everywhere. ``forbidden`` refuses
whole areas with 403, as a service account without the role for them would meet.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from amplify_billing.sandbox.amplify_answers import (
    BadRequest,
    api_error,
    clone,
    format_timestamp,
    idp_error,
    platform_error,
)
from amplify_billing.sandbox.amplify_catalog import KINDS, CatalogStore, Key, kind_info
from amplify_billing.sandbox.amplify_idp import IdentityProvider
from amplify_billing.sandbox.amplify_lexus import Traceability
from amplify_billing.sandbox.amplify_platform import PlatformDirectory
from amplify_billing.sandbox.amplify_traffic import epoch_ms
from amplify_billing.sandbox.server import Emulator, FaultKind, Handler, Request, Response

# the areas ``forbidden`` can refuse, by path prefix (the longest prefix wins)
AREAS = {
    "/apis/catalog/": "catalog",
    "/api/v1/team": "teams",
    "/api/v1/user/": "consumers",
    "/api/v1/org/": "consumers",
    "/api/traceability/": "traceability",
}

__all__ = ["AREAS", "KINDS", "AmplifyEmulator", "format_timestamp"]


class AmplifyEmulator(Emulator):
    system = "amplify"

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        tenant_id: str,
        clock: Callable[[], datetime],
        seed: int = 0,
        public_key_pem: str | None = None,
        rate_limit_per_minute: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(seed=seed)
        if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
            raise ValueError("rate_limit_per_minute must be at least 1, or None for no limit")
        self.client_id = client_id
        self.tenant_id = tenant_id
        self._clock = clock
        self._monotonic = monotonic
        self.rate_limit_per_minute = rate_limit_per_minute
        self._calls: deque[float] = deque()
        self.idp = IdentityProvider(client_id, client_secret, public_key_pem=public_key_pem, monotonic=monotonic)
        # audit fields name the service account the way Amplify shows one (reference §6.2)
        self.service_user_id = "DOSA_" + hashlib.sha256(client_id.encode()).hexdigest()[:32]
        self.catalog = CatalogStore(clock, seed, self.service_user_id)
        self.platform = PlatformDirectory()
        self.traceability = Traceability(clock, seed)
        # area (see AREAS) -> why it is refused with 403: a service account without the role for it
        self.forbidden: dict[str, str] = {}
        self._register_routes()

    # ==== switches kept where tests and scenarios have always set them ========================
    @property
    def cut_listings(self) -> dict[str, int]:
        return self.catalog.cut_listings

    @property
    def traceability_retention(self) -> timedelta | None:
        return self.traceability.retention

    @traceability_retention.setter
    def traceability_retention(self, value: timedelta | None) -> None:
        self.traceability.retention = value

    @property
    def max_group_limit(self) -> int | None:
        return self.traceability.max_group_limit

    @max_group_limit.setter
    def max_group_limit(self, value: int | None) -> None:
        self.traceability.max_group_limit = value

    @property
    def tokens_issued(self) -> int:
        return self.idp.tokens_issued

    @property
    def _store(self) -> dict[str, dict[Key, dict[str, Any]]]:
        """The stored resources, for tests that break one on purpose (under ``lock``)."""
        return self.catalog.store

    def serve_versions(self, served: Mapping[str, Sequence[str]]) -> None:
        """Serve these kinds at these versions only (``v1``, ``v1alpha1``); other kinds at both."""
        with self.lock:
            for kind, versions in served.items():
                kind_info(kind)
                self.catalog.served[kind] = tuple(versions)

    def sample_summaries(self, rate: float | None) -> None:
        """Traceability keeps a summary of only this share of transactions (before any traffic is added)."""
        self.traceability.sample(rate)

    # ==== seeding and inspection ===============================================================
    def put_resource(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """Store (create or replace) a catalog resource, filling what the server would; returns a copy."""
        with self.lock:
            return self.catalog.put(resource)

    def delete_resource(self, kind: str, name: str, scope: str | None = None) -> None:
        """Remove a resource, as a provider deleting it in Amplify would (quotas go with their plan)."""
        with self.lock:
            self.catalog.delete(kind, name, scope)

    def resources(self, kind: str) -> list[dict[str, Any]]:
        info = kind_info(kind)
        with self.lock:
            return clone(list(self.catalog.store[info.kind].values()))

    def resource(self, kind: str, name: str, scope: str | None = None) -> dict[str, Any]:
        with self.lock:
            return clone(self.catalog.get(kind, name, scope))

    def set_subscription_state(self, name: str, state: str, *, reason: str | None = None) -> dict[str, Any]:
        """Change a subscription's state as a consumer or provider action in Amplify would."""
        value: dict[str, Any] = {"name": state}
        if reason is not None:
            value["reason"] = reason
        with self.lock:
            return self.catalog.set_state(name, value)

    def add_team(self, team: Mapping[str, Any]) -> None:
        with self.lock:
            self.platform.add_team(team)

    def add_user(self, user: Mapping[str, Any]) -> None:
        with self.lock:
            self.platform.add_user(user)

    def add_org(self, org: Mapping[str, Any]) -> None:
        with self.lock:
            self.platform.add_org(org)

    def add_traffic(
        self, subscription_id: str | None, quota_id: str | None, at: datetime, count: int = 1, status: str = "Success"
    ) -> None:
        """Record ``count`` transactions of one subscription and quota at ``at`` (aggregated, never one each).

        None for an id records traffic without that field, as calls outside the Marketplace carry."""
        self.traceability.add(subscription_id, quota_id, epoch_ms(at), count, status)

    def add_traffic_series(
        self,
        subscription_id: str | None,
        quota_id: str | None,
        start: datetime,
        step_seconds: int,
        counts: Sequence[int],
        status: str = "Success",
    ) -> None:
        """``counts[i]`` transactions at ``start + i * step``: ``add_traffic`` in bulk, for large scenarios."""
        if step_seconds <= 0:
            raise ValueError("step_seconds must be positive")
        self.traceability.add_series(subscription_id, quota_id, epoch_ms(start), step_seconds * 1000, counts, status)

    def traffic(self, start: datetime, end: datetime, statuses: Sequence[str] = ()) -> dict[tuple[str, str], int]:
        """Ground truth for tests: transactions in [start, end) per (subscription id, quota id), whatever the
        retention and the sampling (traffic without a subscription or a quota is left out: nothing can bill it)."""
        counts = self.traceability.metrics(epoch_ms(start), epoch_ms(end), statuses)
        return {(s, q): n for (s, q), n in counts.items() if s is not None and q is not None}

    def revoke_tokens(self) -> None:
        """Forget every issued token, as an IdP restart or revocation would (the next call gets 401)."""
        with self.lock:
            self.idp.revoke()

    # ==== routes ================================================================================
    def _register_routes(self) -> None:
        self.route("POST", r"/auth/realms/(?P<realm>[^/]+)/protocol/openid-connect/token", "token", self.idp.token)
        for info in KINDS.values():
            for scoped in (False, True) if info.scope_kind is not None else (False,):
                for method, path, name, handler in self.catalog.handlers(info, scoped):
                    self.route(method, path, name, self._api(handler))
        for method, path, name, handler in self.platform.routes():
            self.route(method, path, name, self._api(handler))
        search = self._api(lambda request: self.traceability.search(_body(request)))
        self.route("POST", r"/api/traceability/v1/traceability/search", "traceability_search", search)

    def _api(self, handler: Handler) -> Handler:
        """Rate limit, bearer token, tenant and role checks in front of every API (not IdP) route."""

        def guarded(request: Request) -> Response:
            platform = request.path.startswith("/api/v1/")
            error = platform_error if platform else api_error
            refused = self._throttle()
            if refused is not None:
                return refused
            authorization = request.header("Authorization") or ""
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not self.idp.valid(token.strip()):
                return error(401, "missing bearer token" if not authorization else "invalid or expired access token")
            tenant = request.header("X-Axway-Tenant-Id")
            if tenant is not None and tenant.strip() != self.tenant_id:
                return error(403, f"the token does not grant access to tenant {tenant.strip()!r}")
            if tenant is None and request.path.startswith("/api/traceability/"):
                return api_error(400, "the X-Axway-Tenant-Id header is required")
            area = _area(request.path)
            if area in self.forbidden:
                return error(403, self.forbidden[area])
            try:
                return handler(request)
            except BadRequest as bad:
                return error(400, str(bad))

        return guarded

    def _throttle(self) -> Response | None:
        if self.rate_limit_per_minute is None:
            return None
        now = self._monotonic()
        while self._calls and self._calls[0] <= now - 60.0:
            self._calls.popleft()
        if len(self._calls) >= self.rate_limit_per_minute:
            wait = max(1, math.ceil(self._calls[0] + 60.0 - now))
            return api_error(
                429,
                f"more than {self.rate_limit_per_minute} requests in a minute; retry after {wait} s",
                {"Retry-After": str(wait)},
            )
        self._calls.append(now)
        return None

    # ---- errors shaped like the real services -------------------------------------------------------
    def not_found(self, request: Request) -> Response:
        method_only = "_path_matched" in request.params
        status = 405 if method_only else 404
        detail = f"{request.method} is not allowed on {request.path}" if method_only else f"{request.path} not found"
        if request.path.startswith("/api/v1/"):
            return platform_error(status, detail)
        if request.path.startswith("/auth/"):
            return idp_error(status, "not_found" if status == 404 else "method_not_allowed", detail)
        return api_error(status, detail)

    def fault_response(self, kind: FaultKind) -> Response:
        if kind == "empty":
            return Response(500, b"")
        status = int(kind)
        headers = {"Retry-After": "1"} if status == 429 else {}
        return api_error(status, f"injected fault {kind}", headers)


def _area(path: str) -> str | None:
    matching = [prefix for prefix in AREAS if path.startswith(prefix)]
    return AREAS[max(matching, key=len)] if matching else None


def _body(request: Request) -> Any:
    try:
        return request.json()
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None
