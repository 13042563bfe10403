"""What bounds one HTTP exchange beyond socket timeouts: a total deadline and a maximum answer size.

A socket timeout bounds each wait for bytes, so a server that sends one byte a second holds a request for ever,
and nothing bounds how much it sends. The connections here read their answers through a socket reader that,
before every receive, lowers the socket's timeout to what is left of the request's deadline, and counts the bytes
received. Past either limit the read raises ``DeadlineExceeded`` or ``ResponseTooLarge``. Neither is an
``OSError``, so neither ``http.client``, urllib3, requests nor Recurly's client turns it into a network error
that a retry loop would send again: the transport translates it into one error naming the setting to raise.

Two families of connections share the reader: subclasses of ``http.client``'s (the one Recurly's client uses,
which ``recurly.transport`` already replaces, and which also applies the connect timeout) and of urllib3's, which
``limited_session`` mounts into a ``requests`` session for the Amplify clients (urllib3 applies requests'
``(connect, read)`` timeouts itself). The deadline of a request starts when it is sent.
"""

from __future__ import annotations

import functools
import http.client
import io
import math
import socket
import time
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection as Urllib3HTTPConnection
from urllib3.connection import HTTPSConnection as Urllib3HTTPSConnection

from amplify_billing.errors import UnreachableError, UpstreamError


@dataclass(frozen=True)
class HttpLimits:
    """One system's limits (``amplify.*`` or ``recurly.*``): the settings named in every error about them."""

    section: str
    connect_timeout: float
    read_timeout: float
    deadline: float
    max_response_bytes: int

    @classmethod
    def of(cls, section: str, settings: Any) -> HttpLimits:
        """From an ``AmplifySettings`` or ``RecurlySettings`` (both carry the same four fields)."""
        return cls(
            section=section,
            connect_timeout=float(settings.connect_timeout_seconds),
            read_timeout=float(settings.timeout_seconds),
            deadline=float(settings.deadline_seconds),
            max_response_bytes=int(settings.max_response_bytes),
        )

    @property
    def timeouts(self) -> tuple[float, float]:
        """requests' ``timeout=`` argument: (connect, read)."""
        return (self.connect_timeout, self.read_timeout)


class HttpLimitExceeded(Exception):
    """An answer went past one of the request's limits; the connection it came on is closed."""

    setting = ""

    def __init__(self, limits: HttpLimits, message: str) -> None:
        super().__init__(message)
        self.limits = limits

    @property
    def key(self) -> str:
        return f"{self.limits.section}.{self.setting}"


class DeadlineExceeded(HttpLimitExceeded):
    setting = "deadline_seconds"

    def __init__(self, limits: HttpLimits) -> None:
        super().__init__(limits, f"the answer did not arrive whole within {limits.deadline:g} s")


class ResponseTooLarge(HttpLimitExceeded):
    setting = "max_response_bytes"

    def __init__(self, limits: HttpLimits) -> None:
        super().__init__(limits, f"the answer is larger than {limits.max_response_bytes} bytes")


def limit_error(error: HttpLimitExceeded, system: str, what: str) -> UpstreamError:
    """The operator's error for ``error``: what went past which limit, and the setting that sets it (exit 3)."""
    key, limits = error.key, error.limits
    if isinstance(error, DeadlineExceeded):
        return UnreachableError(
            f"{system} did not answer {what} whole within {limits.deadline:g} s ({key}); the server is stalled "
            f"or very slow: the next run tries again; if answers are that slow, raise {key}",
            system=system.lower(),
        )
    return UpstreamError(
        f"{system} answered {what} with more than {limits.max_response_bytes} bytes ({key}), so it was refused "
        f"unread; if answers that large are expected, raise {key}",
        system=system.lower(),
    )


