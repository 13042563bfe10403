"""The SQLite journal and the run lock (DESIGN.md §4, §5): every method, durability, threads, the lock."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from amplify_billing.errors import ConfigError, ExitCode, JournalError, LockHeldError
from amplify_billing.journal import SCHEMA_VERSION, Journal, JournalOwner, RunLock, UsageLedgerEntry, lock_path_for
from amplify_billing.usage.journal_check import (
    DEFAULT_LOOKBACK,
    SamplePair,
    check_sample,
    first_unknown,
    pair_key,
    rotation,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SUB = "a" * 32
QUOTA = "b" * 32
UUID = "5f3e2d1c0b9a"


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "amplify-billing.db"


@pytest.fixture
def journal(db_path: Path, clock: Clock) -> Iterator[Journal]:
    j = Journal.open(db_path, clock=clock)
    yield j
    j.close()


def entry(
    window_start: datetime = T0,
    *,
    sub: str = SUB,
    quota: str = QUOTA,
    amount: str = "120",
    kind: str = "base",
    n: int = 0,
    billed: bool = False,
    usage_id: str | None = "u1",
) -> UsageLedgerEntry:
    base = f"amplify:{sub}:{quota}:{window_start:%Y%m%dT%H%M%SZ}"
    return UsageLedgerEntry(
        merchant_tag=base if kind == "base" else f"{base}:adj{n}",
        subscription_id=sub,
        quota_id=quota,
        window_start=window_start,
        window_end=window_start + timedelta(days=1),
        recurly_subscription_id=UUID,
        add_on_code=f"amplify-{quota}",
        amount=Decimal(amount),
        usage_id=usage_id,
        billed=billed,
        kind=kind,
        base_tag=None if kind == "base" else base,
        recorded_at=T0 + timedelta(hours=3),
        updated_at=T0 + timedelta(hours=3),
    )


# ---- opening --------------------------------------------------------------------------------------


def test_open_creates_directories_wal_full_sync_and_schema_version(db_path: Path, clock: Clock) -> None:
    assert not db_path.parent.exists()
    journal = Journal.open(db_path, clock=clock)
    try:
        assert db_path.is_file()
        assert journal.path == db_path
        # synchronous is per connection: ask the journal's own
        assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        journal.close()
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()


def test_reopening_an_existing_journal_keeps_its_schema(db_path: Path, clock: Clock) -> None:
    Journal.open(db_path, clock=clock).close()
    journal = Journal.open(db_path, clock=clock)
    journal.set_link("k", "a", "b")
    journal.close()
    assert Journal.open(db_path, clock=clock).get_link("k", "a") == "b"


def test_newer_schema_version_is_refused_with_what_to_do(db_path: Path, clock: Clock) -> None:
    Journal.open(db_path, clock=clock).close()
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(JournalError) as caught:
        Journal.open(db_path, clock=clock)
    assert str(caught.value) == (
        f"the journal {db_path} has schema version {SCHEMA_VERSION + 1}, newer than this amplify-billing knows "
        f"({SCHEMA_VERSION}); run the newer amplify-billing that wrote it, or move the file aside "
        "and let this version rebuild it from Recurly"
    )
    assert caught.value.exit_code is ExitCode.CONFIG


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "notes.txt"
    content = "these are my notes, not a database\n" * 200
    path.write_text(content)
    with pytest.raises(JournalError) as caught:
        Journal.open(path, clock=clock)
    assert str(caught.value) == (
        f"{path} is not an amplify-billing journal (file is not a database); move it aside or point state.path "
        "at another file: the tool rebuilds its journal from Recurly"
    )
    assert path.read_text() == content


def test_another_programs_sqlite_database_is_refused(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE customers (id INTEGER)")
    raw.commit()
    raw.close()
    with pytest.raises(JournalError) as caught:
        Journal.open(path, clock=clock)
    assert str(caught.value) == (
        f"{path} is an SQLite database but not an amplify-billing journal (it has tables customers); "
        "point state.path at another file"
    )


def test_a_directory_that_cannot_be_created_is_named(tmp_path: Path, clock: Clock) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    path = blocker / "sub" / "amplify-billing.db"
    with pytest.raises(JournalError) as caught:
        Journal.open(path, clock=clock)
    assert str(caught.value).startswith(f"cannot create the journal directory {blocker / 'sub'}: ")
    assert str(caught.value).endswith("; make it writable or point state.path at a writable place")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_an_unwritable_directory_is_named(tmp_path: Path, clock: Clock) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        with pytest.raises(JournalError) as caught:
            Journal.open(directory / "amplify-billing.db", clock=clock)
        assert str(caught.value) == (
            f"cannot create the journal {directory / 'amplify-billing.db'}: directory {directory} is not writable; "
            "make it writable or point state.path at a writable place"
        )
    finally:
        directory.chmod(0o700)


def test_a_closed_journal_raises_journal_error(journal: Journal) -> None:
    journal.close()
    with pytest.raises(JournalError, match=r"the journal .* failed: Cannot operate on a closed database"):
        journal.set_link("k", "a", "b")


# ---- runs -----------------------------------------------------------------------------------------


def test_runs_are_recorded_and_listed_newest_first(journal: Journal, clock: Clock) -> None:
    first = journal.start_run("sync-plans", False)
    clock.advance(30)
    journal.finish_run(first, 0, {"plan_create_applied": 2, "note": "ok"})
    clock.advance(60)
    second = journal.start_run("run", False)

    runs = journal.recent_runs()
    assert [r.id for r in runs] == [second, first]
    done, running = runs[1], runs[0]
    assert done.command == "sync-plans"
    assert done.dry_run is False
    assert done.started_at == T0
    assert done.finished_at == T0 + timedelta(seconds=30)
    assert done.exit_code == 0
    assert done.counts == {"plan_create_applied": 2, "note": "ok"}
    assert done.pid == os.getpid()
    assert running.finished_at is None and running.exit_code is None and running.counts == {}
    assert running.started_at.tzinfo is UTC

    assert [r.id for r in journal.recent_runs(1)] == [second]
    assert journal.last_run("sync-plans") == done
    assert journal.last_run("report-usage") is None


def test_dry_run_flag_is_kept(journal: Journal) -> None:
    run_id = journal.start_run("report-usage", True)
    assert journal.recent_runs()[0].id == run_id
    assert journal.recent_runs()[0].dry_run is True


# ---- audit log ------------------------------------------------------------------------------------


def test_audit_entries_round_trip_per_run(journal: Journal, clock: Clock) -> None:
    run1 = journal.start_run("sync-plans", False)
    journal.audit(run1, "recurly", "recurly.create_plan", "plan:P1", response_id="p-1", detail={"outcome": "applied"})
    clock.advance(5)
    journal.audit(
        run1,
        "recurly",
        "recurly.create_usage",
        "usage:1",
        request_id="req-9",
        detail={"outcome": "failed", "amount": Decimal("0.0001"), "at": T0, "error": "boom"},
    )
    run2 = journal.start_run("sync-subscriptions", False)
    journal.audit(run2, "amplify", "amplify.approve", "sub:S1")

    everything = journal.audit_entries()
    assert [(e.run_id, e.action) for e in everything] == [
        (run1, "recurly.create_plan"),
        (run1, "recurly.create_usage"),
        (run2, "amplify.approve"),
    ]
    first, second, third = everything
    assert (first.system, first.key, first.request_id, first.response_id) == ("recurly", "plan:P1", None, "p-1")
    assert first.at == T0
    assert second.at == T0 + timedelta(seconds=5)
    assert second.request_id == "req-9"
    assert second.detail == {"outcome": "failed", "amount": Decimal("0.0001"), "at": T0, "error": "boom"}
    assert third.detail == {}
    assert journal.audit_entries(run2) == [third]
    assert journal.audit_entries(run2 + 100) == []


def test_audit_log_refuses_update_and_delete_even_in_sql(journal: Journal, db_path: Path) -> None:
    journal.audit(1, "recurly", "recurly.create_plan", "plan:P1")
    raw = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("UPDATE audit SET key = 'x'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("DELETE FROM audit")
    finally:
        raw.close()
    assert [e.key for e in journal.audit_entries()] == ["plan:P1"]
    assert not [name for name in dir(Journal) if "audit" in name and name not in ("audit", "audit_entries")]


# ---- intents --------------------------------------------------------------------------------------


def test_intent_payload_types_round_trip_exactly(journal: Journal) -> None:
    paris = timezone(timedelta(hours=1))
    payload = {
        "subscription_id": "uuid-abc",
        "amount": Decimal("0.000125"),
        "big": Decimal("12345678901234567890.123456789"),
        "count": 120,
        "window_start": datetime(2026, 3, 1, 13, 0, tzinfo=paris),
        "usage_timestamp": "2026-03-01T12:00:00Z",
        "flag": True,
        "nothing": None,
        "tags": ["a", Decimal("1.10")],
    }
    journal.begin_intent("amplify:S:Q:20260301T120000Z", "usage", payload)
    [intent] = journal.open_intents()
    assert intent.payload == payload
    assert intent.payload["amount"].as_tuple() == Decimal("0.000125").as_tuple()
    assert intent.payload["tags"][1].as_tuple() == Decimal("1.10").as_tuple()  # the trailing zero is kept
    assert intent.payload["window_start"] == T0
    assert intent.payload["window_start"].tzinfo is UTC
    assert type(intent.payload["count"]) is int
    assert intent.created_at == T0
    assert intent.kind == "usage"


def test_intent_payload_refuses_what_it_cannot_keep(journal: Journal) -> None:
    with pytest.raises(ValueError, match="naive datetime 2026-03-01T12:00:00 given to the journal"):
        journal.begin_intent("k", "usage", {"at": datetime(2026, 3, 1, 12, 0)})
    with pytest.raises(TypeError, match="the journal cannot store a set losslessly"):
        journal.begin_intent("k", "usage", {"ids": {"a"}})
    assert journal.open_intents() == []


def test_begin_intent_is_idempotent_for_an_open_key_and_keeps_the_first(journal: Journal, clock: Clock) -> None:
    journal.begin_intent("k1", "usage", {"amount": "10"})
    clock.advance(10)
    journal.begin_intent("k1", "usage", {"amount": "10"})
    journal.begin_intent("k1", "usage", {"amount": "11"})
    [intent] = journal.open_intents()
    assert (intent.key, intent.payload, intent.created_at) == ("k1", {"amount": "10"}, T0)


def test_intents_complete_abandon_and_reopen(journal: Journal, clock: Clock) -> None:
    run_id = journal.start_run("report-usage", False)
    journal.begin_intent("u1", "usage", {"n": 1})
    journal.begin_intent("s1", "subscription", {"n": 2})
    journal.begin_intent("u2", "usage", {"n": 3})
    assert [i.key for i in journal.open_intents()] == ["u1", "s1", "u2"]
    assert [i.key for i in journal.open_intents("usage")] == ["u1", "u2"]
    assert [i.key for i in journal.open_intents("subscription")] == ["s1"]
    assert {i.run_id for i in journal.open_intents()} == {run_id}

    journal.complete_intent("u1", "usage-id-1")
    journal.abandon_intent("u2", "not found in Recurly")
    assert [i.key for i in journal.open_intents("usage")] == []
    assert [i.key for i in journal.open_intents()] == ["s1"]

    # closing a key that is not open changes nothing and raises nothing
    journal.complete_intent("u1", "other")
    journal.abandon_intent("never-begun", "x")
    assert [i.key for i in journal.open_intents()] == ["s1"]

    # an abandoned key is begun again by the next attempt; outside a run it carries no run id
    journal.finish_run(run_id, 0, {})
    clock.advance(60)
    journal.begin_intent("u2", "usage", {"n": 4})
    [again] = journal.open_intents("usage")
    assert (again.key, again.payload, again.created_at, again.run_id) == (
        "u2",
        {"n": 4},
        T0 + timedelta(seconds=60),
        None,
    )

    rows = journal._db.execute("SELECT key, state, result_id, reason FROM intents ORDER BY id").fetchall()
    assert rows == [
        ("u1", "done", "usage-id-1", None),
        ("s1", "open", None, None),
        ("u2", "abandoned", None, "not found in Recurly"),
        ("u2", "open", None, None),
    ]


# ---- usage ledger ---------------------------------------------------------------------------------


def test_record_usage_round_trips_every_field(journal: Journal) -> None:
    e = entry(amount="0.000125", usage_id=None)
    journal.record_usage(e)
    assert journal.usage_entries() == [e]
    assert journal.usage_entries()[0].amount.as_tuple() == Decimal("0.000125").as_tuple()
    assert journal.usage_entries()[0].window_start.tzinfo is UTC


def test_record_usage_upserts_by_merchant_tag(journal: Journal) -> None:
    e = entry()
    journal.record_usage(e)
    updated = replace(e, amount=Decimal("150"), usage_id="u2", updated_at=T0 + timedelta(hours=5))
    journal.record_usage(updated)
    assert journal.usage_entries() == [updated]


def test_usage_for_window_gives_the_base_then_adjustments(journal: Journal) -> None:
    adj2 = entry(kind="adjustment", n=2, amount="-3", usage_id="u3")
    adj1 = entry(kind="adjustment", n=1, amount="7", usage_id="u2")
    base = entry(amount="100")
    journal.record_usage(adj1)
    journal.record_usage(base)
    journal.record_usage(adj2)
    journal.record_usage(entry(T0 + timedelta(days=1)))  # the next window
    journal.record_usage(entry(quota="c" * 32))  # another quota
    journal.record_usage(entry(sub="d" * 32))  # another subscription

    assert journal.usage_for_window(SUB, QUOTA, T0) == [base, adj1, adj2]
    # the window start is matched as an instant, whatever zone the caller uses
    assert journal.usage_for_window(SUB, QUOTA, T0.astimezone(timezone(timedelta(hours=-5)))) == [base, adj1, adj2]
    assert journal.usage_for_window(SUB, QUOTA, T0 - timedelta(days=1)) == []
    assert adj1.base_tag == base.merchant_tag


def test_usage_entries_by_subscription(journal: Journal) -> None:
    mine = [entry(T0 + timedelta(days=1)), entry(), entry(quota="c" * 32)]
    other = entry(sub="d" * 32)
    for e in [*mine, other]:
        journal.record_usage(e)
    assert journal.usage_entries(SUB) == [mine[1], mine[0], mine[2]]
    assert journal.usage_entries("d" * 32) == [other]
    assert len(journal.usage_entries()) == 4
    assert journal.usage_entries("nobody") == []


def test_mark_billed_and_billed_never_goes_back(journal: Journal, clock: Clock) -> None:
    e = entry()
    journal.record_usage(e)
    clock.advance(3600)
    journal.mark_billed(e.merchant_tag)
    [billed] = journal.usage_entries()
    assert billed.billed is True
    assert billed.updated_at == T0 + timedelta(hours=1)
    # a stale "unbilled" view (an older listing) does not undo what Recurly said
    journal.record_usage(replace(e, amount=Decimal("121")))
    [after] = journal.usage_entries()
    assert (after.billed, after.amount) == (True, Decimal("121"))
    journal.mark_billed("amplify:unknown")  # nothing to mark: no error
    assert len(journal.usage_entries()) == 1


def test_usage_totals_are_exact_per_pair_and_since(journal: Journal) -> None:
    journal.record_usage(entry(amount="0.1"))
    journal.record_usage(entry(amount="0.2", kind="adjustment", n=1))
    journal.record_usage(entry(T0 + timedelta(days=1), amount="0.3"))
    journal.record_usage(entry(quota="c" * 32, amount="5"))
    assert journal.usage_totals() == {(SUB, QUOTA): Decimal("0.6"), (SUB, "c" * 32): Decimal("5")}
    assert journal.usage_totals(since=T0 + timedelta(hours=1)) == {(SUB, QUOTA): Decimal("0.3")}
    assert journal.usage_totals(since=T0 + timedelta(days=2)) == {}


def test_usage_watermarks(journal: Journal) -> None:
    assert journal.usage_watermark(SUB, QUOTA) is None
    journal.set_usage_watermark(SUB, QUOTA, T0)
    later = datetime(2026, 3, 2, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    journal.set_usage_watermark(SUB, "c" * 32, later)
    assert journal.usage_watermark(SUB, QUOTA) == T0
    mark = journal.usage_watermark(SUB, "c" * 32)
    assert mark == datetime(2026, 3, 2, 0, 0, tzinfo=UTC) and mark is not None and mark.tzinfo is UTC
    journal.set_usage_watermark(SUB, QUOTA, T0 + timedelta(days=1))
    assert journal.usage_watermark(SUB, QUOTA) == T0 + timedelta(days=1)
    assert journal.usage_watermark("d" * 32, QUOTA) is None


def test_naive_datetimes_are_refused(journal: Journal) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        journal.set_usage_watermark(SUB, QUOTA, datetime(2026, 3, 1))
    with pytest.raises(ValueError, match="naive datetime"):
        journal.record_usage(replace(entry(), window_start=datetime(2026, 3, 1)))
    assert journal.usage_entries() == []
    assert journal.usage_watermark(SUB, QUOTA) is None


# ---- links ----------------------------------------------------------------------------------------


def test_links_per_kind(journal: Journal) -> None:
    assert journal.get_link("subscription", "S1") is None
    assert journal.links("subscription") == {}
    journal.set_link("subscription", "S2", "uuid-2")
    journal.set_link("subscription", "S1", "uuid-1")
    journal.set_link("setting", "usage.window", "daily")
    journal.set_link("subscription", "S1", "uuid-1b")
    assert journal.get_link("subscription", "S1") == "uuid-1b"
    assert journal.links("subscription") == {"S1": "uuid-1b", "S2": "uuid-2"}
    assert journal.links("setting") == {"usage.window": "daily"}
    assert journal.get_link("setting", "S1") is None


# ---- durability -----------------------------------------------------------------------------------


def test_everything_survives_close_and_reopen(db_path: Path, clock: Clock) -> None:
    journal = Journal.open(db_path, clock=clock)
    run_id = journal.start_run("run", False)
    journal.audit(run_id, "recurly", "recurly.create_usage", "k", response_id="r")
    journal.begin_intent("open", "usage", {"amount": Decimal("1.5")})
    journal.begin_intent("done", "usage", {})
    journal.complete_intent("done", "x")
    journal.record_usage(entry())
    journal.set_usage_watermark(SUB, QUOTA, T0)
    journal.set_link("subscription", "S1", "uuid-1")
    journal.finish_run(run_id, 1, {"failed": 1})
    journal.close()

    again = Journal.open(db_path, clock=clock)
    try:
        [run] = again.recent_runs()
        assert (run.id, run.exit_code, run.counts) == (run_id, 1, {"failed": 1})
        assert [(e.key, e.response_id) for e in again.audit_entries()] == [("k", "r")]
        assert [(i.key, i.payload) for i in again.open_intents()] == [("open", {"amount": Decimal("1.5")})]
        assert again.usage_entries() == [entry()]
        assert again.usage_watermark(SUB, QUOTA) == T0
        assert again.links("subscription") == {"S1": "uuid-1"}
        # ids go on from where they were
        assert again.start_run("run", False) == run_id + 1
    finally:
        again.close()


def test_a_write_survives_sigkill_right_after_it_returns(db_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from datetime import UTC, datetime
        from decimal import Decimal
        from pathlib import Path
        from amplify_billing.journal import Journal
        journal = Journal.open(Path(sys.argv[1]), clock=lambda: datetime(2026, 3, 1, tzinfo=UTC))
        journal.begin_intent("amplify:S:Q:20260301T000000Z", "usage", {"amount": Decimal("42")})
        print("written", flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(db_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "written"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    journal = Journal.open(db_path, clock=Clock())
    try:
        assert [(i.key, i.payload) for i in journal.open_intents()] == [
            ("amplify:S:Q:20260301T000000Z", {"amount": Decimal("42")})
        ]
    finally:
        journal.close()


# ---- threads --------------------------------------------------------------------------------------


def test_eight_threads_record_a_thousand_entries_and_intents_without_loss_or_doubling(journal: Journal) -> None:
    threads, total = 8, 1000
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            start.wait()
            for n in range(worker, total, threads):
                window = T0 + timedelta(hours=n)
                e = entry(window, amount=str(n), usage_id=f"u{n}")
                journal.begin_intent(e.merchant_tag, "usage", {"n": n})
                journal.begin_intent(e.merchant_tag, "usage", {"n": n})  # a retried begin
                journal.record_usage(e)
                journal.complete_intent(e.merchant_tag, e.usage_id)
                # every worker also writes the same shared keys: one row each must remain
                journal.set_link("shared", f"k{n % 10}", f"w{worker}")
                journal.audit(1, "recurly", "recurly.create_usage", e.merchant_tag, response_id=e.usage_id)
        except BaseException as error:  # reported below with the thread's failure
            errors.append(error)

    workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert errors == []
    entries = journal.usage_entries()
    assert len(entries) == total
    assert sorted(int(e.amount) for e in entries) == list(range(total))
    assert {e.usage_id for e in entries} == {f"u{n}" for n in range(total)}
    assert journal.open_intents() == []
    assert journal._db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM intents").fetchone() == (total, total)
    assert journal._db.execute("SELECT COUNT(*) FROM intents WHERE state = 'done'").fetchone() == (total,)
    assert sorted(journal.links("shared")) == [f"k{n}" for n in range(10)]
    audited = journal.audit_entries()
    assert len(audited) == total and len({a.key for a in audited}) == total
    assert journal.usage_totals() == {(SUB, QUOTA): Decimal(sum(range(total)))}


# ---- upgrading a journal of an older release ------------------------------------------------------

# Written by the schema-1 release (the commit before the schema changed): the sandbox's demo scenario with seed 3
# and 4 subscriptions, `run` on 2026-11-17 and again on 2026-11-19. It holds runs, the audit log, intents, ledger
# entries, watermarks and links, as any journal in the field does.
V1_JOURNAL = Path(__file__).resolve().parent.parent / "data" / "journal-v1.db"
V1_TABLES = ("runs", "audit", "intents", "usage_ledger", "usage_watermarks", "links")


def _dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    raw = sqlite3.connect(path)
    try:
        return {table: raw.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall() for table in V1_TABLES}
    finally:
        raw.close()


def _schema(path: Path) -> list[tuple[str, str, str]]:
    raw = sqlite3.connect(path)
    try:
        rows = raw.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
        return [(t, n, " ".join(str(sql).split())) for t, n, sql in rows]
    finally:
        raw.close()


def _user_version(path: Path) -> int:
    raw = sqlite3.connect(path)
    try:
        return int(raw.execute("PRAGMA user_version").fetchone()[0])
    finally:
        raw.close()


def test_a_schema_1_journal_is_upgraded_in_place_keeping_every_row(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "amplify-billing.db"
    shutil.copyfile(V1_JOURNAL, path)
    assert _user_version(path) == 1
    before = _dump(path)
    assert all(before[table] for table in V1_TABLES), "the fixture should hold rows in every table"

    journal = Journal.open(path, clock=clock)
    try:
        assert journal.owner() is None  # the first real run records it
        assert journal.sample_cursor() is None
        # what the tool reads from it is there, through the API
        assert journal.usage_entries() and journal.links("subscription") and journal.recent_runs()
        pair = journal.usage_entries()[0]
        assert journal.usage_watermark(pair.subscription_id, pair.quota_id) is not None
        # and it works: a run, an owner, a ledger entry
        run_id = journal.start_run("report-usage", False)
        journal.claim(OWNER)
        journal.record_usage(entry())
        journal.finish_run(run_id, 0, {})
    finally:
        journal.close()

    assert _user_version(path) == SCHEMA_VERSION
    after = _dump(path)
    for table in V1_TABLES:
        assert set(before[table]) <= set(after[table]), table
    # the upgraded file has exactly the schema of a journal created by this release
    fresh = tmp_path / "fresh.db"
    Journal.open(fresh, clock=clock).close()
    assert _schema(path) == _schema(fresh)
    with Journal.open(path, clock=clock) as reopened:
        assert reopened.owner() == OWNER


def test_an_upgrade_that_fails_leaves_the_journal_as_it_was(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import amplify_billing.journal.schema as module

    path = tmp_path / "amplify-billing.db"
    shutil.copyfile(V1_JOURNAL, path)
    schema = _schema(path)
    # the step's first statements succeed, its last one fails: none of them may stay
    monkeypatch.setattr(module, "_UPGRADES", {1: module._UPGRADES[1] + "\nCREATE TABLE owner (x);"})
    with pytest.raises(JournalError) as caught:
        Journal.open(path, clock=clock)
    assert str(path) in str(caught.value)
    assert _user_version(path) == 1
    assert _schema(path) == schema

    monkeypatch.undo()
    with Journal.open(path, clock=clock):
        pass
    assert _user_version(path) == SCHEMA_VERSION


def test_two_processes_opening_an_old_journal_at_once_upgrade_it_once(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "amplify-billing.db"
    shutil.copyfile(V1_JOURNAL, path)
    script = textwrap.dedent(
        f"""
        from datetime import UTC, datetime
        from pathlib import Path
        from amplify_billing.journal import Journal
        Journal.open(Path({str(path)!r}), clock=lambda: datetime.now(UTC)).close()
        """
    )
    processes = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(4)]
    assert [p.wait(timeout=60) for p in processes] == [0, 0, 0, 0]
    assert _user_version(path) == SCHEMA_VERSION


# ---- whose the journal is -------------------------------------------------------------------------

OWNER = JournalOwner("site1abc", "acme", "100000000000001")


def test_the_first_claim_records_the_owner_and_later_claims_do_not_move_it(journal: Journal) -> None:
    assert journal.owner() is None
    journal.check_owner(JournalOwner("other", "x", "1"))  # an unclaimed journal refuses nobody
    assert journal.claim(OWNER) == OWNER
    other = JournalOwner("site2def", "globex", "100000000000001")
    assert journal.claim(other) == OWNER
    assert journal.owner() == OWNER


def test_another_site_or_tenant_is_refused_with_exit_2_naming_both_and_what_to_do(
    journal: Journal, db_path: Path
) -> None:
    journal.claim(OWNER)
    journal.check_owner(OWNER)
    journal.check_owner(JournalOwner("site1abc", "acme-renamed", "100000000000001"))  # the same site, renamed
    for other in (
        JournalOwner("site2def", "globex", "100000000000001"),
        JournalOwner("site1abc", "acme", "100000000000002"),
    ):
        with pytest.raises(ConfigError) as caught:
            journal.check_owner(other)
        assert caught.value.exit_code is ExitCode.CONFIG
        assert str(caught.value) == (
            f"the journal {db_path} belongs to Recurly site site1abc (subdomain acme) and Amplify tenant "
            f"100000000000001, but this configuration uses Recurly site {other.recurly_site_id} (subdomain "
            f"{other.recurly_subdomain}) and Amplify tenant {other.amplify_tenant_id}. Keep one journal per Recurly "
            "site: point state.path at that site's journal (a new, empty file is rebuilt from Recurly on its first "
            "run), and run again; this journal was not changed"
        )


# ---- what the stale-journal check reads and resets -----------------------------------------------


def test_sample_cursor_round_trips(journal: Journal) -> None:
    assert journal.sample_cursor() is None
    journal.set_sample_cursor("a:b:c:d")
    journal.set_sample_cursor("e:f:g:h")
    assert journal.sample_cursor() == "e:f:g:h"


def test_usage_amounts_of_known_tags_only_and_newest_window(journal: Journal) -> None:
    days = [T0 + timedelta(days=n) for n in range(3)]
    for day in days:
        journal.record_usage(entry(day, amount=str(10 + day.day)))
    journal.record_usage(entry(days[0], kind="adjustment", n=1, amount="-2"))
    tags = [entry(day).merchant_tag for day in days]
    many = [f"amplify:{SUB}:{QUOTA}:2020{n:04d}T000000Z" for n in range(1200)]  # more than one SQL statement holds
    found = journal.usage_amounts([*tags, f"{tags[0]}:adj1", "amplify:x:y:20260101T000000Z", *many])
    assert found == {
        **{entry(day).merchant_tag: Decimal(10 + day.day) for day in days},
        f"{tags[0]}:adj1": Decimal(-2),
    }
    assert journal.newest_usage_window(SUB, QUOTA) == days[-1]
    assert journal.newest_usage_window(SUB, "other") is None


def test_forget_usage_marks_drops_watermarks_and_the_named_links_only(journal: Journal) -> None:
    journal.record_usage(entry())
    journal.set_usage_watermark(SUB, QUOTA, T0 + timedelta(days=1))
    journal.set_usage_watermark("c" * 32, QUOTA, T0)
    journal.set_link("usage-looked-up", f"{SUB}:{QUOTA}:{UUID}", "x")
    journal.set_link("subscription-created", SUB, UUID)
    journal.set_link("subscription", SUB, UUID)
    journal.set_sample_cursor("k")
    journal.claim(OWNER)

    assert journal.forget_usage_marks(["usage-looked-up", "subscription-created"]) == 2

    assert journal.usage_watermark(SUB, QUOTA) is None and journal.usage_watermark("c" * 32, QUOTA) is None
    assert journal.links("usage-looked-up") == {} and journal.links("subscription-created") == {}
    assert journal.sample_cursor() is None
    # facts stay: the ledger, the subscription links, the owner
    assert journal.usage_entries() == [entry()]
    assert journal.links("subscription") == {SUB: UUID}
    assert journal.owner() == OWNER


# ---- the stale-journal sample (usage/journal_check.py) -------------------------------------------


class FakeUsage:
    """Recurly's usage listing, per (uuid, add-on code), with the calls made."""

    def __init__(self, records: dict[tuple[str, str], list[dict[str, object]]]) -> None:
        self.records = records
        self.calls: list[tuple[str, str, dict[str, object]]] = []

    def list_usage(
        self, subscription_id: str, add_on_id: str, params: Mapping[str, object] | None = None
    ) -> list[dict[str, object]]:
        self.calls.append((subscription_id, add_on_id, dict(params or {})))
        return list(self.records.get((subscription_id.removeprefix("uuid-"), add_on_id.removeprefix("code-")), []))


