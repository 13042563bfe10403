"""The Recurly operations the tool performs, typed: listings, reads and writes (each with an Idempotency-Key).

Every call goes through ``RecurlyTransport`` (retries, reconnects, rate limits, errors translated) and every
answer comes back as plain JSON data (``recurly/wire.py``), never as an SDK object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import recurly

from amplify_billing.recurly.transport import RecurlyTransport
from amplify_billing.recurly.wire import body_of, to_wire

log = logging.getLogger(__name__)


class RecurlyGateway(RecurlyTransport):
    """Thin, typed access to the Recurly v2021-02-25 API for the operations the tool performs."""

    def list_plans(self, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._list("plans", lambda c, p: c.list_plans(params=p), params)

    def list_add_ons(self, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._list("add-ons", lambda c, p: c.list_add_ons(params=p), params)

    def list_measured_units(self, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._list("measured units", lambda c, p: c.list_measured_unit(params=p), params)

    def list_accounts(self, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._list("accounts", lambda c, p: c.list_accounts(params=p), params)

    def list_subscriptions(self, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._list("subscriptions", lambda c, p: c.list_subscriptions(params=p), params)

    def count_subscriptions(self, params: Mapping[str, Any] | None = None) -> int | None:
        """How many subscriptions ``list_subscriptions(params)`` lists, taken before the walk proves it whole."""
        return self._total("subscriptions", lambda c, p: c.list_subscriptions(params=p), params)

    def list_account_subscriptions(self, account_id: str) -> list[dict[str, Any]]:
        """Every subscription of one account, in every state (no ``state`` filter)."""
        return self._list(
            f"subscriptions of account {account_id}",
            lambda c, p: c.list_account_subscriptions(account_id, params=p),
            None,
        )

    def count_account_subscriptions(self, account_id: str) -> int | None:
        """How many ``list_account_subscriptions`` lists, taken before the walk proves it whole."""
        return self._total(
            f"subscriptions of account {account_id}",
            lambda c, p: c.list_account_subscriptions(account_id, params=p),
            None,
        )

    def list_usage(
        self, subscription_id: str, add_on_id: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return self._list(
            f"usage of {subscription_id}/{add_on_id}",
            lambda c, p: c.list_usage(subscription_id, add_on_id, params=p),
            params,
        )

    def list_custom_field_definitions(self, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._list("custom field definitions", lambda c, p: c.list_custom_field_definitions(params=p), params)

    # ---- reads -----------------------------------------------------------------------------------
    def get_usage(self, usage_id: str) -> dict[str, Any]:
        return body_of(self._call("GET", f"usage {usage_id}", lambda c: c.get_usage(usage_id), repeatable=True))

    def get_plan(self, plan_id: str) -> dict[str, Any]:
        return body_of(self._call("GET", f"plan {plan_id}", lambda c: c.get_plan(plan_id), repeatable=True))

    def get_subscription(self, subscription_id: str) -> dict[str, Any]:
        return body_of(
            self._call(
                "GET", f"subscription {subscription_id}", lambda c: c.get_subscription(subscription_id), repeatable=True
            )
        )

    def get_site(self) -> dict[str, Any]:
        """The site the API key belongs to (one cheap call that proves the key). Read once per gateway, so once per
        invocation: the journal's owner check, the free plans' currency and the pay links' subdomain all ask."""
        known: dict[str, Any] | None = getattr(self, "_site", None)
        if known is None:
            sites = self._list("sites", lambda c, p: c.list_sites(params=p), {"limit": 1})
            known = sites[0] if sites else {}
            self._site = known
        return dict(known)

    # ---- writes (each with an Idempotency-Key) ----------------------------------------------------
    def _keyed_write(
        self,
        method: str,
        what: str,
        send: Callable[[recurly.Client, dict[str, str]], Any],
        idempotency_key: str | None,
    ) -> dict[str, Any]:
        """One write: ``send`` gets the client and the headers carrying ``idempotency_key``; a write is repeated
        after a failure only when it has a key."""
        headers = self._headers(idempotency_key)
        return self._write(method, what, lambda client: send(client, headers), idempotency_key)

    def create_measured_unit(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        return self._keyed_write(
            "POST",
            f"measured unit {body.get('name')}",
            lambda c, h: c.create_measured_unit(to_wire(body), headers=h),
            idempotency_key,
        )

    def update_measured_unit(
        self, unit_id: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._keyed_write(
            "PUT",
            f"measured unit {unit_id}",
            lambda c, h: c.update_measured_unit(unit_id, to_wire(body), headers=h),
            idempotency_key,
        )

    def create_plan(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        return self._keyed_write(
            "POST", f"plan {body.get('code')}", lambda c, h: c.create_plan(to_wire(body), headers=h), idempotency_key
        )

    def update_plan(
        self, plan_id: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._keyed_write(
            "PUT", f"plan {plan_id}", lambda c, h: c.update_plan(plan_id, to_wire(body), headers=h), idempotency_key
        )

    def remove_plan(self, plan_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        return self._keyed_write(
            "DELETE", f"plan {plan_id}", lambda c, h: c.remove_plan(plan_id, headers=h), idempotency_key
        )

    def create_plan_add_on(
        self, plan_id: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._keyed_write(
            "POST",
            f"add-on {body.get('code')} of plan {plan_id}",
            lambda c, h: c.create_plan_add_on(plan_id, to_wire(body), headers=h),
            idempotency_key,
        )

    def update_plan_add_on(
        self, plan_id: str, add_on_id: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._keyed_write(
            "PUT",
            f"add-on {add_on_id} of plan {plan_id}",
            lambda c, h: c.update_plan_add_on(plan_id, add_on_id, to_wire(body), headers=h),
            idempotency_key,
        )

    def create_account(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        return self._keyed_write(
            "POST",
            f"account {body.get('code')}",
            lambda c, h: c.create_account(to_wire(body), headers=h),
            idempotency_key,
        )

    def create_subscription(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        account = body.get("account")
        owner = account.get("code") if isinstance(account, Mapping) else None
        return self._keyed_write(
            "POST",
            f"subscription to {body.get('plan_code')} for {owner}",
            lambda c, h: c.create_subscription(to_wire(body), headers=h),
            idempotency_key,
        )

    def cancel_subscription(
        self, subscription_id: str, body: Mapping[str, Any] | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        wire = to_wire(body or {})
        return self._keyed_write(
            "PUT",
            f"cancel of subscription {subscription_id}",
            lambda c, h: c.cancel_subscription(subscription_id, body=wire, headers=h),
            idempotency_key,
        )

    def terminate_subscription(
        self, subscription_id: str, params: Mapping[str, Any] | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        wire = to_wire(params or {})
        return self._keyed_write(
            "DELETE",
            f"termination of subscription {subscription_id}",
            lambda c, h: c.terminate_subscription(subscription_id, params=wire, headers=h),
            idempotency_key,
        )

    def create_usage(
        self,
        subscription_id: str,
        add_on_id: str,
        body: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        already_stored: Callable[[], Mapping[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """Post one usage record. ``already_stored``: asked before every repeat of the request, it finds the
        record by its merchant_tag when the first attempt was stored but its answer lost. Recurly documents no
        lifetime or scope for Idempotency-Key, so a repeat never relies on the key alone (DESIGN.md §4)."""
        h = self._headers(idempotency_key)
        attempts = 0

        def send(client: recurly.Client) -> Any:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and already_stored is not None:
                found = already_stored()
                if found is not None:
                    log.info("usage %s was stored by an attempt whose answer was lost", body.get("merchant_tag"))
                    return dict(found)
            return client.create_usage(subscription_id, add_on_id, to_wire(body), headers=h)

        answer = self._call(
            "POST",
            f"usage {body.get('merchant_tag')} on {subscription_id}/{add_on_id}",
            send,
            repeatable=idempotency_key is not None or already_stored is not None,
        )
        return dict(answer) if isinstance(answer, dict) else body_of(answer)

    def update_usage(
        self, usage_id: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._keyed_write(
            "PUT", f"usage {usage_id}", lambda c, h: c.update_usage(usage_id, to_wire(body), headers=h), idempotency_key
        )
