"""sync-plans: Amplify product plans and quotas -> Recurly plans, usage add-ons and measured units."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from amplify_billing.changes import CommandReport, Outcome
from amplify_billing.collaborators import Engine, Listings
from amplify_billing.execute import execute, make_report
from amplify_billing.gather.options import plan_sync_options
from amplify_billing.reconcile.plans import diff_plans


class CatalogSync(Listings, Engine, Protocol):
    """What sync-plans uses: the listings of both catalogs, the settings and the engine."""


@dataclass(frozen=True)
class SyncPlansOptions:
    dry_run: bool = False
    exit_code: bool = False
    force: bool = False
    products: tuple[str, ...] = ()


def sync_plans(rt: CatalogSync, options: SyncPlansOptions, *, run_id: int | None) -> CommandReport:
    snapshots = rt.snapshots()
    catalog = snapshots.amplify_catalog(options.products)
    recurly = snapshots.recurly_catalog()
    changeset = diff_plans(catalog.snapshot, recurly, plan_sync_options(rt.settings))
    results, note = execute(rt, changeset, dry_run=options.dry_run, force=options.force, run_id=run_id)
    if any(
        r.outcome is Outcome.APPLIED and r.change.object != "productplan" and r.change.object != "quota"
        for r in results
    ):
        snapshots.forget("recurly_catalog")
    figures = {
        "opted_in_products": len(catalog.products),
        "plans_seen": len(catalog.snapshot.plans),
        "recurly_plans": len(recurly.plans),
    }
    return make_report(
        "sync-plans", results, dry_run=options.dry_run, exit_code_flag=options.exit_code, note=note, figures=figures
    )
