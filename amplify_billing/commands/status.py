"""status: a read-only reconciliation report of both systems and the journal (DESIGN.md §1, §4).

What it shows: what is linked (plans, subscriptions), what drifted (everything a ``run --dry-run`` would
change or report, plus Recurly subscriptions no Amplify subscription claims), open journal intents, the
last run of each command, and usage per (subscription, quota) for the current billing period with
Amplify's count, the journal's reported total and (``--verify`` only) Recurly's records side by side.

"In step" means exactly: a run would write nothing and report nothing, no intent is open, and the usage
figures agree. The comparison of usage ends at the journal's watermark of each pair (the end of the
last window reported): later traffic is the unsettled tail that the next ``report-usage`` reports, not
drift. Without ``--verify`` nothing is read per subscription from Recurly, so the steady state costs the
same listings as a dry run plus one count query per distinct period range.

The layers: ``gather_status`` (I/O, thin) → ``StatusInputs`` → ``build_status`` (pure) → ``StatusReport``
(frozen sections of rows) → ``render_status``. Nothing here writes: no lock, no run history, and a
journal that does not exist yet is not created (it reads as empty).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol

from rich.console import Console
from rich.text import Text

from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.commands.report_usage import INTENT_KIND, WINDOW_SETTING
from amplify_billing.commands.subscriptions import subscription_inputs, subscription_options
from amplify_billing.commands.sync_plans import plan_sync_options
from amplify_billing.errors import ConfigError, ExitCode
from amplify_billing.journal import Intent, RunRecord, UsageLedgerEntry
from amplify_billing.models import REPORT_ONLY, AmplifySubscription, Change, ChangeKind
from amplify_billing.reconcile.accounts import account_code
from amplify_billing.reconcile.plans import CatalogSnapshot, PlanSyncOptions, RecurlyCatalog, diff_plans
from amplify_billing.reconcile.subscriptions import (
    LIVE_STATES,
    SubscriptionInputs,
    SubscriptionOptions,
    diff_subscriptions,
    ended_state,
    match_subscriptions,
)
from amplify_billing.recurly_parse import money
from amplify_billing.render import Cell, Column, json_value, redact, render_rows
from amplify_billing.runtime import Runtime
from amplify_billing.usage.sources import RangeCount, build_source
from amplify_billing.usage.windows import WINDOW_SIZES, parse_merchant_tag, window_floor

StatusOutput = Literal["table", "json", "markdown"]

# The commands whose last run is shown, in the order ``run`` performs them (``run`` records each step
# under its own name, so there is no separate "run" entry to show).
COMMANDS = ("sync-plans", "link-accounts", "sync-subscriptions", "report-usage")

# Which command would act on a change of each area (shown in the "next" column of drift rows).
_FIXED_BY = {"plans": "sync-plans", "subscriptions": "sync-subscriptions", "usage": "report-usage"}

_OUTCOMES = {
    int(ExitCode.OK): "ok",
    int(ExitCode.PARTIAL_FAILURE): "some changes failed",
    int(ExitCode.CONFIG): "configuration error",
    int(ExitCode.UPSTREAM): "upstream unreachable or refused",
    int(ExitCode.REFUSED): "refused (safety valve) or pending",
    int(ExitCode.LOCKED): "lock held by another run",
    int(ExitCode.INTERRUPTED): "interrupted",
}


def status_output(value: str) -> StatusOutput:
    for known in ("table", "json", "markdown"):
        if value == known:
            return known
    raise ConfigError(f"--format {value!r}: use table, json or markdown")


@dataclass(frozen=True)
class StatusOptions:
    verify: bool = False
    exit_code: bool = False
    output: StatusOutput = "table"


# ---- inputs ---------------------------------------------------------------------------------------


class JournalReader(Protocol):
    """The read side of the journal that status uses (``Journal`` satisfies it)."""

    def links(self, kind: str) -> dict[str, str]: ...
    def get_link(self, kind: str, key: str) -> str | None: ...
    def usage_watermark(self, subscription_id: str, quota_id: str) -> datetime | None: ...
    def usage_entries(self, subscription_id: str | None = None) -> list[UsageLedgerEntry]: ...
    def open_intents(self, kind: str | None = None) -> list[Intent]: ...
    def last_run(self, command: str) -> RunRecord | None: ...


class EmptyJournal:
    """A journal file that does not exist yet: nothing recorded. Status must not create the file."""

    def links(self, kind: str) -> dict[str, str]:
        return {}

    def get_link(self, kind: str, key: str) -> str | None:
        return None

    def usage_watermark(self, subscription_id: str, quota_id: str) -> datetime | None:
        return None

    def usage_entries(self, subscription_id: str | None = None) -> list[UsageLedgerEntry]:
        return []

    def open_intents(self, kind: str | None = None) -> list[Intent]:
        return []

    def last_run(self, command: str) -> RunRecord | None:
        return None


@dataclass(frozen=True)
class UsageTarget:
    """One billed (subscription, quota) and the range its usage is compared over.

    ``start`` is the aligned start of the window holding the Recurly period start; ``end`` is the
    journal's watermark of the pair (None: nothing reported in this period yet, so nothing to compare).
    """

    subscription_id: str
    subscription_name: str
    quota_id: str
    recurly_uuid: str
    add_on_code: str
    period_start: datetime
    start: datetime
    end: datetime | None
    activated_at: datetime

    @property
    def pair(self) -> tuple[str, str]:
        return (self.subscription_id, self.quota_id)


@dataclass(frozen=True)
class DriftItem:
    """One thing out of step. ``next`` says what resolves it: a command, ``by hand``, or ``waits``."""

    area: str  # plans | subscriptions | usage | journal
    kind: str  # a ChangeKind value, or orphan / link / usage
    amplify: str
    recurly: str
    detail: str
    next: str


@dataclass(frozen=True)
class UsageFacts:
    """What each side says about one target. ``recurly_records`` is None unless ``--verify``."""

    target: UsageTarget
    amplify_count: int | None  # None: no range to count (nothing reported yet)
    journal_entries: tuple[UsageLedgerEntry, ...] = ()
    recurly_records: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True)
class IntentFacts:
    intent: Intent
    # --verify only: True when Recurly holds the write (report-usage confirms it), False when it never
    # landed (report-usage abandons it and sends again), None when not looked up
    in_recurly: bool | None = None


@dataclass(frozen=True)
class StatusInputs:
    catalog: CatalogSnapshot
    recurly_catalog: RecurlyCatalog
    plan_options: PlanSyncOptions
    subscriptions: SubscriptionInputs
    subscription_options: SubscriptionOptions
    usage: tuple[UsageFacts, ...] = ()
    usage_gaps: tuple[DriftItem, ...] = ()
    intents: tuple[IntentFacts, ...] = ()
    runs: Mapping[str, RunRecord | None] = field(default_factory=dict)
    journal_path: str = ""
    journal_present: bool = True
    window: str = "daily"
    lookback: timedelta = timedelta(hours=72)
    verify: bool = False
    # --verify only: Amplify id -> Recurly uuid as Recurly alone says (custom field, account + plan)
    recurly_matches: Mapping[str, str] | None = None
    opted_in_products: int = 0


# ---- the report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]
    empty: str = "none"  # what a table says when there are no rows
    # JSON keys of columns left out of the table and Markdown (kept in JSON): ids that make rows too wide
    wide: frozenset[str] = frozenset()

    def narrow(self) -> tuple[tuple[Column, ...], tuple[tuple[Cell, ...], ...]]:
        keep = [i for i, c in enumerate(self.columns) if c.json_key not in self.wide]
        return tuple(self.columns[i] for i in keep), tuple(tuple(row[i] for i in keep) for row in self.rows)

    def records(self) -> list[dict[str, str | int | float | bool | None]]:
        return [{c.json_key: json_value(v) for c, v in zip(self.columns, row, strict=True)} for row in self.rows]


@dataclass(frozen=True)
class StatusReport:
    generated_at: datetime
    verified: bool
    drift: tuple[DriftItem, ...]
    open_intents: int
    summary: Mapping[str, int]
    sections: tuple[Section, ...]

    @property
    def in_step(self) -> bool:
        return not self.drift and not self.open_intents

    def exit_code(self, exit_code_flag: bool) -> int:
        if exit_code_flag and not self.in_step:
            return int(ExitCode.REFUSED)
        return int(ExitCode.OK)

    def section(self, name: str) -> Section:
        return next(s for s in self.sections if s.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "command": "status",
            "generated_at": _ts(self.generated_at),
            "verified": self.verified,
            "in_step": self.in_step,
            "summary": dict(self.summary),
            **{s.name: s.records() for s in self.sections},
        }


# ---- pure parts -----------------------------------------------------------------------------------


def _ts(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _units(value: Decimal) -> int | str:
    # usage amounts are whole units in practice; keep anything else exact as text
    return int(value) if value == value.to_integral_value() else str(value)


def _signed(value: Decimal) -> str:
    return f"+{_units(value)}" if value > 0 else str(_units(value))


def usage_targets(
    subscriptions: SubscriptionInputs,
    matches: Mapping[str, str],
    period_starts: Mapping[str, datetime | None],
    watermarks: Mapping[tuple[str, str], datetime | None],
    size: timedelta,
) -> tuple[list[UsageTarget], list[DriftItem]]:
    """The billed pairs of every linked, started Recurly subscription, and add-ons missing from one.

    The range starts at the window holding Recurly's current period start (aligned, so whole journal
    windows are compared) and ends at the pair's watermark.
    """
    by_uuid = {r.uuid: r for r in subscriptions.recurly}
    targets: list[UsageTarget] = []
    gaps: list[DriftItem] = []
    for s in sorted(subscriptions.amplify, key=lambda s: s.id):
        plan = subscriptions.plans.get(s.plan_name)
        current = by_uuid.get(matches.get(s.id, ""))
        if plan is None or current is None or current.activated_at is None:
            continue  # the subscription drift says why it is not billed
        period_start = period_starts.get(current.uuid) or current.activated_at
        start = window_floor(period_start, size)
        for quota_id, add_on in sorted(plan.quota_add_ons.items()):
            if add_on not in current.add_on_codes:
                gaps.append(
                    DriftItem(
                        "usage",
                        ChangeKind.FINDING.value,
                        f"subscription {s.name} ({s.id}) quota {quota_id}",
                        f"subscription {current.uuid}",
                        f"usage add-on {add_on} is not on the Recurly subscription, so its usage cannot be "
                        "reported; add the add-on to the subscription in Recurly",
                        "by hand",
                    )
                )
                continue
            mark = watermarks.get((s.id, quota_id))
            targets.append(
                UsageTarget(
                    subscription_id=s.id,
                    subscription_name=s.name,
                    quota_id=quota_id,
                    recurly_uuid=current.uuid,
                    add_on_code=add_on,
                    period_start=period_start,
                    start=start,
                    end=mark if mark is not None and mark > start else None,
                    activated_at=current.activated_at,
                )
            )
    return targets, gaps


def _change_drift(area: str, change: Change) -> DriftItem:
    if change.kind is ChangeKind.WAITING:
        nxt = "waits"
    elif change.kind in REPORT_ONLY:
        nxt = "by hand"
    else:
        nxt = _FIXED_BY[area]
    return DriftItem(area, change.kind.value, change.amplify, change.recurly, change.summary, nxt)


def orphans(subscriptions: SubscriptionInputs, options: SubscriptionOptions) -> list[DriftItem]:
    """Live Recurly subscriptions on our plans that no Amplify subscription claims.

    Claimed means: the journal links it, the Amplify side's link attribute names it, its custom field holds
    a listed Amplify id, or its (account, plan) is that of a listed Amplify subscription. Anything else
    is billed in Recurly for something Amplify does not know.
    """
    listed = {s.id for s in subscriptions.amplify}
    linked = set(subscriptions.journal_links.values())
    attributes = {s.attributes.get(options.link_attribute) for s in subscriptions.amplify}
    pairs: set[tuple[str, str]] = set()
    for s in subscriptions.amplify:
        plan = subscriptions.plans.get(s.plan_name)
        code = account_code(s, options.owner)
        if plan is not None and code is not None:
            pairs.add((code, plan.code))
    items: list[DriftItem] = []
    for r in sorted(subscriptions.recurly, key=lambda r: r.uuid):
        if r.state not in LIVE_STATES or r.uuid in linked or r.uuid in attributes:
            continue
        named = r.custom_fields.get(options.custom_field) if options.custom_field else None
        if named in listed or (r.account_code, r.plan_code) in pairs:
            continue
        why = (
            f"its custom field {options.custom_field} names Amplify subscription {named}, which Amplify does not list"
            if named
            else "no Amplify subscription matches it (by journal link, custom field or account and plan)"
        )
        items.append(
            DriftItem(
                "subscriptions",
                "orphan",
                "-",
                f"subscription {r.uuid} ({r.account_code} on {r.plan_code}, {r.state})",
                f"{why}; cancel it in Recurly if nobody should be billed for it",
                "by hand",
            )
        )
    return items


def _link_drift(subscriptions: SubscriptionInputs, recurly_matches: Mapping[str, str]) -> list[DriftItem]:
    """--verify: journal links that Recurly's own data (custom field, account and plan) contradicts."""
    names = {s.id: s.name for s in subscriptions.amplify}
    items = []
    for amplify_id, uuid in sorted(subscriptions.journal_links.items()):
        found = recurly_matches.get(amplify_id)
        if found is not None and found != uuid:
            items.append(
                DriftItem(
                    "journal",
                    "link",
                    f"subscription {names.get(amplify_id, '?')} ({amplify_id})",
                    f"subscription {found}",
                    f"the journal links it to Recurly subscription {uuid}, but Recurly's data points at {found}; "
                    "check both in Recurly, cancel the wrong one, then run sync-subscriptions",
                    "by hand",
                )
            )
    return items


