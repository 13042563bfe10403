"""The values the journal stores and hands back: ledger entries, its owner, intents, runs and audit entries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any


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
