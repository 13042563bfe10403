"""The final usage of ended subscriptions, reported before sync-subscriptions ends them."""

from __future__ import annotations

from dataclasses import replace

from amplify_billing import safety
from amplify_billing.changes import ChangeResult
from amplify_billing.collaborators import Phase
from amplify_billing.commands.options import SyncOptions
from amplify_billing.gather.subscriptions import attached_add_ons, usage_reported_through
from amplify_billing.reconcile.subscriptions import (
    SubscriptionInputs,
    SubscriptionOptions,
    awaiting_final_usage,
    diff_subscriptions,
)
from amplify_billing.usage.reporting import UsageOptions, report_usage_with_watermarks


def report_final_usage(
    rt: Phase, inputs: SubscriptionInputs, sub_options: SubscriptionOptions, options: SyncOptions, run_id: int | None
) -> tuple[SubscriptionInputs, list[ChangeResult]]:
    """Report the last usage of ended subscriptions (up to their end) before the diff may end them.

    Usage up to the end is reported first, then the Recurly subscription ends. `run` calls
    sync-subscriptions before report-usage, so without this the end would always wait for the next run.
    A usage change that fails leaves the watermark where it was, so that subscription waits (not ended).
    """
    ending = awaiting_final_usage(inputs, sub_options)
    if not ending:
        return inputs, []
    # the safety valve judges the ends this run would make before their usage is planned: refused, no usage is
    # planned for them, and the diff of these inputs meets the same refusal in ``execute`` (a real run stops there
    # with nothing written; a dry run's plan says it would). A dry run and a real run plan the same final usage.
    ends = {s.id: s.state_changed_at for s in inputs.amplify if s.id in ending}
    assumed = replace(inputs, usage_reported_through={**inputs.usage_reported_through, **ends})
    if safety.refusal(diff_subscriptions(assumed, sub_options), rt.settings.safety, force=options.force):
        return assumed, []
    usage, moved = report_usage_with_watermarks(
        rt, UsageOptions(dry_run=options.dry_run, force=options.force, only=frozenset(ending)), run_id=run_id
    )
    chosen = [s for s in inputs.amplify if s.id in ending]
    through = usage_reported_through(
        rt.journal_view(), chosen, inputs.plans, attached_add_ons(inputs.recurly, inputs.journal_links), planned=moved
    )
    return replace(inputs, usage_reported_through={**inputs.usage_reported_through, **through}), list(usage.results)
