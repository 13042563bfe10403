"""One invocation's composition root (docs/architecture.md, "Runtime").

It builds, and hands to the commands, the collaborators each needs: the two systems' clients (``clients.Clients``),
the journal proven to be this site's (``journal_access.JournalAccess``), the memoised listings (``snapshots``),
the overlays planned writes go to (``overlays.Overlays``), the executors (``handlers``), the clock and the
consoles. Tests and the demo construct a Runtime with their own clock and consoles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from rich.console import Console

from amplify_billing import interrupt
from amplify_billing.clients import Clients
from amplify_billing.journal_access import JournalAccess
from amplify_billing.render.progress import Display
from amplify_billing.settings import Settings

if TYPE_CHECKING:
    from amplify_billing.actions import Action
    from amplify_billing.amplify.clients import AmplifyClients
    from amplify_billing.apply import Handler
    from amplify_billing.changes import ChangeSet
    from amplify_billing.journal import Journal
    from amplify_billing.journal_view import JournalView
    from amplify_billing.overlays import Overlays
    from amplify_billing.recurly.gateway import RecurlyGateway
    from amplify_billing.snapshots import Snapshots


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    console: Console
    err_console: Console
    output: Literal["table", "json"] = "table"
    clock: Callable[[], datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic
    # a signal cuts a wait short (interrupt.sleep): a rate-limit wait of a minute never outlives SIGTERM
    sleep: Callable[[float], None] = interrupt.sleep
    # set by --max-duration: a monotonic deadline shared by every command of the invocation
    deadline: float | None = None
    clients: Clients = field(init=False)
    journals: JournalAccess = field(init=False)
    # what a person at a terminal sees while a command works (render.progress); nothing at all under cron
    display: Display = field(init=False)
    _snapshots: Snapshots | None = field(default=None, init=False)
    # while planning (a dry run, or the first pass of ``run``): where planned writes go
    _overlays: Overlays | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.clients = Clients(self.settings, sleep=self.sleep, monotonic=self.monotonic)
        self.journals = JournalAccess(self.settings, self.clock, lambda: self.clients.recurly().get_site())
        self.display = Display(self.err_console)

    # ---- the two systems and the journal ---------------------------------------------------------------------
    def amplify(self) -> AmplifyClients:
        return self.clients.amplify()

    def recurly(self) -> RecurlyGateway:
        """The Recurly gateway; a journal already open is first proven to be this site's (exit 2 otherwise)."""
        gateway = self.clients.recurly()
        self.journals.check_owner()
        return gateway

    def journal(self) -> Journal:
        """The journal, opened on first use; once this run uses Recurly too, it is proven to be this Recurly site's
        and Amplify tenant's before it is handed out (a ConfigError, exit 2, otherwise). Not before: a command that
        never talks to Recurly (``config check --offline``) reads no site."""
        return self.journals.open(check_owner=self.clients.recurly_built)

    def claim_journal(self) -> Journal:
        """For a real run, before anything else: refuse a journal of another site or tenant; claim an unowned one."""
        return self.journals.claim()

    def check_journal(self) -> None:
        """For a dry run: refuse a journal of another site or tenant, write nothing (not even a new file)."""
        self.journals.check_existing()

    def snapshots(self) -> Snapshots:
        """The memoised listings; while planning, the fork that planned writes are recorded on."""
        if self._overlays is not None:
            return self._overlays.snapshots
        return self._real_snapshots()

    def _real_snapshots(self) -> Snapshots:
        if self._snapshots is None:
            from amplify_billing.snapshots import Snapshots

            self._snapshots = Snapshots(self.settings, self.amplify().resources, self.recurly())
        return self._snapshots

    # ---- planning on overlays --------------------------------------------------------------------------------
    @property
    def planning(self) -> bool:
        """True while changes go to the overlays (nothing reaches either system or the journal file)."""
        return self._overlays is not None

    @property
    def planned_sets(self) -> list[ChangeSet]:
        """The change sets planned on the overlays so far (empty when not planning)."""
        return self._overlays.sets if self._overlays is not None else []

    def plan_on_overlays(self) -> None:
        """From now on, writes go to overlays over the listings and the journal as they are (an empty journal when
        the file does not exist: a dry run creates no file), so every later step of this invocation plans against
        the state the earlier planned changes would leave."""
        if self._overlays is None:
            from amplify_billing.overlays import Overlays

            self.check_journal()
            self._overlays = Overlays.over(self._real_snapshots(), self.journals.opened)

    def stop_planning(self) -> list[ChangeSet]:
        """Back to real writes; returns the change sets planned on the overlays (which are dropped)."""
        planned, self._overlays = self.planned_sets, None
        return planned

    def journal_view(self) -> JournalView:
        """What planning reads of the journal, and where journal effects go: the journal, or its overlay."""
        if self._overlays is not None:
            return self._overlays.journal
        return self.journal()

    def handlers(self) -> dict[type[Action], Handler]:
        """Every executor, each reaching its client or the journal only when a write needs it; while planning,
        the overlay executor, which records each write instead of sending it."""
        if self._overlays is not None:
            return self._overlays.handlers(self.clock)
        from amplify_billing.amplify.executor import amplify_handlers
        from amplify_billing.journal_effects import journal_handlers
        from amplify_billing.recurly.executor import recurly_handlers, usage_handlers

        return {
            # each subscription write's answer keeps the memoised listing current: the next phase re-lists nothing;
            # a created account's answer too (sync-invoices reads its pay link and card from it)
            **recurly_handlers(
                self.recurly,
                lambda answer: self._real_snapshots().record_recurly_subscription(answer),
                lambda answer: self._real_snapshots().record_recurly_account(
                    str(answer.get("code")), str(answer.get("id")), answer
                ),
            ),
            **usage_handlers(self.recurly, self.journal, self.clock),
            **amplify_handlers(lambda: self.amplify().resources),
            **journal_handlers(self.journal),
        }

    # ---- figures and the end ---------------------------------------------------------------------------------
    def api_calls(self) -> dict[str, dict[str, int]]:
        return self.clients.api_calls()

    def retries(self) -> dict[str, int]:
        return self.clients.retries()

    def close(self) -> None:
        self.clients.close()
        self.journals.close()
