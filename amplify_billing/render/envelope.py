"""The ``--output json`` report: one versioned envelope for every command (docs/architecture.md, "JSON report").

The models below are the contract. ``docs/report.schema.json`` is generated from them (``schema_text``; the
README gives the command) and a test keeps the two equal; the tests
validate every command's output against the models, whose ``extra="forbid"`` refuses a key they do not declare.

One command's document carries its changes and findings; ``run``'s carries one document per step in ``steps`` (its
own ``changes`` and ``findings`` stay empty, its ``counts`` add the steps' up). An error before a report exists (a
bad configuration, a held lock, a crash) is the same envelope with ``error`` set.

Bump ``SCHEMA_VERSION`` when a field changes meaning or goes away; a new field or a new kind keeps it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from amplify_billing import __version__
from amplify_billing.acknowledge import AcknowledgedResult, Acknowledgement, acknowledgement_of, finding_key
from amplify_billing.actions import CreateSubscription
from amplify_billing.change_ids import change_ids
from amplify_billing.changes import REPORT_ONLY, ChangeResult, CommandReport, Outcome
from amplify_billing.reconcile.status_report import DriftItem, StatusReport
from amplify_billing.reconcile.status_scope import ACKNOWLEDGEABLE
from amplify_billing.render.diagnostics import current_redaction
from amplify_billing.render.tables import iso, json_value

SCHEMA_VERSION: Literal[1] = 1

UtcTime = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$",
        json_schema_extra={"format": "date-time"},
        description="UTC, ISO 8601 with a Z",
    ),
]
Figure = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Counts(_Strict):
    """Results per outcome, every outcome present."""

    planned: int
    applied: int
    failed: int
    skipped: int
    reported: int


class Acknowledged(_Strict):
    """The acknowledgement (``findings.acknowledge``) that matched a finding."""

    reason: str
    expires: str | None = Field(description="the last day it holds (YYYY-MM-DD); null: until removed")
    expired: bool = Field(description="true: the day has passed, and the finding counts again")


class Entry(_Strict):
    """One change (a write) or one finding (a report-only kind): typed ids beside the display text."""

    key: str = Field(description="stable key of the change within its command (a plan code, 'create:<id>', …)")
    finding_key: str | None = Field(
        description="findings: '<kind>:<id>', what findings.acknowledge names (kind and id); null for changes"
    )
    acknowledged: Acknowledged | None = Field(
        description="findings: the acknowledgement that matched (an expired one counts again); else null"
    )
    kind: str = Field(
        description="create, update, deactivate, cancel, terminate, approve, link, post, restate, …; "
        "in findings: finding, unsupported, waiting"
    )
    object: str = Field(description="measured_unit, plan, add_on, account, subscription, approval, usage, …")
    outcome: Outcome
    withholds: bool = Field(description="a finding that held a money action back (the run exits 1)")
    amplify_id: str | None
    amplify_name: str | None = Field(description="the Amplify resource's name, when the change carries it")
    recurly_code: str | None = Field(description="plan, add-on or account code, or measured unit name")
    recurly_uuid: str | None = Field(description="the Recurly subscription's uuid (null until created)")
    units: int | None
    summary: str
    error: str | None
    result_id: str | None = Field(description="what the write returned: a Recurly id or uuid, a usage id")
    amplify: str = Field(description="display text of the Amplify side")
    recurly: str = Field(description="display text of the Recurly side")


class CheckEntry(_Strict):
    """One check of ``config check``."""

    name: str
    result: Literal["ok", "warn", "fail", "skipped"]
    detail: str
    exit_code: int


class CommandDocument(_Strict):
    """What one command, or one step of run, did."""

    command: str
    run_id: int | None = Field(description="the journal's run id; null on a dry run, or when there is none")
    started_at: UtcTime | None
    finished_at: UtcTime | None
    dry_run: bool
    exit_code: int
    note: str | None
    figures: dict[str, Figure]
    counts: Counts
    changes: list[Entry]
    findings: list[Entry]
    steps: list[CommandDocument] = Field(description="run (and the demo): one document per step; else empty")


class _Versioned(_Strict):
    schema_version: Literal[1] = Field(description="bumped when a field changes meaning or goes away")
    tool_version: str


# _Versioned second: pydantic lists the last base's fields first, so schema_version opens the document
class ReportEnvelope(CommandDocument, _Versioned):
    """The whole --output json document of every command."""

    error: str | None = Field(description="why there is no report (bad configuration, lock held, crash)")
    status: dict[str, Any] | None = Field(
        default=None,
        description="status and the demo: the status report (sections of rows, summary, in_step, what was unavailable)",
    )
    checks: list[CheckEntry] | None = Field(default=None, description="config check: each check and what it found")
    doctor: dict[str, Any] | None = Field(
        default=None,
        description="doctor: ready or not, each check with its verdict, evidence and action, the census of "
        "literals, the plan mapping preview and the requests spent",
    )


# ---- from command reports ------------------------------------------------------------------------------------


def report_envelope(reports: Sequence[CommandReport], *, command: str) -> ReportEnvelope:
    """The envelope of one command's report, or of ``run``'s steps (``command="run"``)."""
    if command != "run":
        if len(reports) != 1:
            raise ValueError(f"{command}'s JSON needs exactly one report, not {len(reports)}")
        return _envelope(command_document(reports[0]))
    return _envelope(steps_document(command, [command_document(r) for r in reports]))


def steps_document(command: str, steps: Sequence[CommandDocument], *, note: str | None = None) -> CommandDocument:
    """A document made of steps: the worst exit code, the steps' counts added up, the first and last times."""
    ids = {s.run_id for s in steps}
    return CommandDocument(
        command=command,
        # the steps share a run id only when the journal gave the whole command one
        run_id=ids.pop() if len(ids) == 1 else None,
        started_at=steps[0].started_at if steps else None,
        finished_at=steps[-1].finished_at if steps else None,
        dry_run=any(s.dry_run for s in steps),
        exit_code=max((s.exit_code for s in steps), default=0),
        note=note,
        figures={},
        counts=Counts(**{o.value: sum(getattr(s.counts, o.value) for s in steps) for o in Outcome}),
        changes=[],
        findings=[],
        steps=list(steps),
    )


