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

The base price a Recurly term paid in advance already covered (recurly -> marketplace): a term billed before the
switch may run past it (Recurly bills each term's base price at its start, and the switch cancels at term end
without a refund). An Amplify invoice on Amplify's side whose base price covers days that term covered is not sent:
a withholding finding names the overlap and its share of the base price (``base_overlap``). Withholding rather
than deducting keeps every Recurly invoice equal to its Amplify invoice's total, the proof sync-invoices makes.

Which Recurly subscription billed a subscription before the switch (``paid_term_from_account``): the journal's link,
else the Amplify subscription's link attribute, else the owner's Recurly account's subscriptions, listed in every
state and proven whole by their total. A lost journal is no proof that Recurly never billed it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from amplify_billing.amplify.parse import parse_timestamp
from amplify_billing.reconcile.invoice_lines import MINOR_UNITS
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


@dataclass(frozen=True)
class PaidTerm:
    """The Recurly subscription a subscription had before its Marketplace switched to marketplace mode, and the end
    of the term it was billed for in advance (``current_period_ends_at``); None with ``why`` when it was unreadable."""

    uuid: str
    paid_until: datetime | None
    why: str = ""


def base_overlap(
    switch_at: datetime,
    start: datetime | None,
    end: datetime | None,
    created: datetime | None,
    base: Decimal,
    currency: str,
    term: PaidTerm | None,
) -> str | None:
    """Why an invoice on Amplify's side of a recurly -> marketplace switch is not sent: its base price covers days
    from the switch on that ``term`` was already billed for. None: nothing is billed twice. The share is the base
    price prorated by time over its period (all of it for an initial invoice, which has no period), rounded to the
    currency's smallest unit."""
    if term is None or base <= 0:
        return None
    if term.paid_until is None:
        which = f"Recurly subscription {term.uuid}" if term.uuid else "a Recurly subscription"
        return (
            f"whether {which}, billed in advance before billing.switch_at {_z(switch_at)}, "
            f"already covered part of its base price cannot be told ({term.why}): nothing is sent; the next run "
            "reads it again"
        )
    if start is None or end is None:
        if created is None or term.paid_until <= created:
            return None
        share, span = base, f"its base price {base} {currency} is for a term from {_z(created)}"
    else:
        first, last = max(start, switch_at), min(end, term.paid_until)
        if last <= first or end <= start:
            return None
        digits = Decimal(1).scaleb(-MINOR_UNITS.get(currency.upper(), 2))
        ratio = Decimal((last - first).total_seconds()) / Decimal((end - start).total_seconds())
        share = (base * ratio).quantize(digits, rounding=ROUND_HALF_UP)
        span = f"its base price {base} {currency} covers {_z(first)} to {_z(last)}"
    return (
        f"{span}, which Recurly subscription {term.uuid} was billed for in advance up to {_z(term.paid_until)}: "
        f"{share} {currency} of it would be billed twice, so nothing is sent. Bill it by hand less {share} "
        f"{currency} (or credit {share} {currency} in Recurly), then set this invoice's state in Amplify"
    )


def paid_term(uuid: str, data: Mapping[str, Any]) -> PaidTerm:
    """The term a Recurly subscription was billed for in advance, from its data."""
    ends = parse_timestamp(data.get("current_period_ends_at")) or parse_timestamp(data.get("expires_at"))
    return PaidTerm(uuid, ends, "" if ends else "it shows no term end")


def _field(subscription: Mapping[str, Any], name: str) -> str | None:
    values = [f.get("value") for f in subscription.get("custom_fields") or () if f.get("name") == name]
    return str(values[0]) if values and values[0] else None


def paid_term_from_account(
    amplify_id: str,
    account: str,
    listed: Sequence[Mapping[str, Any]],
    incomplete: str,
    *,
    custom_field: str | None,
    plan_prefix: str,
) -> PaidTerm | None:
    """The term paid in advance for ``amplify_id``, from every subscription of its owner's Recurly ``account``
    (nothing else links them). ``incomplete``: why the listing is not proven whole ("" when it is). None: the
    account holds no subscription of ours, so Recurly never billed it. A subscription of ours that cannot be told
    apart from another subscription's is a PaidTerm with no end: its invoice is withheld, never sent on a guess."""
    ours = [s for s in listed if str((s.get("plan") or {}).get("code", "")).startswith(plan_prefix)]
    if incomplete:
        why = f"the subscriptions of Recurly account {account} are not proven listed whole ({incomplete})"
        return PaidTerm("", None, why)
    if custom_field:
        # the field names the Amplify subscription each was made for: another id rules one out
        named = {id(s): _field(s, custom_field) for s in ours}
        mine = [s for s in ours if named[id(s)] == amplify_id]
        ours = mine or [s for s in ours if named[id(s)] is None]
    if not ours:
        return None
    if len(ours) == 1:
        return paid_term(str(ours[0].get("uuid")), ours[0])
    uuids = ", ".join(sorted(str(s.get("uuid")) for s in ours))
    return PaidTerm(
        "",
        None,
        f"nothing links it to one of the Recurly subscriptions of account {account} ({uuids}); link it in the "
        "journal or set its link attribute in Amplify",
    )
