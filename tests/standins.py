"""Loopback HTTP servers that answer like the proxy's real neighbours.

- ``BackendStandIn``: the FastAPI backend (docs/backend.md), scripted per path.
- ``ManagementApiStandIn``: API Gateway's ``@connections`` API, with its rules:
  410 for unknown, closed or not-yet-established connections, 413 above
  128 KB, scripted 429 bursts, per-post latency, a record of concurrency and
  headers, and a ``before_request`` hook to change the rules mid-delivery.
- ``LambdaStandIn``: the Lambda ``Invoke`` API; records asynchronous invocations.
- ``DynamoDbStandIn``: DynamoDB's JSON API throttling on request (retry policies).
- ``DynamoDbRecorder``: a hop in front of moto recording each DynamoDB operation, or
  holding chosen requests unanswered (a DynamoDB that hangs).

Each is a threaded HTTP/1.1 server (keep-alive, deep accept queue) on a free
port of 127.0.0.1, started and stopped by the fixture that owns it.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import unquote, urlsplit

MAX_POST_BYTES = 128 * 1024
#: A stand-in's answer: status, body (bytes, or JSON-encoded), extra headers.
Answer = tuple[int, Any, dict[str, str]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


class StandIn:
    """Base: a server thread and a request handler that calls ``self.handle``."""

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes: without this, Nagle's algorithm
                # and delayed ACKs stall every keep-alive response by ~40 ms
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload, headers = owner.handle(self.command, self.path, dict(self.headers), body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                pause = owner.pace()
                if not pause:
                    self.wfile.write(data)
                    return
                try:  # a byte at a time, as a backend that trickles its answer
                    for i in range(len(data)):
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                        time.sleep(pause)
                except OSError:
                    owner.cut_off.append(self.path)  # the client hung up before the answer was out
                    self.close_connection = True

            do_GET = do_POST = do_DELETE = _serve

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        #: Paths whose answer the client stopped reading (it hung up) before the end.
        self.cut_off: list[str] = []
        self._pace = threading.local()

    def wait_cut_off(self, path: str, timeout: float = 5.0) -> None:
        """Wait until the client has hung up on the answer to ``path`` (fails after ``timeout``)."""
        ends = time.monotonic() + timeout
        while path not in self.cut_off:
            assert time.monotonic() < ends, f"the client kept reading the answer to {path}"
            time.sleep(0.02)

    def pace(self) -> float:
        """Seconds between the bytes of the answer being written (0: all at once)."""
        return float(getattr(self._pace, "seconds", 0.0))

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        raise NotImplementedError


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    delay: float = 0.0
    #: Seconds between the bytes of the body (a backend that trickles its answer).
    trickle: float = 0.0


class BackendStandIn(StandIn):
    """Answers per path: a ``Reply`` or a callable(request_json) -> ``Reply``."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[str, Reply | Callable[[Any], Reply]] = {}
        self.requests: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body
        with self._lock:
            self.requests.append((path, parsed))
        route = self.routes.get(path)
        if route is None:
            return 404, {"detail": "Not Found"}, {}
        reply = route(parsed) if callable(route) else route
        if reply.delay:
            time.sleep(reply.delay)
        self._pace.seconds = reply.trickle
        return reply.status, reply.body, {}

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


class ManagementApiStandIn(StandIn):
    """API Gateway's ``@connections`` API for one stage."""

    def __init__(self, stage: str = "development") -> None:
        super().__init__()
        self.stage = stage
        self.endpoint = f"{self.url}/{stage}"
        self.open: set[str] = set()
        self.received: dict[str, list[bytes]] = defaultdict(list)
        #: connection id → how many more posts answer 410 before it counts as open
        self.pending: dict[str, int] = {}
        #: connection id → how many more posts answer 429
        self.throttle: dict[str, int] = {}
        self.fail: set[str] = set()
        #: Connections whose posts are never answered (until the stand-in stops).
        self.hang: set[str] = set()
        self._stopping = threading.Event()
        self.delay = 0.0
        self.max_post_bytes = MAX_POST_BYTES
        self.calls: list[tuple[str, str, int]] = []
        #: The headers of every request, in arrival order.
        self.headers: list[dict[str, str]] = []
        #: Called with (method, connection id) before each request to a connection is answered:
        #: a test's way to change the rules (``open``, ``throttle``, ...) at a given moment.
        self.before_request: Callable[[str, str], None] | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.signed = 0
        self._lock = threading.Lock()

    def connection_id(self, path: str) -> str | None:
        prefix = f"/{self.stage}/@connections/"
        if not path.startswith(prefix):
            return None
        return unquote(path[len(prefix) :])

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.headers.append(headers)
            if headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 Credential="):
                self.signed += 1
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.connection_id(path) in self.hang:
                with self._lock:
                    self.calls.append((method, self.connection_id(path) or path, 0))
                self._stopping.wait(60)
                return 504, {"message": "never answered"}, {}
            status = self._status(method, path, body)
        finally:
            with self._lock:
                self.in_flight -= 1
        return status, ({} if status == 200 else {"message": str(status)}), {}

    def _status(self, method: str, path: str, body: bytes) -> int:
        cid = self.connection_id(path)
        if cid is not None and self.before_request is not None:
            self.before_request(method, cid)
        with self._lock:
            if cid is None:
                status = 404
            elif self.pending.get(cid, 0) > 0:
                self.pending[cid] -= 1
                if self.pending[cid] == 0:
                    self.open.add(cid)
                status = 410
            elif self.throttle.get(cid, 0) > 0:
                self.throttle[cid] -= 1
                status = 429
            elif cid in self.fail:
                status = 500
            elif cid not in self.open:
                status = 410
            elif method == "DELETE":
                self.open.discard(cid)
                status = 204
            elif method != "POST":
                status = 200
            elif len(body) > self.max_post_bytes:
                status = 413
            else:
                self.received[cid].append(body)
                status = 200
            self.calls.append((method, cid or path, status))
        return status

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    def frames(self, cid: str) -> list[dict[str, Any]]:
        """What ``cid`` received, decoded (every frame the proxy posts is a JSON object)."""
        return [json.loads(b) for b in self.received.get(cid, [])]

    def posts_to(self, cid: str) -> int:
        return sum(1 for method, c, _ in self.calls if method == "POST" and c == cid)


