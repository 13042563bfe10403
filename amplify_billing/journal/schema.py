"""The journal's schema: the tables of each version, the upgrade steps, and the checks before a file is used.

A new file gets the whole schema; an older journal is upgraded step by step in one transaction; a file that is
newer than this release, or not a journal at all, is refused with what to do.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from amplify_billing.errors import JournalError

# the logger the journal has always used, so that log filters and JSON logs name it as before the split
log = logging.getLogger("amplify_billing.journal")

# 1: the first release. 2: whose the journal is (owner), and where the stale-journal sample rotation stands.
SCHEMA_VERSION = 2

# The tables of the first release (schema 1), as it created them.
_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    exit_code INTEGER,
    counts TEXT NOT NULL DEFAULT '{}',
    pid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_command ON runs (command, id);

CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    at TEXT NOT NULL,
    system TEXT NOT NULL,
    action TEXT NOT NULL,
    key TEXT NOT NULL,
    request_id TEXT,
    response_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_run ON audit (run_id, id);
-- the audit log is evidence of what was sent: the code has no update or delete, and neither may SQL
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;

-- every attempt is kept (state open / done / abandoned); at most one attempt per key is open
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    run_id INTEGER,
    closed_at TEXT,
    result_id TEXT,
    reason TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS intents_open_key ON intents (key) WHERE state = 'open';

CREATE TABLE IF NOT EXISTS usage_ledger (
    merchant_tag TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    quota_id TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    recurly_subscription_id TEXT NOT NULL,
    add_on_code TEXT NOT NULL,
    amount TEXT NOT NULL,
    usage_id TEXT,
    billed INTEGER NOT NULL,
    kind TEXT NOT NULL,
    base_tag TEXT,
    recorded_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_by_window ON usage_ledger (subscription_id, quota_id, window_start);

CREATE TABLE IF NOT EXISTS usage_watermarks (
    subscription_id TEXT NOT NULL,
    quota_id TEXT NOT NULL,
    mark TEXT NOT NULL,
    PRIMARY KEY (subscription_id, quota_id)
);

CREATE TABLE IF NOT EXISTS links (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
"""

# Added by schema 2.
_OWNER_TABLES = """
-- whose the journal is: one Recurly site and one Amplify tenant, recorded by the first real run (one row)
CREATE TABLE IF NOT EXISTS owner (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    recurly_site_id TEXT NOT NULL,
    recurly_subdomain TEXT NOT NULL,
    amplify_tenant_id TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);

-- the last pair the stale-journal sample read, so that the next run reads the pairs after it (one row)
CREATE TABLE IF NOT EXISTS sample_rotation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_key TEXT NOT NULL,
    checked_at TEXT NOT NULL
);
"""

_SCHEMA = _SCHEMA_1 + _OWNER_TABLES

# What takes a journal of version N to N + 1, in order. Each step runs in the one transaction of the upgrade, so
# a journal is at one version or the next, never between; a step never drops or rewrites what is there.
_UPGRADES: dict[int, str] = {1: _OWNER_TABLES}


def _statements(script: str) -> Iterator[str]:
    """The statements of ``script`` one by one (a trigger body's semicolons do not end its statement)."""
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip() != ";":  # the empty tail after the last statement
                yield buffer.strip()
            buffer = ""


def _create_or_upgrade(path: Path, db: sqlite3.Connection) -> None:
    """A new file gets the whole schema; an older journal gets the upgrade steps from its version on.

    One transaction either way: a killed first run never leaves half a schema, and an upgrade is all done or not
    begun. The version is read again inside it, because another process may have created or upgraded the file
    between our first look and our lock; then there is nothing left to do. (executescript is not used: it would
    commit the transaction it finds open before running.)
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version < SCHEMA_VERSION:
            script = _SCHEMA if version == 0 else "".join(_UPGRADES[v] for v in range(version, SCHEMA_VERSION))
            for statement in _statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if version:
                log.info("journal %s upgraded from schema %d to %d", path, version, SCHEMA_VERSION)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def prepare(path: Path, db: sqlite3.Connection) -> None:
    """Refuse a file that is not a journal of this release or older; set WAL and FULL sync; create or upgrade."""
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {str(row[0]) for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise JournalError(
            f"{path} is not an amplify-billing journal ({error}); move it aside or point state.path at "
            "another file: the tool rebuilds its journal from Recurly"
        ) from error
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"the journal {path} has schema version {version}, newer than this amplify-billing knows "
            f"({SCHEMA_VERSION}); run the newer amplify-billing that wrote it, or move the file aside "
            "and let this version rebuild it from Recurly"
        )
    if version == 0 and tables - {"sqlite_sequence"}:
        raise JournalError(
            f"{path} is an SQLite database but not an amplify-billing journal (it has tables "
            f"{', '.join(sorted(tables))}); point state.path at another file"
        )
    try:
        mode = str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if mode.lower() != "wal":
            log.warning("journal %s: SQLite refused WAL mode (%s); continuing in %s mode", path, mode, mode)
        # FULL: the WAL is synced at every commit, so an acknowledged write survives a kill or power loss
        db.execute("PRAGMA synchronous = FULL")
        if version < SCHEMA_VERSION:
            _create_or_upgrade(path, db)
    except sqlite3.Error as error:
        raise JournalError(
            f"cannot prepare the journal {path}: {error}; check that the file and its directory are "
            "writable and the disk is not full"
        ) from error
