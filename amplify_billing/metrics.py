"""``--metrics-file``: one run's figures in the Prometheus text exposition format.

The file is read by node_exporter's textfile collector, which may read it at any moment.
``prometheus_client`` owns the format (escaping, help text, value syntax) and the write:
``write_to_textfile`` writes a temporary file beside the target (``<name>.prom.<pid>.<thread>``, a
name the collector ignores, since it reads only ``*.prom``) and renames it over the old one, so a
scrape sees the previous run or this one, never half of either. Every metric is a gauge: each file
describes one run, it counts nothing across runs (a Counter would add ``_total`` and claim a total).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from amplify_billing.backlog import backlog_seconds
from amplify_billing.changes import ChangeKind, CommandReport
from amplify_billing.errors import ConfigError
from amplify_billing.redact import redact

PREFIX = "amplify_billing_"

# Figures of report-usage that become their own metrics, by figure name.
USAGE_FIGURES: tuple[tuple[str, str, str], ...] = (
    (
        "units_reported",
        "usage_units_reported",
        "Usage units reported to Recurly by this run (restatement deltas included; planned ones in a dry run).",
    ),
    ("records_reported", "usage_records_reported", "Usage records posted to Recurly by this run."),
    ("restated", "usage_restatements", "Usage records corrected for late traffic by this run."),
    ("unbilled_units", "usage_unbilled_units", "Traffic units seen with no billed quota to report them on."),
)

# node_exporter reads files it can see, and it runs as another user: the file must not stay 0600
# under a strict umask (write_to_textfile creates it with the process's umask).
FILE_MODE = 0o644


def _figure(report: CommandReport, name: str) -> int | None:
    value = report.figures.get(name)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return None


def _gauge(registry: CollectorRegistry, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
    return Gauge(PREFIX + name, help_text, labelnames=tuple(labels), registry=registry)


def build_registry(
    reports: Sequence[CommandReport],
    *,
    duration_seconds: float,
    exit_code: int,
    api_calls: Mapping[str, Mapping[str, int]],
    retries: Mapping[str, int],
    now: datetime,
    last_success: datetime | None,
) -> CollectorRegistry:
    """A fresh registry holding this run's gauges (a fresh one per write: nothing carries over between runs)."""
    if now.tzinfo is None or (last_success is not None and last_success.tzinfo is None):
        # a naive time would be read as local time and shift every timestamp by the UTC offset
        raise ValueError("write_metrics needs timezone-aware times (now, last_success)")
    registry = CollectorRegistry(auto_describe=True)
    changes = _gauge(
        registry,
        "changes",
        "Changes handled by the last run, by command, kind and outcome.",
        ("command", "kind", "outcome"),
    )
    counted: Counter[tuple[str, str, str]] = Counter(
        (report.command, result.change.kind.value, result.outcome.value)
        for report in reports
        for result in report.results
    )
    for (command, kind, outcome), count in sorted(counted.items()):
        changes.labels(command=command, kind=kind, outcome=outcome).set(count)

    for figure, metric, help_text in USAGE_FIGURES:
        values = [v for v in (_figure(r, figure) for r in reports) if v is not None]
        # absent when no report-usage step ran: 0 would claim usage was reported and came to nothing
        if values:
            _gauge(registry, metric, help_text).set(sum(values))

    findings = _gauge(
        registry,
        "findings",
        "Findings (drift, unbilled traffic) reported by each command of the last run.",
        ("command",),
    )
    for report in reports:
        count = sum(1 for r in report.results if r.change.kind is ChangeKind.FINDING)
        findings.labels(command=report.command).set(count)

    command_exit = _gauge(registry, "command_exit_code", "Exit code of each command of the last run.", ("command",))
    for report in reports:
        command_exit.labels(command=report.command).set(int(report.exit_code))

    requests = _gauge(
        registry, "api_requests", "HTTP requests made by the last run, by system and method.", ("system", "method")
    )
    for system in sorted(api_calls):
        for method in sorted(api_calls[system]):
            requests.labels(system=system, method=method).set(int(api_calls[system][method]))

    retried = _gauge(
        registry, "api_retries", "Requests retried by the last run (429, 5xx, network errors), by system.", ("system",)
    )
    for system in sorted(retries):
        retried.labels(system=system).set(int(retries[system]))

    _gauge(registry, "backlog_seconds", "Age of the oldest work the last run left at its deadline; 0: none.").set(
        backlog_seconds(reports, now, started=now - timedelta(seconds=duration_seconds))
    )
    _gauge(registry, "run_duration_seconds", "Wall time of the last run.").set(float(duration_seconds))
    _gauge(registry, "run_exit_code", "Exit code of the last run (0 done; see README 'Exit codes').").set(
        int(exit_code)
    )
    _gauge(registry, "run_timestamp_seconds", "When the last run finished (Unix time).").set(now.timestamp())
    if last_success is not None:
        _gauge(
            registry,
            "last_success_timestamp_seconds",
            "When a whole run last exited 0 (no dry run); carried forward unchanged by every other exit.",
        ).set(last_success.timestamp())
    _gauge(registry, "dry_run", "1 when the last run was a dry run (nothing written).").set(
        int(any(r.dry_run for r in reports))
    )
    return registry


def write_metrics(
    path: Path,
    reports: Sequence[CommandReport],
    *,
    duration_seconds: float,
    exit_code: int,
    api_calls: Mapping[str, Mapping[str, int]],
    retries: Mapping[str, int],
    now: datetime,
    last_success: datetime | None,
) -> None:
    """Write the run's metrics to ``path`` atomically (temporary file, then a rename over the old one)."""
    registry = build_registry(
        reports,
        duration_seconds=duration_seconds,
        exit_code=exit_code,
        api_calls=api_calls,
        retries=retries,
        now=now,
        last_success=last_success,
    )
    directory = path.parent
    if not directory.is_dir():
        raise ConfigError(
            f"--metrics-file {path}: the directory {directory} does not exist; create it (for node_exporter, "
            "its --collector.textfile.directory) or point --metrics-file at an existing directory"
        )
    if path.is_dir():
        raise ConfigError(
            f"--metrics-file {path} is a directory; give a file name such as {path / 'amplify_billing.prom'}"
        )
    try:
        # write_to_textfile removes its temporary file itself when the write or the rename fails
        write_to_textfile(str(path), _Redacted(registry))
        os.chmod(path, FILE_MODE)
    except OSError as error:
        raise ConfigError(
            f"--metrics-file {path}: cannot write it ({error.strerror or error}); check that the directory "
            f"{directory} is writable by this user and has free space"
        ) from error


class _Redacted(Collector):
    """A registry's metrics with every label value passed through the one redaction point (``redact``): the
    file is world-readable, and a label is the one place free text could reach it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            family.samples = [s._replace(labels={k: redact(v) for k, v in s.labels.items()}) for s in family.samples]
            yield family


# ---- carried forward ---------------------------------------------------------------------------------------

LAST_SUCCESS = PREFIX + "last_success_timestamp_seconds"


def read_last_success(path: Path) -> datetime | None:
    """The last success the file at ``path`` records, to carry forward on an exit that is not one; None when there
    is no file, no such sample or the file cannot be read (the next success writes it again)."""
    try:
        text = path.read_text(encoding="utf-8")
        families = list(text_string_to_metric_families(text))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    for family in families:
        for sample in family.samples:
            if sample.name == LAST_SUCCESS and sample.value > 0:
                return datetime.fromtimestamp(sample.value, UTC)
    return None


__all__ = ["LAST_SUCCESS", "build_registry", "read_last_success", "write_metrics"]