def _pair(n: int) -> SamplePair:
    return SamplePair(f"{n:032x}", QUOTA, f"uuid{n}", f"amplify-{QUOTA}")


def _report(journal: Journal, pair: SamplePair, day: datetime, amount: str = "5") -> dict[str, object]:
    """The pair's window ``day`` reported: in the ledger, under its watermark; returns Recurly's record of it."""
    known = replace(entry(day, sub=pair.subscription_id, amount=amount), recurly_subscription_id=pair.recurly_uuid)
    journal.record_usage(known)
    journal.set_usage_watermark(pair.subscription_id, pair.quota_id, day + timedelta(days=1))
    return {"merchant_tag": known.merchant_tag, "amount": float(amount), "usage_timestamp": day.isoformat()}


def test_rotation_starts_after_the_cursor_and_wraps() -> None:
    keys = ["c", "a", "d", "b"]
    assert rotation(keys, None) == ["a", "b", "c", "d"]
    assert rotation(keys, "b") == ["c", "d", "a", "b"]
    assert rotation(keys, "d") == ["a", "b", "c", "d"]
    assert rotation(keys, "bb") == ["c", "d", "a", "b"]  # a pair that went away keeps its place in the order
    assert rotation([], "b") == []


def test_first_unknown_ignores_recurlys_own_records_and_compares_amounts() -> None:
    tag = f"amplify:{SUB}:{QUOTA}:20260301T000000Z"
    known = {tag: Decimal(5)}
    recurly_own = {"merchant_tag": None, "amount": -5.0}
    by_hand = {"merchant_tag": "manual correction", "amount": 3}
    assert first_unknown([recurly_own, by_hand, {"merchant_tag": tag, "amount": 5.0}], known) is None
    assert first_unknown([{"merchant_tag": tag, "amount": 7}], known) == (
        tag,
        "holds with amount 5 where Recurly has 7",
    )
    assert first_unknown([{"merchant_tag": f"{tag}:adj1", "amount": 2}], known) == (f"{tag}:adj1", "does not hold")


