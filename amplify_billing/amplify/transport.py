"""The one way the Amplify clients talk HTTP: throttle, authenticate, retry, translate errors.

Amplify allows about 25 requests a minute per client and may suspend one that goes over, so every
API call first takes a slot from one ``RateLimiter`` shared by the resource, platform and
traceability clients. Transient failures (network, timeouts, 429, 500/502/503/504) are retried only
where repeating the call cannot change anything twice: GET, PUT (guarded by ``resourceVersion``) and
the two POSTs that are reads (the token request, the traceability search). Every other outcome
becomes one exception of ``amplify_billing.errors`` whose message tells the operator what to check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from amplify_billing import interrupt
from amplify_billing.amplify.auth import TokenProvider
from amplify_billing.amplify.wire import error_detail, platform_answer, unreachable
from amplify_billing.errors import ApiRejectedError, AuthError, NotFoundError, UpstreamError
from amplify_billing.http import build_retrying, make_session, network_reason, retry_after_seconds
from amplify_billing.http_limits import HttpLimitExceeded, HttpLimits, limit_error
from amplify_billing.settings import AmplifySettings
from amplify_billing.throttle import RateLimiter

log = logging.getLogger(__name__)

ATTEMPTS = 5
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT"})
# requests raises these when the answer never arrived or arrived broken; all worth another try.
NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class _TransientStatus(Exception):
    """A retryable answer, raised inside the retry loop so that tenacity sees it."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class AmplifyTransport:
    def __init__(
        self,
        settings: AmplifySettings,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.limits = HttpLimits.of("amplify", settings)
        self.session = session or make_session(self.limits)
        self._clock = clock
        self._sleep = sleep
        per_minute = settings.rate_limit_per_minute
        self.limiter = limiter or RateLimiter(per_minute, clock=monotonic, sleep=self._wait_for_slot)
        # told how long the rate limit makes a request wait, before it waits (``doctor`` prints a progress line)
        self.on_wait: Callable[[float], None] | None = None
        self.tokens = TokenProvider(settings, self.session, clock=clock, post=self._post_token)
        # requests sent, by HTTP method, plus "retries"; read by the run summary and the metrics file
        self.stats: dict[str, int] = {}
        self._stats_lock = threading.Lock()

    def _wait_for_slot(self, seconds: float) -> None:
        if self.on_wait is not None:
            self.on_wait(seconds)
        self._sleep(seconds)

    def _count(self, key: str) -> None:
        # writes of one phase may run on several threads; the rate limiter and token cache are locked, so is this
        with self._stats_lock:
            self.stats[key] = self.stats.get(key, 0) + 1

    @property
    def calls(self) -> int:
        """HTTP requests sent so far (every attempt counts: each one spends rate limit)."""
        return sum(count for method, count in self.stats.items() if method.isupper())

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        expected: Collection[int] = (200,),
        safe_to_repeat: bool | None = None,
    ) -> requests.Response:
        """Send one API call and return its answer when the status is in ``expected``.

        ``safe_to_repeat`` overrides the method's default (GET/PUT yes, POST no) for POSTs that only read.
        """
        method = method.upper()
        repeatable = method in IDEMPOTENT_METHODS if safe_to_repeat is None else safe_to_repeat
        writes = method not in ("GET", "HEAD") and safe_to_repeat is not True
        with interrupt.counted_write(writes):
            return self._request(method, url, params, json, headers, expected, repeatable)

    def _request(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        expected: Collection[int],
        repeatable: bool,
    ) -> requests.Response:
        renewed = False
        while True:
            token = self.tokens.token()
            send_headers = {
                "Accept": "application/json",
                **(headers or {}),
                "Authorization": f"Bearer {token}",
                "X-Axway-Tenant-Id": self.settings.tenant_id,
            }
            response = self._send(
                method, url, repeatable=repeatable, throttled=True, params=params, json=json, headers=send_headers
            )
            # An expired or revoked token: one renewal, then the credentials are the problem.
            if response.status_code == 401 and not renewed:
                log.info("Amplify answered 401 to %s %s; renewing the access token", method, url)
                self.tokens.invalidate()
                renewed = True
                continue
            break
        if response.status_code in expected:
            return response
        raise self._refusal(method, url, response)

    # ---- sending -------------------------------------------------------------------------------
    def _post_token(self, url: str, form: Mapping[str, str], basic: tuple[str, str] | None) -> requests.Response:
        # The IdP is not one of the rate-limited Amplify APIs, and a token request only reads.
        return self._send(
            "POST",
            url,
            repeatable=True,
            throttled=False,
            data=dict(form),
            auth=basic,
            headers={"Accept": "application/json"},
        )

    def _send(self, method: str, url: str, *, repeatable: bool, throttled: bool, **kwargs: Any) -> requests.Response:
        """One logical request with retries; the answer, whatever its status, once it is not transient."""

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, _TransientStatus):
                # a 429 was refused before any work was done, so even a write may be sent again
                return repeatable or exc.response.status_code == 429
            return repeatable and isinstance(exc, NETWORK_ERRORS)

        def wait_hint(exc: BaseException) -> float | None:
            if isinstance(exc, _TransientStatus):
                return retry_after_seconds(exc.response.headers.get("Retry-After"), now=self._now)
            return None

        def count_retry(exc: BaseException, attempt: int) -> None:
            self._count("retries")
            log.warning("Amplify %s %s failed (%s), attempt %d of %d; retrying", method, url, exc, attempt, ATTEMPTS)

        retrying = build_retrying(
            attempts=ATTEMPTS, is_retryable=retryable, wait_hint=wait_hint, sleep=self._sleep, before_retry=count_retry
        )
        try:
            for attempt in retrying:
                with attempt:
                    if throttled:
                        self.limiter.acquire()
                    interrupt.check(f"Amplify {method} {url}")  # after a signal no request starts
                    self._count(method)
                    # streamed, then read whole here: the answer is read through the deadline and size limits
                    response = self.session.request(method, url, timeout=self.limits.timeouts, stream=True, **kwargs)
                    response.content  # noqa: B018 (reads the body)
                    log.debug("Amplify %s %s -> %d", method, url, response.status_code)
                    if response.status_code in TRANSIENT_STATUSES:
                        raise _TransientStatus(response)
                    return response
        except _TransientStatus as exc:
            status = exc.response.status_code
            raise unreachable(url, f"HTTP {status} {exc.response.reason or ''}".strip(), self.settings) from None
        except HttpLimitExceeded as exc:
            raise limit_error(exc, "Amplify", f"{method} {url}") from None
        except requests.ConnectTimeout:
            reason = f"no connection within {self.limits.connect_timeout:g} s (amplify.connect_timeout_seconds)"
            raise unreachable(url, reason, self.settings) from None
        except requests.Timeout:
            reason = f"no answer within {self.limits.read_timeout:g} s (amplify.timeout_seconds)"
            raise unreachable(url, reason, self.settings) from None
        except requests.RequestException as exc:
            raise unreachable(url, network_reason(exc), self.settings) from None
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # ---- translating refusals --------------------------------------------------------------------
    def _refusal(self, method: str, url: str, response: requests.Response) -> UpstreamError:
        status = response.status_code
        detail = error_detail(response)
        said = f": {detail}" if detail else ""
        if status == 401:
            return AuthError(
                f"Amplify refused the access token for {method} {url} (HTTP 401{said}) even after renewing it; "
                f"{self.tokens.credentials_hint()}",
                system="amplify",
                status=status,
            )
        if status == 403:
            # the Platform API (teams, users, orgs) answers to the organization's roles, the rest to Engage's
            platform = urlsplit(url).path.startswith(urlsplit(self.settings.platform_url).path.rstrip("/") + "/api/v1/")
            role = (
                "the organization's Administrator role on the Amplify Platform"
                if platform
                else "the Engage/Central Admin role"
            )
            return AuthError(
                f"Amplify forbids {method} {url} (HTTP 403{said}); the service account needs {role}",
                system="amplify",
                status=status,
            )
        if status == 404:
            # error_type "platform": the Platform API itself said so (gather/owners.py trusts such a 404)
            kind = "platform" if platform_answer(response) else None
            return NotFoundError(
                f"Amplify has no {url} (HTTP 404{said})", system="amplify", status=status, error_type=kind
            )
        if 400 <= status < 500:
            return ApiRejectedError(
                f"Amplify rejected {method} {url} (HTTP {status}{said})", system="amplify", status=status
            )
        return UpstreamError(
            f"Amplify answered {method} {url} with an unexpected HTTP {status}{said}", system="amplify", status=status
        )
