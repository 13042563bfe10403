"""The identity rules: which Recurly object an Amplify object is (docs/architecture.md, "Identity").

One module, called everywhere: a plan is ``{plan_code_prefix}{plan id}``, a usage add-on
``{add_on_code_prefix}{quota id}`` and an account ``amplify-user-{guid}`` / ``amplify-team-{guid}`` /
``amplify-org-{id}``, all lower-cased (Recurly codes are ``[a-z0-9_-]``). Ids are opaque: they are never
shortened or mangled, and a code that does not fit is refused where it is made (``reconcile/plan_mapping``).
Pure: no I/O, no settings.
"""

from __future__ import annotations

from typing import Protocol

DEFAULT_PREFIX = "amplify-"


class _Owned(Protocol):
    @property
    def owner_org(self) -> str | None: ...
    @property
    def owner_user(self) -> str | None: ...
    @property
    def owner_team(self) -> str | None: ...


def plan_code(plan_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}{plan_id}".lower()


def add_on_code(quota_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}{quota_id}".lower()


def account_code(subscription: _Owned, owner_mode: str) -> str | None:
    """``amplify-user-{guid}`` for a user owner, else ``amplify-team-{guid}``; ``amplify-org-{id}`` in org mode.

    None when the subscription names no owner of that kind (it cannot be billed: a finding says so)."""
    if owner_mode == "org":
        return f"amplify-org-{subscription.owner_org}" if subscription.owner_org else None
    if subscription.owner_user:
        return f"amplify-user-{subscription.owner_user}"
    if subscription.owner_team:
        return f"amplify-team-{subscription.owner_team}"
    return None
