"""The local journal (one SQLite file) and the run lock beside it (DESIGN.md §4, §5).

The journal holds what makes re-runs cheap and exactly-once writes possible: open intents, the usage
ledger and its watermarks, subscription links, the run history and an append-only audit log. It is
never the source of truth: a lost file is rebuilt from Recurly and Amplify, so the tables are plain
and the code does nothing clever. What it must do is keep every write it has acknowledged: WAL mode
with ``synchronous=FULL`` and a commit before every method returns, so a SIGKILL right after a call
returns loses nothing.

One module per concern: ``schema`` (tables, upgrades), ``connection`` (the file and one transaction per method),
``runs`` (run history, audit log), ``intents``, ``ledger`` (usage ledger, watermarks), ``links``, ``owner``,
``stale_check`` (the stale-journal sample), ``lock`` (the run lock), ``values`` and ``encoding``. ``Journal``
joins the concerns into the one object callers use.
"""

from __future__ import annotations

from amplify_billing.journal.intents import Intents
from amplify_billing.journal.ledger import UsageLedger
from amplify_billing.journal.links import Links
from amplify_billing.journal.lock import RunLock, lock_path_for
from amplify_billing.journal.owner import Ownership
from amplify_billing.journal.runs import RunLog
from amplify_billing.journal.schema import SCHEMA_VERSION
from amplify_billing.journal.stale_check import StaleCheck
from amplify_billing.journal.values import AuditEntry, Intent, JournalOwner, RunRecord, UsageLedgerEntry


class Journal(RunLog, Intents, UsageLedger, Links, Ownership, StaleCheck):
    """The SQLite journal. Every method commits before it returns; safe to share between threads."""


__all__ = [
    "SCHEMA_VERSION",
    "AuditEntry",
    "Intent",
    "Journal",
    "JournalOwner",
    "RunLock",
    "RunRecord",
    "UsageLedgerEntry",
    "lock_path_for",
]
