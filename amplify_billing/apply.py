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

from amplify_billing import interrupt
from amplify_billing.actions import Action
from amplify_billing.change_ids import change_ids
from amplify_billing.changes import Change, ChangeResult, ChangeSet, Outcome
from amplify_billing.errors import AmplifyBillingError, AuthError, UnreachableError
from amplify_billing.interrupt import INTERRUPTED_SKIP

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


# Why a change was not attempted once the --max-duration deadline came (the next run does it; see backlog.py).
DEADLINE_SKIP = "not attempted: --max-duration reached; the next run does it"

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
    # a plan applied to the overlays (a dry run, run's planning pass): its "applied" events are debug lines, so the
    # log names each real write once
    planning: bool = False
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
        upstream = {c.key for _, c in items if c.key and c.action is not None and c.action.system != "journal"}
        # A journal effect of the same phase that requires one write (the link of a subscription just created)
        # follows that write at once, in the same thread: a run killed between them leaves at most one write
        # without its journal record, never a whole phase of them.
        follow_ups: dict[str, list[tuple[int, Change]]] = {}
        for index, change in items:
            if _follows(change, upstream):
                follow_ups.setdefault(change.requires[0], []).append((index, change))
        following = {i for group in follow_ups.values() for i, _ in group}
        items = [(i, c) for i, c in items if i not in following]
        # any other dependency inside the phase needs ordering: run such a phase serially
        inner = any(k in keys for _, change in items for k in change.requires)
        parallel = [] if self.concurrency <= 1 or inner else [(i, c) for i, c in items if self._parallel(c)]
        in_parallel = {i for i, _ in parallel}
        serial = [(i, c) for i, c in items if i not in in_parallel]

        def step(index: int, change: Change) -> None:
            results[index] = self._step(change)
            for follow_index, follow in follow_ups.get(change.key, ()) if change.key else ():
                results[follow_index] = self._step(follow)

        for index, change in serial:
            step(index, change)
        if not parallel:
            return
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="recurly-writer") as pool:
            futures = {pool.submit(step, index, change): (index, change) for index, change in parallel}
            for future, (index, change) in futures.items():
                if interrupt.requested():  # a signal: queued writes never start, those in flight finish
                    pool.shutdown(wait=False, cancel_futures=True)
                if not future.cancelled():
                    future.result()
                    continue
                # never started: neither the write nor its journal follow-ups happened
                results[index] = ChangeResult(change, Outcome.SKIPPED, INTERRUPTED_SKIP)
                for follow_index, follow in follow_ups.get(change.key, ()) if change.key else ():
                    results[follow_index] = ChangeResult(follow, Outcome.SKIPPED, INTERRUPTED_SKIP)

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
        if _bookkeeping_of_done_write(change, self.result_ids):
            # the journal record of a write that happened is kept whatever stops the run: without it the next
            # run would not know the write was made
            return None
        if self._halted is not None:
            return self._halted
        if interrupt.requested():
            self._halted = INTERRUPTED_SKIP
            return self._halted
        if self.deadline is not None and self.monotonic() >= self.deadline:
            self.stopped_early = True
            self._halted = DEADLINE_SKIP
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
        log.log(
            # bookkeeping (one line per watermark) and planned writes are noise beside the writes made
            logging.DEBUG if system == "journal" or self.planning else logging.INFO,
            "%s %s: %s",
            name,
            change.recurly,
            change.summary,
            extra={"action": name, **change_ids(change, result_id, self.result_ids).log_fields()},
        )
        return ChangeResult(change, Outcome.APPLIED, result_id=result_id), None


def _bookkeeping_of_done_write(change: Change, done: Mapping[str, str | None]) -> bool:
    return (
        change.action is not None
        and change.action.system == "journal"
        and bool(change.requires)
        and all(k in done for k in change.requires)
    )


def _follows(change: Change, upstream_keys: set[str]) -> bool:
    """A journal effect that requires exactly one upstream write of its own phase (see ``_apply_phase``)."""
    return (
        change.action is not None
        and change.action.system == "journal"
        and len(change.requires) == 1
        and change.requires[0] in upstream_keys
    )


def planned(changeset: ChangeSet) -> list[ChangeResult]:
    """The results a dry run shows: every write planned, every finding reported."""
    return [ChangeResult(c, Outcome.PLANNED if c.writes else Outcome.REPORTED) for c in changeset.changes]