@dataclass(frozen=True)
class _UsageLine:
    row: tuple[Cell, ...]
    drift: tuple[DriftItem, ...]


def _usage_line(facts: UsageFacts, lookback: timedelta, verified: bool) -> _UsageLine:
    t = facts.target
    ref = f"subscription {t.subscription_name} ({t.subscription_id}) quota {t.quota_id}"
    target = f"{t.recurly_uuid}/{t.add_on_code}"

    def in_range(window_start: datetime) -> bool:
        return window_start >= t.start and (t.end is None or window_start < t.end)

    journal_total = sum(
        (e.amount for e in facts.journal_entries if e.quota_id == t.quota_id and in_range(e.window_start)),
        Decimal(0),
    )
    journal_tags = {
        e.merchant_tag for e in facts.journal_entries if e.quota_id == t.quota_id and in_range(e.window_start)
    }
    recurly_total: Decimal | None = None
    foreign_records = 0
    foreign_units = Decimal(0)
    recurly_tags: set[str] = set()
    if facts.recurly_records is not None:
        recurly_total = Decimal(0)
        for record in facts.recurly_records:
            amount = money(record.get("amount")) or Decimal(0)
            text = str(record.get("merchant_tag") or "")
            tag = parse_merchant_tag(text)
            if tag is not None and tag.subscription_id == t.subscription_id and tag.quota_id == t.quota_id:
                if in_range(tag.window_start):
                    recurly_total += amount
                    recurly_tags.add(text)
                continue
            stamp = parse_timestamp(record.get("usage_timestamp"))
            if stamp is None or in_range(stamp):
                foreign_records += 1
                foreign_units += amount

    drift: list[DriftItem] = []
    notes: list[str] = []

    def add(detail: str, nxt: str) -> None:
        drift.append(DriftItem("usage", "usage", ref, target, detail, nxt))
        notes.append(detail.split(";", 1)[0])

    if t.end is None:
        if recurly_total:
            add(
                f"the journal records nothing reported in this period, but Recurly holds {_units(recurly_total)} "
                "unit(s); check that this journal belongs to this Recurly site",
                "by hand",
            )
        else:
            notes.append("nothing reported in this period yet")
    else:
        assert facts.amplify_count is not None
        difference = Decimal(facts.amplify_count) - journal_total
        if difference > 0:
            before = (
                f" (the count includes traffic before the subscription started at {_ts(t.activated_at)})"
                if t.activated_at > t.start
                else ""
            )
            add(
                f"Amplify counted {_signed(difference)} unit(s) more than were reported{before}; report-usage "
                f"restates windows inside usage.lookback ({_hours(lookback)}), older ones need "
                f"report-usage --from {t.start:%Y-%m-%d}",
                "report-usage",
            )
        elif difference < 0:
            add(
                f"{_units(-difference)} unit(s) more were reported than Amplify counts now; check the usage "
                "source (usage.statuses, the file) and the Recurly records",
                "by hand",
            )
        if recurly_total is not None and recurly_total != journal_total:
            missing = len(journal_tags - recurly_tags)
            unknown = len(recurly_tags - journal_tags)
            add(
                f"Recurly holds {_units(recurly_total)} unit(s), the journal {_units(journal_total)} "
                f"({missing} journal record(s) missing in Recurly, {unknown} Recurly record(s) unknown to the "
                "journal); report-usage reads Recurly back only for pairs it has not seen: check the records "
                "in Recurly",
                "by hand",
            )
    if foreign_records:
        add(
            f"{foreign_records} usage record(s) ({_units(foreign_units)} unit(s)) on this add-on carry no "
            "amplify-billing merchant_tag; they are billed too: remove them in Recurly if they are not meant",
            "by hand",
        )
    state = "in step" if not drift else "differs"
    row: tuple[Cell, ...] = (
        t.subscription_name,
        t.subscription_id,
        t.quota_id,
        t.recurly_uuid,
        t.add_on_code,
        _ts(t.period_start),
        _ts(t.start),
        _ts(t.end),
        facts.amplify_count,
        _units(journal_total),
        _units(recurly_total) if recurly_total is not None else None,
        state,
        "; ".join(notes) if notes else ("verified" if verified else ""),
    )
    return _UsageLine(row, tuple(drift))


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} h"


