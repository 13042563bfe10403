"""Planned changes, their results and a command's report (docs/architecture.md, "Changes").

A ``Change`` is one difference to act on (with a typed ``Action``) or to show (a finding, an unsupported plan, a
subscription waiting). The pure core plans them; ``apply`` executes the writes; ``render`` shows them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from amplify_billing.actions import Action

# Changes


class ChangeKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DEACTIVATE = "deactivate"
    CANCEL = "cancel"
    TERMINATE = "terminate"
    APPROVE = "approve"
    LINK = "link"
    POST = "post"  # usage records
    RESTATE = "restate"
    UNSUPPORTED = "unsupported"
    WAITING = "waiting"
    FINDING = "finding"
    # the journal's own bookkeeping (links, ledger rows, intents, watermarks): planned and audited like the
    # others, counted in the report's figures rather than listed, and never "pending work" for --exit-code
    RECORD = "record"


# Kinds that only report: they never write anything.
REPORT_ONLY = frozenset({ChangeKind.UNSUPPORTED, ChangeKind.WAITING, ChangeKind.FINDING})
BOOKKEEPING = frozenset({ChangeKind.RECORD})
DESTRUCTIVE = frozenset({ChangeKind.DEACTIVATE, ChangeKind.CANCEL, ChangeKind.TERMINATE})


@dataclass(frozen=True, slots=True)
class Change:
    """One difference to act on (or, for report-only kinds, to show).

    ``action`` is the typed write ``apply`` performs (None for report-only kinds). ``amplify`` and ``recurly`` are
    the identities shown side by side; ``amplify_id`` / ``recurly_id`` the bare ids of the objects it touches, for
    logs and the JSON report. ``units``: the usage units a finding is about (not billed, or held back).
    """

    kind: ChangeKind
    object: str  # measured_unit | plan | add_on | account | subscription | usage | approval | ...
    amplify: str  # Amplify identity, e.g. "plan gold (8ac9…)"
    recurly: str  # Recurly identity, e.g. "plan amplify-8ac9…"
    summary: str
    action: Action | None = None
    units: int | None = None
    # stable ordering inside a phase; phases run in the order of PHASES
    phase: int = 50
    key: str = ""
    # keys of changes in the same set that must have succeeded first (a plan before its add-ons)
    requires: tuple[str, ...] = ()
    # a finding that holds back a money action (an unproven read, an uncountable window, a stuck intent, a
    # restatement not sent): the run exits 1 as for a failed change (DESIGN.md §7)
    withholds: bool = False
    amplify_id: str | None = None
    recurly_id: str | None = None

    @property
    def writes(self) -> bool:
        return self.kind not in REPORT_ONLY and self.action is not None

    @property
    def destructive(self) -> bool:
        return self.kind in DESTRUCTIVE


@dataclass(frozen=True)
class ChangeSet:
    command: str
    changes: tuple[Change, ...]
    # denominator of the safety valve: linked objects that a destructive change could hit
    linked_count: int = 0

    @staticmethod
    def of(command: str, changes: list[Change], *, linked_count: int = 0) -> ChangeSet:
        ordered = sorted(changes, key=lambda c: (c.phase, c.object, c.key or c.recurly, c.kind.value))
        return ChangeSet(command, tuple(ordered), linked_count)

    @property
    def writes(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.writes)

    @property
    def destructive(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.destructive)

    def by_kind(self, kind: ChangeKind) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.kind == kind)


class Outcome(StrEnum):
    PLANNED = "planned"  # dry run: would be applied
    APPLIED = "applied"
    FAILED = "failed"
    SKIPPED = "skipped"  # not attempted (a prerequisite failed, or --max-duration reached)
    REPORTED = "reported"  # report-only kinds (findings, unsupported, waiting)


@dataclass(frozen=True, slots=True)
class ChangeResult:
    change: Change
    outcome: Outcome
    error: str | None = None
    result_id: str | None = None  # Recurly id / uuid / usage id, when a write returned one


@dataclass(frozen=True)
class CommandReport:
    """What one command did: the input to rendering, metrics and the exit code."""

    command: str
    dry_run: bool
    results: tuple[ChangeResult, ...]
    # extra figures for the summary, e.g. {"units_reported": 1234}
    figures: Mapping[str, int | str] = field(default_factory=dict)
    exit_code: int = 0
    note: str | None = None  # e.g. "stopped at --max-duration; 12 changes left for the next run"
    # the journal's run row and when the command ran (the runtime's clock, UTC): set by execute.recorded
    run_id: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)
