"""``python -m tools.bench --mode marketplace``: what marketplace mode costs per invoice, next to its minimum.

Issue 15: in marketplace mode (``billing.mode: marketplace``) Amplify rates and meters, and writes a
``SubscriptionInvoice`` for each subscription of a Marketplace with Custom billing: at approval (the base price and
the setup fee), at each month's end (the base price and the period's consumption) and at cancellation.
``sync-invoices`` makes each one with something to pay one Recurly invoice (one ``create_purchase``), writes
``billing.payment`` then state ``open`` back to Amplify, and on later runs follows Recurly's invoice until it is
paid (state ``paid``, status ``Success``); one with nothing to pay is marked ``paid`` at once
(docs/architecture.md, "Where each rule lives").

The scenario is recurly mode's (``tools/bench.py``: the same seed and size), its Marketplace switched to Custom
billing and ``billing.mode: marketplace`` with ``collection_method: automatic``: the emulated Recurly site keeps a
valid test card on every account, so each purchase is charged at once and answers ``paid``, as for a consumer who
entered a card on the hosted page. The real tool runs as cron runs it (``run`` in a child process, the clock
pinned), five times; before each, the emulated Amplify issues what is due by then (``InvoiceIssuer.issue``):

- ``initial`` (the traffic's start): the initial invoices of the approved subscriptions, and the cancellation ones
  of those cancelled before; the run makes the consumers' accounts and the catalog, and sends every invoice;
- ``paid`` (an hour later): nothing new; Recurly says paid, so each sent invoice becomes paid in Amplify;
- ``period`` (3 am after the month's end): the period invoices, with the month's consumption, sent;
- ``period-paid`` (an hour later): those become paid;
- ``steady`` (an hour later): nothing is left to do, so nothing is written.

Requests are counted on the emulators' side as in recurly mode, and ``run``'s planning pass is timed step by step,
so ``sync-invoices``' requests are its own in both passes (with Amplify's invoice listing, which link-accounts may
make first: the run shares it). "Per invoice" divides them by the invoices the phase
acts on: new ones, ones with nothing to pay, and the ones followed.

The minimum is derived from Amplify's invoices alone (what ``issue`` made before each run), never from what the
tool did, under this protocol (the write-back makes an invoice ``open``; a later run follows it):

- per new invoice with something to pay: 1 Recurly ``POST /purchases``; 2 Amplify PUTs (``billing`` subresource,
  then ``state`` open). No scan of the account's invoices for the ``po_number``: the journal records an intent
  before each purchase, so only an intent a killed run left open needs one (and the Idempotency-Key covers a
  repeat within the run). The pay link and whether a card is on file come from the accounts listing the cycle
  reads anyway, or from the answer of the account's create: no account read;
- per new invoice with nothing to pay: 1 Amplify PUT (``state`` paid), nothing in Recurly;
- per invoice followed (sent by the run before, paid since): 2 Amplify PUTs (``state`` paid, ``status``
  Success); its Recurly state read in pages of 200 ids (``GET /invoices?ids=…``, Recurly's limit for ``ids``);
- per run: the actionable invoices listed once, in pages of ``amplify.page_size`` but at most 100 (the largest page
  the API serves, as recurly mode counts every Amplify listing; an empty listing costs one request); the currency
  of a payable invoice that names none, read once per plan the catalog listing lacks.

To this the minimum of the rest of the cycle is added, as recurly mode derives it (``tools/bench.py``): a token,
each catalog listing and the catalog's writes on the first run (``sync-plans`` keeps the Recurly catalog whatever
the mode), each Recurly listing once with its completeness proof (the site, whose subdomain also makes the pay
links; the count of live subscriptions). In this mode one listing of the Marketplace's subscriptions serves both
questions (none is Recurly's to bill; whose consumers need an account). The accounts: on the first run one per
owner of a pending or live subscription of the Marketplace, whatever its plan (link-accounts' rule), and on any run
one per owner of an invoice to pay who has none yet (a subscription that ended before the first run still owes its
invoices), each with the Platform reads its name and e-mail need. No traceability count, no usage record: Amplify
meters.

An implementation that took the purchase's answer (``paid``) at once would save the follow-up's listing pages and
``ids`` pages too; the minimum does not assume it, since the write-back makes the invoice ``open`` first.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.bench import (
    AMPLIFY_PAGE,
    DAYS_OF_TRAFFIC,
    PLANNING,
    QUOTAS_PER_PLAN,
    RATE_LIMITS,
    SUBSCRIPTIONS_PER_PLAN,
    SYSTEMS,
    BenchOptions,
    Check,
    Line,
    Minimum,
    RunMeasure,
    SizeResult,
    _fmt_ratio,
    _json_ratio,
    _owners,
    _pages,
    _ratio,
    _run_tool,
    _total,
    bench_scenario,
    catalog_reads,
    figure_table,
    first_run_writes,
    memory_check,
    ratio_check,
    recurly_reads,
    render_checks,
    render_runs,
    run_document,
    size_document,
    start_sandbox,
    steady_check,
    tally,
)

if TYPE_CHECKING:
    from rich.console import Console

    from amplify_billing.sandbox.harness import Sandbox
    from amplify_billing.sandbox.scenario import Scenario

COMMAND = "sync-invoices"
BILLING = {"mode": "marketplace", "collection_method": "automatic"}
MONTH_END = datetime(2026, 12, 1, tzinfo=UTC)  # the first month end after the scenario's traffic (TODAY)
RECURLY_IDS = 200  # ids one GET /invoices?ids=… takes (Recurly's limit for ``ids``)
MAX_INVOICE_RATIO = 1.1


def schedule(scenario: Scenario) -> tuple[tuple[str, datetime], ...]:
    """The runs, in order: (phase, when). Amplify's invoicing job runs just before each."""
    return (
        ("initial", scenario.traffic_start),
        ("paid", scenario.traffic_start + timedelta(hours=1)),
        ("period", MONTH_END + timedelta(hours=3)),
        ("period-paid", MONTH_END + timedelta(hours=4)),
        ("steady", MONTH_END + timedelta(hours=5)),
    )