def command_document(report: CommandReport) -> CommandDocument:
    """One report as a document; free text redacted, payloads never shown."""
    clean = current_redaction()  # looked up once: a usage run can carry tens of thousands of changes
    # a subscription this run created is known by the create's result: later changes name it by the create's key
    created = {r.change.key: r.result_id for r in report.results if isinstance(r.change.action, CreateSubscription)}
    changes: list[Entry] = []
    findings: list[Entry] = []
    for result in report.results:
        (findings if result.change.kind in REPORT_ONLY else changes).append(_entry(result, created, clean))
    return CommandDocument(
        command=report.command,
        run_id=report.run_id,
        started_at=_utc(report.started_at),
        finished_at=_utc(report.finished_at),
        dry_run=report.dry_run,
        exit_code=int(report.exit_code),
        note=clean(report.note) if report.note is not None else None,
        figures={str(k): _figure(v, clean) for k, v in report.figures.items()},
        counts=Counts(**{o.value: report.count(o) for o in Outcome}),
        changes=changes,
        findings=findings,
        steps=[],
    )


def demo_envelope(
    runs: Sequence[tuple[str, Sequence[CommandReport]]],
    *,
    exit_code: int,
    figures: Mapping[str, Figure],
    status: Mapping[str, Any],
) -> ReportEnvelope:
    """The demo: one step per ``run`` it made (the step's note names its day), its own figures and exit code (the
    last run must write nothing), and its status report."""
    steps = [steps_document("run", [command_document(r) for r in reports], note=name) for name, reports in runs]
    document = steps_document("demo", steps).model_copy(update={"exit_code": exit_code, "figures": dict(figures)})
    return _envelope(document, status=dict(status))


def error_envelope(
    command: str, *, dry_run: bool, exit_code: int, error: str, started_at: datetime, finished_at: datetime
) -> ReportEnvelope:
    """The envelope when no report exists: the one line the operator also sees on stderr, and its exit code."""
    clean = current_redaction()
    return _envelope(_empty_document(command, exit_code, started_at, finished_at, dry_run=dry_run), error=clean(error))


def _envelope(document: CommandDocument, *, error: str | None = None, **section: Any) -> ReportEnvelope:
    """``section``: the one command-specific part (``status``, ``checks`` or ``doctor``), when there is one."""
    return ReportEnvelope(
        schema_version=SCHEMA_VERSION, tool_version=__version__, **dict(document), error=error, **section
    )


def envelope_json(envelope: ReportEnvelope) -> str:
    """The document's text: indented, UTF-8, ``status``, ``checks`` and ``doctor`` only when there are some."""
    left_out = {name for name in ("status", "checks", "doctor") if getattr(envelope, name) is None}
    return envelope.model_dump_json(indent=2, exclude=left_out or None)


def _empty_document(
    command: str, exit_code: int, started_at: datetime, finished_at: datetime, *, dry_run: bool = False
) -> CommandDocument:
    """A document without changes (a read-only command's, or a failed command's that left no report)."""
    return CommandDocument(
        command=command,
        run_id=None,
        started_at=_utc(started_at),
        finished_at=_utc(finished_at),
        dry_run=dry_run,
        exit_code=exit_code,
        note=None,
        figures={},
        counts=Counts(planned=0, applied=0, failed=0, skipped=0, reported=0),
        changes=[],
        findings=[],
        steps=[],
    )


