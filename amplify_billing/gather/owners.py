"""Who owns each consumer: the Platform reads that give a new Recurly account its e-mail, names and company.

Only for accounts about to be created (they cost Amplify budget: 25 requests a minute), each team, org and user read
once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from amplify_billing.errors import AmplifyBillingError, AuthError, NotFoundError, UnreachableError
from amplify_billing.identity import account_code
from amplify_billing.interrupt import Interrupted
from amplify_billing.models import AmplifySubscription
from amplify_billing.reconcile.accounts import OwnerDetails
from amplify_billing.settings import Settings


class PlatformReader(Protocol):
    def get_org(self, org_id: str) -> dict[str, Any]: ...
    def get_team(self, guid: str) -> dict[str, Any]: ...
    def get_user(self, guid: str) -> dict[str, Any]: ...
    def prove_base(self) -> None: ...


def _fetch_all(
    keys: Iterable[str], fetch: Callable[[str], Mapping[str, Any]], workers: int
) -> dict[str, Mapping[str, Any] | AmplifyBillingError]:
    """Read each key once, ``workers`` at a time (the transport's rate limiter still bounds the pace)."""

    def one(key: str) -> Mapping[str, Any] | AmplifyBillingError:
        try:
            return fetch(key)
        except (AuthError, UnreachableError, Interrupted):
            raise  # about the run, not this owner: a missing role or a dead host is exit 3, a signal exit 130/143
        except AmplifyBillingError as error:
            return error  # about this owner (gone, malformed): its account waits with a finding

    unique = sorted(set(keys))
    if workers <= 1 or len(unique) <= 1:
        return {key: one(key) for key in unique}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="platform-reader") as pool:
        return dict(zip(unique, pool.map(one, unique), strict=True))


def _admin_of(team: Mapping[str, Any]) -> str | None:
    """The team's first human administrator (else its first human member): whose e-mail bills the team."""
    members = [u for u in team.get("users") or () if isinstance(u, Mapping)]
    humans = [u for u in members if u.get("type") != "client"]
    admin = next(
        (u for u in humans if any("admin" in str(r) for r in u.get("roles") or ())), humans[0] if humans else None
    )
    return str(admin["guid"]) if admin and admin.get("guid") else None


def _primary_of(org: Mapping[str, Any]) -> str | None:
    users = [u for u in org.get("users") or () if isinstance(u, Mapping)]
    primary = next((u for u in users if u.get("primary")), users[0] if users else None)
    return str(primary["guid"]) if primary and primary.get("guid") else None


def owner_details(
    platform: PlatformReader,
    settings: Settings,
    codes: set[str],
    subscriptions: list[AmplifySubscription],
) -> dict[str, OwnerDetails]:
    """Platform API lookups for accounts we are about to create (only those: they cost Amplify budget).

    Each team, org and user is read once, and the reads overlap (``recurly.concurrency`` at a time) in two
    rounds: the owners first, then the people whose e-mail and names the accounts need."""
    owner_mode = settings.accounts.owner
    workers = settings.recurly.concurrency
    owners: dict[str, AmplifySubscription] = {}
    for subscription in subscriptions:
        code = account_code(subscription, owner_mode)
        if code is not None and code in codes and code not in owners:
            owners[code] = subscription

    groups: dict[str, Mapping[str, Any] | AmplifyBillingError] = {}
    if owner_mode == "org":
        groups = _fetch_all((str(s.owner_org) for s in owners.values()), platform.get_org, workers)
    else:
        groups = _fetch_all(
            (s.owner_team for s in owners.values() if s.owner_team),
            platform.get_team,
            workers,
        )

    def person_of(s: AmplifySubscription) -> str | None:
        if owner_mode == "org":
            org = groups.get(str(s.owner_org))
            return _primary_of(org) if isinstance(org, Mapping) else None
        if s.owner_user:
            return s.owner_user
        team = groups.get(str(s.owner_team))
        return _admin_of(team) if isinstance(team, Mapping) else None

    people = _fetch_all((g for g in map(person_of, owners.values()) if g), platform.get_user, workers)
    if any(isinstance(found, NotFoundError) for found in (*groups.values(), *people.values())):
        # at a wrong amplify.platform_url every owner answers 404: exit 3 naming the setting, not one "waiting"
        # finding per account (exit 0) while nothing can be billed
        platform.prove_base()

    details: dict[str, OwnerDetails] = {}
    for code, s in owners.items():
        group_key = str(s.owner_org) if owner_mode == "org" else str(s.owner_team)
        group = groups.get(group_key)
        guid = person_of(s)
        user = people.get(guid) if guid else None
        problem = next((e for e in (group, user) if isinstance(e, AmplifyBillingError)), None)
        if problem is not None and (owner_mode == "org" or not s.owner_user or isinstance(user, AmplifyBillingError)):
            details[code] = OwnerDetails(None, None, None, None, problem=str(problem))
            continue
        found = user if isinstance(user, Mapping) else {}
        company = group.get("name") if isinstance(group, Mapping) else None
        details[code] = OwnerDetails(
            email=found.get("email") or None,
            first_name=found.get("firstname") or None,
            last_name=found.get("lastname") or None,
            company=str(company) if company else None,
        )
    return details