# ---- what each phase gives the tool to do ------------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceWork:
    """What a phase gives sync-invoices to do, from Amplify's invoices alone (not from what the tool did)."""

    new: int  # drafts with something to pay: one Recurly invoice each
    free: int  # drafts with a total of 0: paid in Amplify, no Recurly invoice
    followed: int  # sent by the run before (open in Amplify, paid in Recurly since)
    plans_without_currency: int = 0  # plans of payable drafts naming no currency, not in the catalog listing

    @property
    def listed(self) -> int:
        """The actionable invoices the listing returns: the drafts and the open ones."""
        return self.new + self.free + self.followed

    @property
    def acted_on(self) -> int:
        return self.listed


def payers(issued: Sequence[Mapping[str, Any]]) -> list[str]:
    """The subscriptions (by name, the invoice's scope) of the invoices with something to pay."""
    return [str(i["metadata"]["scope"]["name"]) for i in issued if _amount(i) > 0]


def work_of(issued: Sequence[Mapping[str, Any]], sent_before: int, listed_plans: frozenset[str]) -> InvoiceWork:
    """The work of a phase whose run comes after Amplify issued ``issued``, ``sent_before`` invoices having been
    sent by the run before."""
    payable = [i for i in issued if _amount(i) > 0]
    no_currency = {
        str(i["spec"]["cost"]["plan"]["name"]) for i in payable if not i["spec"]["cost"]["plan"].get("currency")
    }
    return InvoiceWork(len(payable), len(issued) - len(payable), sent_before, len(no_currency - listed_plans))


def _amount(invoice: Mapping[str, Any]) -> Decimal:
    """The invoice's ``spec.cost.total`` (a JSON number) as money."""
    return Decimal(str(invoice["spec"]["cost"]["total"]))


