"""Links: small named facts by kind and key (subscription uuids, names, markers) that later runs read back."""

from __future__ import annotations

from amplify_billing.journal.connection import JournalConnection


class Links(JournalConnection):
    """One value per (kind, key), replaced by a newer one."""

    def get_link(self, kind: str, key: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT value FROM links WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return None if row is None else str(row[0])

    def set_link(self, kind: str, key: str, value: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO links (kind, key, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (kind, key, value, self._now()),
            )

    def links(self, kind: str) -> dict[str, str]:
        with self._read() as db:
            rows = db.execute("SELECT key, value FROM links WHERE kind = ? ORDER BY key", (kind,)).fetchall()
        return {str(k): str(v) for k, v in rows}
