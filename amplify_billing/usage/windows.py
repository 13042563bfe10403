"""Usage windows, merchant tags and idempotency keys (DESIGN.md §2 merchant_tag rule, §3 Usage, §4).

A window is an aligned UTC interval ``[start, end)``: hourly windows start at the top of an hour, daily
windows at 00:00 UTC. A subscription is billed only for the part of a window inside its active interval
(the *clipped* window), but the window keeps its aligned start as its identity: the merchant_tag of a
window never depends on when the subscription started, when the tool ran or what it sent before.

Everything here is pure: no clock (``now`` is an argument), no I/O. Times must be timezone-aware; a naive
datetime is a programming error and raises ``ValueError``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

WINDOW_SIZES: Mapping[str, timedelta] = MappingProxyType({"hourly": timedelta(hours=1), "daily": timedelta(days=1)})

TAG_PREFIX = "amplify"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = timedelta(days=1)
_BASIC_FORMAT = "%Y%m%dT%H%M%SZ"
# amplify:{S}:{Q}:{YYYYMMDDTHHMMSSZ}[:adj{n}][:p{k}], n and k without leading zeros so that every tag has one
# spelling
_TAG_RE = re.compile(
    r"amplify:(?P<s>[^:\s]+):(?P<q>[^:\s]+):(?P<w>[0-9]{8}T[0-9]{6}Z)"
    r"(?::adj(?P<n>[1-9][0-9]*))?(?::p(?P<p>[1-9][0-9]*))?"
)
# Recurly takes whole-number usage quantities of up to 9 digits (reference/recurly-api.md §2.6): a window with
# more units is posted as several records, its parts.
MAX_RECORD_AMOUNT = 999_999_999
_OPERATION_RE = re.compile(r"[a-z0-9_-]{1,16}", re.ASCII)


@dataclass(frozen=True, slots=True)
class UsageWindow:
    """An aligned UTC window ``[start, end)`` and the part of it inside a subscription's active interval."""

    start: datetime
    end: datetime
    clip_start: datetime
    clip_end: datetime


@dataclass(frozen=True)
class MerchantTag:
    """A parsed merchant_tag; ``adjustment`` is None for the window's base record, n for ``…:adj{n}``; ``part`` is
    k for the k-th record of an amount too large for one (``…:p{k}``)."""

    subscription_id: str
    quota_id: str
    window_start: datetime
    adjustment: int | None = None
    part: int | None = None

    def text(self) -> str:
        return merchant_tag(self.subscription_id, self.quota_id, self.window_start, self.adjustment, self.part)


def _require_aware(name: str, moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC)


def _require_size(size: timedelta) -> None:
    # a size that does not divide a day would make "aligned at 00:00 UTC" meaningless
    if size <= timedelta(0) or _DAY % size != timedelta(0):
        raise ValueError(f"window size must be positive and divide one day evenly, got {size!r}")


def _index(moment: datetime, size: timedelta) -> int:
    """Number of the window holding ``moment`` (floor), counted from the epoch."""
    return (moment - _EPOCH) // size


