"""The typed ids a change touches: the Amplify id and name, the Recurly code and uuid (docs/architecture.md, "Changes").

One place decides them, for the JSON report, the log event of every write and the stable key of a finding. They
come from the typed ``Change.action`` (a plan code, a subscription uuid, a ``Later`` resolved from the create's
result) and otherwise from ``Change.amplify_id`` / ``recurly_id``. Pure: values only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from amplify_billing.actions import (
    Approve,
    CancelSubscription,
    CreateAccount,
    CreateAddOn,
    CreateMeasuredUnit,
    CreatePlan,
    CreateSubscription,
    DeactivatePlan,
    Later,
    LinkSubscription,
    PostUsage,
    SetAttributes,
    TerminateSubscription,
    UpdateAddOn,
    UpdateMeasuredUnit,
    UpdatePlan,
    UpdateUsage,
)
from amplify_billing.changes import Change

# objects whose Recurly side is a subscription (found by uuid); the others are found by code or name
_BY_UUID = frozenset({"subscription", "approval", "usage"})

# the id at the end of a display reference such as "weather/gold (8ac9…)" or "subscription s1 (0a1f…)"
# (an id has a digit and at least 8 characters: "(deleted)" or "(not in Amplify)" is no id)
_TRAILING_ID = re.compile(r"\(((?=[^()]*\d)[0-9A-Za-z_.:-]{8,})\)$")


@dataclass(frozen=True, slots=True)
class ChangeIds:
    """What one change touches, as bare ids (None where a side has none, or is not known yet)."""

    amplify_id: str | None
    amplify_name: str | None
    recurly_code: str | None
    recurly_uuid: str | None

    def log_fields(self) -> dict[str, str]:
        """The ids as log record extras (``amplify_id``, ``recurly_id``); a missing side is ``-``."""
        return {"amplify_id": self.amplify_id or "-", "recurly_id": self.recurly_uuid or self.recurly_code or "-"}


def change_ids(
    change: Change, result_id: str | None = None, created: Mapping[str, str | None] | None = None
) -> ChangeIds:
    """The ids of ``change``; ``result_id`` is what its write returned, ``created`` the results of this run's
    subscription creates by change key (a later change names such a subscription by the create's key)."""
    code, uuid = _recurly_ids(change, result_id, created or {})
    return ChangeIds(_amplify_id(change), _amplify_name(change), code, uuid)


def _recurly_ids(
    change: Change, result_id: str | None, created: Mapping[str, str | None]
) -> tuple[str | None, str | None]:
    action = change.action
    if isinstance(action, CreateMeasuredUnit | UpdateMeasuredUnit):
        return action.name, None
    if isinstance(action, CreatePlan | UpdatePlan):
        return action.plan.code, None
    if isinstance(action, DeactivatePlan):
        return action.plan_code, None
    if isinstance(action, CreateAddOn | UpdateAddOn):
        return action.add_on.code, None
    if isinstance(action, CreateAccount):
        return action.code, None
    if isinstance(action, CreateSubscription):
        return None, result_id  # the uuid exists once the create is applied
    if isinstance(action, CancelSubscription | TerminateSubscription):
        return None, action.uuid
    if isinstance(action, PostUsage | UpdateUsage):
        return action.add_on_code, _uuid(action.subscription_uuid, created)
    if isinstance(action, LinkSubscription) and action.uuid is not None:
        return None, _uuid(action.uuid, created)
    if change.object not in _BY_UUID:
        return change.recurly_id, None
    if change.recurly_id is not None:
        return None, change.recurly_id
    # e.g. an approval that waited for the create of its subscription
    return None, next((created[key] for key in change.requires if created.get(key)), None)


def _uuid(value: str | Later, created: Mapping[str, str | None]) -> str | None:
    return created.get(value.key) if isinstance(value, Later) else value


def _amplify_id(change: Change) -> str | None:
    if change.amplify_id is not None:
        return change.amplify_id
    action = change.action
    if isinstance(action, CreateSubscription):
        return action.amplify_id
    if isinstance(action, PostUsage | UpdateUsage):
        return action.record.amplify_subscription_id
    if isinstance(action, SetAttributes | Approve | LinkSubscription):
        name = action.resource.get("metadata", {}).get("id") if isinstance(action.resource, Mapping) else None
        if isinstance(name, str):
            return name
    return trailing_id(change.amplify)


def _amplify_name(change: Change) -> str | None:
    action = change.action
    if isinstance(action, SetAttributes | Approve | LinkSubscription):
        name = action.resource.get("name")
        return name if isinstance(name, str) else None
    return None


def trailing_id(reference: str) -> str | None:
    """The id a display reference ends with, in parentheses (``weather/gold (8ac9…)`` → ``8ac9…``)."""
    found = _TRAILING_ID.search(reference.strip())
    return found.group(1) if found else None


__all__ = ["ChangeIds", "change_ids", "trailing_id"]
