"""doctor's verdicts as pure functions: sampling, the literal census, the usage count. No I/O at all."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from amplify_billing.reconcile.doctor_census import census, census_check
from amplify_billing.reconcile.doctor_checks import Verdict
from amplify_billing.reconcile.doctor_sampling import InvoicedUnits, JournalCounts, sampling_check
from amplify_billing.reconcile.doctor_usage import UsageEvidence, count_check

NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)
DAY = timedelta(days=1)
D0 = datetime(2026, 11, 17, tzinfo=UTC)
PAIR = ("s1", "q1")


def journal(*daily: tuple[date, int], through: datetime = D0 + 3 * DAY) -> JournalCounts:
    return JournalCounts({(*PAIR, day): Decimal(units) for day, units in daily}, {PAIR: (D0, through)})


def invoice(start: datetime, units: int, days: int = 1) -> InvoicedUnits:
    return InvoicedUnits(*PAIR, start, start + days * DAY, units)


def test_sampled_when_the_journal_counted_under_99_percent_of_the_invoiced_units() -> None:
    counts = journal((D0.date(), 97), ((D0 + DAY).date(), 100))

    check = sampling_check([invoice(D0, 100), invoice(D0 + DAY, 100)], counts, now=NOW, retention=7 * DAY)

    assert check.verdict is Verdict.ACTION
    assert check.evidence == (
        "summaries are sampled: this source under-bills; Traceability counted 197 of 200 units Amplify invoiced "
        "over 2 interval(s) (98.5%)"
    )


def test_at_99_percent_or_more_the_source_is_not_sampled() -> None:
    check = sampling_check(
        [invoice(D0, 200, days=2)], journal((D0.date(), 99), ((D0 + DAY).date(), 100)), now=NOW, retention=7 * DAY
    )

    assert (check.verdict, check.evidence) == (
        Verdict.OK,
        "Traceability counted 199 of 200 units Amplify invoiced over 1 interval(s) (99.5%): not sampled",
    )


def test_only_whole_days_inside_retention_and_the_journals_span_are_compared() -> None:
    counts = journal((D0.date(), 10))
    partial = InvoicedUnits(*PAIR, D0 + timedelta(hours=6), D0 + DAY, 100)
    too_old = invoice(NOW - 9 * DAY, 100)
    beyond = invoice(D0 + 3 * DAY, 100)  # after the journal's watermark
    other = InvoicedUnits("s2", "q1", D0, D0 + DAY, 100)  # a pair the journal never counted

    check = sampling_check([partial, too_old, beyond, other], counts, now=NOW, retention=7 * DAY)

    assert check.verdict is Verdict.UNKNOWN
    assert check.evidence.startswith(
        "no second count of the same traffic: none of 4 invoiced interval(s) covers whole days inside the 7-day "
        "retention that the journal counted;"
    )


def test_without_invoices_or_journal_the_verdict_is_unknown_and_says_agents_sample() -> None:
    no_invoices = sampling_check([], journal(), now=NOW, retention=7 * DAY)
    no_journal = sampling_check([invoice(D0, 5)], None, now=NOW, retention=7 * DAY, why_none="no journal yet at x")

    assert no_invoices.verdict is no_journal.verdict is Verdict.UNKNOWN
    assert no_journal.evidence == (
        "no second count of the same traffic: no journal yet at x; agents sample transaction summaries by default "
        "(an unsampled transaction leaves no trace in Traceability), so counts may under-bill"
    )


def test_the_census_counts_each_value_and_names_what_an_unknown_one_holds_back() -> None:
    plans = [
        {"name": "gold", "spec": {"type": "paid", "billing": {"interval": "monthly"}}},
        {"name": "free", "spec": {"type": "free"}},
        {"name": "odd", "spec": {"type": "tiered-plan", "billing": {"interval": "weekly"}}},
    ]
    quotas = [{"name": "calls", "metadata": {"scope": {"name": "gold"}}, "spec": {"pricing": {"type": "perUnit"}}}]
    subscriptions = [
        {"name": "s1", "approval": {"state": "approved"}, "state": {"name": "migrating"}},
        {"name": "s2", "approval": {"state": "waiting"}},
    ]

    rows = {(r.field, r.value): r for r in census(plans, quotas, subscriptions)}
    check = census_check(list(rows.values()))

    assert rows[("billing interval", "(none)")].known and rows[("billing interval", "(none)")].example == "free"
    assert rows[("subscription state", "migrating")].known
    assert rows[("limit type", "(none)")].example == "gold/calls"
    assert check.verdict is Verdict.ACTION
    assert check.evidence == (
        "plan type 'tiered-plan' holds back 1 plan(s): odd; billing interval 'weekly' holds back 1 plan(s): odd; "
        "approval state 'waiting' holds back 1 subscription(s): s2"
    )


def test_a_grouped_answer_that_is_full_or_short_is_shown_cut() -> None:
    usage = UsageEvidence("traceability", 7 * DAY, start=D0, end=D0 + DAY, limit=3, terms=3, grouped=90, total=100)

    check = count_check(usage)

    assert check.verdict is Verdict.OK
    assert check.evidence.endswith(
        "grouped by subscription and quota with limit 3: 3 subscription term(s), cut (90 of 100 units in groups; "
        "report-usage splits such an answer until whole)"
    )


def test_importing_the_doctor_verdicts_loads_no_io_library() -> None:
    code = (
        "import json, sys\n"
        "import amplify_billing.reconcile.doctor\n"
        "print(json.dumps(sorted(m for m in ('requests', 'recurly', 'sqlite3', 'yaml', 'rich') if m in sys.modules)))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(loaded) == []
