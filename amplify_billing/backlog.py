"""The work a run left for the next one when it stopped at its ``--max-duration`` deadline, and how old it is.

A run that reaches its deadline starts nothing new, lets the writes in flight finish and exits 0: the next run
goes on (README "Running from cron"). What it left is measured by the age of the oldest work left:

- a usage record not posted (or not corrected): now minus the end of its window, since the usage has been due
  since that window closed;
- any other change not attempted, or a step of ``run`` not started: now minus the start of the run, since it was
  due at least when the run began (when it first became due is not known).

``amplify_billing_backlog_seconds`` carries that age (0 when nothing was left), so a run that always stops at
its deadline keeps it above 0 and an alert can fire.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from amplify_billing.apply import DEADLINE_SKIP
from amplify_billing.changes import ChangeResult, CommandReport, Outcome

# The note of a step of ``run`` the deadline kept from starting.
NOT_STARTED = "not started: stopped at the deadline (--max-duration)"
STOPPED_LINE = "stopped at the deadline; the next run goes on"


def left_at_deadline(results: Iterable[ChangeResult]) -> list[ChangeResult]:
    """The changes not attempted because the deadline came (not those skipped for a failed prerequisite)."""
    return [r for r in results if r.outcome is Outcome.SKIPPED and r.error == DEADLINE_SKIP]


def oldest_left(results: Iterable[ChangeResult], *, now: datetime, since: datetime) -> timedelta | None:
    """The age of the oldest change left at the deadline (see the module's rule), or None when none was left."""
    ages: list[timedelta] = []
    for result in left_at_deadline(results):
        window_end = getattr(getattr(result.change.action, "record", None), "window_end", None)
        ages.append(now - window_end if isinstance(window_end, datetime) else now - since)
    return max(ages, default=None)


def backlog_age(reports: Sequence[CommandReport], now: datetime, started: datetime | None = None) -> timedelta | None:
    """The age of the oldest work the reports' run left at its deadline; None when it left nothing. ``started``:
    when the invocation began (the reports' own start times otherwise; a step not started has none)."""
    starts = [r.started_at for r in reports if r.started_at is not None] + ([started] if started else [])
    since = min(starts, default=now)
    ages = [oldest_left(r.results, now=now, since=since) for r in reports]
    ages += [now - since for r in reports if r.note is not None and r.note.startswith(NOT_STARTED)]
    found = [age for age in ages if age is not None]
    return max(found) if found else None


def backlog_seconds(reports: Sequence[CommandReport], now: datetime, started: datetime | None = None) -> float:
    age = backlog_age(reports, now, started)
    return max(age.total_seconds(), 0.0) if age is not None else 0.0


def stopped_line(reports: Sequence[CommandReport], now: datetime, started: datetime | None = None) -> str | None:
    """The line that ends a run stopped at its deadline, or None when it finished its work."""
    age = backlog_age(reports, now, started)
    if age is None:
        return None
    left = sum(len(left_at_deadline(r.results)) for r in reports)
    steps = [r.command for r in reports if r.note is not None and r.note.startswith(NOT_STARTED)]
    parts = [f"{left} change(s) left"] + ([f"not started: {', '.join(steps)}"] if steps else [])
    return f"{STOPPED_LINE} ({'; '.join(parts)}; the oldest work left is {_age_text(age)} old)"


def _age_text(age: timedelta) -> str:
    seconds = max(int(age.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days {seconds % 86400 // 3600} h"


__all__ = [
    "NOT_STARTED",
    "STOPPED_LINE",
    "backlog_age",
    "backlog_seconds",
    "left_at_deadline",
    "oldest_left",
    "stopped_line",
]