def _run_row(command: str, run: RunRecord | None) -> tuple[Cell, ...]:
    if run is None:
        return (command, None, None, None, None, "never run", "")
    if run.finished_at is None:
        outcome = "unfinished (running now, or killed)"
    else:
        outcome = _OUTCOMES.get(run.exit_code or 0, f"exit {run.exit_code}")
    totals: dict[str, int] = {}
    for key, value in run.counts.items():
        for suffix in ("applied", "failed", "skipped"):
            if key.endswith("_" + suffix) and isinstance(value, int):
                totals[suffix] = totals.get(suffix, 0) + value
    figures = [f"{k} {totals[k]}" for k in ("applied", "failed", "skipped") if totals.get(k)]
    if run.counts.get("units_reported"):
        figures.append(f"units {run.counts['units_reported']}")
    changes = ", ".join(figures) or "no changes"
    return (command, run.id, _ts(run.started_at), _ts(run.finished_at), run.exit_code, outcome, changes)


def _intent_row(facts: IntentFacts) -> tuple[Cell, ...]:
    i = facts.intent
    if facts.in_recurly is None:
        recurly = "not looked up (use --verify)"
    elif facts.in_recurly:
        recurly = "landed: the next report-usage confirms it"
    else:
        recurly = "not in Recurly: the next report-usage sends it again"
    return (i.key, i.kind, _ts(i.created_at), i.run_id, recurly)


