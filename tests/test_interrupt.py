"""A signal cuts a wait short (issue 14): a run waiting a minute for the rate limit, or before a retry, does not
outlive SIGTERM; the request it was waiting to send is not sent."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest

from amplify_billing import interrupt
from amplify_billing.interrupt import Interrupted
from amplify_billing.runtime import Runtime
from amplify_billing.throttle import RateLimiter


@pytest.fixture(autouse=True)
def no_signal_left() -> Iterator[None]:
    interrupt.forget()
    yield
    interrupt.forget()


def _signal_in(seconds: float) -> None:
    # what the handler does on the first signal (it runs on the main thread in a real process)
    threading.Timer(seconds, interrupt._handle, args=(signal.SIGTERM, None)).start()


def test_a_signal_ends_a_wait_at_once_and_nothing_after_it_is_sent() -> None:
    _signal_in(0.1)
    started = time.monotonic()
    with pytest.raises(Interrupted, match="not sent: interrupted by SIGTERM"):
        interrupt.sleep(30)
    assert time.monotonic() - started < 1.0


def test_without_a_signal_the_wait_is_the_whole_wait() -> None:
    started = time.monotonic()
    interrupt.sleep(0.3)
    assert time.monotonic() - started >= 0.3


def test_the_rate_limiter_of_a_run_waits_with_it() -> None:
    assert Runtime.__dataclass_fields__["sleep"].default is interrupt.sleep
    limiter = RateLimiter(1, sleep=interrupt.sleep)
    limiter.acquire()  # the minute's one request
    _signal_in(0.1)
    started = time.monotonic()
    with pytest.raises(Interrupted):
        limiter.acquire()  # would wait 60 s for the next minute
    assert time.monotonic() - started < 1.0
