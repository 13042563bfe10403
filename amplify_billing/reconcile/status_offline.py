"""The status report from the journal alone (``status --offline``, or a system that could not be read): the last
runs, the links and the open intents, with whatever one system could still say beside them.

Without both systems nothing can be compared, so such a report is never "in step": it says what it could not
read. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from amplify_billing.reconcile.status import COMMANDS, IntentFacts, intent_row, run_row
from amplify_billing.reconcile.status_report import (
    INTENT_COLUMNS,
    RUN_COLUMNS,
    Row,
    Section,
    StatusReport,
    columns,
)
from amplify_billing.reconcile.status_scope import StatusFilter

if TYPE_CHECKING:
    from amplify_billing.journal import RunRecord

LINK_COLUMNS = columns(("amplify_id", "Amplify subscription"), ("recurly_subscription", "Recurly subscription"))


@dataclass(frozen=True)
class JournalView:
    """What the journal holds that status shows: the last run of each command, subscription links, open intents."""

    runs: Mapping[str, RunRecord | None]
    links: Mapping[str, str]  # Amplify subscription id -> Recurly uuid
    intents: tuple[IntentFacts, ...] = ()
    journal_path: str = ""
    journal_present: bool = True
    # sections one system could still give (its plans), when the other could not be read
    extra: tuple[Section, ...] = field(default=())


def journal_status(
    view: JournalView,
    now: datetime,
    *,
    unavailable: Sequence[str] = (),
    only: StatusFilter | None = None,
) -> StatusReport:
    """The journal's view as a status report; ``unavailable`` names what could not be read (empty for
    ``--offline``, where nothing was asked of either system)."""
    links: list[Row] = sorted(view.links.items())
    intents = list(view.intents)
    if only is not None and only.subscriptions:
        links = [row for row in links if row[0] in only.subscriptions]
        intents = [f for f in intents if any(i in f.intent.key for i in only.subscriptions)]
    note = "" if view.journal_present else f" (no journal at {view.journal_path} yet)"
    sections = (
        Section("runs", "Last runs", RUN_COLUMNS, tuple(run_row(c, view.runs.get(c)) for c in COMMANDS)),
        Section(
            "links",
            "Subscription links (journal)",
            LINK_COLUMNS,
            tuple(links),
            empty="none" + note,
        ),
        Section(
            "open_intents",
            "Open journal intents",
            INTENT_COLUMNS,
            tuple(intent_row(f) for f in intents),
            empty="none" + note,
        ),
        *view.extra,
    )
    summary = {"subscriptions_linked": len(links), "open_intents": len(intents)}
    return StatusReport(
        generated_at=now,
        verified=False,
        drift=(),
        open_intents=len(intents),
        summary=summary,
        sections=sections,
        scope=only.describe() if only is not None else None,
        unavailable=tuple(unavailable),
        offline=True,
    )


def plans_section(name: str, title: str, rows: Sequence[Row], header: tuple[tuple[str, str], ...]) -> Section:
    """A section of one system's plans, shown when the other system could not be read."""
    return Section(name, title, columns(*header), tuple(rows), empty="none")


__all__ = ["LINK_COLUMNS", "JournalView", "journal_status", "plans_section"]
