"""Execute a ChangeSet in order, journal every write, isolate failures per change.

Dry-run never reaches this module: previewing is simply not calling ``apply`` (STYLE.md rule 3).
Each action name (``recurly.create_plan``, ``amplify.set_attributes`` …) maps to a handler that
performs exactly one upstream write. A change whose prerequisite failed is skipped, not attempted;
a change that fails is recorded with its error and the run goes on with the others. When an upstream
system becomes unreachable or refuses our credentials, the remaining changes are skipped: they
would all fail the same way, and the next run picks them up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from amplify_billing.errors import AmplifyBillingError, AuthError, UnreachableError
from amplify_billing.models import Change, ChangeResult, ChangeSet, Outcome

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


# A handler performs one write and returns the id of what it wrote (or None). It gets the change, its
# idempotency key, and the ids returned by earlier changes of the set by their key (a link attribute
# written after a create needs the id the create returned).
Handler = Callable[[Change, str, Mapping[str, str | None]], str | None]


def idempotency_key(change: Change) -> str:
    """Deterministic per (action, payload): a retried or re-run write carries the same key."""
    material = json.dumps({"a": change.action, "p": _plain(change.payload)}, sort_keys=True, default=str)
    return "ab-" + hashlib.sha256(material.encode()).hexdigest()[:40]


def _plain(payload: Mapping[str, Any]) -> dict[str, Any]:
    # the raw Amplify resource changes its resourceVersion on every write; identify it by its link
    return {
        k: (v.get("metadata", {}).get("selfLink") if k == "resource" and isinstance(v, Mapping) else v)
        for k, v in payload.items()
    }


@dataclass
class Applier:
    handlers: Mapping[str, Handler]
    journal: AuditSink
    run_id: int
    # monotonic deadline from --max-duration; None = no limit
    deadline: float | None = None
    monotonic: Callable[[], float] = time.monotonic
    on_progress: Callable[[int], None] | None = None
    stopped_early: bool = field(default=False, init=False)
    result_ids: dict[str, str | None] = field(default_factory=dict, init=False)

    def apply(self, changeset: ChangeSet) -> list[ChangeResult]:
        results: list[ChangeResult] = []
        failed_keys: set[str] = set()
        halted: str | None = None
        for change in changeset.changes:
            if not change.writes:
                results.append(ChangeResult(change, Outcome.REPORTED))
                continue
            if halted is not None:
                results.append(ChangeResult(change, Outcome.SKIPPED, halted))
                failed_keys.add(change.key)
                continue
            if self.deadline is not None and self.monotonic() >= self.deadline:
                self.stopped_early = True
                halted = "not attempted: --max-duration reached; the next run does it"
                results.append(ChangeResult(change, Outcome.SKIPPED, halted))
                failed_keys.add(change.key)
                continue
            blocked = [k for k in change.requires if k in failed_keys]
            if blocked:
                results.append(ChangeResult(change, Outcome.SKIPPED, f"skipped: {', '.join(blocked)} failed"))
                failed_keys.add(change.key)
                continue
            result, error = self._apply_one(change)
            results.append(result)
            if result.outcome is Outcome.FAILED:
                failed_keys.add(change.key)
                if isinstance(error, UnreachableError | AuthError):
                    halted = f"not attempted: {error.system} failed ({error})"
            if self.on_progress is not None:
                self.on_progress(1)
        return results

    def _apply_one(self, change: Change) -> tuple[ChangeResult, AmplifyBillingError | None]:
        assert change.action is not None
        handler = self.handlers.get(change.action)
        system = change.action.split(".", 1)[0]
        if handler is None:
            raise KeyError(f"no handler for action {change.action}")  # a programming error, not an input error
        key = idempotency_key(change)
        try:
            result_id = handler(change, key, self.result_ids)
        except AmplifyBillingError as error:
            log.warning(
                "%s %s failed: %s", change.action, change.recurly, error, extra={"action": change.action, "key": key}
            )
            self.journal.audit(
                self.run_id,
                system,
                change.action,
                change.key or change.recurly,
                request_id=getattr(error, "request_id", None),
                detail={"outcome": "failed", "error": str(error), "idempotency_key": key},
            )
            return ChangeResult(change, Outcome.FAILED, str(error)), error
        self.journal.audit(
            self.run_id,
            system,
            change.action,
            change.key or change.recurly,
            response_id=result_id,
            detail={"outcome": "applied", "idempotency_key": key, "summary": change.summary},
        )
        log.info("%s %s: %s", change.action, change.recurly, change.summary, extra={"action": change.action})
        if change.key:
            self.result_ids[change.key] = result_id
        return ChangeResult(change, Outcome.APPLIED, result_id=result_id), None


def planned(changeset: ChangeSet) -> list[ChangeResult]:
    """The results a dry run shows: every write planned, every finding reported."""
    return [ChangeResult(c, Outcome.PLANNED if c.writes else Outcome.REPORTED) for c in changeset.changes]