class LambdaStandIn(StandIn):
    """The Lambda ``Invoke`` API: records invocations and answers like Lambda."""

    def __init__(self) -> None:
        super().__init__()
        self.invocations: list[tuple[str, str, Any]] = []
        self.fail = False
        #: Invocations get no answer until the stand-in stops (a Lambda API that hangs).
        self.hang = False
        #: How many invocations got no answer.
        self.hung = 0
        self._released = threading.Event()
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        parts = path.split("/")
        if method != "POST" or len(parts) < 5 or parts[2] != "functions":
            return 404, {"Message": "not found"}, {}
        if self.hang:
            with self._lock:
                self.hung += 1
            self._released.wait(60)  # bounded: the client gave up long before
            return 503, {"Message": "ServiceException"}, {"x-amzn-ErrorType": "ServiceException"}
        if self.fail:
            return 500, {"Message": "ServiceException"}, {"x-amzn-ErrorType": "ServiceException"}
        name = unquote(parts[3])
        kind = headers.get("X-Amz-Invocation-Type", "RequestResponse")
        with self._lock:
            self.invocations.append((name, kind, json.loads(body)))
        return (202 if kind == "Event" else 200), b"", {}

    def take(self, name_suffix: str) -> list[Any]:
        """The payloads of invocations of functions ending in ``name_suffix``, removed."""
        with self._lock:
            taken = [p for n, _, p in self.invocations if n.endswith(name_suffix)]
            self.invocations = [i for i in self.invocations if not i[0].endswith(name_suffix)]
        return taken

    def stop(self) -> None:
        self._released.set()
        super().stop()


class DynamoDbStandIn(StandIn):
    """DynamoDB's JSON API, throttled on request: ``throttle`` more requests answer
    ``ProvisionedThroughputExceededException`` (HTTP 400, as DynamoDB does); the others
    find nothing (an empty ``Query``/``GetItem`` answer). Records each operation."""

    def __init__(self) -> None:
        super().__init__()
        #: How many more requests answer throttled.
        self.throttle = 0
        #: Each request's operation (``Query``, ``GetItem``, ...), throttled or not.
        self.operations: list[str] = []
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        operation = headers.get("X-Amz-Target", "?").rsplit(".", 1)[-1]
        with self._lock:
            self.operations.append(operation)
            throttled = self.throttle > 0
            self.throttle -= throttled
        if throttled:
            error = {
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "The level of configured provisioned throughput for the table was exceeded.",
            }
            return 400, error, {}
        return 200, {"Items": [], "Count": 0, "ScannedCount": 0}, {}


class DynamoDbRecorder(StandIn):
    """A loopback hop in front of a real DynamoDB (moto): forwards every request as it came
    and records each operation, its parameters and whether it named an index, and each
    answer forwarded. ``hang`` says which requests
    get no answer until ``stop``, ``throttle`` which are answered throttled (predicates on
    the operation's name and the request)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        parts = urlsplit(target)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        #: (operation, "index" or "table") of each request, in order.
        self.calls: list[tuple[str, str]] = []
        #: The operation of each request, in order.
        self.operations: list[str] = []
        #: (operation, the request's parameters) of each request, in order.
        self.requests: list[tuple[str, dict[str, Any]]] = []
        #: (operation, DynamoDB's answer) of each request forwarded, in order of answer.
        self.answers: list[tuple[str, dict[str, Any]]] = []
        self.hang: Callable[[str, dict[str, Any]], bool] = lambda operation, request: False
        #: Which requests answer ``ProvisionedThroughputExceededException`` instead.
        self.throttle: Callable[[str, dict[str, Any]], bool] = lambda operation, request: False
        #: Operations that got no answer.
        self.hung: list[str] = []
        self._released = threading.Event()
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        operation = headers.get("X-Amz-Target", "?").rsplit(".", 1)[-1]
        request = json.loads(body or b"{}")
        with self._lock:
            self.calls.append((operation, "index" if request.get("IndexName") else "table"))
            self.operations.append(operation)
            self.requests.append((operation, request))
        if self.hang(operation, request):
            self.hung.append(operation)
            self._released.wait(60)  # bounded: the client gave up long before
            return 503, {"__type": "ServiceUnavailable"}, {}
        if self.throttle(operation, request):
            error = {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}
            return 400, {**error, "message": "slow down"}, {}
        connection = http.client.HTTPConnection(*self._target, timeout=30)
        try:
            connection.request(method, path, body, {k: v for k, v in headers.items() if k.lower() != "host"})
            answer = connection.getresponse()
            status, content = answer.status, answer.read()
            with self._lock:
                self.answers.append((operation, json.loads(content or b"{}")))
            return status, content, {}
        finally:
            connection.close()

    def stop(self) -> None:
        self._released.set()
        super().stop()
