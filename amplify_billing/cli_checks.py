"""Option values checked against what exists, so that no option is a silent no-op.

An unknown ``--product`` is exit 2 naming the products that exist (it would otherwise sync nothing and say "no
changes"); a ``--from`` in the future, or a range in which nothing has settled yet, is exit 2 saying so; a past
range that holds no window of a billed subscription gets a note that says nothing was counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from amplify_billing.changes import CommandReport
from amplify_billing.errors import ConfigError
from amplify_billing.runtime import Runtime


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_products(rt: Runtime, names: Sequence[str]) -> None:
    """Every ``--product`` names an opted-in Amplify product (the filtered listing is the one sync-plans uses)."""
    if not names:
        return
    snapshots = rt.snapshots()
    found = {p.name for p in snapshots.amplify_catalog(names).products}
    missing = [n for n in dict.fromkeys(names) if n not in found]
    if not missing:
        return
    existing = sorted(p.name for p in snapshots.amplify_catalog().products)
    amplify = rt.settings.amplify
    raise ConfigError(
        f"--product {', '.join(missing)}: no opted-in Amplify product has this name; "
        + (f"the opted-in products are: {', '.join(existing)}" if existing else "no product is opted in")
        + f" (a product is opted in by its attribute {amplify.opt_in_attribute}={amplify.opt_in_value})"
    )


def check_range(start: datetime | None, end: datetime | None, now: datetime, settle_delay: timedelta) -> None:
    """A backfill range must start in the past and hold some settled time (windows are reported once
    ``usage.settle_delay`` old)."""
    if start is None:
        return
    if start >= now:
        raise ConfigError(
            f"--from {_ts(start)} is in the future (now {_ts(now)}); nothing can be counted there yet: "
            "give a range in the past"
        )
    settled = now - settle_delay
    until = settled if end is None else min(end, settled)
    if start >= until:
        raise ConfigError(
            f"--from {_ts(start)}: nothing in this range has settled yet (usage.settle_delay "
            f"{_duration(settle_delay)}: a window is reported once it is that old); run it again after "
            f"{_ts(start + settle_delay)}, or give an earlier --from"
        )


def empty_range_note(report: CommandReport, start: datetime | None, end: datetime | None) -> CommandReport:
    """The report of a backfill that counted no window, with a note that says so."""
    if (start is None and end is None) or report.figures.get("windows_counted") != 0:
        return report
    span = " ".join(f"{flag} {_ts(t)}" for flag, t in (("--from", start), ("--to", end)) if t is not None)
    note = f"{span}: no window of a billed subscription falls in this range; nothing was counted"
    return replace(report, note=f"{report.note}; {note}" if report.note else note)


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


__all__ = ["check_products", "check_range", "empty_range_note"]