def test_check_sample_reads_known_pairs_in_rotation_and_stops_at_the_first_evidence(
    journal: Journal, clock: Clock
) -> None:
    pairs = [_pair(n) for n in range(7)]
    records: dict[tuple[str, str], list[dict[str, object]]] = {}
    for pair in pairs[:6]:  # the 7th was never reported by this journal: report-usage reads it anyway
        records[(pair.recurly_uuid, pair.add_on_code)] = [_report(journal, pair, T0), {"merchant_tag": None}]
    recurly = FakeUsage(records)

    seen: list[set[SamplePair]] = []
    for _ in range(3):
        check = check_sample(journal, recurly, pairs, 2, clock())
        assert (check.stale, check.reads, check.evidence) == (False, 2, None)
        seen.append(set(check.pairs))
        journal.set_sample_cursor(check.cursor or "")  # what report-usage records after each check
    assert set().union(*seen) == set(pairs[:6])  # three runs of two covered the six known pairs
    assert "not stale" in check.summary()
    _sub, _add_on, params = recurly.calls[0]
    assert params == {
        "billing_status": "all",
        "sort": "usage_timestamp",
        "order": "asc",
        "begin_time": (T0 - DEFAULT_LOOKBACK).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end_time": clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "limit": 200,
    }

    # another journal posted day 2 of every pair: the first pair read shows it, and the check stops there
    for pair in pairs[:6]:
        later = entry(T0 + timedelta(days=1), sub=pair.subscription_id)
        records[(pair.recurly_uuid, pair.add_on_code)].append({"merchant_tag": later.merchant_tag, "amount": 4})
    calls = len(recurly.calls)
    check = check_sample(journal, recurly, pairs, 5, clock())
    assert (check.stale, check.reads, len(recurly.calls) - calls) == (True, 1, 1)
    assert check.evidence == entry(T0 + timedelta(days=1), sub=check.pairs[0].subscription_id).merchant_tag
    assert check.evidence in check.summary() and "stale" in check.summary()


