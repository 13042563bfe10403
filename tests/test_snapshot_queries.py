"""RSQL `=in=` queries are cut by encoded length: full queries, every name once, URLs under the limit."""

from __future__ import annotations

from urllib.parse import quote

from amplify_billing.snapshots import IN_QUERY_CHARS, _chunks, _in


def test_names_are_cut_into_full_queries_under_the_url_budget() -> None:
    names = [f"weather-api-plan-{i:05d}" for i in range(2_000)] + ["ünïcode plan/with spaces"]
    chunks = list(_chunks(names))
    assert [n for chunk in chunks for n in chunk] == names, "every name once, in order"
    encoded = [len(quote(_in("spec.plan.name", chunk), safe="")) for chunk in chunks]
    assert max(encoded) <= IN_QUERY_CHARS + 200
    assert len(chunks) <= len(names) * 32 // IN_QUERY_CHARS + 2, "queries are filled, not cut at a fixed count"


def test_no_names_no_query() -> None:
    assert list(_chunks([])) == []
