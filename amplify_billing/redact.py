"""The one redaction point: every text the tool shows or keeps passes through ``redact`` first.

Error lines, log records (text and JSON), tracebacks, crash reports and rendered reports all call it, so
a credential an upstream echoes back, or one that sits in an exception's message, is never printed nor
written to disk. It hides two things:

- the values registered with ``register_secret`` (the loaded settings' secrets, by the CLI once they
  load: ``register_secrets_of``), wherever they appear;
- credentials in their usual shapes, registered or not: Authorization headers, Bearer and Basic tokens,
  ``client_secret=…`` and the like in URLs and forms, passwords in URLs, keys quoted in a dict or JSON.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TypeAlias

HIDDEN = "<hidden>"

# Values shorter than this are not searched for alone (every "a" would become <hidden>); the
# patterns below still apply to them.
MIN_SECRET_LENGTH = 4

_Replacement: TypeAlias = str | Callable[[re.Match[str]], str]

# Keys whose value is a credential wherever it is written as key=value or "key": "value".
_SECRET_KEYS = r"client_secret|api_key|password|access_token|refresh_token|client_assertion|private_key"


def _header_value(match: re.Match[str]) -> str:
    return f"{match.group(1)}{match.group(2) or ''}{HIDDEN}"


_PATTERNS: tuple[tuple[re.Pattern[str], _Replacement], ...] = (
    # "Authorization: Bearer x", "'Authorization': 'Basic x'", "authorization=x"
    (
        re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?\s*)((?:basic|bearer|token)\s+)?[^\s'\",;}]+"),
        _header_value,
    ),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*"), r"\1 " + HIDDEN),
    # "Basic" alone is a common word ("Basic plan"); only a long base64 run after it is a credential
    # (Recurly's API key travels as Basic base64("<key>:")).
    (re.compile(r"(?i)\b(basic)\s+[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])"), r"\1 " + HIDDEN),
    # query strings and forms: client_secret=…&…
    (re.compile(rf"(?i)\b({_SECRET_KEYS})=[^&\s'\"]+"), r"\1=" + HIDDEN),
    # a dict or JSON document: 'api_key': '…' (only quoted values: "recurly.api_key: expected a string" is
    # a configuration error about the key, not the key itself)
    (re.compile(rf"(?i)(['\"](?:{_SECRET_KEYS})['\"]\s*:\s*['\"])[^'\"]+(?=['\"])"), r"\1" + HIDDEN),
    # https://user:password@host
    (re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@"), HIDDEN + "@"),
)


class _KnownSecrets:
    """The registered values, longest first (so a secret that contains another is hidden whole).

    Process-wide on purpose: a secret loaded once must be hidden by every output of the process, including
    log handlers that third-party libraries reach and that cannot be handed an object. Registration
    replaces the tuple whole, so a reader on another thread never sees it half-sorted.
    """

    def __init__(self) -> None:
        self.values: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, candidates: set[str]) -> None:
        with self._lock:
            merged = set(self.values) | {c for c in candidates if len(c) >= MIN_SECRET_LENGTH}
            self.values = tuple(sorted(merged, key=lambda value: (-len(value), value)))

    def clear(self) -> None:
        with self._lock:
            self.values = ()


_KNOWN = _KnownSecrets()


def register_secret(value: str) -> None:
    """Hide ``value`` from every output from now on (with its stripped form, its PEM body lines and its
    HTTP Basic form, in which Recurly's client sends an API key)."""
    if not value:
        return
    candidates = {value, value.strip()}
    # A PEM key may surface a line at a time (e.g. in a parse error): hide each body line as well.
    candidates.update(line.strip() for line in value.splitlines() if not line.strip().startswith("-----"))
    candidates.add(base64.b64encode(f"{value.strip()}:".encode()).decode("ascii"))
    _KNOWN.add(candidates)


def register_secrets_of(settings: object) -> None:
    """Register every secret value held anywhere in ``settings`` (our ``Secret`` or pydantic's ``SecretStr``),
    so a secret field added to the settings later is hidden without a list to keep up to date."""
    for value in _secret_values(settings, set()):
        register_secret(value)


def forget_secrets() -> None:
    """Forget every registered value (tests, which register secrets of their own, call it)."""
    _KNOWN.clear()


def redact(text: str) -> str:
    """``text`` with registered secrets and credential patterns replaced by ``<hidden>``."""
    for secret in _KNOWN.values:
        if secret in text:
            text = text.replace(secret, HIDDEN)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _secret_values(node: object, seen: set[int]) -> Iterator[str]:
    """Values of secret objects (anything with ``reveal()`` or ``get_secret_value()``) under ``node``."""
    if node is None or isinstance(node, str | bytes | int | float) or id(node) in seen:
        return
    seen.add(id(node))
    reveal = getattr(node, "reveal", None) or getattr(node, "get_secret_value", None)
    if callable(reveal):
        value = reveal()
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str):
            yield value
        return
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        children: list[object] = [getattr(node, f.name) for f in dataclasses.fields(node)]
    elif isinstance(getattr(type(node), "model_fields", None), Mapping):  # a pydantic model
        children = [getattr(node, name, None) for name in type(node).model_fields]  # type: ignore[attr-defined]
    elif isinstance(node, Mapping):
        children = list(node.values())
    elif isinstance(node, list | tuple | set | frozenset):
        children = list(node)
    else:
        return
    for child in children:
        yield from _secret_values(child, seen)


__all__ = ["HIDDEN", "MIN_SECRET_LENGTH", "forget_secrets", "redact", "register_secret", "register_secrets_of"]
