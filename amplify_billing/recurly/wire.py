"""Recurly's answers and request bodies as plain data: no SDK object and no Decimal crosses this line."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import recurly


def to_wire(value: Any, key: str = "") -> Any:
    """Request bodies keep Decimal up to here; the client's JSON encoder cannot serialise it."""
    if isinstance(value, Mapping):
        return {str(k): to_wire(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(v, key) for v in value]
    if isinstance(value, Decimal):
        if key.endswith("_decimal"):
            # exact text, never an exponent ("0.0025", not "2.5E-3")
            return format(value, "f")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return wire_timestamp(value)
    return value


def wire_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plain_data(value: Any) -> Any:
    """An SDK resource (as list pages yield them) -> the JSON data it was built from."""
    if isinstance(value, recurly.Resource):
        return {k: plain_data(v) for k, v in vars(value).items() if not k.startswith("_")}
    if isinstance(value, list):
        return [plain_data(v) for v in value]
    if isinstance(value, datetime):
        return wire_timestamp(value if value.tzinfo else value.replace(tzinfo=UTC))
    return value


def body_of(resource: Any) -> dict[str, Any]:
    """A single-object answer as the JSON the server sent (unknown fields included)."""
    if resource is None or isinstance(resource, recurly.resource.Empty):
        return {}
    try:
        body = resource.get_response().body
    except AttributeError:
        body = None
    if isinstance(body, dict):
        return body
    if isinstance(body, bytes | str) and body:
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            return parsed
    plain = plain_data(resource)
    return plain if isinstance(plain, dict) else {}


def error_text(error: recurly.ApiError) -> str:
    detail = getattr(error, "error", None)
    message = str(getattr(detail, "message", "") or error)
    params = getattr(detail, "params", None) or []
    fields = "; ".join(f"{p.get('param')}: {p.get('message')}" if isinstance(p, Mapping) else str(p) for p in params)
    return f"{message} ({fields})" if fields else message
