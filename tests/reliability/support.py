"""Servers and checks for the fault and load scenarios, all on 127.0.0.1.

- ``FaultBackend``: a backend (docs/backend.md, chat routes) whose message
  answer each frame chooses: ``{"id": ..., "fault": "500" | "invalid_json" |
  "slow" | "timeout"}``; ``down()`` stops listening (connections refused),
  ``up()`` listens again on the same port.
- ``DynamoFaultProxy``: an HTTP proxy in front of a DynamoDB endpoint that
  answers ``ProvisionedThroughputExceededException`` / ``ThrottlingException``
  (HTTP 400, AWS JSON ``__type``) for a burst, a fraction or all requests.
- ``Tracker``: per-socket frame counts by message id, and the invariants.

Each server runs its own asyncio loop in a thread; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from tests.e2e.support import Socket, StackProcess

THROTTLE_TYPES = {
    "ProvisionedThroughputExceededException": (
        "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API."
    ),
    "ThrottlingException": "Rate of requests exceeds the allowed throughput.",
}
#: Lines in the stack's output that mean something escaped the proxy's own error handling.
CRASH = re.compile(r"Traceback|internal_error|\braised\b|Internal server error")
#: How long the backend's "slow" answer takes, and the "timeout" one (over the proxy's 10 s).
SLOW_SECONDS = 3.0
TIMEOUT_SECONDS = 11.0
#: A trickled answer: this many bytes, one every TRICKLE_PAUSE seconds (40 s in all).
TRICKLE_BYTES = 200
TRICKLE_PAUSE = 0.2


class LoopThread:
    """An asyncio loop in a daemon thread, for servers the tests start and stop."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, coro: Awaitable[Any], timeout: float = 15.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def _listen(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


class _Server:
    """One aiohttp application on a fixed loopback port that can stop listening and start again."""

    def __init__(self, name: str, make_app: Callable[[], web.Application]) -> None:
        self._make_app = make_app
        self._thread = LoopThread(name)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.up()

    @property
    def listening(self) -> bool:
        return self._runner is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        async def start() -> None:
            runner = web.AppRunner(
                self._make_app(), access_log=None, handle_signals=False, shutdown_timeout=0.5
            )
            await runner.setup()
            sock = _listen(self.port)
            self.port = int(sock.getsockname()[1])
            await web.SockSite(runner, sock).start()
            self._runner = runner

        self._thread.call(start())

    def down(self) -> None:
        """Stop listening and close every open connection: new connections are refused."""
        if self._runner is not None:
            self._thread.call(self._runner.cleanup())
            self._runner = None

    def stop(self) -> None:
        self.down()
        self._thread.stop()


