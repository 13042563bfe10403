"""The local journal (one SQLite file) and the run lock beside it (DESIGN.md §4, §5).

The journal holds what makes re-runs cheap and exactly-once writes possible: open intents, the usage
ledger and its watermarks, subscription links, the run history and an append-only audit log. It is
never the source of truth: a lost file is rebuilt from Recurly and Amplify, so the tables are plain
and the code does nothing clever. What it must do is keep every write it has acknowledged: WAL mode
with ``synchronous=FULL`` and a commit before every method returns, so a SIGKILL right after a call
returns loses nothing.

One connection is shared by the worker threads of a run, serialised by a lock; SQLite itself is then
used from one thread at a time, and each method is one transaction.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

from amplify_billing.errors import ConfigError, JournalError, LockHeldError

log = logging.getLogger(__name__)

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


# ---- values ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageLedgerEntry:
    """One usage record the tool posted to (or found in) Recurly, by its merchant_tag."""

    merchant_tag: str
    subscription_id: str  # Amplify subscription id
    quota_id: str
    window_start: datetime
    window_end: datetime
    recurly_subscription_id: str  # Recurly uuid
    add_on_code: str
    amount: Decimal
    usage_id: str | None
    billed: bool
    kind: str  # "base" | "adjustment"
    base_tag: str | None  # the base record's merchant_tag, for an adjustment
    recorded_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class JournalOwner:
    """Whose the journal is: the Recurly site its usage went to and the Amplify tenant it was counted in."""

    recurly_site_id: str
    recurly_subdomain: str
    amplify_tenant_id: str

    def describe(self) -> str:
        return (
            f"Recurly site {self.recurly_site_id} (subdomain {self.recurly_subdomain or '?'}) "
            f"and Amplify tenant {self.amplify_tenant_id}"
        )

    def mismatch(self, current: JournalOwner, path: Path) -> str | None:
        """Why ``current`` may not use this journal, or None when it is this journal's owner.

        The site is matched by id (a subdomain can be renamed); the tenant by id. A journal holds watermarks and a
        ledger of one site's usage: against another site it would skip windows that site never got, or think
        records of this site missing there and post them again.
        """
        if (current.recurly_site_id, current.amplify_tenant_id) == (self.recurly_site_id, self.amplify_tenant_id):
            return None
        return (
            f"the journal {path} belongs to {self.describe()}, but this configuration uses {current.describe()}. "
            "Keep one journal per Recurly site: point state.path at that site's journal (a new, empty file is "
            "rebuilt from Recurly on its first run), and run again; this journal was not changed"
        )


@dataclass(frozen=True)
class Intent:
    key: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    run_id: int | None


@dataclass(frozen=True)
class RunRecord:
    id: int
    command: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None
    exit_code: int | None
    counts: dict[str, int | str]
    pid: int


@dataclass(frozen=True)
class AuditEntry:
    id: int
    run_id: int
    at: datetime
    system: str
    action: str
    key: str
    request_id: str | None
    response_id: str | None
    detail: dict[str, Any]


# ---- encoding -------------------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        # a naive time is ambiguous; refusing it here beats storing a wrong hour
        raise ValueError(f"naive datetime {value.isoformat()} given to the journal; pass a timezone-aware time")
    return value.astimezone(UTC)


def _ts(value: datetime) -> str:
    # one fixed width (microseconds, Z) so that text order is time order in SQL comparisons
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _parse_ts_opt(text: str | None) -> datetime | None:
    return None if text is None else _parse_ts(text)


_DECIMAL_TAG = "$decimal"
_DATETIME_TAG = "$datetime"


def _encode_value(strict: bool) -> Callable[[Any], Any]:
    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return {_DECIMAL_TAG: str(value)}
        if isinstance(value, datetime):
            return {_DATETIME_TAG: _ts(value)}
        if strict:
            raise TypeError(f"the journal cannot store a {type(value).__name__} losslessly: {value!r}")
        return str(value)

    return default


def _dumps(data: Mapping[str, Any], *, strict: bool) -> str:
    return json.dumps(dict(data), default=_encode_value(strict), sort_keys=True, separators=(",", ":"))


def _decode_object(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if _DECIMAL_TAG in obj:
            return Decimal(obj[_DECIMAL_TAG])
        if _DATETIME_TAG in obj:
            return _parse_ts(obj[_DATETIME_TAG])
    return obj


def _loads(text: str) -> dict[str, Any]:
    value = json.loads(text, object_hook=_decode_object)
    assert isinstance(value, dict)
    return value


# ---- schema ---------------------------------------------------------------------------------------


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


# ---- the journal ----------------------------------------------------------------------------------


class Journal:
    """The SQLite journal. Every method commits before it returns; safe to share between threads."""

    def __init__(self, path: Path, connection: sqlite3.Connection, clock: Callable[[], datetime]) -> None:
        self._path = path
        self._db = connection
        self._clock = clock
        self._lock = threading.RLock()
        # the run in progress in this process, stamped on the intents it opens
        self._run_id: int | None = None

    @property
    def path(self) -> Path:
        return self._path

    @classmethod
    def open(cls, path: Path, *, clock: Callable[[], datetime]) -> Journal:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise JournalError(
                f"cannot create the journal directory {path.parent}: {error.strerror or error}; "
                "make it writable or point state.path at a writable place"
            ) from error
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise JournalError(f"the journal {path} is not readable and writable; fix its permissions")
        if not path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
            raise JournalError(
                f"cannot create the journal {path}: directory {path.parent} is not writable; "
                "make it writable or point state.path at a writable place"
            )
        try:
            # autocommit mode: transactions are begun explicitly, so none is ever left open by accident
            connection = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise JournalError(
                f"cannot open the journal {path}: {error}; check that the path is a writable file"
            ) from error
        try:
            cls._prepare(path, connection)
        except BaseException:
            connection.close()
            raise
        return cls(path, connection, clock)

    @staticmethod
    def _prepare(path: Path, db: sqlite3.Connection) -> None:
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

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- plumbing --

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed before the caller's method returns."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                raise self._failed(error) from error

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as error:
                raise self._failed(error) from error

    def _failed(self, error: sqlite3.Error) -> JournalError:
        return JournalError(
            f"the journal {self._path} failed: {error}; check the disk and the file's permissions, then run again"
        )

    def _now(self) -> str:
        return _ts(self._clock())

    # -- runs --

    def start_run(self, command: str, dry_run: bool) -> int:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO runs (command, dry_run, started_at, pid) VALUES (?, ?, ?, ?)",
                (command, int(dry_run), self._now(), os.getpid()),
            )
            run_id = cursor.lastrowid
        assert run_id is not None
        self._run_id = run_id
        return run_id

    def finish_run(self, run_id: int, exit_code: int, counts: Mapping[str, int | str]) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, counts = ? WHERE id = ?",
                (self._now(), exit_code, _dumps(counts, strict=False), run_id),
            )
        if self._run_id == run_id:
            self._run_id = None

    def recent_runs(self, limit: int = 20) -> list[RunRecord]:
        """Newest first."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [self._run(row) for row in rows]

    def last_run(self, command: str) -> RunRecord | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM runs WHERE command = ? ORDER BY id DESC LIMIT 1", (command,)).fetchone()
        return None if row is None else self._run(row)

    @staticmethod
    def _run(row: tuple[Any, ...]) -> RunRecord:
        id_, command, dry_run, started_at, finished_at, exit_code, counts, pid = row
        return RunRecord(
            id=int(id_),
            command=str(command),
            dry_run=bool(dry_run),
            started_at=_parse_ts(started_at),
            finished_at=_parse_ts_opt(finished_at),
            exit_code=None if exit_code is None else int(exit_code),
            counts=_loads(counts),
            pid=int(pid),
        )

    # -- audit log (append-only: there is no method to change or remove an entry) --

    def audit(
        self,
        run_id: int,
        system: str,
        action: str,
        key: str,
        *,
        request_id: str | None = None,
        response_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO audit (run_id, at, system, action, key, request_id, response_id, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, self._now(), system, action, key, request_id, response_id, _dumps(detail or {}, strict=False)),
            )

    def audit_entries(self, run_id: int | None = None) -> list[AuditEntry]:
        """Oldest first; all runs, or one."""
        with self._read() as db:
            if run_id is None:
                rows = db.execute("SELECT * FROM audit ORDER BY id").fetchall()
            else:
                rows = db.execute("SELECT * FROM audit WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
        return [
            AuditEntry(
                id=int(id_),
                run_id=int(run),
                at=_parse_ts(at),
                system=str(system),
                action=str(action),
                key=str(key),
                request_id=request_id,
                response_id=response_id,
                detail=_loads(detail),
            )
            for id_, run, at, system, action, key, request_id, response_id, detail in rows
        ]

    # -- intents (DESIGN.md §4) --

    def begin_intent(self, key: str, kind: str, payload: Mapping[str, Any]) -> None:
        """Record that a write with this key is about to be sent. A key already open stays as it is.

        The first open record wins: a write with its payload may already have landed, and resolving
        the intent looks for exactly that write.
        """
        encoded = _dumps(payload, strict=True)
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
            Intent(key=str(k), kind=str(kd), payload=_loads(p), created_at=_parse_ts(c), run_id=r)
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

    # -- usage ledger --

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
                    _ts(entry.window_start),
                    _ts(entry.window_end),
                    entry.recurly_subscription_id,
                    entry.add_on_code,
                    str(Decimal(entry.amount)),
                    entry.usage_id,
                    int(entry.billed),
                    entry.kind,
                    entry.base_tag,
                    _ts(entry.recorded_at),
                    _ts(entry.updated_at),
                ),
            )

    _LEDGER_COLUMNS = (
        "merchant_tag, subscription_id, quota_id, window_start, window_end, recurly_subscription_id, add_on_code, "
        "amount, usage_id, billed, kind, base_tag, recorded_at, updated_at"
    )

    def usage_for_window(self, subscription_id: str, quota_id: str, window_start: datetime) -> list[UsageLedgerEntry]:
        """The base record of one window first, then its adjustments in the order they were recorded."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {self._LEDGER_COLUMNS} FROM usage_ledger "
                "WHERE subscription_id = ? AND quota_id = ? AND window_start = ? "
                "ORDER BY kind != 'base', rowid",
                (subscription_id, quota_id, _ts(window_start)),
            ).fetchall()
        return [self._entry(row) for row in rows]

    def usage_entries(self, subscription_id: str | None = None) -> list[UsageLedgerEntry]:
        """Every ledger entry (of one Amplify subscription), by subscription, quota, window."""
        order = " ORDER BY subscription_id, quota_id, window_start, kind != 'base', rowid"
        with self._read() as db:
            if subscription_id is None:
                rows = db.execute(f"SELECT {self._LEDGER_COLUMNS} FROM usage_ledger{order}").fetchall()
            else:
                rows = db.execute(
                    f"SELECT {self._LEDGER_COLUMNS} FROM usage_ledger WHERE subscription_id = ?{order}",
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
            window_start=_parse_ts(start),
            window_end=_parse_ts(end),
            recurly_subscription_id=uuid,
            add_on_code=add_on,
            amount=Decimal(amount),
            usage_id=usage_id,
            billed=bool(billed),
            kind=kind,
            base_tag=base_tag,
            recorded_at=_parse_ts(recorded),
            updated_at=_parse_ts(updated),
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
        return None if row is None else _parse_ts(row[0])

    def set_usage_watermark(self, subscription_id: str, quota_id: str, mark: datetime) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO usage_watermarks (subscription_id, quota_id, mark) VALUES (?, ?, ?) "
                "ON CONFLICT (subscription_id, quota_id) DO UPDATE SET mark = excluded.mark",
                (subscription_id, quota_id, _ts(mark)),
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
                    (_ts(since),),
                ).fetchall()
        totals: dict[tuple[str, str], Decimal] = {}
        for subscription_id, quota_id, amount in rows:
            pair = (str(subscription_id), str(quota_id))
            totals[pair] = totals.get(pair, Decimal(0)) + Decimal(amount)
        return dict(sorted(totals.items()))

    # -- links --

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

    # -- whose the journal is (DESIGN.md §5: one journal per Recurly site) --

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

    # -- the stale-journal sample (usage/journal_check.py) --

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
        return None if row is None or row[0] is None else _parse_ts(row[0])

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


# ---- the run lock ---------------------------------------------------------------------------------


def lock_path_for(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".lock")


class RunLock:
    """One run at a time per journal: an flock on ``<state.path>.lock``.

    The kernel drops an flock when its holder dies, however it dies, so a file left by a killed run
    never blocks the next one. The file is never deleted: unlinking a lock file lets two processes
    lock two different inodes of the same name.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_path: Path, command: str, *, clock: Callable[[], datetime]) -> RunLock:
        path = lock_path_for(state_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise JournalError(
                f"cannot create the run lock {path}: {error.strerror or error}; "
                "make its directory writable or point state.path at a writable place"
            ) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockHeldError(_held_message(path, holder)) from None
        except OSError as error:
            os.close(fd)
            raise JournalError(f"cannot lock {path}: {error.strerror or error}") from error
        holder_line = json.dumps(
            {"pid": os.getpid(), "command": command, "started_at": _utc(clock()).strftime("%Y-%m-%dT%H:%M:%SZ")}
        )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (holder_line + "\n").encode(), 0)
            os.fsync(fd)
        except OSError as error:
            os.close(fd)  # closing drops the flock
            raise JournalError(f"cannot write the run lock {path}: {error.strerror or error}") from error
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            # cleared while still held, so nobody reads a finished run's details as the holder's
            os.ftruncate(fd, 0)
        except OSError:
            log.warning("could not clear the run lock %s", self.path)
        finally:
            os.close(fd)  # closing the only descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        data = json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _held_message(path: Path, holder: Mapping[str, Any]) -> str:
    if holder.get("pid") is None:
        # the holder has the lock but has not written its details yet (or the file was edited)
        who = "another amplify-billing run"
    else:
        who = (
            f"another amplify-billing run (pid {holder.get('pid')}, `{holder.get('command', '?')}`, "
            f"started {holder.get('started_at', '?')})"
        )
    return f"{who} holds {path}; wait for it to finish, or if no such process exists remove the file"


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