def _mentions(change: Change, *needles: str) -> bool:
    return any(n and (n in change.amplify or n in change.recurly or n in change.key) for n in needles)


def _status_of(changes: Iterable[Change]) -> str:
    kinds = sorted({c.kind.value for c in changes})
    return "in step" if not kinds else ", ".join(kinds)


def build_status(inputs: StatusInputs, now: datetime) -> StatusReport:
    """Everything the report shows, from data already gathered. Pure: no I/O, no clock."""
    plan_changes = diff_plans(inputs.catalog, inputs.recurly_catalog, inputs.plan_options).changes
    sub_changes = diff_subscriptions(inputs.subscriptions, inputs.subscription_options).changes
    drift: list[DriftItem] = [_change_drift("plans", c) for c in plan_changes]
    drift += [_change_drift("subscriptions", c) for c in sub_changes]
    drift += orphans(inputs.subscriptions, inputs.subscription_options)
    if inputs.recurly_matches is not None:
        drift += _link_drift(inputs.subscriptions, inputs.recurly_matches)
    drift += inputs.usage_gaps
    usage_lines = [_usage_line(f, inputs.lookback, inputs.verify) for f in inputs.usage]
    for line in usage_lines:
        drift += line.drift

    # plans: every Amplify plan that is (or should be) in Recurly, and Recurly plans Amplify lacks
    prefix = inputs.plan_options.mapping.plan_code_prefix
    plan_rows: list[tuple[Cell, ...]] = []
    seen_codes: set[str] = set()
    for plan in sorted(inputs.catalog.plans, key=lambda p: (p.product_name, p.name)):
        code = f"{prefix}{plan.id}".lower()
        have = inputs.recurly_catalog.plans.get(code)
        mine = [c for c in plan_changes if _mentions(c, plan.id, code)]
        if have is None and not mine:
            continue  # draft, free or archived and absent: nothing of it belongs in Recurly
        seen_codes.add(code)
        plan_rows.append(
            (
                f"{plan.product_name}/{plan.name}",
                plan.state,
                code,
                have.state if have else "missing",
                len(have.add_ons) if have else 0,
                inputs.recurly_catalog.live_subscriptions_by_plan.get(code, 0),
                _status_of(mine),
            )
        )
    for code, have in sorted(inputs.recurly_catalog.plans.items()):
        if code in seen_codes or have.state != "active":
            continue
        mine = [c for c in plan_changes if _mentions(c, code)]
        plan_rows.append(
            (
                "(not in Amplify)",
                None,
                code,
                have.state,
                len(have.add_ons),
                inputs.recurly_catalog.live_subscriptions_by_plan.get(code, 0),
                _status_of(mine),
            )
        )

    # subscriptions: each Amplify subscription on a linked plan with its Recurly side
    subs = inputs.subscriptions
    matches = {**subs.journal_links, **match_subscriptions(subs, inputs.subscription_options)}
    by_uuid = {r.uuid: r for r in subs.recurly}
    sub_rows: list[tuple[Cell, ...]] = []
    for s in sorted(subs.amplify, key=lambda s: (s.plan_name, s.name, s.id)):
        if s.plan_name not in subs.plans:
            continue
        current = by_uuid.get(matches.get(s.id, ""))
        mine = [c for c in sub_changes if _mentions(c, s.id)]
        sub_rows.append(
            (
                s.name,
                s.id,
                s.plan_name,
                _amplify_state(s),
                current.account_code if current else None,
                current.uuid if current else None,
                current.state if current else None,
                _subscription_status(mine, ended=ended_state(s)),
            )
        )

    drift_rows = tuple((d.area, d.kind, d.amplify, d.recurly, d.detail, d.next) for d in drift)
    intent_rows = tuple(_intent_row(f) for f in inputs.intents)
    run_rows = tuple(_run_row(c, inputs.runs.get(c)) for c in COMMANDS)
    linked_subscriptions = sum(1 for s in subs.amplify if s.plan_name in subs.plans and matches.get(s.id) in by_uuid)
    summary = {
        "opted_in_products": inputs.opted_in_products,
        "plans_in_recurly": sum(1 for row in plan_rows if row[3] == "active"),
        "subscriptions_linked": linked_subscriptions,
        "subscriptions_not_linked": len(sub_rows) - linked_subscriptions,
        "drift": len(drift),
        "orphans": sum(1 for d in drift if d.kind == "orphan"),
        "open_intents": len(inputs.intents),
        "usage_pairs": len(usage_lines),
        "usage_differences": sum(1 for line in usage_lines if line.drift),
    }
    journal_note = "" if inputs.journal_present else f" (no journal at {inputs.journal_path} yet)"
    sections = (
        Section(
            "plans",
            "Plans",
            _columns(
                ("amplify_plan", "Amplify plan"),
                ("amplify_state", "state"),
                ("recurly_plan", "Recurly plan"),
                ("recurly_state", "Recurly state"),
                ("add_ons", "add-ons"),
                ("live_subscriptions", "live subs"),
                ("status", "status"),
            ),
            tuple(plan_rows),
            empty="no opted-in plan is billed through Recurly",
        ),
        Section(
            "subscriptions",
            "Subscriptions",
            _columns(
                ("amplify_subscription", "Amplify subscription"),
                ("amplify_id", "id"),
                ("plan", "plan"),
                ("amplify_state", "Amplify"),
                ("account", "Recurly account"),
                ("recurly_subscription", "Recurly subscription"),
                ("recurly_state", "Recurly state"),
                ("status", "status"),
            ),
            tuple(sub_rows),
            empty="no Amplify subscription on a linked plan",
            wide=frozenset({"amplify_id"}),
        ),
        Section(
            "drift",
            "Drift",
            _columns(
                ("area", "area"),
                ("kind", "kind"),
                ("amplify", "Amplify"),
                ("recurly", "Recurly"),
                ("detail", "detail"),
                ("next", "next"),
            ),
            drift_rows,
            empty="none: both systems are in step",
        ),
        Section(
            "open_intents",
            "Open journal intents",
            _columns(
                ("key", "key"), ("kind", "kind"), ("created_at", "since"), ("run_id", "run"), ("recurly", "Recurly")
            ),
            intent_rows,
            empty="none" + journal_note,
        ),
        Section(
            "runs",
            "Last runs",
            _columns(
                ("command", "command"),
                ("run_id", "run"),
                ("started_at", "started"),
                ("finished_at", "finished"),
                ("exit_code", "exit"),
                ("outcome", "outcome"),
                ("changes", "changes"),
            ),
            run_rows,
        ),
        Section(
            "usage",
            f"Usage this billing period ({inputs.window} windows, compared through the last reported window)",
            _columns(
                ("amplify_subscription", "subscription"),
                ("amplify_id", "id"),
                ("quota", "quota"),
                ("recurly_subscription", "Recurly subscription"),
                ("add_on", "add-on"),
                ("period_start", "period start"),
                ("compared_from", "from"),
                ("compared_through", "through"),
                ("amplify_units", "Amplify"),
                ("journal_units", "journal"),
                ("recurly_units", "Recurly"),
                ("status", "status"),
                ("note", "note"),
            ),
            tuple(line.row for line in usage_lines),
            empty="no billed usage add-on on a live subscription",
            wide=frozenset({"amplify_id", "recurly_subscription", "add_on", "compared_from"}),
        ),
    )
    return StatusReport(
        generated_at=now,
        verified=inputs.verify,
        drift=tuple(drift),
        open_intents=len(inputs.intents),
        summary=summary,
        sections=sections,
    )