# ---- the minimum ----------------------------------------------------------------------------------------------


def invoice_lines(work: InvoiceWork, page: int) -> dict[str, list[Line]]:
    """The least sync-invoices needs for ``work`` (the derivation is the module's docstring)."""
    amplify: list[Line] = [
        ("GET", _pages(work.listed, page), f"SubscriptionInvoice listing, actionable ({work.listed})")
    ]
    recurly: list[Line] = []
    if work.plans_without_currency:
        amplify.append(("GET", work.plans_without_currency, "plans whose currency a payable invoice lacks"))
    if work.new:
        amplify += [("PUT", work.new, "billing.payment of each new Recurly invoice"), ("PUT", work.new, "state open")]
        recurly.append(("POST", work.new, "purchases, one per invoice with something to pay"))
    if work.free:
        amplify.append(("PUT", work.free, "state paid of invoices with nothing to pay"))
    if work.followed:
        amplify += [("PUT", work.followed, "state paid (followed)"), ("PUT", work.followed, "status Success")]
        ids = math.ceil(work.followed / RECURLY_IDS)
        recurly.append(("GET", ids, f"states of the {work.followed} invoices followed, {RECURLY_IDS} ids a request"))
    return {"amplify": amplify, "recurly": recurly}


def invoiced_live(scenario: Scenario) -> list[str]:
    """The Marketplace's subscriptions whose owner needs an account (link-accounts: pending, or approved and not
    ended), whatever their plan: Amplify's invoices bill them all."""
    from amplify_billing.amplify import literals

    names: list[str] = []
    for s in scenario.subscriptions:
        approval = (s.get("approval") or {}).get("state")
        state = (s.get("state") or {}).get("name") if isinstance(s.get("state"), dict) else None
        if approval == literals.APPROVAL_PENDING or (
            approval == literals.APPROVAL_APPROVED and (state is None or state in literals.BILLED_STATES)
        ):
            names.append(s["name"])
    return names


@dataclass(frozen=True)
class Accounts:
    """The Recurly accounts a phase's run must create, the Platform users their e-mails come from, and how many
    exist before it."""

    new: int
    users: int
    before: int


def accounts_needed(scenario: Scenario, payers: Mapping[str, Sequence[str]]) -> dict[str, Accounts]:
    """Per phase (in order), given the subscriptions whose invoices it sends (``payers``): the first run makes one
    account per owner of a pending or live subscription (link-accounts' rule), and any run one per owner of an
    invoice to pay who has none yet (a subscription that ended before the first run still owes its invoices)."""
    made: set[str] = set()
    found: dict[str, Accounts] = {}
    for index, (phase, names) in enumerate(payers.items()):
        wanted = [*invoiced_live(scenario), *names] if index == 0 else list(names)
        codes, users, _teams = _owners(scenario, [n for n in wanted if scenario.account_code(n) not in made])
        found[phase] = Accounts(len(codes), len(users), len(made))
        made |= codes
    return found


def cycle_lines(scenario: Scenario, phase: str, accounts: Accounts, team_page: int) -> dict[str, list[Line]]:
    """The least the rest of a marketplace-mode `run` needs (recurly mode's derivation, ``tools/bench.py``)."""
    listed = sum(1 for s in scenario.subscriptions if (s.get("marketplace") or {}).get("name"))
    supported = scenario.supported_plans
    usage_quotas = sum(len(scenario.usage_quotas[p]) for p in supported)
    amplify = [
        *catalog_reads(scenario),
        ("GET", _pages(listed, AMPLIFY_PAGE), f"subscriptions of the invoiced Marketplace ({listed})"),
    ]
    first = phase == "initial"
    recurly = recurly_reads((0, 0, 0, 0, 0) if first else (1, len(supported), usage_quotas, accounts.before, 0))
    if first:
        first_amplify, first_recurly = first_run_writes(scenario, accounts.users, team_page)
        amplify += first_amplify
        recurly += first_recurly
    elif accounts.new:
        teams = len(scenario.teams)
        amplify += [
            ("GET", _pages(teams, team_page), f"Platform team listing ({teams} teams)"),
            ("GET", accounts.users, "Platform users whose e-mail a new account needs"),
        ]
    if accounts.new:
        recurly.append(("POST", accounts.new, "accounts"))
    return {"amplify": amplify, "recurly": recurly}