class _Limited:
    """Mixin for an ``http.client.HTTPConnection`` (or urllib3's subclass of it): the deadline starts when a request
    is sent, and its answer is read through ``_LimitedReader``."""

    limits: HttpLimits
    deadline_at: float = math.inf
    sock: Any

    def __init__(self, *args: Any, limits: HttpLimits, **kwargs: Any) -> None:
        self.limits = limits
        super().__init__(*args, **kwargs)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self.deadline_at = time.monotonic() + self.limits.deadline
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def response_class(self, sock: Any, *args: Any, **kwargs: Any) -> http.client.HTTPResponse:
        # http.client calls self.response_class(self.sock, method=…); the answer reads through the limits
        return http.client.HTTPResponse(_LimitedSocket(sock, self), *args, **kwargs)  # type: ignore[arg-type]


class _LimitedSocket:
    """What ``http.client.HTTPResponse`` asks of a socket: ``makefile``, here over the limited reader."""

    def __init__(self, sock: socket.socket, connection: _Limited) -> None:
        self._sock = sock
        self._connection = connection

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_LimitedReader(self._sock, self._connection))


class _LimitedReader(io.RawIOBase):
    """Each receive waits no longer than the socket's own timeout nor what is left of the deadline; the bytes of
    one answer (headers included) are counted against the maximum."""

    def __init__(self, sock: socket.socket, connection: _Limited) -> None:
        super().__init__()
        self._sock = sock
        self._connection = connection
        self._timeout = sock.gettimeout()
        self._received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        limits = self._connection.limits
        deadline_at = self._connection.deadline_at
        remaining = deadline_at - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded(limits)
        self._sock.settimeout(remaining if self._timeout is None else min(self._timeout, remaining))
        try:
            count = self._sock.recv_into(buffer)
        except TimeoutError:
            if time.monotonic() >= deadline_at:
                raise DeadlineExceeded(limits) from None
            raise
        finally:
            self._sock.settimeout(self._timeout)
        self._received += count
        if self._received > limits.max_response_bytes:
            raise ResponseTooLarge(limits)
        return count


# ---- http.client: the connection Recurly's client sends through ------------------------------------------------


class _ConnectTimeout(_Limited):
    """http.client uses one timeout for connecting and reading: connect (and shake hands) within the connect
    timeout, then read within the read timeout."""

    timeout: float | None

    def connect(self) -> None:
        self.timeout = self.limits.connect_timeout
        try:
            super().connect()  # type: ignore[misc]
        finally:
            self.timeout = self.limits.read_timeout
        self.sock.settimeout(self.limits.read_timeout)


class LimitedHTTPConnection(_ConnectTimeout, http.client.HTTPConnection):  # type: ignore[misc]
    def __init__(self, host: str, port: int | None = None, *, limits: HttpLimits) -> None:
        super().__init__(host, port, timeout=limits.read_timeout, limits=limits)


class LimitedHTTPSConnection(_ConnectTimeout, http.client.HTTPSConnection):  # type: ignore[misc]
    def __init__(self, host: str, port: int | None = None, *, limits: HttpLimits) -> None:
        super().__init__(host, port, timeout=limits.read_timeout, limits=limits)


# ---- urllib3 under requests: the connections the Amplify clients send through -----------------------------------


class _Urllib3HTTP(_Limited, Urllib3HTTPConnection):  # type: ignore[misc]
    pass


class _Urllib3HTTPS(_Limited, Urllib3HTTPSConnection):  # type: ignore[misc]
    pass


class _LimitedPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _Urllib3HTTP


class _LimitedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _Urllib3HTTPS


class LimitedAdapter(HTTPAdapter):
    """A requests adapter whose pools make limited connections (the limits reach each connection through the
    pool's connection keywords)."""

    def __init__(self, limits: HttpLimits) -> None:
        self._limits = limits
        super().__init__()

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": functools.partial(_LimitedPool, limits=self._limits),
            "https": functools.partial(_LimitedHTTPSPool, limits=self._limits),
        }


def limit_session(session: requests.Session, limits: HttpLimits) -> requests.Session:
    """Mount limited connections on ``session`` for http and https; returns it."""
    adapter = LimitedAdapter(limits)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


__all__ = [
    "DeadlineExceeded",
    "HttpLimitExceeded",
    "HttpLimits",
    "LimitedHTTPConnection",
    "LimitedHTTPSConnection",
    "ResponseTooLarge",
    "limit_error",
    "limit_session",
]
