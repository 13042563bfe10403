"""Client-side rate limiting.

Amplify documents 25 requests a minute per client and may suspend a client that goes over it, so
we never rely on its 429s: ``RateLimiter`` spaces calls so that no sliding minute holds more than
``per_minute`` of them. For Recurly the server tells us its budget in ``X-RateLimit-*`` headers;
``observe`` feeds them in and ``acquire`` waits for the reset when the budget is spent.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        window_seconds: float = 60.0,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        self._clock = clock
        self._sleep = sleep
        self._window = window_seconds
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()
        # from server headers: remaining budget and the monotonic time it resets
        self._remaining: int | None = None
        self._reset_at: float | None = None
        self.waited_seconds = 0.0

    def acquire(self) -> None:
        """Block until one more request fits in the budget, then count it."""
        with self._lock:
            while True:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self._window:
                    self._sent.popleft()
                wait = 0.0
                if len(self._sent) >= self.per_minute:
                    wait = self._window - (now - self._sent[0])
                if self._remaining is not None and self._remaining <= 0 and self._reset_at is not None:
                    wait = max(wait, self._reset_at - now)
                    if wait <= 0:
                        self._remaining = None
                if wait <= 0:
                    self._sent.append(now)
                    if self._remaining is not None:
                        self._remaining -= 1
                    return
                self.waited_seconds += wait
                self._sleep(wait)

    def observe(self, remaining: int | None, reset_in_seconds: float | None) -> None:
        """Record the server's view of our budget (from rate-limit headers)."""
        with self._lock:
            self._remaining = remaining
            self._reset_at = None if reset_in_seconds is None else self._clock() + max(0.0, reset_in_seconds)
