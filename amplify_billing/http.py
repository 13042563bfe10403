"""The one ``requests`` session factory and the one retry policy.

Both adapters (Amplify over ``requests``, Recurly over its own client) retry through
``build_retrying``: network errors and transient statuses (429, 5xx) are retried with exponential
backoff and jitter, honouring the server's wait hint (``Retry-After`` or a rate-limit reset) when it
gives one. Whether a call is *safe* to repeat is the caller's decision (``is_retryable``): reads
always, writes only when the server deduplicates them (an ``Idempotency-Key``).
"""

from __future__ import annotations

import platform
import socket
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests
import tenacity

from amplify_billing import __version__
from amplify_billing.http_limits import HttpLimits, limit_session

USER_AGENT = f"amplify-billing/{__version__} (python {platform.python_version()}; requests {requests.__version__})"

# Longest single wait we accept from a server hint; beyond it we give up and report instead of
# stalling a cron job for an hour.
MAX_WAIT_SECONDS = 120.0


def make_session(limits: HttpLimits | None = None) -> requests.Session:
    """A session with our User-Agent and, given ``limits``, connections that enforce their deadline and maximum
    answer size (``http_limits``). The (connect, read) timeouts are passed on every call by the adapters."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session if limits is None else limit_session(session, limits)


def network_reason(error: BaseException) -> str:
    """What went wrong with a connection, in the operator's words, without the library's text
    (``HTTPConnectionPool(host=…): Max retries exceeded …``): the first known cause in the error's chain."""
    for cause in _causes(error):
        if isinstance(cause, socket.gaierror):
            return "its host name does not resolve (DNS)"
        if isinstance(cause, ConnectionRefusedError):
            return "the connection was refused (nothing listens at that address and port)"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"its TLS certificate is not trusted ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return "the TLS handshake failed"
        if isinstance(cause, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
            return "the connection was closed by the other end"
        if isinstance(cause, TimeoutError):
            return "it did not answer in time"
        if isinstance(cause, OSError) and cause.strerror:
            return f"the connection failed ({cause.strerror})"
    return f"the connection failed ({type(error).__name__})"


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and what it wraps, breadth first: causes, contexts, exceptions among its arguments, and urllib3's
    ``reason``."""
    seen: list[BaseException] = []
    queue: list[object] = [error]
    while queue and len(seen) < 20:
        item = queue.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        queue.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])
    return seen


def retry_after_seconds(value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """Parse a ``Retry-After`` header: delta-seconds or an HTTP date. ``None`` when absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


def build_retrying(
    *,
    attempts: int,
    is_retryable: Callable[[BaseException], bool],
    wait_hint: Callable[[BaseException], float | None] = lambda _exc: None,
    sleep: Callable[[float], None] = time.sleep,
    before_retry: Callable[[BaseException, int], None] | None = None,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
) -> tenacity.Retrying:
    """The retry policy. ``wait_hint`` may return the server's requested wait for an exception."""
    backoff = tenacity.wait_random_exponential(multiplier=base_delay, max=max_delay)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = wait_hint(exc) if exc is not None else None
        if hinted is not None:
            return min(max(hinted, 0.0), MAX_WAIT_SECONDS)
        return float(backoff(state))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if before_retry is not None and state.outcome is not None:
            exc = state.outcome.exception()
            if exc is not None:
                before_retry(exc, state.attempt_number)

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, attempts)),
        retry=tenacity.retry_if_exception(is_retryable),
        wait=wait,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
