"""End-to-end: the subscription lifecycle and the account rules (DESIGN.md §2-§3) against the sandbox.

Every scenario runs the tool's production code against both emulators on a virtual clock and checks what they
hold afterwards (Recurly subscriptions and usage, Amplify approvals), which requests were made in which order,
and what the report says. Usage is checked to the unit against the Amplify emulator's own record of the traffic.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.changes import CommandReport, Outcome
from amplify_billing.errors import ExitCode, SafetyValveError
from amplify_billing.sandbox.harness import CUSTOM_FIELD
from amplify_billing.sandbox.server import RecordedRequest
from tools.driver import Cycle, amplify_writes, applied, failed, planned, recurly_writes

TODAY = datetime(2026, 11, 20, tzinfo=UTC)  # as in conftest.py
DAY0 = TODAY - timedelta(days=7)  # where make_cycle's clock starts
SETTLE = timedelta(hours=2)  # usage.settle_delay, default


# ---- helpers ---------------------------------------------------------------------------------------------


def _ok(reports: CommandReport | Iterable[CommandReport]) -> list[CommandReport]:
    """Every report without a failed change and with exit code 0; returned as a list."""
    listed = [reports] if isinstance(reports, CommandReport) else list(reports)
    for report in listed:
        assert failed(report) == [], (report.command, failed(report))
        assert report.exit_code == 0, (report.command, report.exit_code, report.note)
    return listed


def _by_command(reports: list[CommandReport]) -> dict[str, CommandReport]:
    return {r.command: r for r in reports}


def _field(subscription: dict[str, Any]) -> str | None:
    fields = {f["name"]: f["value"] for f in subscription.get("custom_fields") or ()}
    return fields.get(CUSTOM_FIELD)


def _recurly_for(cycle: Cycle, amplify_id: str, state: str | None = None) -> list[dict[str, Any]]:
    return [s for s in cycle.sandbox.recurly.subscriptions(state) if _field(s) == amplify_id]


def _usage_total(cycle: Cycle, uuid: str) -> int:
    return sum(
        int(Decimal(str(r["amount"]))) for r in cycle.sandbox.recurly.usage_records() if r["subscription_uuid"] == uuid
    )


def _traffic(cycle: Cycle, amplify_id: str, start: datetime, end: datetime) -> int:
    if end <= start:
        return 0
    return sum(n for (sid, _quota), n in cycle.sandbox.amplify.traffic(start, end).items() if sid == amplify_id)


def _amplify(cycle: Cycle, name: str) -> dict[str, Any]:
    return cycle.sandbox.amplify.resource("Subscription", name)


def _candidates(cycle: Cycle, *, approval: str = "approved", count: int = 1) -> list[dict[str, Any]]:
    """Subscriptions of the scenario on a plan with usage add-ons, with traffic, in the given approval state."""
    scenario = cycle.scenario
    found = []
    for name in scenario.live_subscriptions:
        raw = scenario.subscriptions_by_name[name]
        if (raw.get("approval") or {}).get("state") != approval:
            continue
        if not scenario.usage_quotas[raw["spec"]["plan"]["name"]]:
            continue
        if _traffic(cycle, raw["metadata"]["id"], DAY0, TODAY) == 0:
            continue
        found.append(raw)
    assert len(found) >= count, f"the scenario needs {count} {approval} subscription(s) with traffic"
    return found[:count]


def _usage_posts(requests_: Iterable[RecordedRequest], uuid: str) -> list[int]:
    return [
        i
        for i, r in enumerate(requests_)
        if r.method == "POST" and r.path.startswith(f"/subscriptions/uuid-{uuid}/") and r.path.endswith("/usage")
    ]


def _end_requests(requests_: Iterable[RecordedRequest], uuid: str) -> list[int]:
    """Indexes of the cancel (PUT …/cancel) and terminate (DELETE) requests for one Recurly subscription."""
    return [
        i
        for i, r in enumerate(requests_)
        if (r.method == "PUT" and r.path == f"/subscriptions/uuid-{uuid}/cancel")
        or (r.method == "DELETE" and r.path == f"/subscriptions/uuid-{uuid}")
    ]


def _day0(cycle: Cycle) -> None:
    _ok(cycle.run())


# ---- 1. cancelled in Amplify mid-week ---------------------------------------------------------------------


@pytest.mark.parametrize(("on_cancel", "final_state"), [("term_end", "canceled"), ("terminate", "expired")])
def test_cancel_mid_week_reports_usage_up_to_then_and_only_then_ends(
    make_cycle: Any, on_cancel: str, final_state: str
) -> None:
    cycle: Cycle = make_cycle(subscriptions=8)
    if on_cancel != "term_end":
        cycle.overrides["subscriptions"] = {"on_cancel": on_cancel}
    _day0(cycle)
    target = _candidates(cycle)[0]
    amplify_id, name = target["metadata"]["id"], target["name"]
    (live,) = _recurly_for(cycle, amplify_id, "active")
    uuid = live["uuid"]
    activated = parse_timestamp(live["activated_at"])
    assert activated == DAY0

    cycle.clock.set(DAY0 + timedelta(days=3, hours=3))
    _ok(cycle.run())
    cancelled_at = DAY0 + timedelta(days=3, hours=10, minutes=17)
    cycle.clock.set(cancelled_at)
    cycle.sandbox.amplify.set_subscription_state(name, "cancelled", reason="Cancelled by the consumer")
    assert _traffic(cycle, amplify_id, cancelled_at, TODAY) > 0, "traffic after the cancellation must not be billed"

    # an hour later the last window has not settled: nothing ends yet, and the report says why
    cycle.clock.set(cancelled_at + timedelta(hours=1))
    mark = len(cycle.sandbox.recurly.requests)
    early = _by_command(_ok(cycle.run()))
    assert _end_requests(cycle.sandbox.recurly.requests[mark:], uuid) == []
    waiting = [
        r
        for r in early["sync-subscriptions"].results
        if r.change.kind.value == "waiting" and amplify_id in r.change.amplify
    ]
    assert len(waiting) == 1 and "once usage up to then is reported" in waiting[0].change.summary
    assert _recurly_for(cycle, amplify_id, "active") != []

    # the next run after the settle delay: usage up to the cancellation, then the end in Recurly
    cycle.clock.set(cancelled_at + SETTLE + timedelta(minutes=5))
    marks = len(cycle.sandbox.recurly.requests), len(cycle.sandbox.amplify.requests)
    dry = cycle.sync_subscriptions(dry_run=True)
    assert recurly_writes(cycle.sandbox, marks[0]) == [] and amplify_writes(cycle.sandbox, marks[1]) == []
    mark = len(cycle.sandbox.recurly.requests)
    real = _by_command(_ok(cycle.run()))["sync-subscriptions"]
    assert sorted(applied(real)) == sorted(planned(dry)), "the dry run planned exactly what the run did"
    assert [k for k, *_ in planned(dry)].count("post") >= 1 and ("cancel" in [k for k, *_ in planned(dry)]) == (
        on_cancel == "term_end"
    )
    seen = cycle.sandbox.recurly.requests
    ends = _end_requests(seen, uuid)
    assert len(ends) == 1 and ends[0] >= mark, "ended in this run, once"
    assert _usage_posts(seen[mark:], uuid), "the last partial window was reported in this run"
    assert max(_usage_posts(seen, uuid)) < ends[0], "no usage POST after the end request"
    (ended,) = _recurly_for(cycle, amplify_id)
    assert ended["state"] == final_state
    if on_cancel == "term_end":
        assert seen[ends[0]].method == "PUT" and seen[ends[0]].body == {"timeframe": "term_end"}
    else:
        assert seen[ends[0]].method == "DELETE" and seen[ends[0]].query.get("refund") == ["none"]
    assert _usage_total(cycle, uuid) == _traffic(cycle, amplify_id, DAY0, cancelled_at)
    tags = [r["merchant_tag"] for r in cycle.sandbox.recurly.usage_records() if r["subscription_uuid"] == uuid]
    assert len(tags) == len(set(tags))

    # a later run writes nothing about it, in either system
    cycle.clock.set(cancelled_at + timedelta(days=1))
    marks = len(cycle.sandbox.recurly.requests), len(cycle.sandbox.amplify.requests)
    _ok(cycle.run())
    assert [r.path for r in recurly_writes(cycle.sandbox, marks[0]) if uuid in r.path] == []
    assert [r.path for r in amplify_writes(cycle.sandbox, marks[1]) if name in r.path] == []
    assert _usage_total(cycle, uuid) == _traffic(cycle, amplify_id, DAY0, cancelled_at)


# ---- 2. archived or deleted in Amplify --------------------------------------------------------------------


def test_archived_subscription_ends_the_same_way(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=6)
    _day0(cycle)
    target = _candidates(cycle)[0]
    amplify_id, name = target["metadata"]["id"], target["name"]
    (live,) = _recurly_for(cycle, amplify_id, "active")
    archived_at = DAY0 + timedelta(days=2, hours=15, minutes=40)
    cycle.clock.set(archived_at)
    cycle.sandbox.amplify.set_subscription_state(name, "archived")

    cycle.clock.set(archived_at + SETTLE + timedelta(minutes=1))
    mark = len(cycle.sandbox.recurly.requests)
    _ok(cycle.run())
    seen = cycle.sandbox.recurly.requests
    (end,) = _end_requests(seen, live["uuid"])
    assert end >= mark and max(_usage_posts(seen, live["uuid"])) < end
    assert _recurly_for(cycle, amplify_id)[0]["state"] == "canceled"
    assert _usage_total(cycle, live["uuid"]) == _traffic(cycle, amplify_id, DAY0, archived_at)


def test_deleted_subscription_reports_usage_up_to_when_it_was_missed_then_ends(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=6)
    _day0(cycle)
    target = _candidates(cycle)[0]
    amplify_id, name = target["metadata"]["id"], target["name"]
    (live,) = _recurly_for(cycle, amplify_id, "active")
    cycle.clock.set(DAY0 + timedelta(days=1, hours=4))
    _ok(cycle.run())
    # the tool cannot know when a resource was deleted, only when a run first missed it: that is its end
    missed_at = DAY0 + timedelta(days=2, hours=9, minutes=5)
    cycle.clock.set(missed_at)
    cycle.sandbox.amplify.delete_resource("Subscription", name)
    mark = len(cycle.sandbox.recurly.requests)
    first = _by_command(_ok(cycle.run()))
    assert _end_requests(cycle.sandbox.recurly.requests[mark:], live["uuid"]) == []
    waiting = [r for r in first["sync-subscriptions"].results if r.change.kind.value == "waiting"]
    assert [amplify_id in r.change.amplify and "deleted in Amplify" in r.change.summary for r in waiting] == [True]

    cycle.clock.set(missed_at + SETTLE)
    mark = len(cycle.sandbox.recurly.requests)
    _ok(cycle.run())
    seen = cycle.sandbox.recurly.requests
    (end,) = _end_requests(seen, live["uuid"])
    assert end >= mark and max(_usage_posts(seen, live["uuid"])) < end
    assert seen[end].method == "PUT" and _recurly_for(cycle, amplify_id)[0]["state"] == "canceled"
    assert _usage_total(cycle, live["uuid"]) == _traffic(cycle, amplify_id, DAY0, missed_at)

    cycle.clock.set(missed_at + timedelta(days=1))
    marks = len(cycle.sandbox.recurly.requests), len(cycle.sandbox.amplify.requests)
    _ok(cycle.run())
    assert [r.path for r in recurly_writes(cycle.sandbox, marks[0]) if live["uuid"] in r.path] == []


# ---- 3. migration to another plan -------------------------------------------------------------------------


def test_migration_ends_the_old_subscription_and_starts_a_new_one_without_billing_a_window_twice(
    make_cycle: Any,
) -> None:
    cycle: Cycle = make_cycle(subscriptions=6)
    _day0(cycle)
    old = _candidates(cycle)[0]
    old_id, old_plan = old["metadata"]["id"], old["spec"]["plan"]["name"]
    (old_live,) = _recurly_for(cycle, old_id, "active")
    new_plan = next(p for p in ("weather-payg", "weather-volume") if p != old_plan)
    new_quota = cycle.scenario.usage_quotas[new_plan][0]

    migrated_at = DAY0 + timedelta(days=3, hours=12, minutes=30)
    cycle.clock.set(migrated_at)
    successor = {key: value for key, value in old.items() if key not in ("metadata", "state", "approval", "attributes")}
    successor.update(
        name=f"{old['name']}-2",
        metadata={"audit": {"createTimestamp": "2026-11-16T12:30:00.000+0000"}},
        spec={**old["spec"], "plan": {"name": new_plan}},
        references={"subscription": {"name": old["name"]}},
        approval={"state": "pending"},
    )
    new = cycle.sandbox.amplify.put_resource(successor)
    new_id = new["metadata"]["id"]
    cycle.sandbox.amplify.set_subscription_state(old["name"], "migrated", reason="Moved to another plan")

    cycle.clock.set(migrated_at + timedelta(minutes=30))
    _ok(cycle.run())
    (new_live,) = _recurly_for(cycle, new_id, "active")
    assert new_live["plan"]["code"] == f"amplify-{cycle.scenario.plan_ids[new_plan]}"
    assert _amplify(cycle, new["name"])["approval"]["state"] == "approved"
    # its calls start after it exists in Recurly (earlier ones would be a finding, not double billing)
    activated = parse_timestamp(new_live["activated_at"])
    assert activated is not None
    cycle.sandbox.amplify.add_traffic_series(new_id, new_quota, activated + timedelta(minutes=7), 3600, [5, 9, 2] * 20)

    cycle.clock.set(migrated_at + SETTLE + timedelta(minutes=10))
    _ok(cycle.run())
    seen = cycle.sandbox.recurly.requests
    (end,) = _end_requests(seen, old_live["uuid"])
    assert seen[end].method == "DELETE" and seen[end].query.get("refund") == ["partial"]
    assert max(_usage_posts(seen, old_live["uuid"])) < end
    assert _recurly_for(cycle, old_id)[0]["state"] == "expired"

    cycle.clock.set(TODAY + timedelta(hours=3))
    _ok(cycle.run())
    old_billed = _usage_total(cycle, old_live["uuid"])
    new_billed = _usage_total(cycle, new_live["uuid"])
    assert old_billed == _traffic(cycle, old_id, DAY0, migrated_at)
    assert new_billed == _traffic(cycle, new_id, activated, TODAY) > 0
    tags = [r["merchant_tag"] for r in cycle.sandbox.recurly.usage_records()]
    assert len(tags) == len(set(tags))


# ---- 4. pending approval ----------------------------------------------------------------------------------


class _Sequence:
    """One ordered log of the requests both emulators answered (each emulator only knows its own order)."""

    def __init__(self, cycle: Cycle) -> None:
        self.seen: list[tuple[str, str, str]] = []
        for system, emulator in (("recurly", cycle.sandbox.recurly), ("amplify", cycle.sandbox.amplify)):
            original = emulator.dispatch

            def dispatch(raw: Any, original: Any = original, system: str = system) -> Any:
                answer = original(raw)
                if answer[0] is not None and answer[0].status < 300:
                    self.seen.append((system, raw.method, raw.path))
                return answer

            emulator.dispatch = dispatch  # type: ignore[method-assign]

    def index(self, system: str, method: str, path_part: str) -> list[int]:
        return [i for i, (s, m, p) in enumerate(self.seen) if s == system and m == method and path_part in p]


@pytest.mark.parametrize("approve_pending", [True, False])
def test_pending_subscription_is_billed_first_then_approved(make_cycle: Any, approve_pending: bool) -> None:
    cycle: Cycle = make_cycle(subscriptions=10)
    cycle.overrides["subscriptions"] = {"approve_pending": approve_pending}
    pending = [cycle.scenario.subscriptions_by_name[n] for n in cycle.scenario.pending_subscriptions]
    assert pending
    order = _Sequence(cycle)
    reports = _by_command(_ok(cycle.run()))
    for raw in pending:
        (live,) = _recurly_for(cycle, raw["metadata"]["id"], "active")
        approvals = order.index("amplify", "PUT", f"/subscriptions/{raw['name']}/approval")
        state = _amplify(cycle, raw["name"])["approval"]["state"]
        if approve_pending:
            creates = [
                i for i in order.index("recurly", "POST", "/subscriptions") if order.seen[i][2] == "/subscriptions"
            ]
            assert len(approvals) == 1 and state == "approved"
            assert min(creates) < approvals[0], "the Recurly subscription exists before the approval"
            assert (_amplify(cycle, raw["name"])["state"] or {}).get("name") == "active"
        else:
            assert approvals == [] and state == "pending"
            assert (_amplify(cycle, raw["name"])["attributes"] or {}).get("recurlySubscriptionUuid") == live["uuid"]
    waiting = [r for r in reports["sync-subscriptions"].results if r.change.object == "approval"]
    if approve_pending:
        assert sorted(r.outcome for r in waiting) == [Outcome.APPLIED] * len(pending)
    else:
        assert [r.change.kind.value for r in waiting] == ["waiting"] * len(pending)
        assert all("approve_pending is false" in r.change.summary for r in waiting)
    marks = len(cycle.sandbox.recurly.requests), len(cycle.sandbox.amplify.requests)
    _ok(cycle.run())
    assert recurly_writes(cycle.sandbox, marks[0]) == [] and amplify_writes(cycle.sandbox, marks[1]) == []


# ---- 5. a missing account that may not be created ---------------------------------------------------------


def test_missing_account_blocks_without_failing_until_it_exists(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=8)
    cycle.overrides["accounts"] = {"create_missing": False}
    scenario = cycle.scenario
    blocked: dict[str, set[str]] = {}
    for name in scenario.live_subscriptions:
        blocked.setdefault(scenario.account_code(name), set()).add(name)

    reports = _by_command(_ok(cycle.run()))
    assert cycle.sandbox.recurly.accounts() == [] and cycle.sandbox.recurly.subscriptions() == []
    waiting = {
        r.change.recurly: r.change
        for r in reports["link-accounts"].results
        if r.change.kind.value == "waiting" and r.change.object == "account"
    }
    assert set(waiting) == {f"account {code}" for code in blocked}
    for code, names in blocked.items():
        change = waiting[f"account {code}"]
        assert "accounts.create_missing is false" in change.summary
        assert f"blocks {len(names)} subscription(s)" in change.summary
        by_id = sorted(names, key=lambda n: scenario.subscriptions_by_name[n]["metadata"]["id"])
        assert change.amplify == ", ".join(by_id[:5]) + (f" and {len(by_id) - 5} more" if len(by_id) > 5 else "")
    subscription_waits = [r for r in reports["sync-subscriptions"].results if r.change.kind.value == "waiting"]
    assert len(subscription_waits) == len(scenario.live_subscriptions)
    for name in scenario.pending_subscriptions:
        assert _amplify(cycle, name)["approval"]["state"] == "pending", "stays pending without billing"

    # the operator creates one of the accounts in Recurly; the next run bills its subscriptions
    code = max(blocked, key=lambda c: len(blocked[c]))
    cycle.recurly_by_hand("POST", "/accounts", {"code": code, "email": "billing@example.test"})
    cycle.clock.advance(timedelta(hours=1))
    _ok(cycle.run())
    live = cycle.sandbox.recurly.subscriptions("active")
    assert sorted(_field(s) or "" for s in live) == sorted(
        scenario.subscriptions_by_name[n]["metadata"]["id"] for n in blocked[code]
    )
    assert {s["account"]["code"] for s in live} == {code}
    for name in blocked[code]:
        assert _amplify(cycle, name)["approval"]["state"] == "approved"
    assert [a["code"] for a in cycle.sandbox.recurly.accounts()] == [code], "no account was created by the tool"


# ---- 6. accounts per organization -------------------------------------------------------------------------


def test_org_owner_mode_bills_every_subscription_on_the_org_account(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=6)
    cycle.overrides["accounts"] = {"owner": "org"}
    _ok(cycle.run())
    org = cycle.scenario.org
    code = f"amplify-org-{org['org_id']}"
    (account,) = cycle.sandbox.recurly.accounts()
    assert account["code"] == code and account["company"] == org["name"]
    primary = next(u for u in cycle.scenario.users if u["guid"] == org["users"][0]["guid"])
    assert account["email"] == primary["email"]
    live = cycle.sandbox.recurly.subscriptions("active")
    assert len(live) == len(cycle.scenario.live_subscriptions)
    assert {s["account"]["code"] for s in live} == {code}
    for name in cycle.scenario.live_subscriptions:
        assert _amplify(cycle, name)["attributes"]["recurlyAccountCode"] == code


# ---- 7. values the tool does not know -----------------------------------------------------------------------


def test_unknown_state_or_approval_is_a_finding_and_nothing_is_ended_or_approved(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=10)
    _day0(cycle)
    active = _candidates(cycle)[0]
    (live,) = _recurly_for(cycle, active["metadata"]["id"], "active")
    # a pending one that has no Recurly subscription yet: a new subscription arriving with an unknown approval
    fresh = {key: value for key, value in active.items() if key not in ("metadata", "state", "attributes")}
    fresh.update(name=f"{active['name']}-new", approval={"state": "onhold"})
    fresh_id = cycle.sandbox.amplify.put_resource(fresh)["metadata"]["id"]
    frozen = _amplify(cycle, active["name"])
    frozen["state"] = {"name": "frozen", "when": {"timestamp": "2026-11-14T10:00:00.000+0000"}}
    cycle.sandbox.amplify.put_resource(frozen)

    cycle.clock.set(DAY0 + timedelta(days=1, hours=5))
    order = _Sequence(cycle)
    reports = _by_command(_ok(cycle.run()))
    findings = {
        r.change.key: r.change.summary
        for r in reports["sync-subscriptions"].results
        if r.change.kind.value == "finding"
    }
    assert findings == {
        active["metadata"]["id"]: "unknown subscription state 'frozen'; nothing done",
        fresh_id: "unknown approval state 'onhold'; nothing done",
    }
    assert _end_requests(cycle.sandbox.recurly.requests, live["uuid"]) == []
    assert _recurly_for(cycle, active["metadata"]["id"])[0]["state"] == "active"
    assert _recurly_for(cycle, fresh_id) == []
    assert order.index("amplify", "PUT", "/approval") == []
    assert _amplify(cycle, fresh["name"])["approval"]["state"] == "onhold"


# ---- 8. identity: finding what exists instead of creating it again ------------------------------------------


def _drop_journal(cycle: Cycle) -> None:
    for path in cycle.sandbox.state_dir.glob("amplify-billing.db*"):
        path.unlink()


def test_lost_journal_finds_subscriptions_and_usage_by_custom_field(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=8)
    _day0(cycle)
    cycle.clock.set(DAY0 + timedelta(days=2, hours=3))
    _ok(cycle.run())
    before = cycle.sandbox.recurly.usage_records()
    assert before
    _drop_journal(cycle)
    marks = len(cycle.sandbox.recurly.requests), len(cycle.sandbox.amplify.requests)
    _ok(cycle.run())
    assert recurly_writes(cycle.sandbox, marks[0]) == []
    assert amplify_writes(cycle.sandbox, marks[1]) == []
    assert cycle.sandbox.recurly.usage_records() == before


@pytest.mark.parametrize("clear_attributes", [False, True])
def test_without_custom_field_subscriptions_are_found_by_link_attribute_or_account_and_plan(
    make_cycle: Any, clear_attributes: bool
) -> None:
    cycle: Cycle = make_cycle(subscriptions=10)
    cycle.overrides["subscriptions"] = {"custom_field": None}
    _day0(cycle)
    live = cycle.sandbox.recurly.subscriptions("active")
    assert live and all(_field(s) is None for s in live)
    shared: dict[tuple[str, str], list[str]] = {}
    for name in cycle.scenario.live_subscriptions:
        raw = cycle.scenario.subscriptions_by_name[name]
        key = (cycle.scenario.account_code(name), f"amplify-{cycle.scenario.plan_ids[raw['spec']['plan']['name']]}")
        shared.setdefault(key, []).append(raw["metadata"]["id"])
    if clear_attributes:
        for name in cycle.scenario.live_subscriptions:
            resource = _amplify(cycle, name)
            resource["attributes"] = {}
            cycle.sandbox.amplify.put_resource(resource)
    _drop_journal(cycle)

    marks = len(cycle.sandbox.recurly.requests)
    reports = _by_command(_ok(cycle.run()))
    assert recurly_writes(cycle.sandbox, marks) == [], "nothing created, cancelled or posted twice"
    ambiguous = sorted(
        r.change.key
        for r in reports["sync-subscriptions"].results
        if r.change.kind.value == "finding" and "Recurly subscriptions match it" in r.change.summary
    )
    expected = sorted(i for ids in shared.values() if len(ids) > 1 for i in ids) if clear_attributes else []
    assert ambiguous == expected
    if clear_attributes:
        # each one that is alone on its account and plan got its link attribute back, with the right uuid
        by_key = {(s["account"]["code"], s["plan"]["code"]): s["uuid"] for s in live}
        for name in cycle.scenario.live_subscriptions:
            raw = cycle.scenario.subscriptions_by_name[name]
            key = (cycle.scenario.account_code(name), f"amplify-{cycle.scenario.plan_ids[raw['spec']['plan']['name']]}")
            got = _amplify(cycle, name)["attributes"].get("recurlySubscriptionUuid")
            assert got == (by_key[key] if len(shared[key]) == 1 else None)


def test_two_recurly_candidates_are_ambiguous_and_nothing_is_created_or_ended(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=6)
    _day0(cycle)
    target = _candidates(cycle)[0]
    amplify_id = target["metadata"]["id"]
    (first,) = _recurly_for(cycle, amplify_id, "active")
    body = {
        "plan_code": first["plan"]["code"],
        "currency": first["currency"],
        "account": {"code": first["account"]["code"]},
        "collection_method": "manual",
        "custom_fields": [{"name": CUSTOM_FIELD, "value": amplify_id}],
    }
    second = cycle.recurly_by_hand("POST", "/subscriptions", body)
    cancelled_at = cycle.clock() + timedelta(hours=1)
    cycle.clock.set(cancelled_at)
    cycle.sandbox.amplify.set_subscription_state(target["name"], "cancelled")
    cycle.clock.set(cancelled_at + SETTLE + timedelta(hours=1))

    marks = len(cycle.sandbox.recurly.requests)
    reports = _by_command(_ok(cycle.run()))
    (finding,) = [r.change for r in reports["sync-subscriptions"].results if r.change.key == amplify_id]
    assert finding.kind.value == "finding"
    uuids = sorted([first["uuid"], second["uuid"]])
    assert finding.summary == (
        f"2 Recurly subscriptions match it ({', '.join(uuids)}); resolve by hand (keep one, cancel the others), "
        "then run again"
    )
    writes = recurly_writes(cycle.sandbox, marks)
    assert [w.path for w in writes if second["uuid"] in w.path] == []
    assert _end_requests(writes, first["uuid"]) == []
    assert [w for w in writes if w.path == "/subscriptions"] == []
    # usage still goes to the subscription the journal created (billed once); never to the stray one
    assert _usage_total(cycle, first["uuid"]) == _traffic(cycle, amplify_id, DAY0, cancelled_at)
    assert {s["state"] for s in _recurly_for(cycle, amplify_id)} == {"active"}


# ---- 9. the safety valve for cancellations ----------------------------------------------------------------


def test_cancelling_too_many_refuses_with_counts_and_force_applies(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=12)
    _day0(cycle)
    linked = len(cycle.sandbox.recurly.subscriptions("live"))
    chosen = [
        n
        for n in cycle.scenario.live_subscriptions
        if (cycle.scenario.subscriptions_by_name[n].get("approval") or {}).get("state") == "approved"
    ][:5]
    assert len(chosen) == 5 and linked >= 5
    cycle.clock.set(DAY0 + timedelta(days=1, hours=6))
    for name in chosen:
        cycle.sandbox.amplify.set_subscription_state(name, "cancelled")
    cycle.clock.advance(SETTLE + timedelta(minutes=1))

    percent = round(Decimal(500) / linked)
    message = (
        f"sync-subscriptions would cancel or terminate 5 of {linked} linked Recurly objects ({percent}%), "
        "more than safety.max_destructive_fraction (20%); nothing was written."
    )
    marks = len(cycle.sandbox.recurly.requests), len(cycle.sandbox.amplify.requests)
    with pytest.raises(SafetyValveError) as refused:
        cycle.sync_subscriptions()
    assert refused.value.exit_code == ExitCode.REFUSED == 4
    assert str(refused.value).startswith(message) and str(refused.value).endswith("run again with --force")
    assert recurly_writes(cycle.sandbox, marks[0]) == [] and amplify_writes(cycle.sandbox, marks[1]) == []
    # `run` plans the whole cycle first and the valve judges it before the first write of any phase
    (stopped,) = cycle.run()
    assert (stopped.command, stopped.exit_code) == ("run", 4)
    assert stopped.note is not None and message in stopped.note
    assert "not run: sync-plans, link-accounts, sync-subscriptions, report-usage" in stopped.note
    assert recurly_writes(cycle.sandbox, marks[0]) == [] and amplify_writes(cycle.sandbox, marks[1]) == []
    # a dry run of the cycle shows the phase's refusal and the whole cycle's, and writes nothing either
    dry = _by_command(cycle.run(dry_run=True))
    assert message in (dry["sync-subscriptions"].note or "")
    assert "a real run would refuse the whole cycle before its first write" in (dry["sync-plans"].note or "")
    assert recurly_writes(cycle.sandbox, marks[0]) == [] and amplify_writes(cycle.sandbox, marks[1]) == []

    from amplify_billing.commands.options import SyncOptions
    from amplify_billing.commands.sync_subscriptions import sync_subscriptions

    forced = cycle._go(
        "sync-subscriptions", False, lambda rt, run_id: sync_subscriptions(rt, SyncOptions(force=True), run_id=run_id)
    )
    _ok(forced)
    assert sorted(k for k, *_ in applied(forced) if k in ("cancel", "terminate")) == ["cancel"] * 5
    ids = {cycle.scenario.subscriptions_by_name[n]["metadata"]["id"] for n in chosen}
    assert sorted(s["state"] for s in cycle.sandbox.recurly.subscriptions() if _field(s) in ids) == ["canceled"] * 5


# ---- an ended subscription whose plan gained a quota after it started --------------------------------------


def test_a_quota_added_after_the_subscription_started_does_not_keep_it_from_ending(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=8)
    _day0(cycle)
    target = _candidates(cycle)[0]
    amplify_id, name, plan = target["metadata"]["id"], target["name"], target["spec"]["plan"]["name"]
    (live,) = _recurly_for(cycle, amplify_id, "active")
    before = sorted(a["add_on"]["code"] for a in live["add_ons"])

    # the provider adds a quota to the plan: sync-plans gives the Recurly plan a new add-on, which the existing
    # Recurly subscription does not have (no usage is ever reported for it there)
    quota = next(q for q in cycle.sandbox.amplify.resources("Quota") if q["metadata"]["scope"]["name"] == plan)
    extra = {k: v for k, v in quota.items() if k not in ("metadata", "attributes")}
    extra["name"] = f"{quota['name']}-extra"
    extra["metadata"] = {"scope": dict(quota["metadata"]["scope"])}
    cycle.sandbox.amplify.put_resource(extra)
    cycle.clock.set(DAY0 + timedelta(days=2, hours=3))
    _ok(cycle.run())
    plan_codes = sorted(a["code"] for a in cycle.sandbox.recurly.add_ons(live["plan"]["code"]))
    assert len(plan_codes) == len(before) + 1
    assert sorted(a["add_on"]["code"] for a in _recurly_for(cycle, amplify_id, "active")[0]["add_ons"]) == before

    cancelled_at = DAY0 + timedelta(days=2, hours=9)
    cycle.clock.set(cancelled_at)
    cycle.sandbox.amplify.set_subscription_state(name, "cancelled")
    cycle.clock.set(cancelled_at + SETTLE + timedelta(minutes=5))
    _ok(cycle.run())
    assert _recurly_for(cycle, amplify_id, "canceled") != [], "it ends once the usage of its own add-ons is reported"
