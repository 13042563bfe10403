"""Whose the journal is: the Recurly site and Amplify tenant of its first real run."""

from __future__ import annotations

from amplify_billing.errors import ConfigError
from amplify_billing.journal.connection import JournalConnection
from amplify_billing.journal.values import JournalOwner


class Ownership(JournalConnection):
    """One journal per Recurly site: the first claim is recorded, and another site or tenant is refused."""

    def owner(self) -> JournalOwner | None:
        """The site and tenant recorded by the first real run; None for a journal no run has claimed yet."""
        with self._read() as db:
            row = db.execute(
                "SELECT recurly_site_id, recurly_subdomain, amplify_tenant_id FROM owner WHERE id = 1"
            ).fetchone()
        return None if row is None else JournalOwner(str(row[0]), str(row[1]), str(row[2]))

    def claim(self, owner: JournalOwner) -> JournalOwner:
        """Record ``owner`` unless the journal has one already; returns the owner the journal now has.

        The first claim wins and is never overwritten here: moving a journal to another site is not something a
        run may decide (the caller compares with ``JournalOwner.mismatch`` and refuses).
        """
        with self._write() as db:
            db.execute(
                "INSERT INTO owner (id, recurly_site_id, recurly_subdomain, amplify_tenant_id, recorded_at) "
                "VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (owner.recurly_site_id, owner.recurly_subdomain, owner.amplify_tenant_id, self._now()),
            )
        claimed = self.owner()
        assert claimed is not None
        return claimed

    def check_owner(self, current: JournalOwner) -> None:
        """Refuse (exit 2) a site or tenant other than the journal's own; an unclaimed journal passes."""
        stored = self.owner()
        problem = None if stored is None else stored.mismatch(current, self._path)
        if problem is not None:
            raise ConfigError(problem)
