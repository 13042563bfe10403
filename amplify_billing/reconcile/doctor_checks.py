"""doctor's vocabulary: a check's verdict and evidence, the census and preview rows, and the report. Pure values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    OK = "ok"
    ACTION = "action needed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Check:
    """One thing doctor looked at: its verdict, the evidence it saw, and what to do (empty when nothing)."""

    area: str  # credentials | api version | census | usage source | recurly | plans
    name: str
    verdict: Verdict
    evidence: str
    action: str = ""


@dataclass(frozen=True)
class CensusRow:
    """One distinct value of one field across the opted-in catalog and its subscriptions."""

    field: str  # plan type, billing interval, renewal, quota pricing type, limit type, subscription state, approval
    value: str  # "(none)" when the field is absent
    count: int
    example: str
    known: bool
    holds_back: tuple[str, ...] = ()  # the plans or subscriptions an unknown value keeps out of billing


@dataclass(frozen=True)
class PreviewRow:
    """A group of opted-in plans by what sync-plans would do with them."""

    outcome: str  # synced | unsupported | not synced
    reason: str
    count: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]
    census: tuple[CensusRow, ...] = ()
    preview: tuple[PreviewRow, ...] = ()
    # requests by system and method: what doctor spent (every one a read)
    requests: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(check.verdict is not Verdict.ACTION for check in self.checks)

    @property
    def exit_code(self) -> int:
        """0 ready, 4 when something needs action (the README's exit code for "refused, read the report")."""
        return 0 if self.ready else 4

    def amplify_requests(self) -> int:
        return sum(self.requests.get("amplify", {}).values())
