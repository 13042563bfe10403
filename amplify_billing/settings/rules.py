"""The rules a configuration value must meet once it has its type: ranges, URLs, Recurly names.

Each is a pydantic *after* validator on a field of ``models``; a broken rule is a ``Problem`` (see ``values``)
whose text names what is wrong and what to do.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator

from amplify_billing.settings.values import Problem, show

T = TypeVar("T")


def rule(check: Callable[[Any], str | None]) -> AfterValidator:
    """An after validator from ``check(value)``, which returns what is wrong or None."""

    def validate(value: T) -> T:
        found = None if value is None else check(value)
        if found is not None:
            raise Problem(found).for_pydantic()
        return value

    return AfterValidator(validate)


# ---- the rules -------------------------------------------------------------------------------

# Recurly codes are at most 50 characters of [a-z0-9_-]; ours are prefix + 32 hex characters.
_CODE_PREFIX = re.compile(r"[a-z0-9_-]{1,20}")
_CUSTOM_FIELD = re.compile(r"[a-z0-9_-]{1,50}", re.IGNORECASE)


def between(low: int, high: int | None, why: str = "") -> AfterValidator:
    def check(value: int) -> str | None:
        if value >= low and (high is None or value <= high):
            return None
        wanted = f"from {low} to {high}" if high is not None else f"{low} or more"
        return f"must be {wanted}, got {value}" + (f" ({why})" if why else "")

    return rule(check)


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be more than 0, got {value:g}"


def _at_least(*, allow_zero: bool) -> AfterValidator:
    def check(value: timedelta) -> str | None:
        if value > timedelta(0) or (allow_zero and value == timedelta(0)):
            return None
        seconds = int(value.total_seconds())
        return f"must be {'0 or more' if allow_zero else 'more than 0'}, got {seconds} seconds"

    return rule(check)


def http_url(*, path_allowed: bool) -> AfterValidator:
    def check(value: str) -> str | None:
        try:
            parts = urlsplit(value)
            host = parts.hostname
            parts.port  # noqa: B018 -- raises ValueError on a bad port
        except ValueError:
            return f"{show(value)} has an invalid host or port; use https://host[:port]"
        if "@" in parts.netloc:
            # not echoed: the part before @ is a password; URLs also end up in "unreachable" messages
            return "contains credentials (user:password@); remove them, the tool authenticates on its own"
        if any(ch.isspace() for ch in value):
            return f"{show(value)} contains whitespace; remove it"
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not host:
            return f"{show(value)} is not an http(s) URL; use https://host"
        if scheme == "http" and not _loopback(host):
            return (
                f"{show(value)}: plain http is allowed only for loopback hosts (127.0.0.0/8, localhost, ::1); "
                "use https://"
            )
        if not path_allowed and parts.path not in ("", "/"):
            return f"{show(value)}: only the scheme, host and port are used; remove the path {parts.path!r}"
        if parts.query or parts.fragment:
            return f"{show(value)}: remove the query or fragment"
        return None

    return rule(check)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _code_prefix(value: str) -> str | None:
    if _CODE_PREFIX.fullmatch(value):
        return None
    # an empty prefix would make every Recurly plan look like one of ours
    return f"{show(value)} must be 1 to 20 characters of a-z, 0-9, _ and - (codes are the prefix + 32 hex, ≤ 50)"


def _custom_field(value: str) -> str | None:
    if _CUSTOM_FIELD.fullmatch(value):
        return None
    return f"{show(value)} must be 1 to 50 characters of letters, digits, _ and - (a Recurly custom field name)"


Positive = rule(_positive)
ZeroOrLonger = _at_least(allow_zero=True)
Longer = _at_least(allow_zero=False)
CodePrefix = rule(_code_prefix)
CustomFieldName = rule(_custom_field)
