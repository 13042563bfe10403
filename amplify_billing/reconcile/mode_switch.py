"""Switching a Marketplace between modes at ``billing.switch_at``: which side bills each Amplify invoice. Pure.

``billing.switch_at`` (``settings/billing.py``) is the instant a Marketplace's configured mode took effect; before
it the other mode billed it. Each Amplify invoice covers one span: its metering period, or for the initial invoice
(base price and setup fee, no period) the moment it was made, at approval. A span wholly on one side of the switch
is billed by that side's system; one that straddles it is sent nowhere and is a withholding finding, since only an
operator can split a base price (docs/architecture.md, "Where each rule lives"; README, "Switching a Marketplace
between modes").

- recurly -> marketplace (configured mode ``marketplace``): spans before the switch were billed by Recurly's
  subscription and usage: the invoice is not sent to Recurly, and Amplify is told it was paid there.
- marketplace -> recurly (configured mode ``recurly``): spans before the switch are Amplify's invoices, sent as
  usual; spans from the switch on are Recurly's subscriptions (they start at the switch): not sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from amplify_billing.settings.billing import MARKETPLACE_MODE

AMPLIFY_SIDE = "amplify"  # sent to Recurly as an invoice (sync-invoices)
RECURLY_SIDE = "recurly"  # billed by a Recurly subscription and its usage: not sent
SPLIT = "split"  # straddles the switch: sent nowhere, a withholding finding


@dataclass(frozen=True)
class Side:
    side: str
    reason: str = ""


def _z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def invoice_side(
    mode: str, switch_at: datetime, start: datetime | None, end: datetime | None, created: datetime | None
) -> Side:
    """The side that bills an invoice of a Marketplace whose configured ``mode`` took effect at ``switch_at``.
    ``start``/``end``: its metering period (None on an initial invoice); ``created``: when Amplify made it."""
    at = f"billing.switch_at {_z(switch_at)}"
    if start is None or end is None:
        if created is None:
            return Side(
                SPLIT, f"it has neither a period nor a creation time, so which side of {at} it bills cannot be told"
            )
        start = end = created
        span = f"it was made at {_z(created)}"
        before, after = created < switch_at, created >= switch_at
    else:
        span = f"its period {_z(start)} to {_z(end)}"
        before, after = end <= switch_at, start >= switch_at
    to_amplify = mode == MARKETPLACE_MODE
    if before:
        if to_amplify:
            return Side(
                RECURLY_SIDE,
                f"billed in Recurly: {span} ends by {at}, before which Recurly billed this Marketplace"
                if span.startswith("its")
                else f"billed in Recurly: {span}, before {at}, when Recurly billed this Marketplace",
            )
        return Side(AMPLIFY_SIDE)
    if after:
        if to_amplify:
            return Side(AMPLIFY_SIDE)
        return Side(
            RECURLY_SIDE,
            f"billed in Recurly: {span} starts at or after {at}, from which Recurly bills this Marketplace"
            if span.startswith("its")
            else f"billed in Recurly: {span}, at or after {at}, from which Recurly bills this Marketplace",
        )
    old, new = ("Recurly", "Amplify's invoices") if to_amplify else ("Amplify's invoices", "Recurly")
    return Side(
        SPLIT,
        f"{span} straddles {at}: {old} billed this Marketplace before it and {new} after it, so "
        "nothing is sent. Bill the part Recurly did not by hand, then set this invoice's state in Amplify",
    )
