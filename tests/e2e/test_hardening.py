"""The local stack cannot be mistaken for production: loopback only, a closed demo forwarder, bounded queues.

Over real sockets and real processes: ``python -m local_gateway`` refuses a
``--host`` beyond loopback unless told the exposure is intended; the demo
page's forwarder reaches only the backend's development routes the page
calls, however the path is encoded; a socket flooding frames holds at most
``--max-frames-in-flight`` (16) of them in the proxy at once, and the gateway
stops reading it meanwhile (no frame is dropped).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.e2e.support import (
    ROOT,
    StackProcess,
    gateway_only,
    new_booking,
    open_socket,
    run,
    token,
)

pytestmark = pytest.mark.e2e

#: The gateway's default --max-frames-in-flight.
FRAMES_IN_FLIGHT = 16


def start_stack(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m local_gateway`` with ``args`` on free ports, expected to exit by itself (bounded)."""
    command = [sys.executable, "-m", "local_gateway", "--port", "0", "--backend-port", "0"]
    command += ["--dynamodb-port", "0", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


# -- --host ------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "", "no-such-host.invalid"])
def test_a_host_beyond_loopback_is_refused_before_anything_listens(host: str) -> None:
    result = start_stack("--host", host)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "is not a loopback address" in result.stderr
    assert "--expose-insecure-local-stack" in result.stderr
    assert "ws-proxy local stack" not in result.stdout  # the banner: nothing started


def test_the_exposure_flag_lets_it_through_with_a_loud_warning() -> None:
    # 192.0.2.1 (TEST-NET-1) is assigned to no interface here: the warning comes, then the bind fails,
    # so nothing is ever exposed by this test.
    result = start_stack("--host", "192.0.2.1", "--expose-insecure-local-stack")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "is not a loopback address" not in output
    warning = output[output.index("WARNING") : output.index("cannot listen on 192.0.2.1")]
    for exposed in ("dev token endpoint", "Management API", "Lambda Invoke API", "DynamoDB table"):
        assert exposed in warning


def test_a_name_that_resolves_to_loopback_is_accepted() -> None:
    stack = StackProcess("host-localhost", "--host", "localhost")
    try:
        assert urlsplit(stack.gateway).hostname == "localhost"
        assert urlsplit(stack.backend).hostname == "localhost"
        assert "WARNING" not in stack.output
    finally:
        assert stack.stop() == 0


# -- the demo forwarder -----------------------------------------------------------------


def raw_request(
    stack: StackProcess, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, str]:
    """A request with ``path`` sent exactly as written (no client-side normalisation)."""
    address = urlsplit(stack.gateway)
    assert address.hostname is not None
    assert address.port is not None
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


ESCAPES = [
    "dev/%252e%252e/api/chat/ws/{booking}/connect",
    "dev/%2e%2e/api/chat/ws/{booking}/connect",
    "dev/%25252e%25252e/api/chat/ws/{booking}/connect",
    "dev/%252e%252e%252fapi/chat/ws/{booking}/connect",
    "dev/..%2fapi/chat/ws/{booking}/connect",
    "dev/token/%2e%2e/%2e%2e/api/chat/ws/{booking}/connect",
    "dev%2f..%2fapi/chat/ws/{booking}/connect",
    "%64ev/%2e%2e/api/chat/ws/{booking}/connect",
    "api/chat/ws/{booking}/connect",
    "dev/./token",
    "dev//token",
    "dev/token%00",
    "dev/token/",
    "dev/bookings/../token",
    "dev/bookings/%2e%2e/status",
    "dev/bookings/a%252fb/status",
    "dev/%ff",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_the_demo_forwarder_reaches_nothing_outside_its_routes(local_stack: StackProcess, path: str) -> None:
    booking = new_booking()
    body = {"connection_id": "forged", "token": token(local_stack, "mallory"), "user_id": "mallory"}
    status, text = raw_request(local_stack, "POST", "/demo/api/" + path.format(booking=booking), body)
    assert status == 404, text
    assert "history" not in text
    assert "token" not in text


def test_the_demo_forwarder_reaches_the_backend_api_docs_by_no_encoding(local_stack: StackProcess) -> None:
    for path in ("dev/%252e%252e/openapi.json", "dev/%2e%2e/docs", "dev/%252e%252e/dev/token"):
        status, text = raw_request(local_stack, "GET", "/demo/api/" + path)
        assert status == 404, (path, text)


def test_the_demo_forwarder_serves_the_pages_calls(local_stack: StackProcess) -> None:
    booking = new_booking()
    status, text = raw_request(local_stack, "POST", "/demo/api/dev/token", {"user_id": "alice"})
    assert status == 200, text
    assert json.loads(text)["token"].count(".") == 2
    status, text = raw_request(
        local_stack, "POST", f"/demo/api/dev/bookings/{booking}/status", {"status": "confirmed"}
    )
    assert status == 200, text
    assert json.loads(text)["booking"] == {
        "booking_id": booking,
        "status": "confirmed",
        "thread_id": f"booking-{booking}",
    }
    # a method the page does not use is not forwarded either
    assert raw_request(local_stack, "GET", "/demo/api/dev/token")[0] == 404


# -- back-pressure per socket -------------------------------------------------------------


class FloodBackend:
    """A chat backend that holds every message marked ``hold`` until released, counting them per token."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer: dict[str, Any]
                if self.path.endswith("/connect"):
                    answer = {"user_id": body["token"]}
                else:
                    answer = {"type": "ack", "n": body["message"].get("n")}
                    if body["message"].get("hold"):
                        backend.hold(body["token"])
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def hold(self, who: str) -> None:
        with self.lock:
            self.in_flight[who] += 1
            self.most[who] = max(self.most[who], self.in_flight[who])
        self.release.wait(timeout=8)  # under the proxy's 10 s backend timeout
        with self.lock:
            self.in_flight[who] -= 1

    def held(self, who: str) -> int:
        with self.lock:
            return self.in_flight[who]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flood_backend() -> Iterator[FloodBackend]:
    backend = FloodBackend()
    yield backend
    backend.close()


def test_a_flooding_socket_has_a_bounded_number_of_frames_in_flight(
    local_stack: StackProcess, flood_backend: FloodBackend
) -> None:
    frames = 100
    stack = gateway_only("flood", local_stack, flood_backend.url)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            flooder = await open_socket(
                session, stack.ws_url(type="chat", booking_id=new_booking(), token="flooder")
            )
            bystanders_booking = new_booking()
            bystander = await open_socket(
                session, stack.ws_url(type="chat", booking_id=bystanders_booking, token="bystander")
            )
            for n in range(frames):
                await flooder.send({"hold": True, "n": n})
            deadline = time.monotonic() + 10
            while flood_backend.held("flooder") < FRAMES_IN_FLIGHT:
                assert time.monotonic() < deadline, f"only {flood_backend.held('flooder')} frames arrived"
                await asyncio.sleep(0.02)
            # While the flooder's frames are held, another socket is served: the flood holds only its share.
            await bystander.send({"n": "hello"})
            tag = {"booking_id": bystanders_booking, "connection_type": "chat"}
            assert (await bystander.recv(timeout=5)) == {"type": "ack", "n": "hello", **tag}
            assert flood_backend.most["flooder"] == FRAMES_IN_FLIGHT
            stack.wait_for_log(rf"back-pressure +\S+ {FRAMES_IN_FLIGHT} frames in flight: reading paused")
            flood_backend.release.set()
            answered = [(await flooder.recv(timeout=10))["n"] for _ in range(frames)]
            assert sorted(answered) == list(range(frames))  # back-pressure, not loss
            await flooder.assert_nothing_pending()
            await flooder.close()
            await bystander.close()

    try:
        run(scenario, timeout=60)
        assert flood_backend.most["flooder"] == FRAMES_IN_FLIGHT  # never more, to the last frame
    finally:
        assert stack.stop() == 0
