"""The Platform API of the Amplify emulator [reference §6]: team, user and org by id, and the team listing of an
org, each answer wrapped in ``{"success": true, "result": …}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from amplify_billing.sandbox.amplify_answers import clone_dict, int_arg, json_answer, platform_error
from amplify_billing.sandbox.server import Handler, Request, Response


class PlatformDirectory:
    """Teams, users and orgs by guid (an org also by its org_id). Not thread-safe: callers hold the lock."""

    def __init__(self) -> None:
        self.teams: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.orgs: dict[str, dict[str, Any]] = {}

    def add_team(self, team: Mapping[str, Any]) -> None:
        self.teams[_guid(team, "team")] = clone_dict(team)

    def add_user(self, user: Mapping[str, Any]) -> None:
        self.users[_guid(user, "user")] = clone_dict(user)

    def add_org(self, org: Mapping[str, Any]) -> None:
        if org.get("org_id") in (None, ""):
            raise ValueError("an org needs its org_id")
        stored = clone_dict(org)
        self.orgs[str(org["org_id"])] = stored
        if org.get("guid"):
            self.orgs[str(org["guid"])] = stored

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [
            ("GET", r"/api/v1/team", "platform_teams", self._teams_list),
            ("GET", r"/api/v1/team/(?P<guid>[^/]+)", "platform_team", self._get("team")),
            ("GET", r"/api/v1/user/(?P<guid>[^/]+)", "platform_user", self._get("user")),
            ("GET", r"/api/v1/org/(?P<guid>[^/]+)", "platform_org", self._get("org")),
        ]

    def _get(self, kind: str) -> Handler:
        table = {"team": self.teams, "user": self.users, "org": self.orgs}[kind]

        def handle(request: Request) -> Response:
            found = table.get(request.params["guid"])
            if found is None:
                return platform_error(404, f"{kind.capitalize()} not found")
            return json_answer(200, {"success": True, "result": found})

        return handle

    def _teams_list(self, request: Request) -> Response:
        teams = list(self.teams.values())
        org_id = request.arg("org_id")
        if org_id is not None:
            org = self.orgs.get(org_id)
            if org is None:
                return platform_error(404, "Org not found")
            teams = [t for t in teams if t.get("org_guid") == org.get("guid")]
        limit = int_arg(request, "limit", max(len(teams), 1))
        page = int_arg(request, "page", 1)
        skip = int_arg(request, "skip", 1) - 1 if request.arg("skip") not in (None, "", "0") else 0
        start = skip + (page - 1) * limit
        return json_answer(200, {"success": True, "result": teams[start : start + limit]})


def _guid(entry: Mapping[str, Any], what: str) -> str:
    guid = entry.get("guid")
    if not isinstance(guid, str) or not guid:
        raise ValueError(f"a {what} needs its guid")
    return guid
