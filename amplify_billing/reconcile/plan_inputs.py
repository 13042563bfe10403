"""sync-plans inputs and phases, shared by the diff (``plans``) and its steps (``plan_updates``,
``plan_deactivation``), so that the steps need not import the module that calls them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from amplify_billing.amplify.parse import ParseProblem
from amplify_billing.models import MeasuredUnit, PlanUnit, ProductPlan, RecurlyPlan
from amplify_billing.reconcile.plan_mapping import MappingOptions

PHASE_UNITS = 10
PHASE_PLANS = 20
PHASE_ADD_ONS = 30
PHASE_DEACTIVATE = 40
PHASE_LINKS = 90
PHASE_REPORT = 95


@dataclass(frozen=True)
class CatalogSnapshot:
    """What Amplify says: opted-in products' plans (every state), their quotas, the units."""

    plans: tuple[ProductPlan, ...]
    units: Mapping[str, PlanUnit]
    problems: tuple[ParseProblem, ...] = ()
    # False when the listing was narrowed (--product): absent plans then prove nothing
    complete: bool = True


@dataclass(frozen=True)
class RecurlyCatalog:
    """What Recurly holds under our code prefix."""

    plans: Mapping[str, RecurlyPlan]  # by code, active and inactive
    measured_units: Mapping[str, MeasuredUnit]  # by name
    live_subscriptions_by_plan: Mapping[str, int] = field(default_factory=dict)
    # plans under our prefix whose prices or tiers cannot be read exactly: code -> why. They are reported and left
    # alone (never updated, deactivated or linked), because every comparison with them would be a misreading.
    unparsed: Mapping[str, str] = field(default_factory=dict)
    # the site's default currency, read only when free plans are synced: a free plan may name no currency
    default_currency: str | None = None


@dataclass(frozen=True)
class PlanSyncOptions:
    mapping: MappingOptions = field(default_factory=MappingOptions)
    sync_free_plans: bool = False
    plan_link_attribute: str = "recurlyPlanCode"
    quota_link_attribute: str = "recurlyAddOnCode"


def mapping_for(options: PlanSyncOptions, recurly: RecurlyCatalog) -> MappingOptions:
    """The mapping options with the site's default currency, for a free plan that names none."""
    if recurly.default_currency is None:
        return options.mapping
    return replace(options.mapping, default_currency=recurly.default_currency)


def plan_ref(plan: ProductPlan) -> str:
    """How a plan is named in the report: product, plan and id, so that two plans of one name stay apart."""
    return f"{plan.product_name}/{plan.name} ({plan.id})"
