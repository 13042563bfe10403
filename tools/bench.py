"""``python -m tools.bench``: what a run costs at scale, next to the least the scenario needs.

DESIGN.md §9: the rate limits (Amplify 25 requests a minute; Recurly 1,000 GETs a minute in production,
400 requests of any method in a sandbox site), not the CPU, bound a run, so the measure of the tool is its
calls per object. For each size N the benchmark seeds a scenario of N subscriptions (about 10 per plan,
2 usage quotas per plan, a week of hourly traffic) into both emulators and runs the real tool three times
on a virtual clock:

- ``initial``: day 0 against an empty Recurly site (plans, accounts, subscriptions, approvals, links);
- ``week``: day 7, the cron run that reports the week as usage;
- ``steady``: the same run again, which must write nothing.

Each run is a child process (``run_all`` over HTTP, exactly what cron runs, with the clock pinned), so its
peak memory is the tool's own and not the emulators'. Requests are counted from the emulators' side, by
method and route, and attributed to the command that was running. The minimum is computed from the
scenario alone: every listing read once per run in pages of the largest size (Amplify 100, Recurly 200),
one write per needed change, one traceability query per usage window, and no Recurly usage reads (the
journal knows what it posted). ``--latency-ms`` makes every emulator answer that much later (outside
their locks, so concurrent requests overlap), and then the initial run is also timed with
``recurly.concurrency: 1`` to show what concurrent writes save.

``--mode marketplace`` measures the other billing mode on the same scenario: Amplify's invoices, each made a
Recurly invoice by ``sync-invoices`` (``tools/bench_invoices.py``, which says how its minimum is derived).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from amplify_billing.sandbox.harness import Sandbox
    from amplify_billing.sandbox.scenario import Scenario
    from amplify_billing.sandbox.server import Emulator

# A midnight, so the scenario's days and the tool's daily usage windows line up.
TODAY = datetime(2026, 11, 20, tzinfo=UTC)
# Traceability keeps transactions 7 days (reference §9.1): a run a few hours after the traffic ends can count six
# days of it whole, so that is what the "week" run reports at once
DAYS_OF_TRAFFIC = 6
QUOTAS_PER_PLAN = 2
SUBSCRIPTIONS_PER_PLAN = 10
DEFAULT_SIZES = (1_000, 10_000)
# the cron run after the week: past midnight by more than the default settle delay of 2 h
WEEK_RUN_AT = TODAY + timedelta(hours=3)
# the step of a measured run in which `run` plans the whole cycle on overlays, before its first write
PLANNING = "(planning the cycle)"
PLANNING_STEPS = "planning-steps"  # the worker's flag: time the planning pass step by step

AMPLIFY_PER_MINUTE = 25  # every request (reference/amplify-api.md)
RECURLY_PRODUCTION_GETS_PER_MINUTE = 1_000  # only GETs count in production
RECURLY_SANDBOX_PER_MINUTE = 400  # every method counts in a sandbox site
AMPLIFY_PAGE = 100  # the Amplify emulator's (and Axway's SDK's) largest page
RECURLY_PAGE = 200  # the largest `limit` the Recurly API takes

# The checks the issue sets for the tool at scale.
MAX_RATIO = 1.1
RETENTION = timedelta(days=7)  # usage.retention's default: Traceability keeps 7 days (reference §9.1)
# state.verify_sample's default: pairs whose usage a run with reported pairs reads to check the journal
JOURNAL_SAMPLE = 5
MAX_PEAK_MB = 300.0
MAX_CONCURRENT_SHARE = 1 / 3

PHASES = ("initial", "week", "steady")
SYSTEMS = ("amplify", "recurly")
RECURLY_LISTINGS = ("measured units", "plans", "add-ons", "accounts", "subscriptions")
USAGE_READ_ROUTES = frozenset({"list_usage", "get_usage"})
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
AMPLIFY_READ_POSTS = frozenset({"token", "traceability_search"})

REPOSITORY = Path(__file__).resolve().parents[1]

# The child process: tracing starts before the package is imported, so its modules count too.
_WORKER = (
    "import sys, tracemalloc\n"
    "if sys.argv[1] == '1':\n"
    "    tracemalloc.start()\n"
    "from tools.bench import worker_main\n"
    "worker_main(sys.argv[2:])\n"
)


# ---- values --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Logged:
    """One request as the emulator saw it, with the wall time it was answered."""

    at: float
    method: str
    route: str
    status: int | None


@dataclass(frozen=True)
class Step:
    command: str
    start: float
    end: float


@dataclass(frozen=True)
class RunMeasure:
    """One run of the tool: what it asked of each system, how long it took, how much memory."""

    phase: str
    wall_seconds: float
    requests: dict[str, dict[str, int]]  # system -> method -> count
    by_command: dict[str, dict[str, dict[str, int]]]  # command -> system -> "METHOD route" -> count
    steps: tuple[Step, ...]
    tracemalloc_peak_bytes: int | None
    max_rss_bytes: int
    reports: tuple[dict[str, Any], ...]
    concurrency: int

    @property
    def failed(self) -> int:
        return sum(int(r.get("failed", 0)) + (1 if r.get("exit_code", 0) not in (0, 1) else 0) for r in self.reports)

    def command_count(
        self, command: str, system: str, *, methods: frozenset[str] | None = None, routes: frozenset[str] | None = None
    ) -> int:
        total = 0
        for key, count in self.by_command.get(command, {}).get(system, {}).items():
            method, route = key.split(" ", 1)
            if (methods is None or method in methods) and (routes is None or route in routes):
                total += count
        return total


@dataclass(frozen=True)
class Minimum:
    """The least a run needs, from the scenario alone, with the reasoning per line."""

    requests: dict[str, dict[str, int]]
    reasons: dict[str, list[str]]  # system -> "n METHOD what" lines
    windows: int  # distinct usage ranges: one grouped count each, and one total that proves it whole
    usage_writes: int  # one per non-zero (subscription, quota, window) cell
    usage_reads: int = 0  # the journal check's sample of pairs (a run that has reported pairs)
    count_queries: int = 0  # traceability requests: a total per range, and a grouped count where it is not 0


@dataclass(frozen=True)
class SizeResult:
    subscriptions: int
    plans: int
    usage_quotas: int
    live_subscriptions: int
    latency_ms: float
    concurrency: int
    runs: tuple[RunMeasure, ...]
    minimums: dict[str, Minimum]
    setup_seconds: float
    serial_initial: RunMeasure | None = None

    def run(self, phase: str) -> RunMeasure:
        return next(r for r in self.runs if r.phase == phase)


@dataclass(frozen=True)
class BenchOptions:
    sizes: tuple[int, ...] = DEFAULT_SIZES
    latency_ms: float = 0.0
    seed: int = 7
    concurrency: int | None = None  # None: the tool's default (recurly.concurrency)
    # tracemalloc slows the tool 2-6 times (every allocation is recorded), so it is asked for, and a traced run's
    # wall time is not comparable with an untraced one; max RSS is always measured, at no cost
    trace_memory: bool = False
    serial_baseline: bool | None = None  # None: only when latency_ms > 0
    days_of_traffic: int = DAYS_OF_TRAFFIC
    quotas_per_plan: int = QUOTAS_PER_PLAN
    subscriptions_per_plan: int = SUBSCRIPTIONS_PER_PLAN
    keep_dir: Path | None = None  # keep each size's state and configuration here instead of a temporary folder


@dataclass
class _Tap:
    """Replaces an emulator's request log with a compact one (150,000 full requests would dwarf the tool)."""

    entries: list[Logged] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, emulator: Emulator) -> None:
        def record(raw: Any, status: int | None, route: str, fault: Any) -> None:
            entry = Logged(time.time(), str(raw.method), route, status)
            with self.lock:
                self.entries.append(entry)

        emulator.record = record  # type: ignore[method-assign]

    def since(self, mark: int) -> list[Logged]:
        with self.lock:
            return self.entries[mark:]

    def mark(self) -> int:
        with self.lock:
            return len(self.entries)


