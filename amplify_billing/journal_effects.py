"""Typed journal actions -> local writes (docs/architecture.md, "Executors").

Links, markers and watermarks are planned changes like the upstream writes: a dry run is the plan not applied,
and every local write is in the audit log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

from amplify_billing.actions import Action, AdvanceWatermark, SetLink, resolve
from amplify_billing.apply import Handler


class JournalWriter(Protocol):
    def set_link(self, kind: str, key: str, value: str) -> None: ...
    def usage_watermark(self, subscription_id: str, quota_id: str) -> datetime | None: ...
    def set_usage_watermark(self, subscription_id: str, quota_id: str, mark: datetime) -> None: ...


def journal_handlers(journal: Callable[[], JournalWriter]) -> dict[type[Action], Handler]:
    def set_link(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, SetLink)
        journal().set_link(action.kind, action.key, resolve(action.value, done))
        return None

    def advance(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        """Watermarks only move forward: a backfill (--from/--to) never moves one back."""
        assert isinstance(action, AdvanceWatermark)
        old = journal().usage_watermark(action.amplify_subscription_id, action.quota_id)
        if old is None or action.mark > old:
            journal().set_usage_watermark(action.amplify_subscription_id, action.quota_id, action.mark)
        return None

    return {SetLink: set_link, AdvanceWatermark: advance}
