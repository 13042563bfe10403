"""What the operator sees: report tables and JSON on stdout, diagnostics and redaction on stderr."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from rich.console import Console

from amplify_billing import __version__
from amplify_billing.actions import DeactivatePlan, SetAttributes
from amplify_billing.changes import Change, ChangeKind, ChangeResult, CommandReport, Outcome
from amplify_billing.render import (
    NO_WRAP_WIDTH,
    THIRD_PARTY_LOGGERS,
    Column,
    DiagnosticsHandler,
    configure_logging,
    make_console,
    opening_line,
    redact,
    register_secret,
    render_report,
    render_reports,
    render_rows,
)

PLAN_ID = "8ac9d1f2e3b4a5968778695a4b3c2d1e"
QUOTA_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def console(width: int = 120) -> Console:
    return Console(file=io.StringIO(), width=width)


def output_of(rich_console: Console) -> str:
    stream = rich_console.file
    assert isinstance(stream, io.StringIO)
    return stream.getvalue()


def change(kind: ChangeKind, obj: str, amplify: str, recurly: str, summary: str, **kw: object) -> Change:
    return Change(kind, obj, amplify, recurly, summary, action=kw.pop("action", DeactivatePlan("x")), **kw)  # type: ignore[arg-type]


def plans_report(*, dry_run: bool = False) -> CommandReport:
    def outcome(o: Outcome) -> Outcome:
        return Outcome.PLANNED if dry_run and o is not Outcome.REPORTED else o

    results = (
        ChangeResult(
            change(ChangeKind.UPDATE, "plan", f"weather/gold ({PLAN_ID})", f"plan amplify-{PLAN_ID}", "price 10 → 12"),
            outcome(Outcome.APPLIED),
            result_id="r-1",
        ),
        ChangeResult(
            change(
                ChangeKind.FINDING,
                "quota",
                f"weather/gold ({PLAN_ID}) quota",
                "-",
                "pricing [bold]tiered[/] unsupported",
            ),
            Outcome.REPORTED,
        ),
        ChangeResult(
            change(
                ChangeKind.CREATE,
                "add_on",
                f"weather/gold ({PLAN_ID}) quota",
                f"add-on amplify-{PLAN_ID}/amplify-{QUOTA_ID}",
                "create tiered usage add-on",
                # a raw Amplify resource rides along: never shown
                action=SetAttributes(resource={"spec": {"secret": "PAYLOAD-MUST-NOT-SHOW"}}, attributes={}),
            ),
            outcome(Outcome.FAILED),
            error=None if dry_run else "Recurly rejected create_plan_add_on: tiers must ascend",
        ),
        ChangeResult(
            change(
                ChangeKind.CREATE, "plan", f"weather/silver ({QUOTA_ID})", f"plan amplify-{QUOTA_ID}", "create plan"
            ),
            outcome(Outcome.APPLIED),
            result_id="r-2",
        ),
    )
    return CommandReport(
        "sync-plans",
        dry_run,
        results,
        figures={"plans_seen": 2, "recurly_plans": 7},
        exit_code=0 if dry_run else 1,
        note=None if dry_run else "stopped at --max-duration; 3 change(s) left for the next run",
    )


def table_rows(text: str) -> list[list[str]]:
    """The table's rows as cells; a folded cell's lines are joined without spaces."""
    rows: list[list[list[str]]] = []
    header_seen = False
    for line in text.splitlines():
        if "│" not in line:
            continue
        cells = [c.strip() for c in line.split("│")]
        if not header_seen:
            header_seen = True  # the header line
            continue
        if cells[0]:
            rows.append([[c] for c in cells])
        else:
            for fragments, cell in zip(rows[-1], cells, strict=True):
                fragments.append(cell)
    return [["".join(fragment.replace(" ", "") for fragment in cell) for cell in row] for row in rows]


# ---- tables ------------------------------------------------------------------------------------


OPENING = f"amplify-billing {__version__} sync-plans"
TOTAL = (
    "Applied: 1 created, 1 updated, 0 ended, 0 usage records posted; 1 failed; 1 finding (0 acknowledged); "
    "exit 1 (some changes failed or were not attempted)"
)


def test_table_opening_line_rows_by_kind_figures_note_and_closing_total() -> None:
    out = console(width=220)
    render_report(out, plans_report(), output="table")
    text = output_of(out)
    lines = text.splitlines()

    assert lines[0] == OPENING
    assert lines[1] == "sync-plans: 2 applied, 1 failed, 1 reported"
    assert lines[2].split() == ["╷", "╷", "╷", "╷", "╷"]
    assert [c.strip() for c in lines[3].split("│")] == ["Kind", "Object", "Amplify", "Recurly", "What", "Outcome"]
    assert lines[-3] == "figures: plans_seen=2 recurly_plans=7"
    assert lines[-2] == "note: stopped at --max-duration; 3 change(s) left for the next run"
    assert lines[-1] == TOTAL
    # grouped in the fixed kind order; inside a kind, the change set's order
    rows = table_rows(text)
    assert [(r[0], r[1], r[5]) for r in rows] == [
        ("create", "add_on", "failed"),
        ("create", "plan", "applied"),
        ("update", "plan", "applied"),
        ("finding", "quota", "reported"),
    ]
    # ids are whole on one line: never folded, never cut with an ellipsis
    assert "…" not in text
    for whole in (f"({PLAN_ID})", f"amplify-{PLAN_ID}/amplify-{QUOTA_ID}"):
        assert any(whole in line for line in lines), whole
    # the error of a failed change is shown under its summary
    assert rows[0][4] == "createtieredusageadd-onerror:Recurlyrejectedcreate_plan_add_on:tiersmustascend"
    # markup in data is printed as it is, and payloads never
    assert rows[3][4] == "pricing[bold]tiered[/]unsupported"
    assert "│ pricing [bold]tiered[/]" in text
    assert "PAYLOAD-MUST-NOT-SHOW" not in text


def test_a_narrow_table_wraps_between_words_and_never_inside_an_id() -> None:
    out = console(width=170)
    render_report(out, plans_report(), output="table")
    lines = output_of(out).splitlines()
    assert max(len(line.rstrip()) for line in lines[:-1]) <= 170
    for whole in (PLAN_ID, QUOTA_ID, f"amplify-{PLAN_ID}/amplify-{QUOTA_ID}", "create_plan_add_on:"):
        assert any(whole in line for line in lines), whole
    # every id token of the table sits whole on a line
    assert not [line for line in lines if re.search(r"[0-9a-f]{6,31}\s*│\s*$", line)]


def test_a_terminal_too_narrow_for_the_ids_gets_key_value_lines() -> None:
    out = console(width=80)
    render_report(out, plans_report(), output="table")
    lines = output_of(out).splitlines()

    assert lines[:10] == [
        OPENING,
        "sync-plans: 2 applied, 1 failed, 1 reported",
        "Kind: create",
        "  Object:  add_on",
        f"  Amplify: weather/gold ({PLAN_ID}) quota",
        f"  Recurly: add-on amplify-{PLAN_ID}/amplify-{QUOTA_ID}",
        "  What:    create tiered usage add-on",
        "           error: Recurly rejected create_plan_add_on: tiers must ascend",
        "  Outcome: failed",
        "",
    ]
    assert "│" not in "".join(lines)
    assert lines[-1] == TOTAL


def test_dry_run_opening_line_and_plan_total_and_empty_report() -> None:
    out = console()
    render_report(out, plans_report(dry_run=True), output="table")
    render_report(out, CommandReport("link-accounts", False, ()), output="table")
    lines = output_of(out).splitlines()

    assert lines[0] == f"amplify-billing {__version__} sync-plans --dry-run (nothing written)"
    assert lines[1] == "(dry run) sync-plans: 3 planned, 1 reported"
    assert (
        "Plan: 2 to create, 1 to update, 0 to end, 0 usage records to post; 1 finding (0 acknowledged); exit 0" in lines
    )
    assert lines[-3:] == [
        f"amplify-billing {__version__} link-accounts",
        "link-accounts: no changes",
        "Applied: 0 created, 0 updated, 0 ended, 0 usage records posted; 0 findings (0 acknowledged); exit 0",
    ]
    assert "note:" not in output_of(out)


def test_opening_line_names_time_run_ids_and_version() -> None:
    at = datetime(2026, 12, 5, 19, 5, 45, 123456, tzinfo=UTC)
    steps = [
        CommandReport(name, False, (), run_id=run_id, started_at=at, finished_at=at)
        for run_id, name in enumerate(("sync-plans", "link-accounts", "sync-subscriptions", "report-usage"), start=5)
    ]
    assert opening_line("run", steps) == f"2026-12-05T19:05:45Z amplify-billing {__version__} run (run ids 5-8)"
    assert opening_line("sync-plans", steps[:1]) == (
        f"2026-12-05T19:05:45Z amplify-billing {__version__} sync-plans (run id 5)"
    )


def test_large_kinds_show_the_first_rows_failures_first_and_count_the_rest() -> None:
    posts = [
        ChangeResult(
            change(ChangeKind.POST, "usage", f"sub s{i} quota q", f"subscription u{i}", "5 unit(s) for 2026-11-01"),
            Outcome.APPLIED,
        )
        for i in range(9_998)
    ]
    failed = [
        ChangeResult(
            change(ChangeKind.POST, "usage", f"sub late{i} quota q", f"subscription x{i}", "5 unit(s)"),
            Outcome.FAILED,
            error="Recurly is unreachable",
        )
        for i in range(2)
    ]
    restate = ChangeResult(
        change(ChangeKind.RESTATE, "usage", "sub s1 quota q", "subscription u1", "5 → 7 unit(s)"), Outcome.APPLIED
    )
    report = CommandReport("report-usage", False, (*posts, *failed, restate), exit_code=1)

    out = console()
    render_report(out, report, output="table")
    text = output_of(out)

    rows = table_rows(text)
    assert len(rows) == 51
    assert [r[2] for r in rows[:2]] == ["sublate0quotaq", "sublate1quotaq"]
    assert rows[2][2] == "subs0quotaq"
    assert rows[-1][0] == "restate"
    assert text.splitlines()[-2] == "… and 9,950 more post changes (use --output json for all)"
    assert text.splitlines()[1] == "report-usage: 9,999 applied, 2 failed"
    assert text.splitlines()[-1] == (
        "Applied: 0 created, 0 updated, 0 ended, 9,999 usage records posted; 2 failed; 0 findings (0 acknowledged); "
        "exit 1 (some changes failed or were not attempted)"
    )


# ---- JSON --------------------------------------------------------------------------------------


def test_json_report_is_the_versioned_envelope_in_a_stable_order_and_no_payload() -> None:
    report = plans_report()
    report = CommandReport(
        report.command,
        report.dry_run,
        report.results,
        {"plans_seen": 2, "window": "daily"},
        1,
        report.note,
        run_id=41,
        started_at=datetime(2026, 12, 5, 10, 0, tzinfo=UTC),
        finished_at=datetime(2026, 12, 5, 11, 0, 1, tzinfo=timezone(timedelta(hours=1))),
    )
    out = console()
    render_report(out, report, output="json")
    text = output_of(out)
    document = json.loads(text)

    assert list(document) == [
        "schema_version",
        "tool_version",
        "command",
        "run_id",
        "started_at",
        "finished_at",
        "dry_run",
        "exit_code",
        "note",
        "figures",
        "counts",
        "changes",
        "findings",
        "steps",
        "error",
    ]
    assert (document["schema_version"], document["tool_version"]) == (1, __version__)
    assert (document["command"], document["run_id"]) == ("sync-plans", 41)
    assert (document["started_at"], document["finished_at"]) == ("2026-12-05T10:00:00Z", "2026-12-05T10:00:01Z")
    assert document["dry_run"] is False
    assert document["exit_code"] == 1
    assert document["note"] == "stopped at --max-duration; 3 change(s) left for the next run"
    assert document["figures"] == {"plans_seen": 2, "window": "daily"}
    assert document["counts"] == {"planned": 0, "applied": 2, "failed": 1, "skipped": 0, "reported": 1}
    assert (document["steps"], document["error"]) == ([], None)
    assert document["changes"][1] == {
        "key": "",
        "finding_key": None,
        "acknowledged": None,
        "kind": "create",
        "object": "add_on",
        "outcome": "failed",
        "withholds": False,
        "amplify_id": None,
        "amplify_name": None,
        "recurly_code": None,
        "recurly_uuid": None,
        "units": None,
        "summary": "create tiered usage add-on",
        "error": "Recurly rejected create_plan_add_on: tiers must ascend",
        "result_id": None,
        "amplify": f"weather/gold ({PLAN_ID}) quota",
        "recurly": f"add-on amplify-{PLAN_ID}/amplify-{QUOTA_ID}",
    }
    assert [c["result_id"] for c in document["changes"]] == ["r-1", None, "r-2"]
    # report-only kinds are findings; printed as they are: no markup, no wrapping at the console width
    assert [(f["kind"], f["summary"]) for f in document["findings"]] == [
        ("finding", "pricing [bold]tiered[/] unsupported")
    ]
    assert f'"recurly": "add-on amplify-{PLAN_ID}/amplify-{QUOTA_ID}"' in text
    assert "PAYLOAD" not in text and "payload" not in text


def test_run_reports_each_step_then_one_total_with_the_worst_exit_code() -> None:
    usage = CommandReport("report-usage", False, (), figures={"units_reported": 0}, exit_code=4)
    out = console()
    render_reports(out, [plans_report(), usage], output="table")
    lines = output_of(out).splitlines()

    assert lines[0] == f"amplify-billing {__version__} run"
    assert "sync-plans: 2 applied, 1 failed, 1 reported" in lines and "report-usage: no changes" in lines
    assert "Summary" not in lines
    assert lines[-1] == (
        "Applied: 1 created, 1 updated, 0 ended, 0 usage records posted; 1 failed; 1 finding (0 acknowledged); "
        "exit 4 (refused by the safety valve, or pending changes found)"
    )


def test_quiet_leaves_out_what_needs_no_one_and_nothing_to_do_is_one_line() -> None:
    at = datetime(2026, 12, 5, 19, 5, 45, tzinfo=UTC)
    steady = [
        CommandReport(name, False, (), figures={"x": 1}, run_id=run_id, started_at=at)
        for run_id, name in enumerate(("sync-plans", "link-accounts", "sync-subscriptions", "report-usage"), start=5)
    ]
    out = console()
    render_reports(out, steady, output="table", quiet=True)
    assert output_of(out).splitlines() == [
        f"2026-12-05T19:05:45Z amplify-billing {__version__} run (run ids 5-8): Applied: 0 created, 0 updated, "
        "0 ended, 0 usage records posted; 0 findings (0 acknowledged); exit 0"
    ]

    out = console(width=220)
    render_reports(out, [plans_report(), *steady[1:]], output="table", quiet=True)
    lines = output_of(out).splitlines()
    assert lines[1] == "sync-plans: 2 applied, 1 failed, 1 reported"
    assert not [line for line in lines if line.startswith(("figures:", "link-accounts", "report-usage"))]
    assert lines[-1].startswith("Applied: 1 created, 1 updated")


def test_run_reports_json_is_one_document() -> None:
    out = console()
    render_reports(
        out, [plans_report(dry_run=True), CommandReport("report-usage", True, (), exit_code=0)], output="json"
    )
    document = json.loads(output_of(out))

    assert (document["command"], document["exit_code"], document["dry_run"]) == ("run", 0, True)
    assert (document["changes"], document["findings"], document["counts"]["planned"]) == ([], [], 3)
    assert [(r["command"], r["dry_run"], r["counts"]["planned"]) for r in document["steps"]] == [
        ("sync-plans", True, 3),
        ("report-usage", True, 0),
    ]


# ---- generic rows ------------------------------------------------------------------------------


def test_render_rows_in_three_formats() -> None:
    columns: list[str | Column] = ["Subscription", Column("Units", justify="right"), Column("Amount", key="amount_usd")]
    rows = [("sub|a", 1234, Decimal("12.50")), ("sub-b", None, Decimal("0"))]

    table = console()
    render_rows(table, "Usage totals", columns, rows, output="table")
    lines = output_of(table).splitlines()
    assert lines[0] == "Usage totals"
    assert [c.strip() for c in lines[2].split("│")] == ["Subscription", "Units", "Amount"]
    assert [c.strip() for c in lines[4].split("│")] == ["sub|a", "1,234", "12.50"]
    assert [c.strip() for c in lines[5].split("│")] == ["sub-b", "-", "0"]

    as_json = console()
    render_rows(as_json, "Usage totals", columns, rows, output="json")
    assert json.loads(output_of(as_json)) == {
        "title": "Usage totals",
        "rows": [
            {"subscription": "sub|a", "units": 1234, "amount_usd": "12.50"},
            {"subscription": "sub-b", "units": None, "amount_usd": "0"},
        ],
    }

    markdown = console()
    render_rows(markdown, "Usage totals", columns, rows, output="markdown")
    assert output_of(markdown).splitlines() == [
        "### Usage totals",
        "",
        "| Subscription | Units | Amount |",
        "|---|--:|---|",
        "| sub\\|a | 1,234 | 12.50 |",
        "| sub-b | - | 0 |",
    ]

    with pytest.raises(ValueError, match="a row has 2 cells for 3 columns"):
        render_rows(console(), "bad", columns, [("x", 1)], output="table")


def test_console_off_a_terminal_is_plain_unwrapped_or_columns_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.delenv("COLUMNS", raising=False)
    plain = make_console()

    assert plain.width == NO_WRAP_WIDTH
    assert plain.color_system is None
    plain.print("[bold]x[/] " + "y" * 300)
    written = stdout.getvalue()
    assert "\x1b[" not in written
    assert written.splitlines() == ["x " + "y" * 300], "piped output is never wrapped"

    monkeypatch.setenv("COLUMNS", "90")
    assert make_console().width == 90
    monkeypatch.setenv("COLUMNS", "junk")
    assert make_console().width == NO_WRAP_WIDTH


# ---- logging -----------------------------------------------------------------------------------


@pytest.fixture
def isolated_logging() -> Iterator[logging.Logger]:
    """Remove the diagnostics handler afterwards, so this test's secrets and format do not leak."""
    names = ("amplify_billing", *THIRD_PARTY_LOGGERS)
    saved = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).level) for name in names}
    for name in names:
        for handler in list(logging.getLogger(name).handlers):
            if isinstance(handler, DiagnosticsHandler):
                logging.getLogger(name).removeHandler(handler)
    yield logging.getLogger("amplify_billing")
    for name, (handlers, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)


