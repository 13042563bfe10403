"""doctor: first contact with a tenant. What works there and what does not, read-only, within the rate limit.

The layers: ``gather.doctor`` (the only I/O; no write to either system, no journal created) → ``DoctorInputs`` →
``reconcile.doctor.build_doctor`` (pure) → ``DoctorReport`` → ``render.doctor.render_doctor``. Exit 0 when ready,
4 when a check needs action.
"""

from __future__ import annotations

from typing import Protocol

from amplify_billing.collaborators import Consoles
from amplify_billing.errors import ConfigError
from amplify_billing.gather.doctor import DoctorReads, gather_doctor
from amplify_billing.reconcile.doctor import build_doctor
from amplify_billing.render.doctor import DoctorOutput, render_doctor


class Doctor(DoctorReads, Consoles, Protocol):
    """What doctor uses: its reads (``gather.doctor``) and the console its report goes to."""


def doctor_output(value: str) -> DoctorOutput:
    for known in ("table", "json", "markdown"):
        if value == known:
            return known
    raise ConfigError(f"--output {value!r}: use table, json or markdown")


def doctor(rt: Doctor, *, output: DoctorOutput = "table") -> int:
    """Gather, judge, render; the exit code (0 ready, 4 action needed)."""
    started = rt.clock()
    report = build_doctor(gather_doctor(rt))
    render_doctor(rt.console, report, output, started_at=started, finished_at=rt.clock())
    return report.exit_code


__all__ = ["doctor", "doctor_output"]
