"""status: the pure report (one test per kind of drift), its three renderings, and end to end on the sandbox."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from amplify_billing import __version__
from amplify_billing.amplify.parse import parse_plan, parse_product, parse_quota
from amplify_billing.gather.status import EmptyJournal
from amplify_billing.journal import Intent, RunRecord, UsageLedgerEntry
from amplify_billing.models import AmplifySubscription, MeasuredUnit, PlanUnit, Product, ProductPlan, Quota, RecurlyPlan
from amplify_billing.reconcile.plan_mapping import MappingOptions, desired_plan
from amplify_billing.reconcile.plans import CatalogSnapshot, PlanSyncOptions, RecurlyCatalog
from amplify_billing.reconcile.status import (
    IntentFacts,
    StatusInputs,
    StatusReport,
    UsageFacts,
    UsageTarget,
    build_status,
    usage_targets,
)
from amplify_billing.reconcile.subscriptions import (
    LinkedPlan,
    RecurlySubscription,
    SubscriptionInputs,
    SubscriptionOptions,
)
from amplify_billing.render.envelope import ReportEnvelope
from amplify_billing.render.status import render_status
from amplify_billing.usage.windows import merchant_tag

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
DAY = timedelta(days=1)
PLAN_ID = "8ac98ee28ea29652018eaee2253601ac"
QUOTA_ID = "1f" * 16
CODE = f"amplify-{PLAN_ID}"
ADD_ON = f"amplify-{QUOTA_ID}"
SUB_ID = "a" * 32
UUID = "u" * 32
TEAM = "d9120f39-88d1-4977-bc56-5dd7d7335a18"
ACCOUNT = f"amplify-team-{TEAM}"
UNITS = {"transactions": PlanUnit("transactions", "API Transactions")}
PERIOD_START = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
ACTIVATED = datetime(2026, 10, 3, 9, 30, tzinfo=UTC)
WATERMARK = datetime(2026, 11, 20, tzinfo=UTC)
OPTIONS = SubscriptionOptions(custom_field="amplify_subscription_id")


# ---- builders ---------------------------------------------------------------------------------------


def make_plan(*, plan_id: str = PLAN_ID, name: str = "gold", state: str = "active", price: Any = 49.5) -> ProductPlan:
    product = parse_product({"name": "weather", "title": "Weather API", "metadata": {"id": "f" * 32}})
    assert isinstance(product, Product)
    quota = parse_quota(
        {
            "name": "calls",
            "title": "Calls",
            "metadata": {"id": QUOTA_ID, "scope": {"kind": "ProductPlan", "name": name}},
            "attributes": {"recurlyAddOnCode": ADD_ON},
            "spec": {"unit": "transactions", "pricing": {"type": "perUnit", "cost": 0.0025}},
        }
    )
    assert isinstance(quota, Quota)
    plan = parse_plan(
        {
            "name": name,
            "title": name.title(),
            "metadata": {"id": plan_id},
            "attributes": {"recurlyPlanCode": f"amplify-{plan_id}"},
            "state": state,
            "spec": {
                "product": "weather",
                "type": "paid",
                "billing": {"currency": "USD", "price": price, "interval": "monthly"},
                "subscription": {"renewal": "automatic"},
            },
        },
        product,
        (quota,),
    )
    assert isinstance(plan, ProductPlan), plan
    return plan


def recurly_plan(plan: ProductPlan, **changes: Any) -> RecurlyPlan:
    want = desired_plan(plan, UNITS, MappingOptions())
    assert isinstance(want, RecurlyPlan), want
    return dataclasses.replace(want, **changes)


def catalog(*plans: RecurlyPlan, live: int = 1) -> RecurlyCatalog:
    return RecurlyCatalog(
        plans={p.code: p for p in plans},
        measured_units={"transactions": MeasuredUnit("transactions", "API Transactions")},
        live_subscriptions_by_plan={p.code: live for p in plans},
    )


def amplify_sub(
    *,
    sid: str = SUB_ID,
    name: str = "sub-1",
    approval: str = "approved",
    state: str | None = "active",
    team: str = TEAM,
) -> AmplifySubscription:
    return AmplifySubscription(
        id=sid,
        name=name,
        product_name="weather",
        plan_name="gold",
        approval_state=approval,
        state_name=state,
        owner_team=team,
        owner_user=None,
        owner_org="100",
        attributes={"recurlyAccountCode": f"amplify-team-{team}", "recurlySubscriptionUuid": UUID}
        if sid == SUB_ID
        else {},
        raw={"name": name},
    )


def recurly_sub(
    *, uuid: str = UUID, account: str = ACCOUNT, fields: dict[str, str] | None = None
) -> RecurlySubscription:
    return RecurlySubscription(
        uuid=uuid,
        account_code=account,
        plan_code=CODE,
        state="active",
        custom_fields=fields if fields is not None else {"amplify_subscription_id": SUB_ID},
        activated_at=ACTIVATED,
        add_on_codes=(ADD_ON,),
    )


LINKED = {"gold": LinkedPlan("gold", CODE, "USD", (ADD_ON,), {QUOTA_ID: ADD_ON})}


def sub_inputs(
    amplify: tuple[AmplifySubscription, ...] = (),
    recurly: tuple[RecurlySubscription, ...] = (),
    *,
    accounts: set[str] | None = None,
    links: dict[str, str] | None = None,
) -> SubscriptionInputs:
    return SubscriptionInputs(
        amplify=amplify or (amplify_sub(),),
        plans=LINKED,
        recurly=recurly or (recurly_sub(),),
        accounts=accounts if accounts is not None else {ACCOUNT},
        journal_links=links if links is not None else {SUB_ID: UUID},
    )


def entry(window_start: datetime, amount: int, *, adjustment: int | None = None) -> UsageLedgerEntry:
    base = merchant_tag(SUB_ID, QUOTA_ID, window_start)
    return UsageLedgerEntry(
        merchant_tag=merchant_tag(SUB_ID, QUOTA_ID, window_start, adjustment),
        subscription_id=SUB_ID,
        quota_id=QUOTA_ID,
        window_start=window_start,
        window_end=window_start + DAY,
        recurly_subscription_id=UUID,
        add_on_code=ADD_ON,
        amount=Decimal(amount),
        usage_id=f"usage-{window_start:%d}-{adjustment or 0}",
        billed=False,
        kind="adjustment" if adjustment else "base",
        base_tag=base if adjustment else None,
        recorded_at=window_start + DAY,
        updated_at=window_start + DAY,
    )


def record(window_start: datetime, amount: int, tag: str | None = None) -> dict[str, Any]:
    return {
        "merchant_tag": merchant_tag(SUB_ID, QUOTA_ID, window_start) if tag is None else tag,
        "amount": amount,
        "usage_timestamp": window_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def target(end: datetime | None = WATERMARK) -> UsageTarget:
    [found], gaps = usage_targets(sub_inputs(), {SUB_ID: UUID}, {UUID: PERIOD_START}, {(SUB_ID, QUOTA_ID): end}, DAY)
    assert gaps == []
    return found


# 17 daily windows from Nov 3 (the window holding the period start) to the watermark
WINDOWS = [datetime(2026, 11, 3, tzinfo=UTC) + i * DAY for i in range(17)]


def in_step_usage(**changes: Any) -> UsageFacts:
    facts = UsageFacts(target(), 170, tuple(entry(w, 10) for w in WINDOWS))
    return dataclasses.replace(facts, **changes)


def inputs(**changes: Any) -> StatusInputs:
    plan = make_plan()
    base = StatusInputs(
        catalog=CatalogSnapshot(plans=(plan,), units=UNITS),
        recurly_catalog=catalog(recurly_plan(plan)),
        plan_options=PlanSyncOptions(),
        subscriptions=sub_inputs(),
        subscription_options=OPTIONS,
        usage=(in_step_usage(),),
        runs={},
        journal_path="/var/lib/amplify-billing/amplify-billing.db",
        opted_in_products=1,
    )
    return dataclasses.replace(base, **changes)


def drift_rows(report: StatusReport) -> list[dict[str, Any]]:
    return report.section("drift").records()


# ---- in step ----------------------------------------------------------------------------------------


def test_everything_in_step() -> None:
    report = build_status(inputs(), NOW)
    assert report.in_step
    assert drift_rows(report) == []
    assert report.exit_code(True) == 0
    assert report.summary["subscriptions_linked"] == 1
    assert report.summary["plans_in_recurly"] == 1
    [plan_row] = report.section("plans").records()
    assert plan_row == {
        "amplify_plan": "weather/gold",
        "amplify_state": "active",
        "recurly_plan": CODE,
        "recurly_state": "active",
        "add_ons": 1,
        "live_subscriptions": 1,
        "status": "in step",
    }
    [sub_row] = report.section("subscriptions").records()
    assert (sub_row["recurly_subscription"], sub_row["account"], sub_row["status"]) == (UUID, ACCOUNT, "in step")
    [usage] = report.section("usage").records()
    assert usage["compared_from"] == "2026-11-03T00:00:00Z"
    assert usage["period_start"] == "2026-11-03T09:30:00Z"
    assert usage["compared_through"] == "2026-11-20T00:00:00Z"
    assert (usage["amplify_units"], usage["journal_units"], usage["recurly_units"]) == (170, 170, None)
    assert usage["status"] == "in step"


# ---- plan drift --------------------------------------------------------------------------------------


def test_recurly_price_edited_by_hand_is_drift_that_sync_plans_fixes() -> None:
    plan = make_plan()
    edited = recurly_plan(plan, unit_amount=Decimal("60"))
    report = build_status(inputs(recurly_catalog=catalog(edited)), NOW)
    assert not report.in_step
    assert report.exit_code(True) == 4
    assert report.exit_code(False) == 0
    [row] = drift_rows(report)
    assert row["area"] == "plans"
    assert row["kind"] == "update"
    assert row["recurly"] == f"plan {CODE}"
    assert row["detail"] == "update price 60 → 49.5"
    assert row["next"] == "sync-plans"
    assert report.section("plans").records()[0]["status"] == "update"


def test_plan_missing_in_recurly_is_a_pending_create() -> None:
    report = build_status(
        inputs(recurly_catalog=catalog(), subscriptions=sub_inputs(recurly=(), links={}), usage=()), NOW
    )
    kinds = {(r["area"], r["kind"]) for r in drift_rows(report)}
    assert ("plans", "create") in kinds
    plan_row = report.section("plans").records()[0]
    assert (plan_row["recurly_state"], plan_row["status"]) == ("missing", "create")


def test_recurly_plan_missing_in_amplify_is_deactivated_or_waits() -> None:
    plan = make_plan()
    gone = recurly_plan(make_plan(plan_id="9" * 32, name="old"))
    report = build_status(inputs(recurly_catalog=catalog(recurly_plan(plan), gone, live=0)), NOW)
    [row] = drift_rows(report)
    assert (row["kind"], row["amplify"], row["next"]) == ("deactivate", f"(deleted plan) {gone.code}", "sync-plans")
    assert report.section("plans").records()[1]["amplify_plan"] == "(not in Amplify)"

    waiting = build_status(inputs(recurly_catalog=catalog(recurly_plan(plan), gone, live=2)), NOW)
    [row] = drift_rows(waiting)
    assert (row["kind"], row["next"]) == ("waiting", "waits")
    assert "waiting for 2 live Recurly subscription(s)" in row["detail"]


def test_unsupported_plan_is_drift_for_a_human() -> None:
    plan = make_plan()
    odd = dataclasses.replace(make_plan(plan_id="7" * 32, name="odd"), interval="weekly")
    report = build_status(
        inputs(catalog=CatalogSnapshot(plans=(plan, odd), units=UNITS), recurly_catalog=catalog(recurly_plan(plan))),
        NOW,
    )
    [row] = drift_rows(report)
    assert (row["area"], row["kind"], row["next"]) == ("plans", "unsupported", "by hand")


# ---- subscription drift -------------------------------------------------------------------------------


def test_orphan_recurly_subscription() -> None:
    stranger = recurly_sub(uuid="o" * 32, account="amplify-team-nobody", fields={})
    report = build_status(inputs(subscriptions=sub_inputs(recurly=(recurly_sub(), stranger))), NOW)
    [row] = drift_rows(report)
    assert (row["area"], row["kind"], row["next"]) == ("subscriptions", "orphan", "by hand")
    assert row["recurly"] == f"subscription {'o' * 32} (amplify-team-nobody on {CODE}, active)"
    assert row["detail"].startswith("no Amplify subscription matches it")
    assert report.summary["orphans"] == 1


def test_orphan_whose_custom_field_names_a_deleted_amplify_subscription() -> None:
    stranger = recurly_sub(uuid="o" * 32, account="amplify-team-gone", fields={"amplify_subscription_id": "d" * 32})
    report = build_status(inputs(subscriptions=sub_inputs(recurly=(recurly_sub(), stranger))), NOW)
    [row] = drift_rows(report)
    assert row["detail"].startswith(
        f"its custom field amplify_subscription_id names Amplify subscription {'d' * 32}, which Amplify does not list"
    )


def test_recurly_subscription_claimed_by_account_and_plan_is_no_orphan() -> None:
    # no journal link and no custom field, but the account and plan of a listed Amplify subscription
    report = build_status(inputs(subscriptions=sub_inputs(recurly=(recurly_sub(fields={}),), links={})), NOW)
    assert [r["kind"] for r in drift_rows(report)] == []


def test_pending_amplify_subscription_and_why() -> None:
    pending = amplify_sub(sid="b" * 32, name="sub-2", approval="pending", state=None, team="other-team")
    report = build_status(inputs(subscriptions=sub_inputs(amplify=(amplify_sub(), pending), accounts={ACCOUNT})), NOW)
    [row] = [r for r in drift_rows(report) if r["kind"] == "waiting"]
    assert row["amplify"] == f"subscription sub-2 ({'b' * 32})"
    assert row["detail"] == "its Recurly account is missing (see link-accounts); stays pending in Amplify"
    assert row["next"] == "waits"
    sub_row = next(r for r in report.section("subscriptions").records() if r["amplify_subscription"] == "sub-2")
    assert sub_row["status"].startswith("waiting: its Recurly account is missing")
    assert sub_row["recurly_subscription"] is None
    assert report.summary["subscriptions_not_linked"] == 1


def test_verify_reports_a_journal_link_that_recurly_contradicts() -> None:
    report = build_status(inputs(verify=True, recurly_matches={SUB_ID: "x" * 32}), NOW)
    [row] = [r for r in drift_rows(report) if r["area"] == "journal"]
    assert row["kind"] == "link"
    assert f"links it to Recurly subscription {UUID}, but Recurly's data points at {'x' * 32}" in row["detail"]


# ---- usage --------------------------------------------------------------------------------------------


def test_usage_targets_align_the_period_and_report_missing_add_ons() -> None:
    found = target()
    assert (found.start, found.end, found.period_start) == (WINDOWS[0], WATERMARK, PERIOD_START)
    # a watermark at or before the period start: nothing reported in this period
    assert target(end=WINDOWS[0]).end is None
    bare = dataclasses.replace(recurly_sub(), add_on_codes=())
    targets, gaps = usage_targets(sub_inputs(recurly=(bare,)), {SUB_ID: UUID}, {}, {}, DAY)
    assert targets == []
    [gap] = gaps
    assert gap.detail.startswith(f"usage add-on {ADD_ON} is not on the Recurly subscription")
    # no period start from Recurly: the activation starts the range
    [fallback], _ = usage_targets(sub_inputs(), {SUB_ID: UUID}, {}, {}, DAY)
    assert fallback.start == datetime(2026, 10, 3, tzinfo=UTC)


def test_late_traffic_counted_by_amplify_but_not_reported() -> None:
    report = build_status(inputs(usage=(in_step_usage(amplify_count=182),)), NOW)
    [row] = drift_rows(report)
    assert (row["area"], row["kind"], row["next"]) == ("usage", "usage", "report-usage")
    assert row["detail"].startswith("Amplify counted +12 unit(s) more than were reported; report-usage restates")
    assert "report-usage --from 2026-11-03" in row["detail"]
    [usage] = report.section("usage").records()
    assert (usage["amplify_units"], usage["journal_units"], usage["status"]) == (182, 170, "differs")


def test_adjustments_count_and_more_reported_than_counted_is_flagged() -> None:
    entries = (*in_step_usage().journal_entries, entry(WINDOWS[2], 5, adjustment=1))
    report = build_status(inputs(usage=(in_step_usage(journal_entries=entries),)), NOW)
    [row] = drift_rows(report)
    assert row["detail"].startswith("5 unit(s) more were reported than Amplify counts now")
    # ledger entries outside the compared range do not count
    outside = (*in_step_usage().journal_entries, entry(WATERMARK, 7), entry(WINDOWS[0] - DAY, 9))
    assert build_status(inputs(usage=(in_step_usage(journal_entries=outside),)), NOW).in_step


def test_verify_compares_recurly_records_with_the_journal() -> None:
    records = tuple(record(w, 10) for w in WINDOWS[1:])  # the first window's record is missing in Recurly
    report = build_status(inputs(verify=True, usage=(in_step_usage(recurly_records=records),)), NOW)
    [row] = drift_rows(report)
    assert row["detail"].startswith(
        "Recurly holds 160 unit(s), the journal 170 (1 journal record(s) missing in Recurly, "
        "0 Recurly record(s) unknown to the journal)"
    )
    full = tuple(record(w, 10) for w in WINDOWS)
    ok = build_status(inputs(verify=True, usage=(in_step_usage(recurly_records=full),)), NOW)
    assert ok.in_step
    [usage] = ok.section("usage").records()
    assert (usage["recurly_units"], usage["note"]) == (170, "verified")


def test_verify_flags_usage_records_without_our_merchant_tag() -> None:
    records = (*(record(w, 10) for w in WINDOWS), record(WINDOWS[4], 3, tag="hand-made"))
    report = build_status(inputs(verify=True, usage=(in_step_usage(recurly_records=records),)), NOW)
    [row] = drift_rows(report)
    assert row["detail"].startswith(
        "1 usage record(s) (3 unit(s)) on this add-on carry no amplify-billing merchant_tag"
    )


def test_nothing_reported_yet_is_in_step_unless_recurly_holds_usage() -> None:
    fresh = UsageFacts(target(end=None), None, ())
    report = build_status(inputs(usage=(fresh,)), NOW)
    assert report.in_step
    [usage] = report.section("usage").records()
    assert (usage["amplify_units"], usage["note"]) == (None, "nothing reported in this period yet")

    held = dataclasses.replace(fresh, recurly_records=(record(WINDOWS[0], 4),))
    [row] = drift_rows(build_status(inputs(verify=True, usage=(held,)), NOW))
    assert row["detail"].startswith("the journal records nothing reported in this period, but Recurly holds 4 unit(s)")


# ---- journal: intents and runs --------------------------------------------------------------------------


def intent(**changes: Any) -> IntentFacts:
    key = merchant_tag(SUB_ID, QUOTA_ID, WINDOWS[5])
    return IntentFacts(Intent(key, "usage", {"merchant_tag": key}, NOW - DAY, 7), **changes)


def test_open_intents_are_pending_items() -> None:
    report = build_status(inputs(intents=(intent(),)), NOW)
    assert not report.in_step
    assert report.exit_code(True) == 4
    assert drift_rows(report) == []
    [row] = report.section("open_intents").records()
    assert row == {
        "key": intent().intent.key,
        "kind": "usage",
        "created_at": "2026-11-19T12:00:00Z",
        "run_id": 7,
        "recurly": "not looked up (use --verify)",
    }
    texts = [
        build_status(inputs(intents=(intent(in_recurly=v),)), NOW).section("open_intents").records()[0]["recurly"]
        for v in (True, False)
    ]
    assert texts == [
        "landed: the next report-usage confirms it",
        "not in Recurly: the next report-usage sends it again",
    ]


def test_last_runs_with_outcomes() -> None:
    done = RunRecord(
        3,
        "sync-plans",
        False,
        NOW - DAY,
        NOW - DAY + timedelta(seconds=5),
        0,
        {"create_applied": 2, "update_applied": 1, "link_failed": 1},
        42,
    )
    killed = RunRecord(4, "report-usage", False, NOW - DAY, None, None, {}, 43)
    partial = RunRecord(5, "sync-subscriptions", False, NOW, NOW, 1, {"cancel_failed": 1}, 44)
    report = build_status(inputs(runs={"sync-plans": done, "report-usage": killed, "sync-subscriptions": partial}), NOW)
    rows = {r["command"]: r for r in report.section("runs").records()}
    assert list(rows) == ["sync-plans", "link-accounts", "sync-subscriptions", "report-usage"]
    assert (rows["sync-plans"]["outcome"], rows["sync-plans"]["changes"]) == ("ok", "applied 3, failed 1")
    assert rows["link-accounts"]["outcome"] == "never run"
    assert rows["report-usage"]["outcome"] == "unfinished (running now, or killed)"
    assert rows["sync-subscriptions"]["outcome"] == "some changes failed"


def test_empty_journal_reads_as_nothing_recorded() -> None:
    journal = EmptyJournal()
    assert journal.links("subscription") == {}
    assert journal.open_intents() == [] and journal.last_run("run") is None
    report = build_status(inputs(journal_present=False), NOW)
    console, out = _console()
    render_status(console, report, "table")
    assert (
        "Open journal intents: none (no journal at /var/lib/amplify-billing/amplify-billing.db yet)" in out.getvalue()
    )


# ---- rendering -------------------------------------------------------------------------------------------


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=300, color_system=None), out


def test_json_is_one_document_with_every_section() -> None:
    console, out = _console()
    render_status(console, build_status(inputs(usage=(in_step_usage(amplify_count=171),)), NOW), "json")
    envelope = ReportEnvelope.model_validate_json(out.getvalue())
    assert (envelope.command, envelope.exit_code, envelope.dry_run) == ("status", 0, False)
    assert [(f.kind, f.amplify_id) for f in envelope.findings] == [("usage", SUB_ID)]
    assert envelope.status is not None
    document = envelope.status
    assert document["command"] == "status"
    assert document["in_step"] is False
    assert document["generated_at"] == "2026-11-20T12:00:00Z"
    assert set(document) >= {"plans", "subscriptions", "drift", "open_intents", "runs", "usage", "summary"}
    assert document["summary"]["usage_differences"] == 1
    assert document["usage"][0]["amplify_id"] == SUB_ID  # kept in JSON although left out of the table


def test_markdown_has_a_table_header_per_section() -> None:
    console, out = _console()
    render_status(
        console, build_status(inputs(recurly_catalog=catalog(recurly_plan(make_plan(), name="Hand"))), NOW), "markdown"
    )
    text = out.getvalue()
    assert text.startswith(f"## 2026-11-20T12:00:00Z amplify-billing {__version__} status (read-only)\n")
    assert text.rstrip().endswith(
        "**NOT in step: 1 drift item(s), 0 acknowledged, 0 open intent(s); "
        "journal trusted (use --verify to read Recurly); exit 0**"
    )
    assert "### Drift" in text
    assert "| area | kind | Amplify | Recurly | detail | next |" in text
    assert "### Open journal intents\n\n_none_" in text


def test_table_says_in_step_and_leaves_wide_ids_out() -> None:
    console, out = _console()
    render_status(console, build_status(inputs(), NOW), "table")
    text = out.getvalue()
    assert text.startswith(f"2026-11-20T12:00:00Z amplify-billing {__version__} status (read-only)\n")
    assert text.splitlines()[-1] == (
        "Everything is in step: 0 drift item(s), 0 acknowledged, 0 open intent(s); "
        "journal trusted (use --verify to read Recurly); exit 0"
    )
    assert "Drift: none: both systems are in step" in text
    usage_part = text[text.index("Usage this billing period") :]
    assert "add-on" not in usage_part.splitlines()[1]


# ---- CLI and end to end on the sandbox -----------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from amplify_billing.cli import run_cli

    capsys.readouterr()  # drop diagnostics logged before this call (e.g. by in-process runs)
    code = run_cli(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_status_with_a_bad_configuration_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("amplify: {}\nsurprise: 1\n")
    code, out, err = _cli(capsys, "--config", str(config), "status")
    assert code == 2
    assert out == ""
    assert err.startswith("Error: ")


def test_status_when_recurly_refuses_the_key_exits_3(make_cycle: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cycle = make_cycle(subscriptions=2, days=1)
    config = cycle.sandbox.write_config(cycle.sandbox.state_dir / "bad.yaml", recurly={"api_key": "wrong-key"})
    code, _out, err = _cli(capsys, "--config", str(config), "status")
    assert code == 3
    assert "Recurly refused the API key" in err
    assert not (cycle.sandbox.state_dir / "amplify-billing.db").exists(), "status never creates the journal"


def test_end_to_end_in_step_then_a_price_edited_in_recurly(make_cycle: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from amplify_billing.recurly.gateway import RecurlyGateway

    cycle = make_cycle(subscriptions=6, days=2)
    # the scenario's deliberately unsupported plan would be drift forever; without it a run leaves nothing to do
    for name in cycle.scenario.unsupported_plans:
        cycle.sandbox.amplify.delete_resource("ProductPlan", name)
    assert all(r.exit_code == 0 for r in cycle.run())
    cycle.clock.set(cycle.scenario.now)
    assert all(r.exit_code == 0 for r in cycle.run())
    config = cycle.sandbox.write_config(cycle.sandbox.state_dir / "config.yaml", **cycle.overrides)
    requests_before = len(cycle.sandbox.recurly.requests)

    code, out, err = _cli(capsys, "--config", str(config), "status", "--exit-code", "--output", "json")
    assert (code, err) == (0, "")
    document = json.loads(out)["status"]
    assert document["in_step"] is True, document["drift"]
    assert document["summary"]["subscriptions_linked"] == len(cycle.sandbox.recurly.subscriptions(state="active"))
    usage = document["usage"]
    assert usage and all(u["status"] == "in step" for u in usage)
    assert sum(u["journal_units"] for u in usage) > 0
    # without --verify, no usage is read from Recurly: the steady state stays cheap
    paths = [r.path for r in cycle.sandbox.recurly.requests[requests_before:]]
    assert not [p for p in paths if "/usage" in p]
    assert {r["command"]: r["outcome"] for r in document["runs"]}["report-usage"] == "ok"

    code, out, _ = _cli(capsys, "--config", str(config), "--output", "json", "status", "--verify", "--exit-code")
    assert code == 0
    verified = json.loads(out)["status"]
    assert verified["verified"] is True
    assert [u["recurly_units"] for u in verified["usage"]] == [u["journal_units"] for u in verified["usage"]]

    # a price edited by hand in Recurly, through the real client
    plan_code = next(r["recurly_plan"] for r in document["plans"] if r["live_subscriptions"])
    gateway = RecurlyGateway(cycle.sandbox.settings().recurly)
    try:
        plan = gateway.get_plan(f"code-{plan_code}")
        currency = plan["currencies"][0]["currency"]
        gateway.update_plan(f"code-{plan_code}", {"currencies": [{"currency": currency, "unit_amount": 1234.5}]})
    finally:
        gateway.close()
    code, out, _ = _cli(capsys, "--config", str(config), "status", "--exit-code", "-o", "markdown")
    assert code == 4
    assert "**NOT in step: 1 drift item(s), 0 acknowledged, 0 open intent(s);" in out
    assert "| area | kind | Amplify | Recurly | detail | next |" in out
    [line] = [line for line in out.splitlines() if line.startswith("| plans | update |")]
    assert f"plan {plan_code}" in line and "price 1234.5 →" in line and line.endswith("| sync-plans |")
    code, _, _ = _cli(capsys, "--config", str(config), "status")
    assert code == 0, "without --exit-code drift is reported, not an error"


# ---- filters, the journal's view, one system down --------------------------------------------------------


def _status_json(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = _cli(capsys, "--config", str(config), "-o", "json", "status", *args)
    assert out, err
    envelope = ReportEnvelope.model_validate_json(out)
    assert envelope.status is not None
    return code, envelope.status


def test_filters_narrow_every_section_to_what_they_name(
    small_sandbox: tuple[Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = small_sandbox
    assert _cli(capsys, "--config", str(config), "run")[0] == 0
    _, whole = _status_json(capsys, config)
    linked = [s for s in whole["subscriptions"] if s["recurly_subscription"]]
    one = linked[0]

    code, only = _status_json(capsys, config, "--subscription", one["amplify_id"])
    assert code == 0 and only["scope"] == f"--subscription {one['amplify_id']}"
    assert [s["amplify_id"] for s in only["subscriptions"]] == [one["amplify_id"]]
    assert {u["amplify_id"] for u in only["usage"]} <= {one["amplify_id"]}
    assert len(only["plans"]) == 1

    code, by_account = _status_json(capsys, config, "--account", one["account"])
    # the owner's subscriptions: the linked ones show the account; an ended one, with no Recurly side, is the owner's too
    assert {s["account"] for s in by_account["subscriptions"]} - {None} == {one["account"]}
    linked_here = [s for s in by_account["subscriptions"] if s["account"]]
    assert len(linked_here) == sum(1 for s in whole["subscriptions"] if s["account"] == one["account"])

    plan_code = only["plans"][0]["recurly_plan"]
    code, by_plan = _status_json(capsys, config, "--plan", plan_code)
    assert [p["recurly_plan"] for p in by_plan["plans"]] == [plan_code]
    assert one["amplify_id"] in {s["amplify_id"] for s in by_plan["subscriptions"]}
    # a plan's Amplify id names it too (its Recurly code is derived from it)
    code, by_id = _status_json(capsys, config, "--plan", plan_code.removeprefix("amplify-"))
    assert by_id["plans"] == by_plan["plans"]

    code, out, err = _cli(capsys, "--config", str(config), "status", "--subscription", "nosuch")
    assert (code, out) == (2, "")
    assert err.startswith("Error: status --subscription nosuch: nothing matches; give an Amplify subscription id")


def test_offline_shows_the_journal_view_and_contacts_nothing(
    small_sandbox: tuple[Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, config = small_sandbox
    assert _cli(capsys, "--config", str(config), "run")[0] == 0
    before = (len(sandbox.amplify.requests), len(sandbox.recurly.requests))
    code, out, err = _cli(capsys, "--config", str(config), "status", "--offline", "--exit-code")
    assert (code, err) == (0, "")
    assert (len(sandbox.amplify.requests), len(sandbox.recurly.requests)) == before
    lines = out.splitlines()
    assert re.fullmatch(rf"\S+Z amplify-billing {re.escape(__version__)} status --offline \(read-only\)", lines[0])
    assert "Last runs" in lines and "Subscription links (journal)" in lines and "Open journal intents: none" in lines
    links = len(sandbox.recurly.subscriptions())
    assert lines[-1] == (
        f"The journal's view only (--offline: Amplify and Recurly not read): {links} link(s), 0 open intent(s); exit 0"
    )


def test_with_recurly_down_status_shows_what_it_can_and_says_what_it_could_not_read(
    small_sandbox: tuple[Any, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    sandbox, config = small_sandbox
    assert _cli(capsys, "--config", str(config), "run")[0] == 0
    with socket.socket() as probe:  # a port nothing listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    down = sandbox.write_config(
        tmp_path / "down.yaml", recurly={"api_url": f"http://127.0.0.1:{closed}", "max_retries": 0}
    )
    code, out, err = _cli(capsys, "--config", str(down), "status")
    assert code == 3
    lines = out.splitlines()
    assert "Last runs" in lines and "Subscription links (journal)" in lines and "Amplify plans (opted in)" in lines
    assert lines[-1].startswith("INCOMPLETE: could not read Recurly: ")
    assert lines[-1].endswith("; shown: the journal's view, Amplify plans (opted in): 0 open intent(s); exit 3")
    assert err.startswith("Error: could not read Recurly: ")
    code, document = _status_json(capsys, down)
    assert code == 3 and document["in_step"] is False and document["unavailable"][0].startswith("Recurly: ")