# columns holding figures are right-aligned
_NUMERIC = frozenset(
    {"add_ons", "live_subscriptions", "run_id", "exit_code", "amplify_units", "journal_units", "recurly_units", "value"}
)


def _columns(*pairs: tuple[str, str]) -> tuple[Column, ...]:
    return tuple(Column(header, key=key, justify="right" if key in _NUMERIC else "left") for key, header in pairs)


def _amplify_state(s: AmplifySubscription) -> str:
    return f"{s.approval_state or '?'}/{s.state_name}" if s.state_name else (s.approval_state or "?")


def _subscription_status(changes: Sequence[Change], *, ended: bool) -> str:
    if not changes:
        return "ended" if ended else "in step"
    parts = []
    for change in changes:
        if change.kind in (ChangeKind.WAITING, ChangeKind.FINDING):
            parts.append(f"{change.kind.value}: {change.summary}")
        else:
            parts.append(change.kind.value)
    return "; ".join(parts)


# ---- gathering (the only I/O) ---------------------------------------------------------------------


def _journal(rt: Runtime) -> tuple[JournalReader, bool]:
    # opening the journal creates its file; status writes nothing, so a missing journal reads as empty
    if rt.settings.state.path.exists():
        return rt.journal(), True
    return EmptyJournal(), False


