"""Amplify Platform API (reference/amplify-api.md §6): the teams, users and orgs that own subscriptions.

Answers are wrapped as ``{"success": true, "result": …}``; the clients hand out ``result`` only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from amplify_billing.amplify.transport import AmplifyTransport
from amplify_billing.amplify.wire import json_body
from amplify_billing.errors import NotFoundError, UnreachableError, UpstreamError
from amplify_billing.settings import AmplifySettings


class PlatformClient:
    def __init__(self, transport: AmplifyTransport, settings: AmplifySettings) -> None:
        self._transport = transport
        self._settings = settings
        self._api = f"{settings.platform_url.rstrip('/')}/api/v1"

    def get_team(self, guid: str) -> dict[str, Any]:
        return _one(self._get(f"team/{quote(guid, safe='')}"), "team", guid)

    def get_user(self, guid: str) -> dict[str, Any]:
        return _one(self._get(f"user/{quote(guid, safe='')}"), "user", guid)

    def get_org(self, org_id: str) -> dict[str, Any]:
        return _one(self._get(f"org/{quote(str(org_id), safe='')}"), "org", str(org_id))

    def list_teams(self) -> list[dict[str, Any]]:
        """Every team of the tenant's org, a page of ``page_size`` at a time until a short page."""
        limit = self._settings.page_size
        teams: list[dict[str, Any]] = []
        seen: set[str] = set()
        page = 1
        while True:
            batch = self._team_page(limit, page)
            if not isinstance(batch, list) or not all(isinstance(team, dict) for team in batch):
                raise UpstreamError(
                    "the Amplify Platform API answered the team listing with something other than a list of teams",
                    system="amplify",
                )
            guids = {str(team.get("guid")) for team in batch}
            if batch and guids <= seen:
                # a server that ignores `page` would otherwise be paged for ever
                raise UpstreamError(
                    f"the Amplify Platform API repeats page {page} of the team listing", system="amplify"
                )
            seen |= guids
            teams.extend(batch)
            if len(batch) < limit:
                return teams
            page += 1

    def prove_base(self) -> None:
        """One team of the org: proves ``amplify.platform_url`` is the Platform API's before a 404 on one team, user
        or org is taken to mean that object is gone (at a wrong base URL every object answers 404)."""
        try:
            self._get("team", {"org_id": self._settings.tenant_id, "limit": 1, "page": 1})
        except NotFoundError as missing:
            if missing.error_type == "platform":
                return  # the Platform API answered (about the org): the base URL is right
            raise self._not_here() from None

    def _not_here(self) -> UnreachableError:
        return UnreachableError(
            f"the Amplify Platform API is not at {self._api} (HTTP 404 on the team listing); check "
            "amplify.platform_url",
            system="amplify",
            status=404,
        )

    def _team_page(self, limit: int, page: int) -> Any:
        try:
            return self._get("team", {"org_id": self._settings.tenant_id, "limit": limit, "page": page})
        except NotFoundError:
            # the listing always exists: a 404 means the base URL is not the Platform API's
            raise self._not_here() from None

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        url = f"{self._api}/{path}"
        body = json_body(self._transport.request("GET", url, params=params))
        if not isinstance(body, dict) or body.get("success") is not True or "result" not in body:
            raise UpstreamError(
                f"the Amplify Platform API answered GET {url} without a successful result", system="amplify"
            )
        return body["result"]


def _one(result: Any, kind: str, key: str) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise UpstreamError(
            f"the Amplify Platform API answered {kind} {key} with something other than a {kind}", system="amplify"
        )
    return result
