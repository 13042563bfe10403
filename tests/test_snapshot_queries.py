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


def test_a_compact_resource_reads_like_the_resource_it_keeps() -> None:
    import sys

    from amplify_billing.compact import CompactResource

    resource = {
        "name": "sub-1",
        "metadata": {"id": "a" * 32, "resourceVersion": "7", "selfLink": "/catalog/v1/subscriptions/sub-1"},
        "attributes": {"recurlyAccountCode": "amplify-team-x"},
        "title": "Ünïcode ✓",
    }
    compact = CompactResource.of(resource)
    assert dict(compact) == resource and compact.get("missing") is None and compact["title"] == "Ünïcode ✓"
    assert {**compact, "attributes": {}}["metadata"] == resource["metadata"]
    assert sys.getsizeof(compact) + len(compact._text) < sum(sys.getsizeof(v) for v in resource.values()) * 2
