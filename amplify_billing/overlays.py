"""Where planned writes go while an invocation plans (docs/architecture.md, "Dry run and the whole cycle").

A fork of the memoised listings (sharing every read, so a later real pass reads nothing twice) and a journal
overlay over the journal as it is. A dry run plans every step on them; ``run`` plans its whole cycle on them
before its first real write. ``sets`` keeps the change sets planned, for the safety valve's judgement of a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from amplify_billing.journal_view import EmptyJournal, JournalReader, PlannedJournal

if TYPE_CHECKING:
    from amplify_billing.actions import Action
    from amplify_billing.apply import Handler
    from amplify_billing.changes import ChangeSet
    from amplify_billing.snapshots import Snapshots


@dataclass
class Overlays:
    snapshots: Snapshots
    journal: PlannedJournal
    sets: list[ChangeSet] = field(default_factory=list)

    @staticmethod
    def over(snapshots: Snapshots, journal: JournalReader | None) -> Overlays:
        """Overlays over the real listings and journal (an empty journal when there is no file yet)."""
        return Overlays(snapshots.fork(), PlannedJournal(journal if journal is not None else EmptyJournal()))

    def handlers(self, clock: Callable[[], datetime]) -> dict[type[Action], Handler]:
        """The overlay executor: each write recorded on the overlays instead of sent (``plan_overlay``)."""
        from amplify_billing.plan_overlay import overlay_handlers

        return overlay_handlers(self.journal, self.snapshots, clock)
