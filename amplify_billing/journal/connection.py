"""The journal's one SQLite connection: opening the file, and one transaction per method, serialised by a lock.

One connection is shared by the worker threads of a run, serialised by a lock; SQLite itself is then used from
one thread at a time, and each method is one transaction, committed before it returns.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from amplify_billing.errors import JournalError
from amplify_billing.journal.encoding import time_text
from amplify_billing.journal.schema import prepare


class JournalConnection:
    """The file, its connection and clock; the journal's concerns (runs, intents, ledger…) build on this."""

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
    def open(cls, path: Path, *, clock: Callable[[], datetime]) -> Self:
        try:
            # the journal holds billing data: a directory made for it is its owner's alone
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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
            if not path.exists():
                # created 0600 whatever the umask; SQLite gives its -wal and -shm files the same mode
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
                os.chmod(path, 0o600)
        except FileExistsError:
            pass  # another process created it meanwhile: open what is there
        except OSError as error:
            raise JournalError(f"cannot create the journal {path}: {error.strerror or error}") from error
        try:
            # autocommit mode: transactions are begun explicitly, so none is ever left open by accident
            connection = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise JournalError(
                f"cannot open the journal {path}: {error}; check that the path is a writable file"
            ) from error
        try:
            prepare(path, connection)
        except BaseException:
            connection.close()
            raise
        return cls(path, connection, clock)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
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
        return time_text(self._clock())
