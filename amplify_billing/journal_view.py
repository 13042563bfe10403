"""What planning reads of the journal, and the overlay a dry run writes to instead (docs/architecture.md,
"Journal effects").

A dry run applies its plan to a ``PlannedJournal``: the journal as it is, plus the links, ledger rows,
watermarks and closed intents the plan would write, held in memory. Each later step of the same invocation
(the usage after an end, the next phase of ``run``) plans against that overlay, so it sees the state the
earlier planned changes would leave, and nothing reaches the file. A real run reads and writes the journal
itself; both implement ``JournalView``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from amplify_billing.journal import Intent, RunRecord, UsageLedgerEntry


class JournalReader(Protocol):
    """The reads planning makes of the journal."""

    def links(self, kind: str) -> dict[str, str]: ...
    def get_link(self, kind: str, key: str) -> str | None: ...
    def usage_watermark(self, subscription_id: str, quota_id: str) -> datetime | None: ...
    def usage_for_window(
        self, subscription_id: str, quota_id: str, window_start: datetime
    ) -> list[UsageLedgerEntry]: ...
    def open_intents(self, kind: str | None = None) -> list[Intent]: ...
    def sample_cursor(self) -> str | None: ...
    def usage_amounts(self, merchant_tags: Iterable[str]) -> dict[str, Decimal]: ...
    def newest_usage_window(self, subscription_id: str, quota_id: str) -> datetime | None: ...


class JournalView(JournalReader, Protocol):
    """Reads, and the local writes journal effects make (``journal_effects.journal_handlers``)."""

    def set_link(self, kind: str, key: str, value: str) -> None: ...
    def set_usage_watermark(self, subscription_id: str, quota_id: str, mark: datetime) -> None: ...
    def record_usage(self, entry: UsageLedgerEntry) -> None: ...
    def complete_intent(self, key: str, result_id: str | None) -> None: ...
    def abandon_intent(self, key: str, reason: str) -> None: ...
    def set_sample_cursor(self, last_key: str) -> None: ...


class EmptyJournal:
    """The reads of a journal that does not exist yet: nothing recorded. A dry run before the first real run, and
    ``status``, read it instead of creating the file."""

    def links(self, kind: str) -> dict[str, str]:
        return {}

    def get_link(self, kind: str, key: str) -> str | None:
        return None

    def usage_watermark(self, subscription_id: str, quota_id: str) -> datetime | None:
        return None

    def usage_for_window(self, subscription_id: str, quota_id: str, window_start: datetime) -> list[UsageLedgerEntry]:
        return []

    def open_intents(self, kind: str | None = None) -> list[Intent]:
        return []

    def sample_cursor(self) -> str | None:
        return None

    def usage_amounts(self, merchant_tags: Iterable[str]) -> dict[str, Decimal]:
        return {}

    def newest_usage_window(self, subscription_id: str, quota_id: str) -> datetime | None:
        return None

    def usage_entries(self, subscription_id: str | None = None) -> list[UsageLedgerEntry]:
        return []

    def last_run(self, command: str) -> RunRecord | None:
        return None


class PlannedJournal:
    """``base`` read through, with this plan's writes layered on top (never written to ``base``)."""

    def __init__(self, base: JournalReader) -> None:
        self._base = base
        self._links: dict[str, dict[str, str]] = {}
        self._marks: dict[tuple[str, str], datetime] = {}
        self._ledger: dict[str, UsageLedgerEntry] = {}
        self._closed: set[str] = set()
        self._cursor: str | None = None
        # the Applier may run planned writes from worker threads
        self._lock = threading.Lock()

    # ---- reads -------------------------------------------------------------------------------------------------
    def links(self, kind: str) -> dict[str, str]:
        with self._lock:
            return {**self._base.links(kind), **self._links.get(kind, {})}

    def get_link(self, kind: str, key: str) -> str | None:
        with self._lock:
            mine = self._links.get(kind, {})
            return mine[key] if key in mine else self._base.get_link(kind, key)

    def usage_watermark(self, subscription_id: str, quota_id: str) -> datetime | None:
        with self._lock:
            planned = self._marks.get((subscription_id, quota_id))
        return planned if planned is not None else self._base.usage_watermark(subscription_id, quota_id)

    def usage_for_window(self, subscription_id: str, quota_id: str, window_start: datetime) -> list[UsageLedgerEntry]:
        entries = self._base.usage_for_window(subscription_id, quota_id, window_start)
        with self._lock:
            mine = [
                e
                for e in self._ledger.values()
                if (e.subscription_id, e.quota_id, e.window_start) == (subscription_id, quota_id, window_start)
            ]
        replaced = {e.merchant_tag: e for e in mine}
        merged = [replaced.pop(e.merchant_tag, e) for e in entries] + list(replaced.values())
        return sorted(merged, key=lambda e: e.kind != "base")  # the base record first, as the journal orders them

    def open_intents(self, kind: str | None = None) -> list[Intent]:
        with self._lock:
            closed = set(self._closed)
        return [i for i in self._base.open_intents(kind) if i.key not in closed]

    def sample_cursor(self) -> str | None:
        with self._lock:
            return self._cursor if self._cursor is not None else self._base.sample_cursor()

    def usage_amounts(self, merchant_tags: Iterable[str]) -> dict[str, Decimal]:
        tags = set(merchant_tags)
        found = self._base.usage_amounts(tags)
        with self._lock:
            found.update({t: e.amount for t, e in self._ledger.items() if t in tags})
        return found

    def newest_usage_window(self, subscription_id: str, quota_id: str) -> datetime | None:
        with self._lock:
            mine = [
                e.window_start
                for e in self._ledger.values()
                if (e.subscription_id, e.quota_id)
                == (
                    subscription_id,
                    quota_id,
                )
            ]
        known = self._base.newest_usage_window(subscription_id, quota_id)
        return max([*mine, *([known] if known is not None else [])], default=None)

    # ---- writes (held in memory) -------------------------------------------------------------------------------
    def set_link(self, kind: str, key: str, value: str) -> None:
        with self._lock:
            self._links.setdefault(kind, {})[key] = value

    def set_usage_watermark(self, subscription_id: str, quota_id: str, mark: datetime) -> None:
        with self._lock:
            self._marks[(subscription_id, quota_id)] = mark

    def record_usage(self, entry: UsageLedgerEntry) -> None:
        with self._lock:
            old = self._ledger.get(entry.merchant_tag)
            # as the journal does: a record once billed stays billed
            self._ledger[entry.merchant_tag] = replace(entry, billed=True) if old and old.billed else entry

    def complete_intent(self, key: str, result_id: str | None) -> None:
        with self._lock:
            self._closed.add(key)

    def abandon_intent(self, key: str, reason: str) -> None:
        with self._lock:
            self._closed.add(key)

    def set_sample_cursor(self, last_key: str) -> None:
        with self._lock:
            self._cursor = last_key
