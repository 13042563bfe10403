"""Typed journal actions -> local writes (docs/architecture.md, "Journal effects").

Links, markers, ledger rows, intents and watermarks are planned changes like the upstream writes: a real run
writes them to the journal, a dry run to a ``journal_view.PlannedJournal`` (the same handlers, another target),
and every local write of a real run is in the audit log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from amplify_billing.actions import (
    AbandonIntent,
    Action,
    AdvanceWatermark,
    CompleteIntent,
    RecordUsage,
    SetLink,
    SetSampleCursor,
    resolve,
)
from amplify_billing.apply import Handler
from amplify_billing.journal_view import JournalView


def journal_handlers(journal: Callable[[], JournalView]) -> dict[type[Action], Handler]:
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

    def record(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, RecordUsage)
        journal().record_usage(action.entry)
        return action.entry.usage_id

    def complete(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, CompleteIntent)
        journal().complete_intent(action.key, action.usage_id)
        return action.usage_id

    def abandon(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, AbandonIntent)
        journal().abandon_intent(action.key, action.reason)
        return None

    def cursor(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
        assert isinstance(action, SetSampleCursor)
        journal().set_sample_cursor(action.last_key)
        return None

    return {
        SetLink: set_link,
        AdvanceWatermark: advance,
        RecordUsage: record,
        CompleteIntent: complete,
        AbandonIntent: abandon,
        SetSampleCursor: cursor,
    }