def diagnostics_handlers(name: str) -> list[DiagnosticsHandler]:
    return [h for h in logging.getLogger(name).handlers if isinstance(h, DiagnosticsHandler)]


def test_configure_logging_twice_installs_one_handler_and_keeps_secrets(
    isolated_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt="text", verbose=False)
    register_secret("first-secret-value")
    configure_logging(fmt="json", verbose=True)

    assert len(diagnostics_handlers("amplify_billing")) == 1
    assert diagnostics_handlers("urllib3") == diagnostics_handlers("amplify_billing")
    assert isolated_logging.level == logging.DEBUG
    assert logging.getLogger("urllib3").level == logging.DEBUG

    configure_logging(fmt="text", verbose=False)
    assert logging.getLogger("urllib3").level == logging.WARNING
    assert isolated_logging.level == logging.INFO
    logging.getLogger("amplify_billing.cli").debug("not shown at INFO")
    logging.getLogger("amplify_billing.cli").info("still hides first-secret-value")
    err = capsys.readouterr().err
    assert err.endswith(" INFO still hides <hidden>\n")
    assert "not shown" not in err


SECRET = "rk_live_9f8e7d6c5b4a39281706"


def test_text_logs_hide_secrets_and_credentials(
    isolated_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt="text", verbose=False)
    register_secret(SECRET)
    log = logging.getLogger("amplify_billing.apply")

    log.info("calling Recurly with key %s", SECRET, extra={"action": "recurly.create_plan"})
    log.warning("sent {'Authorization': 'Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig'}")
    log.warning("header Authorization: Basic cmtfbGl2ZV85ZjhlN2Q2YzViNGEzOTI4MTcwNjo= for Basic plan")
    lines = capsys.readouterr().err.splitlines()

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO calling Recurly with key <hidden>", lines[0])
    assert lines[1].endswith(" WARNING sent {'Authorization': 'Bearer <hidden>'}")
    assert lines[2].endswith(" WARNING header Authorization: Basic <hidden> for Basic plan")
    assert SECRET not in "\n".join(lines)


