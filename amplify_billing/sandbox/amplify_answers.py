"""The shapes of the Amplify emulator's answers: JSON bodies and the error bodies of each service.

Each Amplify service words a refusal its own way (reference/amplify-api.md): the API server ``{"errors": [...]}``,
the Platform API ``{"success": false, "message"}``, the IdP (Keycloak) ``{"error", "error_description"}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar, cast

from amplify_billing.sandbox.server import Request, Response

_T = TypeVar("_T")


class BadRequest(ValueError):
    """A request the emulator refuses with 400, in the error shape of the service asked."""


def format_timestamp(moment: datetime) -> str:
    """Amplify's timestamp format: 2024-04-05T15:30:40.054+0000."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def clone(value: _T) -> _T:
    """A deep copy of JSON data (faster than copy.deepcopy, and proves the value is JSON)."""
    return cast(_T, json.loads(json.dumps(value)))


def clone_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(json.dumps(value)))


def json_answer(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    """Serialise now, under the emulator lock, so a later write cannot change an answer being sent."""
    return Response(
        status, json.dumps(body).encode(), {**(headers or {}), "Content-Type": "application/json; charset=utf-8"}
    )


def api_error(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    """The API server's error body (reference §2.2)."""
    error = {"status": status, "title": HTTPStatus(status).phrase, "detail": detail}
    return json_answer(status, {"errors": [error]}, headers)


def platform_error(status: int, message: str) -> Response:
    return json_answer(status, {"success": False, "message": message, "code": status})


def idp_error(status: int, error: str, description: str) -> Response:
    return json_answer(status, {"error": error, "error_description": description})


def dig(resource: Mapping[str, Any], path: str) -> Any:
    node: Any = resource
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def int_arg(request: Request, name: str, default: int) -> int:
    """A whole-number query parameter of at least 1 (``page``, ``pageSize``); absent or empty is ``default``."""
    raw = request.arg(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise BadRequest(f"{name} must be a whole number of at least 1, got {raw!r}")
    return int(raw)