# ---- the child process -------------------------------------------------------------------------------------


def worker_main(argv: Sequence[str]) -> None:
    """Run ``amplify-billing run`` once in this process with the clock pinned; write the measures as JSON."""
    import io
    import resource
    import tracemalloc

    from rich.console import Console

    from amplify_billing.changes import CommandReport, Outcome
    from amplify_billing.commands.run import RunOptions, run_all
    from amplify_billing.execute import recorded
    from amplify_billing.runtime import Runtime
    from amplify_billing.settings import load_settings

    config, now_text, out, *flags = argv
    now = datetime.fromisoformat(now_text)
    began = time.perf_counter()
    steps: list[dict[str, Any]] = []
    planning_steps = PLANNING_STEPS in flags
    if planning_steps:
        _time_planned_steps(steps)

    def timed(rt: Runtime, name: str, dry_run: bool, body: Any) -> CommandReport:
        start = time.time()
        try:
            return recorded(rt, name, dry_run, body)
        finally:
            steps.append({"command": name, "start": start, "end": time.time()})

    console = Console(file=io.StringIO(), width=160, color_system=None)
    rt = Runtime(load_settings(Path(config), os.environ), console, console, clock=lambda: now)
    planning_start = time.time()
    try:
        reports = run_all(rt, RunOptions(), timed)
    finally:
        rt.close()
    if not planning_steps:
        # `run` plans the whole cycle before its first write: what that pass reads, it reads once for both passes
        end = steps[0]["start"] if steps else time.time()
        steps.insert(0, {"command": PLANNING, "start": planning_start, "end": end})
    document = {
        "wall_seconds": time.perf_counter() - began,
        "steps": steps,
        "tracemalloc_peak_bytes": tracemalloc.get_traced_memory()[1] if tracemalloc.is_tracing() else None,
        "max_rss_bytes": _peak_rss(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
        "reports": [
            {
                "command": r.command,
                "exit_code": r.exit_code,
                "applied": r.count(Outcome.APPLIED),
                "failed": r.count(Outcome.FAILED),
                "note": r.note,
                "figures": dict(r.figures),
            }
            for r in reports
        ],
    }
    Path(out).write_text(json.dumps(document, default=str))


def _time_planned_steps(steps: list[dict[str, Any]]) -> None:
    """Time each step of `run`'s planning pass on its own (``"(planning the cycle) sync-invoices"``), so a command's
    reads there are told apart from the other commands' (the planning pass runs every step with ``dry_run``)."""
    from amplify_billing.commands import run as cycle

    listed = cycle._steps

    def timed_steps(rt: Any, options: Any) -> list[tuple[str, Any]]:
        found = listed(rt, options)
        if not options.dry_run:
            return found

        def timed(name: str, step: Any) -> Any:
            def body(run_id: int | None) -> Any:
                start = time.time()
                try:
                    return step(run_id)
                finally:
                    steps.append({"command": f"{PLANNING} {name}", "start": start, "end": time.time()})

            return body

        return [(name, timed(name, step)) for name, step in found]

    cycle._steps = timed_steps


def _peak_rss(fallback: int) -> int:
    """This process's own peak resident memory.

    ru_maxrss survives execve, so a child started from the benchmark (whose emulators hold every record)
    would report the parent's size; VmHWM belongs to the new address space only.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return fallback


def _run_tool(
    sandbox: Sandbox,
    taps: dict[str, _Tap],
    config: Path,
    now: datetime,
    phase: str,
    trace: bool,
    concurrency: int,
    *,
    planning_steps: bool = False,
) -> RunMeasure:
    """One `run` in a child process at ``now``; ``planning_steps``: the planning pass's requests are attributed to
    each step (``"(planning the cycle) <command>"``) instead of all to ``PLANNING``."""
    from amplify_billing.errors import AmplifyBillingError

    sandbox_clock = sandbox.clock
    set_clock = getattr(sandbox_clock, "set", None)
    if callable(set_clock):
        set_clock(now)
    marks = {system: tap.mark() for system, tap in taps.items()}
    out = config.parent / f"measure-{phase.replace(' ', '-')}-{concurrency}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMPLIFY_BILLING")}
    # the child imports this module: `tools` is not installed, so it must find the repository wherever it runs
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPOSITORY), env.get("PYTHONPATH", "")) if p)
    began = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _WORKER,
            "1" if trace else "0",
            str(config),
            now.isoformat(),
            str(out),
            *([PLANNING_STEPS] if planning_steps else []),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - began
    if done.returncode != 0 or not out.exists():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise AmplifyBillingError(
            f"the benchmark's {phase} run exited {done.returncode}; its last output:\n{tail}\n"
            "Run the same size with `amplify-billing demo` or the tests to see whether the tool or the sandbox fails"
        )
    document = json.loads(out.read_text())
    steps = tuple(Step(s["command"], s["start"], s["end"]) for s in document["steps"])
    requests: dict[str, dict[str, int]] = {}
    by_command: dict[str, dict[str, dict[str, int]]] = {}
    for system, tap in taps.items():
        entries = tap.since(marks[system])
        requests[system] = dict(sorted(Counter(e.method for e in entries).items()))
        for entry in entries:
            command = next((s.command for s in steps if s.start <= entry.at <= s.end), "(between commands)")
            routes = by_command.setdefault(command, {}).setdefault(system, {})
            key = f"{entry.method} {entry.route}"
            routes[key] = routes.get(key, 0) + 1
    return RunMeasure(
        phase=phase,
        wall_seconds=wall,
        requests=requests,
        by_command=by_command,
        steps=steps,
        tracemalloc_peak_bytes=document["tracemalloc_peak_bytes"],
        max_rss_bytes=int(document["max_rss_bytes"]),
        reports=tuple(document["reports"]),
        concurrency=concurrency,
    )


# ---- the minimum ----------------------------------------------------------------------------------------


def _pages(count: int, size: int) -> int:
    """Pages of ``size`` to list ``count`` items; an empty listing still costs one request."""
    return max(1, math.ceil(count / size))


def _daily_windows(start: datetime, end: datetime) -> list[datetime]:
    windows: list[datetime] = []
    moment = start
    while moment + timedelta(days=1) <= end:
        windows.append(moment)
        moment += timedelta(days=1)
    return windows


def usage_windows(scenario: Scenario, phase: str, *, settle: timedelta, lookback: timedelta) -> list[datetime]:
    """The daily windows a run must count: closed and settled, since activation (week) or in the lookback."""
    if phase == "initial":
        return []
    closed_until = (WEEK_RUN_AT - settle).replace(hour=0, minute=0, second=0, microsecond=0)
    windows = _daily_windows(scenario.traffic_start, closed_until)
    if phase == "steady":
        return [w for w in windows if w + timedelta(days=1) > WEEK_RUN_AT - lookback]
    return windows


def usage_ranges(
    scenario: Scenario, phase: str, *, settle: timedelta, lookback: timedelta, retention: timedelta = RETENTION
) -> set[tuple[datetime, datetime]]:
    """The distinct ranges report-usage must count in ``phase``: every billed pair's settled windows since its
    Amplify subscription became active (clipped there), as the tool plans them. A subscription activated inside a
    window needs that window counted from its activation: a range of its own."""
    from amplify_billing.amplify.parse import parse_timestamp
    from amplify_billing.usage.windows import reportable_windows

    day = timedelta(days=1)
    wanted: dict[tuple[datetime, datetime], set[str]] = {}
    for name in scenario.live_subscriptions:
        raw = scenario.subscriptions_by_name[name]
        if not scenario.usage_quotas[raw["spec"]["plan"]["name"]]:
            continue
        # a pending subscription becomes active when the initial run approves it
        when = (raw.get("state") or {}).get("when", {}).get("timestamp")
        activation = parse_timestamp(when) or scenario.traffic_start

        def windows(now: datetime, since: datetime | None, earliest: datetime, start: datetime) -> list[Any]:
            cutoff = now - retention
            found = reportable_windows(
                size=day,
                now=now,
                settle_delay=settle,
                active_from=start,
                active_until=None,
                since=since,
                earliest=max(earliest, cutoff),
                until=None,
            )
            return [w for w in found if w.clip_start >= cutoff]

        initial = windows(scenario.traffic_start, None, activation, activation)
        mark = initial[-1].clip_end if initial else None
        week = windows(WEEK_RUN_AT, mark, activation, activation)
        if phase == "initial":
            chosen = initial
        elif phase == "week":
            chosen = week
        else:
            last = (week[-1].clip_end if week else mark) or activation
            recount = windows(WEEK_RUN_AT, None, WEEK_RUN_AT - lookback, activation)
            chosen = [w for w in recount if w.clip_end <= last]
        for w in chosen:
            wanted.setdefault((w.clip_start, w.clip_end), set()).add(raw["metadata"]["id"])
    # as report-usage does: a first window clipped at an activation is asked for only when the whole window holds
    # traffic of the subscriptions starting in it; otherwise the whole window proves it quiet
    ranges: set[tuple[datetime, datetime]] = set()
    for (start, end), starting in wanted.items():
        aligned = start.replace(hour=0, minute=0, second=0, microsecond=0)
        if aligned == start or end != aligned + day:
            ranges.add((start, end))
            continue
        ranges.add((aligned, end))
        if any(sid in starting for sid, _quota in scenario.expected_traffic(aligned, end)):
            ranges.add((start, end))
    return ranges


def nonzero_cells(scenario: Scenario, windows: Sequence[datetime]) -> int:
    """(live subscription, usage quota, window) cells with traffic: one usage record each."""
    by_name = scenario.subscriptions_by_name
    live = {by_name[name]["metadata"]["id"] for name in scenario.live_subscriptions}
    billed_quotas = {q for plan in scenario.supported_plans for q in scenario.usage_quotas[plan]}
    cells: Counter[tuple[str, str, datetime]] = Counter()
    for series in scenario.traffic_series:
        if series.subscription_id not in live or series.quota_id not in billed_quotas:
            continue
        for start in windows:
            total = series.total(start, start + timedelta(days=1))
            if total:
                cells[(series.subscription_id, series.quota_id, start)] += total
    return sum(1 for total in cells.values() if total)


def _owners(scenario: Scenario, names: Sequence[str] | None = None) -> tuple[set[str], set[str], set[str]]:
    """Account codes to create, and the Platform users and teams their names and e-mails come from: the owners of
    ``names`` (default: the live subscriptions on billed plans)."""
    teams = {t["guid"]: t for t in scenario.teams}
    codes: set[str] = set()
    users: set[str] = set()
    needed_teams: set[str] = set()
    for name in scenario.live_subscriptions if names is None else names:
        code = scenario.account_code(name)
        if code in codes:
            continue
        codes.add(code)
        owner = scenario.subscriptions_by_name[name]["marketplace"]["resource"]["owner"]
        needed_teams.add(owner["id"])  # the company name, for a user's account too
        if owner.get("user"):
            users.add(owner["user"]["id"])
        else:
            humans = [m for m in teams[owner["id"]]["users"] if m["type"] != "client"]
            admin = next((m for m in humans if any("admin" in r for r in m["roles"])), humans[0] if humans else None)
            if admin is not None:
                users.add(admin["guid"])
    return codes, users, needed_teams


Line = tuple[str, int, str]  # (method, requests, what for)


def catalog_reads(scenario: Scenario) -> list[Line]:
    """The Amplify reads every run makes whatever the mode: a token, then each catalog listing once."""
    opted_in = set(scenario.opted_in_plans)
    plan_quotas = sum(1 for q in scenario.quotas if q["metadata"]["scope"]["name"] in opted_in)
    return [
        ("POST", 1, "token"),
        ("GET", _pages(len(scenario.opted_in_products), AMPLIFY_PAGE), "products (opted in)"),
        ("GET", _pages(len(opted_in), AMPLIFY_PAGE), f"plans of opted-in products ({len(opted_in)})"),
        ("GET", _pages(plan_quotas, AMPLIFY_PAGE), f"quotas of those plans ({plan_quotas})"),
        ("GET", _pages(len(scenario.units), AMPLIFY_PAGE), "plan units"),
    ]


def recurly_reads(sizes: Sequence[int]) -> list[Line]:
    """Each Recurly listing once (``RECURLY_LISTINGS``, of these sizes), and what proving them complete costs."""
    lines: list[Line] = [
        ("GET", _pages(n, RECURLY_PAGE), f"{kind} ({n})") for kind, n in zip(RECURLY_LISTINGS, sizes, strict=True)
    ]
    # what proving reads complete costs (issue 11), on rows of their own
    return [
        *lines,
        ("GET", 1, "completeness: the site, whose the journal is"),
        ("HEAD", 1, "completeness: count of live subscriptions, taken before the listing"),
    ]


def first_run_writes(scenario: Scenario, users: int, team_page: int) -> tuple[list[Line], list[Line]]:
    """What the first run writes whatever the mode, (Amplify, Recurly): the owners' details for their new accounts,
    the catalog's link attributes; the measured unit and the plans. The caller adds the accounts it creates."""
    supported = scenario.supported_plans
    usage_quotas = sum(len(scenario.usage_quotas[p]) for p in supported)
    amplify: list[Line] = [
        ("GET", _pages(len(scenario.teams), team_page), f"Platform team listing ({len(scenario.teams)} teams)"),
        ("GET", users, "Platform users whose e-mail a new account needs"),
        ("PUT", len(supported), "plan link attributes"),
        ("PUT", usage_quotas, "quota link attributes"),
    ]
    recurly: list[Line] = [
        ("POST", 1, "measured unit"),
        ("POST", len(supported), f"plans with their {usage_quotas} add-ons inline"),
    ]
    return amplify, recurly


def tally(lines: dict[str, list[Line]]) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
    """Requests per system and method, and the reasoning line by line, of ``lines`` per system."""
    requests: dict[str, dict[str, int]] = {}
    reasons: dict[str, list[str]] = {}
    for system, found in lines.items():
        counts: Counter[str] = Counter()
        for method, count, what in found:
            counts[method] += count
            reasons.setdefault(system, []).append(f"{count} {method} {what}")
        requests[system] = dict(sorted(counts.items()))
    return requests, reasons


def minimum(scenario: Scenario, phase: str, *, settle: timedelta, lookback: timedelta, team_page: int) -> Minimum:
    """The least each system must be asked in ``phase``, computed from the scenario alone."""
    supported = scenario.supported_plans
    usage_quotas = sum(len(scenario.usage_quotas[p]) for p in supported)
    billed = len(scenario.billed_subscriptions)
    live = len(scenario.live_subscriptions)
    codes, users, _teams = _owners(scenario)
    windows = usage_windows(scenario, phase, settle=settle, lookback=lookback)
    cells = nonzero_cells(scenario, windows) if phase == "week" else 0
    counted = usage_ranges(scenario, phase, settle=settle, lookback=lookback)
    ranges = len(counted)
    # a range whose total is 0 needs no grouped count: only those with traffic cost a second query
    busy = sum(1 for span in counted if scenario.expected_traffic(*span))

    amplify = [
        *catalog_reads(scenario),
        ("GET", _pages(billed, AMPLIFY_PAGE), f"subscriptions on linked plans ({billed})"),
    ]
    if billed:
        # the double billing guard: whether Amplify bills a Marketplace too (docs/architecture.md)
        amplify.append(("GET", 1, "Marketplaces: who bills each"))
    recurly_size = {
        "initial": (0, 0, 0, 0, 0),
        "week": (1, len(supported), usage_quotas, len(codes), live),
        "steady": (1, len(supported), usage_quotas, len(codes), live),
    }[phase]
    recurly = recurly_reads(recurly_size)
    if phase == "steady":
        recurly.append(("GET", JOURNAL_SAMPLE, "completeness: journal check, a sample of pairs' usage"))
    if phase == "initial":
        pending = len(scenario.pending_subscriptions)
        first_amplify, first_recurly = first_run_writes(scenario, len(users), team_page)
        amplify += [
            *first_amplify,
            # the account code and the uuid are both known once the subscription exists: one PUT carries both
            ("PUT", live, "subscription link attributes (account code and uuid)"),
            ("PUT", pending, "approvals of pending subscriptions"),
        ]
        recurly += [*first_recurly, ("POST", len(codes), "accounts"), ("POST", live, "subscriptions")]
    if busy:
        amplify.append(("POST", busy, f"traceability counts, one per range with traffic ({busy} of {ranges})"))
    if ranges:
        amplify.append(
            ("POST", ranges, f"completeness: traceability totals proving each count whole, one per range ({ranges})")
        )
    if cells:
        recurly.append(("POST", cells, "usage records, one per non-zero (subscription, quota, window)"))
    requests, reasons = tally({"amplify": amplify, "recurly": recurly})
    return Minimum(requests, reasons, ranges, cells, JOURNAL_SAMPLE if phase == "steady" else 0, ranges + busy)


# ---- the benchmark ---------------------------------------------------------------------------------------------


def bench_scenario(subscriptions: int, options: BenchOptions) -> Scenario:
    """The scenario of ``subscriptions`` every mode measures (the same arguments give the same scenario)."""
    from amplify_billing.sandbox.scenario import build_scenario

    return build_scenario(
        seed=options.seed,
        subscriptions=subscriptions,
        now=TODAY,
        days_of_traffic=options.days_of_traffic,
        quotas_per_plan=options.quotas_per_plan,
        subscriptions_per_plan=options.subscriptions_per_plan,
    )


def start_sandbox(scenario: Scenario, state: Path, options: BenchOptions) -> tuple[Sandbox, dict[str, _Tap], Path]:
    """Both emulators on a virtual clock at the traffic's start, seeded with ``scenario``, tapped and delayed."""
    from amplify_billing.sandbox.clock import VirtualClock
    from amplify_billing.sandbox.harness import Sandbox

    state.mkdir(parents=True, exist_ok=True)
    clock = VirtualClock(scenario.traffic_start)
    sandbox = Sandbox.start(clock=clock, state_dir=state, seed=options.seed)
    scenario.seed_amplify(sandbox.amplify)
    taps = {"amplify": _Tap(), "recurly": _Tap()}
    taps["amplify"].attach(sandbox.amplify)
    taps["recurly"].attach(sandbox.recurly)
    for emulator in (sandbox.amplify, sandbox.recurly):
        emulator.latency_seconds = options.latency_ms / 1000
    return sandbox, taps, state


def bench_size(subscriptions: int, options: BenchOptions) -> SizeResult:
    """Seed a scenario of ``subscriptions``, run the tool initial/week/steady, measure each run."""
    began = time.perf_counter()
    scenario = bench_scenario(subscriptions, options)
    serial = options.serial_baseline if options.serial_baseline is not None else options.latency_ms > 0
    with tempfile.TemporaryDirectory(prefix="amplify-billing-bench-") as temp:
        root = (options.keep_dir or Path(temp)) / f"n{subscriptions}"

        def sandbox_for(name: str) -> tuple[Sandbox, dict[str, _Tap], Path]:
            return start_sandbox(scenario, root / name, options)

        def config_for(sandbox: Sandbox, state: Path, workers: int) -> Path:
            return sandbox.write_config(state / f"config-{workers}.yaml", recurly={"concurrency": workers})

        sandbox, taps, state = sandbox_for("main")
        settings = sandbox.settings()
        concurrency = options.concurrency or settings.recurly.concurrency
        setup = time.perf_counter() - began
        runs: list[RunMeasure] = []
        try:
            config = config_for(sandbox, state, concurrency)
            for phase, now in (("initial", scenario.traffic_start), ("week", WEEK_RUN_AT), ("steady", WEEK_RUN_AT)):
                runs.append(_run_tool(sandbox, taps, config, now, phase, options.trace_memory, concurrency))
        finally:
            sandbox.stop()
        serial_run: RunMeasure | None = None
        if serial:
            baseline, baseline_taps, baseline_state = sandbox_for("serial")
            try:
                serial_run = _run_tool(
                    baseline,
                    baseline_taps,
                    config_for(baseline, baseline_state, 1),
                    scenario.traffic_start,
                    "initial",
                    options.trace_memory,
                    1,
                )
            finally:
                baseline.stop()
    team_page = settings.amplify.page_size
    minimums = {
        phase: minimum(
            scenario, phase, settle=settings.usage.settle_delay, lookback=settings.usage.lookback, team_page=team_page
        )
        for phase in PHASES
    }
    return SizeResult(
        subscriptions=subscriptions,
        plans=len(scenario.supported_plans),
        usage_quotas=sum(len(scenario.usage_quotas[p]) for p in scenario.supported_plans),
        live_subscriptions=len(scenario.live_subscriptions),
        latency_ms=options.latency_ms,
        concurrency=concurrency,
        runs=tuple(runs),
        minimums=minimums,
        setup_seconds=setup,
        serial_initial=serial_run,
    )


def run_bench(options: BenchOptions) -> list[SizeResult]:
    return [bench_size(n, options) for n in options.sizes]


# ---- figures -------------------------------------------------------------------------------------------------


def _ratio(actual: int, least: int) -> float | None:
    if least == 0:
        return None if actual == 0 else math.inf
    return actual / least


def _total(counts: dict[str, int]) -> int:
    return sum(counts.values())


def budget_minutes(requests: dict[str, dict[str, int]]) -> dict[str, float]:
    """Minutes the requests take at the published rate limits (steady rate; no burst credit)."""
    amplify = _total(requests.get("amplify", {}))
    recurly = requests.get("recurly", {})
    gets = recurly.get("GET", 0) + recurly.get("HEAD", 0)
    production = amplify / AMPLIFY_PER_MINUTE + gets / RECURLY_PRODUCTION_GETS_PER_MINUTE
    return {
        "amplify": amplify / AMPLIFY_PER_MINUTE,
        "recurly_production": gets / RECURLY_PRODUCTION_GETS_PER_MINUTE,
        "recurly_sandbox": _total(recurly) / RECURLY_SANDBOX_PER_MINUTE,
        # the commands run one after another, so the two budgets add up
        "run_production": production,
        "run_sandbox_site": amplify / AMPLIFY_PER_MINUTE + _total(recurly) / RECURLY_SANDBOX_PER_MINUTE,
    }


def usage_figures(run: RunMeasure, least: Minimum) -> dict[str, int]:
    """report-usage alone: traceability queries, Recurly writes, Recurly usage reads — each with its minimum.

    Its reads are made while `run` plans the whole cycle (they are remembered for the applying pass), so they are
    counted over both: the planning pass, and report-usage itself."""
    command = "report-usage"

    def reads(system: str, **which: frozenset[str]) -> int:
        return sum(run.command_count(c, system, **which) for c in (PLANNING, command))

    return {
        "traceability_queries": reads("amplify", routes=frozenset({"traceability_search"})),
        "traceability_minimum": least.count_queries,
        "recurly_writes": run.command_count(command, "recurly", methods=WRITE_METHODS),
        "recurly_writes_minimum": least.usage_writes,
        "recurly_usage_reads": reads("recurly", routes=USAGE_READ_ROUTES),
        "recurly_usage_reads_minimum": least.usage_reads,
        "recurly_reads": reads("recurly", methods=frozenset({"GET", "HEAD"})),
    }


def overall_ratio(run: RunMeasure, least: Minimum) -> float | None:
    actual = sum(_total(run.requests.get(s, {})) for s in SYSTEMS)
    return _ratio(actual, sum(_total(least.requests.get(s, {})) for s in SYSTEMS))


def writes(run: RunMeasure) -> int:
    """Writes to either system: Recurly POST/PUT/DELETE, Amplify writes other than the token and counts."""
    total = sum(n for m, n in run.requests.get("recurly", {}).items() if m in WRITE_METHODS)
    for systems in run.by_command.values():
        for key, count in systems.get("amplify", {}).items():
            method, route = key.split(" ", 1)
            if method in WRITE_METHODS and route not in AMPLIFY_READ_POSTS:
                total += count
    return total


def _peak_mb(run: RunMeasure) -> float:
    return (run.tracemalloc_peak_bytes or 0) / 1e6


Check = tuple[str, bool | None, str]  # (what, met or None when not measured here, the numbers)


def checks(result: SizeResult) -> list[Check]:
    """The issue's acceptance figures: (what, met or None when not measured here, the numbers)."""
    found = [steady_check(result.run("steady")), ratio_check(result), memory_check(result.runs)]
    if result.serial_initial is not None:
        concurrent = result.run("initial").wall_seconds
        serial = result.serial_initial.wall_seconds
        found.append(
            (
                f"concurrent initial run at most a third of the serial one ({result.latency_ms:.0f} ms latency)",
                concurrent <= serial * MAX_CONCURRENT_SHARE,
                f"{concurrent:.1f} s with recurly.concurrency {result.concurrency}, {serial:.1f} s with 1 "
                f"({concurrent / serial:.2f})",
            )
        )
    return found


def steady_check(steady: RunMeasure) -> Check:
    return ("steady-state writes are zero", writes(steady) == 0, f"{writes(steady)} writes")


def ratio_check(result: SizeResult) -> Check:
    ratios = {r.phase: overall_ratio(r, result.minimums[r.phase]) for r in result.runs}
    worst = max((v for v in ratios.values() if v is not None), default=1.0)
    shown = ", ".join(f"{p} {_fmt_ratio(v)}" for p, v in ratios.items())
    return (f"calls over minimum below {MAX_RATIO}", worst < MAX_RATIO, shown)


def memory_check(runs: Sequence[RunMeasure]) -> Check:
    peak = max(_peak_mb(r) for r in runs)
    rss = max(r.max_rss_bytes for r in runs) / 1e6
    traced = all(r.tracemalloc_peak_bytes is not None for r in runs)
    return (
        f"peak memory under {MAX_PEAK_MB:.0f} MB",
        rss < MAX_PEAK_MB and (not traced or peak < MAX_PEAK_MB),
        f"tracemalloc peak {peak:.0f} MB, max RSS {rss:.0f} MB" if traced else f"max RSS {rss:.0f} MB",
    )


def _fmt_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.2f}"