def test_json_logs_are_one_object_per_line_with_extras_and_no_secrets(
    isolated_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt="json", verbose=False)
    register_secret(SECRET)
    log = logging.getLogger("amplify_billing.apply")

    log.warning(
        "recurly.create_plan %s failed: %s",
        "plan amplify-x",
        f"refused key {SECRET}",
        extra={"action": "recurly.create_plan", "key": f"idem-{SECRET}"},
    )
    try:
        raise RuntimeError(f"boom with {SECRET}")
    except RuntimeError:
        log.exception("crashed")
    lines = capsys.readouterr().err.splitlines()

    assert len(lines) == 2
    first = json.loads(lines[0])
    assert list(first) == ["timestamp", "level", "logger", "event", "action", "key"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["timestamp"])
    assert first["level"] == "WARNING"
    assert first["logger"] == "amplify_billing.apply"
    assert first["event"] == "recurly.create_plan plan amplify-x failed: refused key <hidden>"
    assert first["action"] == "recurly.create_plan"
    assert first["key"] == "idem-<hidden>"
    second = json.loads(lines[1])
    assert second["event"] == "crashed"
    assert "RuntimeError: boom with <hidden>" in second["exception"]
    assert SECRET not in "\n".join(lines)


def test_third_party_warnings_go_through_the_same_handler(
    isolated_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt="json", verbose=False)
    register_secret(SECRET)
    logging.getLogger("urllib3.connectionpool").debug("Starting new HTTPS connection")
    logging.getLogger("urllib3.connectionpool").warning("Retrying https://user:%s@host/", SECRET)
    lines = capsys.readouterr().err.splitlines()

    assert [json.loads(line)["event"] for line in lines] == ["Retrying https://<hidden>@host/"]


