"""End-to-end: a journal knows whose it is, finds out when it is stale, and upgrades itself (DESIGN.md §5).

Issue 11: "A journal restored from a backup, or a second host with its own journal, posts windows again once
Recurly forgets the Idempotency-Key (its lifetime is undocumented)." One journal per Recurly site: a journal
used against another Recurly site or Amplify tenant is refused (exit 2) before anything is read from Amplify or
written anywhere; an old copy of the right journal is found stale by a sample of Recurly reads and rebuilt.
"""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from amplify_billing.changes import CommandReport
from amplify_billing.cli import run_cli
from amplify_billing.errors import ConfigError, ExitCode
from amplify_billing.journal import SCHEMA_VERSION, Journal
from amplify_billing.recurly.gateway import RecurlyGateway
from amplify_billing.sandbox.harness import SANDBOX_TENANT
from tools.driver import Cycle, amplify_writes, failed, recurly_writes

TODAY = datetime(2026, 11, 20, tzinfo=UTC)  # as in conftest.py
V1_JOURNAL = Path(__file__).resolve().parent.parent / "data" / "journal-v1.db"


# ---- helpers ---------------------------------------------------------------------------------------------


def _ok(reports: list[CommandReport]) -> None:
    for report in reports:
        assert failed(report) == [], (report.command, failed(report))
        assert report.exit_code == 0, (report.command, report.exit_code, report.note)


def _journal_path(cycle: Cycle) -> Path:
    return Path(cycle.sandbox.settings(**cycle.overrides).state.path)


def _runs(path: Path) -> int:
    with Journal.open(path, clock=lambda: TODAY) as journal:
        return len(journal.recent_runs(1000))


def _site(cycle: Cycle) -> str:
    return str(cycle.sandbox.recurly.state.site_id)


def _site_reads(cycle: Cycle, since: int = 0) -> int:
    return sum(1 for r in cycle.sandbox.recurly.requests[since:] if r.method == "GET" and r.path == "/sites")


