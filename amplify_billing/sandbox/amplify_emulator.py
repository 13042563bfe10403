"""An emulator of the Amplify APIs the tool uses, with their real paths and wire formats, on loopback.

What it serves (reference/amplify-api.md, section numbers in brackets):
- the Axway IdP token endpoint [§1.1–1.3]: ``client_credentials`` with the client secret (HTTP Basic
  or form fields) or with an RS256 client assertion verified against a registered public key;
  refusals in Keycloak's ``{"error", "error_description"}`` shape;
- the API server's catalog group [§2–3] as ``v1`` and its alias ``v1alpha1``: listing with ``page`` /
  ``pageSize`` (clamped to 100, the largest size Axway's own SDK uses; the server's maximum is not
  documented), a ``Link: <…>; rel="next"`` header and ``X-Axway-Total-Count``; the RSQL subset of
  ``amplify_rsql``; GET and full-body PUT of one resource with ``metadata.resourceVersion`` checked
  (HTTP 428 when stale); subresource PUTs (``approval``, ``state``, ``marketplace``, …);
- the Platform API [§6]: team, user and org by id, and the team listing, wrapped in
  ``{"success": true, "result": …}``;
- the Traceability search [§5.1, §9.1]: a Lexus ``count``, ungrouped or grouped by subscription id and quota
  id, over the aggregated traffic that tests and scenarios add; each grouping returns only its ``params.limit``
  largest terms (default 100), ``$exists`` leaves out traffic without a subscription or quota, and transactions
  older than the 7-day retention are gone.

Every API call needs ``Authorization: Bearer`` with a token this emulator issued. The tenant header
``X-Axway-Tenant-Id`` is required by the Traceability API and optional elsewhere (the OAS says service
accounts need not send it); a value naming another tenant is refused with 403 everywhere.

Behaviour the reference leaves open, decided here (and named in the tests):
- a main-resource PUT replaces ``title``, ``spec``, ``attributes``, ``tags``, ``owner`` and ``finalizers``
  and ignores subresources in the body (the SDK writes those with separate PUTs, §2.4);
- approving a pending subscription also sets ``state`` to ``{"name": "active", "when": …}`` when it has
  none yet, because the reference says the state is "not set until the subscription is approved";
  a rejection leaves the state unset;
- ``metadata.resourceVersion`` changes on every write, main resource or subresource.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, quote, unquote_plus, urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from amplify_billing.sandbox.amplify_rsql import Predicate, RsqlError, compile_query
from amplify_billing.sandbox.amplify_traffic import TrafficStore, epoch_ms
from amplify_billing.sandbox.server import Emulator, FaultKind, Handler, Request, Response

REALM = "Broker"
TOKEN_LIFETIME_SECONDS = 1800  # what the Axway IdP answers (reference §1.2)
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Clock skew tolerated on a client assertion's exp/iat, as identity providers allow a little.
ASSERTION_LEEWAY_SECONDS = 10
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
API_VERSIONS = ("v1", "v1alpha1")
GROUP = "catalog"
STORED_VERSION = "v1"
LEXUS_VERSION = "0.2"
SUBSCRIPTION_FIELD = "transactionSummary.consumerDetails.subscription.id"
QUOTA_FIELD = "transactionSummary.quota.id"
STATUS_FIELD = "transactionSummary.status"
TIME_FIELD = "@event_time"
GROUP_FIELDS = (SUBSCRIPTION_FIELD, QUOTA_FIELD)
# Lexus 0.2 schema, group_by params.limit default (reference §9.1)
DEFAULT_GROUP_LIMIT = 100
# "Transactions data: 7 Days", no archival (DOCS network_traffic.md, reference §9.1)
TRACEABILITY_RETENTION = timedelta(days=7)
APPROVAL_STATES = ("pending", "approved", "rejected")
SORTABLE = ("name", "title", "metadata.audit.createTimestamp", "metadata.audit.modifyTimestamp")
# fields of the main resource a PUT replaces; everything else is server-managed or a subresource
MAIN_FIELDS = ("title", "spec", "attributes", "tags", "owner", "finalizers")


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    subresources: tuple[str, ...]
    scope_kind: str | None = None


KINDS: Mapping[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo("Product", "products", ("icon", "latestrelease", "references", "state", "status")),
        KindInfo("ProductPlan", "productplans", ("references", "state", "status")),
        KindInfo("ProductPlanUnit", "productplanunits", ()),
        KindInfo("Quota", "quotas", ("status",), scope_kind="ProductPlan"),
        KindInfo(
            "Subscription", "subscriptions", ("approval", "billing", "marketplace", "references", "state", "status")
        ),
        KindInfo("Marketplace", "marketplaces", ("billing",)),
    )
}
_Key = tuple[str, str]  # (scope name or "", name)
_T = TypeVar("_T")


def format_timestamp(moment: datetime) -> str:
    """Amplify's timestamp format: 2024-04-05T15:30:40.054+0000."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def _clone(value: _T) -> _T:
    """A deep copy of JSON data (faster than copy.deepcopy, and proves the value is JSON)."""
    return cast(_T, json.loads(json.dumps(value)))