def _recurly_usage(rt: Runtime, target: UsageTarget) -> tuple[Mapping[str, Any], ...]:
    records = rt.recurly().list_usage(
        f"uuid-{target.recurly_uuid}",
        f"code-{target.add_on_code}",
        {"billing_status": "all", "sort": "usage_timestamp", "order": "asc", "begin_time": _ts(target.start)},
    )
    return tuple(records)


def _intent_in_recurly(rt: Runtime, intent: Intent) -> bool | None:
    if intent.kind != INTENT_KIND:
        return None
    p = intent.payload
    when = str(p.get("usage_timestamp") or "")
    if not when or not p.get("subscription_id") or not p.get("add_on_id"):
        return None
    records = rt.recurly().list_usage(
        str(p["subscription_id"]),
        str(p["add_on_id"]),
        {"billing_status": "all", "begin_time": when, "end_time": when, "limit": 200},
    )
    return any(r.get("merchant_tag") == intent.key for r in records)


def gather_status(rt: Runtime, *, verify: bool) -> StatusInputs:
    """List both systems (memoised snapshots), read the journal, count usage; with ``verify`` read Recurly usage."""
    settings = rt.settings
    journal, present = _journal(rt)
    snapshots = rt.snapshots()
    catalog = snapshots.amplify_catalog()
    recurly_catalog = snapshots.recurly_catalog()
    sub_options = subscription_options(rt)
    # the same inputs sync-subscriptions builds (deleted subscriptions waiting for their usage included), read
    # through a journal reader that never creates the file
    subscriptions = subscription_inputs(rt, journal)
    plans = subscriptions.plans
    recurly_raw = snapshots.recurly_subscriptions()
    matches = {**subscriptions.journal_links, **match_subscriptions(subscriptions, sub_options)}
    # the window size the journal's usage was reported in (report-usage pins it), else the configured one
    window = journal.get_link(*WINDOW_SETTING) or settings.usage.window
    size = WINDOW_SIZES.get(window, WINDOW_SIZES[settings.usage.window])
    period_starts = {
        str(r.get("uuid")): parse_timestamp(r.get("current_period_started_at"))
        for r in recurly_raw
        if isinstance(r.get("current_period_started_at"), str)
    }
    pairs = [
        (s.id, q)
        for s in subscriptions.amplify
        if s.id in matches and s.plan_name in plans
        for q in plans[s.plan_name].quota_add_ons
    ]
    watermarks = {pair: journal.usage_watermark(*pair) for pair in pairs}
    targets, gaps = usage_targets(subscriptions, matches, period_starts, watermarks, size)

    ranges = sorted({(t.start, t.end) for t in targets if t.end is not None})
    answers: dict[tuple[datetime, datetime], RangeCount] = {}
    if ranges:
        source = build_source(settings, rt.amplify() if settings.usage.source == "traceability" else None, size)
        answers = source.counts(ranges, sorted({t.subscription_id for t in targets}))
    entries: dict[str, tuple[UsageLedgerEntry, ...]] = {}
    usage: list[UsageFacts] = []
    for t in targets:
        if t.subscription_id not in entries:
            entries[t.subscription_id] = tuple(journal.usage_entries(t.subscription_id))
        usage.append(
            UsageFacts(
                target=t,
                # None where the count is not proven complete: status never shows a guess as Amplify's count
                amplify_count=None if t.end is None or (t.start, t.end) not in answers
                else answers[(t.start, t.end)].count(t.pair),
                journal_entries=entries[t.subscription_id],
                recurly_records=_recurly_usage(rt, t) if verify else None,
            )
        )
    intents = tuple(IntentFacts(i, _intent_in_recurly(rt, i) if verify else None) for i in journal.open_intents())
    recurly_matches = match_subscriptions(replace(subscriptions, journal_links={}), sub_options) if verify else None
    return StatusInputs(
        catalog=catalog.snapshot,
        recurly_catalog=recurly_catalog,
        plan_options=plan_sync_options(settings),
        subscriptions=subscriptions,
        subscription_options=sub_options,
        usage=tuple(usage),
        usage_gaps=tuple(gaps),
        intents=intents,
        runs={c: journal.last_run(c) for c in COMMANDS},
        journal_path=str(settings.state.path),
        journal_present=present,
        window=window,
        lookback=settings.usage.lookback,
        verify=verify,
        recurly_matches=recurly_matches,
        opted_in_products=len(catalog.products),
    )


