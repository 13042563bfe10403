"""The journal of one invocation: opened on first use, and proven to be this Recurly site's and Amplify tenant's
before it is used with Recurly (docs/architecture.md, "Runtime")."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from amplify_billing.errors import ConfigError, UpstreamError
from amplify_billing.settings import Settings

if TYPE_CHECKING:
    from amplify_billing.journal import Journal, JournalOwner


@dataclass
class JournalAccess:
    settings: Settings
    clock: Callable[[], datetime]
    # the Recurly site this invocation works for (``get_site``), read once, only when ownership is checked
    site: Callable[[], Mapping[str, Any]]
    _journal: Journal | None = field(default=None, init=False)
    _here: JournalOwner | None = field(default=None, init=False)
    _checked: bool = field(default=False, init=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False)

    @property
    def opened(self) -> Journal | None:
        """The journal if this invocation opened it (None: not yet, and maybe never: a dry run creates no file)."""
        return self._journal

    def open(self, *, check_owner: bool) -> Journal:
        """The journal, opened (and created or upgraded) on first use; ``check_owner`` once Recurly is in use too."""
        with self._lock:
            journal = self._open()
            if check_owner:
                self.check_owner()
            return journal

    def claim(self) -> Journal:
        """For a real run: refuse a journal of another site or tenant, and record ours in one that has no owner yet.

        One Recurly read per invocation (the site), however many commands it runs."""
        with self._lock:
            journal = self._open()
            here = self._here_owner()
            owner = journal.owner() or journal.claim(here)
            mismatch = owner.mismatch(here, journal.path)
            if mismatch is not None:
                raise ConfigError(mismatch)
            self._checked = True
            return journal

    def check_existing(self) -> None:
        """For a dry run: refuse a journal of another site or tenant, write nothing (not even a new file)."""
        with self._lock:
            if self._journal is not None or self.settings.state.path.exists():
                self._open()
                self.check_owner()

    def check_owner(self) -> None:
        """Once per invocation; an unclaimed journal is claimed by the first real run."""
        with self._lock:
            if self._checked or self._journal is None:
                return
            if self._journal.owner() is not None:
                self._journal.check_owner(self._here_owner())
            self._checked = True

    def _open(self) -> Journal:
        if self._journal is None:
            from amplify_billing.journal import Journal

            self._journal = Journal.open(self.settings.state.path, clock=self.clock)
        return self._journal

    def _here_owner(self) -> JournalOwner:
        if self._here is None:
            from amplify_billing.journal import JournalOwner

            site = self.site()
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

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
