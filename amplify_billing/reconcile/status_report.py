"""The shape of the status report: sections of plain rows, the drift items, and the columns of each section.

A cell is text, a whole number or nothing (times are already text, to the second in UTC), so every row
is JSON as it stands. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from amplify_billing.acknowledge import Acknowledgement
from amplify_billing.changes import Change
from amplify_billing.errors import ExitCode

# What a cell of the status report holds: figures are whole numbers (or exact text), times are already text.
StatusCell: TypeAlias = str | int | None

Row: TypeAlias = tuple[StatusCell, ...]


def format_ts(moment: datetime | None) -> str | None:
    """A time as the report shows it, to the second in UTC."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class DriftItem:
    """One thing out of step. ``next`` says what resolves it: a command, ``by hand``, or ``waits``.

    The typed ids name what it is about (for filters, the JSON report and acknowledgements); ``key`` is its stable
    finding key (``<kind>:<id>``); ``acknowledged`` the acknowledgement that matched it (``acknowledge.py``);
    ``change`` the planned change it stands for, when a command would act on it."""

    area: str  # plans | subscriptions | usage | journal
    kind: str  # a ChangeKind value, or orphan / link / usage
    amplify: str
    recurly: str
    detail: str
    next: str
    amplify_id: str | None = None
    recurly_id: str | None = None  # a uuid, or a plan, add-on or account code
    key: str = ""
    acknowledged: Acknowledgement | None = None
    change: Change | None = None

    @property
    def ids(self) -> frozenset[str]:
        """Every id it names (an acknowledgement or a filter may name any of them)."""
        own = self.key.split(":", 1)[1] if ":" in self.key else self.key
        return frozenset(i for i in (own, self.amplify_id, self.recurly_id) if i)

    @property
    def counts(self) -> bool:
        """Whether it puts status out of step: every item but one with a current acknowledgement."""
        return self.acknowledged is None or self.acknowledged.expired


@dataclass(frozen=True)
class SectionColumn:
    """One column of a section: its JSON key, its header, and whether it holds figures (right-aligned)."""

    key: str
    header: str
    figures: bool = False


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    columns: tuple[SectionColumn, ...]
    rows: tuple[Row, ...]
    empty: str = "none"  # what a table says when there are no rows
    # JSON keys of columns left out of the table and Markdown (kept in JSON): ids that make rows too wide
    wide: frozenset[str] = frozenset()

    def narrow(self) -> tuple[tuple[SectionColumn, ...], tuple[Row, ...]]:
        keep = [i for i, c in enumerate(self.columns) if c.key not in self.wide]
        return tuple(self.columns[i] for i in keep), tuple(tuple(row[i] for i in keep) for row in self.rows)

    def records(self) -> list[dict[str, StatusCell]]:
        return [{c.key: v for c, v in zip(self.columns, row, strict=True)} for row in self.rows]


@dataclass(frozen=True)
class StatusReport:
    generated_at: datetime
    verified: bool
    drift: tuple[DriftItem, ...]
    open_intents: int
    summary: Mapping[str, int]
    sections: tuple[Section, ...]
    # the filters it was built with (``--subscription ID`` …), None for the whole picture
    scope: str | None = None
    # what could not be read (a system down), each as one phrase; the sections show what could
    unavailable: tuple[str, ...] = ()
    # the journal's view only (``--offline``, or a system down)
    offline: bool = False

    @property
    def counting(self) -> tuple[DriftItem, ...]:
        """The drift that puts status out of step (acknowledged findings do not)."""
        return tuple(d for d in self.drift if d.counts)

    @property
    def in_step(self) -> bool:
        return not self.counting and not self.open_intents and not self.unavailable

    def exit_code(self, exit_code_flag: bool) -> int:
        # the journal's view alone cannot see drift: only its open intents are pending
        pending = bool(self.open_intents) if self.offline else not self.in_step
        if exit_code_flag and pending:
            return int(ExitCode.REFUSED)
        return int(ExitCode.OK)

    def section(self, name: str) -> Section:
        return next(s for s in self.sections if s.name == name)

    def summary_section(self) -> Section:
        """The summary figures as a section of their own (tables show it first; JSON has ``summary``)."""
        rows = tuple((k.replace("_", " "), v) for k, v in self.summary.items())
        return Section("summary", "Summary", columns(("figure", "figure"), ("value", "value")), rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "command": "status",
            "generated_at": format_ts(self.generated_at),
            "verified": self.verified,
            "in_step": self.in_step,
            "scope": self.scope,
            "offline": self.offline,
            "unavailable": list(self.unavailable),
            "summary": dict(self.summary),
            **{s.name: s.records() for s in self.sections},
        }


# columns holding figures are right-aligned
_NUMERIC = frozenset(
    {
        "add_ons",
        "live_subscriptions",
        "run_id",
        "exit_code",
        "amplify_units",
        "journal_units",
        "recurly_units",
        "value",
        "metered_units",
        "traced_units",
    }
)


def columns(*pairs: tuple[str, str]) -> tuple[SectionColumn, ...]:
    return tuple(SectionColumn(key, header, figures=key in _NUMERIC) for key, header in pairs)


# ---- the sections' columns ------------------------------------------------------------------------

PLAN_COLUMNS = columns(
    ("amplify_plan", "Amplify plan"),
    ("amplify_state", "state"),
    ("recurly_plan", "Recurly plan"),
    ("recurly_state", "Recurly state"),
    ("add_ons", "add-ons"),
    ("live_subscriptions", "live subs"),
    ("status", "status"),
)
SUBSCRIPTION_COLUMNS = columns(
    ("amplify_subscription", "Amplify subscription"),
    ("amplify_id", "id"),
    ("plan", "plan"),
    ("amplify_state", "Amplify"),
    ("account", "Recurly account"),
    ("recurly_subscription", "Recurly subscription"),
    ("recurly_state", "Recurly state"),
    ("status", "status"),
)
DRIFT_COLUMNS = columns(
    ("area", "area"),
    ("kind", "kind"),
    ("amplify", "Amplify"),
    ("recurly", "Recurly"),
    ("detail", "detail"),
    ("next", "next"),
)
INTENT_COLUMNS = columns(
    ("key", "key"), ("kind", "kind"), ("created_at", "since"), ("run_id", "run"), ("recurly", "Recurly")
)
RUN_COLUMNS = columns(
    ("command", "command"),
    ("run_id", "run"),
    ("started_at", "started"),
    ("finished_at", "finished"),
    ("exit_code", "exit"),
    ("outcome", "outcome"),
    ("changes", "changes"),
)
USAGE_COLUMNS = columns(
    ("amplify_subscription", "subscription"),
    ("amplify_id", "id"),
    ("quota", "quota"),
    ("recurly_subscription", "Recurly subscription"),
    ("add_on", "add-on"),
    ("period_start", "period start"),
    ("compared_from", "from"),
    ("compared_through", "through"),
    ("amplify_units", "Amplify"),
    ("journal_units", "journal"),
    ("recurly_units", "Recurly"),
    ("status", "status"),
    ("note", "note"),
)


__all__ = [
    "DRIFT_COLUMNS",
    "INTENT_COLUMNS",
    "PLAN_COLUMNS",
    "RUN_COLUMNS",
    "SUBSCRIPTION_COLUMNS",
    "USAGE_COLUMNS",
    "DriftItem",
    "Row",
    "Section",
    "SectionColumn",
    "StatusCell",
    "StatusReport",
    "columns",
    "format_ts",
]
