"""The two systems' clients of one invocation, built on first use (docs/architecture.md, "Runtime").

Lazily: ``--help`` and a dry run of a command that needs only one system never touch the other. Concurrent
Recurly writers ask for the gateway from worker threads, hence the lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from amplify_billing.settings import Settings

if TYPE_CHECKING:
    from amplify_billing.amplify.clients import AmplifyClients
    from amplify_billing.recurly.gateway import RecurlyGateway


@dataclass
class Clients:
    settings: Settings
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    _amplify: AmplifyClients | None = field(default=None, init=False)
    _recurly: RecurlyGateway | None = field(default=None, init=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False)

    @property
    def recurly_built(self) -> bool:
        return self._recurly is not None

    def amplify(self) -> AmplifyClients:
        with self._lock:
            if self._amplify is None:
                from amplify_billing.amplify.clients import AmplifyClients

                self._amplify = AmplifyClients.build(self.settings.amplify, sleep=self.sleep, monotonic=self.monotonic)
            return self._amplify

    def recurly(self) -> RecurlyGateway:
        with self._lock:
            if self._recurly is None:
                from amplify_billing.recurly.gateway import RecurlyGateway

                self._recurly = RecurlyGateway(self.settings.recurly, sleep=self.sleep)
            return self._recurly

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
