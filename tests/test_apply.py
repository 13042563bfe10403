"""The applier: order of phases, concurrent Recurly writes, serial Amplify writes, failure isolation, deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from amplify_billing.actions import Action
from amplify_billing.apply import Applier
from amplify_billing.changes import Change, ChangeKind, ChangeSet, Outcome
from amplify_billing.errors import ApiRejectedError, UnreachableError


@dataclass(frozen=True, slots=True)
class PlanWrite(Action):
    tag: str


@dataclass(frozen=True, slots=True)
class UsageWrite(Action):
    tag: str


@dataclass(frozen=True, slots=True)
class AttributeWrite(Action):
    system: ClassVar[str] = "amplify"
    tag: str


ACTIONS: dict[str, type[Action]] = {
    "recurly.create_plan": PlanWrite,
    "usage.post": UsageWrite,
    "amplify.set_attributes": AttributeWrite,
}


class Recorder:
    """Handlers that sleep a little and record when each change ran and how many ran at once."""

    def __init__(self, fail: Mapping[str, Exception] | None = None) -> None:
        self.lock = threading.Lock()
        self.running: dict[str, int] = {"recurly": 0, "amplify": 0, "usage": 0}
        self.peak: dict[str, int] = {"recurly": 0, "amplify": 0, "usage": 0}
        self.order: list[tuple[str, int]] = []  # (key, phase) at start
        self.fail = dict(fail or {})

    def handler(self, system: str) -> Any:
        def handle(action: Action, key: str, done: Mapping[str, str | None]) -> str | None:
            tag, phase = action.tag, PHASES[type(action)]  # type: ignore[attr-defined]
            with self.lock:
                self.running[system] += 1
                self.peak[system] = max(self.peak[system], self.running[system])
                self.order.append((tag, phase))
            try:
                time.sleep(0.02)
                if tag in self.fail:
                    raise self.fail[tag]
                return f"id-{tag}"
            finally:
                with self.lock:
                    self.running[system] -= 1

        return handle

    def handlers(self) -> dict[type[Action], Any]:
        return {
            PlanWrite: self.handler("recurly"),
            UsageWrite: self.handler("usage"),
            AttributeWrite: self.handler("amplify"),
        }


class Audit:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def audit(self, run_id: int, system: str, action: str, key: str, **kwargs: Any) -> None:
        with self.lock:
            self.rows.append((action, key))


def change(key: str, action: str, phase: int, requires: tuple[str, ...] = ()) -> Change:
    return Change(
        ChangeKind.CREATE, "x", key, key, key, action=ACTIONS[action](key), phase=phase, key=key, requires=requires
    )


# the phase each test action runs in (the handler records it)
PHASES: dict[type[Action], int] = {PlanWrite: 10, UsageWrite: 70, AttributeWrite: 90}


def test_writes_of_one_phase_overlap_and_phases_stay_in_order() -> None:
    changes = [change(f"p{i}", "recurly.create_plan", 10) for i in range(8)]
    changes += [change(f"u{i}", "usage.post", 70) for i in range(8)]
    changes += [change(f"a{i}", "amplify.set_attributes", 90) for i in range(4)]
    recorder, audit = Recorder(), Audit()
    applier = Applier(recorder.handlers(), audit, run_id=1, concurrency=4)
    results = applier.apply(ChangeSet.of("t", changes))

    assert [r.outcome for r in results] == [Outcome.APPLIED] * 20
    assert [r.change.key for r in results] == [c.key for c in ChangeSet.of("t", changes).changes], "order kept"
    assert recorder.peak["recurly"] > 1 and recorder.peak["usage"] > 1
    assert recorder.peak["recurly"] <= 4 and recorder.peak["usage"] <= 4
    assert 1 < recorder.peak["amplify"] <= 4
    phases = [phase for _, phase in recorder.order]
    assert phases == sorted(phases), "no write of a later phase starts before the earlier phase is done"
    assert len(audit.rows) == 20
    assert applier.result_ids["p3"] == "id-p3"


def test_serial_when_concurrency_is_one() -> None:
    recorder = Recorder()
    Applier(recorder.handlers(), Audit(), run_id=1, concurrency=1).apply(
        ChangeSet.of("t", [change(f"p{i}", "recurly.create_plan", 10) for i in range(5)])
    )
    assert recorder.peak["recurly"] == 1


def test_a_failed_change_skips_its_dependents_and_the_others_go_on() -> None:
    changes = [
        change("plan-a", "recurly.create_plan", 10),
        change("plan-b", "recurly.create_plan", 10),
        change("usage-a", "usage.post", 70, requires=("plan-a",)),
        change("usage-b", "usage.post", 70, requires=("plan-b",)),
    ]
    recorder = Recorder(fail={"plan-a": ApiRejectedError("no", system="recurly")})
    results = {
        r.change.key: r
        for r in Applier(recorder.handlers(), Audit(), run_id=1, concurrency=4).apply(ChangeSet.of("t", changes))
    }
    assert results["plan-a"].outcome is Outcome.FAILED and results["plan-a"].error == "no"
    assert results["usage-a"].outcome is Outcome.SKIPPED and "plan-a failed" in str(results["usage-a"].error)
    assert results["plan-b"].outcome is Outcome.APPLIED and results["usage-b"].outcome is Outcome.APPLIED


def test_an_unreachable_system_halts_what_has_not_started() -> None:
    changes = [change("p0", "recurly.create_plan", 10)] + [change(f"u{i}", "usage.post", 70) for i in range(6)]
    recorder = Recorder(fail={"p0": UnreachableError("down", system="recurly")})
    results = Applier(recorder.handlers(), Audit(), run_id=1, concurrency=4).apply(ChangeSet.of("t", changes))
    assert results[0].outcome is Outcome.FAILED
    assert {r.outcome for r in results[1:]} == {Outcome.SKIPPED}
    assert all("recurly failed" in str(r.error) for r in results[1:])


def test_deadline_stops_cleanly_between_changes() -> None:
    clock = iter([0.0, 0.0, 5.0] + [10.0] * 50)
    applier = Applier(
        Recorder().handlers(), Audit(), run_id=1, deadline=1.0, monotonic=lambda: next(clock), concurrency=1
    )
    results = applier.apply(ChangeSet.of("t", [change(f"p{i}", "recurly.create_plan", 10) for i in range(5)]))
    assert [r.outcome for r in results] == [Outcome.APPLIED] * 2 + [Outcome.SKIPPED] * 3
    assert applier.stopped_early