def _copy_journal(source: Path, target: Path) -> None:
    """A file copy of a closed journal, as a backup tool would make it (WAL side files dropped, none left open)."""
    for suffix in ("-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    shutil.copyfile(source, target)


def _forget_idempotency_keys(cycle: Cycle) -> None:
    # Recurly documents no lifetime for an Idempotency-Key; the emulator remembers every key for ever and has no
    # switch to forget them, so the test empties its memory of first answers (under the emulator's lock).
    emulator = cycle.sandbox.recurly
    with emulator.lock:
        emulator._priors.clear()


def _duplicate_tags(cycle: Cycle) -> list[str]:
    tags = Counter(str(r.get("merchant_tag")) for r in cycle.sandbox.recurly.usage_records())
    return sorted(tag for tag, n in tags.items() if n > 1)


def _daily_runs(cycle: Cycle, days: int) -> None:
    for _ in range(days):
        cycle.clock.advance(timedelta(days=1))
        _ok(cycle.run())


# ---- (a) another Recurly site ------------------------------------------------------------------------------


def test_journal_used_against_another_recurly_site_is_refused_with_exit_2_and_nothing_written(
    make_cycle: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    first: Cycle = make_cycle(subscriptions=4, seed=3)
    _ok(first.run())
    journal = _journal_path(first)
    other: Cycle = make_cycle(subscriptions=4, seed=4)
    assert _site(other) != _site(first)
    other.overrides["state"] = {"path": str(journal)}
    runs = _runs(journal)

    for dry_run in (False, True):
        # `run` stops at its first step with that step's exit code and the message
        (report,) = other.run(dry_run=dry_run)
        assert (report.command, report.exit_code, report.results) == ("sync-plans", ExitCode.CONFIG, ())
        message = report.note or ""
        for part in (_site(first), _site(other), str(journal), "state.path", "one journal per Recurly site"):
            assert part in message, (part, message)

    # refused before anything else: no Amplify request at all, one read of the site from Recurly per run
    assert other.sandbox.amplify.requests == []
    assert [(r.method, r.path) for r in other.sandbox.recurly.requests] == [("GET", "/sites")] * 2
    assert _runs(journal) == runs

    # and through the command line, as cron meets it
    config = other.sandbox.write_config(other.sandbox.state_dir / "other.yaml", state={"path": str(journal)})
    assert run_cli(["--config", str(config), "sync-plans"]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert _site(first) in err and _site(other) in err
    assert recurly_writes(other.sandbox) == [] and amplify_writes(other.sandbox) == []
    assert _runs(journal) == runs

    # the journal's own site still works with it
    _ok(first.run())


# ---- (b) another Amplify tenant ----------------------------------------------------------------------------


def test_journal_used_against_another_amplify_tenant_is_refused_with_exit_2_and_nothing_written(
    make_cycle: Any,
) -> None:
    cycle: Cycle = make_cycle(subscriptions=4)
    _ok(cycle.run())
    journal = _journal_path(cycle)
    runs = _runs(journal)
    amplify_seen, recurly_seen = len(cycle.sandbox.amplify.requests), len(cycle.sandbox.recurly.requests)
    other_tenant = "100000000000777"
    cycle.overrides["amplify"] = {"tenant_id": other_tenant}

    with pytest.raises(ConfigError) as refused:
        cycle.report_usage()
    assert refused.value.exit_code is ExitCode.CONFIG
    message = str(refused.value)
    for part in (SANDBOX_TENANT, other_tenant, str(journal), "state.path", "one journal per Recurly site"):
        assert part in message, (part, message)
    assert cycle.sandbox.amplify.requests[amplify_seen:] == []
    assert recurly_writes(cycle.sandbox, recurly_seen) == []
    assert _runs(journal) == runs


# ---- ownership is recorded by the first real run, once, for one read ---------------------------------------


def test_first_real_run_records_the_owner_a_dry_run_only_checks_and_each_run_reads_the_site_once(
    make_cycle: Any,
) -> None:
    cycle: Cycle = make_cycle(subscriptions=4)
    journal = _journal_path(cycle)
    cycle.run(dry_run=True)
    if journal.exists():
        with Journal.open(journal, clock=cycle.clock) as opened:
            assert opened.owner() is None  # a dry run writes nothing, not even whose the journal is

    seen = len(cycle.sandbox.recurly.requests)
    _ok(cycle.run())
    assert _site_reads(cycle, seen) == 1  # one Recurly read for the four commands of `run`
    with Journal.open(journal, clock=cycle.clock) as opened:
        owner = opened.owner()
    assert owner is not None
    assert (owner.recurly_site_id, owner.recurly_subdomain, owner.amplify_tenant_id) == (
        _site(cycle),
        "sandbox",
        SANDBOX_TENANT,
    )

    seen = len(cycle.sandbox.recurly.requests)
    cycle.clock.advance(timedelta(days=1))
    _ok(cycle.run())
    assert _site_reads(cycle, seen) == 1


# ---- (c) a journal restored from a backup ------------------------------------------------------------------


def _restored(make_cycle: Any) -> tuple[Cycle, Path, Path]:
    """Daily runs from day 0 to day 7, with the journal copied after day 3's run and put back after day 7's;
    Recurly then forgets every Idempotency-Key. Returns the cycle, the journal path and a copy of the day-7
    journal (the up-to-date one)."""
    cycle: Cycle = make_cycle(subscriptions=12)
    _ok(cycle.run())
    _daily_runs(cycle, 3)
    journal = _journal_path(cycle)
    backup = journal.with_name("backup-day3.db")
    _copy_journal(journal, backup)
    _daily_runs(cycle, 4)
    current = journal.with_name("current-day7.db")
    _copy_journal(journal, current)
    _copy_journal(backup, journal)
    _forget_idempotency_keys(cycle)
    return cycle, journal, current


def _known_pairs(journal: Journal) -> list[tuple[str, str, str, str]]:
    return sorted(
        {(e.subscription_id, e.quota_id, e.recurly_subscription_id, e.add_on_code) for e in journal.usage_entries()}
    )


def test_a_restored_journal_is_found_stale_by_a_sample_of_recurly_reads(make_cycle: Any) -> None:
    from amplify_billing.usage.journal_check import SamplePair, check_sample

    cycle, journal_path, current_path = _restored(make_cycle)
    settings = cycle.sandbox.settings(**cycle.overrides)
    gateway = RecurlyGateway(settings.recurly)
    now = cycle.clock()
    try:
        with Journal.open(journal_path, clock=cycle.clock) as journal:
            pairs = [SamplePair(*p) for p in _known_pairs(journal)]
            assert len(pairs) > settings.state.verify_sample  # a sample, not every pair
            seen = len(cycle.sandbox.recurly.requests)
            check = check_sample(journal, gateway, pairs, settings.state.verify_sample, now)
            assert check.stale, check
            assert 1 <= check.reads <= settings.state.verify_sample
            assert len(cycle.sandbox.recurly.requests) - seen == check.reads
            assert check.evidence is not None
            # the evidence is one of our records in Recurly that the restored ledger does not hold
            assert check.evidence in {str(r["merchant_tag"]) for r in cycle.sandbox.recurly.usage_records()}
            assert check.evidence not in {e.merchant_tag for e in journal.usage_entries()}
            assert check.evidence in check.summary()
        with Journal.open(current_path, clock=cycle.clock) as journal:
            pairs = [SamplePair(*p) for p in _known_pairs(journal)]
            checks = []
            for _ in range(3):
                checks.append(check_sample(journal, gateway, pairs, 2, now))
                # report-usage records where the rotation stands (a planned journal change)
                journal.set_sample_cursor(checks[-1].cursor or "")
        # the up-to-date journal is not stale, and successive runs read different pairs
        assert [c.stale for c in checks] == [False, False, False]
        assert all(c.reads == 2 for c in checks)
        assert len(pairs) >= 6
        first, second, third = (set(c.pairs) for c in checks)
        assert first.isdisjoint(second) and second.isdisjoint(third) and first.isdisjoint(third)
    finally:
        gateway.close()


def test_a_restored_journal_is_rebuilt_from_recurly_and_posts_no_window_twice(make_cycle: Any) -> None:
    cycle, _, _ = _restored(make_cycle)
    before = {str(r["merchant_tag"]): r["amount"] for r in cycle.sandbox.recurly.usage_records()}
    assert _duplicate_tags(cycle) == []

    reports = cycle.run()
    assert _duplicate_tags(cycle) == []
    after = {str(r["merchant_tag"]): r["amount"] for r in cycle.sandbox.recurly.usage_records()}
    assert after == before  # the traffic did not change: nothing to post
    (usage,) = [r for r in reports if r.command == "report-usage"]
    said = " ".join([usage.note or "", *(r.change.summary for r in usage.results)]).lower()
    assert "stale" in said, said


# ---- an upgraded schema-1 journal works for a real run ------------------------------------------------------


def test_a_journal_of_the_schema_1_release_is_upgraded_and_a_run_against_it_works(make_cycle: Any) -> None:
    cycle: Cycle = make_cycle(subscriptions=4)
    journal = _journal_path(cycle)
    journal.parent.mkdir(parents=True, exist_ok=True)
    _copy_journal(V1_JOURNAL, journal)
    runs = _runs(journal)  # opening it upgrades it
    reports = [cycle.sync_plans()]
    _ok(reports)
    with Journal.open(journal, clock=cycle.clock) as opened:
        assert len(opened.recent_runs(1000)) == runs + 1
        owner = opened.owner()
        assert owner is not None and owner.recurly_site_id == _site(cycle)
    import sqlite3

    with sqlite3.connect(journal) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
