"""Acknowledged findings: a finding the operator has seen and accepted stops counting until its acknowledgement
expires (``findings.acknowledge`` in the configuration).

A finding is named by a stable key, ``<kind>:<id>``: its kind (``finding``, ``unsupported``, ``waiting``; status
adds ``orphan``) and its own id, the finding's key when that is one token (``<subscription>:<quota>:…``, a plan
code, a subscription id), else the id its reference ends with (an unsupported plan is keyed by the plan's name
and id; its id is the plan's Amplify id). An acknowledgement names a kind and an id: the finding's id, as the
report shows it, or the Amplify or Recurly id of the object (then every finding of that kind about the object).

An acknowledged finding is still shown, marked as such; it counts neither for exit 1 (a withheld money action)
nor for ``--exit-code``, and it does not put ``status`` out of step. From the day after ``expires`` it counts
again and says that its acknowledgement expired. Pure: values in, values out; today's date is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Protocol

from amplify_billing.change_ids import change_ids, trailing_id
from amplify_billing.changes import REPORT_ONLY, Change, ChangeResult, CommandReport

# What exit_code_for needs to recompute a report's exit code from the results that still count.
ExitCodeOf = Callable[[list[ChangeResult]], int]


class Rule(Protocol):
    """One entry of ``findings.acknowledge`` (``settings.models.Acknowledgement`` is one)."""

    @property
    def kind(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def expires(self) -> date | None: ...


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """The acknowledgement that matched a finding: why, until when, and whether that day has passed."""

    reason: str
    expires: date | None
    expired: bool

    def describe(self) -> str:
        """One phrase for tables: ``acknowledged: <reason> (until 2027-01-31)`` or ``acknowledgement expired …``."""
        if self.expired:
            return f"acknowledgement expired on {self.expires}: {self.reason}"
        until = f" (until {self.expires})" if self.expires is not None else ""
        return f"acknowledged: {self.reason}{until}"


@dataclass(frozen=True, slots=True)
class AcknowledgedResult(ChangeResult):
    """A finding's result with the acknowledgement that matched it (expired or not)."""

    acknowledgement: Acknowledgement | None = None


def finding_id(change: Change) -> str:
    """The finding's own id: its key when that is one token, else the id its key or reference ends with."""
    key = change.key.strip()
    if key and not any(c.isspace() for c in key):
        return key
    return trailing_id(key) or trailing_id(change.amplify) or key or change.amplify


def finding_key(change: Change) -> str:
    """``<kind>:<id>``: how reports name a finding and how an acknowledgement matches it."""
    return f"{change.kind.value}:{finding_id(change)}"


def object_ids(change: Change) -> frozenset[str]:
    """Every id an acknowledgement may name for this finding: its own id and the ids of its object."""
    ids = change_ids(change)
    return frozenset(
        i for i in (finding_id(change), ids.amplify_id, ids.recurly_uuid, ids.recurly_code, change.recurly_id) if i
    )


def matching(kind: str, ids: Iterable[str], rules: Sequence[Rule], today: date) -> Acknowledgement | None:
    """The acknowledgement of a finding of ``kind`` known by ``ids``: a current one first, else an expired one."""
    wanted = set(ids)
    found = [r for r in rules if r.kind == kind and r.id in wanted]
    if not found:
        return None
    current = [r for r in found if r.expires is None or r.expires >= today]
    rule = current[0] if current else max(found, key=lambda r: r.expires or date.max)
    return Acknowledgement(rule.reason, rule.expires, expired=not current)


def acknowledged(result: ChangeResult) -> bool:
    """Whether the result is a finding with a current acknowledgement (it does not count)."""
    return (
        isinstance(result, AcknowledgedResult)
        and result.acknowledgement is not None
        and not result.acknowledgement.expired
    )


def acknowledgement_of(result: ChangeResult) -> Acknowledgement | None:
    return result.acknowledgement if isinstance(result, AcknowledgedResult) else None


def mark(results: Iterable[ChangeResult], rules: Sequence[Rule], today: date) -> list[ChangeResult]:
    """The results with each finding an acknowledgement names marked (expired ones marked as expired)."""
    marked: list[ChangeResult] = []
    for result in results:
        change = result.change
        found = matching(change.kind.value, object_ids(change), rules, today) if change.kind in REPORT_ONLY else None
        if found is None:
            marked.append(result)
        else:
            marked.append(
                AcknowledgedResult(result.change, result.outcome, result.error, result.result_id, acknowledgement=found)
            )
    return marked


def acknowledge_report(
    report: CommandReport, rules: Sequence[Rule], today: date, exit_code_of: ExitCodeOf
) -> CommandReport:
    """The report with its findings marked and its exit code computed without the acknowledged ones.

    ``exit_code_of`` is the command's own rule (``execute.exit_code_for`` with its flags). The code is recomputed
    only when it came from that rule over the report's results: a code a command set for another reason (a step
    that stopped, an error) stands."""
    results = mark(report.results, rules, today)
    if not any(acknowledged(r) for r in results):
        return replace(report, results=tuple(results))
    code = report.exit_code
    if exit_code_of(list(report.results)) == report.exit_code:
        code = exit_code_of([r for r in results if not acknowledged(r)])
    return replace(report, results=tuple(results), exit_code=code)


__all__ = [
    "AcknowledgedResult",
    "Acknowledgement",
    "Rule",
    "acknowledge_report",
    "acknowledged",
    "acknowledgement_of",
    "finding_id",
    "finding_key",
    "mark",
    "matching",
    "object_ids",
]
