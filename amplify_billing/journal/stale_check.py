"""What the stale-journal sample (usage/journal_check.py) reads and resets: its rotation, amounts by merchant_tag,
the newest window per pair, and forgetting every usage mark of a journal found stale."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from amplify_billing.journal.connection import JournalConnection
from amplify_billing.journal.encoding import parse_time

# the logger the journal has always used, so that log filters and JSON logs name it as before the split
log = logging.getLogger("amplify_billing.journal")


class StaleCheck(JournalConnection):
    """Where the sample rotation stands, what the ledger holds for the sampled records, and the reset."""

    def sample_cursor(self) -> str | None:
        """The key of the last pair the previous sample read; the next sample starts after it."""
        with self._read() as db:
            row = db.execute("SELECT last_key FROM sample_rotation WHERE id = 1").fetchone()
        return None if row is None else str(row[0])

    def set_sample_cursor(self, last_key: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO sample_rotation (id, last_key, checked_at) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET last_key = excluded.last_key, checked_at = excluded.checked_at",
                (last_key, self._now()),
            )

    def usage_amounts(self, merchant_tags: Iterable[str]) -> dict[str, Decimal]:
        """The amount the ledger holds for each of ``merchant_tags`` it knows (the others are absent)."""
        tags = sorted(set(merchant_tags))
        found: dict[str, Decimal] = {}
        with self._read() as db:
            # in slices: SQLite limits the number of parameters of one statement
            for start in range(0, len(tags), 500):
                part = tags[start : start + 500]
                marks = ", ".join("?" * len(part))
                rows = db.execute(
                    f"SELECT merchant_tag, amount FROM usage_ledger WHERE merchant_tag IN ({marks})", part
                ).fetchall()
                found.update((str(tag), Decimal(amount)) for tag, amount in rows)
        return found

    def newest_usage_window(self, subscription_id: str, quota_id: str) -> datetime | None:
        """The start of the newest window the ledger holds a record of for the pair, or None."""
        with self._read() as db:
            row = db.execute(
                "SELECT MAX(window_start) FROM usage_ledger WHERE subscription_id = ? AND quota_id = ?",
                (subscription_id, quota_id),
            ).fetchone()
        return None if row is None or row[0] is None else parse_time(row[0])

    def forget_usage_marks(self, link_kinds: Iterable[str]) -> int:
        """Forget what makes any (subscription, quota) "known", in one transaction: every usage watermark, and
        the links of ``link_kinds`` (report-usage's "looked up in Recurly" and sync-subscriptions' "created by
        this journal", which let a pair skip reading Recurly). Returns the number of watermarks forgotten.

        For a stale journal (restored from a backup, or another host's): the next report-usage then reads every
        pair's usage from Recurly into the ledger before it posts anything, as for a lost journal. The ledger,
        the intents, the subscription links and the audit log stay: they are facts, and the rebuild overwrites
        ledger entries with what Recurly holds.
        """
        kinds = sorted(set(link_kinds))
        with self._write() as db:
            forgotten = db.execute("DELETE FROM usage_watermarks").rowcount
            for kind in kinds:
                db.execute("DELETE FROM links WHERE kind = ?", (kind,))
            db.execute("DELETE FROM sample_rotation")
        log.warning("journal %s: forgot %d usage watermark(s) and the links %s", self._path, forgotten, kinds)
        return int(forgotten)
