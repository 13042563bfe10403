"""What one invocation works with: settings, clients, journal, snapshots, clock and consoles.

Clients are built lazily, so ``--help`` and ``--dry-run`` of a command that needs only one system
never touch the other. Tests and the demo construct a Runtime with their own clock and consoles.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from rich.console import Console

from amplify_billing.errors import ConfigError, UpstreamError
from amplify_billing.render.progress import Display
from amplify_billing.settings import Settings

if TYPE_CHECKING:
    from amplify_billing.actions import Action
    from amplify_billing.amplify.clients import AmplifyClients
    from amplify_billing.apply import Handler
    from amplify_billing.changes import ChangeSet
    from amplify_billing.journal import Journal, JournalOwner
    from amplify_billing.journal_view import JournalView, PlannedJournal
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
    sleep: Callable[[float], None] = time.sleep
    # set by --max-duration: a monotonic deadline shared by every command of the invocation
    deadline: float | None = None
    _amplify: AmplifyClients | None = field(default=None, init=False)
    _recurly: RecurlyGateway | None = field(default=None, init=False)
    _journal: Journal | None = field(default=None, init=False)
    # The Recurly site (read once per run) and Amplify tenant this invocation works for, and whether the open
    # journal was found to be theirs (DESIGN.md §5: one journal per Recurly site).
    _here: JournalOwner | None = field(default=None, init=False)
    _journal_checked: bool = field(default=False, init=False)
    _snapshots: Snapshots | None = field(default=None, init=False)
    # concurrent Recurly writers ask for clients and the journal from worker threads
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False)
    display: Display = field(init=False)
    # While planning (a dry run, or the first pass of ``run``): the overlays planned writes go to instead of the
    # two systems and the journal, and the change sets planned so far (docs/architecture.md, "Dry run and the
    # whole cycle").
    _overlay: tuple[Snapshots, PlannedJournal] | None = field(default=None, init=False)
    planned_sets: list[ChangeSet] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        # what a person at a terminal sees while a command works (render.progress); nothing at all under cron
        self.display = Display(self.err_console)

    def amplify(self) -> AmplifyClients:
        with self._lock:
            return self._amplify_clients()

    def _amplify_clients(self) -> AmplifyClients:
        if self._amplify is None:
            from amplify_billing.amplify.clients import AmplifyClients

            self._amplify = AmplifyClients.build(self.settings.amplify, sleep=self.sleep, monotonic=self.monotonic)
        return self._amplify

    def recurly(self) -> RecurlyGateway:
        with self._lock:
            gateway = self._recurly_gateway()
            if self._journal is not None:
                self._check_journal_owner()
            return gateway

    def _recurly_gateway(self) -> RecurlyGateway:
        if self._recurly is None:
            from amplify_billing.recurly.gateway import RecurlyGateway

            self._recurly = RecurlyGateway(self.settings.recurly, sleep=self.sleep)
        return self._recurly

    def journal(self) -> Journal:
        """The journal, opened (and created or upgraded) on first use.

        Once this run uses both the journal and Recurly, the journal is checked to belong to this Recurly site and
        Amplify tenant before either is handed out (a ConfigError, exit 2, otherwise). Not before: a command that
        never talks to Recurly (``config check --offline``) reads no site. Real runs check and claim it up front
        (``claim_journal``), before anything is read from Amplify or written anywhere.
        """
        with self._lock:
            journal = self._open_journal()
            if self._recurly is not None:
                self._check_journal_owner()
            return journal

    def claim_journal(self) -> Journal:
        """For a real run: refuse a journal of another site or tenant, and record ours in one that has no owner yet.

        One Recurly read per invocation (the site), however many commands it runs."""
        with self._lock:
            journal = self._open_journal()
            here = self._here_owner()
            owner = journal.owner() or journal.claim(here)
            mismatch = owner.mismatch(here, journal.path)
            if mismatch is not None:
                raise ConfigError(mismatch)
            self._journal_checked = True
            return journal

    def check_journal(self) -> None:
        """For a dry run: refuse a journal of another site or tenant, write nothing (not even a new file)."""
        with self._lock:
            if self._journal is not None or self.settings.state.path.exists():
                self._open_journal()
                self._check_journal_owner()

    def _open_journal(self) -> Journal:
        if self._journal is None:
            from amplify_billing.journal import Journal

            self._journal = Journal.open(self.settings.state.path, clock=self.clock)
        return self._journal

    def _check_journal_owner(self) -> None:
        if self._journal_checked:
            return
        assert self._journal is not None
        if self._journal.owner() is not None:  # an unclaimed journal is claimed by the first real run
            self._journal.check_owner(self._here_owner())
        self._journal_checked = True

    def _here_owner(self) -> JournalOwner:
        if self._here is None:
            from amplify_billing.journal import JournalOwner

            site = self._recurly_gateway().get_site()
            if not site.get("id"):
                raise UpstreamError(
                    "Recurly listed no site for this API key, so the journal cannot be matched to its site; "
                    "check recurly.api_key and recurly.api_url",
                    system="recurly",
                )
            self._here = JournalOwner(
                str(site["id"]), str(site.get("subdomain") or ""), str(self.settings.amplify.tenant_id)
            )
        return self._here

    def snapshots(self) -> Snapshots:
        """The memoised listings; while planning, the fork that planned writes are recorded on."""
        if self._overlay is not None:
            return self._overlay[0]
        return self._real_snapshots()

    def _real_snapshots(self) -> Snapshots:
        if self._snapshots is None:
            from amplify_billing.snapshots import Snapshots

            self._snapshots = Snapshots(self.settings, self.amplify().resources, self.recurly())
        return self._snapshots

    # ---- planning on overlays -------------------------------------------------------------------------------
    @property
    def planning(self) -> bool:
        """True while changes go to the overlays (nothing reaches either system or the journal file)."""
        return self._overlay is not None

    def plan_on_overlays(self) -> None:
        """From now on, writes go to overlays: a fork of the listings (sharing every read) and a journal overlay
        over the journal as it is (an empty one when the file does not exist: a dry run creates no file). Every
        later step of this invocation plans against the state the earlier planned changes would leave."""
        with self._lock:
            if self._overlay is not None:
                return
            from amplify_billing.journal_view import EmptyJournal, JournalReader, PlannedJournal

            self.check_journal()
            base: JournalReader = self._journal if self._journal is not None else EmptyJournal()
            self._overlay = (self._real_snapshots().fork(), PlannedJournal(base))
            self.planned_sets = []

    def stop_planning(self) -> list[ChangeSet]:
        """Back to real writes; returns the change sets planned on the overlays (which are dropped)."""
        with self._lock:
            planned, self._overlay, self.planned_sets = self.planned_sets, None, []
            return planned

    def journal_view(self) -> JournalView:
        """What planning reads of the journal, and where journal effects go: the journal, or its overlay."""
        if self._overlay is not None:
            return self._overlay[1]
        return self.journal()

    def handlers(self) -> dict[type[Action], Handler]:
        """Every executor, each reaching its client or the journal only when a write needs it; while planning,
        the overlay executor (``plan_overlay``), which records each write instead of sending it."""
        from amplify_billing.journal_effects import journal_handlers

        if self._overlay is not None:
            from amplify_billing.plan_overlay import overlay_handlers

            snapshots, journal = self._overlay
            return overlay_handlers(journal, snapshots, self.clock)
        from amplify_billing.amplify.executor import amplify_handlers
        from amplify_billing.recurly.executor import recurly_handlers, usage_handlers

        return {
            **recurly_handlers(self.recurly, lambda answer: self._real_snapshots().record_recurly_subscription(answer)),
            **usage_handlers(self.recurly, self.journal, self.clock),
            **amplify_handlers(lambda: self.amplify().resources),
            **journal_handlers(self.journal),
        }

    def api_calls(self) -> dict[str, dict[str, int]]:
        """Requests made so far by system and method, for the summary and the metrics file."""
        calls: dict[str, dict[str, int]] = {}
        if self._amplify is not None:
            calls["amplify"] = {k: v for k, v in self._amplify.transport.stats.items() if k.isupper()}
        if self._recurly is not None:
            calls["recurly"] = {k: v for k, v in self._recurly.stats.items() if k.isupper()}
        return calls

    def retries(self) -> dict[str, int]:
        result: dict[str, int] = {}
        if self._amplify is not None:
            result["amplify"] = int(self._amplify.transport.stats.get("retries", 0))
        if self._recurly is not None:
            result["recurly"] = int(self._recurly.stats.get("retries", 0))
        return result

    def close(self) -> None:
        if self._recurly is not None:
            self._recurly.close()
        if self._journal is not None:
            self._journal.close()
