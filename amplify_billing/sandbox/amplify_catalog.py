"""The API server's catalog group of the Amplify emulator [reference §2–3]: its resources and their routes.

Served as ``v1`` and ``v1alpha1`` by default; ``served`` narrows a kind to some versions, as the 2024 server that
had plans, plan units, subscriptions and invoices only as ``v1alpha1`` did (reference §9.2). Listing with ``page`` /
``pageSize`` (clamped to 100, the largest size Axway's own SDK uses; the server's maximum is not documented), a
``Link: <…>; rel="next"`` header and ``X-Axway-Total-Count``; the RSQL subset of ``amplify_rsql``; GET and
full-body PUT of one resource with ``metadata.resourceVersion`` checked (HTTP 428 when stale); subresource PUTs
(``approval``, ``state``, ``marketplace``, …).

Behaviour the reference leaves open, decided here (and named in the tests):
- a main-resource PUT replaces ``title``, ``spec``, ``attributes``, ``tags``, ``owner`` and ``finalizers``
  and ignores subresources in the body (the SDK writes those with separate PUTs, §2.4);
- approving a pending subscription also sets ``state`` to ``{"name": "active", "when": …}`` when it has
  none yet, because the reference says the state is "not set until the subscription is approved";
  a rejection leaves the state unset;
- ``metadata.resourceVersion`` changes on every write, main resource or subresource.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from amplify_billing.sandbox.amplify_answers import (
    BadRequest,
    api_error,
    clone,
    clone_dict,
    dig,
    format_timestamp,
    int_arg,
    json_answer,
)
from amplify_billing.sandbox.amplify_rsql import Predicate, RsqlError, compile_query
from amplify_billing.sandbox.server import Handler, Request, Response

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
API_VERSIONS = ("v1", "v1alpha1")
GROUP = "catalog"
STORED_VERSION = "v1"
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
        # scoped to its subscription, also listable across all (reference §3.6); the subresources the SDK names
        KindInfo(
            "SubscriptionInvoice",
            "subscriptioninvoices",
            ("billing", "invoiced", "marketplace", "references", "state", "status"),
            scope_kind="Subscription",
        ),
        KindInfo("Marketplace", "marketplaces", ("billing",)),
    )
}
# the 2024 OAS (v0.347): products and quotas under catalog/v1, but plans, plan units, subscriptions and invoices only
# under catalog/v1alpha1 (reference §9.2); the other kinds as today
SERVED_IN_2024: Mapping[str, tuple[str, ...]] = {
    kind: ("v1alpha1",) for kind in ("ProductPlan", "ProductPlanUnit", "Subscription", "SubscriptionInvoice")
}
Key = tuple[str, str]  # (scope name or "", name)


def kind_info(kind: str) -> KindInfo:
    info = KINDS.get(kind)
    if info is None:
        raise KeyError(f"unknown kind {kind!r}; the emulator serves {', '.join(sorted(KINDS))}")
    return info


class CatalogStore:
    """Every catalog resource, by kind and (scope, name). Not thread-safe: callers hold the emulator's lock."""

    def __init__(self, clock: Callable[[], datetime], seed: int, service_user_id: str) -> None:
        self._clock = clock
        self.service_user_id = service_user_id
        # ids come from their own generator so that fault injection (the base's generator) does not shift them
        self._ids = random.Random(f"amplify-emulator-ids:{seed}")
        self._version = 1000
        self._generation = 0  # bumped on every write; keys the listing cache
        self.store: dict[str, dict[Key, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self._list_cache: dict[tuple[Any, ...], tuple[int, list[dict[str, Any]]]] = {}
        # the versions each kind is served at; a kind not named here is served at both
        self.served: dict[str, tuple[str, ...]] = {}
        # A listing cut short on demand (kind -> items served before paging stops without a Link header), as a
        # proxy or server fault would: X-Axway-Total-Count still gives the true total, so a client that checks
        # the total (reference §2.3) notices, and one that trusts the missing Link does not.
        self.cut_listings: dict[str, int] = {}

    # ---- resources --------------------------------------------------------------------------------------------
    def put(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """Store (create or replace) a resource, filling what the server would; returns a copy."""
        try:
            stored = clone_dict(resource)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"resource must be JSON data (strings for timestamps, floats for prices): {exc}") from None
        info = KINDS.get(str(stored.get("kind")))
        if info is None:
            raise ValueError(f"unknown kind {stored.get('kind')!r}; the emulator serves {', '.join(sorted(KINDS))}")
        name = str(stored.get("name") or self.new_id())
        metadata = stored.get("metadata")
        if not isinstance(metadata, dict):
            metadata = stored["metadata"] = {}
        scope_name = self._scope_of(info, metadata)
        existing = self.store[info.kind].get((scope_name, name))
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
        metadata["id"] = str(metadata.get("id") or old_meta.get("id") or self.new_id())
        metadata["selfLink"] = self._self_link(info, scope_name, name)
        metadata["resourceVersion"] = self._next_version()
        stored.update(group=GROUP, apiVersion=STORED_VERSION, kind=info.kind, name=name)
        stored.setdefault("title", name)
        stored.setdefault("attributes", {})
        stored.setdefault("tags", [])
        _check_attributes(stored["attributes"])
        self.store[info.kind][(scope_name, name)] = stored
        self._generation += 1
        return clone(stored)

    def delete(self, kind: str, name: str, scope: str | None = None) -> None:
        """Remove a resource, as a provider deleting it in Amplify would (scoped resources go with it)."""
        info = kind_info(kind)
        if self.store[info.kind].pop((scope or "", name), None) is None:
            raise KeyError(f"no {kind} {name!r}" + (f" in {scope!r}" if scope else ""))
        for other in KINDS.values():
            if other.scope_kind == info.kind:
                self.store[other.kind] = {k: v for k, v in self.store[other.kind].items() if k[0] != name}
        self._generation += 1

    def get(self, kind: str, name: str, scope: str | None = None) -> dict[str, Any]:
        info = kind_info(kind)
        found = self.store[info.kind].get((scope or "", name))
        if found is None:
            raise KeyError(f"no {kind} {name!r}" + (f" in {scope!r}" if scope else ""))
        return found

    def set_state(self, name: str, value: dict[str, Any]) -> dict[str, Any]:
        stored = self.get("Subscription", name)
        self.write_state(stored, value)
        self.touch(stored)
        return clone(stored)

    def write_approval(self, subscription: dict[str, Any], value: Any) -> None:
        if not isinstance(value, dict) or value.get("state") not in APPROVAL_STATES:
            raise BadRequest(f"approval.state must be one of {', '.join(APPROVAL_STATES)}")
        previous = subscription.get("approval")
        before = previous.get("state") if isinstance(previous, dict) else None
        approval = {**value, "userId": self.service_user_id}
        if before is not None:
            approval["previousState"] = before
        subscription["approval"] = approval
        # the Marketplace activates a subscription when it is approved; until then it has no state
        if value["state"] == "approved" and before != "approved" and not subscription.get("state"):
            self.write_state(subscription, {"name": "active"})

    def write_state(self, subscription: dict[str, Any], value: dict[str, Any]) -> None:
        subscription["state"] = {**value, "when": {"timestamp": format_timestamp(self._clock())}}

    def touch(self, resource: dict[str, Any]) -> None:
        metadata = resource["metadata"]
        metadata["resourceVersion"] = self._next_version()
        metadata["audit"] = {
            **metadata.get("audit", {}),
            "modifyTimestamp": format_timestamp(self._clock()),
            "modifyUserId": self.service_user_id,
        }
        self._generation += 1

    def new_id(self) -> str:
        return f"{self._ids.getrandbits(128):032x}"

    # ---- routes ---------------------------------------------------------------------------------------------------
    def handlers(self, info: KindInfo, scoped: bool) -> list[tuple[str, str, str, Handler]]:
        """(method, path regex, route name, handler) of one kind's collection (scoped or not) and its items."""
        within = f"/{KINDS[str(info.scope_kind)].plural}/(?P<scope>[^/]+)" if scoped else ""
        collection = rf"/apis/{GROUP}/(?P<version>v1alpha1|v1){within}/{info.plural}"
        served = self._served
        listing = served(info, self._list_handler(info))
        routes = [
            ("GET", collection, f"list_{info.plural}", listing),
            ("HEAD", collection, f"count_{info.plural}", listing),
        ]
        if info.scope_kind is not None and not scoped:
            return routes  # a scoped kind's items live under their scope only
        item = rf"{collection}/(?P<name>[^/]+)"
        name = info.kind.lower()
        routes += [
            ("GET", item, f"get_{name}", served(info, self._get_handler(info))),
            ("PUT", item, f"put_{name}", served(info, self._put_handler(info))),
        ]
        for sub in info.subresources:
            routes.append(("GET", f"{item}/{sub}", f"get_{name}_{sub}", served(info, self._get_handler(info, sub))))
            routes.append(("PUT", f"{item}/{sub}", f"put_{name}_{sub}", served(info, self._put_sub(info, sub))))
        return routes

    def _served(self, info: KindInfo, handler: Handler) -> Handler:
        """A version the kind is not served at answers as an unknown path does."""

        def handle(request: Request) -> Response:
            if request.params["version"] not in self.served.get(info.kind, API_VERSIONS):
                return api_error(404, f"{request.path} not found")
            return handler(request)

        return handle

    def _list_handler(self, info: KindInfo) -> Handler:
        def handle(request: Request) -> Response:
            scope = request.params.get("scope")
            if scope is not None and ("", scope) not in self.store[str(info.scope_kind)]:
                return api_error(404, f'{KINDS[str(info.scope_kind)].plural} "{scope}" not found')
            page = int_arg(request, "page", 1)
            size = min(int_arg(request, "pageSize", DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
            query, sort = request.arg("query"), request.arg("sort")
            try:
                matched = self._matching(info, scope, query, sort)
            except RsqlError as exc:
                return api_error(400, f"invalid query {query!r}: {exc}")
            headers = {"X-Axway-Total-Count": str(len(matched))}
            if request.method == "HEAD":
                return Response(200, None, headers)
            start = (page - 1) * size
            version = request.params["version"]
            cut = self.cut_listings.get(info.kind)
            if cut is not None:
                served = matched[:cut]  # the total below stays the true one
                if start + size >= len(served):
                    return json_answer(200, [self._render(r, version) for r in served[start : start + size]], headers)
            if start + size < len(matched):
                params = [(k, v) for k, vs in request.query.items() for v in vs if k not in ("page", "pageSize")]
                params += [("pageSize", str(size)), ("page", str(page + 1))]
                headers["Link"] = f'<{request.path}?{urlencode(params, quote_via=quote)}>; rel="next"'
            return json_answer(200, [self._render(r, version) for r in matched[start : start + size]], headers)

        return handle

    def _get_handler(self, info: KindInfo, sub: str | None = None) -> Handler:
        def handle(request: Request) -> Response:
            found = self._find(info, request)
            if isinstance(found, Response):
                return found
            rendered = self._render(found, request.params["version"])
            return json_answer(200, rendered if sub is None else {sub: rendered.get(sub)})

        return handle

    def _put_handler(self, info: KindInfo) -> Handler:
        def handle(request: Request) -> Response:
            found = self._find(info, request)
            if isinstance(found, Response):
                return found
            body = _body(request)
            if not isinstance(body, dict):
                return api_error(400, "the body must be a JSON object: the full resource")
            name = request.params["name"]
            if body.get("name") not in (None, name):
                return api_error(400, f"name {body.get('name')!r} in the body is not {name!r}: names are immutable")
            if body.get("kind") not in (None, info.kind):
                return api_error(400, f"kind {body.get('kind')!r} in the body is not {info.kind}")
            sent_meta = body.get("metadata")
            metadata: dict[str, Any] = sent_meta if isinstance(sent_meta, dict) else {}
            sent_version = metadata.get("resourceVersion")
            current = found["metadata"]["resourceVersion"]
            if sent_version not in (None, "") and str(sent_version) != current:
                return api_error(
                    428,
                    f"metadata.resourceVersion {sent_version} is stale: {info.kind} {name!r} is at {current}; "
                    "read it again, or leave resourceVersion out to overwrite",
                )
            if not isinstance(body.get("spec", {}), dict):
                return api_error(400, "spec must be an object")
            _check_attributes(body.get("attributes", {}))
            defaults: dict[str, Any] = {"title": name, "spec": {}, "attributes": {}, "tags": [], "finalizers": []}
            for field in MAIN_FIELDS:
                if field in body:
                    found[field] = clone(body[field])
                elif field in defaults:
                    found[field] = defaults[field]
                else:
                    found.pop(field, None)
            self.touch(found)
            return json_answer(200, self._render(found, request.params["version"]))

        return handle

    def _put_sub(self, info: KindInfo, sub: str) -> Handler:
        def handle(request: Request) -> Response:
            found = self._find(info, request)
            if isinstance(found, Response):
                return found
            body = _body(request)
            if not isinstance(body, dict) or sub not in body:
                return api_error(400, f'the body must be {{"{sub}": …}}')
            value = clone(body[sub])
            if info.kind == "Subscription" and sub == "approval":
                self.write_approval(found, value)
            elif info.kind == "Subscription" and sub == "state":
                if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
                    raise BadRequest('a subscription state must be {"name": …, "reason": …}')
                self.write_state(found, value)
            elif sub == "state" and info.kind in ("Product", "ProductPlan"):
                if value not in ("draft", "active", "deprecated", "archived"):
                    raise BadRequest(f"{info.kind} state must be draft, active, deprecated or archived, not {value!r}")
                found[sub] = value
            else:
                found[sub] = value
            self.touch(found)
            return json_answer(200, self._render(found, request.params["version"]))

        return handle

    # ---- helpers ----------------------------------------------------------------------------------------------
    def _matching(self, info: KindInfo, scope: str | None, query: str | None, sort: str | None) -> list[dict[str, Any]]:
        key = (info.kind, scope, query, sort)
        cached = self._list_cache.get(key)
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        predicate: Predicate | None = compile_query(query) if query is not None else None
        items = [
            resource
            for (scope_name, _), resource in self.store[info.kind].items()
            if (scope is None or scope_name == scope)
            and (predicate is None or predicate(self._queried(info, scope_name, resource)))
        ]
        if sort:
            field, _, direction = sort.partition(",")
            if field not in SORTABLE or direction.upper() not in ("", "ASC", "DESC"):
                raise BadRequest(f"sort {sort!r}: sortable fields are {', '.join(SORTABLE)}, with ASC or DESC")
            items.sort(key=lambda r: str(dig(r, field) or ""), reverse=direction.upper() == "DESC")
        if len(self._list_cache) > 16:
            self._list_cache.clear()
        self._list_cache[key] = (self._generation, items)
        return items

    def _queried(self, info: KindInfo, scope_name: str, resource: dict[str, Any]) -> Mapping[str, Any]:
        """What a query sees of a resource: a scoped one also its scope's properties as ``scopeResource``."""
        if info.scope_kind is None:
            return resource
        return {**resource, "scopeResource": self.store[info.scope_kind].get(("", scope_name)) or {}}

    def _find(self, info: KindInfo, request: Request) -> dict[str, Any] | Response:
        scope = request.params.get("scope")
        name = request.params["name"]
        if scope is not None and ("", scope) not in self.store[str(info.scope_kind)]:
            return api_error(404, f'{KINDS[str(info.scope_kind)].plural} "{scope}" not found')
        found = self.store[info.kind].get((scope or "", name))
        if found is None:
            return api_error(404, f'{info.plural} "{name}" not found' + (f' in "{scope}"' if scope else ""))
        return found

    @staticmethod
    def _render(resource: dict[str, Any], version: str) -> dict[str, Any]:
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

    def _scope_of(self, info: KindInfo, metadata: dict[str, Any]) -> str:
        if info.scope_kind is None:
            metadata.pop("scope", None)
            return ""
        scope = metadata.get("scope")
        scope_name = scope.get("name") if isinstance(scope, dict) else None
        if not isinstance(scope_name, str) or not scope_name:
            raise ValueError(f"a {info.kind} needs metadata.scope.name (its {info.scope_kind})")
        owner = self.store[info.scope_kind].get(("", scope_name))
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

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)


def _check_attributes(attributes: Any) -> None:
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise BadRequest("attributes must be an object of string values")


def _body(request: Request) -> Any:
    try:
        return request.json()
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None


__all__ = ["KINDS", "SERVED_IN_2024", "CatalogStore", "KindInfo", "kind_info"]
