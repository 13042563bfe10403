"""status in marketplace mode, pure: Amplify's metered units next to Traceability's count (status_invoices.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from amplify_billing.reconcile.status_invoices import MeteredQuota, metered_section

START, END = datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)


def test_each_quota_shows_both_counts_and_the_share_traced() -> None:
    section = metered_section(
        [
            MeteredQuota("sub-b", "Period 2026-11", "calls", START, END, 1000, 950),
            MeteredQuota("sub-a", "Period 2026-11", "calls", START, END, 200, None, "older than Traceability keeps"),
            MeteredQuota("sub-c", "Period 2026-11", "calls", START, END, 0, 0),
        ]
    )
    assert section.name == "metered"
    assert [r["subscription"] for r in section.records()] == ["sub-a", "sub-b", "sub-c"]
    a, b, c = section.records()
    assert (b["metered_units"], b["traced_units"], b["traced_share"]) == (1000, 950, "95.0%")
    assert (a["traced_units"], a["traced_share"]) == (None, "older than Traceability keeps")
    assert c["traced_share"] == "nothing metered"
    assert b["period"] == "2026-11-24T00:00:00Z to 2026-12-01T00:00:00Z"


def test_a_metered_row_meets_every_filter_given() -> None:
    from amplify_billing.reconcile.status_scope import StatusFilter, keeps_metered

    row = MeteredQuota(
        "sub-a", "Period", "calls", START, END, 10, 9, subscription_id="s1", plan="gold", plan_id="P1", account="acc"
    )

    def keeps(subscriptions: tuple[str, ...] = (), plans: tuple[str, ...] = (), accounts: tuple[str, ...] = ()) -> bool:
        only = StatusFilter.of(subscriptions, plans, accounts)
        assert only is not None
        return keeps_metered(only, row, "amplify-")

    assert keeps(subscriptions=("s1",)) and not keeps(subscriptions=("s2",))
    # a plan by its Amplify id, the Recurly code derived from it, or its resource name
    assert keeps(plans=("P1",)) and keeps(plans=("amplify-p1",)) and keeps(plans=("gold",))
    assert not keeps(plans=("silver",))
    assert keeps(accounts=("acc",)) and not keeps(accounts=("other",))
    assert not keeps(subscriptions=("s1",), accounts=("other",))  # every filter given, not any
