"""What a filtered status shows (``--subscription ID``, ``--plan ID``, ``--account CODE``), and which drift items
an acknowledgement covers.

A subscription is in scope when it meets every filter given: its Amplify id, its plan (the Amplify plan id or the
Recurly plan code), its Recurly account. A plan is in scope when the plan filter names it, or, with only the other
filters, when a subscription in scope is on it. A drift item, a usage row or an open intent is in scope when it
names an id in scope. A metered row (marketplace mode: no Recurly subscription, so no subscription row names it)
is in scope when its own subscription, plan and account meet the filters. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

from amplify_billing.acknowledge import Rule, matching
from amplify_billing.identity import account_code, plan_code
from amplify_billing.reconcile.status_invoices import MeteredQuota
from amplify_billing.reconcile.status_report import DriftItem
from amplify_billing.reconcile.subscriptions import SubscriptionInputs, SubscriptionOptions

# Drift an acknowledgement may cover: what a command reports but does not fix, and orphans. A pending change
# (create, update, …) is fixed by its command, and a usage difference by report-usage: neither is acknowledged.
ACKNOWLEDGEABLE = frozenset({"finding", "unsupported", "waiting", "orphan"})


@dataclass(frozen=True)
class StatusFilter:
    subscriptions: frozenset[str] = frozenset()
    plans: frozenset[str] = frozenset()
    accounts: frozenset[str] = frozenset()

    @staticmethod
    def of(
        subscriptions: Iterable[str] | None, plans: Iterable[str] | None, accounts: Iterable[str] | None
    ) -> StatusFilter | None:
        """The filter the options give, or None when they give none."""
        found = StatusFilter(frozenset(subscriptions or ()), frozenset(plans or ()), frozenset(accounts or ()))
        return found if found.subscriptions or found.plans or found.accounts else None

    def describe(self) -> str:
        parts = [
            *(f"--subscription {i}" for i in sorted(self.subscriptions)),
            *(f"--plan {i}" for i in sorted(self.plans)),
            *(f"--account {i}" for i in sorted(self.accounts)),
        ]
        return " ".join(parts)


@dataclass(frozen=True)
class Scope:
    """The ids a filtered status keeps."""

    subscription_ids: frozenset[str]
    plan_codes: frozenset[str]
    # every id of what is in scope: subscriptions, their Recurly uuids and accounts, plans and plan codes
    ids: frozenset[str]

    def keeps_drift(self, item: DriftItem) -> bool:
        return bool(item.ids & self.ids)

    def keeps_text(self, text: str) -> bool:
        """An open intent's key (a merchant tag names its subscription)."""
        return any(i in text for i in self.subscription_ids)


def scope_of(
    only: StatusFilter,
    subscriptions: SubscriptionInputs,
    matches: Mapping[str, str],
    options: SubscriptionOptions,
    plan_ids: Mapping[str, str],
) -> Scope:
    """``plan_ids``: each Recurly plan code by the Amplify plan id it comes from."""
    by_uuid = {r.uuid: r for r in subscriptions.recurly}
    wanted_codes = {plan_ids.get(p, p) for p in only.plans}
    kept: list[tuple[str, str | None, str | None, str | None]] = []
    for s in subscriptions.amplify:
        plan = subscriptions.plans.get(s.plan_name)
        current = by_uuid.get(matches.get(s.id, ""))
        code = plan.code if plan is not None else None
        account = current.account_code if current is not None else account_code(s, options.owner)
        if only.subscriptions and s.id not in only.subscriptions:
            continue
        if only.plans and code not in wanted_codes:
            continue
        if only.accounts and account not in only.accounts:
            continue
        kept.append((s.id, code, account, current.uuid if current is not None else None))
    codes = frozenset(wanted_codes) if only.plans else frozenset(c for _, c, _, _ in kept if c)
    plan_of_code = {code: plan_id for plan_id, code in plan_ids.items()}
    ids = {i for row in kept for i in row if i} | set(codes) | {plan_of_code[c] for c in codes if c in plan_of_code}
    ids |= set(only.accounts)
    return Scope(frozenset(s for s, _, _, _ in kept), codes, frozenset(ids))


def keeps_metered(only: StatusFilter, row: MeteredQuota, plan_code_prefix: str) -> bool:
    """A metered row meets every filter given; a plan is named by its Amplify id, the Recurly plan code derived
    from it, or its resource name."""
    plan_names = {row.plan, row.plan_id, plan_code(row.plan_id, plan_code_prefix) if row.plan_id else ""} - {""}
    return (
        (not only.subscriptions or row.subscription_id in only.subscriptions)
        and (not only.plans or bool(plan_names & only.plans))
        and (not only.accounts or row.account in only.accounts)
    )


def acknowledge_drift(drift: Sequence[DriftItem], rules: Sequence[Rule], today: date) -> list[DriftItem]:
    """The drift with each item an acknowledgement covers marked (an expired one marked as expired)."""
    marked: list[DriftItem] = []
    for item in drift:
        found = matching(item.kind, item.ids, rules, today) if item.kind in ACKNOWLEDGEABLE else None
        marked.append(item if found is None else replace(item, acknowledged=found))
    return marked


__all__ = ["ACKNOWLEDGEABLE", "Scope", "StatusFilter", "acknowledge_drift", "keeps_metered", "scope_of"]
