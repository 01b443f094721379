"""The local API Gateway: WebSocket API, Management API and Lambda Invoke API on one port.

- ``GET /`` or ``/{stage}`` with an upgrade: a WebSocket connection. ``$connect``
  runs before the handshake completes; a non-200 answer fails the handshake
  with that status. Each frame becomes a ``$default`` event; every close, clean
  or not, fires ``$disconnect`` exactly once.
- ``POST|GET|DELETE [/{stage}]/@connections/{id}``: the Management API, with
  API Gateway's answers (410 while ``$connect`` runs and after close, 413 above
  128 KB). Signatures are accepted unchecked.
- ``POST /2015-03-31/functions/{name}/invocations``: Lambda's Invoke API for the
  app's ``deliver`` and ``push`` functions (``Event`` → 202, run in a worker
  thread; ``RequestResponse`` → 200 with the result).
- ``GET|PUT|DELETE /_local/faults``: only with ``fault_injection`` on, a test
  facility that makes ``POST @connections`` answer 429, 410 or 5xx by rule
  (``local_gateway.faults``).
- ``GET /`` without an upgrade: the demo page; ``/demo/api/dev/...`` forwards
  the page's development calls to the backend (same origin, no CORS).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from local_gateway.events import (
    Identity,
    SocketInfo,
    connect_event,
    disconnect_event,
    message_event,
    new_connection_id,
    new_request_id,
)
from local_gateway.faults import ERROR_TYPES, ManagementFaults, RuleError
from local_gateway.runtime import AppRuntime, function_key

logger = logging.getLogger("local_gateway")

#: API Gateway's message limit, both ways.
MAX_MESSAGE_BYTES = 128 * 1024
#: Lambda's payload limits: asynchronous (Event) and synchronous invocations.
MAX_EVENT_PAYLOAD = 256 * 1024
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: The client module (client/src), which the demo page imports from /client/.
CLIENT_DIR = Path(__file__).resolve().parent.parent / "client" / "src"

#: disconnectReason texts for the close codes the gateway reports.
_REASONS = {
    1000: "Connection Closed Normally",
    1001: "Going away",
    1005: "Client-side close frame status not set",
    1006: "Connection was closed abnormally",
    1009: "Message too big",
}


class State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


@dataclass
class GatewayOptions:
    stage: str = "development"
    idle_timeout: float = 600.0
    max_lifetime: float = 7200.0
    #: API Gateway's integration timeout: a $connect slower than this fails the handshake (504).
    integration_timeout: float = 29.0
    #: Serve ``/_local/faults`` and apply its rules to posts (a test facility; off by default).
    fault_injection: bool = False


@dataclass
class Connection:
    info: SocketInfo
    state: State = State.CONNECTING
    ws: web.WebSocketResponse | None = None
    opened: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    last_active_at: float = field(default_factory=time.time)
    #: Set when the gateway closes the socket itself (DELETE, idle, lifetime, shutdown).
    server_close: tuple[int, str] | None = None
    closing: asyncio.Task[Any] | None = None
    disconnected: bool = False

    def touch(self) -> None:
        self.last_active = time.monotonic()
        self.last_active_at = time.time()


def _aws_error(status: int, error_type: str, message: str | None) -> web.Response:
    """An AWS REST-JSON error: botocore reads the code from ``x-amzn-ErrorType``."""
    return web.json_response(
        {"message": message, "Type": "User"},
        status=status,
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": new_request_id()},
    )


async def _favicon(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "favicon.ico")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LocalGateway:
    """The aiohttp application and the live connections it serves."""

    def __init__(
        self,
        runtime: AppRuntime,
        options: GatewayOptions,
        *,
        api_id: str,
        backend_url: str,
    ) -> None:
        self.runtime = runtime
        self.options = options
        self.api_id = api_id
        self.backend_url = backend_url.rstrip("/")
        self.connections: dict[str, Connection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._closing = False
        self.faults = ManagementFaults() if options.fault_injection else None

    # -- application -------------------------------------------------------

    def application(self) -> web.Application:
        # Bodies up to Lambda's synchronous limit are read, so that size rules answer as AWS does.
        app = web.Application(client_max_size=MAX_SYNC_PAYLOAD + 1024)
        stage = self.options.stage
        r = app.router
        r.add_get("/", self.handle_socket)
        r.add_static("/static/", STATIC_DIR)
        r.add_static("/client/", CLIENT_DIR)
        r.add_get("/favicon.ico", _favicon)
        r.add_get("/demo/config", self.demo_config)
        r.add_route("*", "/demo/api/{path:.+}", self.demo_backend)
        r.add_post("/2015-03-31/functions/{name}/invocations", self.invoke)
        if self.faults is not None:
            r.add_get("/_local/faults", self.faults_show)
            r.add_put("/_local/faults", self.faults_replace)
            r.add_delete("/_local/faults", self.faults_clear)
        for prefix in ("", "/{stage}"):
            r.add_post(prefix + "/@connections/{connection_id}", self.post_to_connection)
            r.add_get(prefix + "/@connections/{connection_id}", self.get_connection)
            r.add_delete(prefix + "/@connections/{connection_id}", self.delete_connection)
        r.add_get("/{stage}", self.handle_socket)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        logger.debug("routes ready for stage %s", stage)
        return app

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close_all()

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    async def close_all(self, timeout: float = 10.0) -> None:
        """Close every socket (1001, as API Gateway does on a deployment) and let $disconnect run."""
        self._closing = True
        live = [conn for conn in self.connections.values() if conn.state is State.OPEN]
        await asyncio.gather(*(self._server_close(c, WSCloseCode.GOING_AWAY, "Going away") for c in live))
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))

    # -- the WebSocket API -----------------------------------------------------

    def _stage_ok(self, request: web.Request) -> bool:
        stage = request.match_info.get("stage")
        return stage is None or stage == self.options.stage

    async def handle_socket(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            if request.match_info.get("stage") is None:
                return web.FileResponse(STATIC_DIR / "index.html")
            raise web.HTTPNotFound(text="not found: WebSocket connections only on this path\n")
        if not self._stage_ok(request):
            return _aws_error(403, "ForbiddenException", "Forbidden")
        if self._closing:
            return web.Response(status=503, text="the gateway is shutting down")
        host = request.host
        peer = request.remote or "127.0.0.1"
        info = SocketInfo(
            connection_id=new_connection_id(),
            api_id=self.api_id,
            stage=self.options.stage,
            domain_name=host,
            identity=Identity(source_ip=peer, user_agent=request.headers.get("User-Agent")),
        )
        conn = Connection(info)
        self.connections[info.connection_id] = conn
        try:
            return await self._serve(request, conn)
        finally:
            conn.state = State.CLOSED
            self.connections.pop(info.connection_id, None)

    async def _serve(self, request: web.Request, conn: Connection) -> web.StreamResponse:
        event = connect_event(conn.info, request.headers.items(), request.query.items())
        try:
            invocation = await asyncio.wait_for(
                self.runtime.websocket("$connect", event), self.options.integration_timeout
            )
        except TimeoutError:
            logger.warning("$connect     %-16s timed out: handshake fails 504", conn.info.connection_id)
            return web.json_response({"message": "Endpoint request timed out"}, status=504)
        answer = invocation.result if isinstance(invocation.result, dict) else {}
        if invocation.failed:
            return web.json_response({"message": "Internal server error"}, status=502)
        status = int(answer.get("statusCode", 200))
        if status != 200:
            body = answer.get("body")
            return web.Response(status=status, text=body if isinstance(body, str) else "")
        protocols: tuple[str, ...] = ()
        for key, value in (answer.get("headers") or {}).items():
            if key.lower() == "sec-websocket-protocol" and value:
                protocols = (str(value),)
        ws = web.WebSocketResponse(
            protocols=protocols,
            max_msg_size=MAX_MESSAGE_BYTES,
            autoclose=False,
            autoping=True,
            compress=False,
            timeout=5.0,  # how long a close waits for the client's close frame
        )
        try:
            await ws.prepare(request)
        except (ConnectionError, RuntimeError):
            # The client left while $connect ran: the connection existed, so $disconnect runs.
            await self._disconnect(conn, 1006)
            return ws
        conn.ws = ws
        conn.state = State.OPEN
        conn.touch()
        watchdog = asyncio.create_task(self._watch(conn))
        code = 1006
        try:
            code = await self._receive(conn, ws)
        finally:
            watchdog.cancel()  # a close it started goes on: it is shielded
            conn.state = State.CLOSED
            if conn.closing is not None:
                await asyncio.wait({conn.closing}, timeout=10)
            if not ws.closed:
                await ws.close(code=WSCloseCode.OK)
            if conn.server_close is not None:
                code = conn.server_close[0]
            await self._disconnect(conn, code)
        return ws

    async def _receive(self, conn: Connection, ws: web.WebSocketResponse) -> int:
        """Read frames until the socket closes; the close code $disconnect reports."""
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                conn.touch()
                self._spawn(self._message(conn, msg.data))
            elif msg.type is WSMsgType.CLOSE:
                conn.state = State.CLOSED  # before answering the close: no post succeeds from here on
                code = int(msg.data or 0) or 1005
                await ws.close(code=code if code != 1005 else WSCloseCode.OK)
                return code
            elif msg.type is WSMsgType.ERROR:
                exc = msg.data
                if isinstance(exc, aiohttp.WebSocketError) and exc.code == WSCloseCode.MESSAGE_TOO_BIG:
                    return 1009  # aiohttp has already closed with 1009
                return 1006
            else:  # CLOSING / CLOSED: closed by the server, or the peer vanished
                return conn.server_close[0] if conn.server_close else 1006

    async def _message(self, conn: Connection, data: str | bytes) -> None:
        event = message_event(conn.info, data)
        invocation = await self.runtime.websocket("$default", event)
        if invocation.failed and conn.state is State.OPEN and conn.ws is not None:
            # What API Gateway sends the client when the integration fails.
            error = {
                "message": "Internal server error",
                "connectionId": conn.info.connection_id,
                "requestId": event["requestContext"]["requestId"],
            }
            try:
                await conn.ws.send_str(json.dumps(error))
            except (ConnectionError, RuntimeError):
                pass

    async def _disconnect(self, conn: Connection, code: int) -> None:
        if conn.disconnected:
            return
        conn.disconnected = True
        reason = conn.server_close[1] if conn.server_close else _REASONS.get(code, "")
        event = disconnect_event(conn.info, code, reason)
        await self.runtime.websocket("$disconnect", event)

    async def _server_close(self, conn: Connection, code: int, reason: str) -> None:
        if conn.ws is None or conn.state is not State.OPEN:
            return
        conn.server_close = (code, reason)
        conn.state = State.CLOSED
        conn.closing = asyncio.create_task(conn.ws.close(code=code, message=reason.encode("utf-8")))
        await asyncio.shield(conn.closing)

    async def _watch(self, conn: Connection) -> None:
        """Close the socket at the idle timeout or at the end of its lifetime (1001 Going away)."""
        while conn.state is State.OPEN:
            now = time.monotonic()
            idle_at = conn.last_active + self.options.idle_timeout
            end_at = conn.opened + self.options.max_lifetime
            if now >= min(idle_at, end_at):
                why = "idle timeout" if idle_at <= end_at else "maximum lifetime"
                logger.info("%-12s %-16s closing: %s", "timeout", conn.info.connection_id, why)
                await self._server_close(conn, WSCloseCode.GOING_AWAY, "Going away")
                return
            await asyncio.sleep(min(idle_at, end_at) - now)

    # -- the Management API ------------------------------------------------------

    def _live(self, request: web.Request) -> Connection | None:
        conn = self.connections.get(request.match_info["connection_id"])
        if conn is None or conn.state is not State.OPEN or conn.ws is None or conn.ws.closed:
            return None
        return conn

    async def post_to_connection(self, request: web.Request) -> web.Response:
        if not self._stage_ok(request):
            return _aws_error(403, "ForbiddenException", "Forbidden")
        data = await request.read()
        connection_id = request.match_info["connection_id"]
        if len(data) > MAX_MESSAGE_BYTES:
            logger.info("%-12s %-16s 413 (%d bytes)", "@connections", connection_id, len(data))
            return _aws_error(413, "PayloadTooLargeException", "Request entity too large")
        injected = self.faults.status_for(connection_id) if self.faults is not None else None
        if injected is not None:
            logger.debug("%-12s %-16s %d (injected)", "@connections", connection_id, injected)
            return _aws_error(injected, ERROR_TYPES[injected], None if injected == 410 else "Injected fault")
        conn = self._live(request)
        if conn is None or conn.ws is None:
            logger.debug("%-12s %-16s 410", "@connections", connection_id)
            return _aws_error(410, "GoneException", None)
        try:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                await conn.ws.send_bytes(data)
            else:
                await conn.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            return _aws_error(410, "GoneException", None)
        conn.touch()
        logger.debug("%-12s %-16s 200 (%d bytes)", "@connections", connection_id, len(data))
        return web.Response(status=200, headers={"x-amzn-RequestId": new_request_id()})

    async def get_connection(self, request: web.Request) -> web.Response:
        if not self._stage_ok(request):
            return _aws_error(403, "ForbiddenException", "Forbidden")
        conn = self._live(request)
        if conn is None:
            return _aws_error(410, "GoneException", None)
        # The wire names (botocore maps them to ConnectedAt, Identity.SourceIp, ...).
        identity = {
            "sourceIp": conn.info.identity.source_ip,
            "userAgent": conn.info.identity.user_agent or "",
        }
        return web.json_response(
            {
                "connectedAt": _iso(conn.info.connected_at / 1000),
                "identity": identity,
                "lastActiveAt": _iso(conn.last_active_at),
            }
        )

    async def delete_connection(self, request: web.Request) -> web.Response:
        if not self._stage_ok(request):
            return _aws_error(403, "ForbiddenException", "Forbidden")
        conn = self._live(request)
        if conn is None:
            return _aws_error(410, "GoneException", None)
        logger.info("%-12s %-16s DELETE: closing", "@connections", conn.info.connection_id)
        await self._server_close(conn, WSCloseCode.OK, "Connection Closed Normally")
        return web.Response(status=204)

    # -- fault injection (a test facility) -------------------------------------

    async def faults_show(self, request: web.Request) -> web.Response:
        assert self.faults is not None
        return web.json_response(self.faults.describe())

    async def faults_replace(self, request: web.Request) -> web.Response:
        assert self.faults is not None
        try:
            self.faults.replace(await request.json())
        except (ValueError, RuleError) as exc:
            return web.json_response({"message": str(exc)}, status=400)
        logger.info("%-12s %s", "faults", json.dumps(self.faults.describe()["rules"]))
        return web.json_response(self.faults.describe())

    async def faults_clear(self, request: web.Request) -> web.Response:
        assert self.faults is not None
        self.faults.clear()
        logger.info("%-12s cleared", "faults")
        return web.json_response(self.faults.describe())

    # -- the Lambda Invoke API ---------------------------------------------------

    async def invoke(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        key = function_key(name)
        if key is None:
            return _aws_error(404, "ResourceNotFoundException", f"Function not found: {name}")
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        payload = await request.read()
        limit = MAX_EVENT_PAYLOAD if invocation_type == "Event" else MAX_SYNC_PAYLOAD
        if len(payload) > limit:
            return _aws_error(
                413, "RequestEntityTooLargeException", f"Request must be smaller than {limit} bytes"
            )
        try:
            event = json.loads(payload) if payload else {}
        except ValueError:
            return _aws_error(400, "InvalidRequestContentException", "Could not parse request body into json")
        function_name = name.split(":function:")[-1].split(":")[0]
        request_id = new_request_id()
        if invocation_type == "DryRun":
            return web.Response(status=204, headers={"x-amzn-RequestId": request_id})
        if invocation_type == "Event":
            self._spawn(self.runtime.invoke(key, function_name, event))
            return web.Response(status=202, headers={"x-amzn-RequestId": request_id})
        if invocation_type != "RequestResponse":
            return _aws_error(400, "InvalidParameterValueException", f"bad invocation type {invocation_type}")
        invocation = await self.runtime.invoke(key, function_name, event)
        headers = {"x-amzn-RequestId": request_id, "X-Amz-Executed-Version": "$LATEST"}
        if invocation.error is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
            body = {
                "errorMessage": str(invocation.error),
                "errorType": type(invocation.error).__name__,
                "stackTrace": [],
            }
            return web.json_response(body, headers=headers)
        return web.json_response(invocation.result, headers=headers)

    # -- the demo page's helpers ---------------------------------------------------

    async def demo_config(self, request: web.Request) -> web.Response:
        return web.json_response({"stage": self.options.stage, "backend_url": self.backend_url})

    async def demo_backend(self, request: web.Request) -> web.Response:
        """Forward the page's development calls (``dev/...``) to the backend, same origin."""
        path = request.match_info["path"]
        if not path.startswith("dev/") or ".." in path:
            raise web.HTTPNotFound(text="only the backend's dev/ routes are forwarded\n")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        body = await request.read()
        try:
            async with self._session.request(
                request.method,
                f"{self.backend_url}/{path}",
                data=body or None,
                headers={"Content-Type": request.headers.get("Content-Type", "application/json")},
            ) as upstream:
                content = await upstream.read()
                return web.Response(
                    status=upstream.status,
                    body=content,
                    content_type=upstream.content_type or "application/json",
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return web.json_response(
                {"detail": f"the backend is unreachable: {type(exc).__name__}"}, status=502
            )
