"""The run history and the append-only audit log of what each run sent.

Free text kept here (an upstream's error message in an audit entry, a figure of a run) passes through the one
redaction point first: an error body that echoes a credential must not sit in the journal, which outlives
the run and goes into backups.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from amplify_billing.journal.connection import JournalConnection
from amplify_billing.journal.encoding import decode_json, encode_json, parse_optional_time, parse_time
from amplify_billing.journal.values import AuditEntry, RunRecord
from amplify_billing.redact import redact


class RunLog(JournalConnection):
    """Runs (started, finished, with their counts) and the audit entries of their writes."""

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
                (self._now(), exit_code, encode_json(_redacted(counts), strict=False), run_id),
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

    def first_applied_run(self, command: str) -> RunRecord | None:
        """The oldest run of ``command`` that was not a dry run and finished: since when this journal has seen
        what the command writes (a journal made later, or lost and made anew, has not seen what came before)."""
        with self._read() as db:
            row = db.execute(
                "SELECT * FROM runs WHERE command = ? AND dry_run = 0 AND finished_at IS NOT NULL "
                "ORDER BY id ASC LIMIT 1",
                (command,),
            ).fetchone()
        return None if row is None else self._run(row)

    @staticmethod
    def _run(row: tuple[Any, ...]) -> RunRecord:
        id_, command, dry_run, started_at, finished_at, exit_code, counts, pid = row
        return RunRecord(
            id=int(id_),
            command=str(command),
            dry_run=bool(dry_run),
            started_at=parse_time(started_at),
            finished_at=parse_optional_time(finished_at),
            exit_code=None if exit_code is None else int(exit_code),
            counts=decode_json(counts),
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
                (
                    run_id,
                    self._now(),
                    system,
                    action,
                    redact(key),
                    request_id,
                    response_id,
                    encode_json(_redacted(detail or {}), strict=False),
                ),
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
                at=parse_time(at),
                system=str(system),
                action=str(action),
                key=str(key),
                request_id=request_id,
                response_id=response_id,
                detail=decode_json(detail),
            )
            for id_, run, at, system, action, key, request_id, response_id, detail in rows
        ]


def _redacted(value: Any) -> Any:
    """``value`` with every string in it (keys of mappings aside) passed through ``redact``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value