def run_document(run: RunMeasure, least: Minimum, **figures: Any) -> dict[str, Any]:
    """One run's part of the JSON document; ``figures``: a command's own figures, after ``writes``."""
    return {
        "phase": run.phase,
        "recurly_concurrency": run.concurrency,
        "wall_seconds": round(run.wall_seconds, 3),
        "requests": run.requests,
        "minimum": least.requests,
        "minimum_reasons": least.reasons,
        "ratio": {
            system: {
                method: _json_ratio(_ratio(run.requests.get(system, {}).get(method, 0), count))
                for method, count in sorted({**run.requests.get(system, {}), **least.requests.get(system, {})}.items())
                for count in (least.requests.get(system, {}).get(method, 0),)
            }
            for system in SYSTEMS
        },
        "overall_ratio": _json_ratio(overall_ratio(run, least)),
        "rate_limited_minutes": {k: round(v, 2) for k, v in budget_minutes(run.requests).items()},
        "rate_limited_minutes_at_minimum": {k: round(v, 2) for k, v in budget_minutes(least.requests).items()},
        "tracemalloc_peak_bytes": run.tracemalloc_peak_bytes,
        "max_rss_bytes": run.max_rss_bytes,
        "writes": writes(run),
        **figures,
        "by_command": run.by_command,
        "commands": [{"command": s.command, "seconds": round(s.end - s.start, 3)} for s in run.steps],
        "reports": list(run.reports),
    }


