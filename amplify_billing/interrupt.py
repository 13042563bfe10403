"""SIGINT and SIGTERM during a command: no new request starts, the ones in flight finish, the run ends as interrupted.

``install`` (the command line does it around a command that writes) replaces Python's default, which raised
``KeyboardInterrupt`` wherever the main thread was while worker threads went on sending every queued write, and
the default SIGTERM, which killed the process with its run rows left open. With it, the first signal only sets a
flag that the layers check:

- the Applier attempts no further change, and the thread pool's queued writes are cancelled;
- both transports refuse to send any further request (``check`` raises ``Interrupted``, exit 130), so a read
  of the next phase does not start either, and a change whose handler needs one more request is left as it is:
  its intent stays open and the next run resolves it;
- the journal closes the run row as interrupted (exit code 130), and the last line says how many writes were
  sent after the signal (those in flight when it came: at most ``recurly.concurrency`` of them).

A second signal exits at once (``os._exit(130)``): the journal is crash-safe and the kernel releases the lock.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from amplify_billing.errors import AmplifyBillingError, ExitCode

log = logging.getLogger("amplify_billing.interrupt")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Why a change was not attempted once a signal came (the next run does it).
INTERRUPTED_SKIP = "not attempted: interrupted; the next run does it"


class Interrupted(AmplifyBillingError):
    """A request was about to start after SIGINT or SIGTERM."""

    exit_code = ExitCode.INTERRUPTED


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.signal_name: str | None = None
        self.writes_after = 0
        self.previous: dict[int, Any] = {}


_STATE = _State()


def requested() -> bool:
    """Whether SIGINT or SIGTERM came during this command."""
    return _STATE.signal_name is not None


def signal_name() -> str | None:
    """``SIGINT`` or ``SIGTERM``: the signal that came during this command, or None."""
    return _STATE.signal_name


def check(what: str) -> None:
    """Raise ``Interrupted`` instead of starting ``what`` (a request) once a signal came."""
    if _STATE.signal_name is not None:
        raise Interrupted(f"{what} not sent: interrupted by {_STATE.signal_name}; the next run does it")


# how often a wait looks for a signal: a signal ends a wait for the rate limit or a retry within this
_POLL_SECONDS = 0.2


def sleep(seconds: float) -> None:
    """``time.sleep`` that a signal cuts short: a wait for the rate limit or before a retry ends at once with
    ``Interrupted``, so the request it was waiting to send is not sent (the run's default sleep, ``runtime``)."""
    end = time.monotonic() + max(seconds, 0.0)
    while True:
        check("the request waiting for the rate limit or a retry")
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, _POLL_SECONDS))


def write_done() -> None:
    """A write request ended (answered or failed); counted when it ended after the signal."""
    if _STATE.signal_name is not None:
        with _STATE.lock:
            _STATE.writes_after += 1


@contextmanager
def counted_write(is_write: bool) -> Iterator[None]:
    """Around one request: a write that ends after the signal is counted for the last line; one refused by
    ``check`` before it was sent is not."""
    try:
        yield
    except Interrupted:
        is_write = False  # refused before it was sent
        raise
    finally:
        if is_write:
            write_done()


def summary() -> str:
    """The last line of an interrupted command."""
    with _STATE.lock:
        name, writes = _STATE.signal_name or "an interrupt", _STATE.writes_after
    return (
        f"Interrupted by {name}: no new request was started after it; {writes} write(s) were sent after the signal "
        "(those in flight when it came); the run is recorded as interrupted. Run again to finish: the next run "
        "goes on from here."
    )


def _handle(number: int, frame: FrameType | None) -> None:
    name = signal.Signals(number).name
    with _STATE.lock:
        first = _STATE.signal_name is None
        if first:
            _STATE.signal_name = name
    # logged, so the line is JSON under --log-format json like every other diagnostic
    if not first:
        log.warning("%s again: stopping at once; the next run finishes what is left", name)
        os._exit(128 + number)  # 130 for SIGINT, 143 for SIGTERM, as a shell reports them
    log.warning("%s: finishing the requests in flight, starting no new one; send it again to stop at once", name)


def forget() -> None:
    """A new invocation: no signal has come yet (one that ended an earlier in-process invocation is not this one's)."""
    with _STATE.lock:
        _STATE.signal_name, _STATE.writes_after = None, 0


def install() -> None:
    """Handle SIGINT and SIGTERM as above until ``uninstall``; forget any earlier signal. Main thread only (Python
    delivers signals there); elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    forget()
    for number in SIGNALS:
        _STATE.previous[number] = signal.signal(number, _handle)


def uninstall() -> None:
    """Put back the handlers ``install`` replaced."""
    if threading.current_thread() is not threading.main_thread():
        return
    for number, previous in list(_STATE.previous.items()):
        signal.signal(number, previous)
    _STATE.previous.clear()


__all__ = [
    "INTERRUPTED_SKIP",
    "Interrupted",
    "check",
    "forget",
    "install",
    "requested",
    "sleep",
    "summary",
    "uninstall",
    "write_done",
]