def test_reports_redact_registered_secrets(isolated_logging: logging.Logger) -> None:
    register_secret(SECRET)
    failed = ChangeResult(
        change(ChangeKind.CREATE, "account", "team t", "account amplify-team-t", "create account"),
        Outcome.FAILED,
        error=f"Recurly said: invalid key {SECRET}",
    )
    report = CommandReport("link-accounts", False, (failed,), exit_code=1, note=f"key {SECRET}")
    table, as_json = console(), console()
    render_report(table, report, output="table")
    render_report(as_json, report, output="json")

    assert SECRET not in output_of(table) + output_of(as_json)
    assert json.loads(output_of(as_json))["changes"][0]["error"] == "Recurly said: invalid key <hidden>"
    assert "note: key <hidden>" in output_of(table)


def test_redact_leaves_ordinary_text_alone(isolated_logging: logging.Logger) -> None:
    register_secret("abc")  # too short to search for alone: it would hide every "abc" in every id
    assert redact("Basic plan abcdef, bearer of news") == "Basic plan abcdef, bearer of news"
    assert redact("GET https://api:secretpw@example.com/x?api_key=k123&x=1") == (
        "GET https://<hidden>@example.com/x?api_key=<hidden>&x=1"
    )


def test_long_notes_and_json_values_stay_on_one_line() -> None:
    note = "stopped: " + "Recurly answered 503 " * 20
    out = console()
    render_report(out, CommandReport("report-usage", False, (), exit_code=1, note=note), output="table")
    render_report(out, CommandReport("report-usage", False, (), exit_code=1, note=note), output="json")
    lines = output_of(out).splitlines()

    assert lines[2] == f"note: {note}"
    assert f'  "note": {json.dumps(note)},' in lines