RATE_LIMITS = {
    "amplify_all": AMPLIFY_PER_MINUTE,
    "recurly_production_gets": RECURLY_PRODUCTION_GETS_PER_MINUTE,
    "recurly_sandbox_all": RECURLY_SANDBOX_PER_MINUTE,
}


def size_document(r: SizeResult) -> dict[str, Any]:
    """What a size's document says in every mode, before its runs."""
    return {
        "subscriptions": r.subscriptions,
        "plans": r.plans,
        "usage_quotas": r.usage_quotas,
        "live_subscriptions": r.live_subscriptions,
        "latency_ms": r.latency_ms,
        "recurly_concurrency": r.concurrency,
        "setup_seconds": round(r.setup_seconds, 2),
    }


def document(results: Sequence[SizeResult]) -> dict[str, Any]:
    """The whole benchmark as one JSON-serialisable document."""

    def run_doc(run: RunMeasure, least: Minimum) -> dict[str, Any]:
        return run_document(run, least, report_usage=usage_figures(run, least))

    return {
        "scenario": {
            "days_of_traffic": DAYS_OF_TRAFFIC,
            "subscriptions_per_plan": SUBSCRIPTIONS_PER_PLAN,
            "quotas_per_plan": QUOTAS_PER_PLAN,
        },
        "rate_limits_per_minute": RATE_LIMITS,
        "sizes": [
            {
                **size_document(r),
                "runs": [run_doc(run, r.minimums[run.phase]) for run in r.runs],
                "serial_initial": run_doc(r.serial_initial, r.minimums["initial"]) if r.serial_initial else None,
                "checks": [{"check": c, "met": met, "figures": text} for c, met, text in checks(r)],
            }
            for r in results
        ],
    }


