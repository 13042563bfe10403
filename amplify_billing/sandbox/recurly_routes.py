"""The Recurly emulator's API routes: one handler per endpoint, from the request to the site's state and back.

Each handler reads its path ids, query and body, asks ``RecurlyState`` and answers with ``RecurlyOutput``'s wire
format; a ``RecurlyProblem`` it raises becomes the API's error answer in ``RecurlyEmulator``, which also wraps
every handler in auth, idempotency and rate limits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from amplify_billing.sandbox.recurly_output import RecurlyOutput
from amplify_billing.sandbox.recurly_state import RecurlyState
from amplify_billing.sandbox.recurly_wire import (
    SortKey,
    bad_request,
    json_object,
    not_found,
    paginate,
    parse_list_query,
)
from amplify_billing.sandbox.server import Handler, Request, Response

ID = "[^/]+"  # a path id; the client percent-encodes it, handlers decode it
# one record's path, its id named as the handlers read it
SITE = f"/sites/(?P<site_id>{ID})"
DEFINITION = f"/custom_field_definitions/(?P<definition_id>{ID})"
UNIT = f"/measured_units/(?P<unit_id>{ID})"
PLAN = f"/plans/(?P<plan_id>{ID})"
PLAN_ADD_ON = f"{PLAN}/add_ons/(?P<add_on_id>{ID})"
ADD_ON = f"/add_ons/(?P<add_on_id>{ID})"
ACCOUNT = f"/accounts/(?P<account_id>{ID})"
SUBSCRIPTION = f"/subscriptions/(?P<subscription_id>{ID})"
USAGE_OF = f"{SUBSCRIPTION}/add_ons/(?P<add_on_id>{ID})/usage"
USAGE = f"/usage/(?P<usage_id>{ID})"


def _by(name: str) -> Callable[[Any], SortKey]:
    """Paging key of a record: its ``name`` timestamp, then its insertion sequence."""
    return lambda record: (getattr(record, name), record.seq)


def json_body(request: Request) -> Mapping[str, Any]:
    """The request's JSON object; anything else is the API's 400."""
    try:
        parsed = request.json()
    except (ValueError, UnicodeDecodeError):
        raise bad_request("The request body is not valid JSON") from None
    return json_object(parsed)


class RecurlyRoutes:
    """The API's endpoints over one site's state; ``cut`` says how many records a listing serves before it stops
    (None: all), for the emulator's ``cut_listings``."""

    def __init__(self, state: RecurlyState, wire: RecurlyOutput, cut: Callable[[str], int | None]) -> None:
        self.state = state
        self.wire = wire
        self._cut = cut

    def register(self, api: Callable[[str, str, str, Handler], None]) -> None:
        """Every endpoint, through ``api(method, pattern, name, handler)``; method ``LIST`` stands for GET and HEAD."""

        api("LIST", "/sites", "list_sites", self._list_sites)
        api("GET", SITE, "get_site", self._get_site)
        api("LIST", "/custom_field_definitions", "list_custom_field_definitions", self._list_field_definitions)
        api("GET", DEFINITION, "get_custom_field_definition", self._get_field_definition)
        api("LIST", "/measured_units", "list_measured_unit", self._list_units)
        api("POST", "/measured_units", "create_measured_unit", self._create_unit)
        api("GET", UNIT, "get_measured_unit", self._get_unit)
        api("PUT", UNIT, "update_measured_unit", self._update_unit)
        api("DELETE", UNIT, "remove_measured_unit", self._remove_unit)
        api("LIST", "/plans", "list_plans", self._list_plans)
        api("POST", "/plans", "create_plan", self._create_plan)
        api("GET", PLAN, "get_plan", self._get_plan)
        api("PUT", PLAN, "update_plan", self._update_plan)
        api("DELETE", PLAN, "remove_plan", self._remove_plan)
        api("LIST", f"{PLAN}/add_ons", "list_plan_add_ons", self._list_plan_add_ons)
        api("POST", f"{PLAN}/add_ons", "create_plan_add_on", self._create_add_on)
        api("GET", PLAN_ADD_ON, "get_plan_add_on", self._get_add_on)
        api("PUT", PLAN_ADD_ON, "update_plan_add_on", self._update_add_on)
        api("DELETE", PLAN_ADD_ON, "remove_plan_add_on", self._remove_add_on)
        api("LIST", "/add_ons", "list_add_ons", self._list_add_ons)
        api("GET", ADD_ON, "get_add_on", self._get_site_add_on)
        api("LIST", "/accounts", "list_accounts", self._list_accounts)
        api("POST", "/accounts", "create_account", self._create_account)
        api("GET", ACCOUNT, "get_account", self._get_account)
        api("PUT", ACCOUNT, "update_account", self._update_account)
        api("LIST", f"{ACCOUNT}/subscriptions", "list_account_subscriptions", self._list_account_subscriptions)
        api("LIST", "/subscriptions", "list_subscriptions", self._list_subscriptions)
        api("POST", "/subscriptions", "create_subscription", self._create_subscription)
        api("GET", SUBSCRIPTION, "get_subscription", self._get_subscription)
        api("DELETE", SUBSCRIPTION, "terminate_subscription", self._terminate)
        api("PUT", f"{SUBSCRIPTION}/cancel", "cancel_subscription", self._cancel)
        api("PUT", f"{SUBSCRIPTION}/pause", "pause_subscription", self._pause)
        api("PUT", f"{SUBSCRIPTION}/resume", "resume_subscription", self._resume)
        api("LIST", USAGE_OF, "list_usage", self._list_usage)
        api("POST", USAGE_OF, "create_usage", self._create_usage)
        api("GET", USAGE, "get_usage", self._get_usage)
        api("PUT", USAGE, "update_usage", self._update_usage)
        api("DELETE", USAGE, "remove_usage", self._remove_usage)

    # ---- request helpers -----------------------------------------------------------------------------
    @staticmethod
    def _param(request: Request, name: str) -> str:
        return unquote(request.params[name])

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
            cut=self._cut(route),
        )
        if request.method == "HEAD":
            return Response(200, None, {"Recurly-Total-Records": str(page.total)})
        return Response(200, page.body, {"Recurly-Total-Records": str(page.total)})

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
        return Response(201, self.wire.unit(self.state.create_unit(json_body(request))))

    def _get_unit(self, request: Request) -> Response:
        return Response(200, self.wire.unit(self.state.unit(self._param(request, "unit_id"))))

    def _update_unit(self, request: Request) -> Response:
        record = self.state.update_unit(self._param(request, "unit_id"), json_body(request))
        return Response(200, self.wire.unit(record))

    def _remove_unit(self, request: Request) -> Response:
        return Response(200, self.wire.unit(self.state.remove_unit(self._param(request, "unit_id"))))

    # plans and add-ons
    def _list_plans(self, request: Request) -> Response:
        wanted = self._choice(request, "state", ("active", "inactive"))
        records = [p for p in self.state.plans.values() if wanted is None or p.state == wanted]
        return self._list(request, records, self.wire.plan)

    def _create_plan(self, request: Request) -> Response:
        return Response(201, self.wire.plan(self.state.create_plan(json_body(request))))

    def _get_plan(self, request: Request) -> Response:
        return Response(200, self.wire.plan(self.state.plan(self._param(request, "plan_id"))))

    def _update_plan(self, request: Request) -> Response:
        plan = self.state.update_plan(self._param(request, "plan_id"), json_body(request))
        return Response(200, self.wire.plan(plan))

    def _remove_plan(self, request: Request) -> Response:
        return Response(200, self.wire.plan(self.state.remove_plan(self._param(request, "plan_id"))))

    def _list_plan_add_ons(self, request: Request) -> Response:
        plan = self.state.plan(self._param(request, "plan_id"))
        wanted = self._choice(request, "state", ("active", "inactive"))
        records = [a for a in self.state.plan_add_ons(plan) if wanted is None or a.state == wanted]
        return self._list(request, records, self.wire.add_on)

    def _create_add_on(self, request: Request) -> Response:
        record = self.state.create_add_on(self._param(request, "plan_id"), json_body(request))
        return Response(201, self.wire.add_on(record))

    def _get_add_on(self, request: Request) -> Response:
        plan = self.state.plan(self._param(request, "plan_id"))
        return Response(200, self.wire.add_on(self.state.add_on(plan, self._param(request, "add_on_id"))))

    def _update_add_on(self, request: Request) -> Response:
        record = self.state.update_add_on(
            self._param(request, "plan_id"), self._param(request, "add_on_id"), json_body(request)
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
        return Response(201, self.wire.account(self.state.create_account(json_body(request))))

    def _get_account(self, request: Request) -> Response:
        return Response(200, self.wire.account(self.state.account(self._param(request, "account_id"))))

    def _update_account(self, request: Request) -> Response:
        record = self.state.update_account(self._param(request, "account_id"), json_body(request))
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
        record = self.state.create_subscription(json_body(request))
        return Response(201, self.wire.subscription(record))

    def _get_subscription(self, request: Request) -> Response:
        record = self.state.subscription(self._param(request, "subscription_id"))
        return Response(200, self.wire.subscription(record))

    def _cancel(self, request: Request) -> Response:
        record = self.state.cancel_subscription(self._param(request, "subscription_id"), json_body(request))
        return Response(200, self.wire.subscription(record))

    def _pause(self, request: Request) -> Response:
        record = self.state.pause_subscription(self._param(request, "subscription_id"), json_body(request))
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
            self._param(request, "subscription_id"), self._param(request, "add_on_id"), json_body(request)
        )
        return Response(201, self.wire.usage(record))

    def _get_usage(self, request: Request) -> Response:
        return Response(200, self.wire.usage(self.state.usage_record(self._param(request, "usage_id"))))

    def _update_usage(self, request: Request) -> Response:
        record = self.state.update_usage(self._param(request, "usage_id"), json_body(request))
        return Response(200, self.wire.usage(record))

    def _remove_usage(self, request: Request) -> Response:
        self.state.remove_usage(self._param(request, "usage_id"))
        return Response(204, None)
