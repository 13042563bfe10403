"""Is this journal stale? A rotating sample of pairs read from Recurly and compared with the ledger (DESIGN.md §5).

A journal restored from a backup, or a second host's journal for the same site, is behind what Recurly holds: its
watermarks would have windows counted and posted again, and once Recurly forgets the Idempotency-Key (its lifetime
is undocumented) they land twice. The tags are deterministic, so such a journal shows itself: Recurly holds records
carrying our ``amplify:`` tag that its ledger never wrote. Every report-usage run reads the newest usage of a few
pairs (``state.verify_sample``, 5 by default), a different few each run, and one such record is enough to call the
journal stale; the caller then forgets the marks that let pairs skip reading Recurly
(``Journal.forget_usage_marks``) and rebuilds every pair from Recurly before anything is posted.

Records without our tag are Recurly's own (the negative record of a terminate without charge, a record entered by
hand) and prove nothing about the journal: they are ignored.

The choice of pairs and the comparison are pure functions; ``check_sample`` does the reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from amplify_billing.journal_view import JournalReader
from amplify_billing.usage.windows import parse_merchant_tag

# Recurly's largest page: the records of one pair since its horizon fit in one read unless the journal is far behind
PAGE_LIMIT = 200
# how far before the newest window the ledger knows the read begins: corrections (…:adj{n}) of recent windows are
# dated at their window, so a restored journal that missed one shows it here (usage.lookback, default 72 h)
DEFAULT_LOOKBACK = timedelta(hours=72)


class PairLike(Protocol):
    """What the check needs of a billed (subscription, quota): ``BilledQuota`` and ``SamplePair`` both have it."""

    @property
    def subscription_id(self) -> str: ...  # Amplify subscription id
    @property
    def quota_id(self) -> str: ...
    @property
    def recurly_uuid(self) -> str: ...
    @property
    def add_on_code(self) -> str: ...


class UsageReader(Protocol):
    def list_usage(
        self, subscription_id: str, add_on_id: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class SamplePair:
    subscription_id: str
    quota_id: str
    recurly_uuid: str
    add_on_code: str


def pair_key(pair: PairLike) -> str:
    """The pair's place in the rotation (stable across runs: ids only)."""
    return f"{pair.subscription_id}:{pair.quota_id}:{pair.recurly_uuid}:{pair.add_on_code}"


@dataclass(frozen=True)
class StaleCheck:
    """What one sample found. ``evidence`` is the first of our merchant_tags in Recurly the ledger does not hold
    (or holds with another amount); ``detail`` says which."""

    pairs: tuple[SamplePair, ...]  # read, in order
    reads: int  # list_usage calls (one page each unless a pair holds more than PAGE_LIMIT records since its horizon)
    stale: bool
    evidence: str | None = None
    detail: str | None = None

    @property
    def cursor(self) -> str | None:
        """Where the next run's sample starts after (the last pair read), None when none was read."""
        return pair_key(self.pairs[-1]) if self.pairs else None

    def summary(self) -> str:
        if not self.stale:
            return f"journal checked against Recurly: {len(self.pairs)} pair(s) read, {self.reads} read(s), not stale"
        return (
            f"the journal is stale (restored from a backup, or another host's): Recurly holds usage record "
            f"{self.evidence} that its ledger {self.detail}; every pair is read again from Recurly before anything "
            f"is posted ({self.reads} read(s) of {len(self.pairs)} pair(s) found it)"
        )


# ---- pure parts -----------------------------------------------------------------------------------------------


def rotation(keys: Sequence[str], after: str | None) -> list[str]:
    """``keys`` sorted and started just after ``after`` (wrapping round), so that successive samples taken from the
    front of this order cover every key in turn; a cursor that is no longer a key still finds its place."""
    ordered = sorted(set(keys))
    if after is None:
        return ordered
    cut = next((i for i, key in enumerate(ordered) if key > after), len(ordered))
    return ordered[cut:] + ordered[:cut]


def _amount(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def first_unknown(records: Iterable[Mapping[str, Any]], known: Mapping[str, Decimal]) -> tuple[str, str] | None:
    """The first record carrying our tag that ``known`` (the ledger's amounts by tag) lacks or holds with another
    amount, as (tag, what the ledger says); None when the ledger knows every one of ours."""
    for record in records:
        tag = str(record.get("merchant_tag") or "")
        if parse_merchant_tag(tag) is None:
            continue  # not ours: Recurly's own record, or another integration's
        if tag not in known:
            return tag, "does not hold"
        amount = _amount(record.get("amount"))
        if amount is not None and amount != known[tag]:
            return tag, f"holds with amount {known[tag]} where Recurly has {amount}"
    return None


def _horizon(journal: JournalReader, pair: PairLike, lookback: timedelta) -> datetime | None:
    """Where the read of a pair begins: the newest window the ledger holds for it (else its watermark), less the
    lookback. None: the journal has never reported the pair, so report-usage reads it from Recurly anyway."""
    known = journal.newest_usage_window(pair.subscription_id, pair.quota_id) or journal.usage_watermark(
        pair.subscription_id, pair.quota_id
    )
    return None if known is None else known - lookback


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the check ------------------------------------------------------------------------------------------------


def check_sample(
    journal: JournalReader,
    recurly: UsageReader,
    pairs: Iterable[PairLike],
    sample_size: int,
    now: datetime,
    *,
    lookback: timedelta = DEFAULT_LOOKBACK,
) -> StaleCheck:
    """Read the newest Recurly usage of up to ``sample_size`` pairs the journal has reported, the ones after the
    previous run's in key order, and compare each of our records with the ledger.

    Stops at the first evidence of staleness (one is enough). The caller records where the rotation stands (the
    key of the last pair read, ``cursor``), so that the next run reads the next pairs.
    ``now`` bounds the read: a record dated in the future is not ours to judge.
    """
    by_key = {pair_key(p): p for p in pairs}
    read: list[SamplePair] = []
    found: tuple[str, str] | None = None
    if sample_size > 0:
        for key in rotation(list(by_key), journal.sample_cursor()):
            pair = by_key[key]
            since = _horizon(journal, pair, lookback)
            if since is None:
                continue
            records = recurly.list_usage(
                f"uuid-{pair.recurly_uuid}",
                f"code-{pair.add_on_code}",
                {
                    "billing_status": "all",
                    # ascending: the order Recurly's API reference says paging by usage_timestamp is reliable in
                    "sort": "usage_timestamp",
                    "order": "asc",
                    "begin_time": _ts(since),
                    "end_time": _ts(now),
                    "limit": PAGE_LIMIT,
                },
            )
            read.append(SamplePair(pair.subscription_id, pair.quota_id, pair.recurly_uuid, pair.add_on_code))
            tags = [str(r.get("merchant_tag") or "") for r in records]
            found = first_unknown(records, journal.usage_amounts(t for t in tags if t))
            if found is not None or len(read) == sample_size:
                break
    evidence, detail = found if found is not None else (None, None)
    return StaleCheck(tuple(read), len(read), found is not None, evidence, detail)


__all__ = [
    "DEFAULT_LOOKBACK",
    "PAGE_LIMIT",
    "PairLike",
    "SamplePair",
    "StaleCheck",
    "UsageReader",
    "check_sample",
    "first_unknown",
    "pair_key",
    "rotation",
]
