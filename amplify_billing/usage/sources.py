"""Usage sources: transaction counts per (subscription, quota) for time ranges (DESIGN.md §3 Usage).

Counts come with what they prove (``RangeCount``): an action that depends on absence or on a total needs a read
proven complete. ``traceability`` (default) asks the Traceability API one grouped count and its total per
distinct range, for all subscriptions at once, and splits only an answer that does not add up. ``file`` reads
rows ``(subscription_id, quota_id, window_start, count)`` from a CSV or JSONL file, for backfills and gateways
without traceability, and proves only the pairs and windows it holds.
Counts are money-bearing input: a file is validated completely before any count is returned, and a bad row
stops the run with the file and line.

The sources live beside this module: ``range_count`` (what an answer proves), ``traceability_source``,
``file_source`` and ``file_rows`` (a usage file's validation). This module picks one from the settings and
keeps the names other modules import.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from amplify_billing.errors import ConfigError
from amplify_billing.settings import Settings
from amplify_billing.usage.file_rows import EXTENSIONS, FIELDS
from amplify_billing.usage.file_source import FileSource
from amplify_billing.usage.range_count import Pair, Range, RangeCount, UsageSource
from amplify_billing.usage.traceability_source import (
    SMALLEST_SPLIT,
    WHY_EXAMPLES,
    TraceabilityLike,
    TraceabilitySource,
)

if TYPE_CHECKING:
    from amplify_billing.amplify.clients import AmplifyClients


def build_source(settings: Settings, amplify: AmplifyClients | None, size: timedelta) -> UsageSource:
    """The source named by ``usage.source``; ``amplify`` is required for ``traceability`` (None for ``file``)."""
    usage = settings.usage
    if usage.source == "file":
        if usage.file_path is None:
            raise ConfigError(
                f"{settings.source}: usage.source is file but usage.file_path is not set; "
                "set usage.file_path to a .csv or .jsonl file of usage rows"
            )
        return FileSource(usage.file_path, size)
    if amplify is None:
        raise ValueError("the traceability usage source needs the Amplify clients")
    return TraceabilitySource(
        amplify.traceability, usage.statuses, group_limit=usage.group_limit, retention=usage.retention
    )


__all__ = [
    "EXTENSIONS",
    "FIELDS",
    "SMALLEST_SPLIT",
    "WHY_EXAMPLES",
    "FileSource",
    "Pair",
    "Range",
    "RangeCount",
    "TraceabilityLike",
    "TraceabilitySource",
    "UsageSource",
    "build_source",
]
