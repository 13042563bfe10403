"""Execute a ChangeSet in order, journal every write, isolate failures per change.

Dry-run never reaches this module: previewing is simply not calling ``apply``. Each typed action
(``actions.CreatePlan``, ``actions.SetAttributes`` …) maps to a handler of its system's executor that performs
exactly one write (docs/architecture.md, "Executors"). A change whose prerequisite failed is skipped, not attempted;
a change that fails is recorded with its error and the run goes on with the others. When an upstream
system becomes unreachable or refuses our credentials, the remaining changes are skipped: they
would all fail the same way, and the next run picks them up.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from amplify_billing.actions import Action
from amplify_billing.change_ids import change_ids
from amplify_billing.changes import Change, ChangeResult, ChangeSet, Outcome
from amplify_billing.errors import AmplifyBillingError, AuthError, UnreachableError

log = logging.getLogger(__name__)


class AuditSink(Protocol):
    def audit(
        self,
        run_id: int,
        system: str,
        action: str,
        key: str,
        *,
        request_id: str | None = None,
        response_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None: ...


# A handler performs one write and returns the id of what it wrote (or None). It gets the action, its
# idempotency key, and the ids returned by earlier changes of the set by their key (a link attribute
# written after a create needs the id the create returned).
Handler = Callable[[Action, str, Mapping[str, str | None]], str | None]
Handlers = Mapping[type[Action], Handler]


def idempotency_key(change: Change) -> str:
    """Deterministic per action and its fields: a retried or re-run write carries the same key."""
    assert change.action is not None
    material = json.dumps({"a": change.action.verb, "p": change.action.identity()}, sort_keys=True, default=str)
    return "ab-" + hashlib.sha256(material.encode()).hexdigest()[:40]


# Writes of one phase may run side by side: Recurly with one client per worker thread; Amplify through its
# one transport, whose rate limiter keeps the whole process within its budget (25 requests a minute) however
# many threads ask. Approvals (one phase) still all come before link attributes (a later phase).
PARALLEL_SYSTEMS = frozenset({"recurly", "amplify"})


@dataclass
class Applier:
    handlers: Handlers
    journal: AuditSink
    run_id: int
    # monotonic deadline from --max-duration; None = no limit
    deadline: float | None = None
    monotonic: Callable[[], float] = time.monotonic
    on_progress: Callable[[int], None] | None = None
    # Recurly writes in flight at once (recurly.concurrency). Changes of one phase never depend on each other
    # (plans before add-ons, accounts before subscriptions, subscriptions before usage are separate phases),
    # so a phase's Recurly writes may overlap; phases still run one after the other.
    concurrency: int = 1
    stopped_early: bool = field(default=False, init=False)
    result_ids: dict[str, str | None] = field(default_factory=dict, init=False)
    _failed_keys: set[str] = field(default_factory=set, init=False)
    _halted: str | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def apply(self, changeset: ChangeSet) -> list[ChangeResult]:
        results: list[ChangeResult | None] = [None] * len(changeset.changes)
        indexed = list(enumerate(changeset.changes))
        for _phase, group in itertools.groupby(indexed, key=lambda item: item[1].phase):
            self._apply_phase(list(group), results)
        done = [r for r in results if r is not None]
        assert len(done) == len(results)
        return done

    def _apply_phase(self, items: list[tuple[int, Change]], results: list[ChangeResult | None]) -> None:
        keys = {change.key for _, change in items if change.key}
        # a dependency inside the phase (none today) would need ordering: run such a phase serially
        inner = any(k in keys for _, change in items for k in change.requires)
        parallel = [] if self.concurrency <= 1 or inner else [(i, c) for i, c in items if self._parallel(c)]
        in_parallel = {i for i, _ in parallel}
        serial = [(i, c) for i, c in items if i not in in_parallel]
        for index, change in serial:
            results[index] = self._step(change)
        if not parallel:
            return
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="recurly-writer") as pool:
            futures = {pool.submit(self._step, change): index for index, change in parallel}
            for future, index in futures.items():
                results[index] = future.result()

    @staticmethod
    def _parallel(change: Change) -> bool:
        return change.action is not None and change.writes and change.action.system in PARALLEL_SYSTEMS

    def _step(self, change: Change) -> ChangeResult:
        """Decide whether ``change`` may run, run it, record the outcome. Safe to call from worker threads."""
        if not change.writes:
            return ChangeResult(change, Outcome.REPORTED)
        with self._lock:
            skip = self._skip_reason(change)
            if skip is not None:
                self._failed_keys.add(change.key)
                return ChangeResult(change, Outcome.SKIPPED, skip)
        result, error = self._apply_one(change)
        with self._lock:
            if result.outcome is Outcome.FAILED:
                self._failed_keys.add(change.key)
                if isinstance(error, UnreachableError | AuthError) and self._halted is None:
                    # the rest would fail the same way; the next run picks them up
                    self._halted = f"not attempted: {error.system} failed ({error})"
            elif change.key:
                self.result_ids[change.key] = result.result_id
        if self.on_progress is not None:
            self.on_progress(1)
        return result

    def _skip_reason(self, change: Change) -> str | None:
        if self._halted is not None:
            return self._halted
        if self.deadline is not None and self.monotonic() >= self.deadline:
            self.stopped_early = True
            self._halted = "not attempted: --max-duration reached; the next run does it"
            return self._halted
        blocked = [k for k in change.requires if k in self._failed_keys]
        if blocked:
            return f"skipped: {', '.join(blocked)} failed"
        return None

    def _apply_one(self, change: Change) -> tuple[ChangeResult, AmplifyBillingError | None]:
        action = change.action
        assert action is not None
        handler = self.handlers.get(type(action))
        system, name = action.system, action.verb
        if handler is None:
            raise KeyError(f"no handler for action {name}")  # a programming error, not an input error
        key = idempotency_key(change)
        try:
            result_id = handler(action, key, self.result_ids)
        except AmplifyBillingError as error:
            log.warning(
                "%s %s failed: %s",
                name,
                change.recurly,
                error,
                extra={"action": name, "key": key, **change_ids(change).log_fields()},
            )
            self.journal.audit(
                self.run_id,
                system,
                name,
                change.key or change.recurly,
                request_id=getattr(error, "request_id", None),
                detail={"outcome": "failed", "error": str(error), "idempotency_key": key},
            )
            return ChangeResult(change, Outcome.FAILED, str(error)), error
        self.journal.audit(
            self.run_id,
            system,
            name,
            change.key or change.recurly,
            response_id=result_id,
            detail={"outcome": "applied", "idempotency_key": key, "summary": change.summary},
        )
        log.info(
            "%s %s: %s",
            name,
            change.recurly,
            change.summary,
            extra={"action": name, **change_ids(change, result_id, self.result_ids).log_fields()},
        )
        return ChangeResult(change, Outcome.APPLIED, result_id=result_id), None


def planned(changeset: ChangeSet) -> list[ChangeResult]:
    """The results a dry run shows: every write planned, every finding reported."""
    return [ChangeResult(c, Outcome.PLANNED if c.writes else Outcome.REPORTED) for c in changeset.changes]