def _json_ratio(value: float | None) -> float | str | None:
    if value is None:
        return None
    return "inf" if math.isinf(value) else round(value, 3)


# ---- rendering ------------------------------------------------------------------------------------------------


def render(console: Console, results: Sequence[SizeResult]) -> None:
    for result in results:
        console.rule(
            f"{result.subscriptions:,} subscriptions ({result.live_subscriptions:,} live), {result.plans:,} plans, "
            f"{result.usage_quotas:,} usage add-ons; latency {result.latency_ms:g} ms; "
            f"recurly.concurrency {result.concurrency}"
        )
        render_runs(console, result)
        usage = figure_table(
            "report-usage: the requests of that command alone, against the minimum",
            "traceability queries",
            "min (1/window)",
            "Recurly writes",
            "min (non-zero cells)",
            "Recurly usage reads",
            "min",
            "Recurly reads",
        )
        for run in result.runs:
            f = usage_figures(run, result.minimums[run.phase])
            usage.add_row(
                run.phase,
                f"{f['traceability_queries']:,}",
                f"{f['traceability_minimum']:,}",
                f"{f['recurly_writes']:,}",
                f"{f['recurly_writes_minimum']:,}",
                f"{f['recurly_usage_reads']:,}",
                "0",
                f"{f['recurly_reads']:,}",
            )
        console.print(usage)
        render_checks(console, checks(result))


