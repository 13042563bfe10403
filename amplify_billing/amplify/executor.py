"""Typed Amplify actions -> resource writes (docs/architecture.md, "Executors").

Each handler performs exactly one upstream write (none when the attributes already hold) and returns no id.
The resource client remembers the newest resourceVersion of what it wrote, so a second write to the same
subscription in one run (approve, then link) carries the right version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from amplify_billing.actions import Action, Approve, LinkSubscription, SetAttributes, resolve
from amplify_billing.amplify.resources import ResourceClient
from amplify_billing.apply import Handler


def amplify_handlers(resources: Callable[[], ResourceClient]) -> dict[type[Action], Handler]:
    """``resources`` is called on first use, so a plan with no Amplify write never builds the client."""

    def set_attributes(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, SetAttributes)
        resources().update_attributes(action.resource, action.attributes)
        return None

    def approve(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, Approve)
        resources().put_subresource(action.resource, "approval", {"state": "approved", "reason": action.reason})
        return None

    def link(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        """The account code and the Recurly uuid; a uuid this run created is taken from the create's result."""
        assert isinstance(action, LinkSubscription)
        attributes = dict(action.attributes)
        if action.uuid is not None:
            attributes[action.uuid_attribute] = resolve(action.uuid, done)
        resources().update_attributes(action.resource, attributes)
        return None

    return {SetAttributes: set_attributes, Approve: approve, LinkSubscription: link}
