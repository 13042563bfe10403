"""Settings -> the options the pure diffs take: one place, so every command and ``status`` decide alike."""

from __future__ import annotations

from amplify_billing.reconcile.plan_mapping import MappingOptions
from amplify_billing.reconcile.plans import PlanSyncOptions
from amplify_billing.reconcile.subscriptions import SubscriptionOptions
from amplify_billing.settings import Settings


def plan_sync_options(settings: Settings) -> PlanSyncOptions:
    countable = None if settings.usage.source == "file" else frozenset({"transactions"})
    return PlanSyncOptions(
        mapping=MappingOptions(
            plan_code_prefix=settings.catalog.plan_code_prefix,
            add_on_code_prefix=settings.catalog.add_on_code_prefix,
            countable_units=countable,
        ),
        sync_free_plans=settings.catalog.sync_free_plans,
        plan_link_attribute=settings.catalog.plan_link_attribute,
        quota_link_attribute=settings.catalog.quota_link_attribute,
    )


def subscription_options(settings: Settings) -> SubscriptionOptions:
    s = settings.subscriptions
    return SubscriptionOptions(
        owner=settings.accounts.owner,
        custom_field=s.custom_field,
        collection_method=s.collection_method,
        approve_pending=s.approve_pending,
        on_cancel=s.on_cancel,
        link_attribute=s.link_attribute,
        account_link_attribute=settings.accounts.link_attribute,
    )