# ---- rendering ------------------------------------------------------------------------------------


def _render_section(console: Console, section: Section, output: StatusOutput) -> None:
    """One section through ``render_rows``; an empty one as one line that says what "empty" means."""
    if section.rows:
        columns, rows = section.narrow()
        render_rows(console, section.title, columns, rows, output=output)
        if output == "markdown":
            console.print()  # a blank line ends the Markdown table before the next heading
    elif output == "markdown":
        console.print(f"### {section.title}\n\n_{section.empty}_\n", markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(Text(f"{section.title}: {section.empty}", style="bold"), soft_wrap=True)


def _headline(report: StatusReport) -> str:
    when = _ts(report.generated_at)
    checked = "Recurly read in full (--verify)" if report.verified else "journal trusted (use --verify to read Recurly)"
    if report.in_step:
        return f"Status at {when}: everything is in step; {checked}."
    parts = [f"{report.summary['drift']} drift item(s)"]
    if report.open_intents:
        parts.append(f"{report.open_intents} open intent(s)")
    return f"Status at {when}: NOT in step: {', '.join(parts)}; {checked}."


def render_status(console: Console, report: StatusReport, output: StatusOutput) -> None:
    if output == "json":
        # one document for the whole report, so that `jq` and scripts read it in one go
        # written raw (as render.py does for JSON): no wrapping, no markup, secrets redacted
        console.file.write(redact(json.dumps(report.to_json(), indent=2, ensure_ascii=False)) + "\n")
        console.file.flush()
        return
    headline = _headline(report)
    console.print(f"## {headline}\n" if output == "markdown" else headline, markup=False, highlight=False)
    summary = Section(
        "summary",
        "Summary",
        _columns(("figure", "figure"), ("value", "value")),
        tuple((k.replace("_", " "), v) for k, v in report.summary.items()),
    )
    for section in (summary, *report.sections):
        _render_section(console, section, output)


def status(rt: Runtime, options: StatusOptions) -> int:
    """Gather, build, render; the exit code (4 with ``--exit-code`` when something is out of step)."""
    report = build_status(gather_status(rt, verify=options.verify), rt.clock())
    render_status(rt.console, report, options.output)
    return report.exit_code(options.exit_code)


__all__ = [
    "DriftItem",
    "EmptyJournal",
    "IntentFacts",
    "JournalReader",
    "Section",
    "StatusInputs",
    "StatusOptions",
    "StatusReport",
    "UsageFacts",
    "UsageTarget",
    "build_status",
    "gather_status",
    "orphans",
    "render_status",
    "status",
    "status_output",
    "usage_targets",
]