def figure_table(title: str, *columns: str) -> Table:
    """A table of figures by run: the run's phase on the left, then ``columns`` of numbers."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("run", justify="left")
    for column in columns:
        table.add_column(column, justify="right")
    return table


def render_runs(console: Console, result: SizeResult) -> None:
    """The requests of each run against its minimum, then its time and memory (every mode)."""
    from rich.table import Table

    calls = Table(title="Requests by system and method, against the minimum the scenario needs", show_lines=False)
    for column in ("run", "system", "method", "requests", "minimum", "ratio"):
        calls.add_column(column, justify="left" if column in ("run", "system", "method") else "right")
    for run in result.runs:
        least = result.minimums[run.phase]
        for system in SYSTEMS:
            methods = sorted({*run.requests.get(system, {}), *least.requests.get(system, {})})
            for method in methods:
                actual = run.requests.get(system, {}).get(method, 0)
                need = least.requests.get(system, {}).get(method, 0)
                ratio = _fmt_ratio(_ratio(actual, need))
                calls.add_row(run.phase, system, method, f"{actual:,}", f"{need:,}", ratio)
        total = sum(_total(run.requests.get(s, {})) for s in SYSTEMS)
        need_total = sum(_total(least.requests.get(s, {})) for s in SYSTEMS)
        calls.add_row(
            run.phase,
            "both",
            "all",
            f"{total:,}",
            f"{need_total:,}",
            _fmt_ratio(_ratio(total, need_total)),
            end_section=True,
        )
    console.print(calls)

    times = Table(
        title="Time and memory",
        caption="minutes under rate limits = requests / limit: Amplify 25/min (all), Recurly production "
        "1,000 GET/min, Recurly sandbox site 400/min (all); run = Amplify + Recurly production, in sequence; "
        "py peak = tracemalloc (with --tracemalloc)",
    )
    for column in (
        "run",
        "workers",
        "wall s",
        "Amplify min",
        "Recurly min",
        "Recurly sandbox min",
        "run min",
        "run min at minimum",
        "py peak MB",
        "max RSS MB",
    ):
        times.add_column(column, justify="left" if column == "run" else "right")
    rows = [(run, run.phase) for run in result.runs]
    if result.serial_initial is not None:
        rows.insert(1, (result.serial_initial, "initial (serial)"))
    for run, label in rows:
        budget = budget_minutes(run.requests)
        best = budget_minutes(result.minimums[run.phase].requests)
        times.add_row(
            label,
            str(run.concurrency),
            f"{run.wall_seconds:.1f}",
            f"{budget['amplify']:,.1f}",
            f"{budget['recurly_production']:,.1f}",
            f"{budget['recurly_sandbox']:,.1f}",
            f"{budget['run_production']:,.1f}",
            f"{best['run_production']:,.1f}",
            f"{_peak_mb(run):.0f}" if run.tracemalloc_peak_bytes is not None else "-",
            f"{run.max_rss_bytes / 1e6:.0f}",
        )
    console.print(times)


def render_checks(console: Console, found: Sequence[Check]) -> None:
    for what, met, figures in found:
        mark = "ok  " if met else ("FAIL" if met is False else "n/a ")
        console.print(f"{mark} {what}: {figures}", markup=False, highlight=False)


def bench_command(
    console: Console,
    options: BenchOptions,
    *,
    output: str = "table",
    json_path: Path | None = None,
    mode: str = "recurly",
) -> int:
    """Run the benchmark, print the table (or JSON), optionally write the JSON; 1 when any run had failures.

    ``mode``: ``recurly`` (subscriptions and usage) or ``marketplace`` (Amplify's invoices billed through Recurly,
    ``tools/bench_invoices.py``)."""
    if mode == "marketplace":
        from tools import bench_invoices

        invoiced = bench_invoices.run_bench(options)
        doc = bench_invoices.document(invoiced)
        runs = [run for r in invoiced for run in r.size.runs]

        def show() -> None:
            bench_invoices.render(console, invoiced)
    else:
        results = run_bench(options)
        doc = document(results)
        runs = [run for r in results for run in (*r.runs, *([r.serial_initial] if r.serial_initial else []))]

        def show() -> None:
            render(console, results)

    if json_path is not None:
        json_path.write_text(json.dumps(doc, indent=2) + "\n")
    if output == "json":
        console.file.write(json.dumps(doc, indent=2) + "\n")
    else:
        show()
    return 1 if sum(run.failed for run in runs) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.bench``: a bad option exits 2 with a message naming it, as argparse does."""
    import argparse

    from amplify_billing.errors import ConfigError
    from amplify_billing.render import make_console

    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--mode",
        choices=("recurly", "marketplace"),
        default="recurly",
        help="billing.mode to measure: recurly (subscriptions, usage) or marketplace (Amplify's invoices)",
    )
    parser.add_argument("--subscriptions", type=int, action="append", help="scenario size (repeat for several)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay every emulator answer by this much")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=None, help="recurly.concurrency (default: the tool's)")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also trace Python allocations (2-6 times slower runs)"
    )
    parser.add_argument("--output", choices=("table", "json"), default="table")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON document here")
    args = parser.parse_args(argv)
    try:
        options = bench_options(
            args.subscriptions,
            latency_ms=args.latency_ms,
            seed=args.seed,
            concurrency=args.concurrency,
            trace_memory=args.tracemalloc,
        )
    except ConfigError as error:
        parser.error(str(error))
    return bench_command(make_console(), options, output=args.output, json_path=args.json, mode=args.mode)


def bench_options(
    sizes: Sequence[int] | None,
    *,
    latency_ms: float = 0.0,
    seed: int = 7,
    concurrency: int | None = None,
    trace_memory: bool = False,
) -> BenchOptions:
    """Validated options; a bad value is a ConfigError that names the option."""
    from amplify_billing.errors import ConfigError

    chosen = tuple(sizes) if sizes else DEFAULT_SIZES
    if any(n < 1 for n in chosen):
        raise ConfigError(f"--subscriptions must be at least 1, got {min(chosen)}")
    if latency_ms < 0:
        raise ConfigError(f"--latency-ms must be 0 or more, got {latency_ms:g}")
    if concurrency is not None and not 1 <= concurrency <= 16:
        raise ConfigError(f"--concurrency must be between 1 and 16 (recurly.concurrency), got {concurrency}")
    return BenchOptions(
        sizes=chosen, latency_ms=latency_ms, seed=seed, concurrency=concurrency, trace_memory=trace_memory
    )


if __name__ == "__main__":
    sys.exit(main())
