"""report-usage: counted API traffic -> Recurly usage records, exactly once. The phase itself is
``usage.reporting`` (sync-subscriptions runs it too, for the final usage before an end)."""

from __future__ import annotations

from amplify_billing.changes import CommandReport
from amplify_billing.collaborators import Phase
from amplify_billing.usage.reporting import UsageOptions, report_usage_with_watermarks


def report_usage(rt: Phase, options: UsageOptions, *, run_id: int | None) -> CommandReport:
    return report_usage_with_watermarks(rt, options, run_id=run_id)[0]


__all__ = ["UsageOptions", "report_usage"]
