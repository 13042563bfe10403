"""Journal effects as planned changes (docs/architecture.md, "Journal effects").

Every local write (a link, a ledger row, an intent closed, a watermark, the sample cursor) is a ``Change`` of kind
RECORD with a typed journal action: a dry run applies it to the journal overlay, a real run to the journal, and the
Applier audits it like an upstream write. The ``phase`` orders writes whose order matters to a killed run: the
ledger rows a read found come before the mark saying the read was made, so a run killed between them reads again.
"""

from __future__ import annotations

from amplify_billing.actions import Action, SetLink
from amplify_billing.changes import Change, ChangeKind

# facts read from elsewhere (ledger rows, intents closed), then the marks and settings that rely on them
PHASE_FACTS = 1
PHASE_MARKS = 2


def record(
    action: Action,
    summary: str,
    *,
    about: str = "journal",
    key: str = "",
    requires: tuple[str, ...] = (),
    phase: int = PHASE_FACTS,
    amplify_id: str | None = None,
) -> Change:
    return Change(
        ChangeKind.RECORD,
        "journal",
        about,
        "-",
        summary,
        action=action,
        phase=phase,
        key=key,
        requires=requires,
        amplify_id=amplify_id,
    )


def set_link(kind: str, key: str, value: str, *, phase: int = PHASE_FACTS, about: str | None = None) -> Change:
    """The journal's ``kind`` link of ``key`` set to ``value`` ("" clears it)."""
    summary = f"{kind} {key} = {value}" if value else f"{kind} {key} cleared"
    return record(SetLink(kind, key, value), summary, about=about or key, key=f"{kind}:{key}", phase=phase)