def _index_ceil(moment: datetime, size: timedelta) -> int:
    """Number of the first window starting at or after ``moment``."""
    return -((_EPOCH - moment) // size)


def window_floor(moment: datetime, size: timedelta) -> datetime:
    """The aligned UTC start of the window of ``size`` that holds ``moment``."""
    _require_size(size)
    moment = _require_aware("moment", moment)
    return _EPOCH + _index(moment, size) * size


def window_ceil(moment: datetime, size: timedelta) -> datetime:
    """The aligned UTC start of the first window of ``size`` that starts at or after ``moment``."""
    _require_size(size)
    moment = _require_aware("moment", moment)
    return _EPOCH + _index_ceil(moment, size) * size


def _check_id(name: str, value: str) -> None:
    # ':' separates the parts of a tag; an id containing one would make two windows share a tag
    if not value or ":" in value or any(c.isspace() for c in value):
        raise ValueError(f"{name} must be non-empty without ':' or whitespace to go into a merchant_tag, got {value!r}")


def merchant_tag(
    subscription_id: str,
    quota_id: str,
    window_start: datetime,
    adjustment: int | None = None,
    part: int | None = None,
) -> str:
    """``amplify:{S}:{Q}:{window start, UTC, ISO 8601 basic}`` plus ``:adj{n}`` for the n-th correction (n ≥ 1)
    and ``:p{k}`` for the k-th part of an amount over ``MAX_RECORD_AMOUNT`` (k ≥ 1).

    Deterministic: the same window always gets the same tag, which is how a lost journal or a killed run
    finds what Recurly already holds (DESIGN.md §4).
    """
    _check_id("subscription_id", subscription_id)
    _check_id("quota_id", quota_id)
    start = _require_aware("window_start", window_start)
    if start.microsecond:
        # the basic format has whole seconds; two starts differing below a second would share a tag
        raise ValueError(f"window_start must be a whole second, got {window_start.isoformat()}")
    tag = f"{TAG_PREFIX}:{subscription_id}:{quota_id}:{start.strftime(_BASIC_FORMAT)}"
    for name, number, label in (("adjustment", adjustment, "adj"), ("part", part, "p")):
        if number is None:
            continue
        if isinstance(number, bool) or number < 1:
            raise ValueError(f"{name} must be None or a number ≥ 1, got {number!r}")
        tag += f":{label}{number}"
    return tag


def split_amount(amount: int) -> list[int]:
    """``amount`` as record amounts Recurly accepts: itself, or parts of at most ``MAX_RECORD_AMOUNT`` each
    (same sign), largest first, so that a window's parts are always the same for the same amount."""
    sign = -1 if amount < 0 else 1
    rest = abs(amount)
    if rest <= MAX_RECORD_AMOUNT:
        return [amount]
    parts = []
    while rest > 0:
        parts.append(sign * min(rest, MAX_RECORD_AMOUNT))
        rest -= MAX_RECORD_AMOUNT
    return parts


def parse_merchant_tag(text: str) -> MerchantTag | None:
    """The parts of one of our tags; None for anything else (another integration's tag, a typo, empty).

    Only the canonical spelling is accepted, so ``parse_merchant_tag(t).text() == t`` for every tag parsed.
    """
    match = _TAG_RE.fullmatch(text)
    if match is None:
        return None
    try:
        start = datetime.strptime(match["w"], _BASIC_FORMAT).replace(tzinfo=UTC)
    except ValueError:  # e.g. 20261399T000000Z: digits in the right places, but no such date
        return None
    adjustment = int(match["n"]) if match["n"] else None
    part = int(match["p"]) if match["p"] else None
    return MerchantTag(match["s"], match["q"], start, adjustment, part)


def idempotency_key(tag: str, operation: str) -> str:
    """The ``Idempotency-Key`` header for a write of ``operation`` ("create", "update", …) about ``tag``.

    ``amplify-{operation}-{32 hex}``: the hex is SHA-256 of the operation and the tag, so the same
    tag and operation always give the same key (a crash-restart resend is deduplicated by Recurly while it
    remembers the key), different ones differ, and the key stays ≤ 64 characters of ``[A-Za-z0-9:_-]``
    whatever the length of the ids in the tag (Recurly documents no maximum; reference/recurly-api.md §4).
    """
    if not _OPERATION_RE.fullmatch(operation):
        raise ValueError(f"operation must be 1-16 characters of [a-z0-9_-], got {operation!r}")
    digest = hashlib.sha256(f"{operation}\n{tag}".encode()).hexdigest()[:32]
    return f"amplify-{operation}-{digest}"


def reportable_windows(
    *,
    size: timedelta,
    now: datetime,
    settle_delay: timedelta,
    active_from: datetime,
    active_until: datetime | None,
    since: datetime | None,
    earliest: datetime,
    until: datetime | None,
) -> list[UsageWindow]:
    """The windows of one (subscription, quota) that may be reported at ``now``, oldest first.

    - Windows are aligned in UTC (``size`` divides a day: hourly at the top of the hour, daily at 00:00 UTC).
    - Each is clipped to the active interval ``[active_from, active_until)`` (``active_until`` None: still
      active); a window whose clipped part is empty is left out.
    - A window is reportable when ``clip_end + settle_delay <= now``: late traffic has had time to arrive.
      Because the clipped end counts, the last window of an ended subscription is reportable ``settle_delay``
      after the subscription ended, not only after the aligned window closes.
    - ``since`` is a watermark, the ``clip_end`` of the last reported window: windows with
      ``clip_end <= since`` are left out.
    - ``earliest`` leaves out windows whose (aligned) ``end <= earliest``. It never clips a window: a window
      holding ``earliest`` is returned whole, since a partial count under the window's merchant_tag would
      look like a restatement of the full one.
    - ``until`` leaves out windows whose ``clip_end > until``.

    Every datetime must be timezone-aware (``ValueError`` otherwise); results are in UTC. The range is
    computed arithmetically, so the cost is proportional to the number of windows returned.
    """
    _require_size(size)
    if settle_delay < timedelta(0):
        raise ValueError(f"settle_delay must not be negative, got {settle_delay!r}")
    now = _require_aware("now", now)
    active_from = _require_aware("active_from", active_from)
    earliest = _require_aware("earliest", earliest)
    stop = _require_aware("active_until", active_until) if active_until is not None else None
    since = _require_aware("since", since) if since is not None else None
    until = _require_aware("until", until) if until is not None else None

    # the latest clip_end any returned window may have
    limit = now - settle_delay
    if until is not None and until < limit:
        limit = until
    if stop is not None and stop <= active_from:
        return []

    first = max(_index(active_from, size), _index(earliest, size))
    if since is not None:
        # windows ending at or before the watermark are out; the one holding it may still be (clip_end check)
        first = max(first, _index(since, size))
    # a window's clip_end is after its start, so a window starting at or after `limit` cannot qualify,
    # nor can one starting at or after the end of the active interval
    last = _index_ceil(limit, size)
    if stop is not None:
        last = min(last, _index_ceil(stop, size))

    windows: list[UsageWindow] = []
    start = _EPOCH + first * size
    for _ in range(first, last):
        end = start + size
        clip_start = active_from if active_from > start else start
        clip_end = stop if stop is not None and stop < end else end
        # only the first and last windows of the range can fail these; checking every one is cheap
        if clip_start < clip_end <= limit and (since is None or clip_end > since):
            windows.append(UsageWindow(start, end, clip_start, clip_end))
        start = end
    return windows


__all__ = [
    "MAX_RECORD_AMOUNT",
    "WINDOW_SIZES",
    "MerchantTag",
    "UsageWindow",
    "idempotency_key",
    "merchant_tag",
    "parse_merchant_tag",
    "reportable_windows",
    "split_amount",
    "window_ceil",
    "window_floor",
]