def minimums(
    scenario: Scenario, phase: str, work: InvoiceWork, accounts: Accounts, *, page: int, team_page: int
) -> tuple[Minimum, Minimum]:
    """(the whole run's minimum, sync-invoices' part of it)."""
    cycle = cycle_lines(scenario, phase, accounts, team_page)
    invoices = invoice_lines(work, page)
    whole = tally({system: [*cycle[system], *invoices[system]] for system in SYSTEMS})
    return Minimum(*whole, windows=0, usage_writes=0), Minimum(*tally(invoices), windows=0, usage_writes=0)


# ---- measuring ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Where the bench left both systems: what Amplify invoiced, what Recurly made of it."""

    amplify_invoices: int
    to_pay: int  # with a total above 0
    states: dict[str, int]  # "state/status" -> Amplify invoices
    recurly_invoices: int  # with a po_number (the tool's)
    once_each: bool  # each Amplify invoice to pay has exactly one Recurly invoice, named by its po_number

    @property
    def settled(self) -> bool:
        """Each invoice to pay ended paid in both systems, each with nothing to pay paid in Amplify, once each."""
        paid = self.states.get("paid/Success", 0)
        return self.once_each and paid == self.to_pay and sum(self.states.values()) == paid + self.free_paid

    @property
    def free_paid(self) -> int:
        return sum(n for key, n in self.states.items() if key.startswith("paid/") and key != "paid/Success")


def outcome_of(sandbox: Sandbox) -> Outcome:
    from amplify_billing.reconcile.invoice_lines import po_number
    from amplify_billing.sandbox import recurly_invoices

    amplify = sandbox.amplify.resources("SubscriptionInvoice")
    to_pay = {i["metadata"]["id"] for i in amplify if _amount(i) > 0}
    made = Counter(str(r["po_number"]) for r in recurly_invoices.invoices(sandbox.recurly) if r.get("po_number"))
    states = Counter(f"{i['state']['name']}/{i['status']['level']}" for i in amplify)
    return Outcome(
        amplify_invoices=len(amplify),
        to_pay=len(to_pay),
        states=dict(sorted(states.items())),
        recurly_invoices=sum(made.values()),
        once_each=made == Counter({po_number(i): 1 for i in to_pay}),
    )


@dataclass(frozen=True)
class InvoiceResult:
    size: SizeResult  # the runs and the whole runs' minimums, as recurly mode has them
    work: dict[str, InvoiceWork]
    invoice_minimums: dict[str, Minimum]
    outcome: Outcome


# Amplify's invoice listing is read once a run by whichever step asks first (link-accounts, for the owners of
# invoices still to send, then sync-invoices): it is sync-invoices' protocol wherever it is counted
SHARED_ROUTES = frozenset({"GET list_subscriptioninvoices"})


def command_requests(run: RunMeasure, command: str = COMMAND) -> dict[str, dict[str, int]]:
    """A command's requests per system and method, in both passes of `run` (its planning step, and itself), with
    the invoice listing wherever it was made (``SHARED_ROUTES``)."""
    own = (f"{PLANNING} {command}", command)
    found: dict[str, dict[str, int]] = {}
    for step, systems in run.by_command.items():
        for system, routes in systems.items():
            methods = found.setdefault(system, {})
            for key, count in routes.items():
                if step in own or key in SHARED_ROUTES:
                    method = key.split(" ", 1)[0]
                    methods[method] = methods.get(method, 0) + count
    return {system: dict(sorted(found.get(system, {}).items())) for system in SYSTEMS}