class FaultBackend(_Server):
    """The chat routes of docs/backend.md; each message frame picks the backend's answer."""

    def __init__(self) -> None:
        self.messages: Counter[str] = Counter()  # message id → times the backend saw it
        self.cut_off = 0  # trickled answers the proxy stopped reading
        super().__init__("fault-backend", self._app)

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/chat/ws/{booking_id}/connect", self._connect)
        app.router.add_post("/api/chat/ws/{booking_id}/message", self._message)
        return app

    async def _connect(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not body.get("token"):
            return web.json_response({"detail": "a token is required"}, status=401)
        # No initial payload: the receipt (first frame) tells the client its connection id.
        receipt = {"type": "receipt", "connection_id": body["connection_id"]}
        return web.json_response({"receipt": receipt, "user_id": body["token"]})

    async def _message(self, request: web.Request) -> web.Response:
        body = await request.json()
        frame = body.get("message") or {}
        message_id = str(frame.get("id"))
        self.messages[message_id] += 1
        fault = frame.get("fault")
        if fault == "500":
            return web.json_response({"detail": "boom"}, status=500)
        if fault == "invalid_json":
            return web.Response(
                status=200, text='{"type": "message", "broadcast": tr', content_type="text/plain"
            )
        if fault == "trickle":  # a byte at a time, for far longer than any timeout
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            response.content_length = TRICKLE_BYTES
            await response.prepare(request)
            try:
                for _ in range(TRICKLE_BYTES):
                    await response.write(b" ")
                    await asyncio.sleep(TRICKLE_PAUSE)
            except (ConnectionError, RuntimeError):
                self.cut_off += 1  # the proxy hung up: its deadline held
            return response  # type: ignore[return-value]  # a stream, not a whole Response
        if fault == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        if fault == "timeout":
            await asyncio.sleep(TIMEOUT_SECONDS)
        payload = {
            "type": "message",
            "message": {"id": message_id, "from": body["connection_id"], "t": frame.get("t")},
            "broadcast": True,
        }
        return web.json_response(payload)


class DynamoFaultProxy(_Server):
    """Forwards DynamoDB's JSON API to ``upstream``, throttling requests by rule."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._lock = threading.Lock()
        self._burst = 0
        self._fraction = 0.0
        self._all = False
        self._type = "ProvisionedThroughputExceededException"
        self._random = random.Random(6)
        self.throttled: Counter[str] = Counter()  # operation → throttled answers
        self.forwarded: Counter[str] = Counter()
        super().__init__("dynamodb-fault-proxy", self._app)

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self._handle)
        return app

    def throttle(
        self,
        *,
        burst: int = 0,
        fraction: float = 0.0,
        everything: bool = False,
        error_type: str = "ProvisionedThroughputExceededException",
    ) -> None:
        """Throttle the next ``burst`` requests, then ``fraction`` of them (or ``everything``)."""
        assert error_type in THROTTLE_TYPES
        with self._lock:
            self._burst, self._fraction, self._all, self._type = burst, fraction, everything, error_type

    def clear(self) -> None:
        self.throttle()

    def _throttle_now(self) -> str | None:
        with self._lock:
            if self._all:
                return self._type
            if self._burst > 0:
                self._burst -= 1
                return self._type
            if self._fraction and self._random.random() < self._fraction:
                return self._type
            return None

    async def _handle(self, request: web.Request) -> web.Response:
        operation = request.headers.get("X-Amz-Target", "?").rsplit(".", 1)[-1]
        body = await request.read()
        error_type = self._throttle_now()
        if error_type is not None:
            self.throttled[operation] += 1
            error = {
                "__type": f"com.amazonaws.dynamodb.v20120810#{error_type}",
                "message": THROTTLE_TYPES[error_type],
            }
            return web.Response(
                status=400,
                body=json.dumps(error).encode(),
                content_type="application/x-amz-json-1.0",
                headers={"x-amzn-RequestId": "THROTTLED" + str(sum(self.throttled.values()))},
            )
        self.forwarded[operation] += 1
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=30), auto_decompress=False
            )
        skip = {"host", "content-length", "transfer-encoding", "connection"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        async with self._session.post(self.upstream + request.path_qs, data=body, headers=headers) as up:
            content = await up.read()
            out = {k: v for k, v in up.headers.items() if k.lower() not in skip | {"content-encoding"}}
            if "Content-Encoding" in up.headers:
                out["Content-Encoding"] = up.headers["Content-Encoding"]
            return web.Response(status=up.status, body=content, headers=out)

    def stop(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            self._thread.call(session.close())
        super().stop()


# -- sockets ---------------------------------------------------------------------


def drop(sock: Socket, how: str = "rst") -> None:
    """Vanish without a close frame: a TCP reset (``rst``) or a bare FIN (``fin``)."""
    raw = sock.ws.get_extra_info("socket")
    assert raw is not None, "no socket under this WebSocket"
    if how == "rst":
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.shutdown(socket.SHUT_RDWR)
    if how == "rst":
        # aiohttp has no public way to abort a WebSocket's transport (close() sends a close frame)
        connection = sock.ws._response.connection  # noqa: SLF001
        if connection is not None and connection.transport is not None:
            connection.transport.abort()


class Tracker:
    """Frames received per socket, counted by message id; error frames kept apart."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = {}
        self.errors: dict[str, list[dict[str, Any]]] = {}
        self.others: dict[str, list[dict[str, Any]]] = {}
        self.arrivals: dict[str, dict[str, float]] = {}

    def add(self, name: str) -> None:
        self.counts[name] = Counter()
        self.errors[name] = []
        self.others[name] = []
        self.arrivals[name] = {}

    def record(self, name: str, frame: dict[str, Any]) -> None:
        if frame.get("type") == "message" and isinstance(frame.get("message"), dict):
            message_id = str(frame["message"].get("id"))
            self.counts[name][message_id] += 1
            self.arrivals[name].setdefault(message_id, time.perf_counter())
        elif frame.get("type") == "error":
            self.errors[name].append(frame)
        else:
            self.others[name].append(frame)


async def pump(name: str, sock: Socket, tracker: Tracker, stop: asyncio.Event) -> None:
    """Read every frame of ``sock`` into ``tracker`` until it closes or ``stop`` is set."""
    while not stop.is_set():
        try:
            msg = await sock.ws.receive(timeout=0.2)
        except TimeoutError:
            continue
        if msg.type is aiohttp.WSMsgType.TEXT:
            frame = json.loads(msg.data)
            assert isinstance(frame, dict), f"{name}: a frame that is not an object: {msg.data!r}"
            tracker.record(name, frame)
        elif msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ):
            return
        else:
            raise AssertionError(f"{name}: unexpected {msg.type} {msg.data!r}")


def stack_alive(stack: StackProcess, since: int) -> None:
    """No crash: the process runs, and nothing escaped the proxy's error handling since ``since``."""
    assert stack.proc.poll() is None, f"the stack exited:\n{stack.output[-3000:]}"
    new = stack.output[since:]
    bad = [line for line in new.splitlines() if CRASH.search(line)]
    assert not bad, "the stack's output shows an escaped error:\n" + "\n".join(bad[:20])