def status_envelope(report: StatusReport, *, exit_code: int, started_at: datetime) -> ReportEnvelope:
    """``status``: its drift as ``changes`` (what a command would write) and ``findings`` (the rest), with typed
    ids, and the whole status report in ``status``."""
    clean = current_redaction()
    document = _empty_document("status", exit_code, started_at, report.generated_at)
    changes: list[Entry] = []
    findings: list[Entry] = []
    for item in report.drift:
        entry = _drift_entry(item, clean)
        (changes if entry.outcome is Outcome.PLANNED else findings).append(entry)
    counts = Counts(planned=len(changes), applied=0, failed=0, skipped=0, reported=len(findings))
    document = document.model_copy(update={"changes": changes, "findings": findings, "counts": counts})
    return _envelope(document, status=json.loads(clean(json.dumps(report.to_json(), ensure_ascii=False))))


def _drift_entry(item: DriftItem, clean: Callable[[str], str]) -> Entry:
    """A drift item as an entry: through its planned change when it has one, else from its own ids."""
    change = item.change
    if change is not None:
        outcome = Outcome.PLANNED if change.writes else Outcome.REPORTED
        result = AcknowledgedResult(change, outcome, acknowledgement=item.acknowledged)
        return _entry(result, {}, clean).model_copy(update={"summary": clean(item.detail)})
    return Entry(
        key=item.key,
        finding_key=item.key if item.kind in ACKNOWLEDGEABLE else None,
        acknowledged=_acknowledged(item.acknowledged, clean),
        kind=item.kind,
        object=item.area,
        outcome=Outcome.REPORTED,
        withholds=False,
        amplify_id=item.amplify_id,
        amplify_name=None,
        recurly_code=None,
        recurly_uuid=item.recurly_id,
        units=None,
        summary=clean(item.detail),
        error=None,
        result_id=None,
        amplify=clean(item.amplify),
        recurly=clean(item.recurly),
    )


def checks_envelope(
    checks: Sequence[tuple[str, str, str, int]], *, exit_code: int, started_at: datetime, finished_at: datetime
) -> ReportEnvelope:
    """``config check``: each check as (name, result, detail, exit code)."""
    clean = current_redaction()
    document = _empty_document("config check", exit_code, started_at, finished_at)
    entries = [
        CheckEntry(name=name, result=result, detail=clean(detail), exit_code=code)  # type: ignore[arg-type]
        for name, result, detail, code in checks
    ]
    return _envelope(document, checks=entries)


def doctor_envelope(
    report: dict[str, Any], *, exit_code: int, started_at: datetime, finished_at: datetime
) -> ReportEnvelope:
    """``doctor``: its whole report (``render.doctor.document``) in ``doctor``; it plans and writes nothing."""
    return _envelope(_empty_document("doctor", exit_code, started_at, finished_at), doctor=report)


def _entry(result: ChangeResult, created: Mapping[str, str | None], clean: Callable[[str], str]) -> Entry:
    change = result.change
    ids = change_ids(change, result.result_id, created)
    finding = change.kind in REPORT_ONLY
    acknowledgement = acknowledgement_of(result)
    return Entry(
        key=change.key,
        finding_key=finding_key(change) if finding else None,
        acknowledged=_acknowledged(acknowledgement, clean),
        kind=change.kind.value,
        object=change.object,
        outcome=result.outcome,
        withholds=change.withholds,
        # ids are not passed through redaction: an operator greps for them as they are (no secret is an id)
        amplify_id=ids.amplify_id,
        amplify_name=clean(ids.amplify_name) if ids.amplify_name is not None else None,
        recurly_code=ids.recurly_code,
        recurly_uuid=ids.recurly_uuid,
        units=change.units,
        summary=clean(change.summary),
        error=clean(result.error) if result.error is not None else None,
        result_id=result.result_id,
        amplify=clean(change.amplify),
        recurly=clean(change.recurly),
    )


def _acknowledged(found: Acknowledgement | None, clean: Callable[[str], str]) -> Acknowledged | None:
    if found is None:
        return None
    expires = found.expires.isoformat() if found.expires else None
    return Acknowledged(reason=clean(found.reason), expires=expires, expired=found.expired)


def _figure(value: object, clean: Callable[[str], str]) -> Figure:
    if value is None or isinstance(value, bool | int | float | str | Decimal | datetime | date):
        scalar = json_value(value)
        return clean(scalar) if isinstance(scalar, str) else scalar
    return clean(str(value))


def _utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # a naive time is UTC by this tool's rule (every clock it has is UTC)
    return iso(moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment)


# ---- the JSON Schema -------------------------------------------------------------------------------------------


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema of the envelope, as committed in ``docs/report.schema.json``."""
    schema = ReportEnvelope.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    return json.dumps(report_json_schema(), indent=2, ensure_ascii=False) + "\n"


__all__ = [
    "SCHEMA_VERSION",
    "CheckEntry",
    "CommandDocument",
    "Counts",
    "Entry",
    "ReportEnvelope",
    "checks_envelope",
    "command_document",
    "demo_envelope",
    "doctor_envelope",
    "envelope_json",
    "error_envelope",
    "report_envelope",
    "report_json_schema",
    "schema_text",
    "status_envelope",
    "steps_document",
]
