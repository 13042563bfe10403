"""The narrow collaborators each layer receives instead of the whole ``runtime.Runtime`` (docs/architecture.md,
"Runtime").

Each is a Protocol that ``Runtime`` satisfies structurally, so mypy proves that a consumer uses only what its
protocol names. The building blocks are one capability each; a consumer that needs several takes a protocol that
inherits them (``Phase``, ``Command``), or defines its own next to it (``gather.status.StatusReads``,
``gather.doctor.DoctorReads``, ``config_checks.Checkable``). Types only: nothing here is imported at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.console import Console

    from amplify_billing.actions import Action
    from amplify_billing.amplify.clients import AmplifyClients
    from amplify_billing.apply import Handler
    from amplify_billing.changes import ChangeSet
    from amplify_billing.journal import Journal
    from amplify_billing.journal_view import JournalView
    from amplify_billing.recurly.gateway import RecurlyGateway
    from amplify_billing.render.progress import Display
    from amplify_billing.settings import Settings
    from amplify_billing.snapshots import Snapshots


# ---- one capability each ---------------------------------------------------------------------------------------


class Settled(Protocol):
    """The invocation's settings."""

    @property
    def settings(self) -> Settings: ...


class Clocked(Protocol):
    """The invocation's clock (UTC)."""

    @property
    def clock(self) -> Callable[[], datetime]: ...


class Listings(Protocol):
    """The memoised listings of both systems (while planning, the fork planned writes are recorded on)."""

    def snapshots(self) -> Snapshots: ...


class AmplifyAccess(Protocol):
    """Amplify's clients (resources, platform, traceability)."""

    def amplify(self) -> AmplifyClients: ...


class RecurlyAccess(Protocol):
    """The Recurly gateway (an open journal is first proven to be this site's)."""

    def recurly(self) -> RecurlyGateway: ...


class OpensJournal(Protocol):
    """The journal file itself, opened on first use and proven to be this site's and tenant's."""

    def journal(self) -> Journal: ...


class Consoles(Protocol):
    """Where a read-only command prints its report (stdout) and its errors (stderr)."""

    @property
    def console(self) -> Console: ...
    @property
    def err_console(self) -> Console: ...


# ---- what gathering reads, and the engine that applies (or plans) a change set -------------------------------


class Reading(Settled, Clocked, Listings, Protocol):
    """What gathering and planning read: settings, clock, listings, and the journal as planning sees it (the
    journal, or its overlay while planning). ``gather.subscriptions.reads_of`` turns it into ``GatherReads``."""

    def journal_view(self) -> JournalView: ...


class Engine(Settled, OpensJournal, Protocol):
    """What ``execute.execute`` and ``execute.record`` use: the safety valve's settings, the overlays while
    planning, the executors, the journal's audit log, the deadline and the progress display."""

    @property
    def monotonic(self) -> Callable[[], float]: ...
    @property
    def deadline(self) -> float | None: ...
    @property
    def display(self) -> Display: ...
    @property
    def planning(self) -> bool: ...
    @property
    def planned_sets(self) -> list[ChangeSet]: ...
    def plan_on_overlays(self) -> None: ...
    def handlers(self) -> dict[type[Action], Handler]: ...


class Recording(Clocked, Protocol):
    """What ``execute.recorded`` uses to run one command under its entry in the journal's run history."""

    @property
    def display(self) -> Display: ...
    def plan_on_overlays(self) -> None: ...
    def claim_journal(self) -> Journal: ...


# ---- what the phases receive ---------------------------------------------------------------------------------


class Phase(Reading, Engine, AmplifyAccess, RecurlyAccess, Protocol):
    """A phase that gathers from both systems, plans and executes: link-accounts, sync-subscriptions (with its
    final usage), the usage phase, sync-invoices."""


class Command(Phase, Recording, Protocol):
    """A phase together with its run-history entry (``execute.recorded``): what a command's CLI body runs."""


class InvoicedListing(Settled, Listings, AmplifyAccess, Protocol):
    """What listing the subscriptions Amplify's invoices bill takes (``gather.invoices.invoiced_subscriptions``):
    link-accounts, sync-invoices and the usage phase (whose traffic is billed by those invoices, not by usage)."""


class InvoiceReads(InvoicedListing, RecurlyAccess, OpensJournal, Protocol):
    """What ``gather.invoices`` reads (marketplace mode): Amplify's invoices and subscriptions, Recurly's
    accounts and invoices, the journal's invoice links."""
