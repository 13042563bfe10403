"""The usage ledger (every usage record posted or found, by merchant_tag) and the watermarks per pair."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from amplify_billing.journal.connection import JournalConnection
from amplify_billing.journal.encoding import parse_time, time_text
from amplify_billing.journal.values import UsageLedgerEntry

# the logger the journal has always used, so that log filters and JSON logs name it as before the split
log = logging.getLogger("amplify_billing.journal")

_LEDGER_COLUMNS = (
    "merchant_tag, subscription_id, quota_id, window_start, window_end, recurly_subscription_id, add_on_code, "
    "amount, usage_id, billed, kind, base_tag, recorded_at, updated_at"
)


class UsageLedger(JournalConnection):
    """Ledger entries by merchant_tag, read back per window, subscription or total; watermarks per pair."""

    def record_usage(self, entry: UsageLedgerEntry) -> None:
        """Insert or replace the entry with this merchant_tag.

        ``billed`` only ever goes from false to true: Recurly never unbills a record, so a stale
        "unbilled" from an older listing must not undo what ``mark_billed`` learned.
        """
        with self._write() as db:
            db.execute(
                """
                INSERT INTO usage_ledger (merchant_tag, subscription_id, quota_id, window_start, window_end,
                    recurly_subscription_id, add_on_code, amount, usage_id, billed, kind, base_tag,
                    recorded_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (merchant_tag) DO UPDATE SET
                    subscription_id = excluded.subscription_id,
                    quota_id = excluded.quota_id,
                    window_start = excluded.window_start,
                    window_end = excluded.window_end,
                    recurly_subscription_id = excluded.recurly_subscription_id,
                    add_on_code = excluded.add_on_code,
                    amount = excluded.amount,
                    usage_id = excluded.usage_id,
                    billed = MAX(billed, excluded.billed),
                    kind = excluded.kind,
                    base_tag = excluded.base_tag,
                    recorded_at = excluded.recorded_at,
                    updated_at = excluded.updated_at
                """,
                (
                    entry.merchant_tag,
                    entry.subscription_id,
                    entry.quota_id,
                    time_text(entry.window_start),
                    time_text(entry.window_end),
                    entry.recurly_subscription_id,
                    entry.add_on_code,
                    str(Decimal(entry.amount)),
                    entry.usage_id,
                    int(entry.billed),
                    entry.kind,
                    entry.base_tag,
                    time_text(entry.recorded_at),
                    time_text(entry.updated_at),
                ),
            )

    def usage_for_window(self, subscription_id: str, quota_id: str, window_start: datetime) -> list[UsageLedgerEntry]:
        """The base record of one window first, then its adjustments in the order they were recorded."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_LEDGER_COLUMNS} FROM usage_ledger "
                "WHERE subscription_id = ? AND quota_id = ? AND window_start = ? "
                "ORDER BY kind != 'base', rowid",
                (subscription_id, quota_id, time_text(window_start)),
            ).fetchall()
        return [self._entry(row) for row in rows]

    def usage_entries(self, subscription_id: str | None = None) -> list[UsageLedgerEntry]:
        """Every ledger entry (of one Amplify subscription), by subscription, quota, window."""
        order = " ORDER BY subscription_id, quota_id, window_start, kind != 'base', rowid"
        with self._read() as db:
            if subscription_id is None:
                rows = db.execute(f"SELECT {_LEDGER_COLUMNS} FROM usage_ledger{order}").fetchall()
            else:
                rows = db.execute(
                    f"SELECT {_LEDGER_COLUMNS} FROM usage_ledger WHERE subscription_id = ?{order}",
                    (subscription_id,),
                ).fetchall()
        return [self._entry(row) for row in rows]

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> UsageLedgerEntry:
        (tag, sub, quota, start, end, uuid, add_on, amount, usage_id, billed, kind, base_tag, recorded, updated) = row
        return UsageLedgerEntry(
            merchant_tag=tag,
            subscription_id=sub,
            quota_id=quota,
            window_start=parse_time(start),
            window_end=parse_time(end),
            recurly_subscription_id=uuid,
            add_on_code=add_on,
            amount=Decimal(amount),
            usage_id=usage_id,
            billed=bool(billed),
            kind=kind,
            base_tag=base_tag,
            recorded_at=parse_time(recorded),
            updated_at=parse_time(updated),
        )

    def mark_billed(self, merchant_tag: str) -> None:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE usage_ledger SET billed = 1, updated_at = ? WHERE merchant_tag = ?",
                (self._now(), merchant_tag),
            )
            found = cursor.rowcount
        if found == 0:
            log.warning("mark_billed: no ledger entry %s", merchant_tag)

    def usage_watermark(self, subscription_id: str, quota_id: str) -> datetime | None:
        """The end of the last window reported for the pair, or None when the journal has not seen it."""
        with self._read() as db:
            row = db.execute(
                "SELECT mark FROM usage_watermarks WHERE subscription_id = ? AND quota_id = ?",
                (subscription_id, quota_id),
            ).fetchone()
        return None if row is None else parse_time(row[0])

    def set_usage_watermark(self, subscription_id: str, quota_id: str, mark: datetime) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO usage_watermarks (subscription_id, quota_id, mark) VALUES (?, ?, ?) "
                "ON CONFLICT (subscription_id, quota_id) DO UPDATE SET mark = excluded.mark",
                (subscription_id, quota_id, time_text(mark)),
            )

    def usage_totals(self, since: datetime | None = None) -> dict[tuple[str, str], Decimal]:
        """Units recorded per (Amplify subscription, quota), over windows starting at or after ``since``."""
        # summed in Python: SQLite's SUM would turn the text amounts into floats
        with self._read() as db:
            if since is None:
                rows = db.execute("SELECT subscription_id, quota_id, amount FROM usage_ledger").fetchall()
            else:
                rows = db.execute(
                    "SELECT subscription_id, quota_id, amount FROM usage_ledger WHERE window_start >= ?",
                    (time_text(since),),
                ).fetchall()
        totals: dict[tuple[str, str], Decimal] = {}
        for subscription_id, quota_id, amount in rows:
            pair = (str(subscription_id), str(quota_id))
            totals[pair] = totals.get(pair, Decimal(0)) + Decimal(amount)
        return dict(sorted(totals.items()))
