"""Every HTTP call is bounded (issue 14): a connect timeout, a total deadline and a maximum answer size.

A loopback server that trickles its answer (one byte at a time, each well within the read timeout) holds a call
no longer than its deadline, whether it trickles the headers or the body, for the Amplify clients (requests) and
for Recurly's client (http.client). An answer over the maximum size is refused with exit 3, naming the setting.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from amplify_billing.amplify.transport import AmplifyTransport
from amplify_billing.cli import run_cli
from amplify_billing.errors import ExitCode, UnreachableError, UpstreamError
from amplify_billing.recurly.gateway import RecurlyGateway
from amplify_billing.settings import AmplifySettings, RecurlySettings
from amplify_billing.settings.secret import Secret

TOKEN = json.dumps({"access_token": "tok", "expires_in": 300}).encode()
# each byte comes well within the read timeout (5 s), so only the deadline can stop the call
BYTE_INTERVAL = 0.05
DEADLINE = 0.6


@dataclass
class Answer:
    body: bytes
    trickle_headers: bool = False
    trickle_body: bool = False
    content_length: bool = True


@dataclass
class SlowServer:
    """Answers every request with ``answer`` (the token request of the IdP at once); counts requests by path."""

    answer: Answer
    requests: list[str] = field(default_factory=list)
    _socket: socket.socket = field(default_factory=socket.socket)

    def start(self) -> SlowServer:
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen()
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def stop(self) -> None:
        self._socket.close()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            try:
                while True:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = connection.recv(65536)
                        if not chunk:
                            return
                        request += chunk
                    path = request.split(b" ")[1].decode()
                    self.requests.append(path)
                    token = path.endswith("/token")
                    answer = Answer(TOKEN) if token else self.answer
                    length = f"Content-Length: {len(answer.body)}\r\n" if answer.content_length else ""
                    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}\r\n".encode()
                    self._send(connection, head, answer.trickle_headers)
                    self._send(connection, answer.body, answer.trickle_body)
                    if not answer.content_length:
                        return
            except OSError:
                return  # the client gave up: what the deadline is for

    @staticmethod
    def _send(connection: socket.socket, data: bytes, trickle: bool) -> None:
        if not trickle:
            connection.sendall(data)
            return
        for index in range(len(data)):
            connection.sendall(data[index : index + 1])
            time.sleep(BYTE_INTERVAL)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[SlowServer] = []

    def start(answer: Answer) -> SlowServer:
        servers.append(SlowServer(answer).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def _amplify(server: SlowServer, **limits: Any) -> AmplifyTransport:
    settings = AmplifySettings(
        central_url=server.url,
        auth_url=f"{server.url}/auth",
        platform_url=server.url,
        tenant_id="100000000000001",
        client_id="client",
        client_secret=Secret("client-secret"),
        timeout_seconds=5,
        **limits,
    )
    return AmplifyTransport(settings)


def _recurly(server: SlowServer, **limits: Any) -> RecurlyGateway:
    return RecurlyGateway(
        RecurlySettings(api_key=Secret("recurly-key"), api_url=server.url, timeout_seconds=5, max_retries=3, **limits)
    )


LONG_BODY = json.dumps({"data": "x" * 400}).encode()


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_trickling_amplify_answer_is_cut_at_the_deadline(where: str, serve: Any) -> None:
    server = serve(Answer(LONG_BODY, trickle_headers=where == "headers", trickle_body=where == "body"))
    transport = _amplify(server, deadline_seconds=DEADLINE)
    started = time.monotonic()
    with pytest.raises(UnreachableError) as raised:
        transport.request("GET", f"{server.url}/apis/management/v1alpha1/environments")
    assert time.monotonic() - started < DEADLINE + 0.5
    assert "amplify.deadline_seconds" in str(raised.value) and raised.value.exit_code == ExitCode.UPSTREAM
    assert [p for p in server.requests if "environments" in p] == ["/apis/management/v1alpha1/environments"], (
        "a stalled server is not asked again"
    )


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_trickling_recurly_answer_is_cut_at_the_deadline(where: str, serve: Any) -> None:
    server = serve(Answer(LONG_BODY, trickle_headers=where == "headers", trickle_body=where == "body"))
    gateway = _recurly(server, deadline_seconds=DEADLINE)
    started = time.monotonic()
    with pytest.raises(UnreachableError) as raised:
        gateway.get_site()
    assert time.monotonic() - started < DEADLINE + 0.5
    assert "recurly.deadline_seconds" in str(raised.value) and raised.value.exit_code == ExitCode.UPSTREAM
    assert len(server.requests) == 1


@pytest.mark.parametrize("content_length", [True, False], ids=["sized", "unsized"])
def test_an_over_long_answer_is_refused_naming_the_setting(content_length: bool, serve: Any) -> None:
    big = json.dumps({"data": "x" * 20000}).encode()
    server = serve(Answer(big, content_length=content_length))
    with pytest.raises(UpstreamError) as amplify:
        _amplify(server, max_response_bytes=4096).request("GET", f"{server.url}/apis/management/v1alpha1/x")
    with pytest.raises(UpstreamError) as recurly:
        _recurly(server, max_response_bytes=4096).get_site()
    for raised, key in ((amplify, "amplify.max_response_bytes"), (recurly, "recurly.max_response_bytes")):
        assert key in str(raised.value) and "more than 4096 bytes" in str(raised.value)
        assert raised.value.exit_code == ExitCode.UPSTREAM


def test_answers_within_the_limits_are_read_as_before(serve: Any) -> None:
    plan = {"object": "plan", "id": "p1", "code": "gold", "name": "x" * 400}
    server = serve(Answer(json.dumps(plan).encode()))
    assert _amplify(server).request("GET", f"{server.url}/apis/x").json() == plan
    gateway = _recurly(server)
    for _ in range(3):  # one kept-alive connection carries them all, each within its own deadline
        assert gateway.get_plan("code-gold")["name"] == plan["name"]


def test_an_over_long_listing_stops_the_run_with_exit_3(
    small_sandbox: tuple[Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, config = small_sandbox
    sandbox.write_config(config, amplify={"max_response_bytes": 4096})
    assert run_cli(["--config", str(config), "sync-plans"]) == ExitCode.UPSTREAM
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("Error: Amplify answered GET ") and "raise amplify.max_response_bytes" in last
