"""The Recurly connection: timeouts, retries, reconnects, rate limits, request stats, errors translated.

The official client (4.x) retries nothing, has no default timeout, keeps one keep-alive connection that a
timeout leaves unusable (``CannotSendRequest`` on the next call), and maps an empty error body to a bare
``ApiError`` without a status (reference/recurly-api.md §1.6–§1.8). This transport wraps every call in the
one retry policy of ``http.py``:

- reads are retried on network errors, 429, 5xx and empty-body errors;
- writes are retried on the same faults only because every write carries an ``Idempotency-Key``: a repeat
  with the same key is answered with the first answer instead of being applied twice (and the journal's
  ``merchant_tag`` check stays the durable guard for usage);
- after a network error the connection is replaced before the next attempt.

Answers are handed out as plain JSON data (dicts, lists, strings, numbers; timestamps as ISO 8601 text),
never as SDK objects, so nothing else in the package depends on the client. One client per thread: the
client is not thread-safe (one shared connection), and ``recurly.concurrency`` workers each get their own.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC
from typing import Any, TypeVar
from urllib.parse import urlsplit

import recurly
from recurly import errors as recurly_errors

from amplify_billing import interrupt
from amplify_billing.errors import (
    ApiRejectedError,
    AuthError,
    ConflictError,
    NotFoundError,
    UnreachableError,
    UpstreamError,
)
from amplify_billing.http import build_retrying, network_reason
from amplify_billing.http_limits import (
    HttpLimitExceeded,
    HttpLimits,
    LimitedHTTPConnection,
    LimitedHTTPSConnection,
    limit_error,
)
from amplify_billing.recurly.wire import body_of, error_text, plain_data, to_wire
from amplify_billing.settings import RecurlySettings

# the gateway's logger name, kept from before the split so that log filters and JSON logs name it as before
log = logging.getLogger("amplify_billing.recurly.gateway")

T = TypeVar("T")

# The largest page the API serves (spec: limit 1–200); fewer pages spend less of the rate limit.
PAGE_LIMIT = 200
API_HOSTS = {"us": "v3.recurly.com", "eu": "v3.eu.recurly.com"}
# Below this many requests left in the window, calls are spaced until the reset instead of burning the rest.
LOW_WATER = 5


class _Observed:
    """Connection mixin that keeps the last answer's headers: rate limits and request ids of every call,
    including list pages, which the client exposes nowhere."""

    last_headers: Mapping[str, str] = {}
    last_status: int | None = None

    def getresponse(self) -> http.client.HTTPResponse:
        response = super().getresponse()  # type: ignore[misc]
        self.last_headers = {k: v for k, v in response.getheaders()}
        self.last_status = response.status
        return response  # type: ignore[no-any-return]


class _ObservedHTTP(_Observed, LimitedHTTPConnection):  # type: ignore[misc]
    pass


class _ObservedHTTPS(_Observed, LimitedHTTPSConnection):  # type: ignore[misc]
    pass


class _Transient(Exception):
    """A failure worth another attempt (raised inside the retry loop so tenacity sees it)."""

    def __init__(
        self, message: str, *, wait: float | None = None, refused: bool = False, network: BaseException | None = None
    ) -> None:
        super().__init__(message)
        self.wait = wait
        # the connection failed (no answer at all): said in words, naming the setting, once retries are spent
        self.network = network
        # the server refused the request before acting on it (429), so even a keyless write may repeat
        self.refused = refused


class RecurlyTransport:
    """One client per thread and the one call path every operation of ``RecurlyGateway`` goes through."""

    def __init__(
        self,
        settings: RecurlySettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        # connect timeout, deadline and maximum answer size, enforced by the connection itself (http_limits)
        self.limits = HttpLimits.of("recurly", settings)
        self._sleep = sleep
        self._clock = clock
        self._local = threading.local()
        self._stats_lock = threading.Lock()
        self._rate_lock = threading.Lock()
        self._remaining: int | None = None
        self._reset_at: float | None = None
        self._clients: list[recurly.Client] = []
        # requests sent, by HTTP method, plus "retries"; read by the run summary and the metrics file
        self.stats: dict[str, int] = {}
        self.last_request_id: str | None = None

    # ---- connection ------------------------------------------------------------------------------
    def _endpoint(self) -> tuple[type[_ObservedHTTP | _ObservedHTTPS], str, int]:
        if self.settings.api_url:
            parts = urlsplit(self.settings.api_url)
            secure = parts.scheme == "https"
            host = parts.hostname or "127.0.0.1"
            port = parts.port or (443 if secure else 80)
            return (_ObservedHTTPS if secure else _ObservedHTTP), host, port
        return _ObservedHTTPS, API_HOSTS[self.settings.region], 443

    def _connect(self, client: recurly.Client) -> None:
        # The client has no base-URL option and no reconnect; replacing its (name-mangled) connection is
        # the documented way to point it elsewhere and to recover from a broken keep-alive socket.
        kind, host, port = self._endpoint()
        old = getattr(client, "_BaseClient__conn", None)
        if old is not None:
            old.close()
        client._BaseClient__conn = kind(host, port, limits=self.limits)

    def _client(self) -> recurly.Client:
        client: recurly.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = recurly.Client(
                self.settings.api_key.reveal(), timeout=self.settings.timeout_seconds, region=self.settings.region
            )
            self._connect(client)
            self._local.client = client
            with self._stats_lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        with self._stats_lock:
            for client in self._clients:
                conn = getattr(client, "_BaseClient__conn", None)
                if conn is not None:
                    conn.close()
            self._clients.clear()
        self._local = threading.local()

    # ---- the one call path -----------------------------------------------------------------------
    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] = self.stats.get(key, 0) + 1

    def _observe(self, client: recurly.Client) -> None:
        headers = getattr(getattr(client, "_BaseClient__conn", None), "last_headers", {}) or {}
        self.last_request_id = headers.get("X-Request-Id") or headers.get("x-request-id")
        remaining = headers.get("X-RateLimit-Remaining")
        reset = headers.get("X-RateLimit-Reset")
        if remaining is not None and str(remaining).isdigit():
            with self._rate_lock:
                self._remaining = int(remaining)
                self._reset_at = float(reset) if reset and str(reset).isdigit() else None

    def _pace(self) -> None:
        """Nearly out of budget: wait for the window to reset rather than collect 429s."""
        with self._rate_lock:
            remaining, reset_at = self._remaining, self._reset_at
        if remaining is None or reset_at is None or remaining > LOW_WATER:
            return
        wait = min(reset_at - self._clock(), 60.0)
        if wait > 0:
            log.info("Recurly rate limit nearly spent (%d left); waiting %.0f s for the reset", remaining, wait)
            self._sleep(wait)
        with self._rate_lock:
            self._remaining = None

    def _call(self, method: str, what: str, send: Callable[[recurly.Client], T], *, repeatable: bool) -> T:
        """``_send``, counting a write that ends after SIGINT/SIGTERM (``interrupt``) for the last line."""
        with interrupt.counted_write(method not in ("GET", "HEAD")):
            return self._send(method, what, send, repeatable=repeatable)

    def _send(self, method: str, what: str, send: Callable[[recurly.Client], T], *, repeatable: bool) -> T:
        """Send one request with retries; translate every failure into the package's error tree.

        ``repeatable``: reads always; a write only when it carries an Idempotency-Key. A 429 is retried
        either way, because the server refused it before doing anything.
        """

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, _Transient) and (repeatable or exc.refused)

        def wait_hint(exc: BaseException) -> float | None:
            return exc.wait if isinstance(exc, _Transient) else None

        def before_retry(exc: BaseException, attempt: int) -> None:
            self._count("retries")
            log.warning("Recurly %s %s failed (%s), attempt %d; retrying", method, what, exc, attempt)

        retrying = build_retrying(
            attempts=max(1, self.settings.max_retries + 1),
            is_retryable=retryable,
            wait_hint=wait_hint,
            sleep=self._sleep,
            before_retry=before_retry,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(method, what, send)
        except _Transient as exc:
            if exc.network is not None:
                raise self._unreachable(exc.network, method, what) from None
            raise UnreachableError(
                f"Recurly did not complete {method} {what} after {self.settings.max_retries + 1} attempts ({exc}); "
                f"{self._where_hint()}",
                system="recurly",
                request_id=self.last_request_id,
            ) from None
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    def _attempt(self, method: str, what: str, send: Callable[[recurly.Client], T]) -> T:
        client = self._client()
        self._pace()
        interrupt.check(f"Recurly {method} {what}")  # after a signal no request starts
        self._count(method)
        try:
            result = send(client)
        except recurly.NetworkError as exc:
            self._connect(client)
            raise _Transient(f"network error: {exc}", network=exc) from None
        except (http.client.HTTPException, OSError) as exc:
            # the client lets these escape unwrapped after a broken keep-alive (issue #556)
            self._connect(client)
            raise _Transient(f"connection error: {type(exc).__name__}: {exc}", network=exc) from None
        except HttpLimitExceeded as exc:
            self._connect(client)  # the answer was left half read: this connection cannot carry another
            raise limit_error(exc, "Recurly", f"{method} {what}") from None
        except recurly.ApiError as exc:
            self._observe(client)
            raise self._translate(exc, method, what) from None
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            # the client decodes the answer itself: invalid JSON, a page whose data is not a list, a price that
            # is not a number. Nothing may be read from such an answer (and nothing written on it).
            self._observe(client)
            if getattr(getattr(client, "_BaseClient__conn", None), "last_status", None) == 404:
                raise self._not_recurly(method, what) from None  # a 404 not in Recurly's words: another server
            raise UpstreamError(
                f"Recurly answered {method} {what} with a body that cannot be read ({type(exc).__name__}: {exc}); "
                "nothing was changed on it. Run again; if it persists, report the request id "
                f"{self.last_request_id or '(none)'} to Recurly support",
                system="recurly",
                request_id=self.last_request_id,
            ) from None
        self._observe(client)
        return result

    def _reset_wait(self, exc: recurly.ApiError) -> float | None:
        try:
            reset = exc.error.get_response().rate_limit_reset  # naive UTC datetime from the client
        except AttributeError:
            reset = None
        if reset is None:
            with self._rate_lock:
                reset_at = self._reset_at
            return None if reset_at is None else max(0.0, reset_at - self._clock())
        return max(0.0, float(reset.replace(tzinfo=UTC).timestamp()) - self._clock())

    def _translate(self, exc: recurly.ApiError, method: str, what: str) -> Exception:
        text = error_text(exc)
        request_id = self.last_request_id
        error_type = getattr(getattr(exc, "error", None), "type", None)
        if isinstance(exc, recurly_errors.TooManyRequestsError):
            return _Transient(f"rate limited: {text}", wait=self._reset_wait(exc), refused=True)
        if isinstance(exc, recurly_errors.ServerError):
            return _Transient(f"server error: {text}")
        if isinstance(exc, recurly_errors.SimultaneousRequestError):
            return _Transient(f"simultaneous request: {text}", wait=1.0)
        if isinstance(exc, recurly_errors.UnauthorizedError | recurly_errors.ForbiddenError):
            return AuthError(
                f"Recurly refused the API key for {method} {what}: {text}; check recurly.api_key (a private API key "
                "of the right site, with access to plans, accounts, subscriptions and usage)",
                system="recurly",
                request_id=request_id,
                error_type=error_type,
            )
        if isinstance(exc, recurly_errors.NotFoundError):
            return NotFoundError(
                f"Recurly has no {what} ({text})", system="recurly", request_id=request_id, error_type="not_found"
            )
        if type(exc) is recurly.ApiError and getattr(exc, "error", None) is None:
            # empty or unreadable body: the status is lost (reference §1.8); treat as possibly transient
            return _Transient(f"answer without a body: {exc}")
        if isinstance(exc, recurly_errors.ClientError):
            kind = (
                ConflictError if error_type in ("simultaneous_request", "immutable_subscription") else ApiRejectedError
            )
            return kind(
                f"Recurly rejected {method} {what}: {text}"
                + (f" [{error_type}]" if error_type else "")
                + (f" (request id {request_id})" if request_id else ""),
                system="recurly",
                request_id=request_id,
                error_type=error_type,
            )
        return UpstreamError(
            f"Recurly answered {method} {what} with an error: {text}", system="recurly", request_id=request_id
        )

    def _unreachable(self, error: BaseException, method: str, what: str) -> UnreachableError:
        where = urlsplit(self.settings.api_url).netloc if self.settings.api_url else API_HOSTS[self.settings.region]
        key = "recurly.api_url" if self.settings.api_url else "recurly.region"
        attempts = self.settings.max_retries + 1
        return UnreachableError(
            f"Recurly at {where} is unreachable: {network_reason(error)} ({method} {what}, {attempts} attempt(s)); "
            f"check {key} and the network",
            system="recurly",
        )

    def _not_recurly(self, method: str, what: str) -> UnreachableError:
        """A 404 where Recurly's API always answers (a listing), or one not in its error format: the tool is not
        talking to Recurly's API (exit 3, naming the setting)."""
        where = self.settings.api_url or f"https://{API_HOSTS[self.settings.region]}"
        key = "recurly.api_url" if self.settings.api_url else "recurly.region"
        return UnreachableError(
            f"Recurly's API is not at {where}: it answered {method} {what} with HTTP 404; check {key}",
            system="recurly",
            request_id=self.last_request_id,
        )

    def _where_hint(self) -> str:
        if self.settings.api_url:
            return f"check that {self.settings.api_url} (recurly.api_url) is reachable"
        return f"check the network path to {API_HOSTS[self.settings.region]} and status.recurly.com"

    # ---- listing ---------------------------------------------------------------------------------
    def _list(
        self, what: str, make_pager: Callable[[recurly.Client, dict[str, Any]], Any], params: Any
    ) -> list[dict[str, Any]]:
        given = dict(params or {})
        # OpenAPI: "The ids parameter cannot be used with any other ordering or filtering parameters (limit, order,
        # sort, begin_time, end_time, etc)": a listing by ids asks no page size
        query = given if "ids" in given else {"limit": PAGE_LIMIT, **given}
        items: list[dict[str, Any]] = []
        pages: Iterator[list[Any]] | None = None
        done = object()

        def next_page(client: recurly.Client) -> Any:
            nonlocal pages
            if pages is None:
                pages = iter(make_pager(client, to_wire(query)).pages())
            # a failed page leaves the iterator where it was, so the retry asks for the same page again
            return next(pages, done)

        while True:
            try:
                page = self._call("GET", what, next_page, repeatable=True)
            except NotFoundError:
                if items:
                    raise
                raise self._not_recurly("GET", what) from None  # a listing always exists
            if page is done:
                return items
            plain = [plain_data(item) for item in page] if isinstance(page, list) else None
            if plain is None or not all(isinstance(item, dict) for item in plain):
                raise UpstreamError(
                    f"Recurly answered the listing of {what} with a page that cannot be read (not a list of objects); "
                    f"nothing was changed on it (request id {self.last_request_id or '(none)'})",
                    system="recurly",
                    request_id=self.last_request_id,
                )
            items.extend(plain)

    def _total(self, what: str, make_pager: Callable[[recurly.Client, dict[str, Any]], Any], params: Any) -> int | None:
        """The listing's total count: a HEAD answered with ``Recurly-Total-Records`` for the same filters (the
        pager's ``count()``, reference §1.10). None when the answer carries no readable count."""
        query = {"limit": PAGE_LIMIT, **dict(params or {})}
        total = self._call("HEAD", what, lambda c: make_pager(c, to_wire(query)).count(), repeatable=True)
        return total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None

    # ---- writes ------------------------------------------------------------------------------------
    @staticmethod
    def _headers(idempotency_key: str | None) -> dict[str, str]:
        return {"Idempotency-Key": idempotency_key} if idempotency_key else {}

    def _write(
        self, method: str, what: str, send: Callable[[recurly.Client], Any], idempotency_key: str | None
    ) -> dict[str, Any]:
        return body_of(self._call(method, what, send, repeatable=idempotency_key is not None))