def test_check_sample_writes_nothing_and_names_the_cursor_for_the_caller(journal: Journal, clock: Clock) -> None:
    pairs = [_pair(n) for n in range(4)]
    recurly = FakeUsage({(p.recurly_uuid, p.add_on_code): [_report(journal, p, T0)] for p in pairs})
    first = check_sample(journal, recurly, pairs, 2, clock())
    again = check_sample(journal, recurly, pairs, 2, clock())
    assert first.pairs == again.pairs
    assert journal.sample_cursor() is None
    assert first.cursor == pair_key(first.pairs[-1])
    assert check_sample(journal, recurly, pairs, 0, clock()).reads == 0


# ---- the run lock ---------------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime
    from pathlib import Path
    from amplify_billing.journal import RunLock
    lock = RunLock.acquire(Path(sys.argv[1]), "run", clock=lambda: datetime(2026, 3, 1, 12, 0, 7, 123, tzinfo=UTC))
    print("locked", flush=True)
    time.sleep(60)
    """
)


def _held_by_child(db_path: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(db_path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked"
    return child


def _kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    if child.stdout is not None:
        child.stdout.close()


def test_lock_file_names_the_holder_and_is_cleared_on_release(db_path: Path, clock: Clock) -> None:
    lock = RunLock.acquire(db_path, "sync-plans", clock=clock)
    path = lock_path_for(db_path)
    assert path == db_path.parent / "amplify-billing.db.lock"
    assert lock.path == path and lock.held
    assert (
        path.read_text() == f'{{"pid": {os.getpid()}, "command": "sync-plans", "started_at": "2026-03-01T12:00:00Z"}}\n'
    )
    lock.release()
    assert not lock.held
    assert path.exists() and path.read_text() == ""
    lock.release()  # twice is harmless


def test_a_second_acquire_is_refused_until_release(db_path: Path, clock: Clock) -> None:
    with RunLock.acquire(db_path, "run", clock=clock):
        with pytest.raises(LockHeldError) as caught:
            RunLock.acquire(db_path, "report-usage", clock=clock)
        assert str(caught.value) == (
            f"another amplify-billing run (pid {os.getpid()}, `run`, started 2026-03-01T12:00:00Z) holds "
            f"{lock_path_for(db_path)}; wait for it to finish (`ps -p {os.getpid()}` shows whether it still runs). "
            "The lock is released when that process exits, however it exits: a stale lock cannot block a run, so "
            "the file stays where it is"
        )
        assert caught.value.exit_code is ExitCode.LOCKED
    with RunLock.acquire(db_path, "report-usage", clock=clock) as again:
        assert again.held


def test_lock_held_by_another_process_names_it(db_path: Path, clock: Clock) -> None:
    child = _held_by_child(db_path)
    try:
        with pytest.raises(LockHeldError) as caught:
            RunLock.acquire(db_path, "sync-subscriptions", clock=clock)
        assert str(caught.value) == (
            f"another amplify-billing run (pid {child.pid}, `run`, started 2026-03-01T12:00:07Z) holds "
            f"{lock_path_for(db_path)}; wait for it to finish (`ps -p {child.pid}` shows whether it still runs). "
            "The lock is released when that process exits, however it exits: a stale lock cannot block a run, so "
            "the file stays where it is"
        )
    finally:
        _kill(child)


def test_a_killed_holder_does_not_block_the_next_run(db_path: Path, clock: Clock) -> None:
    child = _held_by_child(db_path)
    _kill(child)
    assert child.returncode == -signal.SIGKILL
    # the killed run's details are still in the file, but the kernel dropped its flock
    assert f'"pid": {child.pid}' in lock_path_for(db_path).read_text()
    lock = RunLock.acquire(db_path, "run", clock=clock)
    try:
        assert f'"pid": {os.getpid()}' in lock_path_for(db_path).read_text()
    finally:
        lock.release()


def test_a_lock_being_written_is_still_refused_with_a_message(db_path: Path, clock: Clock) -> None:
    # the holder has locked the file but not yet written its details
    import fcntl

    path = lock_path_for(db_path)
    path.parent.mkdir(parents=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(LockHeldError) as caught:
            RunLock.acquire(db_path, "run", clock=clock)
        assert str(caught.value) == (
            f"another amplify-billing run holds {path}; wait for it to finish (`fuser {path}` shows whether it "
            "still runs). The lock is released when that process exits, however it exits: a stale lock cannot "
            "block a run, so the file stays where it is"
        )
    finally:
        os.close(fd)


def test_lock_in_a_place_that_cannot_be_created_is_a_journal_error(tmp_path: Path, clock: Clock) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    with pytest.raises(JournalError) as caught:
        RunLock.acquire(blocker / "amplify-billing.db", "run", clock=clock)
    assert str(caught.value).startswith(f"cannot create the run lock {blocker / 'amplify-billing.db.lock'}: ")


def test_the_journal_and_its_lock_are_private_to_their_owner(tmp_path: Path, clock: Clock) -> None:
    state = tmp_path / "new-state" / "amplify-billing.db"
    old = os.umask(0o022)  # the usual umask, which would leave both readable by everyone
    try:
        Journal.open(state, clock=clock).close()
        lock = RunLock.acquire(state, "run", clock=clock)
        lock.release()
    finally:
        os.umask(old)

    assert state.stat().st_mode & 0o777 == 0o600
    assert lock_path_for(state).stat().st_mode & 0o777 == 0o600
    assert state.parent.stat().st_mode & 0o777 == 0o700


def test_the_lock_message_says_how_to_find_the_holder_and_never_to_delete_the_file(db_path: Path, clock: Clock) -> None:
    held = RunLock.acquire(db_path, "run", clock=clock)
    try:
        with pytest.raises(LockHeldError) as raised:
            RunLock.acquire(db_path, "report-usage", clock=clock)
    finally:
        held.release()
    message = str(raised.value)
    assert f"pid {os.getpid()}" in message and "`run`" in message
    assert "remove" not in message and "delete" not in message
    assert "ps -p" in message or "fuser" in message
