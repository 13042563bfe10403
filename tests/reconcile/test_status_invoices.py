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