def _clone_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(json.dumps(value)))


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    """Serialise now, under the emulator lock, so a later write cannot change an answer being sent."""
    return Response(
        status, json.dumps(body).encode(), {**(headers or {}), "Content-Type": "application/json; charset=utf-8"}
    )


def _api_error(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    """The API server's error body (reference §2.2)."""
    error = {"status": status, "title": HTTPStatus(status).phrase, "detail": detail}
    return _json(status, {"errors": [error]}, headers)


def _platform_error(status: int, message: str) -> Response:
    return _json(status, {"success": False, "message": message, "code": status})


def _idp_error(status: int, error: str, description: str) -> Response:
    return _json(status, {"error": error, "error_description": description})


class _BadRequest(ValueError):
    pass


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
        self._client_secret = client_secret
        self.tenant_id = tenant_id
        self._clock = clock
        self._monotonic = monotonic
        self.rate_limit_per_minute = rate_limit_per_minute
        self._public_key: RSAPublicKey | None = None
        if public_key_pem is not None:
            key = serialization.load_pem_public_key(public_key_pem.encode())
            if not isinstance(key, RSAPublicKey):
                raise ValueError("public_key_pem must be an RSA public key (client assertions are RS256)")
            self._public_key = key
        # ids come from their own generator so that fault injection (the base's generator) does not shift them
        self._ids = random.Random(f"amplify-emulator-ids:{seed}")
        self._version = 1000
        self._generation = 0  # bumped on every write; keys the listing cache
        self._store: dict[str, dict[_Key, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self._list_cache: dict[tuple[Any, ...], tuple[int, list[dict[str, Any]]]] = {}
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.tokens_issued = 0
        self._calls: deque[float] = deque()
        self._teams: dict[str, dict[str, Any]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._orgs: dict[str, dict[str, Any]] = {}
        self._traffic = TrafficStore()
        self._traffic_lock = threading.Lock()
        # A listing cut short on demand (kind -> items served before paging stops without a Link header), as a
        # proxy or server fault would: X-Axway-Total-Count still gives the true total, so a client that checks
        # the total (reference §2.3) notices, and one that trusts the missing Link does not.
        self.cut_listings: dict[str, int] = {}
        # Traceability keeps transactions 7 days (reference §9.1); None keeps them for ever (a test's switch)
        self.traceability_retention: timedelta | None = TRACEABILITY_RETENTION
        # A backend cap on a grouping's asked limit, applied silently; None: the asked limit is honoured. Whether
        # Lexus has one is not documented (reference §9.1), so it is off unless a test turns it on.
        self.max_group_limit: int | None = None
        # audit fields name the service account the way Amplify shows one (reference §6.2)
        self.service_user_id = "DOSA_" + hashlib.sha256(client_id.encode()).hexdigest()[:32]
        self._register_routes()

    # ==== seeding and inspection ===============================================================
    def put_resource(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """Store (create or replace) a catalog resource, filling what the server would; returns a copy."""
        try:
            stored = _clone_dict(resource)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"resource must be JSON data (strings for timestamps, floats for prices): {exc}") from None
        info = KINDS.get(str(stored.get("kind")))
        if info is None:
            raise ValueError(f"unknown kind {stored.get('kind')!r}; the emulator serves {', '.join(sorted(KINDS))}")
        with self.lock:
            name = str(stored.get("name") or self._new_id())
            metadata = stored.get("metadata")
            if not isinstance(metadata, dict):
                metadata = stored["metadata"] = {}
            scope_name = self._scope_of(info, metadata)
            existing = self._store[info.kind].get((scope_name, name))
            old_meta: dict[str, Any] = existing["metadata"] if existing else {}
            now = format_timestamp(self._clock())
            given = metadata.get("audit")
            audit: dict[str, Any] = given if isinstance(given, dict) else {}
            old_audit: dict[str, Any] = old_meta.get("audit", {})
            created = audit.get("createTimestamp") or old_audit.get("createTimestamp")
            # a replacement that carries the stored modifyTimestamp back is still a write: it is modified now
            modified = audit.get("modifyTimestamp")
            if modified == old_audit.get("modifyTimestamp"):
                modified = None
            metadata["audit"] = {
                "createTimestamp": created or now,
                "createUserId": audit.get("createUserId") or self.service_user_id,
                "modifyTimestamp": modified or now,
                "modifyUserId": audit.get("modifyUserId") or self.service_user_id,
            }
            metadata["id"] = str(metadata.get("id") or old_meta.get("id") or self._new_id())
            metadata["selfLink"] = self._self_link(info, scope_name, name)
            metadata["resourceVersion"] = self._next_version()
            stored.update(group=GROUP, apiVersion=STORED_VERSION, kind=info.kind, name=name)
            stored.setdefault("title", name)
            stored.setdefault("attributes", {})
            stored.setdefault("tags", [])
            self._check_attributes(stored["attributes"])
            self._store[info.kind][(scope_name, name)] = stored
            self._generation += 1
            return _clone(stored)

    def delete_resource(self, kind: str, name: str, scope: str | None = None) -> None:
        """Remove a resource, as a provider deleting it in Amplify would (quotas go with their plan)."""
        info = self._kind(kind)
        with self.lock:
            if self._store[info.kind].pop((scope or "", name), None) is None:
                raise KeyError(f"no {kind} {name!r}" + (f" in {scope!r}" if scope else ""))
            for other in KINDS.values():
                if other.scope_kind == info.kind:
                    self._store[other.kind] = {k: v for k, v in self._store[other.kind].items() if k[0] != name}
            self._generation += 1

    def resources(self, kind: str) -> list[dict[str, Any]]:
        info = self._kind(kind)
        with self.lock:
            return _clone(list(self._store[info.kind].values()))

    def resource(self, kind: str, name: str, scope: str | None = None) -> dict[str, Any]:
        info = self._kind(kind)
        with self.lock:
            found = self._store[info.kind].get((scope or "", name))
            if found is None:
                raise KeyError(f"no {kind} {name!r}" + (f" in {scope!r}" if scope else ""))
            return _clone(found)

    def set_subscription_state(self, name: str, state: str, *, reason: str | None = None) -> dict[str, Any]:
        """Change a subscription's state as a consumer or provider action in Amplify would."""
        with self.lock:
            stored = self._store["Subscription"].get(("", name))
            if stored is None:
                raise KeyError(f"no Subscription {name!r}")
            value: dict[str, Any] = {"name": state}
            if reason is not None:
                value["reason"] = reason
            self._write_state(stored, value)
            self._touch(stored)
            return _clone(stored)

    def add_team(self, team: Mapping[str, Any]) -> None:
        with self.lock:
            self._teams[self._guid(team, "team")] = _clone_dict(team)

    def add_user(self, user: Mapping[str, Any]) -> None:
        with self.lock:
            self._users[self._guid(user, "user")] = _clone_dict(user)

    def add_org(self, org: Mapping[str, Any]) -> None:
        if org.get("org_id") in (None, ""):
            raise ValueError("an org needs its org_id")
        stored = _clone_dict(org)
        with self.lock:
            self._orgs[str(org["org_id"])] = stored
            if org.get("guid"):
                self._orgs[str(org["guid"])] = stored

    def add_traffic(
        self, subscription_id: str | None, quota_id: str | None, at: datetime, count: int = 1, status: str = "Success"
    ) -> None:
        """Record ``count`` transactions of one subscription and quota at ``at`` (aggregated, never one each).

        None for an id records traffic without that field, as calls outside the Marketplace carry."""
        moment = epoch_ms(at)
        with self._traffic_lock:
            self._traffic.add(subscription_id, quota_id, moment, count, status)

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
        begin = epoch_ms(start)
        with self._traffic_lock:
            self._traffic.add_series(subscription_id, quota_id, begin, step_seconds * 1000, counts, status)

    def traffic(self, start: datetime, end: datetime, statuses: Sequence[str] = ()) -> dict[tuple[str, str], int]:
        """Ground truth for tests: transactions in [start, end) per (subscription id, quota id), whatever the
        retention (traffic without a subscription or a quota is left out: nothing can bill it)."""
        with self._traffic_lock:
            counts = self._traffic.count(epoch_ms(start), epoch_ms(end), statuses=frozenset(statuses))
        return {(s, q): n for (s, q), n in counts.items() if s is not None and q is not None}

    def revoke_tokens(self) -> None:
        """Forget every issued token, as an IdP restart or revocation would (the next call gets 401)."""
        with self.lock:
            self._tokens.clear()

    # ==== routes ================================================================================
    def _register_routes(self) -> None:
        self.route("POST", r"/auth/realms/(?P<realm>[^/]+)/protocol/openid-connect/token", "token", self._token)
        base = rf"/apis/{GROUP}/(?P<version>v1alpha1|v1)"
        for info in KINDS.values():
            singular = info.kind.lower()
            collections = [(rf"{base}/{info.plural}", False)]
            if info.scope_kind is not None:
                scope_plural = KINDS[info.scope_kind].plural
                collections.append((rf"{base}/{scope_plural}/(?P<scope>[^/]+)/{info.plural}", True))
            for collection, scoped in collections:
                self.route("GET", collection, f"list_{info.plural}", self._api(self._list_handler(info)))
                self.route("HEAD", collection, f"count_{info.plural}", self._api(self._list_handler(info)))
                if info.scope_kind is not None and not scoped:
                    continue  # a scoped kind's items live under their scope only
                item = rf"{collection}/(?P<name>[^/]+)"
                self.route("GET", item, f"get_{singular}", self._api(self._get_handler(info)))
                self.route("PUT", item, f"put_{singular}", self._api(self._put_handler(info)))
                for sub in info.subresources:
                    getter, putter = self._get_handler(info, sub), self._put_sub_handler(info, sub)
                    self.route("GET", f"{item}/{sub}", f"get_{singular}_{sub}", self._api(getter))
                    self.route("PUT", f"{item}/{sub}", f"put_{singular}_{sub}", self._api(putter))
        self.route("GET", r"/api/v1/team", "platform_teams", self._api(self._teams_list))
        self.route("GET", r"/api/v1/team/(?P<guid>[^/]+)", "platform_team", self._api(self._platform_get("team")))
        self.route("GET", r"/api/v1/user/(?P<guid>[^/]+)", "platform_user", self._api(self._platform_get("user")))
        self.route("GET", r"/api/v1/org/(?P<guid>[^/]+)", "platform_org", self._api(self._platform_get("org")))
        self.route(
            "POST", r"/api/traceability/v1/traceability/search", "traceability_search", self._api(self._search)
        )

    def _api(self, handler: Handler) -> Handler:
        """Rate limit, bearer token and tenant checks in front of every API (not IdP) route."""

        def guarded(request: Request) -> Response:
            platform = request.path.startswith("/api/v1/")
            refused = self._throttle()
            if refused is not None:
                return refused
            authorization = request.header("Authorization") or ""
            scheme, _, token = authorization.partition(" ")
            expiry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
            if expiry is None or expiry <= self._monotonic():
                detail = "missing bearer token" if not authorization else "invalid or expired access token"
                return _platform_error(401, detail) if platform else _api_error(401, detail)
            tenant = request.header("X-Axway-Tenant-Id")
            if tenant is not None and tenant.strip() != self.tenant_id:
                detail = f"the token does not grant access to tenant {tenant.strip()!r}"
                return _platform_error(403, detail) if platform else _api_error(403, detail)
            if tenant is None and request.path.startswith("/api/traceability/"):
                return _api_error(400, "the X-Axway-Tenant-Id header is required")
            try:
                return handler(request)
            except _BadRequest as bad:
                return _platform_error(400, str(bad)) if platform else _api_error(400, str(bad))

        return guarded

    def _throttle(self) -> Response | None:
        if self.rate_limit_per_minute is None:
            return None
        now = self._monotonic()
        while self._calls and self._calls[0] <= now - 60.0:
            self._calls.popleft()
        if len(self._calls) >= self.rate_limit_per_minute:
            wait = max(1, math.ceil(self._calls[0] + 60.0 - now))
            return _api_error(
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
            return _platform_error(status, detail)
        if request.path.startswith("/auth/"):
            return _idp_error(status, "not_found" if status == 404 else "method_not_allowed", detail)
        return _api_error(status, detail)

    def fault_response(self, kind: FaultKind) -> Response:
        if kind == "empty":
            return Response(500, b"")
        status = int(kind)
        headers = {"Retry-After": "1"} if status == 429 else {}
        return _api_error(status, f"injected fault {kind}", headers)

    # ---- the IdP ------------------------------------------------------------------------------------
    def _token(self, request: Request) -> Response:
        if request.params.get("realm") != REALM:
            return _idp_error(404, "Realm does not exist", f"realm {request.params.get('realm')!r} does not exist")
        form = {k: v[0] for k, v in parse_qs(request.body.decode(errors="replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return _idp_error(400, "unsupported_grant_type", "Unsupported grant_type")
        if "client_assertion" in form or "client_assertion_type" in form:
            refused = self._check_assertion(request, form)
        else:
            refused = self._check_secret(request, form)
        if refused is not None:
            return refused
        token = secrets.token_urlsafe(32)
        self._tokens[token] = self._monotonic() + TOKEN_LIFETIME_SECONDS
        self.tokens_issued += 1
        return _json(
            200,
            {
                "access_token": token,
                "expires_in": TOKEN_LIFETIME_SECONDS,
                "refresh_expires_in": 0,
                "token_type": "bearer",
                "not-before-policy": 0,
                "scope": "email profile",
            },
        )

    def _check_secret(self, request: Request, form: Mapping[str, str]) -> Response | None:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        authorization = request.header("Authorization") or ""
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return _idp_error(400, "invalid_request", "malformed Basic credentials")
            raw_id, _, raw_secret = decoded.partition(":")
            # RFC 6749 §2.3.1 form-encodes both parts; clients that do not are accepted too
            client_id, secret = (raw_id, raw_secret) if raw_id == self.client_id else (
                unquote_plus(raw_id),
                unquote_plus(raw_secret),
            )
        if not client_id:
            return _idp_error(401, "invalid_client", "Invalid client or Invalid client credentials")
        if client_id != self.client_id:
            return _idp_error(401, "invalid_client", "Invalid client or Invalid client credentials")
        if not secret:
            return _idp_error(401, "unauthorized_client", "Client secret not provided in request")
        if not hmac.compare_digest(secret.encode(), self._client_secret.encode()):
            return _idp_error(401, "unauthorized_client", "Invalid client secret")
        return None

    def _check_assertion(self, request: Request, form: Mapping[str, str]) -> Response | None:
        def refuse(why: str) -> Response:
            return _idp_error(401, "unauthorized_client", f"Client authentication with signed JWT failed: {why}")

        if form.get("client_assertion_type") != JWT_BEARER_ASSERTION:
            return _idp_error(400, "invalid_request", "client_assertion_type must be " + JWT_BEARER_ASSERTION)
        if self._public_key is None:
            return refuse("no public key is registered for the client")
        realm_url = f"http://{request.header('Host') or '127.0.0.1'}/auth/realms/{REALM}"
        audiences = [realm_url, f"{realm_url}/protocol/openid-connect/token"]
        try:
            # exp and iat are checked against the wall clock: the tool signs with real time even when
            # the emulator's own clock is a virtual one
            claims = jwt.decode(
                form.get("client_assertion", ""),
                self._public_key,
                algorithms=["RS256"],
                audience=audiences,
                leeway=ASSERTION_LEEWAY_SECONDS,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            return refuse(str(exc) or type(exc).__name__)
        subject = claims.get("sub")
        if subject != self.client_id or form.get("client_id", subject) != subject:
            return _idp_error(401, "invalid_client", "Invalid client or Invalid client credentials")
        if claims.get("iss") not in (subject, f"{JWT_BEARER_ASSERTION}:{subject}"):
            return refuse("issuer must be the client id")
        return None

    # ---- the API server -----------------------------------------------------------------------------
    def _list_handler(self, info: KindInfo) -> Handler:
        def handle(request: Request) -> Response:
            scope = request.params.get("scope")
            if scope is not None and ("", scope) not in self._store[str(info.scope_kind)]:
                return _api_error(404, f'{KINDS[str(info.scope_kind)].plural} "{scope}" not found')
            page = self._int_arg(request, "page", 1)
            size = min(self._int_arg(request, "pageSize", DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
            query, sort = request.arg("query"), request.arg("sort")
            try:
                matched = self._matching(info, scope, query, sort)
            except RsqlError as exc:
                return _api_error(400, f"invalid query {query!r}: {exc}")
            headers = {"X-Axway-Total-Count": str(len(matched))}
            if request.method == "HEAD":
                return Response(200, None, headers)
            start = (page - 1) * size
            cut = self.cut_listings.get(info.kind)
            if cut is not None:
                served = matched[:cut]  # the total below stays the true one
                if start + size >= len(served):
                    version = request.params["version"]
                    return _json(200, [self._render(r, version) for r in served[start : start + size]], headers)
            if start + size < len(matched):
                params = [(k, v) for k, vs in request.query.items() for v in vs if k not in ("page", "pageSize")]
                params += [("pageSize", str(size)), ("page", str(page + 1))]
                headers["Link"] = f'<{request.path}?{urlencode(params, quote_via=quote)}>; rel="next"'
            version = request.params["version"]
            return _json(200, [self._render(r, version) for r in matched[start : start + size]], headers)

        return handle

    def _get_handler(self, info: KindInfo, sub: str | None = None) -> Handler:
        def handle(request: Request) -> Response:
            found = self._find(info, request)
            if isinstance(found, Response):
                return found
            rendered = self._render(found, request.params["version"])
            return _json(200, rendered if sub is None else {sub: rendered.get(sub)})

        return handle

    def _put_handler(self, info: KindInfo) -> Handler:
        def handle(request: Request) -> Response:
            found = self._find(info, request)
            if isinstance(found, Response):
                return found
            body = self._body(request)
            if not isinstance(body, dict):
                return _api_error(400, "the body must be a JSON object: the full resource")
            name = request.params["name"]
            if body.get("name") not in (None, name):
                return _api_error(400, f"name {body.get('name')!r} in the body is not {name!r}: names are immutable")
            if body.get("kind") not in (None, info.kind):
                return _api_error(400, f"kind {body.get('kind')!r} in the body is not {info.kind}")
            sent_meta = body.get("metadata")
            metadata: dict[str, Any] = sent_meta if isinstance(sent_meta, dict) else {}
            sent_version = metadata.get("resourceVersion")
            current = found["metadata"]["resourceVersion"]
            if sent_version not in (None, "") and str(sent_version) != current:
                return _api_error(
                    428,
                    f"metadata.resourceVersion {sent_version} is stale: {info.kind} {name!r} is at {current}; "
                    "read it again, or leave resourceVersion out to overwrite",
                )
            if not isinstance(body.get("spec", {}), dict):
                return _api_error(400, "spec must be an object")
            self._check_attributes(body.get("attributes", {}))
            defaults: dict[str, Any] = {"title": name, "spec": {}, "attributes": {}, "tags": [], "finalizers": []}
            for field in MAIN_FIELDS:
                if field in body:
                    found[field] = _clone(body[field])
                elif field in defaults:
                    found[field] = defaults[field]
                else:
                    found.pop(field, None)
            self._touch(found)
            return _json(200, self._render(found, request.params["version"]))

        return handle

    def _put_sub_handler(self, info: KindInfo, sub: str) -> Handler:
        def handle(request: Request) -> Response:
            found = self._find(info, request)
            if isinstance(found, Response):
                return found
            body = self._body(request)
            if not isinstance(body, dict) or sub not in body:
                return _api_error(400, f'the body must be {{"{sub}": …}}')
            value = _clone(body[sub])
            if info.kind == "Subscription" and sub == "approval":
                self._write_approval(found, value)
            elif info.kind == "Subscription" and sub == "state":
                if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
                    raise _BadRequest('a subscription state must be {"name": …, "reason": …}')
                self._write_state(found, value)
            elif sub == "state" and info.kind in ("Product", "ProductPlan"):
                if value not in ("draft", "active", "deprecated", "archived"):
                    raise _BadRequest(f"{info.kind} state must be draft, active, deprecated or archived, not {value!r}")
                found[sub] = value
            else:
                found[sub] = value
            self._touch(found)
            return _json(200, self._render(found, request.params["version"]))

        return handle

    def _write_approval(self, subscription: dict[str, Any], value: Any) -> None:
        if not isinstance(value, dict) or value.get("state") not in APPROVAL_STATES:
            raise _BadRequest(f"approval.state must be one of {', '.join(APPROVAL_STATES)}")
        previous = subscription.get("approval")
        before = previous.get("state") if isinstance(previous, dict) else None
        approval = {**value, "userId": self.service_user_id}
        if before is not None:
            approval["previousState"] = before
        subscription["approval"] = approval
        # the Marketplace activates a subscription when it is approved; until then it has no state
        if value["state"] == "approved" and before != "approved" and not subscription.get("state"):
            self._write_state(subscription, {"name": "active"})

    def _write_state(self, subscription: dict[str, Any], value: dict[str, Any]) -> None:
        subscription["state"] = {**value, "when": {"timestamp": format_timestamp(self._clock())}}

    # ---- the Platform API ---------------------------------------------------------------------------
    def _platform_get(self, kind: str) -> Handler:
        table = {"team": self._teams, "user": self._users, "org": self._orgs}[kind]

        def handle(request: Request) -> Response:
            found = table.get(request.params["guid"])
            if found is None:
                return _platform_error(404, f"{kind.capitalize()} not found")
            return _json(200, {"success": True, "result": found})

        return handle

    def _teams_list(self, request: Request) -> Response:
        teams = list(self._teams.values())
        org_id = request.arg("org_id")
        if org_id is not None:
            org = self._orgs.get(org_id)
            if org is None:
                return _platform_error(404, "Org not found")
            teams = [t for t in teams if t.get("org_guid") == org.get("guid")]
        limit = self._int_arg(request, "limit", max(len(teams), 1))
        page = self._int_arg(request, "page", 1)
        skip = self._int_arg(request, "skip", 1) - 1 if request.arg("skip") not in (None, "", "0") else 0
        start = skip + (page - 1) * limit
        return _json(200, {"success": True, "result": teams[start : start + limit]})

    # ---- the Traceability API -------------------------------------------------------------------------
    def _search(self, request: Request) -> Response:
        body = self._body(request)
        if not isinstance(body, dict):
            raise _BadRequest("the body must be a Lexus query object")
        if body.get("version") != LEXUS_VERSION:
            raise _BadRequest(f"Lexus version {body.get('version')!r} is not supported (use {LEXUS_VERSION!r})")
        invoke = body.get("invoke")
        if not isinstance(invoke, dict) or invoke.get("method") != "count":
            raise _BadRequest("the emulator answers only invoke.method 'count'")
        fields, limits = self._grouping(body.get("group_by") or [])
        window = _LexusFilter()
        window.read(body.get("filters") or {})
        if self.traceability_retention is not None:
            # "Transactions data: 7 Days", no archival (reference §9.1): older transactions are gone
            window.start = max(window.start, epoch_ms(self._clock() - self.traceability_retention))
        counts: dict[tuple[str | None, str | None], int] = {}
        # two $match lists on one field that never intersect leave an empty set: nothing matches
        impossible = any(v is not None and not v for v in (window.statuses, window.subscriptions, window.quotas))
        if window.types_match and window.start < window.end and not impossible:
            with self._traffic_lock:
                counts = self._traffic.count(
                    window.start,
                    window.end,
                    statuses=window.statuses or (),
                    subscriptions=window.subscriptions or (),
                    quotas=window.quotas or (),
                )
        result = _nest({pair: n for pair, n in counts.items() if window.admits(pair)}, fields, limits)
        query_id = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
        return _json(200, [{"version": LEXUS_VERSION, "id": query_id, "result": result}])

    def _grouping(self, group_by: Any) -> tuple[list[str], list[int]]:
        """The grouped fields and the number of terms each level returns.

        Lexus 0.2 schema (LEXUS ``schema/0.2/schema.yml``, group_by ``params.limit``, reference §9.1): "Limits on
        the amount of terms being returned in this grouping phase", default 100. A backend may also cap what it
        is asked for (``max_group_limit``, off by default: no public source names a maximum)."""
        if not isinstance(group_by, list) or not all(isinstance(g, dict) for g in group_by):
            raise _BadRequest("group_by must be a list of {field, type, params}")
        fields = [g.get("field") for g in group_by]
        if any(f not in GROUP_FIELDS for f in fields) or len(set(fields)) != len(fields):
            raise _BadRequest(f"the emulator groups only by {' and '.join(GROUP_FIELDS)}, each at most once")
        limits: list[int] = []
        for entry in group_by:
            params = entry.get("params") or {}
            limit = params.get("limit", DEFAULT_GROUP_LIMIT) if isinstance(params, dict) else None
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise _BadRequest(f"group_by params.limit must be a whole number of at least 1, got {limit!r}")
            limits.append(limit if self.max_group_limit is None else min(limit, self.max_group_limit))
        return [str(f) for f in fields], limits

    # ---- helpers --------------------------------------------------------------------------------------
    def _matching(
        self, info: KindInfo, scope: str | None, query: str | None, sort: str | None
    ) -> list[dict[str, Any]]:
        key = (info.kind, scope, query, sort)
        cached = self._list_cache.get(key)
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        predicate: Predicate | None = compile_query(query) if query is not None else None
        items = [
            resource
            for (scope_name, _), resource in self._store[info.kind].items()
            if (scope is None or scope_name == scope)
            and (predicate is None or predicate(self._queried(info, scope_name, resource)))
        ]
        if sort:
            field, _, direction = sort.partition(",")
            if field not in SORTABLE or direction.upper() not in ("", "ASC", "DESC"):
                raise _BadRequest(f"sort {sort!r}: sortable fields are {', '.join(SORTABLE)}, with ASC or DESC")
            items.sort(key=lambda r: str(_dig(r, field) or ""), reverse=direction.upper() == "DESC")
        if len(self._list_cache) > 16:
            self._list_cache.clear()
        self._list_cache[key] = (self._generation, items)
        return items

    def _queried(self, info: KindInfo, scope_name: str, resource: dict[str, Any]) -> Mapping[str, Any]:
        """What a query sees of a resource: a scoped one also its scope's properties as ``scopeResource``."""
        if info.scope_kind is None:
            return resource
        return {**resource, "scopeResource": self._store[info.scope_kind].get(("", scope_name)) or {}}

    def _find(self, info: KindInfo, request: Request) -> dict[str, Any] | Response:
        scope = request.params.get("scope")
        name = request.params["name"]
        if scope is not None and ("", scope) not in self._store[str(info.scope_kind)]:
            return _api_error(404, f'{KINDS[str(info.scope_kind)].plural} "{scope}" not found')
        found = self._store[info.kind].get((scope or "", name))
        if found is None:
            return _api_error(404, f'{info.plural} "{name}" not found' + (f' in "{scope}"' if scope else ""))
        return found

    def _render(self, resource: dict[str, Any], version: str) -> dict[str, Any]:
        if version == STORED_VERSION:
            return resource
        metadata = dict(resource["metadata"])
        metadata["selfLink"] = metadata["selfLink"].replace(f"/{GROUP}/{STORED_VERSION}/", f"/{GROUP}/{version}/", 1)
        if isinstance(metadata.get("scope"), dict):
            scope = dict(metadata["scope"])
            scope["selfLink"] = str(scope.get("selfLink", "")).replace(
                f"/{GROUP}/{STORED_VERSION}/", f"/{GROUP}/{version}/", 1
            )
            metadata["scope"] = scope
        return {**resource, "apiVersion": version, "metadata": metadata}

    def _touch(self, resource: dict[str, Any]) -> None:
        metadata = resource["metadata"]
        metadata["resourceVersion"] = self._next_version()
        metadata["audit"] = {
            **metadata.get("audit", {}),
            "modifyTimestamp": format_timestamp(self._clock()),
            "modifyUserId": self.service_user_id,
        }
        self._generation += 1

    def _scope_of(self, info: KindInfo, metadata: dict[str, Any]) -> str:
        if info.scope_kind is None:
            metadata.pop("scope", None)
            return ""
        scope = metadata.get("scope")
        scope_name = scope.get("name") if isinstance(scope, dict) else None
        if not isinstance(scope_name, str) or not scope_name:
            raise ValueError(f"a {info.kind} needs metadata.scope.name (its {info.scope_kind})")
        owner = self._store[info.scope_kind].get(("", scope_name))
        if owner is None:
            raise ValueError(f"{info.kind} scope {info.scope_kind} {scope_name!r} does not exist; put it first")
        metadata["scope"] = {
            "id": owner["metadata"]["id"],
            "kind": info.scope_kind,
            "name": scope_name,
            "selfLink": owner["metadata"]["selfLink"],
        }
        return scope_name

    @staticmethod
    def _self_link(info: KindInfo, scope_name: str, name: str) -> str:
        base = f"/{GROUP}/{STORED_VERSION}"
        if info.scope_kind is not None:
            base += f"/{KINDS[info.scope_kind].plural}/{quote(scope_name, safe='')}"
        return f"{base}/{info.plural}/{quote(name, safe='')}"

    @staticmethod
    def _check_attributes(attributes: Any) -> None:
        if not isinstance(attributes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
        ):
            raise _BadRequest("attributes must be an object of string values")

    @staticmethod
    def _kind(kind: str) -> KindInfo:
        info = KINDS.get(kind)
        if info is None:
            raise KeyError(f"unknown kind {kind!r}; the emulator serves {', '.join(sorted(KINDS))}")
        return info

    @staticmethod
    def _guid(entry: Mapping[str, Any], what: str) -> str:
        guid = entry.get("guid")
        if not isinstance(guid, str) or not guid:
            raise ValueError(f"a {what} needs its guid")
        return guid

    @staticmethod
    def _int_arg(request: Request, name: str, default: int) -> int:
        raw = request.arg(name)
        if raw is None or raw == "":
            return default
        if not raw.isdigit() or int(raw) < 1:
            raise _BadRequest(f"{name} must be a whole number of at least 1, got {raw!r}")
        return int(raw)

    @staticmethod
    def _body(request: Request) -> Any:
        try:
            return request.json()
        except ValueError:
            raise _BadRequest("the body is not valid JSON") from None

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _new_id(self) -> str:
        return f"{self._ids.getrandbits(128):032x}"


class _LexusFilter:
    """What a Lexus ``filters`` tree asks for, within the subset the emulator answers."""

    def __init__(self) -> None:
        self.start = -(2**62)
        self.end = 2**62
        self.types_match = True
        self.statuses: set[str] | None = None
        self.subscriptions: set[str] | None = None
        self.quotas: set[str] | None = None
        self.exists: dict[str, bool] = {}

    def admits(self, pair: tuple[str | None, str | None]) -> bool:
        """Whether a (subscription id, quota id) pair, None where a transaction lacks the field, passes $exists."""
        present = {SUBSCRIPTION_FIELD: pair[0] is not None, QUOTA_FIELD: pair[1] is not None}
        return all(present[field] == wanted for field, wanted in self.exists.items())

    def read(self, node: Any) -> None:
        if not isinstance(node, dict):
            raise _BadRequest("each Lexus filter must be an object")
        for operator, argument in node.items():
            if operator == "$and":
                if not isinstance(argument, list):
                    raise _BadRequest("$and takes a list of filters")
                for child in argument:
                    self.read(child)
            elif operator == "$match":
                self._match(argument)
            elif operator == "$range":
                self._range(argument)
            elif operator == "$exists":
                self._exists(argument)
            else:
                raise _BadRequest(
                    f"Lexus operator {operator!r} is not supported by the emulator: $and, $exists, $match, $range"
                )

    def _exists(self, argument: Any) -> None:
        # Lexus 0.2 schema: "$exists": {field: boolean}, "whether the field should exist"
        if not isinstance(argument, dict):
            raise _BadRequest("$exists takes {field: true|false}")
        for field, wanted in argument.items():
            if field not in GROUP_FIELDS or not isinstance(wanted, bool):
                known = " and ".join(GROUP_FIELDS)
                raise _BadRequest(f"$exists on {field!r}: the emulator knows {known}, each true or false")
            if self.exists.get(field, wanted) != wanted:
                self.types_match = False  # a field asked both present and absent: nothing matches
            self.exists[field] = wanted

    def _match(self, argument: Any) -> None:
        if not isinstance(argument, dict):
            raise _BadRequest("$match takes {field: [values]}")
        for field, raw in argument.items():
            values = {str(v) for v in (raw if isinstance(raw, list) else [raw])}
            if field == "type":
                self.types_match = self.types_match and "transactionSummary" in values
            elif field == STATUS_FIELD:
                self.statuses = values if self.statuses is None else self.statuses & values
            elif field == SUBSCRIPTION_FIELD:
                self.subscriptions = values if self.subscriptions is None else self.subscriptions & values
            elif field == QUOTA_FIELD:
                self.quotas = values if self.quotas is None else self.quotas & values
            else:
                raise _BadRequest(f"$match on {field!r} is not supported by the emulator")

    def _range(self, argument: Any) -> None:
        if not isinstance(argument, dict):
            raise _BadRequest("$range takes {field: {gte|gt|lte|lt: value}}")
        for field, bounds in argument.items():
            if field != TIME_FIELD or not isinstance(bounds, dict):
                raise _BadRequest(f"$range on {field!r} is not supported by the emulator (only {TIME_FIELD})")
            for bound, value in bounds.items():
                if not isinstance(value, int) or isinstance(value, bool):
                    raise _BadRequest(f"$range {TIME_FIELD}.{bound} must be epoch milliseconds, got {value!r}")
                if bound == "gte":
                    self.start = max(self.start, value)
                elif bound == "gt":
                    self.start = max(self.start, value + 1)
                elif bound == "lt":
                    self.end = min(self.end, value)
                elif bound == "lte":
                    self.end = min(self.end, value + 1)
                else:
                    raise _BadRequest(f"$range bound {bound!r} is not one of gt, gte, lt, lte")


def _nest(counts: Mapping[tuple[str | None, str | None], int], fields: Sequence[str], limits: Sequence[int]) -> Any:
    """Lexus nests a grouped result one level per group_by field, keyed by the group value.

    Each level keeps only its ``limit`` largest terms (by count, descending; ties by key), silently, as the
    Elasticsearch terms aggregation behind Lexus does; a transaction without a grouped field falls in no group,
    but an ungrouped count counts it."""
    if not fields:
        return sum(counts.values())
    keyed: dict[tuple[str, ...], int] = {}
    for (subscription_id, quota_id), count in counts.items():
        keys = [subscription_id if f == SUBSCRIPTION_FIELD else quota_id for f in fields]
        if all(k is not None for k in keys):
            key = tuple(str(k) for k in keys)
            keyed[key] = keyed.get(key, 0) + count
    return _top_terms(keyed, limits)


def _top_terms(counts: Mapping[tuple[str, ...], int], limits: Sequence[int]) -> Any:
    if not limits:
        return sum(counts.values())
    groups: dict[str, dict[tuple[str, ...], int]] = {}
    for key, count in counts.items():
        groups.setdefault(key[0], {})[key[1:]] = count
    ranked = sorted(groups.items(), key=lambda item: (-sum(item[1].values()), item[0]))[: limits[0]]
    return {term: _top_terms(rest, limits[1:]) for term, rest in ranked}


def _dig(resource: Mapping[str, Any], path: str) -> Any:
    node: Any = resource
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node
