"""A small HTTP emulator base shared by the Amplify and Recurly emulators.

Each emulator registers routes (method + path regex -> handler) and keeps its state in memory.
Handlers run one at a time under the emulator's lock, so state is consistent without per-object
locking. The base records every request (for call counting and contract checks) and injects
faults — 429, 5xx, empty-body errors, delays past the client's timeout, and connections dropped
before or after the server applied a write — at a rate or at the n-th matching request. ``latency_seconds``
delays every answer like a network round trip (benchmarks): the wait happens outside the lock, so
concurrent requests overlap as they would against a real API.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

FaultKind = Literal["429", "500", "502", "503", "empty", "delay", "drop_before", "drop_after"]
FAULT_KINDS: tuple[FaultKind, ...] = ("429", "500", "502", "503", "empty", "delay", "drop_before", "drop_after")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    params: Mapping[str, str] = field(default_factory=dict)  # named groups of the route regex

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes for a raw body, or None for no body
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: Any  # parsed JSON, form dict or None
    status: int | None  # None when the connection was dropped before an answer
    route: str  # the route's name, e.g. "create_plan"
    fault: FaultKind | None = None


@dataclass
class FaultRule:
    """Inject ``kind`` into requests that match ``method``/``path`` (regex) or ``route`` (a route name).

    ``nth``: only the n-th matching request (1-based). ``rate``: each match with that probability.
    ``times``: stop after injecting this many faults (None = unlimited).
    """

    kind: FaultKind
    method: str | None = None
    path: str | None = None
    route: str | None = None
    nth: int | None = None
    rate: float | None = None
    times: int | None = None
    delay_seconds: float = 5.0
    seen: int = 0
    injected: int = 0

    def matches(self, method: str, path: str, route: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path and not re.search(self.path, path):
            return False
        return not (self.route and self.route != route)


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler
    is_write: bool


class _QuietServer(ThreadingHTTPServer):
    """A client that left (killed, timed out, dropped by an injected fault) is expected here, not an error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class Emulator:
    """Base class: routes, request log, faults, and the server thread."""

    system = "emulator"

    def __init__(self, *, seed: int = 0) -> None:
        self._routes: list[Route] = []
        self.lock = threading.RLock()
        self.requests: list[RecordedRequest] = []
        self.faults: list[FaultRule] = []
        self._random = random.Random(seed)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # a simulated network round trip added to every request; 0 answers as fast as loopback allows
        self.latency_seconds = 0.0

    # ---- routes -------------------------------------------------------------------------------
    def route(self, method: str, pattern: str, name: str, handler: Handler, *, write: bool | None = None) -> None:
        is_write = method.upper() in {"POST", "PUT", "DELETE", "PATCH"} if write is None else write
        self._routes.append(Route(method.upper(), re.compile(f"^{pattern}$"), name, handler, is_write))

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        path_matched = False
        for route in self._routes:
            found = route.pattern.match(path)
            if found:
                path_matched = True
                if route.method == method:
                    return route, found.groupdict()
        return None, {"_path_matched": "1"} if path_matched else {}

    def not_found(self, request: Request) -> Response:
        """Answer for an unknown path; emulators override to use their own error format."""
        return Response(404, {"error": f"no route for {request.method} {request.path}"})

    # ---- faults -------------------------------------------------------------------------------
    def inject(self, kind: FaultKind, **kwargs: Any) -> FaultRule:
        rule = FaultRule(kind=kind, **kwargs)
        with self.lock:
            self.faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def _pick_fault(self, method: str, path: str, route: str) -> FaultRule | None:
        for rule in self.faults:
            if not rule.matches(method, path, route):
                continue
            if rule.times is not None and rule.injected >= rule.times:
                continue
            rule.seen += 1
            hit = (rule.nth is not None and rule.seen == rule.nth) or (
                rule.rate is not None and self._random.random() < rule.rate
            )
            if rule.nth is None and rule.rate is None:
                hit = True
            if hit:
                rule.injected += 1
                return rule
        return None

    def fault_response(self, kind: FaultKind) -> Response:
        """The body of an injected error; emulators override to speak their own error format."""
        if kind == "empty":
            return Response(500, b"")
        return Response(int(kind), {"error": f"injected {kind}"})

    # ---- inspection ---------------------------------------------------------------------------
    def count(self, method: str | None = None, route: str | None = None) -> int:
        with self.lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method.upper()) and (route is None or r.route == route)
            )

    def counts_by_method(self) -> Counter[str]:
        with self.lock:
            return Counter(r.method for r in self.requests)

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()

    # ---- dispatch -----------------------------------------------------------------------------
    def dispatch(self, raw: Request) -> tuple[Response | None, FaultRule | None, str]:
        """Handle one request. Returns (response or None for a dropped connection, fault, route name)."""
        route, params = self._match(raw.method, raw.path)
        name = route.name if route else "unknown"
        if self.latency_seconds > 0:
            # outside the lock: a real API serves concurrent requests in parallel, so their latencies overlap
            time.sleep(self.latency_seconds)
        with self.lock:
            fault = self._pick_fault(raw.method, raw.path, name)
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay_seconds)
        if fault is not None and fault.kind == "drop_before":
            return None, fault, name
        if fault is not None and fault.kind not in ("delay", "drop_after"):
            return self.fault_response(fault.kind), fault, name
        request = Request(raw.method, raw.path, raw.query, raw.headers, raw.body, params)
        with self.lock:
            if route is None:
                response = self.not_found(request)
            else:
                try:
                    response = route.handler(request)
                except Exception as exc:  # an emulator bug must surface as a 500, not a hung client
                    response = Response(500, {"error": f"emulator error: {type(exc).__name__}: {exc}"})
        if fault is not None and fault.kind == "drop_after":
            return None, fault, name
        return response, fault, name

    def record(self, raw: Request, status: int | None, route: str, fault: FaultRule | None) -> None:
        body: Any = None
        if raw.body:
            ctype = (raw.header("Content-Type") or "").lower()
            try:
                if "form" in ctype:
                    body = {k: v[0] for k, v in parse_qs(raw.body.decode()).items()}
                else:
                    body = json.loads(raw.body)
            except (ValueError, UnicodeDecodeError):
                body = raw.body.decode(errors="replace")
        entry = RecordedRequest(
            raw.method, raw.path, raw.query, dict(raw.headers), body, status, route, fault.kind if fault else None
        )
        with self.lock:
            self.requests.append(entry)

    # ---- server -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> Emulator:
        emulator = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in separate writes; with Nagle each answer would stall ~40 ms
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:
                    # the client went away mid-body (a killed run): a real server never processes a cut request
                    self.close_connection = True
                    return
                raw = Request(
                    self.command,
                    split.path,
                    parse_qs(split.query, keep_blank_values=True),
                    {k: v for k, v in self.headers.items()},
                    body,
                )
                response, fault, route = emulator.dispatch(raw)
                emulator.record(raw, response.status if response else None, route, fault)
                if response is None:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(response.body, bytes):
                    payload = response.body
                    ctype = response.headers.get("Content-Type", "text/plain")
                elif response.body is None:
                    payload = b""
                    ctype = "application/json"
                else:
                    payload = json.dumps(response.body, default=str).encode()
                    ctype = response.headers.get("Content-Type", "application/json; charset=utf-8")
                self.send_response(response.status)
                for key, value in response.headers.items():
                    if key.lower() != "content-type":
                        self.send_header(key, value)
                if payload or response.status != 204:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if payload and self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        server = _QuietServer(("127.0.0.1", port), _Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{self.system}-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Emulator:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
