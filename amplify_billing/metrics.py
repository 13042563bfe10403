"""``--metrics-file``: one run's figures in the Prometheus text exposition format.

The file is read by node_exporter's textfile collector, which may read it at any moment: it is
written to a temporary file in the same directory (a name the collector ignores, since it reads
only ``*.prom``), synced, and renamed over the old one, so a scrape sees the previous run or this
one, never half of either. Every metric is a gauge: each file describes one run, it counts nothing
across runs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from amplify_billing.errors import ConfigError
from amplify_billing.models import ChangeKind, CommandReport

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

# node_exporter reads files it can see; mkstemp creates 0600, and the collector runs as another user.
FILE_MODE = 0o644

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Family:
    """One metric while it is being assembled: name without the prefix, help text, labelled samples."""

    name: str
    help: str
    samples: list[tuple[Labels, float | int]] = field(default_factory=list)

    def add(self, value: float | int, **labels: str) -> None:
        self.samples.append((tuple(labels.items()), value))


def escape_label_value(value: str) -> str:
    """Backslash, double quote and newline escaped, as the text format requires for label values."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float | int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if value != value:  # NaN
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


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


def build_families(
    reports: Sequence[CommandReport],
    *,
    duration_seconds: float,
    exit_code: int,
    api_calls: Mapping[str, Mapping[str, int]],
    retries: Mapping[str, int],
    now: datetime,
    last_success: datetime | None,
) -> list[_Family]:
    if now.tzinfo is None or (last_success is not None and last_success.tzinfo is None):
        # a naive time would be read as local time and shift every timestamp by the UTC offset
        raise ValueError("write_metrics needs timezone-aware times (now, last_success)")
    changes = _Family("changes", "Changes handled by the last run, by command, kind and outcome.")
    counted: Counter[tuple[str, str, str]] = Counter(
        (report.command, result.change.kind.value, result.outcome.value)
        for report in reports
        for result in report.results
    )
    for (command, kind, outcome), count in sorted(counted.items()):
        changes.add(count, command=command, kind=kind, outcome=outcome)

    families = [changes]
    for figure, metric, help_text in USAGE_FIGURES:
        values = [v for v in (_figure(r, figure) for r in reports) if v is not None]
        # absent when no report-usage step ran: 0 would claim usage was reported and came to nothing
        if values:
            family = _Family(metric, help_text)
            family.add(sum(values))
            families.append(family)

    findings = _Family("findings", "Findings (drift, unbilled traffic) reported by each command of the last run.")
    for report in reports:
        findings.add(sum(1 for r in report.results if r.change.kind is ChangeKind.FINDING), command=report.command)
    families.append(findings)

    command_exit = _Family("command_exit_code", "Exit code of each command of the last run.")
    for report in reports:
        command_exit.add(int(report.exit_code), command=report.command)
    families.append(command_exit)

    requests = _Family("api_requests", "HTTP requests made by the last run, by system and method.")
    for system in sorted(api_calls):
        for method in sorted(api_calls[system]):
            requests.add(int(api_calls[system][method]), system=system, method=method)
    families.append(requests)

    retried = _Family("api_retries", "Requests retried by the last run (429, 5xx, network errors), by system.")
    for system in sorted(retries):
        retried.add(int(retries[system]), system=system)
    families.append(retried)

    scalars: list[tuple[str, str, float | int]] = [
        ("run_duration_seconds", "Wall time of the last run.", float(duration_seconds)),
        ("run_exit_code", "Exit code of the last run (0 done; see README 'Exit codes').", int(exit_code)),
        ("run_timestamp_seconds", "When the last run finished (Unix time).", now.timestamp()),
    ]
    if last_success is not None:
        scalars.append(
            ("last_success_timestamp_seconds", "When a run last finished with exit code 0.", last_success.timestamp())
        )
    scalars.append(
        ("dry_run", "1 when the last run was a dry run (nothing written).", int(any(r.dry_run for r in reports)))
    )
    for name, help_text, value in scalars:
        family = _Family(name, help_text)
        family.add(value)
        families.append(family)
    return families


def render_families(families: Sequence[_Family]) -> str:
    lines: list[str] = []
    for family in families:
        name = PREFIX + family.name
        lines.append(f"# HELP {name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {name} gauge")
        for labels, value in family.samples:
            label_text = ",".join(f'{key}="{escape_label_value(val)}"' for key, val in labels)
            selector = f"{name}{{{label_text}}}" if labels else name
            lines.append(f"{selector} {format_value(value)}")
    return "\n".join(lines) + "\n"


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
    """Write the run's metrics to ``path`` atomically (temporary file, fsync, rename)."""
    text = render_families(
        build_families(
            reports,
            duration_seconds=duration_seconds,
            exit_code=exit_code,
            api_calls=api_calls,
            retries=retries,
            now=now,
            last_success=last_success,
        )
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
        _atomic_write(path, text)
    except OSError as error:
        raise ConfigError(
            f"--metrics-file {path}: cannot write it ({error.strerror or error}); check that the directory "
            f"{directory} is writable by this user and has free space"
        ) from error


def _atomic_write(path: Path, text: str) -> None:
    # the ".tmp" suffix keeps the textfile collector (which reads *.prom) from reading a partial file
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable; best effort (not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["escape_label_value", "format_value", "write_metrics"]