def bench_size(subscriptions: int, options: BenchOptions, *, inspect: Any = None) -> InvoiceResult:
    """Seed the scenario with its Marketplace on Custom billing, run the tool at each phase, measure each run.
    ``inspect(sandbox, runs)``: called before the emulators stop (the tests compare their own logs)."""
    from amplify_billing.sandbox.amplify_invoices import InvoiceIssuer, enable_custom_billing

    began = time.perf_counter()
    scenario = bench_scenario(subscriptions, options)
    listed_plans = frozenset(scenario.opted_in_plans)
    with tempfile.TemporaryDirectory(prefix="amplify-billing-bench-") as temp:
        sandbox, taps, state = start_sandbox(
            scenario, (options.keep_dir or Path(temp)) / f"n{subscriptions}-mp", options
        )
        enable_custom_billing(sandbox.amplify, scenario.marketplace)
        settings = sandbox.settings(billing=BILLING)
        concurrency = options.concurrency or settings.recurly.concurrency
        config = sandbox.write_config(state / "config.yaml", recurly={"concurrency": concurrency}, billing=BILLING)
        issuer = InvoiceIssuer(sandbox.amplify)
        setup = time.perf_counter() - began
        runs: list[RunMeasure] = []
        work: dict[str, InvoiceWork] = {}
        paying: dict[str, list[str]] = {}
        try:
            sent = 0
            for phase, now in schedule(scenario):
                sandbox.clock.set(now)  # type: ignore[attr-defined]  # a VirtualClock: Amplify issues at ``now``
                issued = issuer.issue(now)
                work[phase] = work_of(issued, sent, listed_plans)
                paying[phase] = payers(issued)
                sent = work[phase].new
                runs.append(
                    _run_tool(sandbox, taps, config, now, phase, options.trace_memory, concurrency, planning_steps=True)
                )
            if inspect is not None:
                inspect(sandbox, runs)
            outcome = outcome_of(sandbox)
        finally:
            sandbox.stop()
    team_page = settings.amplify.page_size
    accounts = accounts_needed(scenario, paying)
    page = min(team_page, AMPLIFY_PAGE)  # the sandbox asks for 500; Amplify serves pages of at most 100
    least = {p: minimums(scenario, p, work[p], accounts[p], page=page, team_page=team_page) for p in work}
    size = SizeResult(
        subscriptions=subscriptions,
        plans=len(scenario.supported_plans),
        usage_quotas=sum(len(scenario.usage_quotas[p]) for p in scenario.supported_plans),
        live_subscriptions=len(invoiced_live(scenario)),
        latency_ms=options.latency_ms,
        concurrency=concurrency,
        runs=tuple(runs),
        minimums={p: whole for p, (whole, _part) in least.items()},
        setup_seconds=setup,
    )
    return InvoiceResult(size, work, {p: part for p, (_whole, part) in least.items()}, outcome)


def run_bench(options: BenchOptions) -> list[InvoiceResult]:
    return [bench_size(n, options) for n in options.sizes]


# ---- figures --------------------------------------------------------------------------------------------------


def invoice_figures(run: RunMeasure, work: InvoiceWork, least: Minimum) -> dict[str, Any]:
    """sync-invoices alone in one run: its requests (both passes) against its minimum, per invoice acted on."""
    requests = command_requests(run)
    total = sum(_total_of(requests, s) for s in SYSTEMS)
    need = sum(_total_of(least.requests, s) for s in SYSTEMS)
    acted = work.acted_on
    return {
        "new_invoices": work.new,
        "nothing_to_pay": work.free,
        "followed": work.followed,
        "acted_on": acted,
        "requests": requests,
        "minimum": least.requests,
        "minimum_reasons": least.reasons,
        "total": total,
        "minimum_total": need,
        "per_invoice": round(total / acted, 3) if acted else None,
        "minimum_per_invoice": round(need / acted, 3) if acted else None,
        "ratio": _json_ratio(_ratio(total, need)),
    }


