"""Reading Amplify's answers and wording its failures; shared by the token provider and the transport."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from amplify_billing.errors import UnreachableError, UpstreamError
from amplify_billing.settings import AmplifySettings

# Long error bodies (HTML from a proxy, stack traces) are cut so the operator still gets one line.
MAX_DETAIL_CHARS = 300


def setting_for(url: str, settings: AmplifySettings) -> str:
    """The configuration key an operator should check when ``url`` cannot be reached.

    The longest matching base wins, so a sandbox serving everything from one host still names the
    most specific key; on a tie the central URL is named.
    """
    candidates = (
        ("amplify.central_url", settings.central_url),
        ("amplify.platform_url", settings.platform_url),
        ("amplify.auth_url", settings.auth_url),
    )
    matching = [(len(base.rstrip("/")), key) for key, base in candidates if url.startswith(base.rstrip("/"))]
    if not matching:
        return "amplify.central_url"
    longest = max(length for length, _ in matching)
    return next(key for length, key in matching if length == longest)


def unreachable(url: str, reason: str, settings: AmplifySettings) -> UnreachableError:
    host = urlsplit(url).netloc
    return UnreachableError(
        f"Amplify at {host} is unreachable: {reason}; check {setting_for(url, settings)} and the network",
        system="amplify",
    )


def platform_answer(response: requests.Response) -> bool:
    """Whether the answer is the Platform API's own (``{"success": false, …}``): a 404 in that shape comes from the
    Platform API about one object, not from a server at a wrong ``amplify.platform_url``."""
    try:
        body: Any = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("success") is False


def error_detail(response: requests.Response) -> str:
    """What the server said went wrong, in one line.

    The API server answers ``{"errors": [{"status", "title", "detail"}]}``, the Platform API
    ``{"success": false, "message"}``, the IdP ``{"error", "error_description"}``.
    """
    try:
        body: Any = response.json()
    except ValueError:
        return " ".join(response.text.split())[:MAX_DETAIL_CHARS]
    parts: list[str] = []
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list):
            for error in errors:
                if isinstance(error, dict):
                    text = ": ".join(str(error[k]) for k in ("title", "detail") if error.get(k))
                    if text:
                        parts.append(text)
        if isinstance(body.get("message"), str) and body["message"]:
            parts.append(body["message"])
        idp = ": ".join(body[k] for k in ("error", "error_description") if isinstance(body.get(k), str) and body[k])
        if idp:
            parts.append(idp)
    return "; ".join(parts)[:MAX_DETAIL_CHARS]


def json_body(response: requests.Response) -> Any:
    """The decoded JSON of a successful answer; a body that is not JSON is an upstream fault."""
    try:
        return response.json()
    except ValueError:
        raise UpstreamError(
            f"Amplify answered {response.request.method} {response.url} with a body that is not JSON",
            system="amplify",
            status=response.status_code,
        ) from None
