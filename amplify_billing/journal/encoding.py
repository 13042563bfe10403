"""How the journal writes times and JSON details as text, and reads them back losslessly."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


def as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        # a naive time is ambiguous; refusing it here beats storing a wrong hour
        raise ValueError(f"naive datetime {value.isoformat()} given to the journal; pass a timezone-aware time")
    return value.astimezone(UTC)


def time_text(value: datetime) -> str:
    # one fixed width (microseconds, Z) so that text order is time order in SQL comparisons
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def parse_optional_time(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)


_DECIMAL_TAG = "$decimal"
_DATETIME_TAG = "$datetime"


def _encode_value(strict: bool) -> Callable[[Any], Any]:
    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return {_DECIMAL_TAG: str(value)}
        if isinstance(value, datetime):
            return {_DATETIME_TAG: time_text(value)}
        if strict:
            raise TypeError(f"the journal cannot store a {type(value).__name__} losslessly: {value!r}")
        return str(value)

    return default


def encode_json(data: Mapping[str, Any], *, strict: bool) -> str:
    return json.dumps(dict(data), default=_encode_value(strict), sort_keys=True, separators=(",", ":"))


def _decode_object(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if _DECIMAL_TAG in obj:
            return Decimal(obj[_DECIMAL_TAG])
        if _DATETIME_TAG in obj:
            return parse_time(obj[_DATETIME_TAG])
    return obj


def decode_json(text: str) -> dict[str, Any]:
    value = json.loads(text, object_hook=_decode_object)
    assert isinstance(value, dict)
    return value
