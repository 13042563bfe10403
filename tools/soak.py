"""The fault soak: a large scenario, both systems failing in every way, the process killed at random points.

The emulators of Amplify and Recurly run in this process; the tool runs as a real child process
(``python -m amplify_billing --config … run``), exactly as cron would start it. Both billing modes run side by side
(``tools/soak_invoices.py``): the scenario's Marketplace in recurly mode (Recurly plans, subscriptions, usage), and
a Partner Marketplace with a third of the subscriptions in marketplace mode, whose invoices Amplify issues while the
soak runs (initial ones, then the provider's approvals, then a month end with the period's consumption) and
``sync-invoices`` makes Recurly invoices. The soak:

0. **Reference** (unless turned off): clean runs of the same scenario in a fresh sandbox, every Amplify event
   before the first, until one writes nothing. Their size (requests, writes) sets the range of the kill points;
   their final state is what the soak must end in.
1. **Storm**: ``storm_runs`` runs with faults injected on both emulators at ``fault_rate`` of all requests,
   spread evenly over every kind of ``server.FAULT_KINDS`` (429, 500, 502, 503, an empty error body, an answer
   later than the client's timeout, the connection dropped before or after the server acted). Every storm run
   but the last is armed to be SIGKILLed at a random point of the work probably left: mostly at the n-th write,
   sometimes at the n-th request of any kind. The kill comes *in flight* (the server applies the request, then
   the client dies before the answer, as in ``tests/e2e/test_crash_matrix.py``), *before* (the client dies as its
   request arrives, which is never applied) or *between* (a few milliseconds after an answer, while the client
   records it). A run that finishes before its kill point is not killed. The last storm run is never killed, to
   show a whole run under faults. Amplify's events come between runs, spread over the storm
   (``soak_invoices.stage_of_storm``), so that the purchases (``POST /purchases``), the scans of an account's
   invoices and the Amplify invoice writes (``billing``, ``state``, ``status``) meet faults and kills too.
2. **Calm**: faults off; runs until one exits 0 and writes nothing to either system (at most ``calm_runs``).
   The soak *converges* when such a quiet run happens.

Then the state is checked against what it must be, independently of the tool's own code:

- every plan as the catalog says (code, name, price, setup fee, interval, cycles, add-ons and their tier type),
  and no other active plan;
- every live Amplify subscription of a recurly-mode Marketplace on a billed plan has exactly one Recurly
  subscription, active, on its plan, under its owner's account, with every usage add-on of the plan; no Recurly
  subscription for anything else and none twice for one Amplify id; no billed subscription left pending in Amplify;
- every (subscription, add-on) usage sum equals the emulator's own traffic over the closed, settled windows
  since the subscription started; no ``merchant_tag`` twice;
- marketplace mode (``soak_invoices.py``): exactly one Recurly invoice per Amplify invoice with something to pay
  (by ``po_number``), none twice and none for anything else, on the owner's account, its lines and subtotal the
  Amplify invoice's items and total in the currency's smallest unit; each such Amplify invoice's ``billing.payment``
  names it and its state and status follow its Recurly state as README's mapping says (``paid`` -> ``paid`` /
  ``Success``), one with nothing to pay is ``paid``; no Recurly subscription nor usage for its subscriptions;
- both systems equal, field by field (generated ids, invoice numbers and timestamps aside), the reference's state,
  invoices included;
- no fault-free run exits non-zero, and no run hangs.

The emulators' clock stands still three days before the real now (the child uses the real clock): subscriptions
the tool creates are activated then, so the traffic after it is reported as usage, as in the crash matrix, where
day 0 runs on a virtual clock and usage on the real one. Three days, not a week: the Amplify emulator keeps 7 days
of Traceability transactions (reference §9.1), and the scenario's subscriptions started up to 3 days before the
traffic (billed from then: ``usage.before_billing_start: bill``). With more days the first run, at the real now,
finds windows older than the retention; it withholds them with a finding (exit 1, tested on its own elsewhere),
which the soak would count as a failed clean run and unbilled units.

``python -m tools.soak [--subscriptions N] [--seed S]`` prints one result line and exits
non-zero when the soak does not converge or the final state is wrong; ``pytest -m soak`` runs 2,000
subscriptions, and the default suite a small version.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

from amplify_billing.amplify import literals
from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.sandbox.clock import VirtualClock
from amplify_billing.sandbox.harness import CUSTOM_FIELD, Sandbox
from amplify_billing.sandbox.scenario import Scenario, build_scenario
from amplify_billing.sandbox.server import (
    FAULT_KINDS,
    Emulator,
    FaultKind,
    FaultRule,
    RecordedRequest,
    Request,
    Response,
)
from amplify_billing.settings import load_settings
from amplify_billing.usage.windows import window_floor
from tools.driver import amplify_writes, recurly_writes
from tools.soak_invoices import (
    LAST_STAGE,
    STAGES,
    AmplifyInvoicing,
    InvoiceFigures,
    invoice_problems,
    invoice_sections,
    invoice_writes,
    invoiced_subscriptions,
    stage_of_storm,
)

Phase = Literal["storm", "calm", "reference"]
KillMode = Literal["in-flight", "before", "between"]
KILL_MODES: tuple[KillMode, ...] = ("in-flight", "before", "between")
# Share of armed runs killed at the n-th write rather than at the n-th request of any kind: writes are where a
# kill can double or lose something, reads where it can only cost time.
KILL_AT_WRITE_SHARE = 0.75

# An injected "delay" answers this much later than the client's timeout, so the client gives up first while the
# server still acts on the request afterwards (the worst case for a write).
DELAY_PAST_TIMEOUT = 0.5
# A "between" kill lands this long (at most) after the chosen answer left the emulator.
BETWEEN_KILL_MAX_SECONDS = 0.05
# Without a reference run, the writes of a whole run are estimated: per subscription an account, a subscription,
# an approval, link attributes and a usage record per day of traffic; and the reads, per write. Only the spread
# of the random kill points depends on them.
WRITES_PER_SUBSCRIPTION = 3
READS_PER_WRITE = 0.2
# Requests every run spends on listings and counts before it writes anything.
LISTING_REQUESTS = 50
# Keep this many characters of a failed child's stderr in the report.
STDERR_TAIL = 2000
# The routes of Amplify's POSTs that only read.
AMPLIFY_READ_ROUTES = frozenset({"token", "traceability_search"})
# Report at most this many problems of one check.
MAX_PROBLEMS_PER_CHECK = 10


@dataclass(frozen=True)
class SoakOptions:
    """What the soak does; the defaults are the 2,000-subscription soak of ``pytest -m soak``."""

    subscriptions: int = 2000
    seed: int = 1
    days: int = 3  # so every window is inside Traceability's 7-day retention (module docstring)
    fault_rate: float = 0.10
    storm_runs: int = 8
    calm_runs: int = 4
    # the tool's timeout for both systems, low so that an injected delay costs seconds, not minutes
    timeout_seconds: float = 2.0
    # a run of the child longer than this is a hang: killed and reported
    run_timeout_seconds: float = 1800.0
    # compare the final state with one clean run of the same scenario in a fresh sandbox
    reference: bool = True

    def __post_init__(self) -> None:
        if self.subscriptions < 1:
            raise ValueError(f"subscriptions must be at least 1, got {self.subscriptions}")
        if self.days < 1:
            raise ValueError(f"days must be at least 1, got {self.days}")
        if not 0.0 <= self.fault_rate < 1.0:
            raise ValueError(f"fault_rate must be in [0, 1), got {self.fault_rate}")
        if self.storm_runs < 0 or self.calm_runs < 1:
            raise ValueError(f"storm_runs must be ≥ 0 and calm_runs ≥ 1, got {self.storm_runs}, {self.calm_runs}")
        if self.timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {self.timeout_seconds}")


@dataclass(frozen=True)
class SoakRun:
    """One run of the child process."""

    number: int
    phase: Phase
    exit_code: int  # negative: killed by that signal
    seconds: float
    requests: int  # requests both emulators received during the run
    writes: int  # of which writes (Recurly POST/PUT/DELETE, Amplify PUT and non-read POSTs)
    faults: int  # faults injected during the run
    kill_target: int | None = None  # the request count at which the run was to be killed
    killed: str | None = None  # how and where it was killed, e.g. "in-flight after POST /subscriptions"
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ended_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    stderr_tail: str = ""

    @property
    def quiet(self) -> bool:
        return self.exit_code == 0 and self.writes == 0

    def describe(self) -> str:
        outcome = f"killed {self.killed}" if self.killed else f"exit {self.exit_code}"
        return (
            f"run {self.number} ({self.phase}): {outcome}; {self.requests:,} requests, {self.writes:,} writes, "
            f"{self.faults:,} faults, {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class SoakResult:
    options: SoakOptions
    runs: tuple[SoakRun, ...]
    faults: Mapping[str, int]  # injected faults by kind, both systems, all runs
    requests: int  # requests both emulators received over the soak
    converged: bool
    problems: tuple[str, ...]  # every way the final state differs from the expected one
    usage_units: int
    usage_records: int
    duplicate_tags: int
    seconds: float
    reference_checked: bool = False
    invoices: InvoiceFigures = field(default_factory=InvoiceFigures)  # marketplace mode (soak_invoices.py)

    @property
    def passed(self) -> bool:
        return self.converged and not self.problems

    @property
    def killed(self) -> int:
        return sum(1 for r in self.runs if r.killed)

    def line(self) -> str:
        total = sum(self.faults.values())
        kinds = ", ".join(f"{kind}: {self.faults.get(kind, 0):,}" for kind in FAULT_KINDS)
        share = f"{100 * total / self.requests:.1f} % of {self.requests:,} requests" if self.requests else "no requests"
        verdict = "converged" if self.converged else "DID NOT CONVERGE"
        if self.problems:
            verdict += f", STATE WRONG ({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''})"
        elif self.reference_checked:
            verdict += ", state as expected and equal to a clean run's"
        else:
            verdict += ", state as expected"
        return (
            f"soak: {self.options.subscriptions:,} subscriptions, {len(self.runs)} runs ({self.killed} killed), "
            f"{total:,} faults injected ({share}; {kinds}), {verdict}; usage {self.usage_units:,} units in "
            f"{self.usage_records:,} records, {self.duplicate_tags} duplicate tags; {self.invoices.line()}; "
            f"{self.seconds:.0f} s"
        )


# ---- killing the child ----------------------------------------------------------------------------------


Dispatched = tuple[Response | None, FaultRule | None, str]
Dispatch = Callable[[Request], Dispatched]


def is_write(raw: Request) -> bool:
    """A request that changes something: every PUT, DELETE and PATCH, and every POST but Amplify's two reads
    (the token request and the traceability search)."""
    if raw.method in ("PUT", "DELETE", "PATCH"):
        return True
    return raw.method == "POST" and not raw.path.endswith("/token") and not raw.path.endswith("/traceability/search")


class _Killer:
    """Counts the requests (or only the writes) both emulators receive and SIGKILLs the child at the armed one.

    Wraps each emulator's ``dispatch`` (as the crash matrix does). *In flight*: the emulator acts on the request,
    then the client dies and the connection is dropped, so a write is stored and never acknowledged. *Before*:
    the client dies as its request arrives, which is never acted on. *Between*: the answer goes out and the
    client dies a few milliseconds later, while it records or acts on it.
    """

    def __init__(self, emulators: Sequence[Emulator], rng: random.Random) -> None:
        self._lock = threading.Lock()
        self._rng = rng
        self._child: subprocess.Popen[bytes] | None = None
        self._target: int | None = None
        self._mode: KillMode = "in-flight"
        self._writes_only = True
        self.seen = 0
        self.killed: str | None = None
        # requests being handled now: a delayed or orphaned one is logged only when it ends, maybe after its run
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        for emulator in emulators:
            self._wrap(emulator)

    def _wrap(self, emulator: Emulator) -> None:
        original = emulator.dispatch
        system = emulator.system

        def dispatch(raw: Request) -> Dispatched:
            with self._lock:
                counted = not self._writes_only or is_write(raw)
                self.seen += counted
                due = counted and self._target is not None and self.seen == self._target and self.killed is None
                self._in_flight += 1
            try:
                return self._handle(original, raw, due, system)
            finally:
                with self._lock:
                    self._in_flight -= 1
                    self._idle.notify_all()

        emulator.dispatch = dispatch  # type: ignore[method-assign]

    def _handle(self, original: Dispatch, raw: Request, due: bool, system: str) -> Dispatched:
        with self._lock:
            mode, target = self._mode, self._target
        if not due:
            return original(raw)
        unit = "write" if self._writes_only else "request"
        where = f"{mode} at {unit} {target:,}: {system} {raw.method} {raw.path}"
        if mode == "before":
            self._kill(where)
            return None, None, "killed"  # never acted on
        response, fault, route = original(raw)
        if mode == "in-flight":
            self._kill(where)
            return None, fault, route  # the client is gone; what the server did stays done
        timer = threading.Timer(self._rng.uniform(0.0, BETWEEN_KILL_MAX_SECONDS), self._kill, args=(where,))
        timer.daemon = True
        timer.start()
        return response, fault, route

    def _kill(self, where: str) -> None:
        with self._lock:
            child = self._child
            if child is None or self.killed is not None or child.poll() is not None:
                return
            os.kill(child.pid, signal.SIGKILL)
            self.killed = where

    def arm(self, child: subprocess.Popen[bytes], target: int | None, mode: KillMode, *, writes_only: bool) -> None:
        with self._lock:
            self._child, self._target, self._mode, self._writes_only = child, target, mode, writes_only
            self.seen, self.killed = 0, None

    def drain(self, timeout: float) -> None:
        """Wait until no request is being handled (a delayed answer or a dead client's last request)."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)
        # the request log is written just after dispatch returns
        time.sleep(0.05)

    def disarm(self) -> str | None:
        with self._lock:
            self._child, self._target = None, None
            return self.killed


# ---- the soak -------------------------------------------------------------------------------------------


def _per_kind_rate(total: float, kinds: int) -> float:
    """The rate of each of ``kinds`` rules, tried in turn, so that ``total`` of all requests get one fault."""
    return 1.0 - (1.0 - total) ** (1.0 / kinds) if total > 0 else 0.0


class _Soak:
    def __init__(self, options: SoakOptions, work_dir: Path, progress: Callable[[str], None]) -> None:
        self.options = options
        self.work_dir = work_dir
        self.progress = progress
        self.rng = random.Random(f"amplify-billing-soak:{options.seed}")
        self.today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.scenario = build_scenario(
            seed=options.seed, subscriptions=options.subscriptions, now=self.today, days_of_traffic=options.days
        )
        self.sandboxes: list[Sandbox] = []
        self.fault_counts: Counter[str] = Counter()
        self.runs: list[SoakRun] = []
        self.reference_runs = 0
        self.invoicing: dict[Path, AmplifyInvoicing] = {}  # Amplify's invoicing in each sandbox, by its config
        self.reference_invoices: tuple[int, int] | None = None  # the reference's writes for invoices, invoices issued

    # ---- set-up ---------------------------------------------------------------------------------------
    def sandbox(self, name: str) -> tuple[Sandbox, Path]:
        """A seeded sandbox whose clock stands still where the scenario's traffic starts, and its config."""
        state = self.work_dir / name
        state.mkdir(parents=True)
        clock = VirtualClock(self.scenario.traffic_start)
        sandbox = Sandbox.start(clock=clock, state_dir=state, seed=self.options.seed)
        self.sandboxes.append(sandbox)
        self.scenario.seed_amplify(sandbox.amplify)
        invoicing = AmplifyInvoicing.start(sandbox, self.scenario)  # the Partner Marketplace (soak_invoices.py)
        timeout = {"timeout_seconds": self.options.timeout_seconds}
        config = sandbox.write_config(
            state / "config.yaml", amplify=timeout, recurly=timeout, billing=invoicing.billing()
        )
        self.invoicing[config] = invoicing
        return sandbox, config

    def stop(self) -> None:
        for sandbox in self.sandboxes:
            sandbox.stop()

    # ---- one run of the child -----------------------------------------------------------------------------
    def run_child(
        self,
        sandbox: Sandbox,
        config: Path,
        phase: Phase,
        *,
        killer: _Killer | None = None,
        target: int | None = None,
        writes_only: bool = True,
        rules: Sequence[FaultRule] = (),
        stage: int = LAST_STAGE,
    ) -> SoakRun:
        number = len(self.runs) + 1 if phase != "reference" else 0
        self.amplify_job(config, phase, stage)
        marks = (len(sandbox.recurly.requests), len(sandbox.amplify.requests))
        injected_before = sum(rule.injected for rule in rules)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMPLIFY_BILLING")}
        logs = self.work_dir / "runs"
        logs.mkdir(exist_ok=True)
        stem = logs / (f"run-{number:02d}" if phase != "reference" else f"reference-{self.reference_runs:02d}")
        mode: KillMode = self.rng.choice(KILL_MODES)
        started, clock_start = time.monotonic(), datetime.now(UTC)
        with open(f"{stem}.stdout", "wb") as out, open(f"{stem}.stderr", "wb") as err:
            child = subprocess.Popen(
                [sys.executable, "-m", "amplify_billing", "--config", str(config), "run"],
                stdout=out,
                stderr=err,
                env=env,
            )
            if killer is not None:
                killer.arm(child, target, mode, writes_only=writes_only)
            try:
                exit_code = child.wait(timeout=self.options.run_timeout_seconds)
                hung = False
            except subprocess.TimeoutExpired:
                child.kill()
                exit_code = child.wait()
                hung = True
            killed = killer.disarm() if killer is not None else None
        seconds = time.monotonic() - started
        if killer is not None:
            # every request of this run is in the log before the run is counted (and before the next run starts)
            killer.drain(self.options.timeout_seconds + DELAY_PAST_TIMEOUT + 1.0)
        requests = len(sandbox.recurly.requests) - marks[0] + len(sandbox.amplify.requests) - marks[1]
        writes = len(recurly_writes(sandbox, marks[0])) + len(amplify_writes(sandbox, marks[1]))
        tail = _tail(Path(f"{stem}.stderr")) if exit_code not in (0, -signal.SIGKILL) or hung else ""
        run = SoakRun(
            number=number,
            phase=phase,
            exit_code=exit_code,
            seconds=seconds,
            requests=requests,
            writes=writes,
            faults=sum(rule.injected for rule in rules) - injected_before,
            kill_target=target,
            killed=killed,
            started_at=clock_start,
            ended_at=datetime.now(UTC),
            stderr_tail=("HUNG past the run timeout; " if hung else "") + tail,
        )
        if phase == "reference":
            self.reference_runs += 1
        else:
            self.runs.append(run)
        self.progress(run.describe())
        return run

    def amplify_job(self, config: Path, phase: Phase, stage: int) -> None:
        """Amplify's events up to ``stage`` and its invoicing job, before a run (soak_invoices.py)."""
        invoicing = self.invoicing[config]
        if made := invoicing.before_run(stage):
            self.progress(f"amplify ({phase}, {STAGES[invoicing.stage]}): {made:,} invoices issued")

    # ---- the phases -------------------------------------------------------------------------------------
    def storm(self, sandbox: Sandbox, config: Path, killer: _Killer, clean: SoakRun | None) -> None:
        """Faulted runs, each but the last killed at a random point of the work probably left."""
        options = self.options
        rate = _per_kind_rate(options.fault_rate, len(FAULT_KINDS))
        delay = options.timeout_seconds + DELAY_PAST_TIMEOUT
        rules = [
            emulator.inject(kind, rate=rate, delay_seconds=delay)
            for emulator in (sandbox.amplify, sandbox.recurly)
            for kind in FAULT_KINDS
        ]
        # what a whole clean run does: measured by the reference run, else estimated from the scenario
        total_writes = clean.writes if clean else (WRITES_PER_SUBSCRIPTION + options.days) * options.subscriptions
        reads_per_write = (clean.requests - clean.writes) / max(1, clean.writes) if clean else READS_PER_WRITE
        try:
            for index in range(options.storm_runs):
                target: int | None = None
                writes_only = self.rng.random() < KILL_AT_WRITE_SHARE
                stage = stage_of_storm(index, options.storm_runs)
                self.amplify_job(config, "storm", stage)
                if index < options.storm_runs - 1:
                    # a kill point drawn over the work probably left, so that later runs are killed later in it
                    # (not the writes for the invoices Amplify has not issued yet)
                    landed = _writes_landed(sandbox)
                    due = total_writes - self.invoicing[config].writes_not_due(self.reference_invoices)
                    left = max(1, due - landed)
                    span = left if writes_only else round(left * (1 + reads_per_write)) + LISTING_REQUESTS
                    target = self.rng.randint(1, max(1, round(span * 1.1)))
                self.run_child(
                    sandbox,
                    config,
                    "storm",
                    killer=killer,
                    target=target,
                    writes_only=writes_only,
                    rules=rules,
                    stage=stage,
                )
        finally:
            sandbox.amplify.clear_faults()
            sandbox.recurly.clear_faults()
            kinds: list[FaultKind] = [rule.kind for rule in rules]
            for kind, rule in zip(kinds, rules, strict=True):
                self.fault_counts[kind] += rule.injected

    def calm(self, sandbox: Sandbox, config: Path, killer: _Killer) -> SoakRun | None:
        """Runs without faults until one exits 0 and writes nothing; that run, or None."""
        settle, size = _usage_timing(config)
        for _ in range(self.options.calm_runs):
            run = self.run_child(sandbox, config, "calm", killer=killer)  # never armed: only to drain the log
            # a run that straddles the moment the next window settles may see two different "nows"
            same_day = _last_end(run.started_at, settle, size) == _last_end(run.ended_at, settle, size)
            if run.quiet and same_day:
                return run
        return None

    def clean_runs(self, sandbox: Sandbox, config: Path) -> tuple[SoakRun, bool]:
        """The reference: clean runs, every Amplify event before the first, until one exits 0 and writes nothing
        (a purchase is followed to paid one run later). The last run with the sums of their requests and writes
        (the size of a whole clean soak), and whether it was quiet."""
        runs = [self.run_child(sandbox, config, "reference")]
        while runs[-1].exit_code == 0 and not runs[-1].quiet and len(runs) <= self.options.calm_runs:
            runs.append(self.run_child(sandbox, config, "reference"))
        whole = replace(runs[-1], requests=sum(r.requests for r in runs), writes=sum(r.writes for r in runs))
        return whole, runs[-1].quiet

    def execute(self) -> SoakResult:
        began = time.monotonic()
        options = self.options
        self.progress(
            f"soak: {options.subscriptions:,} subscriptions (seed {options.seed}), {options.days} days "
            f"of traffic from {self.scenario.traffic_start:%Y-%m-%d %H:%M} UTC; work dir {self.work_dir}"
        )
        problems: list[str] = []
        reference: tuple[Sandbox, Path] | None = None
        clean: SoakRun | None = None
        if options.reference:
            # first, so that its size sets the range of the kill points
            reference = self.sandbox("reference")
            clean, settled = self.clean_runs(*reference)
            self.reference_invoices = invoice_writes(reference[0]), len(self.invoicing[reference[1]].made)
            if not settled:
                tail = clean.stderr_tail
                problems.append(f"the clean reference runs did not settle (exit {clean.exit_code}): {tail}")
                reference, clean = None, None
        sandbox, config = self.sandbox("soak")
        killer = _Killer((sandbox.amplify, sandbox.recurly), self.rng)
        self.storm(sandbox, config, killer, clean)
        quiet = self.calm(sandbox, config, killer)
        settle, size = _usage_timing(config)
        moment = quiet.started_at if quiet is not None else datetime.now(UTC)
        last_end = _last_end(moment, settle, size)
        problems.extend(check_state(self.scenario, sandbox, last_end))
        for run in self.runs:
            if run.stderr_tail and (run.phase == "calm" or run.stderr_tail.startswith("HUNG")):
                problems.append(f"run {run.number} ({run.phase}) exited {run.exit_code}: {run.stderr_tail}")
        reference_checked = False
        if reference is not None and clean is not None and quiet is not None:
            if _last_end(clean.started_at, settle, size) != last_end:
                # another window settled during the soak: the reference catches up the way cron would
                clean = self.run_child(*reference, "reference")
            if clean.exit_code == 0 and _last_end(clean.started_at, settle, size) == last_end:
                problems.extend(compare_states(state_of(sandbox), state_of(reference[0])))
                reference_checked = True
            else:
                problems.append(f"the clean reference run could not be compared (exit {clean.exit_code})")
        records = sandbox.recurly.usage_records()
        tags = Counter(r["merchant_tag"] for r in records)
        return SoakResult(
            options=options,
            runs=tuple(self.runs),
            faults=dict(self.fault_counts),
            requests=len(sandbox.recurly.requests) + len(sandbox.amplify.requests),
            converged=quiet is not None,
            problems=tuple(problems),
            usage_units=sum(int(Decimal(str(r["amount"]))) for r in records),
            usage_records=len(records),
            duplicate_tags=sum(1 for n in tags.values() if n > 1),
            invoices=InvoiceFigures.of(sandbox),
            seconds=time.monotonic() - began,
            reference_checked=reference_checked,
        )


def _recorded_write(r: RecordedRequest) -> bool:
    return r.method in ("PUT", "DELETE", "PATCH") or (r.method == "POST" and r.route not in AMPLIFY_READ_ROUTES)


def _writes_landed(sandbox: Sandbox) -> int:
    """Writes both emulators acted on and answered with success so far (a replayed answer counts too)."""
    landed = 0
    for emulator in (sandbox.recurly, sandbox.amplify):
        with emulator.lock:
            landed += sum(
                1 for r in emulator.requests if r.status is not None and r.status < 300 and _recorded_write(r)
            )
    return landed


def run_soak(
    options: SoakOptions | None = None,
    *,
    work_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> SoakResult:
    """Run the soak (see the module docstring) and check the final state; never raises for a wrong state.

    ``work_dir`` holds the journal, the configuration and each run's stdout and stderr (``runs/run-NN.*``);
    by default a temporary directory, removed when the soak passes and kept (and named) when it does not.
    ``progress`` receives one line per run.
    """
    options = options or SoakOptions()
    temporary = work_dir is None
    folder = Path(tempfile.mkdtemp(prefix="amplify-billing-soak-")) if work_dir is None else work_dir
    folder.mkdir(parents=True, exist_ok=True)
    soak = _Soak(options, folder, progress or (lambda _line: None))
    try:
        result = soak.execute()
    finally:
        soak.stop()
    if temporary and result.passed:
        shutil.rmtree(folder, ignore_errors=True)
    elif temporary:
        soak.progress(f"soak: logs of every run kept in {folder}")
    return result


# ---- the expected state ---------------------------------------------------------------------------------


def _usage_timing(config: Path) -> tuple[timedelta, timedelta]:
    usage = load_settings(config, {}).usage
    return usage.settle_delay, timedelta(hours=1) if usage.window == "hourly" else timedelta(days=1)


def _last_end(now: datetime, settle: timedelta, size: timedelta) -> datetime:
    """The end of the last window a run at ``now`` reports: closed and older than the settle delay."""
    return window_floor(now - settle, size)


def _tail(path: Path) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-STDERR_TAIL:].strip()


def _amplify_id(subscription: Mapping[str, Any]) -> str | None:
    for item in subscription.get("custom_fields") or ():
        if item.get("name") == CUSTOM_FIELD:
            return str(item.get("value"))
    return None


def _money(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


TIER_TYPES = {
    literals.PRICING_PER_UNIT: "flat",
    literals.PRICING_GRADUATED: "tiered",
    literals.PRICING_VOLUME: "volume",
    literals.PRICING_FIXED: "tiered",  # a loose limit: free up to the limit, the overage price after it
}


def check_state(scenario: Scenario, sandbox: Sandbox, last_end: datetime) -> list[str]:
    """Every way the sandbox's state differs from what ``scenario`` must give once usage up to ``last_end``
    (the end of the last settled window) is reported; [] when it is exactly right."""
    return _Checks(scenario, sandbox, last_end).all()


class _Checks:
    """The final state against the scenario and the emulators' own records, never against the tool's code."""

    def __init__(self, scenario: Scenario, sandbox: Sandbox, last_end: datetime) -> None:
        self.scenario = scenario
        self.sandbox = sandbox
        self.last_end = last_end
        self.prefix = "amplify-"
        # billed by Amplify's invoices, never by a Recurly subscription (soak_invoices.py checks them)
        self.invoiced = invoiced_subscriptions(sandbox)

    def all(self) -> list[str]:
        problems: list[str] = []
        found_by_check = [check() for check in (self.plans, self.subscriptions, self.usage)]
        for found in [*found_by_check, *invoice_problems(self.scenario, self.sandbox)]:
            problems.extend(found[:MAX_PROBLEMS_PER_CHECK])
            if len(found) > MAX_PROBLEMS_PER_CHECK:
                problems.append(f"… and {len(found) - MAX_PROBLEMS_PER_CHECK} more like the above")
        return problems

    def plans(self) -> list[str]:
        scenario, recurly = self.scenario, self.sandbox.recurly
        problems: list[str] = []
        products = {p["name"]: p["title"] for p in scenario.products}
        by_name = {p["name"]: p for p in scenario.plans}
        quotas = {q["metadata"]["id"]: q for q in scenario.quotas}
        active = {p["code"]: p for p in recurly.plans() if p["state"] == "active"}
        expected_codes = {f"{self.prefix}{scenario.plan_ids[name]}": name for name in scenario.supported_plans}
        for code in sorted(set(active) - set(expected_codes)):
            problems.append(f"plan {code} ({active[code]['name']}) is active in Recurly but not in the catalog")
        for code, name in sorted(expected_codes.items()):
            plan = active.get(code)
            if plan is None:
                problems.append(f"plan {name} has no active Recurly plan {code}")
                continue
            spec = by_name[name]
            billing = spec["spec"]["billing"]
            months = literals.BILLING_INTERVAL_MONTHS[billing["interval"]]
            want = {
                "name": f"{products[spec['spec']['product']]} - {spec['title']}",
                "interval": ("months", months),
                "cycles": spec["spec"]["subscription"].get("cycles"),
                "price": (
                    billing["currency"],
                    _money(billing.get("price")),
                    _money(billing.get("setup", {}).get("price")),
                ),
            }
            currencies = plan.get("currencies") or [{}]
            got = {
                "name": plan["name"],
                "interval": (plan["interval_unit"], plan["interval_length"]),
                "cycles": plan.get("total_billing_cycles"),
                "price": (
                    currencies[0].get("currency"),
                    _money(currencies[0].get("unit_amount")),
                    _money(currencies[0].get("setup_fee")),
                ),
            }
            for key, value in want.items():
                if got[key] != value:
                    problems.append(f"plan {name} ({code}): {key} is {got[key]!r}, the catalog says {value!r}")
            add_ons = {a["code"]: a for a in recurly.add_ons(code) if a["state"] == "active"}
            wanted = {f"{self.prefix}{q}" for q in scenario.usage_quotas[name]}
            if set(add_ons) != wanted:
                problems.append(f"plan {name} ({code}): add-ons {sorted(add_ons)}, the catalog says {sorted(wanted)}")
            for add_on_code, add_on in add_ons.items():
                quota = quotas.get(add_on_code.removeprefix(self.prefix))
                tier_type = TIER_TYPES.get(quota["spec"]["pricing"]["type"]) if quota else None
                if add_on.get("tier_type") != tier_type:
                    found = add_on.get("tier_type")
                    problems.append(f"add-on {add_on_code} of plan {name}: tier_type {found}, expected {tier_type}")
        return problems

    def _live_billed(self) -> dict[str, dict[str, Any]]:
        """Amplify subscriptions (by id) on a billed plan, pending or approved and billed (active or transitional),
        as Amplify has them now."""
        supported = set(self.scenario.supported_plans)
        live: dict[str, dict[str, Any]] = {}
        for resource in self.sandbox.amplify.resources("Subscription"):
            if resource["spec"]["plan"]["name"] not in supported or resource["metadata"]["id"] in self.invoiced:
                continue
            approval = (resource.get("approval") or {}).get("state")
            state = (resource.get("state") or {}).get("name")
            if approval == "pending" or (approval == "approved" and state in literals.BILLED_STATES):
                live[resource["metadata"]["id"]] = resource
        return live

    def subscriptions(self) -> list[str]:
        scenario, recurly = self.scenario, self.sandbox.recurly
        problems: list[str] = []
        live = self._live_billed()
        by_amplify: dict[str, list[dict[str, Any]]] = {}
        for s in recurly.subscriptions():
            amplify_id = _amplify_id(s)
            if amplify_id is None:
                problems.append(f"Recurly subscription {s['uuid']} has no {CUSTOM_FIELD}")
                continue
            by_amplify.setdefault(amplify_id, []).append(s)
        for amplify_id, found in sorted(by_amplify.items()):
            if len(found) > 1:
                uuids = ", ".join(s["uuid"] for s in found)
                problems.append(f"Amplify subscription {amplify_id} has {len(found)} Recurly subscriptions: {uuids}")
            if amplify_id not in live and amplify_id not in self.invoiced:  # those: soak_invoices.py
                problems.append(
                    f"Recurly subscription {found[0]['uuid']} bills {amplify_id}, which is not live and billed"
                )
        for amplify_id, resource in sorted(live.items()):
            name = resource["name"]
            plan_name = resource["spec"]["plan"]["name"]
            if (resource.get("approval") or {}).get("state") != "approved":
                problems.append(f"Amplify subscription {name} is still {resource['approval']['state']}")
            found = by_amplify.get(amplify_id, [])
            if len(found) != 1:
                if not found:
                    problems.append(f"Amplify subscription {name} ({amplify_id}) has no Recurly subscription")
                continue
            s = found[0]
            plan_code = f"{self.prefix}{scenario.plan_ids[plan_name]}"
            want = {
                "state": "active",
                "plan": plan_code,
                "account": scenario.account_code(name),
                "add-ons": sorted(f"{self.prefix}{q}" for q in scenario.usage_quotas[plan_name]),
                "collection": "manual",
            }
            got = {
                "state": s["state"],
                "plan": s["plan"]["code"],
                "account": s["account"]["code"],
                "add-ons": sorted(a["add_on"]["code"] for a in s["add_ons"]),
                "collection": s.get("collection_method"),
            }
            for key, value in want.items():
                if got[key] != value:
                    problems.append(f"Recurly subscription {s['uuid']} of {name}: {key} is {got[key]!r}, not {value!r}")
        return problems

    def expected_usage(self) -> dict[tuple[str, str], int]:
        """Traffic per (Recurly subscription uuid, add-on code) over the settled windows it was live in."""
        expected: dict[tuple[str, str], int] = {}
        for s in self.sandbox.recurly.subscriptions():
            amplify_id = _amplify_id(s)
            started = parse_timestamp(s.get("activated_at"))
            if amplify_id is None or started is None:
                continue
            ended = parse_timestamp(s.get("expires_at"))
            until = min(self.last_end, ended) if ended else self.last_end
            traffic = self.sandbox.amplify.traffic(started, until) if started < until else {}
            for add_on in s["add_ons"]:
                code = add_on["add_on"]["code"]
                count = traffic.get((amplify_id, code.removeprefix(self.prefix)), 0)
                if count:
                    expected[(s["uuid"], code)] = count
        return expected

    def usage(self) -> list[str]:
        records = self.sandbox.recurly.usage_records()
        problems: list[str] = []
        for tag, count in sorted(Counter(r["merchant_tag"] for r in records).items()):
            if count > 1:
                problems.append(f"merchant_tag {tag} is in Recurly {count} times")
        billed: dict[tuple[str, str], int] = {}
        for record in records:
            key = (record["subscription_uuid"], record["add_on_code"])
            billed[key] = billed.get(key, 0) + int(Decimal(str(record["amount"])))
        billed = {k: v for k, v in billed.items() if v}
        expected = self.expected_usage()
        for key in sorted(set(billed) | set(expected)):
            if billed.get(key, 0) != expected.get(key, 0):
                problems.append(
                    f"usage of subscription {key[0]} add-on {key[1]}: {billed.get(key, 0):,} units in Recurly, "
                    f"{expected.get(key, 0):,} in the traffic up to {self.last_end:%Y-%m-%d %H:%M} UTC"
                )
        return problems


# ---- comparing with a clean run -------------------------------------------------------------------------


def _volatile(key: str) -> bool:
    """Fields that differ between two sandboxes for the same outcome: generated ids and moments."""
    return key in ("id", "uuid", "subscription_uuid", "recording_timestamp") or key.endswith(("_id", "_at"))


def _normal(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _normal(v) for k, v in value.items() if not _volatile(str(k))}
    if isinstance(value, list):
        items = [_normal(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, default=str))
    return value


def state_of(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    """Both systems' state as the tool left it, keyed by stable names, without generated ids or timestamps."""
    recurly = sandbox.recurly
    subscriptions = recurly.subscriptions()
    amplify_of_uuid = {s["uuid"]: _amplify_id(s) or s["uuid"] for s in subscriptions}
    state: dict[str, dict[str, Any]] = {
        "measured units": {u["name"]: _normal(u) for u in recurly.measured_units()},
        "plans": {p["code"]: _normal(p) for p in recurly.plans()},
        "add-ons": {
            f"{p['code']}/{a['code']}": _normal(a) for p in recurly.plans() for a in recurly.add_ons(p["code"])
        },
        "accounts": {a["code"]: _normal(a) for a in recurly.accounts()},
        "subscriptions": {},
        "usage": {},
        "amplify": {},
    }
    for s in subscriptions:
        key = amplify_of_uuid[s["uuid"]]
        state["subscriptions"][key if key not in state["subscriptions"] else f"{key} ({s['uuid']})"] = _normal(s)
    for record in recurly.usage_records():
        tag = record["merchant_tag"]
        entry = {**_normal(record), "subscription": amplify_of_uuid.get(record["subscription_uuid"])}
        state["usage"][tag if tag not in state["usage"] else f"{tag} ({record['id']})"] = entry
    for section, invoices in invoice_sections(sandbox).items():
        state[section] = {key: _normal(invoice) for key, invoice in invoices.items()}
    for kind in ("ProductPlan", "Quota", "Subscription"):
        for resource in sandbox.amplify.resources(kind):
            attributes = dict(resource.get("attributes") or {})
            for name, value in attributes.items():
                attributes[name] = amplify_of_uuid.get(value, value)  # a Recurly uuid differs per sandbox
            scope = (resource.get("metadata") or {}).get("scope") or {}
            status = resource.get("state")  # a plan's is a word, a subscription's an object
            state["amplify"][f"{kind} {scope.get('name', '')}/{resource['name']}"] = {
                "attributes": attributes,
                "approval": (resource.get("approval") or {}).get("state"),
                "state": status.get("name") if isinstance(status, Mapping) else status,
            }
    return state


def compare_states(soak: Mapping[str, Mapping[str, Any]], reference: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """How two ``state_of`` results differ, one line per object (at most a few per section); [] when equal."""
    problems: list[str] = []
    for section, items in soak.items():
        other = reference.get(section, {})
        found: list[str] = []
        for key in sorted(set(items) | set(other)):
            if key not in other:
                found.append(f"{section}: {key} exists after the soak but not after a clean run")
            elif key not in items:
                found.append(f"{section}: {key} exists after a clean run but not after the soak")
            elif items[key] != other[key]:
                fields = sorted(k for k in set(items[key]) | set(other[key]) if items[key].get(k) != other[key].get(k))
                detail = "; ".join(
                    f"{k}: soak {_short(items[key].get(k))}, clean {_short(other[key].get(k))}" for k in fields
                )
                found.append(f"{section}: {key} differs from a clean run's ({detail})")
        problems.extend(found[:MAX_PROBLEMS_PER_CHECK])
        if len(found) > MAX_PROBLEMS_PER_CHECK:
            problems.append(f"{section}: … and {len(found) - MAX_PROBLEMS_PER_CHECK} more differences")
    return problems


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- the command line -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, *, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    defaults = SoakOptions()
    parser = argparse.ArgumentParser(
        prog="python -m tools.soak",
        description="Fault soak of amplify-billing against the built-in emulators; prints one result line.",
    )
    parser.add_argument("--subscriptions", type=int, default=defaults.subscriptions, help="scenario size")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="scenario, fault and kill seed")
    parser.add_argument("--days", type=int, default=defaults.days, help="days of traffic")
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate, help="share of failing requests")
    parser.add_argument("--storm-runs", type=int, default=defaults.storm_runs, help="runs with faults and kills")
    parser.add_argument("--calm-runs", type=int, default=defaults.calm_runs, help="fault-free runs allowed to settle")
    parser.add_argument("--timeout", type=float, default=defaults.timeout_seconds, help="the tool's HTTP timeout (s)")
    parser.add_argument("--no-reference", action="store_true", help="skip the comparison with a clean run")
    parser.add_argument("--work-dir", type=Path, help="keep the journal and every run's output here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    try:
        options = SoakOptions(
            subscriptions=args.subscriptions,
            seed=args.seed,
            days=args.days,
            fault_rate=args.fault_rate,
            storm_runs=args.storm_runs,
            calm_runs=args.calm_runs,
            timeout_seconds=args.timeout,
            reference=not args.no_reference,
        )
    except ValueError as error:
        parser.error(str(error))

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=err, flush=True)

    result = run_soak(options, work_dir=args.work_dir, progress=progress)
    for problem in result.problems:
        print(f"  {problem}", file=err)
    print(result.line(), file=out, flush=True)
    return 0 if result.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
