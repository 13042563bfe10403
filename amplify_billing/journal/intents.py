"""Intents: a write about to be sent, recorded first so that a run killed mid-write can resolve it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from amplify_billing.journal.connection import JournalConnection
from amplify_billing.journal.encoding import decode_json, encode_json, parse_time
from amplify_billing.journal.values import Intent

# the logger the journal has always used, so that log filters and JSON logs name it as before the split
log = logging.getLogger("amplify_billing.journal")


class Intents(JournalConnection):
    """Every attempt is kept (open, done or abandoned); at most one attempt per key is open."""

    def begin_intent(self, key: str, kind: str, payload: Mapping[str, Any]) -> None:
        """Record that a write with this key is about to be sent. A key already open stays as it is.

        The first open record wins: a write with its payload may already have landed, and resolving
        the intent looks for exactly that write.
        """
        encoded = encode_json(payload, strict=True)
        with self._write() as db:
            row = db.execute("SELECT kind, payload FROM intents WHERE key = ? AND state = 'open'", (key,)).fetchone()
            if row is not None:
                if row != (kind, encoded):
                    log.warning("intent %s is already open with another payload; keeping the first", key)
                return
            db.execute(
                "INSERT INTO intents (key, kind, payload, state, created_at, run_id) VALUES (?, ?, ?, 'open', ?, ?)",
                (key, kind, encoded, self._now(), self._run_id),
            )

    def open_intents(self, kind: str | None = None) -> list[Intent]:
        """Intents begun and never completed nor abandoned, oldest first."""
        with self._read() as db:
            sql = "SELECT key, kind, payload, created_at, run_id FROM intents WHERE state = 'open'"
            rows = (
                db.execute(sql + " ORDER BY id").fetchall()
                if kind is None
                else db.execute(sql + " AND kind = ? ORDER BY id", (kind,)).fetchall()
            )
        return [
            Intent(key=str(k), kind=str(kd), payload=decode_json(p), created_at=parse_time(c), run_id=r)
            for k, kd, p, c, r in rows
        ]

    def complete_intent(self, key: str, result_id: str | None) -> None:
        self._close_intent(key, "done", result_id=result_id, reason=None)

    def abandon_intent(self, key: str, reason: str) -> None:
        self._close_intent(key, "abandoned", result_id=None, reason=reason)

    def _close_intent(self, key: str, state: str, *, result_id: str | None, reason: str | None) -> None:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE intents SET state = ?, closed_at = ?, result_id = ?, reason = ? "
                "WHERE key = ? AND state = 'open'",
                (state, self._now(), result_id, reason, key),
            )
            closed = cursor.rowcount
        if closed == 0:
            # nothing to close: the write's outcome is already known, so there is nothing to lose here
            log.warning("no open intent %s to mark %s", key, state)