def _total_of(requests: Mapping[str, Mapping[str, int]], system: str) -> int:
    return _total(dict(requests.get(system, {})))


def checks(result: InvoiceResult) -> list[Check]:
    size, outcome = result.size, result.outcome
    figures = {r.phase: invoice_figures(r, result.work[r.phase], result.invoice_minimums[r.phase]) for r in size.runs}
    shown = ", ".join(f"{p} {_fmt_ratio(_ratio(f['total'], f['minimum_total']))}" for p, f in figures.items())
    worst = max(f["total"] / f["minimum_total"] for f in figures.values())
    return [
        steady_check(size.run("steady")),
        (
            "each Amplify invoice to pay became one Recurly invoice, and ended paid",
            outcome.settled,
            f"{outcome.to_pay:,} to pay of {outcome.amplify_invoices:,}; {outcome.recurly_invoices:,} Recurly "
            f"invoices; Amplify states {outcome.states}",
        ),
        (f"sync-invoices' calls over its minimum below {MAX_INVOICE_RATIO}", worst < MAX_INVOICE_RATIO, shown),
        ratio_check(size),
        memory_check(size.runs),
    ]


def document(results: Sequence[InvoiceResult]) -> dict[str, Any]:
    """The marketplace benchmark as one JSON document, in recurly mode's shape (``tools/bench.py``)."""
    return {
        "mode": "marketplace",
        "billing": BILLING,
        "scenario": {
            "days_of_traffic": DAYS_OF_TRAFFIC,
            "subscriptions_per_plan": SUBSCRIPTIONS_PER_PLAN,
            "quotas_per_plan": QUOTAS_PER_PLAN,
            "month_end": MONTH_END.isoformat(),
        },
        "rate_limits_per_minute": RATE_LIMITS,
        "sizes": [
            {
                **size_document(r.size),
                "runs": [
                    run_document(
                        run,
                        r.size.minimums[run.phase],
                        sync_invoices=invoice_figures(run, r.work[run.phase], r.invoice_minimums[run.phase]),
                    )
                    for run in r.size.runs
                ],
                "outcome": {**vars(r.outcome), "settled": r.outcome.settled},
                "checks": [{"check": c, "met": met, "figures": text} for c, met, text in checks(r)],
            }
            for r in results
        ],
    }


# ---- rendering ------------------------------------------------------------------------------------------------


def render(console: Console, results: Sequence[InvoiceResult]) -> None:
    for result in results:
        size = result.size
        console.rule(
            f"marketplace mode: {size.subscriptions:,} subscriptions ({size.live_subscriptions:,} live), "
            f"{result.outcome.amplify_invoices:,} Amplify invoices; collection automatic (a card on file); "
            f"latency {size.latency_ms:g} ms; recurly.concurrency {size.concurrency}"
        )
        render_runs(console, size)
        table = figure_table(
            f"{COMMAND}: its requests (both passes of `run`) per invoice, against its minimum",
            "new",
            "nothing to pay",
            "followed",
            "Amplify",
            "min",
            "Recurly",
            "min",
            "per invoice",
            "min per invoice",
            "ratio",
        )
        for run in size.runs:
            f = invoice_figures(run, result.work[run.phase], result.invoice_minimums[run.phase])
            table.add_row(
                run.phase,
                f"{f['new_invoices']:,}",
                f"{f['nothing_to_pay']:,}",
                f"{f['followed']:,}",
                f"{_total_of(f['requests'], 'amplify'):,}",
                f"{_total_of(f['minimum'], 'amplify'):,}",
                f"{_total_of(f['requests'], 'recurly'):,}",
                f"{_total_of(f['minimum'], 'recurly'):,}",
                "-" if f["per_invoice"] is None else f"{f['per_invoice']:.2f}",
                "-" if f["minimum_per_invoice"] is None else f"{f['minimum_per_invoice']:.2f}",
                _fmt_ratio(_ratio(f["total"], f["minimum_total"])),
            )
        console.print(table)
        render_checks(console, checks(result))
