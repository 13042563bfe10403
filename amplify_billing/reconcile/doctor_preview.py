"""doctor's plan mapping preview: what sync-plans would do with each opted-in plan, grouped by reason. Pure.

The plans are read with the production parser and mapped with the production mapping (``desired_plan``), under the
same rules as ``reconcile/plans.py``: a draft is ignored, an archived plan never reaches Recurly, a free plan only
with ``catalog.sync_free_plans``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from amplify_billing.amplify import literals
from amplify_billing.amplify.parse import ParseProblem, parse_plan, parse_product, parse_quota, parse_unit
from amplify_billing.models import PlanUnit, Product, ProductPlan, Quota, RecurlyPlan
from amplify_billing.reconcile.doctor_checks import Check, PreviewRow, Verdict
from amplify_billing.reconcile.plan_inputs import CatalogSnapshot, PlanSyncOptions
from amplify_billing.reconcile.plan_mapping import MappingOptions, Unsupported, desired_plan

MAX_EXAMPLES = 3
Raw = Mapping[str, Any]


def catalog_from_raw(
    products: Sequence[Raw], plans: Sequence[Raw], quotas: Sequence[Raw], units: Sequence[Raw]
) -> CatalogSnapshot:
    """The catalog as sync-plans parses it: each plan with its quotas, and what cannot be read."""
    problems: list[ParseProblem] = []
    by_name: dict[str, Product] = {}
    for raw in products:
        read = parse_product(raw)
        if isinstance(read, ParseProblem):
            problems.append(read)
        else:
            by_name[read.name] = read
    quotas_of: dict[str, list[Quota]] = {}
    broken: set[str] = set()
    for raw in quotas:
        quota = parse_quota(raw)
        scope = raw.get("metadata", {}).get("scope", {}) if isinstance(raw.get("metadata"), Mapping) else {}
        plan_name = str(scope.get("name") if isinstance(scope, Mapping) else "")
        if isinstance(quota, ParseProblem):
            problems.append(ParseProblem("quota", f"{plan_name}/{quota.name}", quota.reason))
            broken.add(plan_name)
        else:
            quotas_of.setdefault(quota.plan_name, []).append(quota)
    parsed: list[ProductPlan] = []
    for raw in plans:
        name = str(raw.get("name"))
        product = by_name.get(str((raw.get("spec") or {}).get("product")))
        if product is None:
            continue
        if name in broken:
            problems.append(ParseProblem("productplan", name, "one of its quotas cannot be read"))
            continue
        plan = parse_plan(raw, product, tuple(sorted(quotas_of.get(name, []), key=lambda q: q.id)))
        if isinstance(plan, ParseProblem):
            problems.append(plan)
        else:
            parsed.append(plan)
    known_units = {u.name: u for u in (parse_unit(raw) for raw in units) if isinstance(u, PlanUnit)}
    return CatalogSnapshot(plans=tuple(parsed), units=known_units, problems=tuple(problems))


def decide(
    plan: ProductPlan, catalog: CatalogSnapshot, options: PlanSyncOptions, mapping: MappingOptions
) -> tuple[str, str, RecurlyPlan | None]:
    """What sync-plans would do with ``plan``: outcome, reason, and the Recurly plan it would sync to."""
    if plan.state not in literals.PLAN_STATES:
        return "unsupported", f"unknown plan state {plan.state!r}", None
    if plan.state not in literals.PLAN_STATES_IN_RECURLY:
        return "not synced", f"{plan.state} plan", None
    if plan.type == literals.PLAN_TYPE_FREE and not options.sync_free_plans:
        return "not synced", "free plan (catalog.sync_free_plans is false)", None
    wanted = desired_plan(plan, catalog.units, mapping)
    if isinstance(wanted, Unsupported):
        return "unsupported", wanted.reason, None
    return "synced", f"{len(wanted.add_ons)} usage add-on(s)" if wanted.add_ons else "base price only", wanted


def plan_label(plan: ProductPlan) -> str:
    return f"{plan.product_name}/{plan.name}"


def preview(catalog: CatalogSnapshot, options: PlanSyncOptions, mapping: MappingOptions) -> list[PreviewRow]:
    """Opted-in plans grouped by outcome and reason (synced ones by their add-ons), with examples."""
    groups: dict[tuple[str, str], list[str]] = {}
    for plan in sorted(catalog.plans, key=plan_label):
        outcome, reason, _ = decide(plan, catalog, options, mapping)
        groups.setdefault((outcome, reason), []).append(plan_label(plan))
    for problem in catalog.problems:
        if problem.kind in ("productplan", "quota"):
            groups.setdefault(("unsupported", f"cannot be read: {problem.reason}"), []).append(problem.name)
    order = {"synced": 0, "unsupported": 1, "not synced": 2}
    return [
        PreviewRow(outcome, reason, len(names), tuple(names[:MAX_EXAMPLES]))
        for (outcome, reason), names in sorted(groups.items(), key=lambda item: (order[item[0][0]], item[0][1]))
    ]


def preview_check(rows: Sequence[PreviewRow], products: int) -> Check:
    """Action needed when nothing would sync; unsupported plans are reported, as sync-plans reports them."""
    count = {outcome: sum(r.count for r in rows if r.outcome == outcome) for outcome in ("synced", "unsupported")}
    summary = f"{count['synced']} plan(s) would sync, {count['unsupported']} unsupported (see the preview)"
    if products == 0:
        return Check(
            "plans",
            "mapping preview",
            Verdict.ACTION,
            "no product opts in: nothing would be billed",
            "give each product to bill the attribute amplify.opt_in_attribute=amplify.opt_in_value",
        )
    if count["synced"] == 0:
        return Check(
            "plans",
            "mapping preview",
            Verdict.ACTION,
            f"{summary}: nothing would be billed",
            "change the unsupported plans in Amplify, or bill them another way",
        )
    return Check("plans", "mapping preview", Verdict.OK, summary)
